"""Running a script on a pseudo-terminal, for the tests of what a TTY shows."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time


def run_on_a_terminal(
    script: str, env: dict[str, str], deadline: float, size: tuple[int, int] | None = None
) -> str:
    """Run ``python -c script`` with a pty as its stdout and stderr (``size``: rows
    and columns; a new pty is 0x0); what the terminal shows. It must exit 0."""
    leader, follower = pty.openpty()
    if size is not None:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
    ) as proc:
        os.close(follower)
        shown = b""
        try:
            while time.monotonic() < deadline:
                if not select.select([leader], [], [], 0.5)[0]:
                    continue  # nothing yet: the system is starting, or working
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: every process holding the terminal has exited
                    break
                if not chunk:
                    break
                shown += chunk
            assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, shown
        finally:
            os.close(leader)
    return shown.decode(errors="replace")
