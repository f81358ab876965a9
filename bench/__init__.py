"""dovecote benchmarks, each beside raw pyzmq doing the same work in the same run.

Run ``python -m bench`` from the checkout (``--quick`` for a smoke test,
``--only NAME`` for one metric). Every figure is measured against a baseline
of plain pyzmq between this process (a DEALER) and a server process started
with the multiprocessing ``spawn`` context (a ROUTER bound on ``ipc://``), so
that the noise of a shared machine hits both sides alike:

* ``latency``: ask round trip of a small int, ``ref.echo(i).result()`` against a
  pickled ping-pong. Rounds alternate raw and dovecote after a warm-up; the
  table shows the median over rounds of each round's p50 and p99.
* ``pipelined``: N asks submitted without waiting, then all results gathered,
  against N pickled requests sent with at most 1000 outstanding. Calls/s.
* ``tell``: N ``ref.inc.tell()`` then one ``ref.count()`` (checked to equal N),
  against N pickled messages to a server that counts them and replies once.
* ``numpy``: a 256 MiB float64 array echoed; GB/s counts bytes both ways. The
  raw side sends the buffer with ``copy=False`` to a server that sends the
  frames back with ``copy=False``. Shape and a checksum are checked.
* ``start``: ``ActorSystem(workers=2)`` to the first spawned actor's first
  reply, against starting two spawn-context processes that bind a ROUTER and
  answer one ping.

Throughputs and start times alternate raw and dovecote repetitions (after an
untimed warm-up, but for ``start``) and show the median, and the best for
numpy. The ratio column is always dovecote/raw; the "better" column says
which direction is good for both figures and the ratio. PASS/MISS compares
dovecote's figure with the issue's target.
"""
