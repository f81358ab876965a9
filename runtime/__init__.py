"""dovecote's engine: the processes and sockets behind ``actors``.

::

    driver                            supervisor                        worker k (N of them)
    ActorSystem                       control ROUTER                    mailbox ROUTER (ipc)
      │ DEALER ── spawn/lookup ─────▶   directory: id → slot, names       actors {id: instance}
      │                                 starts, watches, replaces   ──▶ asyncio loop
      │                                 workers; tells clients of deaths
      └ DEALER per worker ─── calls, batched ───────────────────────────▶ mailbox
                          ◀── replies, batched, on the same connection ──┘

* The driver (``_system``, ``_driver``) owns one DEALER per worker it talks to.
  Calls are pickled at the call site, queued per worker, and flushed as one
  message per batch. A thread waiting on a future drives the sockets itself;
  a background thread does it when nobody waits.
* The supervisor (``_supervisor``) is the control plane: it never carries actor
  traffic. It spawns workers from a clean interpreter, places actors, keeps the
  name directory, notices a worker's death through a pipe the worker holds for
  life, fails the calls pending on it (via the clients) and starts a new worker.
* A worker (``_worker``) binds one ROUTER mailbox in a private 0700 directory
  and runs its actors one message at a time each on an asyncio loop; it replies
  through the ROUTER envelope, with ROUTER_MANDATORY so nothing drops silently.
  While an actor's or a task's code holds the loop, its keeper thread sends the
  replies that are ready and answers cancels.
* ``_protocol`` is the wire format (pure functions: pickled batches on the data
  path, JSON control records), ``_transport`` the sending side shared by the
  driver and workers, ``_sockets`` the socket options, ``_procs`` how the
  runtime's processes start and how their deaths are seen.
"""

from runtime.driver import ActorSystem, Stage

__all__ = ["ActorSystem", "Stage"]
