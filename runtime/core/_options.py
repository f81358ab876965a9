"""The options of one actor system: validated once, in the driver, and handed to
every process as JSON. No process applies defaults of its own."""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

from runtime.wire import Addresses

__all__ = ["DEFAULTS", "ProcessArgs", "SystemOptions"]


class SystemOptions(NamedTuple):
    """See ``ActorSystem`` for what each one means. Checked by ``build``, the one
    way the driver makes them; the other processes get them checked, as JSON."""

    workers: int
    mailbox_size: int = 10_000
    outbox_limit: int = 20_000
    send_timeout: float = 30.0
    start_timeout: float = 60.0
    heartbeat_timeout: float = 3.0
    hang_threshold: float = 10.0
    max_memory: int | None = None
    max_messages: int | None = None
    log_level: str = "WARNING"
    log_to_driver: bool = True  # workers' output printed by the driver (always kept in files)
    log_levels: dict[str, int] | None = None  # the driver's logger levels, for the workers'
    metrics_port: int | None = None  # the driver serves Prometheus metrics on 127.0.0.1

    def check(self) -> SystemOptions:
        """These options, or ValueError naming the first bad one."""
        _whole("workers", self.workers)
        for name in ("mailbox_size", "outbox_limit"):
            _whole(name, getattr(self, name))
        for name in ("max_memory", "max_messages"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if self.max_messages is not None:
            _whole("max_messages", self.max_messages)
        for name in ("send_timeout", "start_timeout", "heartbeat_timeout", "hang_threshold"):
            _positive(name, getattr(self, name))
        if not isinstance(self.log_level, str):
            raise ValueError(f"log_level={self.log_level!r} must be a level name")
        if not isinstance(self.log_to_driver, bool):
            raise ValueError(f"log_to_driver={self.log_to_driver!r} must be True or False")
        _levels(self.log_levels)
        port = self.metrics_port
        if port is not None and (type(port) is not int or not 0 <= port < 65536):
            raise ValueError(f"metrics_port={port!r} must be a port number (0 picks one)")
        return self

    @classmethod
    def build(cls, workers: int | None, log_level: str | None, **options: Any) -> SystemOptions:
        """From ``ActorSystem``'s arguments: ``workers`` defaults to the CPU count,
        ``log_level`` to ``$DOVECOTE_LOG_LEVEL``, else WARNING."""
        count = (os.cpu_count() or 1) if workers is None else workers
        level = log_level or os.environ.get("DOVECOTE_LOG_LEVEL", "WARNING")
        return cls(count, log_level=level, **options).check()

    @property
    def heartbeat_interval(self) -> float:
        """Six beats per timeout: a few lost to a busy moment do not kill a worker."""
        return self.heartbeat_timeout / 6


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name}={value!r} must be a number > 0")


def _levels(levels: object) -> None:
    if levels is None:
        return
    if not isinstance(levels, dict) or not all(
        isinstance(k, str) and type(v) is int for k, v in levels.items()
    ):
        raise ValueError(f"log_levels={levels!r} must map logger names to int levels")


def _whole(name: str, value: object) -> None:
    _positive(name, value)
    if not isinstance(value, int):
        raise ValueError(f"{name}={value!r} must be a whole number")


class ProcessArgs(NamedTuple):
    """What one of the runtime's processes starts with: the system's options, where
    its sockets live, and for a worker, its place (slot, incarnation) and the
    actors it must hold messages for until they are started again."""

    system_id: str
    addresses: Addresses
    options: SystemOptions
    slot: int = -1  # -1: the supervisor
    epoch: int = 0
    parent: int = 0  # the pid of the supervisor that started a worker
    expect: tuple[int, ...] = ()
    epochs: tuple[tuple[int, int], ...] = ()  # (slot, epoch) of every worker, as started
    listen: str | None = None  # in a cluster: the tcp:// mailbox of a worker

    def to_json(self) -> str:
        fields = {**self._asdict(), "options": self.options._asdict()}
        return json.dumps({**fields, "addresses": self.addresses._asdict()})

    @classmethod
    def from_json(cls, text: str) -> ProcessArgs:
        raw = json.loads(text)
        raw["options"] = SystemOptions(**raw["options"])
        raw["addresses"] = Addresses(**raw["addresses"])
        raw["expect"] = tuple(raw["expect"])
        raw["epochs"] = tuple((slot, epoch) for slot, epoch in raw["epochs"])
        return cls(**raw)

    def for_worker(
        self, slot: int, epochs: dict[int, int], expect: list[int], parent: int
    ) -> ProcessArgs:
        return self._replace(
            slot=slot,
            epoch=epochs[slot],
            parent=parent,
            expect=tuple(expect),
            epochs=tuple(epochs.items()),
        )


DEFAULTS = SystemOptions(workers=1).check()  # the one place the defaults are written
