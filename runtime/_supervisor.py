"""The supervisor process: starts the workers, keeps the directory, reports deaths.

It is the control plane only: actor traffic never passes through it. Clients
(the driver, and every worker for the calls its actors make) hold a DEALER to
its control ROUTER and ask it to spawn or look up actors. It notices a worker's
death without polling, through a pipe the worker holds open for life, tells
every client (so their pending calls fail with the cause), and starts a new
worker in the slot. When the driver goes away (its end of our stdin closes) it
shuts the workers down and exits.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import zmq

from actors._errors import ActorCrashedError, ActorStoppedError
from runtime import _protocol as proto
from runtime import _sockets

__all__ = ["describe_exit", "main"]

log = logging.getLogger("dovecote")

STOP_GRACE = 5.0  # seconds workers get to run on_stop before SIGTERM, then SIGKILL
SEND_TIMEOUT_MS = 2000  # a client that reads no control message for this long is stuck


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


class _WorkerProc:
    """One worker slot and the process now in it. Internal."""

    def __init__(self, slot: int, proc: subprocess.Popen[bytes], sentinel: int) -> None:
        self.slot = slot
        self.proc = proc
        self.sentinel = sentinel
        self.ready = False
        self.actors = 0
        self.backlog: list[tuple[str, tuple[Any, ...]]] = []  # for it once it is ready
        self.last_heartbeat = time.monotonic()


class Supervisor:
    def __init__(self, opts: dict[str, Any]) -> None:
        self.opts = opts
        self.run_dir: str = opts["run_dir"]
        self.ctx = zmq.Context()
        self.control = _sockets.router(self.ctx, _sockets.control_endpoint(self.run_dir), 10_000)
        self.control.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        self.poller = zmq.Poller()
        self.poller.register(self.control, zmq.POLLIN)
        self.poller.register(sys.stdin.fileno(), zmq.POLLIN)
        self.workers: dict[int, _WorkerProc] = {}
        self.clients: set[bytes] = set()
        self.actors: dict[int, tuple[int, str | None]] = {}  # actor id -> (slot, name)
        self.names: dict[str, int] = {}
        self.creating: dict[int, tuple[bytes, int, int, str | None]] = {}
        self.next_actor = 1
        self.stopping = False
        self.stop_deadline = 0.0
        self.escalations = [signal.SIGTERM, signal.SIGKILL]
        self.stop_waiters: list[tuple[bytes, int]] = []
        self.waiting_hello: list[tuple[bytes, int]] = []

    # -- workers ----------------------------------------------------------------
    def start_worker(self, slot: int) -> None:
        endpoint = _sockets.worker_endpoint(self.run_dir, slot)
        path = endpoint.removeprefix("ipc://")
        if os.path.exists(path):
            os.unlink(path)  # left by a dead worker of this slot; nobody else owns it
        opts = {**self.opts, "slot": slot, "parent": os.getpid()}
        read_end, write_end = os.pipe()
        proc = subprocess.Popen(
            [sys.executable, os.environ["DC_WORKER"], "worker", json.dumps(opts)]
            if os.environ.get("DC_WORKER")
            else [sys.executable, "-m", "runtime._main", "worker", json.dumps(opts)],
            stdin=subprocess.PIPE,
            pass_fds=(write_end,),
        )
        os.close(write_end)
        self.workers[slot] = _WorkerProc(slot, proc, read_end)
        self.poller.register(read_end, zmq.POLLIN)

    def on_worker_exit(self, worker: _WorkerProc) -> None:
        self.poller.unregister(worker.sentinel)
        os.close(worker.sentinel)
        returncode = worker.proc.wait()
        if worker.proc.stdin:
            worker.proc.stdin.close()
        del self.workers[worker.slot]
        if self.stopping:
            return
        cause = f"worker {worker.slot} (pid {worker.proc.pid}) {describe_exit(returncode)}"
        log.warning("%s", cause)
        for actor_id, (slot, _) in list(self.actors.items()):
            if slot == worker.slot:
                self.forget(actor_id)
        for actor_id, (client, req_id, slot, name) in list(self.creating.items()):
            if slot == worker.slot:
                del self.creating[actor_id]
                self.release(name, actor_id)
                self.reply(
                    client,
                    req_id,
                    False,
                    proto.encode_error(
                        ActorCrashedError(
                            f"the worker died while creating the actor ({cause})", cause
                        )
                    ),
                )
        for client in list(self.clients):
            self.send(client, "worker_died", worker.slot, cause)
        self.start_worker(worker.slot)

    # -- directory ----------------------------------------------------------------
    def forget(self, actor_id: int) -> None:
        slot, name = self.actors.pop(actor_id)
        if slot in self.workers:
            self.workers[slot].actors -= 1
        self.release(name, actor_id)

    def release(self, name: str | None, actor_id: int) -> None:
        if name is not None and self.names.get(name) == actor_id:
            del self.names[name]

    def pick_slot(self, pinned: int | None) -> int:
        if pinned is not None:
            return pinned
        return min(self.workers.values(), key=lambda w: (not w.ready, w.actors, w.slot)).slot

    def send_worker(self, slot: int, op: str, *fields: Any) -> None:
        """Send to a worker now, or as soon as a starting one says it is ready."""
        worker = self.workers[slot]
        if worker.ready:
            self.send(b"w%d" % slot, op, *fields)
        else:
            worker.backlog.append((op, fields))

    # -- messages -----------------------------------------------------------------
    def send(self, peer: bytes, op: str, *fields: Any) -> None:
        try:
            _sockets.send(self.control, [peer, *proto.encode_control(op, *fields)])
        except zmq.Again:
            log.error(
                "supervisor: %r has not read its control messages for %.0f s; dropped %s",
                peer,
                SEND_TIMEOUT_MS / 1000,
                op,
            )
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            log.info("supervisor: %r is gone; dropped %s", peer, op)
            self.clients.discard(peer)

    def reply(self, peer: bytes, req_id: int, ok: bool, payload: Any) -> None:
        self.send(peer, "reply", req_id, ok, payload)

    def on_control(self, frames: list[Any]) -> None:
        peer = frames[0].bytes
        try:
            _, body, _ = proto.unpack(frames[1:])
            op, *fields = proto.decode_body(body)
            handler = getattr(self, f"op_{op}")
        except (proto.ProtocolError, ValueError, TypeError, AttributeError) as exc:
            log.warning("supervisor dropped a malformed message from %r: %s", peer, exc)
            return
        try:
            handler(peer, *fields)
        except Exception:
            log.exception("supervisor: %s from %r failed", op, peer)

    def op_hello(self, peer: bytes, req_id: int) -> None:
        self.clients.add(peer)
        self.waiting_hello.append((peer, req_id))
        self.announce()

    def op_ready(self, peer: bytes, slot: int, pid: int) -> None:
        self.clients.add(peer)
        worker = self.workers[slot]
        worker.ready = True
        for op, fields in worker.backlog:
            self.send(peer, op, *fields)
        worker.backlog.clear()
        self.announce()

    def announce(self) -> None:
        """Answer the drivers' hellos once every worker is ready."""
        if all(w.ready for w in self.workers.values()):
            for peer, req_id in self.waiting_hello:
                self.reply(peer, req_id, True, len(self.workers))
            self.waiting_hello.clear()

    def op_heartbeat(self, peer: bytes, slot: int) -> None:
        if slot in self.workers:
            self.workers[slot].last_heartbeat = time.monotonic()

    def op_spawn(
        self, peer: bytes, req_id: int, blob: bytes, name: str | None, pinned: int | None
    ) -> None:
        err: Exception | None = None
        if self.stopping:
            err = ActorStoppedError("the actor system is shutting down")
        elif name is not None and name in self.names:
            err = ValueError(f"an actor named {name!r} already exists")
        if err is not None:
            self.reply(peer, req_id, False, proto.encode_error(err))
            return
        slot = self.pick_slot(pinned)
        actor_id = self.next_actor
        self.next_actor += 1
        if name is not None:
            self.names[name] = actor_id
        self.creating[actor_id] = (peer, req_id, slot, name)
        self.workers[slot].actors += 1
        self.send_worker(slot, "create", actor_id, name, blob)

    def op_created(self, peer: bytes, actor_id: int, ok: bool, payload: Any) -> None:
        client, req_id, slot, name = self.creating.pop(actor_id)
        if ok:
            self.actors[actor_id] = (slot, name)
            self.reply(client, req_id, True, (actor_id, slot, name))
        else:
            self.workers[slot].actors -= 1
            self.release(name, actor_id)
            self.reply(client, req_id, False, payload)

    def op_lookup(self, peer: bytes, req_id: int, name: str) -> None:
        actor_id = self.names.get(name)
        if actor_id is None or actor_id not in self.actors:
            err = LookupError(f"no actor named {name!r}")
            self.reply(peer, req_id, False, proto.encode_error(err))
            return
        slot, _ = self.actors[actor_id]
        self.reply(peer, req_id, True, (actor_id, slot, name))

    def op_actor_gone(self, peer: bytes, req_id: int, actor_id: int) -> None:
        if actor_id in self.actors:
            self.forget(actor_id)
        self.reply(peer, req_id, True, None)

    def op_shutdown(self, peer: bytes, req_id: int, grace: float = STOP_GRACE) -> None:
        self.stop_waiters.append((peer, req_id))
        self.begin_stop(grace)

    # -- main loop ----------------------------------------------------------------
    def run(self) -> None:
        for slot in range(self.opts["workers"]):
            self.start_worker(slot)
        while not self.stopping or self.workers:
            self.step(self.stop_timeout())
        for peer, req_id in self.stop_waiters:
            self.reply(peer, req_id, True, None)

    def step(self, timeout: float | None) -> None:
        events = dict(self.poller.poll(None if timeout is None else int(timeout)))
        if self.control in events:
            while _sockets.readable(self.control):
                self.on_control(_sockets.recv(self.control, _sockets.DONTWAIT))
        stdin = sys.stdin.fileno()
        if stdin in events and not os.read(stdin, 4096):
            log.info("supervisor: the driver is gone; shutting down")
            self.poller.unregister(stdin)
            self.begin_stop(STOP_GRACE)
        for worker in list(self.workers.values()):
            if worker.sentinel in events:
                self.on_worker_exit(worker)

    def begin_stop(self, grace: float) -> None:
        """Ask every worker to stop its actors; stragglers get SIGTERM, then SIGKILL."""
        if self.stopping:
            return
        self.stopping = True
        self.stop_deadline = time.monotonic() + grace
        for slot in list(self.workers):
            self.send_worker(slot, "shutdown")

    def stop_timeout(self) -> float | None:
        """Milliseconds until the next escalation while stopping; None otherwise."""
        if not self.stopping:
            return None
        remaining = self.stop_deadline - time.monotonic()
        if remaining <= 0 and self.escalations:
            sig = self.escalations.pop(0)
            for worker in self.workers.values():
                log.warning("worker %d did not stop in time: %s", worker.slot, sig.name)
                worker.proc.send_signal(sig)
            self.stop_deadline = time.monotonic() + 1.0
            remaining = 1.0
        return max(remaining, 0.1) * 1000

    def close(self) -> None:
        self.control.close(linger=100)
        self.ctx.term()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def main(options: str) -> None:
    opts = json.loads(options)
    logging.basicConfig(
        level=opts.get("log_level", "WARNING"),
        format="%(asctime)s supervisor %(levelname)s %(message)s",
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    supervisor = Supervisor(opts)
    try:
        supervisor.run()
    finally:
        for worker in supervisor.workers.values():
            worker.proc.kill()
            worker.proc.wait()
        supervisor.close()
