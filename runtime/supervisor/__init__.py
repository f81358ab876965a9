"""The supervisor process: the control plane (workers, the directory, restarts).
The design is told in ``_supervisor``; ``main`` is what ``runtime._main`` runs."""

from __future__ import annotations

from runtime.supervisor._supervisor import head_main, main

__all__ = ["head_main", "main"]
