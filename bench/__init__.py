"""dovecote benchmarks, each beside raw pyzmq doing the same work in the same run.

Run ``python -m bench`` from the checkout, with the ``bench`` extra installed
(``pip install '.[bench]'``: numpy, psutil, and joblib for its peer; without numpy
it says so and exits with status 2), ``--quick`` for a smoke test, ``--only NAME``
for one metric. Every figure of the first table is measured
against a baseline of plain pyzmq between this process (a DEALER) and a server
process started with the multiprocessing ``spawn`` context (a ROUTER bound on
``ipc://``), so that the noise of a shared machine hits both sides alike:

* ``latency``: ask round trip of a small int, ``ref.echo(i).result()`` against a
  pickled ping-pong. 25 rounds of 400 calls alternate raw and dovecote after a
  warm-up, so that each pair runs within a second (this machine's speed moves
  within seconds); the table shows the median over rounds of each round's p50
  and p99. Then as many asks a side again, interleaved: one at a time, the two
  sides taking turns in an order drawn at random for each pair, so that each
  meets the machine's swings as often as the other; the p50 of all of them.
  Then the rounds again with a spawned process spinning on one core: with no
  core idle, a wake-up costs no exit from an idle state (on this virtual
  machine, most of a quiet round trip), and each side's CPU per ask shows in
  its latency; the median of the rounds' p50s.
* ``counts``: what one ask runs, in figures that do not move with the machine's
  speed: Python function calls and bytecodes per ``ref.echo(i)`` awaited, in this
  thread and in the worker's loop (``sys.settrace``), against the raw client's.
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

* ``actor-ask``, ``mesh``, ``actors``, ``bus-frames``: actors among themselves,
  many actors, and the bus by events per loop turn; see ``bench._mesh``. The
  ``numpy`` metric's shared-memory line says "not built" until it is.
* The ``latency`` metric also shows the CPU time per call of each side: this
  process (driver or raw client, all its threads) and the worker or raw server
  (psutil), over the timed rounds.

Throughputs and start and restart times alternate raw and dovecote repetitions
(after an untimed warm-up, but for ``start`` and ``restart``) and show the
median, and the best for numpy. The ratio column is always dovecote/raw, where
there is a raw side; the "better" column says which direction is good for both
figures and the ratio. PASS/MISS compares dovecote's figure with the issue's
target.

The task metrics, in a second table, set an ``ActorSystem(workers=2)`` beside
the usual Python peers with two worker processes each, in the same run:

* ``map-1m``: ``list(system.map(abs, range(1_000_000)))``, default chunking,
  against ``multiprocessing.Pool(2).map`` (its default chunking: four chunks per
  process), ``concurrent.futures.ProcessPoolExecutor(2).map`` with Pool's
  chunksize, and joblib ``Parallel(n_jobs=2, batch_size="auto")`` if installed
  ("not installed" otherwise). Items/s; every result list is checked. joblib,
  slow, runs once, in the middle round, and maps 100k items only if its 100k
  warm-up says 1M would take more than 20 s.
* ``submit-20k``: 20,000 ``system.submit(abs, -i)`` one by one, then every
  result, against ``ProcessPoolExecutor(2).submit`` the same way. Tasks/s.
* ``cpu-40``: 40 pure-Python tasks (``bench._tasks.burn``, its count calibrated
  in this process to take about 50 ms) through ``system.map(burn, [n] * 40,
  chunksize=1)``, against ``Pool(2).map(burn, [n] * 40, chunksize=1)``. Worker
  use: the time the tasks ran, each timed in its worker, / (2 x the wall time);
  and parallel efficiency: 40 x the single-task time / (2 x the wall time).
* ``pipeline``: 300,000 items through three tiny functions (``Stage(fn, 8,
  64)`` each) on three paths of dovecote itself, in alternating rounds: worker
  to worker (the default), every stage a hop (``DOVECOTE_PIPELINE=hops``), and
  the former path through the driver (``DOVECOTE_PIPELINE=driver``), which is
  the peer here. Items/s, and the driver's CPU share (its CPU time over the
  wall time); the note gives every path's driver and worker shares. See
  ``bench._pipeline``.

The peers start their processes from a forkserver (this process holds threads
and sockets: a forked child could inherit a lock held by one of them, and hang;
joblib's loky starts clean processes of its own). They start before the
ActorSystem, which is a fresh one per metric, and are started and warmed up
outside the timing, as the system is.
Rounds alternate the sides, dovecote first; the table shows medians, and the
ratio dovecote/peer, where higher is better for all.
"""
