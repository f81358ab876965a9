"""The driver: the user's process. ``ActorSystem`` starts the supervisor and talks
to it and to the workers; the I/O token decides which thread drives the
sockets; tasks, maps and pipelines are scheduled here, by their submitter."""

from __future__ import annotations

from runtime.driver._aio import AsyncActorSystem
from runtime.driver._executor import DovecoteExecutor
from runtime.driver._pipeline import Stage
from runtime.driver._system import ActorSystem

__all__ = ["ActorSystem", "AsyncActorSystem", "DovecoteExecutor", "Stage"]
