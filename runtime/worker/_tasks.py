"""The task runner: a worker answers calls to ``TASK_ACTOR`` itself, running one
function (``run``) or a map's chunk of items (``chunk``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime import wire
from runtime.wire import Request
from runtime.worker._replies import Replies, unpickling_error

__all__ = ["run_chunk", "run_task"]

CallUser = Callable[[Callable[..., Any], Any, Any], Any]


def run_task(request: Request, call_user: CallUser, replies: Replies) -> None:
    """Run a stateless task and reply with its outcome."""
    try:
        try:
            (fn, *rest), _ = wire.load_call(request.blob, request.bufs)
        except BaseException as exc:
            raise unpickling_error(request, exc) from exc
        if request.method == "chunk":
            result = call_user(run_chunk, (fn, *rest), {})
        else:
            args, kwargs = rest
            result = call_user(fn, args, kwargs)
    except BaseException as exc:  # SystemExit too: it goes to the caller, the worker lives
        replies.reply_error(request, exc)
    else:
        replies.reply(request, result)


def run_chunk(fn: Callable[[Any], Any], items: list[Any]) -> tuple[list[Any], bool]:
    """Apply ``fn`` to each item; a failure does not stop the rest. The flag says
    whether any item failed, so the caller can skip looking."""
    out: list[Any] = []
    rest = iter(items)
    failed = False
    while True:
        try:
            out.extend(map(fn, rest))  # C speed; keeps what came before a failure
            return out, failed
        except BaseException as exc:  # SystemExit too; the failed item is consumed: go on
            out.append(wire.TaskFailure(wire.encode_error(exc)))
            failed = True
