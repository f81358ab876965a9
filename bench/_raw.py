"""The raw pyzmq baseline: ROUTER servers in spawn-context processes, DEALER clients.

No numpy here: a spawn child imports this module, and should start as fast as it can.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import zmq

STOP, PING = b"\x00stop", b"\x00ping"  # a pickle never starts with a NUL byte
HELLO = b"\x00hello"
WINDOW = 1000  # pipelined requests outstanding at most
# High-water marks well above WINDOW: libzmq acknowledges reads lazily, so a pipe can
# look full with fewer than HWM messages in it, and a ROUTER drops what it cannot queue.
HWM = 10 * WINDOW
_SPAWN = multiprocessing.get_context("spawn")


def _orphan_proof() -> None:
    """Have this child of the bench exit when the bench is gone, even SIGKILLed: a
    thread looks at its parent every half second. It imports nothing, since the
    raw server's start is measured."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        while os.getppid() == parent.pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="orphan-proof", daemon=True).start()


def spin(started: Any, stop: Any) -> None:
    """Keep one core busy until ``stop`` (an Event) is set."""
    _orphan_proof()
    started.set()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the parent stops it
        while not stop.is_set():
            for _ in range(100_000):
                pass


@contextlib.contextmanager
def a_core_busy(timeout: float = 30.0) -> Iterator[None]:
    """A spawn-context process spinning on one core meanwhile: with no core idle, a
    wake-up costs no exit from an idle state, and what each side's round trip costs
    in CPU shows in its latency. Stopped, or killed, on the way out."""
    started, stop = _SPAWN.Event(), _SPAWN.Event()
    process = _SPAWN.Process(target=spin, args=(started, stop), daemon=True)
    process.start()
    try:
        if not started.wait(timeout):
            raise RuntimeError(f"the spinning process did not start within {timeout} s")
        yield
    finally:
        stop.set()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join(timeout)


def serve(endpoint: str, mode: str) -> None:
    """The server process: a ROUTER on ``endpoint``; ``mode`` is pickle, frames or count.

    PING and STOP are echoed back in every mode; STOP then ends the process.
    """
    _orphan_proof()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full pipe blocks the send: never drop
    sock.bind(endpoint)
    count = 0
    while True:
        frames: list[Any] = (
            sock.recv_multipart(copy=False) if mode == "frames" else sock.recv_multipart()
        )
        ident, body = frames[0], frames[-1]
        if len(body) == len(STOP) and bytes(body) in (STOP, PING):
            sock.send_multipart([ident, bytes(body)])
            if bytes(body) == STOP:
                break
        elif mode == "frames":  # echo the frames as they came, uncopied
            sock.send_multipart(frames, copy=False)
        elif mode == "pickle":  # echo the unpickled object, pickled again
            sock.send_multipart([ident, pickle.dumps(pickle.loads(body), 5)])
        elif pickle.loads(body)[0] == "inc":  # mode "count"
            count += 1
        else:  # ("count", ()): reply with the count and start again from zero
            sock.send_multipart([ident, pickle.dumps(count, 5)])
            count = 0
    sock.close(linger=1000)
    ctx.term()


class RawServer:
    """A server process and this process's DEALER connected to it."""

    def __init__(self, ctx: zmq.Context, mode: str, timeout: float = 20.0) -> None:
        self._dir = tempfile.mkdtemp(prefix="bench-raw-")
        self.endpoint = endpoint = f"ipc://{self._dir}/{mode}"
        self.process = _SPAWN.Process(target=serve, args=(endpoint, mode), daemon=True)
        self.process.start()
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 5)  # we may connect before the bind
        self.sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))  # zmq.Again, not a hang
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, HWM)
        self.sock.setsockopt(zmq.RCVHWM, HWM)
        self.sock.connect(endpoint)

    def ping(self) -> None:
        self.sock.send(PING)
        if self.sock.recv() != PING:
            raise RuntimeError("raw server answered a ping with something else")

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the server to stop, join it, kill it if it does not go."""
        with contextlib.suppress(zmq.ZMQError):
            self.sock.send(STOP, zmq.NOBLOCK)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout)
        self.sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def latency(server: RawServer, n: int) -> list[int]:
    """Round-trip times in ns of ``n`` pickled ints, one at a time."""
    return _pings(server.sock, n)


def _pings(sock: zmq.Socket[bytes], n: int) -> list[int]:
    """Round-trip times in ns of ``n`` pickled ints sent on ``sock``, one at a time."""
    samples = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        sock.send(pickle.dumps(i, 5))
        pickle.loads(sock.recv())
        samples.append(time.perf_counter_ns() - t0)
    return samples


def pipelined(server: RawServer, n: int) -> float:
    """Seconds to send ``n`` pickled requests (``WINDOW`` outstanding) and get the replies."""
    sock, outstanding, total = server.sock, 0, 0
    t0 = time.perf_counter()
    for i in range(n):
        if outstanding >= WINDOW:
            total += pickle.loads(sock.recv())
            outstanding -= 1
        sock.send(pickle.dumps(i, 5))
        outstanding += 1
    for _ in range(outstanding):
        total += pickle.loads(sock.recv())
    elapsed = time.perf_counter() - t0
    assert total == n * (n - 1) // 2, "raw pipelined: wrong replies"
    return elapsed


def tell(server: RawServer, n: int) -> float:
    """Seconds to send ``n`` pickled one-way messages and get the server's count."""
    sock = server.sock
    t0 = time.perf_counter()
    for _ in range(n):
        sock.send(pickle.dumps(("inc", ()), 5))
    sock.send(pickle.dumps(("count", ()), 5))
    count = pickle.loads(sock.recv())
    elapsed = time.perf_counter() - t0
    assert count == n, f"raw tell: the server counted {count}, not {n}"
    return elapsed


