"""The supervisor process: workers, the directory, and restarts, as in Erlang/OTP.

It is the control plane only: actor traffic never passes through it. Clients
(the driver, and every worker for the calls its actors make) hold a DEALER to
its control ROUTER to spawn, look up and watch actors.

Crashes are noticed three ways, each through the worker's ``core.Liveness``
(``_workers``): a worker's exit (through its pidfd, so no polling), its
heartbeats stopping (the health thread of ``runtime.worker``; the worker is
killed), and a limit the worker reports (memory, messages; the worker stops its
actors and exits). Each crash is told to every client, so calls pending on the
dead worker fail with the cause (or are re-sent, for retryable methods), and a
new worker takes the slot. Its actors are then restarted there (``_restarts``),
by their restart type and within their restart intensity (``core``'s policy),
alone or with their group. Refs name the slot, so they reach the new
incarnation unchanged.

Work that waits for workers' answers (starting a group in order, restarting
one, stopping everything in reverse order) is written as generator procedures
(``_procedures``): each ``yield`` parks the procedure until an answer or a
timer resumes it.

When the driver goes away (its end of our stdin closes) it shuts down.

This module holds the loop and the control messages' handlers; the actors,
names and groups are the ``core.Directory``; what is sent is ``_messages``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import zmq

from actors._errors import ActorCrashedError, ActorStoppedError
from runtime import net, observe, wire
from runtime.core import ActorRecord, Directory, Group, ProcessArgs
from runtime.net import Context, Socket
from runtime.supervisor._messages import Watchers, open_control, open_events
from runtime.supervisor._observe import Observer
from runtime.supervisor._procedures import Procedure, Procedures, logged
from runtime.supervisor._restarts import Restarts
from runtime.supervisor._workers import STOP_GRACE, WorkerProc, Workers

__all__ = ["Supervisor", "main"]

log = logging.getLogger("dovecote")

Handler = Callable[[bytes, Any], None]
READ_SIZE = 4096


def _poller(control: Socket, stdin: int) -> zmq.Poller:
    poller = zmq.Poller()
    poller.register(control, zmq.POLLIN)
    poller.register(stdin, zmq.POLLIN)
    return poller


def _shutting_down() -> ActorStoppedError:
    return ActorStoppedError("the actor system is shutting down")


def _crash_blob(cause: str) -> bytes:
    return wire.encode_error(ActorCrashedError(f"the actor's worker died ({cause})", cause))


class Supervisor:
    """The loop, and the handlers of control messages, dispatched by record type."""

    def __init__(self, args: ProcessArgs) -> None:
        self.args = args
        self.ctx: Context = zmq.Context()
        self.control = open_control(self.ctx, args.run_dir)
        self.events = open_events(self.ctx, args.run_dir)
        self.poller = _poller(self.control.socket, sys.stdin.fileno())
        self.observer = Observer(args, self.events, self.poller)
        self.output = self.observer.output
        self.workers = Workers(args, self.poller, self.control, self.output)
        self.directory = Directory()
        self.watchers = Watchers(self.control, self.events)
        self.procedures = Procedures()
        self.restarts = Restarts(
            self.directory, self.workers, self.procedures, self.watchers, self.events
        )
        self.handlers = self._handlers()
        self.closing = False  # shutting down: no more restarts
        self.stop_waiters: list[tuple[bytes, int]] = []
        self.waiting_hello: list[tuple[bytes, int]] = []

    def _handlers(self) -> dict[type, Handler]:
        return {
            wire.Hello: self.on_hello,
            wire.Ready: self.on_ready,
            wire.Heartbeat: self.on_heartbeat,
            wire.Recycle: self.on_recycle,
            wire.Spawn: self.on_spawn,
            wire.SpawnGroup: self.on_spawn_group,
            wire.Created: self.on_created,
            wire.Suspended: self.on_suspended,
            wire.Stopped: self.on_stopped,
            wire.Lookup: self.on_lookup,
            wire.ActorGone: self.on_actor_gone,
            wire.Watch: self.on_watch,
            wire.Shutdown: self.on_shutdown,
            wire.Status: self.on_status,
        }

    # -- main loop ----------------------------------------------------------------
    def run(self) -> None:
        for slot in range(self.args.options.workers):
            self.workers.start(slot)
        self.observer.advertise()
        while self.workers.stop_deadline is None or self.workers.procs:
            self.step(self.next_timeout())
        self.observer.end_output()
        for peer, req_id in self.stop_waiters:
            self.control.reply(peer, req_id, True, None)

    def step(self, timeout: float | None) -> None:
        events = dict(self.poller.poll(None if timeout is None else int(timeout)))
        control = self.control.socket
        if control in events:
            while net.readable(control):
                logged(self.on_control, net.recv(control, net.DONTWAIT))
        self.output.handle(events)  # before exits: a dead worker's lines come first
        stdin = sys.stdin.fileno()
        if stdin in events and not os.read(stdin, READ_SIZE):
            log.info("supervisor: the driver is gone; shutting down")
            self.poller.unregister(stdin)
            self.orphaned()
        for worker in self.workers.exited(events):
            logged(self.on_worker_exit, worker)
        self.workers.check_heartbeats(time.monotonic(), self.args.options.heartbeat_timeout)
        logged(self.procedures.run_timers)
        self.workers.escalate()

    def next_timeout(self) -> float:
        """Milliseconds until the next timer, heartbeat check or escalation."""
        soon = time.monotonic() + self.args.options.heartbeat_timeout / 4
        due = self.procedures.next_due()
        if due is not None:
            soon = min(soon, due)
        if self.workers.stop_deadline is not None:
            soon = min(soon, self.workers.stop_deadline)
        return max(0.0, soon - time.monotonic()) * 1000 + 1

    def orphaned(self) -> None:
        """The driver is gone: no more restarts, and the workers are ended soon."""
        self.closing = True
        self.workers.orphan()

    def on_status(self, peer: bytes, message: wire.Status) -> None:
        status = self.observer.status(self.workers, self.directory)
        self.control.reply(peer, message.req_id, True, status)

    def close(self) -> None:
        self.observer.withdraw()
        self.events.close()
        self.control.close()
        self.ctx.term()
        shutil.rmtree(self.args.run_dir, ignore_errors=True)

    # -- a worker's exit ------------------------------------------------------------
    def on_worker_exit(self, worker: WorkerProc) -> None:
        cause, abnormal, counted = self.workers.reap(worker)
        victims = self.directory.on_slot(worker.slot)
        if not self.closing:
            log.warning("%s", cause)
            self.replace(worker.slot, cause, victims)
        for actor in victims:  # procedures waiting on them learn of the crash
            self.procedures.resume(("created", actor.actor_id), (False, _crash_blob(cause), cause))
            self.procedures.resume(("suspended", actor.actor_id), False)
            self.procedures.resume(("stopped", actor.actor_id), False)
        if self.closing:
            return
        self.events.publish(
            "dovecote.worker.exited", slot=worker.slot, pid=worker.proc.pid, cause=cause
        )
        for actor in victims:
            self.restarts.actor_exited(actor, cause, abnormal, counted)

    def replace(self, slot: int, cause: str, victims: list[ActorRecord]) -> None:
        """Start a worker in a dead one's slot and tell every client of the death."""
        comeback = [
            a.actor_id for a in victims if a.state != "starting" and a.restart != "temporary"
        ]
        self.workers.start(slot, comeback)  # holds their messages until restarted
        for client in list(self.control.clients):
            self.control.send(client, wire.WorkerDied(slot, cause, self.workers.epochs[slot]))

    # -- control messages -------------------------------------------------------------
    def on_control(self, frames: list[Any]) -> None:
        """One control message: JSON of a known op with typed fields, or dropped.
        Whatever it holds, it is logged and dropped, never fatal."""
        peer = bytes(frames[0])
        try:
            kind, body, buffers, _ = wire.unpack(frames[1:])
            if kind != wire.CONTROL:
                raise wire.ProtocolError(f"kind {kind} on the control socket")
            message = wire.decode_control(body, buffers)
            op = wire.op_name(type(message))
            handler = self.handlers.get(type(message))
            if handler is None:
                raise wire.ProtocolError(f"{op!r} is not for the supervisor")
        except wire.ProtocolError as exc:
            log.warning(
                "supervisor dropped a malformed message from %s: %s", wire.peer_name(peer), exc
            )
            return
        try:
            handler(peer, message)
        except Exception:
            log.exception("supervisor: %s from %s failed", op, wire.peer_name(peer))

    def on_hello(self, peer: bytes, message: wire.Hello) -> None:
        self.control.clients.add(peer)
        self.waiting_hello.append((peer, message.req_id))
        self.announce()

    def on_ready(self, peer: bytes, message: wire.Ready) -> None:
        if not self.workers.current(peer):
            return
        self.control.clients.add(peer)
        self.workers.ready(self.workers.procs[message.slot], time.monotonic())
        self.events.publish("dovecote.worker.started", slot=message.slot, pid=message.pid)
        self.announce()

    def announce(self) -> None:
        """Answer the drivers' hellos once every worker is ready."""
        if self.workers.all_ready():
            for peer, req_id in self.waiting_hello:
                self.control.reply(peer, req_id, True, len(self.workers.procs))
            self.waiting_hello.clear()

    def on_heartbeat(self, peer: bytes, message: wire.Heartbeat) -> None:
        worker = self.workers.procs.get(message.slot)
        if worker is not None:
            now = time.monotonic()
            worker.liveness.beat(now)
            self.observer.beat(message.slot, worker.proc.pid, message.stats, now)

    def on_recycle(self, peer: bytes, message: wire.Recycle) -> None:
        worker = self.workers.procs.get(message.slot)
        if worker is None or worker.identity != peer or not worker.liveness.limit(message.cause):
            return
        self.workers.send(message.slot, wire.Exit())
        self.procedures.at(time.monotonic() + STOP_GRACE, worker.proc.kill)  # stuck in on_stop

    def on_created(self, peer: bytes, message: wire.Created) -> None:
        actor_id, ok, text = message.actor_id, message.ok, message.text
        log.debug("actor #%d created by %r: %s %s", actor_id, peer, ok, text)
        if self.workers.current(peer):
            self.procedures.resume(("created", actor_id), (ok, message.error, text))

    def on_suspended(self, peer: bytes, message: wire.Suspended) -> None:
        if self.workers.current(peer):
            self.procedures.resume(("suspended", message.actor_id), True)

    def on_stopped(self, peer: bytes, message: wire.Stopped) -> None:
        if self.workers.current(peer):
            self.procedures.resume(("stopped", message.actor_id), True)

    # -- the directory's requests ---------------------------------------------------------
    def on_spawn(self, peer: bytes, message: wire.Spawn) -> None:
        req_id, name = message.req_id, message.spec.name
        if self.closing:
            self.control.fail(peer, req_id, _shutting_down())
            return
        if name is not None and name in self.directory.names:
            self.control.fail(peer, req_id, ValueError(f"an actor named {name!r} already exists"))
            return
        actor = self.record(message.spec, None)
        self.procedures.start(self.spawn_one(peer, req_id, actor))

    def spawn_one(self, peer: bytes, req_id: int, actor: ActorRecord) -> Procedure:
        ok, payload, _ = yield from self.restarts.create(actor)
        if ok:
            self.control.reply(peer, req_id, True, actor.address())
        else:
            self.directory.forget(actor)
            self.control.reply(peer, req_id, False, payload)

    def on_spawn_group(self, peer: bytes, message: wire.SpawnGroup) -> None:
        names = [s.name for s in message.specs if s.name is not None]
        if self.closing:
            self.control.fail(peer, message.req_id, _shutting_down())
            return
        if self.directory.taken(names):
            taken = [n for n in names if n in self.directory.names]
            why = f"actor names must be unique; taken or repeated: {taken or names}"
            self.control.fail(peer, message.req_id, ValueError(why))
            return
        group = self.directory.add_group(message.group)
        children = [self.record(spec, group.group_id) for spec in message.specs]
        self.procedures.start(self.spawn_group(peer, message.req_id, group, children))

    def spawn_group(
        self, peer: bytes, req_id: int, group: Group, children: list[ActorRecord]
    ) -> Procedure:
        for index, child in enumerate(children):  # in order, each once the previous is up
            ok, payload, _ = yield from self.restarts.create(child)
            if not ok:
                for started in reversed(children[:index]):  # undo, in reverse order
                    self.workers.send(started.slot, wire.StopActor(started.actor_id))
                    yield ("stopped", started.actor_id)
                for record in children:
                    self.directory.forget(record)
                del self.directory.groups[group.group_id]
                self.control.reply(peer, req_id, False, payload)
                return
            group.children.append(child.actor_id)
        self.control.reply(peer, req_id, True, [child.address() for child in children])

    def record(self, spec: wire.ActorSpec, group: int | None) -> ActorRecord:
        slots = self.workers.procs
        slot = self.directory.pick_slot(spec.worker, slots, self.workers.ready_slots())
        return self.directory.add(spec, slot, group)

    def on_lookup(self, peer: bytes, message: wire.Lookup) -> None:
        actor = self.directory.named(message.name)
        if actor is None:
            error = LookupError(f"no actor named {message.name!r}")
            self.control.fail(peer, message.req_id, error)
            return
        self.control.reply(peer, message.req_id, True, actor.address())

    def on_actor_gone(self, peer: bytes, message: wire.ActorGone) -> None:
        """An actor was stopped by a call to stop(): never restarted, name freed."""
        actor = self.directory.actors.get(message.actor_id)
        if actor is not None:
            groups = self.directory.groups
            if actor.group is not None and actor.group in groups:
                groups[actor.group].children.remove(message.actor_id)
            self.watchers.down(actor, "stopped", final=True)
            self.directory.forget(actor)
        self.control.reply(peer, message.req_id, True, None)

    def on_watch(self, peer: bytes, message: wire.Watch) -> None:
        actor_id, watch_id = message.actor_id, message.watch_id
        if actor_id in self.directory.actors:
            self.watchers.add(actor_id, peer, watch_id)
        else:
            self.control.send(peer, wire.Down(watch_id, actor_id, "not running", True))
        self.control.reply(peer, message.req_id, True, None)

    def on_shutdown(self, peer: bytes, message: wire.Shutdown) -> None:
        self.stop_waiters.append((peer, message.req_id))
        if not self.closing:
            self.closing = True
            self.procedures.start(self.shut_down(time.monotonic() + message.grace))

    def shut_down(self, deadline: float) -> Procedure:
        """Stop actors one by one, newest first, then the workers."""
        actors = sorted(self.directory.actors.values(), key=lambda a: a.actor_id, reverse=True)
        for actor in actors:
            if actor.state == "running" and actor.slot in self.workers.procs:
                self.workers.send(actor.slot, wire.StopActor(actor.actor_id))
                yield ("stopped", actor.actor_id, deadline)
        self.workers.stop(max(0.0, deadline - time.monotonic()))


def main(options: str) -> None:
    args = ProcessArgs.from_json(options)
    observe.set_title(f"dovecote supervisor (system {args.system_id})")
    logging.basicConfig(
        level=args.options.log_level,
        format="%(asctime)s supervisor %(levelname)s %(message)s",
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    supervisor = Supervisor(args)
    try:
        supervisor.run()
    finally:
        supervisor.workers.kill_all()
        supervisor.close()
