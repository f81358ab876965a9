"""How a worker's crash is detected and named, sans-IO: the three ways.

1. **Its process exits**: its exit code or signal (the supervisor sees the exit
   through a pidfd; ``exit_cause``).
2. **Its heartbeats stop**: a hung interpreter (``Liveness.silent``); the
   supervisor then kills it. Heartbeats come from a Python thread on purpose:
   libzmq answers its own ZMTP pings without the GIL.
3. **It passes a limit** (resident memory, messages handled): the worker reports
   it (``limit``), stops its actors and exits; a recycle is not a failure.

The supervisor feeds events in (exits, heartbeats, reports, the time) and
reads causes out; it alone does the I/O.
"""

from __future__ import annotations

import signal

__all__ = ["STARTING_GRACE", "Liveness", "exit_cause"]

STARTING_GRACE = 30.0  # seconds a starting worker may stay silent (imports, a slow disk)


def exit_cause(returncode: int | None) -> str:
    """A process's end as words: ``exited with code 3``, ``killed by signal SIGKILL``."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


class Liveness:
    """What the supervisor knows of one worker process's health."""

    __slots__ = ("cause", "last_heartbeat", "ready", "recycled")

    def __init__(self, now: float) -> None:
        self.last_heartbeat = now
        self.ready = False
        self.cause: str | None = None  # why the supervisor ended it: heartbeat lost, a limit
        self.recycled = False

    def beat(self, now: float) -> None:
        self.last_heartbeat = now

    def silent(self, now: float, timeout: float) -> str | None:
        """The cause if its heartbeats stopped (way 2): it is to be killed. A starting
        worker gets STARTING_GRACE; each silence is reported once."""
        silent = now - self.last_heartbeat
        limit = timeout if self.ready else max(timeout, STARTING_GRACE)
        if self.cause is not None or silent <= limit:
            return None
        self.cause = f"lost its heartbeat (none for {silent:.1f} s)"
        return self.cause

    def limit(self, cause: str) -> bool:
        """The worker reported a limit (way 3); False if it is ending already."""
        if self.cause is not None:
            return False
        self.cause = f"was recycled: {cause}"
        self.recycled = True
        return True

    def exited(self, returncode: int | None) -> tuple[str, bool, bool]:
        """Its process ended (way 1): (cause, abnormal, counted against the restart
        intensity). The cause names what the supervisor saw first."""
        cause = self.cause or exit_cause(returncode)
        abnormal = returncode != 0 or self.cause is not None
        return cause, abnormal, not self.recycled
