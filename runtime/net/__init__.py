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
from runtime.net._security import (
    Keys,
    check_bind,
    is_loopback,
    keys_of,
    load_keys,
    new_keys,
    secure,
    secure_socket,
)
from runtime.net._sockets import (
    COPY_MIN,
    DONTWAIT,
    POLLIN,
    Context,
    Socket,
    cluster_addresses,
    dealer,
    host_id,
    local_addresses,
    readable,
    recv,
    router,
    send,
    split_address,
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
    "Keys",
    "Publisher",
    "Socket",
    "Subscription",
    "check_bind",
    "check_topic",
    "cluster_addresses",
    "dealer",
    "decode",
    "encode",
    "host_id",
    "is_loopback",
    "keys_of",
    "lifecycle_publisher",
    "load_keys",
    "local_addresses",
    "new_keys",
    "readable",
    "recv",
    "router",
    "run_proxy",
    "secure",
    "secure_socket",
    "send",
    "split_address",
    "start_watched",
    "worker_endpoint",
]
