"""A worker process: one mailbox ROUTER, many actors, one asyncio event loop.

Messages arrive on the mailbox in batches; each entry names an actor, and the
actor's cell runs them one at a time, in arrival order. A method that returns
an awaitable keeps its actor busy until it completes while the loop serves the
other actors. Replies are collected per caller and sent back through the
mailbox ROUTER (ROUTER_MANDATORY: an unreachable caller is an error, not a
silent drop) once per loop turn, so a burst of calls costs one message back.

While an actor's or a task's code runs, the loop thread lets go of the I/O lock
and the keeper thread answers for the worker: the replies that are ready leave
(a long call holds no other call's result), and a caller's cancel is answered
at once. A call is cancellable until it starts (``Worker._withdraw``).

The worker exits when the supervisor tells it to, or by itself when the
supervisor's end of its stdin pipe closes (or, on Linux, on the parent-death
signal), so it never outlives the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import io
import itertools
import json
import logging
import os
import signal
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import zmq

from actors._actor import RESERVED, Actor
from actors._errors import ActorStoppedError, SerializationError
from actors._future import ActorFuture
from actors._ref import STOP_METHOD, ActorRef
from runtime import _protocol as proto
from runtime import _sockets
from runtime._bus import SYNC, Publisher, Subscription, bus_endpoints
from runtime._health import Busy, HealthThread
from runtime._protocol import loads
from runtime._requests import WorkerContext, identity
from runtime._tasks import TASK_ACTOR, run_chunk
from runtime._transport import BARRIER_ACTOR, Transport, TransportOptions, _Outbox, _set

__all__ = ["main"]

log = logging.getLogger("dovecote")

_CALL, _CANCEL = proto.CALL, proto.CANCEL  # as globals: read on every message
_BUDGET = 64  # messages taken from one socket before the loop serves anything else
KEEP_AFTER = 0.002  # seconds an actor's code runs before the keeper answers for the worker
KEEPER_LOOKS = 0.02  # seconds between the keeper's looks for such code while none runs
KEEPER_WAITS_AT_MOST = 0.05  # seconds between its turns while the same code runs on
KEEPER_NAPS_AFTER = 0.1  # seconds without seeing actor code before it sleeps until woken
DOWN_METHOD = "__down__"  # delivers a watch notice to the watcher's on_down hook
EVENT_METHOD = "__event__"  # delivers a bus event to the subscriber's on_event hook


class _Request:
    """One call or tell as the worker sees it. Internal."""

    __slots__ = ("actor_id", "blob", "bufs", "cancelled", "kind", "method", "msg_id", "peer")

    def __init__(
        self,
        peer: bytes | None,
        kind: int,
        msg_id: int,
        actor_id: int,
        method: str,
        blob: Any,
        bufs: Any,
    ) -> None:
        self.peer = peer  # None: a call from an actor of this same worker
        self.kind = kind
        self.msg_id = msg_id
        self.actor_id = actor_id
        self.method = method
        self.blob = blob
        self.bufs = bufs
        self.cancelled = False  # by its caller, before it started: skipped when its turn comes


class _Cell:
    """An actor and its queue of messages not yet handled. Internal.

    While its actor is being (re)started the cell holds no actor and stays busy:
    messages wait in its queue for the new incarnation.
    """

    __slots__ = ("actor", "busy", "methods", "queue", "stop_after", "task", "task_since")

    def __init__(self, actor: Actor | None) -> None:
        self.actor = actor
        self.queue: deque[_Request] = deque()
        self.busy = actor is None
        self.task: asyncio.Task[Any] | None = None
        self.task_since = 0.0
        self.methods: dict[str, Callable[..., Any]] = {}
        self.stop_after = False  # the actor stopped itself: stop once this message ends

    def place(self, actor: Actor) -> None:
        self.actor = actor
        self.methods.clear()
        self.busy = False
        self.stop_after = False  # a stop asked by the incarnation before this one

    def method(self, name: str) -> Callable[..., Any]:
        method = self.methods.get(name)
        if method is None:
            assert self.actor is not None
            method = self.methods[name] = _method(self.actor, name)
        return method


class _Reader:
    """Feeds one ZeroMQ socket to the event loop. Internal.

    A socket's FD is edge-triggered and any send may consume the edge, so the
    socket is drained until EAGAIN and checked again after every send.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: zmq.Socket,
        handler: Callable[[list[Any]], None],
        after: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.handler = handler
        self.after = after
        self.paused = False
        self._scheduled = False
        loop.add_reader(sock.FD, self.run)

    def check(self) -> None:
        if not self._scheduled and not self.sock.closed and _sockets.readable(self.sock):
            self._scheduled = True
            self.loop.call_soon(self.run)

    def run(self) -> None:
        _leave_if_forked()
        self._scheduled = False
        if self.paused or self.sock.closed:
            return
        try:
            for _ in range(_BUDGET):
                if not _sockets.readable(self.sock):
                    return
                self.handler(_sockets.recv(self.sock, _sockets.DONTWAIT))
                if self.paused:
                    return
            self._scheduled = True  # more may be queued: let the loop breathe first
            self.loop.call_soon(self.run)
        finally:
            self.after()

    def close(self) -> None:
        self.loop.remove_reader(self.sock.FD)
        self.sock.close(linger=0)


