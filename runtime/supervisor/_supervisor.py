"""The supervisor process: workers, the directory, and restarts, as in Erlang/OTP.

It is the control plane only: actor traffic never passes through it. Clients
(the driver, and every worker for the calls its actors make) hold a DEALER to
its control ROUTER to spawn, look up and watch actors.

Crashes are noticed three ways: a worker's exit (through its pidfd, so no
polling), its heartbeats stopping (the health
thread of ``_health``; the worker is killed), and a limit the worker reports
(memory, messages; the worker stops its actors and exits). Each crash is told
to every client, so calls pending on the dead worker fail with the cause (or
are re-sent, for retryable methods), and a new worker takes the slot. Its
actors are then restarted there, by their restart type and within their
restart intensity (``_policy``), alone or with their group. Refs name the
slot, so they reach the new incarnation unchanged.

Work that waits for workers' answers (starting a group in order, restarting
one, stopping everything in reverse order) is written as generator procedures:
each ``yield`` parks the procedure until an answer or a timer resumes it.

When the driver goes away (its end of our stdin closes) it shuts down.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import zmq

from actors._errors import ActorCrashedError, ActorStoppedError
from runtime import _bus, _sockets
from runtime import _protocol as proto
from runtime._policy import ActorRecord, Group, backoff, restarts_for, within_intensity
from runtime._procs import start_watched

__all__ = ["describe_exit", "main"]

log = logging.getLogger("dovecote")

STOP_GRACE = 5.0  # seconds workers get to run on_stop before SIGTERM, then SIGKILL
ORPHAN_GRACE = 2.0  # the same once the driver is gone, then SIGKILL: nobody waits for on_stop
SEND_TIMEOUT_MS = 2000  # a client that reads no control message for this long is stuck

Procedure = Generator[tuple[Any, ...], Any, None]


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

    def __init__(self, slot: int, epoch: int, proc: subprocess.Popen[bytes], sentinel: int) -> None:
        self.slot = slot
        self.identity = b"w%d.%d" % (slot, epoch)  # as the worker names itself
        self.proc = proc
        self.sentinel = sentinel
        self.ready = False
        self.last_heartbeat = time.monotonic()
        self.cause: str | None = None  # why we ended it: heartbeat lost, a limit
        self.recycled = False
        self.backlog: list[tuple[str, tuple[Any, ...]]] = []  # for it once it is ready


class Supervisor:
    def __init__(self, opts: dict[str, Any]) -> None:
        self.opts = opts
        self.run_dir: str = opts["run_dir"]
        self.heartbeat_timeout: float = opts.get("heartbeat_timeout", 3.0)
        self.ctx = zmq.Context()
        self.control = _sockets.router(self.ctx, _sockets.control_endpoint(self.run_dir), 10_000)
        self.control.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        bound = threading.Event()
        self.bus = threading.Thread(
            target=_bus.run_proxy, args=(self.ctx, self.run_dir, bound), daemon=True
        )
        self.bus.start()
        bound.wait(10)
        self.events = self.ctx.socket(zmq.PUB)  # lifecycle events, into the proxy
        self.events.setsockopt(zmq.LINGER, 0)
        self.events.connect(_bus.INPROC)
        self.bus_seqs: dict[str, int] = {}  # per topic, as every publisher numbers them
        self.poller = zmq.Poller()
        self.poller.register(self.control, zmq.POLLIN)
        self.poller.register(sys.stdin.fileno(), zmq.POLLIN)
        self.workers: dict[int, _WorkerProc] = {}
        self.epochs: dict[int, int] = {}  # slot -> incarnation of the worker in it
        self.clients: set[bytes] = set()
        self.actors: dict[int, ActorRecord] = {}
        self.load: dict[int, int] = {}  # actors per slot
        self.names: dict[str, int] = {}
        self.groups: dict[int, Group] = {}
        self.watchers: dict[int, list[tuple[bytes, int]]] = {}  # actor id -> (peer, watch id)
        self.ids = itertools.count(1)
        self.waits: dict[tuple[Any, ...], Procedure] = {}
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self.closing = False  # shutting down: no more restarts
        self.stop_deadline: float | None = None  # set once workers are told to exit
        self.escalations = [signal.SIGTERM, signal.SIGKILL]
        self.stop_waiters: list[tuple[bytes, int]] = []
        self.waiting_hello: list[tuple[bytes, int]] = []

    # -- workers ----------------------------------------------------------------
    def start_worker(self, slot: int, expect: list[int] = ()) -> None:  # type: ignore[assignment]
        endpoint = _sockets.worker_endpoint(self.run_dir, slot)
        path = endpoint.removeprefix("ipc://")
        if os.path.exists(path):
            os.unlink(path)  # left by a dead worker of this slot; nobody else owns it
        self.epochs[slot] = self.epochs.get(slot, -1) + 1
        opts = {
            **self.opts,
            "slot": slot,
            "parent": os.getpid(),
            "expect": list(expect),
            "epoch": self.epochs[slot],
            "epochs": self.epochs,
        }
        proc, sentinel = start_watched("worker", json.dumps(opts))
        log.debug(
            "worker %d (epoch %d, pid %d) starting; expects %s",
            slot,
            self.epochs[slot],
            proc.pid,
            list(expect),
        )
        self.workers[slot] = _WorkerProc(slot, self.epochs[slot], proc, sentinel)
        self.poller.register(sentinel, zmq.POLLIN)

    def on_worker_exit(self, worker: _WorkerProc) -> None:
        self.poller.unregister(worker.sentinel)
        os.close(worker.sentinel)
        returncode = worker.proc.wait()
        if worker.proc.stdin:
            worker.proc.stdin.close()
        del self.workers[worker.slot]
        cause = f"worker {worker.slot} (pid {worker.proc.pid}) " + (
            worker.cause or describe_exit(returncode)
        )
        victims = [a for a in self.actors.values() if a.slot == worker.slot]
        if not self.closing:
            log.warning("%s", cause)
            comeback = [
                a.actor_id for a in victims if a.state != "starting" and a.restart != "temporary"
            ]
            self.start_worker(worker.slot, comeback)  # holds their messages until restarted
            for client in list(self.clients):
                self.send(client, "worker_died", worker.slot, cause, self.epochs[worker.slot])
        for actor in victims:  # procedures waiting on them learn of the crash
            self.resume(("created", actor.actor_id), (False, _crash_blob(cause), cause))
            self.resume(("suspended", actor.actor_id), False)
            self.resume(("stopped", actor.actor_id), False)
        if self.closing:
            return
        self.event("dovecote.worker.exited", slot=worker.slot, pid=worker.proc.pid, cause=cause)
        abnormal = returncode != 0 or worker.cause is not None
        counted = not worker.recycled  # a recycle at a limit is not a failure
        for actor in victims:
            self.actor_exited(actor, cause, abnormal, counted)

    def check_heartbeats(self) -> None:
        now = time.monotonic()
        for worker in self.workers.values():
            silent = now - worker.last_heartbeat
            limit = self.heartbeat_timeout if worker.ready else max(self.heartbeat_timeout, 30.0)
            if worker.cause is None and silent > limit:  # a starting one gets 30 s
                worker.cause = f"lost its heartbeat (none for {silent:.1f} s)"
                log.warning("worker %d %s: killing it", worker.slot, worker.cause)
                worker.proc.kill()

    # -- restarts -----------------------------------------------------------------
    def actor_exited(self, actor: ActorRecord, cause: str, abnormal: bool, counted: bool) -> None:
        """An actor's process died: restart it (or its group), or give up on it."""
        if self.actors.get(actor.actor_id) is not actor or actor.state != "running":
            return  # forgotten meanwhile, or a procedure (re)starting it has been told
        if actor.group is not None:
            self.group_child_exited(self.groups[actor.group], actor, cause, abnormal, counted)
            return
        if not restarts_for(actor.restart, abnormal):
            self.give_up(actor, f"{cause}; not restarted ({actor.restart})", failure=False)
            return
        if counted and not within_intensity(actor.restarts, actor.max_restarts, actor.period):
            self.give_up(
                actor,
                f"{cause}; more than {actor.max_restarts} restarts in {actor.period} s, giving up",
            )
            return
        self.notify_down(actor, f"crashed: {cause}; restarting", final=False)
        self.start(self.restart_one(actor, cause))

    def restart_one(self, actor: ActorRecord, cause: str) -> Procedure:
        actor.state = "restarting"
        delay = backoff(len(actor.restarts))
        if delay:
            yield ("sleep", delay)
        if self.actors.get(actor.actor_id) is not actor:
            return  # stopped or given up on while it waited
        ok, _, text = yield from self.create(actor)
        if not ok and actor.actor_id in self.actors:
            actor.state = "running"  # so that the failure counts as the next crash
            self.actor_exited(actor, f"its restart failed: {text}", True, True)

    def group_child_exited(
        self, group: Group, child: ActorRecord, cause: str, abnormal: bool, counted: bool
    ) -> None:
        if not restarts_for(child.restart, abnormal):
            group.children.remove(child.actor_id)
            self.give_up(child, f"{cause}; not restarted ({child.restart})", failure=False)
            return
        if counted and not within_intensity(group.restarts, group.max_restarts, group.period):
            self.give_up_group(
                group, f"{cause}; more than {group.max_restarts} restarts in {group.period} s"
            )
            return
        index = group.children.index(child.actor_id)
        targets = {
            "one_for_one": [child.actor_id],
            "one_for_all": group.children,
            "rest_for_one": group.children[index:],
        }[group.strategy]
        self.start(self.restart_group(group, child, [self.actors[a] for a in targets], cause))

    def restart_group(
        self, group: Group, crashed: ActorRecord, targets: list[ActorRecord], cause: str
    ) -> Procedure:
        self.notify_down(crashed, f"crashed: {cause}; restarting", final=False)
        crashed.state = "restarting"
        for sibling in reversed(targets):  # stopped in reverse start order
            if sibling is crashed or sibling.state != "running":
                continue
            sibling.state = "restarting"
            self.notify_down(sibling, f"restarting with its group after: {cause}", final=False)
            self.send_worker(sibling.slot, "suspend", sibling.actor_id, cause)
            yield ("suspended", sibling.actor_id)
        delay = backoff(len(group.restarts))
        if delay:
            yield ("sleep", delay)
        for child in targets:  # started again in order
            if not group.alive or self.actors.get(child.actor_id) is not child:
                continue  # the group gave up, or the child was stopped, while it waited
            ok, _, text = yield from self.create(child)
            if not ok and group.alive:
                child.state = "running"
                self.group_child_exited(group, child, f"its restart failed: {text}", True, True)
                return

    def give_up(self, actor: ActorRecord, reason: str, failure: bool = True) -> None:
        """Stop restarting an actor; a failure (past its intensity) is logged as one."""
        log.log(
            logging.ERROR if failure else logging.INFO,
            "supervisor: actor #%d (%s) ends: %s",
            actor.actor_id,
            actor.name,
            reason,
        )
        self.notify_down(actor, reason, final=True)
        self.forget(actor)
        if actor.slot in self.workers:
            self.send_worker(actor.slot, "abandon", actor.actor_id, reason)

    def give_up_group(self, group: Group, reason: str) -> None:
        """Past its intensity a group stops all its children and escalates: with no
        supervisor above it, escalating means the failure is reported."""
        group.alive = False
        log.error("supervisor: group %d gave up and escalates: %s", group.group_id, reason)
        for actor_id in reversed(group.children):
            self.give_up(self.actors[actor_id], f"its group gave up: {reason}")
        del self.groups[group.group_id]

    def create(self, actor: ActorRecord) -> Generator[tuple[Any, ...], Any, tuple[bool, Any, str]]:
        """Start (or restart) an actor in its slot; resumes with (ok, error, its text)."""
        log.debug("creating actor #%d in worker %d", actor.actor_id, actor.slot)
        self.send_worker(actor.slot, "create", actor.actor_id, actor.name, actor.blob, actor.retry)
        restarting = actor.state == "restarting"
        ok, payload, text = yield ("created", actor.actor_id)
        if ok:
            actor.state = "running"
            kind = "restarted" if restarting else "started"
            self.event(
                f"dovecote.actor.{kind}", actor_id=actor.actor_id, name=actor.name, slot=actor.slot
            )
        return ok, payload, text

    # -- procedures and timers -----------------------------------------------------
    def start(self, procedure: Procedure) -> None:
        self.advance(procedure, None)

    def advance(self, procedure: Procedure, value: Any) -> None:
        try:
            key = procedure.send(value)
        except StopIteration:
            return
        if key[0] == "sleep":
            self.at(time.monotonic() + key[1], lambda: self.advance(procedure, None))
            return
        wait = key[:2]
        self.waits[wait] = procedure
        if len(key) == 3:  # with a deadline
            self.at(key[2], lambda: self.resume(wait, False))

    def resume(self, wait: tuple[Any, ...], value: Any) -> None:
        procedure = self.waits.pop(wait, None)
        if procedure is not None:
            self.advance(procedure, value)

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.timers, (when, next(self.ids), action))

    def run_timers(self) -> None:
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _logged(heapq.heappop(self.timers)[2])

    # -- directory ----------------------------------------------------------------
    def forget(self, actor: ActorRecord) -> None:
        if self.actors.pop(actor.actor_id, None) is not None:
            self.load[actor.slot] -= 1
        if actor.name is not None and self.names.get(actor.name) == actor.actor_id:
            del self.names[actor.name]

    def pick_slot(self, pinned: int | None) -> int:
        if pinned is not None:
            return pinned
        load = self.load
        return min(self.workers, key=lambda s: (not self.workers[s].ready, load.get(s, 0), s))

    def notify_down(self, actor: ActorRecord, reason: str, final: bool) -> None:
        kind = "stopped" if final else "crashed"
        self.event(
            f"dovecote.actor.{kind}", actor_id=actor.actor_id, name=actor.name, reason=reason
        )
        watchers = (
            self.watchers.pop(actor.actor_id, [])
            if final
            else (self.watchers.get(actor.actor_id, []))
        )
        for peer, watch_id in watchers:
            self.send(peer, "down", watch_id, actor.actor_id, reason, final)

    # -- messages -----------------------------------------------------------------
    def send_worker(self, slot: int, op: str, *fields: Any) -> None:
        """Send to a worker now, or as soon as a starting one says it is ready."""
        worker = self.workers.get(slot)
        if worker is None:
            return  # it just died: its exit is being handled
        if worker.ready:
            self.send(worker.identity, op, *fields)
        else:
            worker.backlog.append((op, fields))

    def send(self, peer: bytes, op: str, *fields: Any) -> None:
        try:
            _sockets.send(self.control, [peer, *proto.encode_control(op, *fields)])
        except zmq.Again:
            log.error(
                "supervisor: %s has not read its control messages for %.0f s; dropped %s",
                proto.peer_name(peer),
                SEND_TIMEOUT_MS / 1000,
                op,
            )
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            log.info("supervisor: %s is gone; dropped %s", proto.peer_name(peer), op)
            self.clients.discard(peer)

    def reply(self, peer: bytes, req_id: int, ok: bool, payload: Any) -> None:
        self.send(peer, "reply", req_id, ok, payload)

    def fail(self, peer: bytes, req_id: int, error: Exception) -> None:
        self.reply(peer, req_id, False, proto.encode_error(error))

    def on_control(self, frames: list[Any]) -> None:
        """One control message: JSON of a known op with typed fields, or dropped.
        Whatever it holds, it is logged and dropped, never fatal."""
        peer = bytes(frames[0])
        try:
            kind, body, buffers, _ = proto.unpack(frames[1:])
            if kind != proto.CONTROL:
                raise proto.ProtocolError(f"kind {kind} on the control socket")
            op, fields = proto.decode_control(body, buffers)
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                raise proto.ProtocolError(f"{op!r} is not for the supervisor")
        except proto.ProtocolError as exc:
            log.warning(
                "supervisor dropped a malformed message from %s: %s", proto.peer_name(peer), exc
            )
            return
        try:
            handler(peer, *fields)
        except Exception:
            log.exception("supervisor: %s from %s failed", op, proto.peer_name(peer))

    def op_hello(self, peer: bytes, req_id: int) -> None:
        self.clients.add(peer)
        self.waiting_hello.append((peer, req_id))
        self.announce()

    def current(self, peer: bytes) -> bool:
        """Is ``peer`` the worker now in its slot? A dead one's last words are not."""
        return any(w.identity == peer for w in self.workers.values())

    def op_ready(self, peer: bytes, slot: int, pid: int) -> None:
        if not self.current(peer):
            return
        self.clients.add(peer)
        worker = self.workers[slot]
        worker.ready = True
        worker.last_heartbeat = time.monotonic()
        self.send(peer, "epochs", list(self.epochs.items()))  # deaths it missed while starting
        for op, fields in worker.backlog:
            self.send(peer, op, *fields)
        worker.backlog.clear()
        self.event("dovecote.worker.started", slot=slot, pid=pid)
        self.announce()

    def announce(self) -> None:
        """Answer the drivers' hellos once every worker is ready."""
        if all(w.ready for w in self.workers.values()):
            for peer, req_id in self.waiting_hello:
                self.reply(peer, req_id, True, len(self.workers))
            self.waiting_hello.clear()

    def op_heartbeat(self, peer: bytes, slot: int) -> None:
        worker = self.workers.get(slot)
        if worker is not None:
            worker.last_heartbeat = time.monotonic()

    def op_recycle(self, peer: bytes, slot: int, cause: str) -> None:
        worker = self.workers.get(slot)
        if worker is None or worker.identity != peer or worker.cause is not None:
            return
        worker.cause = f"was recycled: {cause}"
        worker.recycled = True
        self.send_worker(slot, "exit")
        self.at(time.monotonic() + STOP_GRACE, worker.proc.kill)  # if it is stuck in on_stop

    def op_spawn(self, peer: bytes, req_id: int, spec: dict[str, Any]) -> None:
        if self.closing:
            self.fail(peer, req_id, ActorStoppedError("the actor system is shutting down"))
            return
        name = spec["name"]
        if name is not None and name in self.names:
            self.fail(peer, req_id, ValueError(f"an actor named {name!r} already exists"))
            return
        actor = self.record(spec, None)
        self.start(self.spawn_one(peer, req_id, actor))

    def spawn_one(self, peer: bytes, req_id: int, actor: ActorRecord) -> Procedure:
        ok, payload, _ = yield from self.create(actor)
        if ok:
            self.reply(peer, req_id, True, actor.address())
        else:
            self.forget(actor)
            self.reply(peer, req_id, False, payload)

    def op_spawn_group(
        self, peer: bytes, req_id: int, group_spec: dict[str, Any], specs: list[dict[str, Any]]
    ) -> None:
        names = [s["name"] for s in specs if s["name"] is not None]
        taken = [n for n in names if n in self.names]
        if self.closing or taken or len(set(names)) != len(names):
            why = (
                "the actor system is shutting down"
                if self.closing
                else (f"actor names must be unique; taken or repeated: {taken or names}")
            )
            self.fail(peer, req_id, ActorStoppedError(why) if self.closing else ValueError(why))
            return
        group = Group(next(self.ids), **group_spec)
        self.groups[group.group_id] = group
        children = [self.record(spec, group.group_id) for spec in specs]
        self.start(self.spawn_group(peer, req_id, group, children))

    def spawn_group(
        self, peer: bytes, req_id: int, group: Group, children: list[ActorRecord]
    ) -> Procedure:
        for index, child in enumerate(children):  # in order, each once the previous is up
            ok, payload, _ = yield from self.create(child)
            if not ok:
                for started in reversed(children[:index]):  # undo, in reverse order
                    self.send_worker(started.slot, "stop_actor", started.actor_id)
                    yield ("stopped", started.actor_id)
                for record in children:
                    self.forget(record)
                del self.groups[group.group_id]
                self.reply(peer, req_id, False, payload)
                return
            group.children.append(child.actor_id)
        self.reply(peer, req_id, True, [child.address() for child in children])

    def record(self, spec: dict[str, Any], group: int | None) -> ActorRecord:
        actor = ActorRecord(next(self.ids), self.pick_slot(spec["worker"]), group, spec)
        self.actors[actor.actor_id] = actor
        self.load[actor.slot] = self.load.get(actor.slot, 0) + 1
        if actor.name is not None:
            self.names[actor.name] = actor.actor_id
        return actor

    def op_created(self, peer: bytes, actor_id: int, ok: bool, payload: Any, text: str) -> None:
        log.debug("actor #%d created by %r: %s %s", actor_id, peer, ok, text)
        if self.current(peer):
            self.resume(("created", actor_id), (ok, payload, text))

    def op_suspended(self, peer: bytes, actor_id: int) -> None:
        if self.current(peer):
            self.resume(("suspended", actor_id), True)

    def op_stopped(self, peer: bytes, actor_id: int) -> None:
        if self.current(peer):
            self.resume(("stopped", actor_id), True)

    def op_lookup(self, peer: bytes, req_id: int, name: str) -> None:
        actor_id = self.names.get(name)
        if actor_id is None:
            self.fail(peer, req_id, LookupError(f"no actor named {name!r}"))
            return
        self.reply(peer, req_id, True, self.actors[actor_id].address())

    def op_actor_gone(self, peer: bytes, req_id: int, actor_id: int) -> None:
        """An actor was stopped by a call to stop(): never restarted, name freed."""
        actor = self.actors.get(actor_id)
        if actor is not None:
            if actor.group is not None and actor.group in self.groups:
                self.groups[actor.group].children.remove(actor_id)
            self.notify_down(actor, "stopped", final=True)
            self.forget(actor)
        self.reply(peer, req_id, True, None)

    def op_watch(self, peer: bytes, req_id: int, actor_id: int, watch_id: int) -> None:
        if actor_id in self.actors:
            self.watchers.setdefault(actor_id, []).append((peer, watch_id))
        else:
            self.send(peer, "down", watch_id, actor_id, "not running", True)
        self.reply(peer, req_id, True, None)

    def op_shutdown(self, peer: bytes, req_id: int, grace: float = STOP_GRACE) -> None:
        self.stop_waiters.append((peer, req_id))
        if not self.closing:
            self.closing = True
            self.start(self.shut_down(time.monotonic() + grace))

    def shut_down(self, deadline: float) -> Procedure:
        """Stop actors one by one, newest first, then the workers."""
        for actor in sorted(self.actors.values(), key=lambda a: a.actor_id, reverse=True):
            if actor.state == "running" and actor.slot in self.workers:
                self.send_worker(actor.slot, "stop_actor", actor.actor_id)
                yield ("stopped", actor.actor_id, deadline)
        self.stop_workers(max(0.0, deadline - time.monotonic()))

    # -- main loop ----------------------------------------------------------------
    def run(self) -> None:
        for slot in range(self.opts["workers"]):
            self.start_worker(slot)
        while self.stop_deadline is None or self.workers:
            self.step(self.next_timeout())
        for peer, req_id in self.stop_waiters:
            self.reply(peer, req_id, True, None)

    def step(self, timeout: float | None) -> None:
        events = dict(self.poller.poll(None if timeout is None else int(timeout)))
        if self.control in events:
            while _sockets.readable(self.control):
                _logged(self.on_control, _sockets.recv(self.control, _sockets.DONTWAIT))
        stdin = sys.stdin.fileno()
        if stdin in events and not os.read(stdin, 4096):
            log.info("supervisor: the driver is gone; shutting down")
            self.poller.unregister(stdin)
            self.orphaned()
        for worker in list(self.workers.values()):
            if worker.sentinel in events:
                _logged(self.on_worker_exit, worker)
        self.check_heartbeats()
        _logged(self.run_timers)
        self.escalate()

    def event(self, topic: str, **fields: Any) -> None:
        """Publish one of the runtime's own lifecycle events."""
        seq = self.bus_seqs[topic] = self.bus_seqs.get(topic, 0) + 1
        self.events.send(_bus.encode(topic, b"supervisor", seq, fields))

    def next_timeout(self) -> float:
        """Milliseconds until the next timer, heartbeat check or escalation."""
        soon = time.monotonic() + self.heartbeat_timeout / 4
        if self.timers:
            soon = min(soon, self.timers[0][0])
        if self.stop_deadline is not None:
            soon = min(soon, self.stop_deadline)
        return max(0.0, soon - time.monotonic()) * 1000 + 1

    def stop_workers(self, grace: float) -> None:
        """Ask every worker to exit; stragglers get SIGTERM, then SIGKILL."""
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + grace
            for slot in list(self.workers):
                self.send_worker(slot, "exit")

    def orphaned(self) -> None:
        """The driver is gone: workers get ORPHAN_GRACE to stop, then SIGKILL, so that
        everything is gone within a few seconds even if an actor is stuck."""
        self.closing = True
        self.escalations = [signal.SIGKILL]
        self.stop_workers(ORPHAN_GRACE)
        self.stop_deadline = min(self.stop_deadline, time.monotonic() + ORPHAN_GRACE)  # type: ignore[type-var]

    def escalate(self) -> None:
        if self.stop_deadline is None or time.monotonic() < self.stop_deadline:
            return
        if self.escalations:
            sig = self.escalations.pop(0)
            for worker in self.workers.values():
                log.warning("worker %d did not stop in time: %s", worker.slot, sig.name)
                worker.proc.send_signal(sig)
        self.stop_deadline = time.monotonic() + 1.0

    def close(self) -> None:
        self.events.close()
        self.control.close(linger=100)
        self.ctx.term()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _logged(action: Callable[..., None], *args: Any) -> None:
    """Run one event's handling; a bug in it is logged, and the supervisor goes on."""
    try:
        action(*args)
    except Exception:
        log.exception("supervisor: %s failed", getattr(action, "__name__", action))


def _crash_blob(cause: str) -> bytes:
    return proto.encode_error(ActorCrashedError(f"the actor's worker died ({cause})", cause))


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
