"""The driver's part in what operators see: the output thread that prints the
workers' output (``observe.Printer``), the metrics endpoint of
``ActorSystem(metrics_port=...)``, and the status request."""

from __future__ import annotations

import logging
import os
from typing import Any

from runtime import observe, wire
from runtime.client import Transport, identity

__all__ = ["END_WAIT", "METRICS_HOST", "Observed", "Observing", "close"]

log = logging.getLogger("dovecote")

END_WAIT = 0.5  # seconds shutdown waits for the supervisor's last lines once it has exited
METRICS_HOST = "127.0.0.1"  # metrics_port binds the loopback interface only
SCRAPE_TIMEOUT = 10.0


class Observing:
    """What one ``ActorSystem`` runs for operators. Internal."""

    def __init__(self, system: Any) -> None:
        """Start the output thread now, while the workers start: its subscription
        is up by the time the system is."""
        self.printer: observe.Printer | None = None
        self.metrics: Any = None
        if system.options.log_to_driver:
            name = f"out-{os.getpid()}-{system.system_id}"
            self.printer = observe.Printer(
                system._ctx, system._addresses, name, observe.fold_window()
            )

    def started(self, system: Any) -> None:
        """The workers are up: from now on every line they print reaches us."""
        timeout = system.options.start_timeout
        if self.printer is not None and not self.printer.wait_synced(timeout):
            log.warning("dovecote: worker output is not forwarded (no bus within %.0f s)", timeout)
        port = system.options.metrics_port
        if port is not None:
            transport = system._transport
            fetch = lambda: _raw_status(transport, SCRAPE_TIMEOUT)  # noqa: E731
            self.metrics = observe.MetricsServer(fetch, METRICS_HOST, port)

    def close(self) -> None:
        """After the supervisor has exited: its last lines are in our socket (or
        lost with a supervisor that crashed)."""
        if self.metrics is not None:
            self.metrics.close()
        if self.printer is not None:
            self.printer.close(END_WAIT)


def close(observing: Observing | None) -> None:
    if observing is not None:
        observing.close()


def _raw_status(transport: Transport, timeout: float | None) -> dict[str, Any]:
    reply: Any = transport.control.request("status", identity, wire.Status).result(timeout)
    return dict(reply)


class Observed:
    """The operators' methods of ``ActorSystem``."""

    def status(self, timeout: float | None = 10.0) -> observe.SystemStatus:
        """The workers (pid, RSS, CPU, messages handled, mailbox, the method running
        now and for how long, restarts) and the actors (name, class, worker, policy,
        restarts, state), as a frozen record. The workers' numbers are those of
        their last heartbeat, a fraction of ``heartbeat_timeout`` old."""
        system: Any = self
        system._check_open()
        return observe.status_from_json(_raw_status(system._transport, timeout))
