"""What a worker tells about itself: its counters for the heartbeats, and who is
writing when its output is tagged (``observe.capture_output``). Read from other
threads than the loop's: each read is of one attribute, or a copy made at once."""

from __future__ import annotations

from typing import Any

from runtime import wire
from runtime.core import Mailbox
from runtime.worker._actors import Actors
from runtime.worker._health import Busy

__all__ = ["Tagger", "counters"]


def counters(actors: Actors, mailbox: Mailbox) -> tuple[int, int, int, list[list[int]]]:
    """Messages handled, tasks among them, messages waiting, and the queue of each
    actor that has one."""
    cells = list(mailbox.cells.items())  # one copy: the loop may add a cell meanwhile
    depth = {actor_id: len(cell.queue) for actor_id, cell in cells if cell.queue}
    stash = list(mailbox.stash)  # read by the keeper while the loop was held
    for request in stash:
        depth[request.actor_id] = depth.get(request.actor_id, 0) + 1
    queues = [[actor_id, n] for actor_id, n in depth.items()]
    return actors.handled, actors.tasks, mailbox.backlog + len(stash), queues


class Tagger:
    """``[actor_id, class, name]`` of the actor whose code runs now, or None."""

    __slots__ = ("busy", "last", "mailbox")

    def __init__(self, busy: Busy, mailbox: Mailbox) -> None:
        self.busy = busy
        self.mailbox = mailbox
        self.last: tuple[int, Any, list[Any]] | None = None  # (actor id, actor, tag)

    def __call__(self) -> list[Any] | None:
        actor_id = self.busy.current_actor()
        if actor_id is None:
            return None
        if actor_id == wire.TASK_ACTOR:
            return [actor_id, "task", None]
        cell = self.mailbox.cells.get(actor_id)
        actor = cell.actor if cell is not None else None
        last = self.last
        if last is not None and last[0] == actor_id and last[1] is actor:
            return last[2]
        if actor is None:
            tag = [actor_id, f"actor#{actor_id}", None]
        else:
            tag = [actor_id, type(actor).__qualname__, actor.ref.name]
        self.last = (actor_id, actor, tag)
        return tag
