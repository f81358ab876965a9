"""A worker process: its composition root, event loop, inbox, actors, replies,
keeper and health threads, the actors' context, and the task runner."""

from __future__ import annotations

from runtime.worker._worker import main

__all__ = ["main"]
