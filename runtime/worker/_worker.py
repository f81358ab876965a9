"""A worker process: one mailbox ROUTER, many actors, one asyncio event loop.

The worker is assembled from parts, each in its own module: the ``Inbox`` reads
the mailbox (through the stash, answering cancels at once), ``Actors`` runs
each actor's messages in arrival order, one at a time unless the actor declares
concurrency (``@concurrent(n)``), ``Replies`` sends the
outcomes back through the ROUTER once per loop turn, the ``Keeper`` thread
answers for the worker while an actor's code holds the loop, the health thread
sends heartbeats and watches the limits, and the shared ``client.Transport``
carries the calls the actors make (to this very worker without sockets).

The worker exits when the supervisor tells it to, or by itself when the
supervisor's end of its stdin pipe closes (or, on Linux, on the parent-death
signal), so it never outlives the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import zmq

from actors import _engine
from actors._actor import Actor
from actors._future import ActorFuture
from actors._ref import ActorRef
from runtime import net, observe, wire
from runtime.client import Requests, Transport
from runtime.core import Cell, Mailbox, ProcessArgs
from runtime.net import Bus, Socket
from runtime.wire import Request
from runtime.worker._actors import DOWN_METHOD, EVENT_METHOD, Actors, call_hook
from runtime.worker._batch import run_batch, run_one
from runtime.worker._context import ActorBus, WorkerContext
from runtime.worker._health import Busy, HealthThread, log_async_hangs
from runtime.worker._inbox import Inbox
from runtime.worker._keeper import Keeper
from runtime.worker._local import LocalCalls
from runtime.worker._loop import MailboxReader, Reader, WorkerLoop, forked, noop
from runtime.worker._observe import Tagger, counters
from runtime.worker._replies import Replies
from runtime.worker._stages import Stages

__all__ = ["Worker", "main"]

log = logging.getLogger("dovecote")

NOTICES_EVERY = 0.01  # s: how often a flush looks for notices before it sends


class Worker:
    """The composition root of a worker process."""

    def __init__(self, args: ProcessArgs) -> None:
        self.args = args
        self.slot = args.slot
        self.ctx: net.Context = zmq.Context()
        self.auth = _secure(self.ctx, args)
        self.loop = WorkerLoop()
        self.busy = Busy()
        self._flush_scheduled = False
        self._control_seen = 0.0  # when a flush last looked for notices first
        self._loop_thread = threading.get_ident()  # the thread that runs the loop
        self._done = self.loop.create_future()
        self.mailbox = Mailbox(args.options.mailbox_size, args.expect)
        self.local = LocalCalls(self.slot, self.loop, self.mailbox)
        self.transport = self._transport()
        workers = None if args.listen is not None else args.options.workers  # a cluster's vary
        self.requests = Requests(self.transport, args.system_id, workers)
        self.replies, self.inbox, self.actors = self._actors()
        self.local.actors = self.actors
        self.bus = ActorBus(self.loop, functools.partial(Bus, self.ctx, args.addresses, self._name))
        self.keeper = Keeper(self.inbox, self.busy)
        self.health = self._health()

    @property
    def _name(self) -> str:
        return f"w{self.slot}.{self.args.epoch}"  # the epoch: a successor is another peer

    def _transport(self) -> Transport:
        options = self.args.options
        transport = Transport(
            self.ctx,
            self.args.addresses,
            self._name.encode(),
            (options.outbox_limit, options.send_timeout),
            (self._wake, _no_wait, self._waiter),
            self._on_dealer,
            threading.Lock(),
            local=self.local,
            direct=(self._take_direct, lambda: _check_sent(self.transport, self._readers)),
        )
        transport.set_epochs(self.args.epochs)
        transport.control.handlers.update(self._control_handlers())
        self._readers: dict[Socket, Reader] = {}
        return transport

    def _actors(self) -> tuple[Replies, Inbox, Actors]:
        sock = net.router(self.ctx, net.worker_endpoint(self.args.addresses.run_dir, self.slot))
        replies = Replies(self.loop, sock, self.slot, self.transport.resolve)
        replies.shm.pool = self.transport.shm.pool  # one process, one pool of segments
        inbox = Inbox(sock, (self.slot, self.args.epoch), self.mailbox, replies)
        actors = Actors(self.loop, self.mailbox, inbox, replies, self.busy)
        inbox.deliver = actors.deliver
        inbox.run_batch = functools.partial(run_batch, actors)
        stages = Stages(self.loop, self.transport, replies, inbox, self.args.system_id)
        actors.run_stage = stages.run
        actors.max_messages = self.args.options.max_messages
        actors.on_limit = self.recycle
        actors.on_gone = self._gone
        return replies, inbox, actors

    def _health(self) -> HealthThread:
        options = self.args.options
        return HealthThread(
            self.ctx,
            self.args.addresses,
            self._name,
            self.slot,
            options.heartbeat_interval,
            self.busy,
            options.hang_threshold,
            options.max_memory,
            lambda cause: self.loop.call_soon_threadsafe(self.recycle, cause),
            functools.partial(counters, self.actors, self.mailbox),
        )

    def _control_handlers(self) -> dict[type, Any]:
        return {
            wire.Create: self._op_create,
            wire.Suspend: self._op_suspend,
            wire.Abandon: self._op_abandon,
            wire.StopActor: self._op_stop_actor,
            wire.Epochs: self._op_epochs,
            wire.Exit: lambda _: self.shutdown(),
        }

    # -- lifecycle ----------------------------------------------------------------
    def run(self) -> None:
        _engine.install(self.args.system_id, self.transport)
        asyncio.set_event_loop(self.loop)
        os.register_at_fork(after_in_child=forked)
        reader = MailboxReader(self.loop, self.inbox.sock, self.inbox.on_frames, self.replies.flush)
        reader.one = functools.partial(run_one, self.actors)
        self.inbox.start(reader)
        self._listen()
        self.inbox.keeper = self.keeper
        self._on_dealer(self.transport.control.sock, True)
        self.loop.add_reader(sys.stdin.fileno(), self._on_parent_pipe)
        self.transport.control.notify(wire.Ready(self.slot, os.getpid()))
        self.flush()
        self.health.start()
        self.keeper.start()
        self.loop.call_later(self.args.options.hang_threshold / 2, self._check_async_hangs)
        try:
            self.loop.run_until_complete(self._done)
        finally:
            self._close()

    def _listen(self) -> None:
        """In a cluster, a second mailbox on tcp:// (CURVE) for callers on other hosts:
        a socket's security mechanism covers all its endpoints, so ipc keeps its own."""
        if self.args.listen is None:
            return
        sock = net.router(self.ctx, self.args.listen)
        self.replies.remote = sock
        self.inbox.remote = MailboxReader(self.loop, sock, self.inbox.on_remote, self.replies.flush)

    def _check_async_hangs(self) -> None:
        threshold = self.args.options.hang_threshold
        log_async_hangs(self.mailbox.cells.values(), threshold, self.slot)
        self.loop.call_later(threshold / 2, self._check_async_hangs)

    def recycle(self, cause: str) -> None:
        """Past a limit: stop the actors and exit, for the supervisor to restart them."""
        if self.inbox.recycling is None:
            log.warning("worker %d: %s; recycling", self.slot, cause)
            self.inbox.recycling = cause
            self.inbox.pause()
            self.transport.control.notify(wire.Recycle(self.slot, cause))
            self.flush()

    def _on_parent_pipe(self) -> None:
        if not os.read(sys.stdin.fileno(), 4096):
            log.warning("worker %d: the supervisor is gone; exiting", self.slot)
            self.loop.remove_reader(sys.stdin.fileno())
            self.shutdown()

    def shutdown(self) -> None:
        """Stop every actor, newest first, then end the loop.

        When recycling, calls still queued get no reply here: the supervisor's
        notice fails them with the limit as the cause (or re-sends retryable ones).
        """
        recycling = self.inbox.recycling
        for actor_id in reversed(list(self.mailbox.cells)):
            cell = self.mailbox.cells[actor_id]
            if recycling and cell.actor is not None:
                call_hook(cell.actor.on_restart, recycling, self.slot)
            self.actors.stop_cell(actor_id, None if recycling else "its worker shut down")
        self.replies.flush()
        if not self._done.done():
            self._done.set_result(None)

    def _close(self) -> None:
        self.keeper.stop()
        self.health.stop()
        self.bus.close()
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        for mailbox in (self.inbox.reader, self.inbox.remote):
            if mailbox is not None:
                mailbox.close()
        for reader in list(self._readers.values()):
            reader.stop()
        self.transport.close_sockets()
        self.loop.close()
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()

    # -- the transport's hooks ---------------------------------------------------------
    def _wake(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.at_turn_end(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        now = time.monotonic()
        if now - self._control_seen >= NOTICES_EVERY:
            # Notices first: a worker's death changes how calls are sent. Looked for
            # at most once in NOTICES_EVERY, not with a zmq_poll every flush (every
            # call, for an actor that asks one at a time): a notice that came just
            # before is read by its reader after the send, as if it had come just
            # after, and the call is failed or re-sent as any call to a dead worker.
            self._control_seen = now
            control = self._readers.get(self.transport.control.sock)
            if control is not None and net.readable(control.sock):
                control.run()
        if not self.transport.flush():
            self._flush_scheduled = True
            self.loop.call_later(0.001, self.flush)
        _check_sent(self.transport, self._readers)

    def _take_direct(self) -> bool:
        """A call that actor code makes on the loop thread may go at once (see
        ``Transport.call``) rather than at the turn's end, if nothing waits to be
        sent before it."""
        return threading.get_ident() == self._loop_thread and not self.transport.has_outgoing()

    def _waiter(self, future: ActorFuture[Any], timeout: float | None) -> None:
        if timeout is not None and timeout < 0:
            return  # a callback waits: the event loop delivers every reply anyway
        raise RuntimeError(
            f"{future.label}: a blocking result() inside an actor would stall worker "
            f"{self.slot}; make the method `async def` and `await` the call instead"
        )

    def _on_dealer(self, sock: Socket, added: bool) -> None:
        if added:
            control = self.transport.control
            handler = control.on_message if sock is control.sock else None
            handler = handler or self.transport.on_data
            self._readers[sock] = Reader(self.loop, sock, handler, noop, net.recv_batch)
        else:
            self._readers.pop(sock).stop()

    def _gone(self, actor_id: int, request: Request | None) -> None:
        """An actor stopped for good: the supervisor frees its name; a stop() call is
        answered once that is done."""
        gone = self.requests.actor_gone(actor_id)

        def stopped(_: object) -> None:
            if request is not None:
                self.replies.reply(request, None)
                self.replies.schedule()

        gone.add_done_callback(stopped)
        self.flush()

    # -- control plane ------------------------------------------------------------
    def _op_create(self, message: wire.Create) -> None:
        actor_id = message.actor_id
        try:
            actor = self._construct(message)
        except BaseException as exc:  # SystemExit too; a failed restart keeps its cell
            text = f"{type(exc).__name__}: {exc}"
            self.transport.control.notify(
                wire.Created(actor_id, False, wire.encode_error(exc), text)
            )
        else:
            cell = self.mailbox.cells.get(actor_id)
            if cell is None:
                self.mailbox.cells[actor_id] = Cell(actor)
            else:
                cell.place(actor)  # a restart: the queued messages are the new one's
                self.actors.process(cell)
                self.replies.schedule()  # not on the mailbox's path: flush here
            self.transport.control.notify(wire.Created(actor_id, True, None, ""))
        self.flush()

    def _construct(self, message: wire.Create) -> Actor:
        cls, args, kwargs = wire.loads(message.blob)
        actor: Actor = cls.__new__(cls)
        retry = tuple((name, times) for name, times in message.retry)
        actor._ref = ActorRef(
            self.args.system_id, message.actor_id, self.slot, message.name, retry, cls.__qualname__
        )
        actor._system = WorkerContext(
            self.requests,
            self.bus,
            functools.partial(self._notice, message.actor_id, DOWN_METHOD),
            lambda topic, obj: self._notice(message.actor_id, EVENT_METHOD, topic, obj),
        )
        cls.__init__(actor, *args, **kwargs)
        actor.on_start()
        return actor

    def _notice(self, actor_id: int, method: str, *args: Any) -> None:
        """A watch notice or a bus event reaches the actor's hook, in its turn."""
        blob, _ = wire.dumps((args, {}))
        self.actors.deliver(Request(None, wire.TELL, 0, actor_id, method, blob, ()))

    def _op_suspend(self, message: wire.Suspend) -> None:
        self.actors.suspend(message.actor_id, message.cause)
        self.transport.control.notify(wire.Suspended(message.actor_id))
        self.flush()

    def _op_epochs(self, message: wire.Epochs) -> None:
        """The workers restarted while this one was starting: (slot, epoch) pairs."""
        for slot, epoch in message.epochs:
            if slot != self.slot and self.transport.calls.epochs.get(slot, 0) != epoch:
                self.transport.fail_slot(slot, "restarted", epoch)

    def _op_abandon(self, message: wire.Abandon) -> None:
        """The supervisor gave up on the actor: fail what waits for it."""
        if message.actor_id in self.mailbox.cells:
            self.actors.stop_cell(message.actor_id, message.reason)
            self.replies.schedule()

    def _op_stop_actor(self, message: wire.StopActor) -> None:
        if message.actor_id in self.mailbox.cells:
            self.actors.stop_cell(message.actor_id, "the actor system is shutting down")
            self.replies.schedule()
        self.transport.control.notify(wire.Stopped(message.actor_id))
        self.flush()


def _secure(ctx: net.Context, args: ProcessArgs) -> Any:
    """In a cluster: the keys for every tcp socket, and the ZAP handler if we listen."""
    keys = args.addresses.keys
    if keys is None:
        return None
    return net.secure(ctx, net.load_keys(keys), serve=args.listen is not None)


def _no_wait(done: object, deadline: float) -> None:
    """Inside a worker nothing blocks: a full outbox raises, a cancel does not wait."""


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this process when the supervisor dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main(options: str) -> None:
    args = ProcessArgs.from_json(options)
    _die_with_parent()
    if os.getppid() != args.parent:
        sys.exit(1)  # the supervisor died before the death signal was armed
    observe.set_title(f"dovecote worker {args.slot} (system {args.system_id})")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    worker = Worker(args)
    levels = args.options.log_levels or {}
    observe.capture_output(Tagger(worker.busy, worker.mailbox), levels, args.options.log_level)
    worker.run()


def _check_sent(transport: Transport, readers: dict[Socket, Reader]) -> None:
    """After sends: each may have taken its socket's wake-up edge, so look at each."""
    for sock in transport.sent:
        reader = readers.get(sock)
        if reader is not None:
            reader.check()
    transport.sent.clear()
