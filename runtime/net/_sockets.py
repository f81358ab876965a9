"""Socket factories and the few socket options the runtime depends on."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TypeAlias

import zmq

__all__ = [
    "COPY_MIN",
    "DONTWAIT",
    "POLLIN",
    "Context",
    "Socket",
    "bus_endpoints",
    "control_endpoint",
    "dealer",
    "readable",
    "recv",
    "router",
    "send",
    "worker_endpoint",
]

if TYPE_CHECKING:  # subscripted only for the type checker: older pyzmq are not generic
    Socket: TypeAlias = zmq.Socket[bytes]  # the sockets of the runtime: frames of bytes
    Context: TypeAlias = zmq.Context[Socket]
else:
    Socket = zmq.Socket
    Context = zmq.Context

COPY_MIN = 64 * 1024  # frames at least this large are sent without a copy

# Plain ints: pyzmq's constants are enum flags, and their operators cost
# microseconds on the per-message path.
DONTWAIT = int(zmq.DONTWAIT)
SNDMORE = int(zmq.SNDMORE)
POLLIN = int(zmq.POLLIN)
DATA_HWM = 64  # messages (batches) queued per peer before a send says EAGAIN


def worker_endpoint(run_dir: str, slot: int) -> str:
    return f"ipc://{run_dir}/w{slot}"


def control_endpoint(run_dir: str) -> str:
    return f"ipc://{run_dir}/sup"


def bus_endpoints(run_dir: str) -> tuple[str, str]:
    """The proxy's XSUB (publishers connect) and XPUB (subscribers connect)."""
    return f"ipc://{run_dir}/bus-in", f"ipc://{run_dir}/bus-out"


def _fresh_ipc_path(endpoint: str) -> None:
    """Binding an existing ipc path silently steals it from its owner: refuse."""
    path = endpoint.removeprefix("ipc://")
    if os.path.exists(path):
        raise FileExistsError(f"ipc endpoint {endpoint} is already bound")


def router(ctx: Context, endpoint: str, hwm: int = DATA_HWM) -> Socket:
    """A ROUTER that never drops: unroutable sends raise EHOSTUNREACH, full peers EAGAIN."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.LINGER, 1000)
    _fresh_ipc_path(endpoint)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close(0)
        raise zmq.ZMQError(exc.errno, f"cannot bind {endpoint}: {exc}") from exc
    return sock


def dealer(
    ctx: Context, endpoint: str, identity: bytes | None = None, hwm: int = DATA_HWM
) -> Socket:
    sock = ctx.socket(zmq.DEALER)
    if identity is not None:
        sock.setsockopt(zmq.ROUTING_ID, identity)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.LINGER, 1000)
    # Every 10 ms, no backoff: a restarted worker binds within a few hundred ms,
    # and each ms waited here is added to its actors' downtime. A retry to an ipc
    # path that is not bound yet costs one failed connect().
    sock.setsockopt(zmq.RECONNECT_IVL, 10)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 0)
    sock.connect(endpoint)
    return sock


def readable(sock: Socket) -> bool:
    """True if a message waits. A zero-timeout zmq_poll is the cheapest way to ask:
    cheaper than ZMQ_EVENTS through pyzmq, and far cheaper than a failing recv."""
    return bool(zmq.zmq_poll([(sock, POLLIN)], 0))


def send(sock: Socket, frames: list[Any], flags: int = 0) -> None:
    """Send a multipart message; large frames go without a copy."""
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        more = SNDMORE if i < last else 0
        if type(frame) is bytes:
            sock.send(frame, flags | more)
        else:
            sock.send(frame, flags | more, copy=memoryview(frame).nbytes < COPY_MIN)
        flags = 0  # later parts of an accepted message never block


def recv(sock: Socket, flags: int = 0) -> list[zmq.Frame]:
    """Receive a multipart message as zero-copy Frames (``Frame.more`` is the cheap
    way to walk the parts). Frames support the buffer protocol: pickle, struct
    and ``bytes()`` take them as they are."""
    frame = sock.recv(flags, copy=False)
    frames = [frame]
    while frame.more:
        frame = sock.recv(copy=False)
        frames.append(frame)
    return frames
