"""What the supervisor tells operators: the workers' numbers from their
heartbeats, crashes and restarts counted from its own lifecycle events, the
latest of those events, the status reply (JSON only), and the discovery file
that lets ``dovecote status`` find this system."""

from __future__ import annotations

import collections
import logging
import os
import time
from typing import Any

import psutil
import zmq

from runtime import observe, wire
from runtime.core import Directory, ProcessArgs
from runtime.supervisor._messages import Events
from runtime.supervisor._workers import Workers

__all__ = ["Observer"]

log = logging.getLogger("dovecote")

RECENT_EVENTS = 50  # lifecycle events kept for ``dovecote top``
_NO_STATS = wire.WorkerStats(0, 0, 0, None, 0, 0.0, 0, 0.0, None, [])  # before a first beat


class Observer:
    """The supervisor's numbers, its workers' output pipes, and its discovery file."""

    def __init__(self, args: ProcessArgs, events: Events, poller: zmq.Poller) -> None:
        self.args = args
        self.events = events
        self.poller = poller
        events.on_publish = self.on_event
        publish = self.publish_output if args.options.log_to_driver else None
        self.output = observe.OutputPipes(args.addresses.run_dir, self.poll_fd, publish)
        self.started = time.monotonic()
        self.beats: dict[int, tuple[wire.WorkerStats, float, int]] = {}  # slot -> stats, when, pid
        self.crashes: collections.Counter[str] = collections.Counter()
        self.restarts: collections.Counter[int] = collections.Counter()  # actor id -> count
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_EVENTS)
        self.advertised = False

    # -- the workers' output -----------------------------------------------------------
    def poll_fd(self, fd: int, added: bool) -> None:
        self.poller.register(fd, zmq.POLLIN) if added else self.poller.unregister(fd)

    def publish_output(self, entries: list[dict[str, Any]]) -> None:
        self.events.publish(observe.OUTPUT_TOPIC, entries=entries)

    def end_output(self) -> None:
        """Every worker has exited and its pipes are read: the driver may stop listening."""
        self.output.close()
        if self.args.options.log_to_driver:
            self.events.publish(observe.OUTPUT_TOPIC, end=True)

    # -- the numbers -----------------------------------------------------------------
    def beat(self, slot: int, pid: int, stats: wire.WorkerStats, now: float) -> None:
        self.beats[slot] = (stats, now, pid)

    def on_event(self, topic: str, fields: dict[str, Any]) -> None:
        """A lifecycle event the supervisor published."""
        if topic == observe.OUTPUT_TOPIC:
            return
        self.recent.append({"t": time.time(), "topic": topic, **fields})
        if topic == "dovecote.worker.exited":
            self.crashes[observe.crash_kind(str(fields.get("cause", "")))] += 1
        elif topic == "dovecote.actor.restarted":
            self.restarts[fields.get("actor_id", 0)] += 1

    # -- the status reply ------------------------------------------------------------
    def status(self, workers: Workers, directory: Directory) -> dict[str, Any]:
        now = time.monotonic()
        queued: dict[int, int] = {}
        for stats, _, _ in self.beats.values():
            queued.update((actor_id, depth) for actor_id, depth in stats.queues)
        return {
            "system_id": self.args.system_id,
            "pid": os.getpid(),
            "uptime": now - self.started,
            "workers": [self._worker(w.slot, workers, now) for w in workers.procs.values()],
            "actors": [self._actor(a, queued) for a in directory.actors.values()],
            "crashes": dict(self.crashes),
            "events": list(self.recent),
        }

    def _worker(self, slot: int, workers: Workers, now: float) -> dict[str, Any]:
        proc = workers.procs[slot]
        epoch = workers.epochs[slot]
        stats, when, pid = self.beats.get(slot, (_NO_STATS, now, proc.proc.pid))
        if pid != proc.proc.pid:  # the last words of the worker this one replaced
            stats, when = _NO_STATS, now
        busy = stats.method is not None
        return {
            "slot": slot,
            "pid": proc.proc.pid,
            "epoch": epoch,
            "restarts": epoch,
            "ready": proc.liveness.ready,
            "rss": stats.rss,
            "cpu_percent": stats.cpu,
            "messages": stats.handled,
            "tasks": stats.tasks,
            "mailbox": stats.queued,
            "method": stats.method,
            "actor_id": stats.actor_id if busy else None,
            "running_for": stats.busy_for + now - when if busy else 0.0,
            "stack": stats.stack,
        }

    def _actor(self, actor: Any, queued: dict[int, int]) -> dict[str, Any]:
        return {
            "actor_id": actor.actor_id,
            "name": actor.name,
            "cls": actor.spec.cls,
            "worker": actor.slot,
            "restart": actor.restart,
            "restarts": self.restarts[actor.actor_id],
            "state": actor.state,
            "group": actor.group,
            "mailbox": queued.get(actor.actor_id, 0),
        }

    # -- the discovery file -------------------------------------------------------------
    def advertise(self) -> None:
        """Write this system's discovery file; a system that cannot is still a system."""
        me = psutil.Process()
        entry = {
            "system_id": self.args.system_id,
            "pid": me.pid,
            "created": me.create_time(),
            "driver_pid": os.getppid(),
            "driver": _command(os.getppid()),
            "workers": self.args.options.workers,
            "run_dir": self.args.addresses.run_dir,
            "control": self.args.addresses.control,
            "started": time.time(),
        }
        try:
            observe.write_entry(entry)
            self.advertised = True
        except (OSError, observe.DiscoveryError) as exc:
            log.warning("supervisor: no discovery file, `dovecote status` will not see it: %s", exc)

    def withdraw(self) -> None:
        if self.advertised:
            observe.remove_entry(self.args.system_id)
            self.advertised = False


def _command(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())[:200]
    except psutil.Error:
        return "?"
