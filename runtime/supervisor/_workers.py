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

__all__ = ["ORPHAN_GRACE", "STOP_GRACE", "WorkerProc", "Workers"]

log = logging.getLogger("dovecote")

STOP_GRACE = 5.0  # seconds workers get to run on_stop before SIGTERM, then SIGKILL
ORPHAN_GRACE = 2.0  # the same once the driver is gone, then SIGKILL: nobody waits for on_stop
ESCALATION_STEP = 1.0  # seconds between SIGTERM and SIGKILL, and between later SIGKILLs


class WorkerProc:
    """One worker slot and the process now in it."""

    __slots__ = ("backlog", "identity", "liveness", "proc", "sentinel", "slot")

    def __init__(
        self, slot: int, epoch: int, proc: subprocess.Popen[bytes], sentinel: int, now: float
    ) -> None:
        self.slot = slot
        self.identity = b"w%d.%d" % (slot, epoch)  # as the worker names itself
        self.proc = proc
        self.sentinel = sentinel
        self.liveness = Liveness(now)
        self.backlog: list[object] = []  # control records for it once it is ready


class Workers:
    """The worker in each slot, the incarnation of each slot, and the end of them all."""

    def __init__(
        self, args: ProcessArgs, poller: zmq.Poller, control: Control, output: observe.OutputPipes
    ) -> None:
        self.args = args
        self.poller = poller
        self.control = control
        self.output = output  # their stdout and stderr
        self.procs: dict[int, WorkerProc] = {}
        self.epochs: dict[int, int] = {}  # slot -> incarnation of the worker in it
        self.stop_deadline: float | None = None  # set once workers are told to exit
        self.escalations = [signal.SIGTERM, signal.SIGKILL]

    # -- starting and ending ------------------------------------------------------
    def start(self, slot: int, expect: Sequence[int] = ()) -> None:
        """Start a worker in ``slot``; it holds the messages of the actors in ``expect``
        until they are started again."""
        path = net.worker_endpoint(self.args.run_dir, slot).removeprefix("ipc://")
        if os.path.exists(path):
            os.unlink(path)  # left by a dead worker of this slot; nobody else owns it
        self.epochs[slot] = self.epochs.get(slot, -1) + 1
        args = self.args.for_worker(slot, self.epochs, list(expect), os.getpid())
        proc, sentinel = net.start_watched("worker", args.to_json(), **self.output.popen())
        self.output.add(slot, proc)
        log.debug(
            "worker %d (epoch %d, pid %d) starting; expects %s",
            slot,
            self.epochs[slot],
            proc.pid,
            list(expect),
        )
        self.procs[slot] = WorkerProc(slot, self.epochs[slot], proc, sentinel, time.monotonic())
        self.poller.register(sentinel, zmq.POLLIN)

    def exited(self, events: dict[Any, int]) -> list[WorkerProc]:
        """The workers whose sentinel the poll found readable: their process ended."""
        return [w for w in list(self.procs.values()) if w.sentinel in events]

    def reap(self, worker: WorkerProc) -> tuple[str, bool, bool]:
        """Collect an ended worker and free its slot: (cause, abnormal, counted)."""
        self.poller.unregister(worker.sentinel)
        os.close(worker.sentinel)
        returncode = worker.proc.wait()
        self.output.remove(worker.proc)  # its last lines, written before it died
        if worker.proc.stdin:
            worker.proc.stdin.close()
        del self.procs[worker.slot]
        cause, abnormal, counted = worker.liveness.exited(returncode)
        return f"worker {worker.slot} (pid {worker.proc.pid}) {cause}", abnormal, counted

    def kill_all(self) -> None:
        """The supervisor is leaving: no worker outlives it."""
        for worker in self.procs.values():
            worker.proc.kill()
            worker.proc.wait()

    # -- talking to them ------------------------------------------------------------
    def current(self, peer: bytes) -> bool:
        """Is ``peer`` the worker now in its slot? A dead one's last words are not."""
        return any(w.identity == peer for w in self.procs.values())

    def send(self, slot: int, message: object) -> None:
        """Send to a worker now, or as soon as a starting one says it is ready."""
        worker = self.procs.get(slot)
        if worker is None:
            return  # it just died: its exit is being handled
        if worker.liveness.ready:
            self.control.send(worker.identity, message)
        else:
            worker.backlog.append(message)

    def ready(self, worker: WorkerProc, now: float) -> None:
        """It says it is ready: what it missed while starting, then its backlog."""
        worker.liveness.ready = True
        worker.liveness.beat(now)
        epochs = [[slot, epoch] for slot, epoch in self.epochs.items()]
        self.control.send(worker.identity, wire.Epochs(epochs))  # deaths it missed
        for message in worker.backlog:
            self.control.send(worker.identity, message)
        worker.backlog.clear()

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
