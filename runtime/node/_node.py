"""A node of a cluster: the worker processes of one host, for the head.

It connects outbound only: one DEALER to the head's control ROUTER (CURVE over
tcp://), on which it joins, beats every second, and is told which workers to
start (``Launch``) or signal (``Signal``); it reports each worker's exit
(``Exited``). The workers connect to the head themselves (heartbeats, the
directory) and bind their own mailboxes: ipc:// in this node's run directory
for callers on this host, tcp:// at the advertised address for the others.

No orphans: a node that hears nothing from the head for three beats, or is told
it was taken for lost, kills its workers and exits; its workers die with it
(their stdin closes, and on Linux the parent-death signal).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from runtime import net, observe, wire
from runtime.core import ProcessArgs

__all__ = ["LOST", "Node", "main", "read_join_file"]

log = logging.getLogger("dovecote")

BEAT = 1.0  # seconds between heartbeats to the head (as the head expects: NODE_BEAT)
LIVES = 3  # unanswered beats before the head is taken for lost
LOST = 3  # exit status: the head was lost, or it took this node for lost
REFUSALS = (  # a handshake that failed: refused key, wrong server key, not CURVE
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
)


class Worker:
    __slots__ = ("epoch", "proc", "sentinel")

    def __init__(self, epoch: int, proc: subprocess.Popen[bytes], sentinel: int) -> None:
        self.epoch = epoch
        self.proc = proc
        self.sentinel = sentinel


class Node:
    """The node process: its socket to the head, and its workers by slot."""

    def __init__(
        self, join: str, keys: str | None, workers: int, advertise: str | None = None,
        port_base: int = 7480, name: str | None = None,
    ) -> None:  # fmt: skip
        self.ctx: net.Context = zmq.Context()
        if keys is not None:
            net.secure(self.ctx, net.load_keys(keys), serve=False)
        self.run_dir = tempfile.mkdtemp(prefix="dovecote-node-")  # mode 0700
        self.addresses = net.cluster_addresses(join, self.run_dir, keys)
        head_host, head_port = net.split_address(join)
        self.advertise = advertise or route_to(head_host, head_port)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.join = wire.Join(0, self.name, self.addresses.host, self.advertise, workers,
                              port_base, self.run_dir, os.getpid())  # fmt: skip
        identity = f"n:{self.name}.{os.getpid()}".encode()
        self.sock = net.dealer(self.ctx, self.addresses.control, identity, hwm=10_000)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 100)  # joining: retry, backing off to 5 s
        self.sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
        self.workers: dict[int, Worker] = {}
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        # the workers' stdout and stderr: log files here, and lines to the head's bus
        self.output = observe.OutputPipes(self.run_dir, self._poll_fd, self._forward)
        self.incarnation = 0
        self.heard = time.monotonic()

    # -- joining -------------------------------------------------------------------
    def run(self, join_timeout: float) -> int:
        """Join, then serve the head until it is lost or lets us go: the exit status."""
        try:
            self.send(self.join)  # queued until the connection is up: libzmq retries it
            if not self.await_joined(join_timeout):
                log.error(
                    "node %s: no answer from the head at %s within %.0f s (is it up? are "
                    "the keys the cluster's?)", self.name, self.addresses.control, join_timeout,
                )  # fmt: skip
                return 2
            log.info("node %s joined %s as %s", self.name, self.addresses.control, self.advertise)
            return self.serve()
        finally:
            self.close()

    def await_joined(self, timeout: float) -> bool:
        """Wait for the head's welcome; say why each failed handshake failed."""
        deadline = time.monotonic() + timeout
        monitor = self.sock.get_monitor_socket(REFUSALS)
        told: set[int] = set()
        try:
            while time.monotonic() < deadline:
                if monitor.poll(0):
                    event = int(recv_monitor_message(monitor)["event"])
                    if event not in told:  # once each: the join retries with backoff
                        told.add(event)
                        _refused(self.addresses.control, event)
                if self.sock.poll(int(min(0.25, deadline - time.monotonic()) * 1000) + 1):
                    message = self.receive()
                    if isinstance(message, wire.Joined) and not message.lost:
                        self.incarnation = message.incarnation
                        return True
            return False
        finally:
            self.sock.disable_monitor()
            monitor.close(linger=0)

    # -- serving ---------------------------------------------------------------------
    def serve(self) -> int:
        next_beat = self.heard = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_beat:
                self.send(wire.NodeBeat(self.name, self.incarnation))
                next_beat = now + BEAT
            if now - self.heard > BEAT * LIVES:
                log.error("node %s: the head is silent for %.1f s; leaving", self.name,
                          now - self.heard)  # fmt: skip
                return LOST
            ready = dict(self.poller.poll(int(max(0.0, next_beat - now) * 1000) + 1))
            self.output.handle(ready)  # before exits: a dead worker's last lines first
            if self.sock in ready and not self.drain():
                return LOST
            for slot, worker in list(self.workers.items()):
                if worker.sentinel in ready:
                    self.reap(slot, worker)

    def drain(self) -> bool:
        """Handle what the head sent; False once it lets this node go."""
        while self.sock.poll(0):
            message = self.receive()
            self.heard = time.monotonic()
            if isinstance(message, wire.Joined) and message.lost:
                log.error("node %s: the head took it for lost, or is leaving", self.name)
                return False
            if isinstance(message, wire.Launch):
                self.launch(message)
            elif isinstance(message, wire.Signal):
                self.signal(message)
        return True

    def launch(self, message: wire.Launch) -> None:
        place = message.place
        args = ProcessArgs.from_json(message.args)
        args = args._replace(parent=os.getpid(), addresses=self.addresses, listen=place.tcp)
        path = place.ipc.removeprefix("ipc://")
        if os.path.exists(path):
            os.unlink(path)  # a dead worker's of this slot
        proc, sentinel = net.start_watched("worker", args.to_json(), **self.output.popen())
        self.output.add(place.slot, proc)
        self.workers[place.slot] = Worker(place.epoch, proc, sentinel)
        self.poller.register(sentinel, zmq.POLLIN)
        log.info("node %s: worker %d (epoch %d) is pid %d", self.name, place.slot, place.epoch,
                 proc.pid)  # fmt: skip

    def signal(self, message: wire.Signal) -> None:
        worker = self.workers.get(message.slot)
        if worker is not None and worker.epoch == message.epoch:
            worker.proc.send_signal(message.signal)

    def reap(self, slot: int, worker: Worker) -> None:
        del self.workers[slot]
        self.poller.unregister(worker.sentinel)
        os.close(worker.sentinel)
        code = worker.proc.wait()
        net.remove_segments(worker.proc.pid)  # its shared memory; mapped views stay valid
        self.output.remove(worker.proc)  # its last lines, written before it died
        if worker.proc.stdin:
            worker.proc.stdin.close()
        self.send(wire.Exited(slot, worker.epoch, code))

    def _poll_fd(self, fd: int, added: bool) -> None:
        self.poller.register(fd, zmq.POLLIN) if added else self.poller.unregister(fd)

    def _forward(self, entries: list[dict[str, Any]]) -> None:
        """Workers' lines, to the head, which publishes them to the drivers."""
        self.send(wire.NodeOutput(entries))

    # -- the socket --------------------------------------------------------------------
    def send(self, message: object) -> None:
        net.send(self.sock, wire.encode_control(message))

    def receive(self) -> object:
        frames = net.recv(self.sock)
        try:
            kind, body, buffers, _ = wire.unpack(frames)
            if kind != wire.CONTROL:
                raise wire.ProtocolError(f"kind {kind} on the control socket")
            return wire.decode_control(body, buffers)
        except wire.ProtocolError as exc:
            log.warning("node %s dropped a malformed message from the head: %s", self.name, exc)
            return None

    def close(self) -> None:
        """No worker outlives its node."""
        for worker in self.workers.values():
            worker.proc.kill()
        for worker in self.workers.values():
            worker.proc.wait()
            net.remove_segments(worker.proc.pid)
            os.close(worker.sentinel)
            self.output.remove(worker.proc)
            if worker.proc.stdin:
                worker.proc.stdin.close()
        self.workers.clear()
        self.output.close()
        self.sock.close(linger=0)
        self.ctx.term()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _refused(head: str, event: int) -> None:
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        log.error("the head at %s refused this node's key: are the keys the cluster's?", head)
    else:
        log.error("the handshake with the head at %s failed (%s): are the keys the cluster's, "
                  "and CURVE on both sides?", head, zmq.Event(event).name)  # fmt: skip


def route_to(host: str, port: int) -> str:
    """The address this host uses to reach ``host``: what its peers can reach it on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, port))  # UDP: no packet is sent
        return str(probe.getsockname()[0])


def read_join_file(path: str, timeout: float) -> str:
    """Wait for a head's address file (a shared-filesystem handshake) and read it."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            with open(path) as file:
                address = file.read().strip()
            if address:
                return address
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no head address in {path} within {timeout:.0f} s")
        time.sleep(delay)  # a file on a shared filesystem: nothing to wait on but time
        delay = min(delay * 2, 1.0)


def _leave(*_: object) -> None:
    raise SystemExit(0)  # through ``Node.close``: the workers go with the node


def main(
    join: str, keys: str | None, workers: int, advertise: str | None, port_base: int,
    name: str | None, join_timeout: float,
) -> int:  # fmt: skip
    signal.signal(signal.SIGTERM, _leave)
    node = Node(join, keys, workers, advertise, port_base, name)
    return node.run(join_timeout)
