"""The worker processes: starting them, what they may be sent, their health, their
exits, and stopping them (asked, then SIGTERM, then SIGKILL).

Crash detection's three ways all go through each worker's ``core.Liveness``:
its exit (its pidfd becomes readable: ``exited``), its heartbeats stopping
(``check_heartbeats`` kills it) and a limit it reports (``Liveness.limit``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any

import zmq

from runtime import net, observe, wire
from runtime.core import Liveness, ProcessArgs
from runtime.supervisor._messages import Control
from runtime.supervisor._nodes import Node, Nodes, RemoteProcess

__all__ = ["ORPHAN_GRACE", "STOP_GRACE", "WorkerProc", "Workers"]

log = logging.getLogger("dovecote")

STOP_GRACE = 5.0  # seconds workers get to run on_stop before SIGTERM, then SIGKILL
ORPHAN_GRACE = 2.0  # the same once the driver is gone, then SIGKILL: nobody waits for on_stop
ESCALATION_STEP = 1.0  # seconds between SIGTERM and SIGKILL, and between later SIGKILLs


class LocalProcess:
    """A worker process this supervisor started; its exit is seen through ``sentinel``."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        sentinel: int,
        poller: zmq.Poller,
        output: observe.OutputPipes,
    ) -> None:
        self.proc = proc
        self.sentinel: int | None = sentinel
        self.poller = poller
        self.output = output
        poller.register(sentinel, zmq.POLLIN)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        self.proc.kill()

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def reap(self) -> int | None:
        assert self.sentinel is not None
        self.poller.unregister(self.sentinel)
        os.close(self.sentinel)
        self.sentinel = None
        returncode = self.proc.wait()
        net.remove_segments(self.proc.pid)  # its shared memory; mapped views stay valid
        self.output.remove(self.proc)  # its last lines, written before it died
        if self.proc.stdin:
            self.proc.stdin.close()
        return returncode


Process = LocalProcess | RemoteProcess


class WorkerProc:
    """One worker slot and the process now in it."""

    __slots__ = ("backlog", "epoch", "identity", "liveness", "proc", "slot")

    def __init__(self, slot: int, epoch: int, proc: Process, now: float) -> None:
        self.slot = slot
        self.epoch = epoch
        self.identity = b"w%d.%d" % (slot, epoch)  # as the worker names itself
        self.proc = proc
        self.liveness = Liveness(now)
        self.backlog: list[object] = []  # control records for it once it is ready


