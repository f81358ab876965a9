"""The runtime's state and decisions, sans-IO: no sockets, no threads, no clock
(the time is passed in). The options of a system, supervision policy as pure
functions, the supervisor's directory, crash detection's three ways, the
sending side's calls and outboxes, and a worker's mailbox."""

from __future__ import annotations

from runtime.core._crashes import (
    STARTING_GRACE,
    Liveness,
    exit_cause,
)
from runtime.core._directory import (
    ActorRecord,
    Directory,
    Group,
)
from runtime.core._mailbox import (
    Batch,
    Cell,
    Mailbox,
)
from runtime.core._options import (
    DEFAULTS,
    ProcessArgs,
    SystemOptions,
)
from runtime.core._outbox import (
    MAX_BATCH,
    Calls,
    Outbox,
    Pending,
)
from runtime.core._policy import (
    Intensity,
    backoff,
    restarts_for,
    targets,
    within_intensity,
)

__all__ = [
    "DEFAULTS",
    "MAX_BATCH",
    "STARTING_GRACE",
    "ActorRecord",
    "Batch",
    "Calls",
    "Cell",
    "Directory",
    "Group",
    "Intensity",
    "Liveness",
    "Mailbox",
    "Outbox",
    "Pending",
    "ProcessArgs",
    "SystemOptions",
    "backoff",
    "exit_cause",
    "restarts_for",
    "targets",
    "within_intensity",
]
