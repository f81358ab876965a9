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
* ``restart``: in an ``ActorSystem(workers=2)``, SIGKILL of worker 1 to the first
  reply of a permanent actor on it from the new worker (calls racing the crash
  fail with ActorCrashedError and are retried); median and max of 20 kills. The
  actor is fresh each time, so that every kill is its first restart and no
  restart backoff is included. The raw side starts one such server process and
  gets a ping answered: the ratio shows how much of a restart is process start-up.
* ``hang``: in an ``ActorSystem(workers=1, heartbeat_timeout=1.0)``, SIGSTOP of
  the worker to the ActorCrashedError ("lost its heartbeat") of a call to its
  actor, once the supervisor has killed it; median of 3, also as a multiple of
  the timeout. No raw side.

Throughputs and start and restart times alternate raw and dovecote repetitions
(after an untimed warm-up, but for ``start`` and ``restart``) and show the
median, and the best for numpy. The ratio column is always dovecote/raw, where
there is a raw side; the "better" column says which direction is good for both
figures and the ratio. PASS/MISS compares dovecote's figure with the issue's
target.
"""