def roundtrip_buffer(server: RawServer, buf: Any) -> tuple[float, zmq.Frame]:
    """Seconds to send ``buf`` uncopied and get it back; and the frame it came back in."""
    t0 = time.perf_counter()
    server.sock.send(buf, copy=False)
    frame = server.sock.recv(copy=False)
    return time.perf_counter() - t0, frame


def start(ctx: zmq.Context, processes: int) -> float:
    """Seconds to start ``processes`` echo servers and get one ping answered by each."""
    t0 = time.perf_counter()
    servers = [RawServer(ctx, "pickle") for _ in range(processes)]
    try:
        for server in servers:
            server.ping()
        return time.perf_counter() - t0
    finally:
        for server in servers:
            server.stop()


def remote_latency(endpoint: str, n: int) -> list[int]:
    """In a process of its own: ``latency`` from a fresh DEALER to the server at ``endpoint``.

    The raw side of an actor-to-actor ask: both ends are processes other than the driver.
    """
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 20_000)
    sock.connect(endpoint)
    try:
        _pings(sock, n)  # a warm-up: the first replies also prove the connection
        return _pings(sock, n)
    finally:
        sock.close()
        ctx.term()


def publish(endpoint: str, n: int, per: int) -> None:
    """The raw bus publisher's process: ``n`` pickled ints, ``per`` to a frame (a pickled
    list), through an XPUB that connects to the subscriber, never dropping.

    Its connection is proven by the subscriber's first subscription reaching this XPUB
    (answered with a hello); it starts when the subscriber then subscribes to ``b"go"``.
    """
    _orphan_proof()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.setsockopt(zmq.XPUB_NODROP, 1)
    sock.setsockopt(zmq.RCVTIMEO, 20_000)
    sock.connect(endpoint)
    try:
        while (subscription := sock.recv()) != b"\x01go":
            if subscription == b"\x01":
                sock.send(HELLO)
        for start in range(0, n, per):
            frame = pickle.dumps(list(range(start, min(n, start + per))), 5)
            while True:
                try:
                    sock.send(frame, zmq.DONTWAIT)
                    break
                except zmq.Again:
                    sock.poll(1000, zmq.POLLOUT)
    finally:
        sock.close(linger=5000)
        ctx.term()


def bus(ctx: zmq.Context, n: int, per: int, timeout: float = 20.0) -> float:
    """Events/s from a publisher process to a SUB here, ``per`` events to a frame; the
    clock starts when the publisher is told to go. Every event is checked to arrive."""
    folder = tempfile.mkdtemp(prefix="bench-raw-bus-")
    endpoint = f"ipc://{folder}/bus"
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 100_000)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    sub.bind(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    process = _SPAWN.Process(target=publish, args=(endpoint, n, per), daemon=True)
    process.start()
    try:
        while sub.recv() != HELLO:
            pass
        sub.setsockopt(zmq.SUBSCRIBE, b"go")  # the publisher waits for this one
        got, t0 = 0, time.perf_counter()
        while got < n:
            for _ in pickle.loads(sub.recv()):  # each event handed on, as a subscriber would
                got += 1
        return n / (time.perf_counter() - t0)
    finally:
        sub.close()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join(timeout)
        shutil.rmtree(folder, ignore_errors=True)
