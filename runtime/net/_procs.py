"""Starting the runtime's processes so that their deaths can be waited on. Internal."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

__all__ = ["start_watched"]


def start_watched(role: str, options: str, **popen: Any) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``python -m runtime._main ROLE OPTIONS`` with a pipe as its stdin.

    Returns the process and an fd that becomes readable when it exits: a pidfd
    where the OS has them, which nothing the process forks can hold open; else the
    read end of a pipe that only the process holds (a child it forks may keep the
    write end, and its death then goes unseen until that child exits too).
    """
    command = [sys.executable, "-m", "runtime._main", role, options]
    if hasattr(os, "pidfd_open"):
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, **popen)
        try:
            return proc, os.pidfd_open(proc.pid)
        except OSError:  # a kernel without pidfds (Linux < 5.3)
            proc.kill()
            proc.wait()
            proc.stdin.close()  # type: ignore[union-attr]
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, pass_fds=(write_end,), **popen)
    os.close(write_end)
    return proc, read_end
