"""The only place that opens sockets: socket factories and endpoints (ipc:// in
a 0700 directory), the event bus's ends and its proxy, and how the runtime's
processes are started and their deaths seen."""

from __future__ import annotations

from runtime.net._bus import (
    INPROC,
    RESERVED,
    SYNC,
    Bus,
    Publisher,
    Subscription,
    check_topic,
    decode,
    encode,
    lifecycle_publisher,
    run_proxy,
)
from runtime.net._procs import (
    start_watched,
)
from runtime.net._sockets import (
    COPY_MIN,
    DONTWAIT,
    POLLIN,
    Context,
    Socket,
    bus_endpoints,
    control_endpoint,
    dealer,
    readable,
    recv,
    router,
    send,
    worker_endpoint,
)

__all__ = [
    "COPY_MIN",
    "DONTWAIT",
    "INPROC",
    "POLLIN",
    "RESERVED",
    "SYNC",
    "Bus",
    "Context",
    "Publisher",
    "Socket",
    "Subscription",
    "bus_endpoints",
    "check_topic",
    "control_endpoint",
    "dealer",
    "decode",
    "encode",
    "lifecycle_publisher",
    "readable",
    "recv",
    "router",
    "run_proxy",
    "send",
    "start_watched",
    "worker_endpoint",
]