class Workers:
    """The worker in each slot, the incarnation of each slot, and the end of them all."""

    def __init__(
        self,
        args: ProcessArgs,
        poller: zmq.Poller,
        control: Control,
        output: observe.OutputPipes,
        nodes: Nodes | None,
    ) -> None:
        self.args = args
        self.poller = poller
        self.control = control
        self.output = output  # the stdout and stderr of the workers started here
        self.nodes = nodes  # a head's: workers start on them; else here
        self.homes: dict[int, Node] = {}  # a head's: the node each slot was last on
        self.procs: dict[int, WorkerProc] = {}
        self.epochs: dict[int, int] = {}  # slot -> incarnation of the worker in it
        self.stop_deadline: float | None = None  # set once workers are told to exit
        self.escalations = [signal.SIGTERM, signal.SIGKILL]
        self.homeless: dict[int, tuple[int, ...]] = {}  # a head's slots with no node: expect
        self.held: dict[int, list[object]] = {}  # control records for them, once placed

    # -- starting and ending ------------------------------------------------------
    def start(
        self, slot: int, expect: Sequence[int] = (), node: str | None = None, fresh: bool = True
    ) -> None:
        """Start a worker in ``slot``; it holds the messages of the actors in ``expect``
        until they are started again. ``fresh=False``: in the epoch the clients were
        already told (a slot that waited for a node)."""
        if fresh:
            self.epochs[slot] = self.epochs.get(slot, -1) + 1
        args = self.args.for_worker(slot, self.epochs, list(expect), os.getpid())
        proc = self._start_local(args) if self.nodes is None else self._launch(args, node)
        if proc is None:
            return
        log.debug("worker %d (epoch %d) starting; expects %s", slot, args.epoch, list(expect))
        worker = self.procs[slot] = WorkerProc(slot, args.epoch, proc, time.monotonic())
        worker.backlog.extend(self.held.pop(slot, ()))

    def replace(self, slot: int, cause: str, comeback: list[int]) -> None:
        """Start a worker in a dead one's slot, holding the messages of the actors in
        ``comeback`` until they are restarted, and tell every client of the death."""
        self.start(slot, comeback)
        for client in list(self.control.clients):
            self.control.send(client, wire.WorkerDied(slot, cause, self.epochs[slot]))

    def _start_local(self, args: ProcessArgs) -> LocalProcess:
        path = net.worker_endpoint(args.addresses.run_dir, args.slot).removeprefix("ipc://")
        if os.path.exists(path):
            os.unlink(path)  # left by a dead worker of this slot; nobody else owns it
        proc, sentinel = net.start_watched("worker", args.to_json(), **self.output.popen())
        self.output.add(args.slot, proc)
        return LocalProcess(proc, sentinel, self.poller, self.output)

    def _launch(self, args: ProcessArgs, pinned: str | None = None) -> RemoteProcess | None:
        """On a node: the slot's own if it is alive, else the one with most room. With
        no node alive the slot waits, placed nowhere, and clients hold its messages."""
        assert self.nodes is not None
        node = self.nodes.pick(self.homes.get(args.slot), pinned)
        if node is None:
            log.warning("worker %d: no node to run on; it waits for one to join", args.slot)
            self.homeless[args.slot] = args.expect
            self.placed([wire.Place(args.slot, args.epoch, "", "", "", None)])
            return None
        self.homes[args.slot] = node
        proc = self.nodes.launch(node, args)
        self.placed([proc.place])
        return proc

    def placed(self, places: list[wire.Place]) -> None:
        """Tell every client where slots now live, before anything else about them."""
        for client in list(self.control.clients):
            self.control.send(client, wire.Placed(places))

    def places(self) -> list[wire.Place]:
        return [w.proc.place for w in self.procs.values() if isinstance(w.proc, RemoteProcess)]

    def on_node(self, name: str) -> list[int]:
        return [slot for slot, node in self.homes.items() if node.name == name]

    def find(self, slot: int, epoch: int) -> WorkerProc | None:
        worker = self.procs.get(slot)
        return worker if worker is not None and worker.epoch == epoch else None

    def exited(self, events: dict[Any, int]) -> list[WorkerProc]:
        """The workers whose sentinel the poll found readable: their process ended."""
        return [
            w
            for w in list(self.procs.values())
            if isinstance(w.proc, LocalProcess) and w.proc.sentinel in events
        ]

    def reap(self, worker: WorkerProc) -> tuple[str, bool, bool]:
        """Collect an ended worker and free its slot: (cause, abnormal, counted)."""
        returncode = worker.proc.reap()
        del self.procs[worker.slot]
        cause, abnormal, counted = worker.liveness.exited(returncode)
        return f"worker {worker.slot} (pid {worker.proc.pid}) {cause}", abnormal, counted

    def kill_all(self) -> None:
        """The supervisor is leaving: no worker outlives it."""
        for worker in list(self.procs.values()):
            worker.proc.kill()
            if isinstance(worker.proc, LocalProcess):
                worker.proc.reap()

    # -- talking to them ------------------------------------------------------------
    def current(self, peer: bytes) -> bool:
        """Is ``peer`` the worker now in its slot? A dead one's last words are not."""
        return any(w.identity == peer for w in self.procs.values())

    def send(self, slot: int, message: object) -> None:
        """Send to a worker now, or as soon as a starting one says it is ready."""
        worker = self.procs.get(slot)
        if worker is None:
            if slot in self.homeless:  # the restart of its actors, for when it is placed
                self.held.setdefault(slot, []).append(message)
            return  # else it just died: its exit is being handled
        if worker.liveness.ready:
            self.control.send(worker.identity, message)
        else:
            worker.backlog.append(message)

    def ready(self, worker: WorkerProc, now: float) -> None:
        """It says it is ready: what it missed while starting, then its backlog."""
        worker.liveness.ready = True
        worker.liveness.beat(now)
        self.snapshot(worker.identity)  # the deaths and moves it missed
        for message in worker.backlog:
            self.control.send(worker.identity, message)
        worker.backlog.clear()

    def snapshot(self, peer: bytes) -> None:
        """Where every slot lives and its epoch, for a client that starts: the updates
        follow, in order, on the same connection."""
        places = self.places()
        if places:
            self.control.send(peer, wire.Placed(places))
        epochs = [[slot, epoch] for slot, epoch in self.epochs.items()]
        self.control.send(peer, wire.Epochs(epochs))

    def ready_slots(self) -> set[int]:
        return {slot for slot, w in self.procs.items() if w.liveness.ready}

    def all_ready(self) -> bool:
        return all(w.liveness.ready for w in self.procs.values())

    # -- health -----------------------------------------------------------------------
    def check_heartbeats(self, now: float, timeout: float) -> None:
        """Kill a worker whose heartbeats stopped (a starting one gets STARTING_GRACE)."""
        for worker in self.procs.values():
            cause = worker.liveness.silent(now, timeout)
            if cause is not None:
                log.warning("worker %d %s: killing it", worker.slot, cause)
                worker.proc.kill()

    # -- stopping them all --------------------------------------------------------------
    def stop(self, grace: float) -> None:
        """Ask every worker to exit; stragglers get SIGTERM, then SIGKILL."""
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + grace
            for slot in list(self.procs):
                self.send(slot, wire.Exit())

    def orphan(self) -> None:
        """The driver is gone: workers get ORPHAN_GRACE to stop, then SIGKILL, so that
        everything is gone within a few seconds even if an actor is stuck."""
        self.escalations = [signal.SIGKILL]
        self.stop(ORPHAN_GRACE)
        soon = time.monotonic() + ORPHAN_GRACE
        self.stop_deadline = soon if self.stop_deadline is None else min(self.stop_deadline, soon)

    def escalate(self) -> None:
        if self.stop_deadline is None or time.monotonic() < self.stop_deadline:
            return
        if self.escalations:
            sig = self.escalations.pop(0)
            for worker in self.procs.values():
                log.warning("worker %d did not stop in time: %s", worker.slot, sig.name)
                worker.proc.send_signal(sig)
        self.stop_deadline = time.monotonic() + ESCALATION_STEP
