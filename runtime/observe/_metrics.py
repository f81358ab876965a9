"""Prometheus metrics, through ``prometheus_client`` (the ``metrics`` extra): a
custom collector that asks the supervisor for its status at each scrape, so the
numbers are the supervisor's, never a second bookkeeping.

Labels are the worker slot and the actor's name (its class when it has none),
never an actor id: ids change with every spawn and would grow the series without
bound. The server binds the loopback interface unless told otherwise.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["MetricsServer", "check_listen", "families", "serve_metrics"]

log = logging.getLogger("dovecote")

Fetch = Callable[[], dict[str, Any]]
_WORKER_GAUGES = (  # (field, metric, help)
    ("mailbox", "dovecote_worker_mailbox", "Messages read by the worker and not yet handled"),
    ("rss", "dovecote_worker_rss_bytes", "Resident memory of the worker process"),
    ("cpu_percent", "dovecote_worker_cpu_percent", "CPU use of the worker, percent of one CPU"),
)
_WORKER_COUNTERS = (
    ("messages", "dovecote_worker_messages", "Messages handled by the worker, tasks included"),
    ("tasks", "dovecote_worker_tasks", "Tasks and map chunks run by the worker"),
    ("restarts", "dovecote_worker_restarts", "Workers this slot has had before this one"),
)


def _prometheus() -> Any:
    try:
        from prometheus_client import core
    except ImportError:
        raise ImportError(
            "metrics need prometheus_client: pip install 'dovecote[metrics]'"
        ) from None
    return core


def families(status: dict[str, Any]) -> list[Any]:
    """The metric families of one status reply."""
    core = _prometheus()
    out = []
    for field, name, text in _WORKER_GAUGES:
        gauge = core.GaugeMetricFamily(name, text, labels=["worker"])
        for w in status["workers"]:
            gauge.add_metric([str(w["slot"])], w[field])
        out.append(gauge)
    for field, name, text in _WORKER_COUNTERS:
        counter = core.CounterMetricFamily(name, text, labels=["worker"])
        for w in status["workers"]:
            counter.add_metric([str(w["slot"])], w[field])
        out.append(counter)
    out.extend(_actor_families(core, status))
    crashes = core.CounterMetricFamily(
        "dovecote_worker_crashes", "Worker deaths by cause", labels=["cause"]
    )
    for cause, count in sorted(status["crashes"].items()):
        crashes.add_metric([cause], count)
    out.append(crashes)
    return out


def _actor_families(core: Any, status: dict[str, Any]) -> list[Any]:
    """Summed over the actors that share a label: a name, else a class."""
    sums: dict[tuple[str, str], list[int]] = {}  # (actor, class) -> [count, mailbox, restarts]
    for a in status["actors"]:
        key = (a["name"] or a["cls"], a["cls"])
        row = sums.setdefault(key, [0, 0, 0])
        row[0] += 1
        row[1] += a["mailbox"]
        row[2] += a["restarts"]
    count = core.GaugeMetricFamily("dovecote_actors", "Actors", labels=["actor", "class"])
    mailbox = core.GaugeMetricFamily(
        "dovecote_actor_mailbox", "Messages waiting for the actor", labels=["actor", "class"]
    )
    restarts = core.CounterMetricFamily(
        "dovecote_actor_restarts", "Restarts of the actor", labels=["actor", "class"]
    )
    for (actor, cls), (n, queued, restarted) in sorted(sums.items()):
        count.add_metric([actor, cls], n)
        mailbox.add_metric([actor, cls], queued)
        restarts.add_metric([actor, cls], restarted)
    return [count, mailbox, restarts]


class _Collector:
    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch

    def collect(self) -> Iterator[Any]:
        core = _prometheus()
        up = core.GaugeMetricFamily("dovecote_up", "1 if the system answered the scrape")
        try:
            status = self.fetch()
        except Exception as exc:
            log.warning("dovecote metrics: no status: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families(status)


class MetricsServer:
    """A Prometheus endpoint of one system; ``close()`` stops it."""

    def __init__(self, fetch: Fetch, host: str, port: int) -> None:
        _prometheus()
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(fetch))
        self.server, self.thread = start_http_server(port, host, registry)
        self.host = host
        self.port: int = self.server.server_port

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def check_listen(listen: str, public: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` checked: loopback unless ``public``; ValueError otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--listen {listen!r}: expected HOST:PORT, as 127.0.0.1:9464")
    host = host.strip("[]") or "127.0.0.1"
    if not public and host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"--listen {listen!r} is not loopback: add --public to mean it")
    return host, int(port)


def serve_metrics(fetch: Fetch, host: str, port: int) -> MetricsServer:
    return MetricsServer(fetch, host, port)
