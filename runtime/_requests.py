"""Requests to the supervisor's directory, shared by the driver and actors."""

from __future__ import annotations

from typing import Any

from actors._actor import Actor
from actors._errors import SerializationError
from actors._future import ActorFuture
from actors._ref import ActorRef
from runtime import _protocol as proto
from runtime._transport import Transport

__all__ = ["WorkerContext", "lookup", "spawn"]


def check_spawn(cls: Any, name: str | None, worker: int | None, workers: int) -> None:
    """Reject bad spawn options in the caller's process, naming the value."""
    if not (isinstance(cls, type) and issubclass(cls, Actor)):
        raise TypeError(f"spawn() takes an Actor subclass, not {cls!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"actor name must be a non-empty string, not {name!r}")
    if worker is not None and (
        isinstance(worker, bool) or not isinstance(worker, int) or not 0 <= worker < workers
    ):
        raise ValueError(f"worker={worker!r} is not an index from 0 to {workers - 1}")


def spawn(
    transport: Transport,
    workers: int,
    cls: type[Actor],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    name: str | None,
    worker: int | None,
) -> ActorFuture[ActorRef]:
    check_spawn(cls, name, worker, workers)
    label = f"spawn({cls.__name__})"
    blob = _dumps_spawn(label, cls, args, kwargs)
    return transport.request(label, _ref_decoder(transport.system_id), "spawn", blob, name, worker)


def _dumps_spawn(
    label: str, cls: type[Actor], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> bytes:
    try:
        return proto.dumps((cls, args, kwargs), out_of_band=False)[0]
    except Exception as exc:
        proto.dumps_call(label, args, kwargs)  # raises, naming the argument at fault
        raise SerializationError(f"{label}: cannot pickle {cls.__qualname__}: {exc}") from exc


def lookup(transport: Transport, name: str) -> ActorFuture[ActorRef]:
    return transport.request(f"lookup({name!r})", _ref_decoder(transport.system_id), "lookup", name)


def _ref_decoder(system_id: str) -> Any:
    def decode(payload: tuple[int, int, str | None]) -> ActorRef:
        actor_id, slot, name = payload
        return ActorRef(system_id, actor_id, slot, name)

    return decode


class WorkerContext:
    """``self.system`` inside an actor: each call returns a future to ``await``."""

    def __init__(self, transport: Transport, workers: int) -> None:
        self._transport = transport
        self._workers = workers

    def spawn(
        self,
        cls: type[Actor],
        *args: Any,
        name: str | None = None,
        worker: int | None = None,
        **kwargs: Any,
    ) -> ActorFuture[ActorRef]:
        return spawn(self._transport, self._workers, cls, args, kwargs, name, worker)

    def lookup(self, name: str) -> ActorFuture[ActorRef]:
        return lookup(self._transport, name)

    def stop(self, ref: ActorRef) -> ActorFuture[None]:
        return ref.stop()
