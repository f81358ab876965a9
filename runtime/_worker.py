"""A worker process: one mailbox ROUTER, many actors, one asyncio event loop.

Messages arrive on the mailbox in batches; each entry names an actor, and the
actor's cell runs them one at a time, in arrival order. A method that returns
an awaitable keeps its actor busy until it completes while the loop serves the
other actors. Replies are collected per caller and sent back through the
mailbox ROUTER (ROUTER_MANDATORY: an unreachable caller is an error, not a
silent drop) once per loop turn, so a burst of calls costs one message back.

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
import json
import logging
import os
import signal
import sys
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

import zmq

from actors._actor import RESERVED, Actor
from actors._errors import ActorStoppedError, SerializationError
from actors._future import ActorFuture
from actors._ref import STOP_METHOD, ActorRef
from runtime import _protocol as proto
from runtime import _sockets
from runtime._bus import SYNC, Publisher, Subscription, bus_endpoints
from runtime._health import Busy, HealthThread
from runtime._requests import WorkerContext, identity
from runtime._tasks import TASK_ACTOR, run_chunk
from runtime._transport import BARRIER_ACTOR, Transport, TransportOptions, _Outbox

__all__ = ["main"]

log = logging.getLogger("dovecote")

_BUDGET = 64  # messages taken from one socket before the loop serves anything else
DOWN_METHOD = "__down__"  # delivers a watch notice to the watcher's on_down hook
EVENT_METHOD = "__event__"  # delivers a bus event to the subscriber's on_event hook


class _Request:
    """One call or tell as the worker sees it. Internal."""

    __slots__ = ("actor_id", "blob", "bufs", "kind", "method", "msg_id", "peer")

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


class _Cell:
    """An actor and its queue of messages not yet handled. Internal.

    While its actor is being (re)started the cell holds no actor and stays busy:
    messages wait in its queue for the new incarnation.
    """

    __slots__ = ("actor", "busy", "methods", "queue", "task", "task_since")

    def __init__(self, actor: Actor | None) -> None:
        self.actor = actor
        self.queue: deque[_Request] = deque()
        self.busy = actor is None
        self.task: asyncio.Task[Any] | None = None
        self.task_since = 0.0
        self.methods: dict[str, Callable[..., Any]] = {}

    def place(self, actor: Actor) -> None:
        self.actor = actor
        self.methods.clear()
        self.busy = False

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
        if pending is not None:
            self._pending[pending[0]] = (pending[1], slot)
        kind, msg_id, actor_id, method, blob, _ = entry
        # A local call must not share memory with the caller: copy large buffers.
        copies = [bytes(memoryview(b)) for b in bufs]
        request = _Request(None, kind, msg_id, actor_id, method, blob, copies)
        self.worker.loop.call_soon(self.worker.deliver, request)

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
        self._control_handlers: dict[str, Callable[..., None]] = {
            "create": self._op_create,
            "suspend": self._op_suspend,
            "abandon": self._op_abandon,
            "stop_actor": self._op_stop_actor,
            "down": self.transport.on_down,
            "reply": self.transport._on_control_reply,
            "worker_died": self.transport.fail_slot,
            "epochs": self._op_epochs,
            "shutdown": self.shutdown,
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
        self.inbox = _Reader(self.loop, self.mailbox, self._on_mailbox, self._flush_replies)
        control = _Reader(self.loop, self.transport.control, self._on_control, _noop)
        self.transport.readers.append(control)  # checked after each send on it
        self.transport.control_reader = control
        self.loop.add_reader(sys.stdin.fileno(), self._on_parent_pipe)
        self.transport.notify("ready", self.slot, os.getpid())
        self.transport.flush()
        self.health.start()
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
        except Exception as exc:  # a failed restart keeps its cell: the supervisor decides
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

    def _op_epochs(self, epochs: dict[int, int]) -> None:
        """The workers restarted while this one was starting."""
        for slot, epoch in epochs.items():
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
        actor._ref = ActorRef(self.system_id, actor_id, self.slot, name, tuple(map(tuple, retry)))
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
        peer = frames[0].bytes
        try:
            kind, body, buffers, epoch = proto.unpack(frames[1:])
            if epoch != self.epoch:
                log.warning(
                    "worker %d (epoch %d) dropped a batch sent to its predecessor (epoch %d) "
                    "from %r: the asks in it fail at their caller as crashed, tells are lost",
                    self.slot,
                    self.epoch,
                    epoch,
                    peer,
                )
                return
            entries = proto.decode_body(body)
            if kind != proto.BATCH or type(entries) is not list:
                raise proto.ProtocolError(f"kind {kind} is not a batch")
            requests = [_request(peer, e) for e in entries]
        except (proto.ProtocolError, ValueError, TypeError) as exc:
            log.warning("worker %d dropped a malformed message from %r: %s", self.slot, peer, exc)
            return
        offset = 0
        for request, nbufs in requests:
            if nbufs:
                request.bufs = buffers[offset : offset + nbufs]
                offset += nbufs
            self.deliver(request)

    def deliver(self, request: _Request) -> None:
        if self.recycling:
            return  # unanswered: the supervisor's notice fails it, naming the limit
        cell = self.cells.get(request.actor_id)
        if cell is None:
            if request.actor_id == BARRIER_ACTOR:
                self._reply(request, None)  # every earlier message from this sender is in
                return
            if request.actor_id == TASK_ACTOR:
                self._run_task(request)
                return
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
        if request.method == STOP_METHOD:
            self._stop_actor(cell, request)
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
            args, kwargs = proto.loads(request.blob, request.bufs)
            result = method(*args, **kwargs)
        except Exception as exc:
            self.busy.end()
            self._reply_error(request, exc)
            return
        self.busy.end()
        if _awaitable(result):
            cell.busy = True
            cell.task = task = asyncio.ensure_future(cast(Awaitable[Any], result))
            cell.task_since = time.monotonic()
            task.add_done_callback(functools.partial(self._finish, cell, request))
        else:
            self._reply(request, result)
        self.handled += 1
        if self.max_messages is not None and self.handled >= self.max_messages:
            self.recycle(f"message limit: {self.handled} messages handled")

    def _finish(self, cell: _Cell, request: _Request, task: asyncio.Future[Any]) -> None:
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
        else:
            self._reply(request, task.result())
        self._schedule_replies()
        if request.actor_id in self.cells:
            self._process(cell)

    def _run_task(self, request: _Request) -> None:
        """A stateless task: one function call, or a chunk of a map."""
        self.busy.start(f"task {request.method}", TASK_ACTOR)
        try:
            (fn, *rest), _ = proto.loads(request.blob, request.bufs)
            if request.method == "chunk":
                result = run_chunk(fn, *rest)
            else:
                args, kwargs = rest
                result = fn(*args, **kwargs)
        except Exception as exc:
            self.busy.end()
            self._reply_error(request, exc)
            return
        self.busy.end()
        self._reply(request, result)

    def _stop_actor(self, cell: _Cell, request: _Request) -> None:
        self._stop_cell(request.actor_id, "it was stopped")
        gone = self.transport.request("actor gone", identity, "actor_gone", request.actor_id)

        def stopped(_: object) -> None:  # the name is free once stop() returns
            self._reply(request, None)
            self._schedule_replies()

        gone.add_done_callback(stopped)
        self.transport.flush()

    def _stop_cell(self, actor_id: int, why: str | None) -> None:
        """Stop an actor (or drop the place held for one); fail its queue with ``why``,
        or leave its calls unanswered when ``why`` is None (see shutdown)."""
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
            if why is not None:
                err = ActorStoppedError(
                    f"actor #{actor_id} stopped before handling {request.method!r}: {why}"
                )
                self._reply_error(request, err)

    def _dead_letter(self, request: _Request) -> None:
        if request.method == STOP_METHOD:
            self._reply(request, None)  # stopping a stopped actor is a no-op
            return
        err = ActorStoppedError(
            f"actor #{request.actor_id} is not running on worker {self.slot}: "
            f"{request.method!r} was not delivered"
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
        except Exception as exc:
            err = SerializationError(
                f"{request.method}() returned a value that does not pickle: {exc}"
            )
            self._reply_error(request, err)
            return
        self._queue_reply(request, (proto.OK, request.msg_id, 0, "", blob, len(bufs)), bufs)

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
        self._queue_reply(request, entry, [])

    def _queue_reply(self, request: _Request, entry: tuple[Any, ...], bufs: list[Any]) -> None:
        if request.peer is None:
            copies = [bytes(memoryview(b)) for b in bufs]
            self.transport._resolve(entry[0], entry[1], entry[4], copies)
            return
        outbox = self._replies.get(request.peer)
        if outbox is None:
            outbox = self._replies[request.peer] = _Outbox()
        outbox.entries.append(entry)
        if bufs:
            outbox.buffers.extend(bufs)

    def _schedule_replies(self) -> None:
        if not self._reply_scheduled:
            self._reply_scheduled = True
            self.loop.call_soon(self._flush_replies)

    def _flush_replies(self) -> None:
        self._reply_scheduled = False
        if not self._replies:
            self.inbox.check()
            return
        full = [peer for peer in list(self._replies) if not self._flush_peer(peer)]
        if full:  # a caller is not reading yet: keep its replies, try again soon
            self._reply_scheduled = True
            self.loop.call_later(0.001, self._flush_replies)
        self.inbox.check()

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
                    "worker %d: caller %r is gone; %d replies undeliverable",
                    self.slot,
                    peer,
                    len(entries) + len(outbox.entries),
                )
                break
        del self._replies[peer]
        return True


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


def _request(peer: bytes, entry: Any) -> tuple[_Request, int]:
    kind, msg_id, actor_id, method, blob, nbufs = entry
    if (kind != proto.CALL and kind != proto.TELL) or type(method) is not str:
        raise proto.ProtocolError(f"entry of kind {kind!r} for method {method!r}")
    return _Request(peer, kind, msg_id, actor_id, method, blob, ()), nbufs


def _method(actor: Actor, name: str) -> Callable[..., Any]:
    if name.startswith("_") or name in RESERVED:
        raise AttributeError(f"{type(actor).__name__}.{name} cannot be called through a ref")
    method = getattr(actor, name, None)
    if not callable(method):
        raise AttributeError(f"{type(actor).__name__} has no method {name!r}")
    return method  # type: ignore[no-any-return]


def _call_hook(hook: Callable[..., None], arg: Any, slot: int) -> None:
    """Run on_stop or on_restart; an error there is logged, never raised."""
    try:
        hook() if arg is None else hook(arg)
    except Exception:
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
