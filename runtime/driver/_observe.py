"""The driver's part in what operators see: the output thread that prints the
workers' output (``observe.Printer``), and the status request."""

from __future__ import annotations

import logging
import os
from typing import Any

from runtime import observe, wire
from runtime.client import Transport, identity

__all__ = ["END_WAIT", "close_printer", "start_printer", "status", "wait_printer"]

log = logging.getLogger("dovecote")

END_WAIT = 0.5  # seconds shutdown waits for the supervisor's last lines once it has exited


def start_printer(system: Any) -> observe.Printer | None:
    """The output thread of an ``ActorSystem``, subscribing now (while the workers
    start), or None when ``log_to_driver=False``."""
    if not system.options.log_to_driver:
        return None
    name = f"out-{os.getpid()}-{system.system_id}"
    return observe.Printer(system._ctx, system._run_dir, name, observe.fold_window())


def wait_printer(printer: observe.Printer | None, timeout: float) -> None:
    """Once this returns, every line a worker prints reaches the terminal."""
    if printer is not None and not printer.wait_synced(timeout):
        log.warning("dovecote: worker output is not forwarded (no bus within %.0f s)", timeout)


def close_printer(printer: observe.Printer | None) -> None:
    """The supervisor has exited: its last lines (published before it replied to the
    shutdown) are in this process's socket, or lost with a supervisor that crashed."""
    if printer is not None:
        printer.close(END_WAIT)


def status(transport: Transport, timeout: float | None) -> observe.SystemStatus:
    reply: Any = transport.control.request("status", identity, wire.Status).result(timeout)
    return observe.status_from_json(reply)
