"""dovecote's engine: the processes and sockets behind ``actors``.

::

    driver                            supervisor                        worker k (N of them)
    ActorSystem                       control ROUTER                    mailbox ROUTER (ipc)
      │ DEALER ── spawn/lookup ─────▶   directory: id → slot, names       actors {id: instance}
      │                                 starts, watches, replaces   ──▶ asyncio loop
      │                                 workers; tells clients of deaths
      └ DEALER per worker ─── calls, batched ───────────────────────────▶ mailbox
                          ◀── replies, batched, on the same connection ──┘

One package per concern; imports go down this list, and the process packages
(driver, supervisor, worker, node) never import each other:

* ``wire``: sans-IO. Frames and header, batch entries (plain tuples whose
  fields ``Entry`` names; ``Request`` as received), the pickle codec (out-of-band buffers, remote
  errors), the descriptors of buffers sent through shared memory, and one
  frozen record per control op with its JSON codec, among them a system's
  ``Addresses`` and a worker slot's ``Place`` in a cluster.
* ``core``: sans-IO state and decisions, the time passed in. ``SystemOptions``
  and ``ProcessArgs`` (validated once, in the driver, then JSON), supervision
  policy as pure functions, the supervisor's ``Directory``, crash detection's
  three ways (``Liveness``: exit, heartbeat lost, limit), the sending side's
  ``Calls`` (outboxes, pending calls, retry plan) and a worker's ``Mailbox``.
* ``net``: the only place that opens sockets. Factories, ipc endpoints in a
  0700 directory, CURVE keys and the ZAP allow-list on every tcp socket, the
  bus's ends (``Bus``: one sync handshake for every
  process) and its proxy, how the runtime's processes are started, and the
  shared memory that large buffers take between processes of one host
  (``Sharing``, ``Pool``, ``attach``).
* ``client``: the sending side every process owns. ``Transport`` is composed,
  not subclassed: each process hands it a way to wake its I/O owner, a way to
  wait (or to refuse to), a future's waiter and a clock; ``Control`` is the
  channel to the supervisor, ``Cancels`` the cancel protocol, ``Requests`` the
  directory's requests.
* ``driver``: ``ActorSystem``; ``DriverIO``, the I/O token (a thread that waits
  drives the sockets itself; a background thread when nobody waits); tasks,
  maps and pipelines, scheduled by their submitter.
* ``supervisor``: the control plane. The loop and its handlers (dispatch by
  record type), restarts as generator procedures, the worker processes; as a
  cluster's head (``dovecote head``), its nodes and the drivers owning actors.
* ``node``: a cluster node (``dovecote node``): one host's workers, started,
  signalled and reported on as the head says.
* ``observe``: what operators see: worker output and logs, status, discovery
  files, the operators' commands, metrics, progress bars.
* ``worker``: the composition root and its parts: the ``Inbox`` (the mailbox
  ROUTER read through a stash; cancels answered at once), ``Actors`` (one
  message at a time per actor, awaitables on the loop), ``Replies`` (batched
  per caller), the keeper thread (answers while actor code runs), the health
  thread (heartbeats, limits), the actor's context, the task runner.

One ask, end to end: ``ref.method(...)`` → ``client.Transport.call`` pickles
the arguments (``wire``), queues its entry in ``core.Calls`` and wakes the
I/O owner (``driver.DriverIO``), which flushes one ``BATCH`` on the DEALER to
worker k (``net``). There the worker's loop (``worker._loop.WorkerLoop``) reads it,
``worker.Inbox`` runs its entries (``run_batch``: an idle actor's known
method straight from the entry; anything else as a ``Request`` through
``worker.Actors``), ``worker.Replies`` sends the outcome back through the
ROUTER envelope, and ``Transport.on_data`` (``client.Results``) completes the
future.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.driver import ActorSystem, AsyncActorSystem, DovecoteExecutor, Stage

__all__ = ["ActorSystem", "AsyncActorSystem", "DovecoteExecutor", "Stage"]


def __getattr__(name: str) -> Any:
    """The driver's API, imported on first use: the supervisor and the workers
    import ``runtime`` too, and start faster without the driver's modules."""
    if name in __all__:
        from runtime import driver

        return getattr(driver, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
