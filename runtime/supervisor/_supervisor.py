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

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import zmq

from actors._errors import ActorCrashedError, ActorStoppedError
from runtime import net, observe, wire
from runtime.core import ActorRecord, Directory, Group, ProcessArgs, SystemOptions
from runtime.net import Context, Socket
from runtime.supervisor._head import Head
from runtime.supervisor._messages import Watchers, open_control, open_events
from runtime.supervisor._nodes import PROBE, Nodes, RemoteProcess
from runtime.supervisor._observe import Observer
from runtime.supervisor._procedures import Procedure, Procedures, logged
from runtime.supervisor._restarts import Restarts
from runtime.supervisor._workers import STOP_GRACE, WorkerProc, Workers

__all__ = ["Supervisor", "main"]

log = logging.getLogger("dovecote")

Handler = Callable[[bytes, Any], None]
READ_SIZE = 4096


def _poller(control: Socket, stdin: int | None) -> zmq.Poller:
    """The control socket, and the driver's end of our stdin (none for a head)."""
    poller = zmq.Poller()
    poller.register(control, zmq.POLLIN)
    if stdin is not None:
        poller.register(stdin, zmq.POLLIN)
    return poller


def _shutting_down() -> ActorStoppedError:
    return ActorStoppedError("the actor system is shutting down")


def _crash_blob(cause: str) -> bytes:
    return wire.encode_error(ActorCrashedError(f"the actor's worker died ({cause})", cause))


HANDLERS = {  # the control messages for the supervisor, and their handlers
    wire.Hello: "on_hello",
    wire.Ready: "on_ready",
    wire.Heartbeat: "on_heartbeat",
    wire.Recycle: "on_recycle",
    wire.Spawn: "on_spawn",
    wire.SpawnGroup: "on_spawn_group",
    wire.Created: "on_created",
    wire.Suspended: "on_suspended",
    wire.Stopped: "on_stopped",
    wire.Lookup: "on_lookup",
    wire.ActorGone: "on_actor_gone",
    wire.Watch: "on_watch",
    wire.Shutdown: "on_shutdown",
    wire.ListNodes: "on_list_nodes",
    wire.Status: "on_status",
}


