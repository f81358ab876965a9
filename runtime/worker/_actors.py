"""The actors of one worker: each cell starts its messages in arrival order, one
at a time. A method that returns an awaitable keeps its actor busy until it
completes while the loop serves the other actors, unless the actor's class
declares ``max_concurrency = n``: then up to n such awaitables run at once, and
the next message starts once the newest is at its first wait. A method that
returns another call's future has that call's outcome forwarded as its reply."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import types
from collections.abc import Awaitable, Callable
from typing import Any

from actors._actor import RESERVED, Actor
from actors._errors import ActorStoppedError
from actors._future import ActorFuture
from actors._ref import STOP_METHOD
from runtime import wire
from runtime.core import Cell, Mailbox
from runtime.wire import Request
from runtime.worker._health import ASYNC_ACTOR, Busy
from runtime.worker._inbox import Inbox
from runtime.worker._loop import leave_if_forked
from runtime.worker._replies import Replies, unpickling_error
from runtime.worker._stages import STAGE_METHOD
from runtime.worker._tasks import run_task

__all__ = ["AWAITABLE", "DOWN_METHOD", "EVENT_METHOD", "Actors", "awaitable", "call_hook"]

log = logging.getLogger("dovecote")

_CALL = wire.CALL
DOWN_METHOD = "__down__"  # delivers a watch notice to the watcher's on_down hook
EVENT_METHOD = "__event__"  # delivers a bus event to the subscriber's on_event hook


class Actors:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        mailbox: Mailbox,
        inbox: Inbox,
        replies: Replies,
        busy: Busy,
    ) -> None:
        self.loop = loop
        self.mailbox = mailbox
        self.cells = mailbox.cells
        self.inbox = inbox
        self.replies = replies
        self.busy = busy
        self.slot = inbox.slot
        self.handled = 0
        self.tasks = 0  # tasks and map chunks among the handled
        self.max_messages: int | None = None
        self.on_limit: Callable[[str], None] = lambda cause: None
        self.on_gone: Callable[[int, Request | None], None] = lambda actor_id, request: None
        self.run_stage: Callable[[Request], None] = lambda request: None  # set by the worker

    def deliver(self, request: Request) -> None:
        if request.cancelled or self.inbox.recycling:
            return  # cancelled before it started; or, recycling: the supervisor fails it
        cell = self.cells.get(request.actor_id)
        if cell is None:
            if request.actor_id == wire.TASK_ACTOR:
                self.busy.start(f"task {request.method}", wire.TASK_ACTOR)
                if request.method == STAGE_METHOD:
                    self.run_stage(request)  # a pipeline's chunk, on its way (see _stages)
                else:
                    run_task(request, self.inbox.call_user, self.replies)
                self.busy.end()
                self.tasks += 1
                self.count()
            elif request.actor_id == wire.BARRIER_ACTOR:
                self.replies.reply(request, None)  # every earlier message from it is in
            else:
                self._dead_letter(request)
            return
        if not cell.busy and not cell.queue:
            self._execute(cell, request)
            return
        full = self.mailbox.queue(cell, request)
        if not cell.busy:
            self.process(cell)
        elif full:
            self.inbox.pause()

    def process(self, cell: Cell) -> None:
        while cell.queue and not cell.busy:
            self._execute(cell, self.mailbox.next(cell))
        self.inbox.resume()

    def _execute(self, cell: Cell, request: Request) -> None:
        if request.cancelled:
            return  # by its caller, while it waited in the queue
        if request.method == STOP_METHOD:
            self.stop_actor(request.actor_id, request)
            return
        self.busy.start(request.method, request.actor_id)
        try:
            method = _method_for(cell, request.method)
            try:
                args, kwargs = wire.load_call(request.blob, request.bufs)
            except BaseException as exc:
                raise unpickling_error(request, exc) from exc
            result = self.inbox.call_user(method, args, kwargs)
        except BaseException as exc:  # SystemExit too: it goes to the caller, the worker lives
            self.busy.end()
            self.failed(cell, request, exc)
        else:
            self.busy.end()
            self.returned(cell, request, result)
        self.count()

    def failed(self, cell: Cell, request: Request, exc: BaseException) -> None:
        """A message's code raised: its caller gets the error (a tell's is logged)."""
        self._stop_if_asked(cell, request)
        self.replies.reply_error(request, exc)

    def returned(self, cell: Cell, request: Request, result: Any) -> None:
        """A message's code returned: reply, now or once what it returned completes."""
        if awaitable(result):  # an ActorFuture is awaitable too
            self._outcome(cell, request, result)
            self._stop_if_asked(cell, request)
        else:
            self._stop_if_asked(cell, request)
            if request.kind == _CALL:
                self.replies.reply(request, result)

    def _stop_if_asked(self, cell: Cell, request: Request) -> None:
        """The message's code stopped its own actor, and left no task to wait for: it
        stops now, its on_stop before the message's reply (as after an await)."""
        if cell.stop_after is True:
            self.stop_actor(request.actor_id, None)

    def _outcome(self, cell: Cell, request: Request, result: Any) -> None:
        """Reply with what a method returned: at once, or when what it returned completes."""
        if isinstance(result, ActorFuture):
            # The reply of another call (perhaps to this very actor): forwarded when it
            # comes, and the actor is free meanwhile, so a call to itself cannot deadlock.
            # On the loop's turn: a cancel() in an actor's code would run it unlocked.
            forward = functools.partial(self.replies.forward, request)
            result.add_done_callback(lambda future: self.loop.call_soon(forward, future))
        elif awaitable(result):
            task = asyncio.ensure_future(_contained(result, request.actor_id))
            cell.start(task, time.monotonic())
            task.add_done_callback(functools.partial(self._finish, cell, request))
            if cell.limit > 1:  # the next message starts once this one is at its await
                self.loop.call_soon(self._begun, cell, task)  # after the task's first step
        else:
            self.replies.reply(request, result)

    def _begun(self, cell: Cell, task: asyncio.Future[Any]) -> None:
        leave_if_forked()
        if cell.begun(task):
            self.process(cell)
            self.replies.schedule()

    def _finish(self, cell: Cell, request: Request, task: asyncio.Future[Any]) -> None:
        leave_if_forked()
        if not cell.end(task):  # the actor was stopped or suspended meanwhile
            if not self.inbox.recycling:
                err = ActorStoppedError(f"{request.method}() was interrupted: its actor stopped")
                self.replies.reply_error(request, err)
                self.replies.schedule()
            return
        self._settle(cell, request, task)
        self.replies.schedule()
        if cell.stop_after is task and cell.actor is not None:
            self.stop_actor(request.actor_id, None)
        elif request.actor_id in self.cells:
            self.process(cell)

    def _settle(self, cell: Cell, request: Request, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            self.replies.reply_error(
                request, ActorStoppedError(f"{request.method}() was cancelled")
            )
        elif task.exception() is not None:
            self.replies.reply_error(request, task.exception())  # type: ignore[arg-type]
        elif type(task.result()) is _Raised:
            self.replies.reply_error(request, task.result().exc)
        else:
            self._outcome(cell, request, task.result())

    def count(self) -> None:
        """One more message handled: past ``max_messages`` the worker is recycled."""
        self.handled += 1
        if self.max_messages is not None and self.handled >= self.max_messages:
            self.on_limit(f"message limit: {self.handled} messages handled")

    # -- stopping --------------------------------------------------------------------
    def stop_self(self, actor_id: int) -> bool:
        """``self.ref.stop()`` from the actor's own running code: True, and the actor
        stops once the current message ends (the first to ask, of an actor that runs
        several). Anyone else's stop queues as usual."""
        cell = self.cells.get(actor_id)
        if cell is None or cell.actor is None:
            return False
        asker: Any = True  # a sync method of the actor runs now
        if self.busy.what is None or self.busy.actor_id != actor_id:
            asker = asyncio.current_task(self.loop)
            if asker is None or asker not in cell.tasks:
                return False
        if cell.stop_after is False:
            cell.stop_after = asker
        return True

    def stop_actor(self, actor_id: int, request: Request | None) -> None:
        """Stop an actor for good: by a call to stop() (answered once its name is free)
        or by itself (``request`` is None)."""
        self.stop_cell(actor_id, "it was stopped")
        self.on_gone(actor_id, request)

    def stop_cell(self, actor_id: int, why: str | None) -> None:
        """Stop an actor (or drop the place held for one); fail its queue with ``why``,
        or leave its calls unanswered when ``why`` is None (see shutdown). Further
        stop() calls in the queue are no-ops that complete."""
        cell = self.mailbox.remove(actor_id)
        tasks = cell.take_tasks()  # each fails as interrupted (see _finish)
        if cell.actor is not None:
            call_hook(cell.actor.on_stop, None, self.slot)
        for task in tasks:
            task.cancel()
        self.inbox.resume()
        while cell.queue:
            request = cell.queue.popleft()
            if request.cancelled or why is None:
                continue
            if request.method == STOP_METHOD:
                self.replies.reply(request, None)
                continue
            err = ActorStoppedError(
                f"{_describe(cell.actor, actor_id)} stopped before handling "
                f"{request.method}(): {why}"
            )
            self.replies.reply_error(request, err)

    def suspend(self, actor_id: int, cause: str) -> None:
        """Stop an actor for a restart of its group; keep what is queued for it."""
        cell = self.cells.get(actor_id)
        if cell is not None and cell.actor is not None:
            call_hook(cell.actor.on_restart, cause, self.slot)
            call_hook(cell.actor.on_stop, None, self.slot)
            for task in cell.take_tasks():
                task.cancel()
            cell.vacate()

    def _dead_letter(self, request: Request) -> None:
        if request.method == STOP_METHOD:
            self.replies.reply(request, None)  # stopping a stopped actor is a no-op
            return
        err = ActorStoppedError(
            f"actor #{request.actor_id} is not running on worker {self.slot}: "
            f"{request.method}() was not delivered"
        )
        if request.kind == wire.TELL:
            log.warning("dead letter: %s", err)
        self.replies.reply_error(request, err)


class _Raised:
    """SystemExit or KeyboardInterrupt out of an actor's coroutine."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def _contained(awaitable: Awaitable[Any], actor_id: int) -> Any:
    """Await an actor's coroutine. asyncio lets SystemExit out of the event loop,
    which would end the worker: it comes back as a value, for the caller. The
    task knows its actor (``ASYNC_ACTOR``): what it prints is tagged with it."""
    ASYNC_ACTOR.set(actor_id)
    try:
        return await awaitable
    except (SystemExit, KeyboardInterrupt) as exc:
        return _Raised(exc)


def _describe(actor: Actor | None, actor_id: int) -> str:
    return f"actor #{actor_id}" if actor is None else repr(actor.ref)


AWAITABLE: dict[type, bool] = {}  # by type: is a value of it awaitable (see awaitable)


def awaitable(value: Any) -> bool:
    """``inspect.isawaitable`` for the per-message path, cached per type."""
    kind = type(value)
    known = AWAITABLE.get(kind)
    if known is None:
        if kind is types.GeneratorType:  # awaitable or not per object
            return inspect.isawaitable(value)
        known = AWAITABLE[kind] = inspect.isawaitable(value)
    return known


def _method_for(cell: Cell, name: str) -> Callable[..., Any]:
    actor = cell.actor
    assert actor is not None  # a busy cell (no actor) runs nothing
    if name == DOWN_METHOD:  # a watched actor ended: the hook runs
        return actor.on_down  # type: ignore[no-any-return]
    if name == EVENT_METHOD:
        return actor.on_event  # type: ignore[no-any-return]
    method = cell.methods.get(name)
    if method is None:
        method = cell.methods[name] = _method(actor, name)
    return method


def _method(actor: Actor, name: str) -> Callable[..., Any]:
    if name.startswith("_") or name in RESERVED:
        raise AttributeError(f"{type(actor).__name__}.{name} cannot be called through a ref")
    method = getattr(actor, name, None)
    if not callable(method):
        raise AttributeError(f"{type(actor).__name__} has no method {name!r}")
    return method  # type: ignore[no-any-return]


def call_hook(hook: Callable[..., None], arg: Any, slot: int) -> None:
    """Run on_stop or on_restart; an error there, even SystemExit, is logged only."""
    try:
        hook() if arg is None else hook(arg)
    except BaseException:
        log.exception("worker %d: %s raised", slot, getattr(hook, "__qualname__", hook))
