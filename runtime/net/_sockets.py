"""Socket factories and the few socket options the runtime depends on."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any, TypeAlias

import zmq

from runtime.net._security import secure_socket
from runtime.wire import BUFFER_COUNT, Addresses

__all__ = [
    "COPY_MIN",
    "DONTWAIT",
    "POLLIN",
    "Context",
    "Socket",
    "cluster_addresses",
    "dealer",
    "host_id",
    "local_addresses",
    "readable",
    "recv",
    "recv_batch",
    "recv_part",
    "recv_routed",
    "router",
    "send",
    "send_part",
    "split_address",
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
# pyzmq's send and recv without its Python layer (which only adds DRAFT routing
# ids and groups): a microsecond less per frame. ``send_part(sock, frame, flags)``
# sends one part, copied, for who sends a small frame or two on its own;
# ``recv_part(sock, flags, copy)`` reads one: bytes, or (copy False) a Frame.
send_part = _send = zmq.backend.Socket.send
recv_part = _recv = zmq.backend.Socket.recv
_get = zmq.backend.Socket.get
RCVMORE = int(zmq.RCVMORE)
_NO_BUFFERS = bytes(BUFFER_COUNT.stop - BUFFER_COUNT.start)
DATA_HWM = 64  # messages (batches) queued per peer before a send says EAGAIN


def worker_endpoint(run_dir: str, slot: int) -> str:
    return f"ipc://{run_dir}/w{slot}"


def host_id() -> str:
    """This host, as far as ipc:// reaches: processes with the same id share a
    filesystem and a network namespace. ``$DOVECOTE_HOST_ID`` overrides it (tests
    that play several hosts on one machine)."""
    override = os.environ.get("DOVECOTE_HOST_ID")
    if override:
        return override
    try:
        netns = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        netns = 0
    return f"{socket.gethostname()}/{netns}"


def local_addresses(run_dir: str) -> Addresses:
    """A one-host system: the supervisor's control ROUTER and the bus proxy's XSUB
    (publishers connect) and XPUB (subscribers connect), all ipc in ``run_dir``."""
    return Addresses(
        f"ipc://{run_dir}/sup", f"ipc://{run_dir}/bus-in", f"ipc://{run_dir}/bus-out",
        run_dir, host_id(),
    )  # fmt: skip


def cluster_addresses(head: str, run_dir: str, keys: str | None) -> Addresses:
    """A cluster's: the head's control ROUTER at ``tcp://HOST:PORT``, its bus at the
    next two ports."""
    host, port = split_address(head)
    return Addresses(
        f"tcp://{host}:{port}", f"tcp://{host}:{port + 1}", f"tcp://{host}:{port + 2}",
        run_dir, host_id(), keys,
    )  # fmt: skip


def split_address(address: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` or ``HOST:PORT`` -> (HOST, PORT); ValueError otherwise."""
    rest = address.removeprefix("tcp://")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65534:
        raise ValueError(f"{address!r} is not an address of the form tcp://HOST:PORT")
    return host, int(port)


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
    try:
        _fresh_ipc_path(endpoint)
        secure_socket(sock, endpoint, server=True)
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close(0)
        raise zmq.ZMQError(exc.errno, f"cannot bind {endpoint}: {exc}") from exc
    except BaseException:
        sock.close(0)
        raise
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
    secure_socket(sock, endpoint, server=False)
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
            _send(sock, frame, flags | more)
        else:
            _send(sock, frame, flags | more, copy=memoryview(frame).nbytes < COPY_MIN)
        flags = 0  # later parts of an accepted message never block


def recv(sock: Socket, flags: int = 0) -> list[zmq.Frame]:
    """Receive a multipart message as zero-copy Frames (``Frame.more`` is the cheap
    way to walk the parts). Frames support the buffer protocol: pickle, struct
    and ``bytes()`` take them as they are."""
    frame = _recv(sock, flags, False)
    frames = [frame]
    while frame.more:
        frame = _recv(sock, 0, False)
        frames.append(frame)
    return frames


def recv_batch(sock: Socket, flags: int = 0) -> list[Any]:
    """A message to a DEALER, whose first part starts with the wire's header: that
    part as bytes, any others as Frames. A part whose header counts no buffers is
    taken at its word: asking whether more follow costs 2 us in pyzmq, a Frame
    1.3 us more than bytes. Parts that a malformed message has beyond it are then
    read as messages of their own, each dropped as malformed. Not for a ROUTER:
    there such a part would be read as the next message's routing id."""
    first = _recv(sock, flags)
    if first[BUFFER_COUNT] == _NO_BUFFERS or not _get(sock, RCVMORE):
        return [first]
    return [first, *recv(sock)]


def recv_routed(sock: Socket, flags: int = 0) -> list[Any]:
    """A ROUTER's message as ``recv`` gives it, but for its first part, the sender's
    routing id, which comes as bytes: a Frame costs a microsecond more to make, and
    a ROUTER's first part is always followed by more, so its ``more`` is not needed."""
    return [_recv(sock, flags), *recv(sock)]