class Supervisor:
    """The loop, and the handlers of control messages, dispatched by record type."""

    def __init__(self, args: ProcessArgs, ctx: Context | None = None, head: bool = False) -> None:
        self.args = args
        self.ctx: Context = ctx or zmq.Context()
        self.control = open_control(self.ctx, args.addresses)
        self.events = open_events(self.ctx, args.addresses)
        self.poller = _poller(self.control.socket, None if head else sys.stdin.fileno())
        self.observer = Observer(args, self.events, self.poller)
        self.output = self.observer.output
        self.head = Head(self, Nodes(self.control)) if head else None
        nodes = None if self.head is None else self.head.nodes
        self.workers = Workers(args, self.poller, self.control, self.output, nodes)
        self.directory = Directory()
        self.watchers = Watchers(self.control, self.events)
        self.procedures = Procedures()
        self.restarts = Restarts(
            self.directory, self.workers, self.procedures, self.watchers, self.events
        )
        self.handlers = self._handlers()
        self.closing = False  # shutting down: no more restarts
        self.stop_waiters: list[tuple[bytes, int]] = []
        self.waiting_hello: list[tuple[bytes, int, int]] = []  # peer, request, workers

    def _handlers(self) -> dict[type, Handler]:
        extra = {} if self.head is None else self.head.handlers()
        return extra | {record: getattr(self, name) for record, name in HANDLERS.items()}

    # -- main loop ----------------------------------------------------------------
    def run(self) -> None:
        for slot in range(0 if self.head else self.args.options.workers):
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
        if self.head is None and stdin in events and not os.read(stdin, READ_SIZE):
            log.info("supervisor: the driver is gone; shutting down")
            self.poller.unregister(stdin)
            self.orphaned()
        for worker in self.workers.exited(events):
            logged(self.on_worker_exit, worker)
        now = time.monotonic()
        if self.head is not None:  # first: a lost node's workers are lost with it
            logged(self.head.check, now)
        self.workers.check_heartbeats(now, self.args.options.heartbeat_timeout)
        logged(self.procedures.run_timers)
        self.workers.escalate()

    def next_timeout(self) -> float:
        """Milliseconds until the next timer, heartbeat check or escalation."""
        soon = time.monotonic() + min(self.args.options.heartbeat_timeout / 4, PROBE)
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
        if self.head is not None:
            self.head.nodes.close()
        self.observer.withdraw()
        self.events.close()
        self.control.close()
        self.ctx.term()
        shutil.rmtree(self.args.addresses.run_dir, ignore_errors=True)

    # -- a worker's exit ------------------------------------------------------------
    def on_worker_exit(self, worker: WorkerProc) -> None:
        cause, abnormal, counted = self.workers.reap(worker)
        victims = self.directory.on_slot(worker.slot)
        if not self.closing:
            log.warning("%s", cause)
            comeback = [
                a.actor_id for a in victims if a.state != "starting" and a.restart != "temporary"
            ]
            self.workers.replace(worker.slot, cause, comeback)
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
        if self.head is not None:  # where every slot lives, before the answer
            self.workers.snapshot(peer)
        self.waiting_hello.append((peer, message.req_id, message.workers))
        self.announce()

    def on_ready(self, peer: bytes, message: wire.Ready) -> None:
        if not self.workers.current(peer):
            return
        self.control.clients.add(peer)
        worker = self.workers.procs[message.slot]
        if isinstance(worker.proc, RemoteProcess):
            worker.proc.pid = message.pid
        self.workers.ready(worker, time.monotonic())
        self.events.publish("dovecote.worker.started", slot=message.slot, pid=message.pid)
        self.announce()

    def announce(self) -> None:
        """Answer the drivers' hellos once every worker is ready (a head: once as many
        are as the driver asked for, at least one)."""
        if not self.workers.all_ready():
            return
        ready = len(self.workers.ready_slots())
        hello = {"system": self.args.system_id, "workers": ready}
        for waiting in list(self.waiting_hello):
            peer, req_id, wanted = waiting
            if self.head is None or ready >= max(1, wanted):
                self.control.reply(peer, req_id, True, hello)
                self.waiting_hello.remove(waiting)

    def on_heartbeat(self, peer: bytes, message: wire.Heartbeat) -> None:
        worker = self.workers.procs.get(message.slot)
        if worker is not None and peer == b"h" + worker.identity:  # not a predecessor's
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
        log.debug(
            "actor #%d created by %r: %s %s", message.actor_id, peer, message.ok, message.text
        )
        if self.workers.current(peer):
            outcome = (message.ok, message.error, message.text)
            self.procedures.resume(("created", message.actor_id), outcome)

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
        error = unplaceable(self.workers, [message.spec])
        if error is not None:
            self.control.fail(peer, req_id, error)
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
        error = unplaceable(self.workers, message.specs)
        if error is not None:
            self.control.fail(peer, message.req_id, error)
            return
        group = self.directory.add_group(message.group)
        children = [self.record(spec, group.group_id) for spec in message.specs]
        self.procedures.start(self.spawn_group(peer, message.req_id, group, children))

    def spawn_group(
        self, peer: bytes, req_id: int, group: Group, children: list[ActorRecord]
    ) -> Procedure:
        ok, payload = yield from self.restarts.start_group(group, children)
        self.control.reply(peer, req_id, ok, payload)

    def record(self, spec: wire.ActorSpec, group: int | None) -> ActorRecord:
        slots = list(self.workers.procs)
        if spec.node is not None:
            slots = [s for s in slots if s in self.workers.on_node(spec.node)]
        slot = self.directory.pick_slot(spec.worker, slots, self.workers.ready_slots())
        return self.directory.add(spec, slot, group)

    def on_lookup(self, peer: bytes, message: wire.Lookup) -> None:
        actor = self.directory.named(message.name)
        if actor is not None:
            self.control.reply(peer, message.req_id, True, actor.address())
        else:
            self.control.fail(peer, message.req_id, LookupError(f"no actor named {message.name!r}"))

    def on_actor_gone(self, peer: bytes, message: wire.ActorGone) -> None:
        """An actor was stopped by a call to stop(): never restarted, name freed."""
        actor = self.directory.actors.get(message.actor_id)
        if actor is not None:
            self.forget(actor, "stopped")
        self.control.reply(peer, message.req_id, True, None)

    def forget(self, actor: ActorRecord, reason: str) -> None:
        """An actor is gone for good: out of its group and the directory, watchers told."""
        group = self.directory.groups.get(actor.group) if actor.group is not None else None
        if group is not None and actor.actor_id in group.children:
            group.children.remove(actor.actor_id)
        self.watchers.down(actor, reason, final=True)
        self.directory.forget(actor)

    def on_watch(self, peer: bytes, message: wire.Watch) -> None:
        actor_id, watch_id = message.actor_id, message.watch_id
        if actor_id in self.directory.actors:
            self.watchers.add(actor_id, peer, watch_id)
        else:
            self.control.send(peer, wire.Down(watch_id, actor_id, "not running", True))
        self.control.reply(peer, message.req_id, True, None)

    def on_list_nodes(self, peer: bytes, message: wire.ListNodes) -> None:
        nodes = self.head.describe() if self.head else [_this_host(self.args, self.workers)]
        self.control.reply(peer, message.req_id, True, nodes)

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