class WorkerTransport(Transport):
    """Calls made by actors in this worker. Internal."""

    def __init__(self, worker: Worker, options: TransportOptions) -> None:
        super().__init__(worker.ctx, worker.system_id, worker.run_dir, options)
        self.worker = worker
        self.control = _sockets.dealer(
            worker.ctx,
            _sockets.control_endpoint(worker.run_dir),
            b"w%d.%d" % (worker.slot, worker.epoch),  # the epoch: a successor is another peer
            10_000,
        )
        self.readers: list[_Reader] = []
        self.control_reader: _Reader | None = None
        self._flush_scheduled = False
        self.publisher: Publisher | None = None
        self._subs: dict[Subscription, ActorFuture[None]] = {}
        self._bus_readers: dict[Subscription, _Reader] = {}
        self._hello: Subscription | None = None
        self._handshaking = False

    def _waiter(self, future: ActorFuture[Any], timeout: float | None) -> None:
        if timeout is not None and timeout < 0:
            return  # a callback waits: the event loop delivers every reply anyway
        raise RuntimeError(
            f"{future.label}: a blocking result() inside an actor would stall worker "
            f"{self.worker.slot}; make the method `async def` and `await` the call instead"
        )

    def _wait_for_room(self, outbox: _Outbox) -> None:
        raise self._full_error()

    def _kick(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.worker.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        reader = self.control_reader
        if reader is not None and _sockets.readable(reader.sock):
            reader.run()  # notices first: a worker's death changes how calls are sent
        if not self._flush_all():
            self._flush_scheduled = True
            self.worker.loop.call_later(0.001, self.flush)
        for reader in self.readers:
            reader.check()

    def _submit(
        self,
        slot: int,
        entry: tuple[Any, ...],
        bufs: list[Any],
        pending: tuple[Any, ...] | None,
    ) -> None:
        if slot != self.worker.slot:
            super()._submit(slot, entry, bufs, pending)
            return
        self._check_open()
        kind, msg_id, actor_id, method, blob, _ = entry
        if method == STOP_METHOD and self.worker.stop_self(actor_id):
            _set(pending[1], value=None)  # type: ignore[index]  # awaiting it must not deadlock
            return
        if pending is not None:
            self._pending[pending[0]] = (pending[1], slot)
        # A local call must not share memory with the caller: copy large buffers.
        copies = [bytes(memoryview(b)) for b in bufs]
        request = _Request(None, kind, msg_id, actor_id, method, blob, copies)
        if kind == proto.CALL:
            self.worker.local_calls[msg_id] = request
        self.worker.loop.call_soon(self.worker.deliver_local, request)

    def _cancel_sent(self, future: ActorFuture[Any], slot: int) -> bool:
        """Inside an actor nothing may block: a call to this worker is withdrawn if
        it has not started; one sent to another worker may run."""
        if slot != self.worker.slot:
            return False
        if not self.worker.claim_local(future.call_id):
            future.mark_running()  # not waiting to start: it runs, or has run
            return future.cancelled()
        with self._lock:
            self._pending.pop(future.call_id, None)
        return future.mark_cancelled()

    def _on_new_dealer(self, slot: int, sock: zmq.Socket) -> None:
        self.readers.append(_Reader(self.worker.loop, sock, self._on_data, _noop))

    # -- the event bus: actors publish and subscribe ---------------------------------
    def publish(self, topic: str, obj: Any) -> None:
        self._publisher().publish(topic, obj)
        self._schedule_handshake()

    def subscribe_actor(
        self, prefix: str, on_event: Callable[[str, Any], None]
    ) -> ActorFuture[None]:
        future: ActorFuture[None] = ActorFuture(f"subscribe({prefix!r})", self._waiter)
        self._add_sub(prefix, on_event, future)
        self._publisher()
        self._schedule_handshake()
        return future

    def _add_sub(
        self, prefix: str, on_event: Callable[[str, Any], None] | None, synced: ActorFuture[None]
    ) -> Subscription:
        sub = Subscription(self.ctx, self.run_dir, prefix, on_event, _no_wait, self._unsub)
        self._subs[sub] = synced
        deliver = sub.deliver
        self._bus_readers[sub] = _Reader(
            self.worker.loop, sub.sock, lambda frames: deliver(frames[0].bytes), _noop
        )
        return sub

    def _publisher(self) -> Publisher:
        if self.publisher is None:
            name = f"w{self.worker.slot}.{self.worker.epoch}"
            self.publisher = Publisher(self.ctx, bus_endpoints(self.run_dir)[0], name)
        return self.publisher

    def _unsub(self, sub: Subscription) -> None:
        self._subs.pop(sub, None)
        reader = self._bus_readers.pop(sub, None)
        if reader is not None:
            reader.close()

    def _schedule_handshake(self) -> None:
        if not self._handshaking:
            self._handshaking = True
            self.worker.loop.call_soon(self._handshake)

    def _handshake(self) -> None:
        """Sync messages until they come back; then the held events go out."""
        self._handshaking = False
        publisher = self._publisher()
        for sub, future in list(self._subs.items()):
            if sub.synced:
                publisher.ready = True
                if not future.done():
                    future.set_result(None)
                if sub is self._hello:
                    sub.close()
                    self._hello = None
        if not publisher.ready and not self._subs:  # only publishes: prove the path
            self._hello = self._add_sub(SYNC, None, ActorFuture("bus hello"))
        unsynced = [sub for sub in self._subs if not sub.synced]
        for sub in unsynced:
            publisher.sync(sub.sync_topic)
        if unsynced or not publisher.flush():
            self._handshaking = True
            self.worker.loop.call_later(0.01, self._handshake)

    def close_bus(self) -> None:
        for sub in list(self._subs):
            sub.close()
        if self.publisher is not None:
            self.publisher.close()

    def _on_dealer_closed(self, sock: zmq.Socket) -> None:
        reader = next(r for r in self.readers if r.sock is sock)
        self.readers.remove(reader)
        self.worker.loop.remove_reader(sock.FD)

    def _control_socket(self) -> zmq.Socket:
        return self.control


def _noop() -> None:
    pass


def _no_wait(done: Callable[[], bool], deadline: float | None) -> None:
    raise RuntimeError("inside an actor, events arrive in on_event(topic, obj)")


class Worker:
    """The actors of one worker process and the loop that serves them."""

    def __init__(self, opts: dict[str, Any]) -> None:
        self.slot: int = opts["slot"]
        self.epoch: int = opts.get("epoch", 0)
        self.run_dir: str = opts["run_dir"]
        self.system_id: str = opts["system_id"]
        self.mailbox_size: int = opts["mailbox_size"]
        self.ctx = zmq.Context()
        self.loop = asyncio.new_event_loop()
        self.mailbox = _sockets.router(self.ctx, _sockets.worker_endpoint(self.run_dir, self.slot))
        self.transport = WorkerTransport(self, TransportOptions(opts["outbox_limit"]))
        self.transport.epochs.update({int(k): v for k, v in opts.get("epochs", {}).items()})
        self.workers: int = opts["workers"]
        self.cells: dict[int, _Cell] = {aid: _Cell(None) for aid in opts.get("expect", ())}
        self._replies: dict[bytes, _Outbox] = {}
        self._backlog = 0
        self._reply_scheduled = False
        self._done = self.loop.create_future()
        self.max_messages: int | None = opts.get("max_messages")
        self.handled = 0
        self.recycling: str | None = None
        self.hang_threshold: float = opts.get("hang_threshold", 10.0)
        self.busy = Busy()
        # Calls from this worker to itself on their way to ``deliver``, by msg id.
        self.local_calls: dict[int, _Request] = {}
        # The loop thread holds the I/O lock (the mailbox, the replies, the cells'
        # queues and the fields below) except while an actor's or a task's code runs.
        self.io_lock = threading.Lock()
        self._stash: deque[_Request] = deque()  # read by the keeper, for the loop
        self._stash_scheduled = False
        self._kept = False  # the keeper has worked since the loop thread last looked
        self.keeper = _Keeper(self)
        self._control_handlers: dict[str, Callable[..., None]] = {
            "create": self._op_create,
            "suspend": self._op_suspend,
            "abandon": self._op_abandon,
            "stop_actor": self._op_stop_actor,
            "down": self.transport.on_down,
            "reply": self.transport._on_control_reply,
            "worker_died": self.transport.fail_slot,
            "epochs": self._op_epochs,
            "exit": self.shutdown,
        }
        self.health = HealthThread(
            self.ctx,
            self.run_dir,
            self.slot,
            opts.get("heartbeat_interval", 0.5),
            self.busy,
            self.hang_threshold,
            opts.get("max_memory"),
            lambda cause: self.loop.call_soon_threadsafe(self.recycle, cause),
        )

    # -- lifecycle ----------------------------------------------------------------
    def run(self) -> None:
        from actors import _engine

        _engine.install(self.system_id, self.transport)
        asyncio.set_event_loop(self.loop)
        self.io_lock.acquire()
        os.register_at_fork(after_in_child=_forked)
        self.inbox = _Reader(self.loop, self.mailbox, self._on_mailbox, self._flush_replies)
        control = _Reader(self.loop, self.transport.control, self._on_control, _noop)
        self.transport.readers.append(control)  # checked after each send on it
        self.transport.control_reader = control
        self.loop.add_reader(sys.stdin.fileno(), self._on_parent_pipe)
        self.transport.notify("ready", self.slot, os.getpid())
        self.transport.flush()
        self.health.start()
        self.keeper.start()
        self.loop.call_later(self.hang_threshold / 2, self._check_async_hangs)
        try:
            self.loop.run_until_complete(self._done)
        finally:
            self._close()

    def _check_async_hangs(self) -> None:
        """Log the stack of an async method that has held its actor too long."""
        now = time.monotonic()
        for cell in self.cells.values():
            task, since = cell.task, cell.task_since
            if task is not None and since and now - since >= self.hang_threshold:
                cell.task_since = 0.0  # once per message
                stack = io.StringIO()
                task.print_stack(limit=20, file=stack)  # where the coroutine waits now
                frames = stack.getvalue()
                log.warning(
                    "worker %d: an async method of %r has run for %.1f s; at:\n%s",
                    self.slot,
                    cell.actor and cell.actor.ref,
                    now - since,
                    frames,
                )
        self.loop.call_later(self.hang_threshold / 2, self._check_async_hangs)

    def recycle(self, cause: str) -> None:
        """Past a limit: stop the actors and exit, for the supervisor to restart them."""
        if self.recycling is None:
            log.warning("worker %d: %s; recycling", self.slot, cause)
            self.recycling = cause
            self.inbox.paused = True
            self.transport.notify("recycle", self.slot, cause)
            self.transport.flush()

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
        why = None if self.recycling else "its worker shut down"
        for actor_id in reversed(list(self.cells)):
            cell = self.cells[actor_id]
            if self.recycling and cell.actor is not None:
                _call_hook(cell.actor.on_restart, self.recycling, self.slot)
            self._stop_cell(actor_id, why)
        self._flush_replies()
        if not self._done.done():
            self._done.set_result(None)

    def _close(self) -> None:
        self.keeper.stop()
        self.health.stop()
        self.transport.close_bus()
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.inbox.close()
        for reader in self.transport.readers:
            reader.close()
        self.transport.close_sockets()
        self.loop.close()
        self.ctx.term()

    # -- control plane ------------------------------------------------------------
    def _on_control(self, frames: list[Any]) -> None:
        self.transport.dispatch_control(frames, self._control_handlers)

    def _op_create(self, actor_id: int, name: str | None, blob: bytes, retry: Any) -> None:
        try:
            actor = self._construct(actor_id, name, blob, retry)
        except BaseException as exc:  # SystemExit too; a failed restart keeps its cell
            text = f"{type(exc).__name__}: {exc}"
            self.transport.notify("created", actor_id, False, proto.encode_error(exc), text)
        else:
            cell = self.cells.get(actor_id)
            if cell is None:
                self.cells[actor_id] = _Cell(actor)
            else:
                cell.place(actor)  # a restart: the queued messages are the new one's
                self._process(cell)
                self._schedule_replies()  # not on the mailbox's path: flush here
            self.transport.notify("created", actor_id, True, None, "")
        self.transport.flush()

    def _op_suspend(self, actor_id: int, cause: str) -> None:
        """Stop an actor for a restart of its group; keep what is queued for it."""
        cell = self.cells.get(actor_id)
        if cell is not None and cell.actor is not None:
            actor = cell.actor
            _call_hook(actor.on_restart, cause, self.slot)
            _call_hook(actor.on_stop, None, self.slot)
            if cell.task is not None:
                cell.task.cancel()
            cell.actor = None
            cell.busy = True
        self.transport.notify("suspended", actor_id)
        self.transport.flush()

    def _op_epochs(self, epochs: list[tuple[int, int]]) -> None:
        """The workers restarted while this one was starting: (slot, epoch) pairs."""
        for slot, epoch in epochs:
            if slot != self.slot and self.transport.epochs.get(slot, 0) != epoch:
                self.transport.fail_slot(slot, "restarted", epoch)

    def _op_abandon(self, actor_id: int, reason: str) -> None:
        """The supervisor gave up on the actor: fail what waits for it."""
        if actor_id in self.cells:
            self._stop_cell(actor_id, reason)
            self._schedule_replies()

    def _op_stop_actor(self, actor_id: int) -> None:
        if actor_id in self.cells:
            self._stop_cell(actor_id, "the actor system is shutting down")
            self._schedule_replies()
        self.transport.notify("stopped", actor_id)
        self.transport.flush()

    def _deliver_event(self, subscriber: int, topic: str, obj: Any) -> None:
        """An event reaches the subscribing actor's on_event, in its turn."""
        blob, _ = proto.dumps(((topic, obj), {}))
        self.deliver(_Request(None, proto.TELL, 0, subscriber, EVENT_METHOD, blob, ()))

    def _deliver_down(self, watcher: int, watched: ActorRef, reason: str) -> None:
        """A watch notice reaches the watching actor's on_down, in its turn."""
        blob, _ = proto.dumps(((watched, reason), {}))
        self.deliver(_Request(None, proto.TELL, 0, watcher, DOWN_METHOD, blob, ()))

    def _construct(self, actor_id: int, name: str | None, blob: bytes, retry: Any) -> Actor:
        cls, args, kwargs = proto.loads(blob)
        actor: Actor = cls.__new__(cls)
        retry_table = tuple(map(tuple, retry))
        actor._ref = ActorRef(
            self.system_id, actor_id, self.slot, name, retry_table, cls.__qualname__
        )
        actor._system = WorkerContext(
            self.transport,
            self.workers,
            functools.partial(self._deliver_down, actor_id),
            functools.partial(self._deliver_event, actor_id),
        )
        cls.__init__(actor, *args, **kwargs)
        actor.on_start()
        return actor

    # -- data plane ---------------------------------------------------------------
    def _on_mailbox(self, frames: list[Any]) -> None:
        # Through the stash: what the keeper read before this message goes first, what
        # it reads while this one runs goes after, and a cancel finds what waits there.
        self._stash.extend(self._parse(frames))
        self._deliver_stash()

    def _parse(self, frames: list[Any]) -> list[_Request]:
        """The calls and tells of one message. Cancels are answered here, at once. A
        malformed message, or entry, is logged and dropped alone. Loop thread or keeper."""
        peer = bytes(frames[0])
        try:
            kind, body, buffers, epoch = proto.unpack(frames[1:])
            if epoch != self.epoch:
                log.warning(
                    "worker %d (epoch %d) dropped a batch sent to its predecessor (epoch %d) "
                    "from %s: the asks in it fail at their caller as crashed, tells are lost",
                    self.slot,
                    self.epoch,
                    epoch,
                    proto.peer_name(peer),
                )
                return []
            entries = proto.decode_body(body)
            if kind != proto.BATCH or type(entries) is not list:
                raise proto.ProtocolError(f"kind {kind} is not a batch")
        except proto.ProtocolError as exc:
            self._malformed(peer, exc)
            return []
        requests: list[_Request] = []
        offset: int | None = 0  # None once a bad entry hides where the next one's buffers start
        for entry in entries:  # each checked inline: this runs for every message
            try:
                kind, msg_id, actor_id, method, blob, nbufs = entry  # ValueError, TypeError
                if (
                    type(method) is not str
                    or type(actor_id) is not int
                    or type(msg_id) is not int
                    or type(nbufs) is not int
                    or type(kind) is not int
                    or kind not in _REQUEST_KINDS
                    or nbufs < 0
                ):
                    raise proto.ProtocolError(_bad_entry(kind, msg_id, actor_id, method, nbufs))
                if nbufs and (offset is None or offset + nbufs > len(buffers)):
                    raise proto.ProtocolError(f"an entry whose {nbufs} buffers are not there")
            except (proto.ProtocolError, ValueError, TypeError) as exc:
                self._malformed(peer, exc)
                offset = _skip_buffers(entry, offset)
                continue
            if kind == _CANCEL:
                self._on_cancel(peer, msg_id, requests)
                continue
            request = _Request(peer, kind, msg_id, actor_id, method, blob, ())
            if nbufs and offset is not None:  # checked above: its buffers are there
                request.bufs = buffers[offset : offset + nbufs]
                offset += nbufs
            requests.append(request)
        return requests

    def _malformed(self, peer: bytes, exc: Exception) -> None:
        name = proto.peer_name(peer)
        log.warning("worker %d dropped a malformed message from %s: %s", self.slot, name, exc)

    def _on_cancel(self, peer: bytes, msg_id: int, parsed: list[_Request]) -> None:
        """Drop a call that has not started; tell its caller which it was. ``parsed``:
        the calls before the cancel in its own message."""
        dropped = self._withdraw(peer, msg_id, parsed)
        entry = (proto.CANCELLED if dropped else proto.STARTED, msg_id, 0, "", b"", 0)
        self._queue_reply(peer, entry, [])

    def _withdraw(self, peer: bytes | None, msg_id: int, parsed: Sequence[_Request] = ()) -> bool:
        """Mark a call that has not started as cancelled. A call waits in the stash,
        in an actor's queue, or (just parsed) in ``parsed``: it is found there, or it
        has started. A search, rare, rather than a table kept for every call."""
        waiting = itertools.chain(parsed, self._stash, *(c.queue for c in self.cells.values()))
        for request in waiting:
            if request.msg_id == msg_id and request.peer == peer and request.kind == _CALL:
                request.cancelled = True
                return True
        return False

    def claim_local(self, msg_id: int) -> bool:
        """Withdraw a call made from this worker to itself, if it has not started."""
        request = self.local_calls.pop(msg_id, None)  # not yet delivered
        if request is None:
            return self._withdraw(None, msg_id)
        request.cancelled = True
        return True

    def _deliver_stash(self) -> None:
        self._stash_scheduled = False
        stash = self._stash
        while stash:
            self.deliver(stash.popleft())

    def _after_keeper(self) -> None:
        """Deliver what the keeper read; this is not the mailbox reader's turn, so
        flush the replies here, and look for what the keeper left in the socket."""
        self._deliver_stash()
        self._flush_replies()

    def keep(self) -> None:
        """From the keeper thread, while an actor's code runs and the I/O lock is the
        keeper's: send the replies that are ready, and read what came meanwhile."""
        self._kept = True
        self._send_replies()
        room = self.mailbox_size - self._backlog - len(self._stash)
        if self.inbox.paused or self.recycling or self.mailbox.closed:
            return
        for _ in range(min(room, _BUDGET)):
            if not _sockets.readable(self.mailbox):
                break
            self._stash.extend(self._parse(_sockets.recv(self.mailbox, _sockets.DONTWAIT)))
        self._send_replies()  # cancel verdicts

    def _call_user(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """Run an actor's or a task's code with the I/O lock released: the keeper
        answers for the worker meanwhile (see ``keep``)."""
        if self.keeper.asleep:
            self.keeper.wake.set()
        lock = self.io_lock
        lock.release()
        try:
            return fn(*args, **kwargs)
        finally:
            _leave_if_forked()  # before the lock: a forked child may hold no keeper
            lock.acquire()
            if self._kept:
                self._after_user_code()

    def _after_user_code(self) -> None:
        """The keeper worked meanwhile: its reads and sends may have taken the
        socket's wake-up edge, and it may have stashed calls. The loop looks again."""
        self._kept = False
        if not self._stash_scheduled:
            self._stash_scheduled = True
            self.loop.call_soon(self._after_keeper)

    def deliver_local(self, request: _Request) -> None:
        """A call from this worker to itself reaches its actor (see ``claim_local``)."""
        self.local_calls.pop(request.msg_id, None)
        self.deliver(request)

    def deliver(self, request: _Request) -> None:
        if request.cancelled:
            return  # by its caller, before it started: its verdict has gone
        if self.recycling:
            return  # unanswered: the supervisor's notice fails it, naming the limit
        cell = self.cells.get(request.actor_id)
        if cell is None:
            if request.actor_id == TASK_ACTOR:
                self._run_task(request)
            elif request.actor_id == BARRIER_ACTOR:
                self._reply(request, None)  # every earlier message from this sender is in
            else:
                self._dead_letter(request)
            return
        if not cell.busy and not cell.queue:
            self._execute(cell, request)
            return
        cell.queue.append(request)
        self._backlog += 1
        if not cell.busy:
            self._process(cell)
        elif self._backlog >= self.mailbox_size:
            self.inbox.paused = True  # the senders' pipes fill: backpressure

    def _process(self, cell: _Cell) -> None:
        while cell.queue and not cell.busy:
            request = cell.queue.popleft()
            self._backlog -= 1
            self._execute(cell, request)
        self._resume_inbox()

    def _resume_inbox(self) -> None:
        """Read the mailbox again once the backlog has halved (not while recycling)."""
        if self.inbox.paused and not self.recycling and self._backlog < self.mailbox_size // 2:
            self.inbox.paused = False
            self.loop.call_soon(self.inbox.run)

    def _execute(self, cell: _Cell, request: _Request) -> None:
        if request.cancelled:
            return  # by its caller, while it waited in the queue
        if request.method == STOP_METHOD:
            self._stop_actor(request.actor_id, request)
            return
        self.busy.start(request.method, request.actor_id)
        try:
            method: Callable[..., Any]
            if request.method == DOWN_METHOD:  # a watched actor ended: the hook runs
                method = cell.actor.on_down  # type: ignore[union-attr]
            elif request.method == EVENT_METHOD:
                method = cell.actor.on_event  # type: ignore[union-attr]
            else:
                method = cell.method(request.method)
            try:
                args, kwargs = loads(request.blob, request.bufs)
            except BaseException as exc:
                raise _unpickling_error(request, exc) from exc
            result = self._call_user(method, args, kwargs)
        except BaseException as exc:  # SystemExit too: it goes to the caller, the worker lives
            self.busy.end()
            self._reply_error(request, exc)
        else:
            self.busy.end()
            if _awaitable(result):  # an ActorFuture is awaitable too
                self._outcome(cell, request, result)
            elif request.kind == _CALL:
                self._reply(request, result)
        self._count()
        if cell.stop_after and not cell.busy:
            self._stop_actor(request.actor_id, None)

    def _outcome(self, cell: _Cell, request: _Request, result: Any) -> None:
        """Reply with what a method returned: at once, or when what it returned completes."""
        if type(result) is ActorFuture:
            # The reply of another call (perhaps to this very actor): forwarded when it
            # comes, and the actor is free meanwhile, so a call to itself cannot deadlock.
            # On the loop's turn: a cancel() in an actor's code would run it unlocked.
            forward = functools.partial(self._forward, request)
            result.add_done_callback(lambda future: self.loop.call_soon(forward, future))
        elif _awaitable(result):
            cell.busy = True
            cell.task = task = asyncio.ensure_future(_contained(result))
            cell.task_since = time.monotonic()
            task.add_done_callback(functools.partial(self._finish, cell, request))
        else:
            self._reply(request, result)

    def _forward(self, request: _Request, future: ActorFuture[Any]) -> None:
        if future.cancelled():
            self._reply_error(request, ActorStoppedError(f"{future.label} was cancelled"))
        elif future.exception() is not None:
            self._reply_error(request, future.exception())  # type: ignore[arg-type]
        else:
            self._reply(request, future.result())
        self._schedule_replies()

    def _count(self) -> None:
        """One more message handled: past ``max_messages`` the worker is recycled."""
        self.handled += 1
        if self.max_messages is not None and self.handled >= self.max_messages:
            self.recycle(f"message limit: {self.handled} messages handled")

    def _finish(self, cell: _Cell, request: _Request, task: asyncio.Future[Any]) -> None:
        _leave_if_forked()
        if cell.task is not task:  # the actor was stopped or suspended meanwhile
            if not self.recycling:
                err = ActorStoppedError(f"{request.method}() was interrupted: its actor stopped")
                self._reply_error(request, err)
                self._schedule_replies()
            return
        cell.busy = cell.actor is None
        cell.task = None
        if task.cancelled():
            self._reply_error(request, ActorStoppedError(f"{request.method}() was cancelled"))
        elif task.exception() is not None:
            self._reply_error(request, task.exception())  # type: ignore[arg-type]
        elif type(task.result()) is _Raised:
            self._reply_error(request, task.result().exc)
        else:
            self._outcome(cell, request, task.result())
        self._schedule_replies()
        if cell.stop_after and cell.actor is not None:
            self._stop_actor(request.actor_id, None)
        elif request.actor_id in self.cells:
            self._process(cell)

    def _run_task(self, request: _Request) -> None:
        """A stateless task: one function call, or a chunk of a map."""
        self.busy.start(f"task {request.method}", TASK_ACTOR)
        try:
            try:
                (fn, *rest), _ = loads(request.blob, request.bufs)
            except BaseException as exc:
                raise _unpickling_error(request, exc) from exc
            if request.method == "chunk":
                result = self._call_user(run_chunk, (fn, *rest), {})
            else:
                args, kwargs = rest
                result = self._call_user(fn, args, kwargs)
        except BaseException as exc:  # SystemExit too: it goes to the caller, the worker lives
            self.busy.end()
            self._reply_error(request, exc)
        else:
            self.busy.end()
            self._reply(request, result)
        self._count()

    def stop_self(self, actor_id: int) -> bool:
        """``self.ref.stop()`` from the actor's own running code: True, and the actor
        stops once the current message ends. Anyone else's stop queues as usual."""
        cell = self.cells.get(actor_id)
        if cell is None or cell.actor is None:
            return False
        sync_now = self.busy.what is not None and self.busy.actor_id == actor_id
        task = cell.task
        if not sync_now and (task is None or task is not asyncio.current_task(self.loop)):
            return False
        cell.stop_after = True
        return True

    def _stop_actor(self, actor_id: int, request: _Request | None) -> None:
        """Stop an actor for good: by a call to stop() (answered once its name is free)
        or by itself (``request`` is None)."""
        self._stop_cell(actor_id, "it was stopped")
        gone = self.transport.request("actor gone", identity, "actor_gone", actor_id)

        def stopped(_: object) -> None:  # the name is free once stop() returns
            if request is not None:
                self._reply(request, None)
                self._schedule_replies()

        gone.add_done_callback(stopped)
        self.transport.flush()

    def _stop_cell(self, actor_id: int, why: str | None) -> None:
        """Stop an actor (or drop the place held for one); fail its queue with ``why``,
        or leave its calls unanswered when ``why`` is None (see shutdown). Further
        stop() calls in the queue are no-ops that complete."""
        cell = self.cells.pop(actor_id)
        task, cell.task = cell.task, None
        if cell.actor is not None:
            _call_hook(cell.actor.on_stop, None, self.slot)
        if task is not None:
            task.cancel()
        self._backlog -= len(cell.queue)
        self._resume_inbox()
        while cell.queue:
            request = cell.queue.popleft()
            if request.cancelled or why is None:
                continue
            if request.method == STOP_METHOD:
                self._reply(request, None)
                continue
            err = ActorStoppedError(
                f"{_describe(cell.actor, actor_id)} stopped before handling "
                f"{request.method}(): {why}"
            )
            self._reply_error(request, err)

    def _dead_letter(self, request: _Request) -> None:
        if request.method == STOP_METHOD:
            self._reply(request, None)  # stopping a stopped actor is a no-op
            return
        err = ActorStoppedError(
            f"actor #{request.actor_id} is not running on worker {self.slot}: "
            f"{request.method}() was not delivered"
        )
        if request.kind == proto.TELL:
            log.warning("dead letter: %s", err)
        self._reply_error(request, err)

    # -- replies ------------------------------------------------------------------
    def _reply(self, request: _Request, value: Any) -> None:
        if request.kind != proto.CALL:
            return
        try:
            blob, bufs = proto.dumps(value)
        except BaseException as exc:  # SystemExit from a __reduce__ goes to the caller
            self._reply_error(request, _pickling_error(request, exc))
            return
        self._queue_reply(request.peer, (proto.OK, request.msg_id, 0, "", blob, len(bufs)), bufs)

    def _reply_error(self, request: _Request, exc: BaseException) -> None:
        if request.kind != proto.CALL:
            log.error(
                "worker %d: tell %r to actor #%d failed",
                self.slot,
                request.method,
                request.actor_id,
                exc_info=exc,
            )
            return
        entry = (proto.ERR, request.msg_id, 0, "", proto.encode_error(exc), 0)
        self._queue_reply(request.peer, entry, [])

    def _queue_reply(self, peer: bytes | None, entry: tuple[Any, ...], bufs: list[Any]) -> None:
        if peer is None:  # a call from this worker to itself
            copies = [bytes(memoryview(b)) for b in bufs]
            self.transport._resolve(entry[0], entry[1], entry[4], copies)
            return
        outbox = self._replies.get(peer)
        if outbox is None:
            outbox = self._replies[peer] = _Outbox()
        outbox.entries.append(entry)
        if bufs:
            outbox.buffers.extend(bufs)

    def _schedule_replies(self) -> None:
        if not self._reply_scheduled:
            self._reply_scheduled = True
            self.loop.call_soon(self._flush_replies)

    def _flush_replies(self) -> None:
        self._reply_scheduled = False
        if self._replies and not self._send_replies():
            # a caller is not reading yet: keep its replies, try again soon
            self._reply_scheduled = True
            self.loop.call_later(0.001, self._flush_replies)
        self.inbox.check()

    def _send_replies(self) -> bool:
        """Send every caller its replies; False if one of them is not reading."""
        return all([self._flush_peer(peer) for peer in list(self._replies)])

    def _flush_peer(self, peer: bytes) -> bool:
        outbox = self._replies[peer]
        while outbox.entries:
            entries, buffers = outbox.take()
            try:
                _sockets.send(
                    self.mailbox, [peer, *proto.encode_batch(entries, buffers)], _sockets.DONTWAIT
                )
            except zmq.Again:
                outbox.put_back(entries, buffers)
                return False  # the caller is not reading yet: keep the replies
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                log.warning(
                    "worker %d: %d replies undeliverable: %s",
                    self.slot,
                    len(entries) + len(outbox.entries),
                    proto.peer_name(peer),
                )
                break
        del self._replies[peer]
        return True


class _Keeper(threading.Thread):
    """Answers for the worker while an actor's or a task's code holds the loop
    thread. Internal.

    Once that code has run for KEEP_AFTER, the keeper takes the I/O lock (free only
    then: see ``Worker._call_user``), sends the replies that are ready and reads
    the mailbox: cancels are answered at once, calls are stashed for the loop in
    arrival order. It looks every KEEPER_LOOKS while no code runs, and naps when
    none has run for a while, so that calls of microseconds pay for no thread
    wake-ups. So a long call delays no other call's reply by more than tens of
    milliseconds, and a caller soon learns whether its cancel came in time.
    """

    def __init__(self, worker: Worker) -> None:
        super().__init__(name="dovecote-keeper", daemon=True)
        self.worker = worker
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.asleep = False

    def run(self) -> None:
        busy = self.worker.busy
        seen = time.monotonic()  # when actor code was last seen running
        while not self.stopping.is_set():
            now = time.monotonic()
            if busy.what is None:
                if now - seen > KEEPER_NAPS_AFTER:
                    self.nap()
                    seen = time.monotonic()
                    continue
                wait = KEEPER_LOOKS  # short calls come and go unseen: nothing to do
            else:
                seen, running = now, now - busy.since
                if running >= KEEP_AFTER:
                    self.keep()
                # soon after a call starts, then less often as it goes on
                wait = max(KEEP_AFTER - running, min(running / 2, KEEPER_WAITS_AT_MOST))
            self.stopping.wait(wait)

    def keep(self) -> None:
        worker = self.worker
        if worker.io_lock.acquire(blocking=False):  # free only while actor code runs
            try:
                worker.keep()
            except Exception:
                log.exception("worker %d: the keeper failed", worker.slot)
            finally:
                worker.io_lock.release()

    def nap(self) -> None:
        """Sleep until actor code runs again (``Worker._call_user`` wakes it)."""
        self.wake.clear()
        self.asleep = True
        if self.worker.busy.what is None:  # checked after the flag: no lost wake-up
            self.wake.wait()
        self.asleep = False

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.join(timeout=5)


class _Raised:
    """SystemExit or KeyboardInterrupt out of an actor's coroutine. Internal."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def _contained(awaitable: Awaitable[Any]) -> Any:
    """Await an actor's coroutine. asyncio lets SystemExit out of the event loop,
    which would end the worker: it comes back as a value, for the caller."""
    try:
        return await awaitable
    except (SystemExit, KeyboardInterrupt) as exc:
        return _Raised(exc)


def _unpickling_error(request: _Request, exc: BaseException) -> SerializationError:
    """A request's arguments do not unpickle (even SystemExit from a __setstate__)."""
    return SerializationError(f"{_what(request)}: cannot unpickle its arguments: {exc!r}")


def _pickling_error(request: _Request, exc: BaseException) -> BaseException:
    if not isinstance(exc, Exception):
        return exc  # SystemExit raised while pickling: the caller gets it as it is
    return SerializationError(f"{_what(request)} returned a value that does not pickle: {exc}")


def _what(request: _Request) -> str:
    return "the task" if request.actor_id == TASK_ACTOR else f"{request.method}()"


def _describe(actor: Actor | None, actor_id: int) -> str:
    return f"actor #{actor_id}" if actor is None else repr(actor.ref)


_in_forked_child = False


def _forked() -> None:
    """After os.fork() in an actor, in the child: see ``_leave_if_forked``."""
    global _in_forked_child
    _in_forked_child = True


def _leave_if_forked() -> None:
    """A child forked by an actor's code that comes back into the runtime exits at
    once: it holds copies of the worker's sockets and loop, which must not run."""
    if _in_forked_child:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)


_AWAITABLE: dict[type, bool] = {}


def _awaitable(value: Any) -> bool:
    """``inspect.isawaitable`` for the per-message path, cached per type."""
    kind = type(value)
    known = _AWAITABLE.get(kind)
    if known is None:
        if kind is types.GeneratorType:  # awaitable or not per object
            return inspect.isawaitable(value)
        known = _AWAITABLE[kind] = inspect.isawaitable(value)
    return known


_REQUEST_KINDS = frozenset({proto.CALL, proto.TELL, proto.CANCEL})


def _skip_buffers(entry: Any, offset: int | None) -> int | None:
    """Past a dropped entry's buffers, if its count can be read; else None, and the
    later entries that have buffers are dropped too (theirs cannot be found)."""
    if offset is None or type(entry) is not tuple or len(entry) != 6:
        return None
    nbufs = entry[5]
    return offset + nbufs if type(nbufs) is int and nbufs >= 0 else None


def _bad_entry(*fields: Any) -> str:
    """What is wrong with an entry ``(kind, msg_id, actor_id, method, nbufs)``, by
    types only: a hostile value may not even repr."""
    return "an entry of types " + ", ".join(type(field).__name__ for field in fields)


def _method(actor: Actor, name: str) -> Callable[..., Any]:
    if name.startswith("_") or name in RESERVED:
        raise AttributeError(f"{type(actor).__name__}.{name} cannot be called through a ref")
    method = getattr(actor, name, None)
    if not callable(method):
        raise AttributeError(f"{type(actor).__name__} has no method {name!r}")
    return method  # type: ignore[no-any-return]


def _call_hook(hook: Callable[..., None], arg: Any, slot: int) -> None:
    """Run on_stop or on_restart; an error there, even SystemExit, is logged only."""
    try:
        hook() if arg is None else hook(arg)
    except BaseException:
        log.exception("worker %d: %s raised", slot, getattr(hook, "__qualname__", hook))


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this process when the supervisor dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main(options: str) -> None:
    opts = json.loads(options)
    _die_with_parent()
    if os.getppid() != opts["parent"]:
        sys.exit(1)  # the supervisor died before the death signal was armed
    logging.basicConfig(
        level=opts.get("log_level", "WARNING"),
        format=f"%(asctime)s worker {opts['slot']} %(levelname)s %(message)s",
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    Worker(opts).run()