def unplaceable(workers: Workers, specs: list[wire.ActorSpec]) -> Exception | None:
    """Why one of these actors has nowhere to run, if so."""
    for spec in specs:
        if spec.node is not None and not workers.on_node(spec.node):
            return LookupError(f"no node named {spec.node!r} runs a worker")
        if spec.worker is not None and spec.worker not in workers.procs:
            return ValueError(f"worker={spec.worker} is not a worker of this system")
    if not workers.procs:
        return LookupError("no worker is running: no node has joined")
    return None


def _this_host(args: ProcessArgs, workers: Workers) -> dict[str, object]:
    """A one-host system's only node, as ``system.nodes()`` shows it."""
    slots = sorted(workers.procs)
    return {"name": socket.gethostname(), "host": args.addresses.host, "address": "127.0.0.1",
            "workers": len(slots), "slots": slots, "alive": True, "pid": os.getpid()}  # fmt: skip


def head_main(listen: str, keys: str | None, advertise: str | None, address_file: str | None,
              log_level: str) -> None:  # fmt: skip
    """``dovecote head``: a supervisor on tcp:// that starts no worker itself; nodes
    join it. Runs until SIGTERM or SIGINT; then every node ends its workers."""
    logging.basicConfig(level=log_level, format="%(asctime)s head %(levelname)s %(message)s")
    host, port = net.split_address(listen)
    loaded = net.load_keys(keys) if keys is not None else None
    net.check_bind(f"tcp://{host}:{port}", loaded)
    run_dir = tempfile.mkdtemp(prefix="dovecote-head-")
    options = SystemOptions(1, log_level=log_level).check()
    args = ProcessArgs(secrets.token_hex(4), net.cluster_addresses(listen, run_dir, keys), options)
    ctx: Context = zmq.Context()
    auth = net.secure(ctx, loaded, serve=True) if loaded is not None else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    head = Supervisor(args, ctx, head=True)
    if address_file is not None:
        write_address(address_file, f"tcp://{advertise or _advertised(host)}:{port}")
    log.warning("head listening on %s (bus %s, %s)", listen, port + 1, port + 2)
    try:
        head.run()
    except KeyboardInterrupt:
        pass
    finally:
        head.workers.kill_all()
        if auth is not None:
            auth.stop()
        head.close()
        if address_file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address_file)


def _advertised(host: str) -> str:
    if host not in ("0.0.0.0", "*", ""):
        return host
    return socket.gethostbyname(socket.gethostname())


def write_address(path: str, address: str) -> None:
    """Atomically: a reader sees the whole address or no file."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as file:
        file.write(address + "\n")
    os.replace(temporary, path)


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
