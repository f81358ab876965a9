"""Requests to the supervisor's directory, shared by the driver and actors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from actors._actor import Actor
from actors._errors import SerializationError
from actors._future import ActorFuture
from actors._ref import ActorRef
from actors._spec import Child, RestartPolicy, check_intensity, check_strategy, retry_table
from runtime import _protocol as proto
from runtime._bus import check_topic
from runtime._transport import Transport

__all__ = ["WorkerContext", "identity", "lookup", "spawn", "spawn_group", "watch"]


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


def _spec(
    cls: type[Actor],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    name: str | None,
    worker: int | None,
    policy: RestartPolicy,
    workers: int,
) -> dict[str, Any]:
    """A checked, pickled spawn spec: all the supervisor needs to (re)start it."""
    check_spawn(cls, name, worker, workers)
    return {
        "blob": _dumps_spawn(f"spawn({cls.__name__})", cls, args, kwargs),
        "name": name,
        "cls": cls.__qualname__,
        "worker": worker,
        "restart": policy.restart,
        "max_restarts": policy.max_restarts,
        "period": policy.period,
        "retry": retry_table(cls),
    }


def spawn(
    transport: Transport,
    workers: int,
    cls: type[Actor],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    name: str | None,
    worker: int | None,
    policy: RestartPolicy,
) -> ActorFuture[ActorRef]:
    spec = _spec(cls, args, kwargs, name, worker, policy, workers)
    decode = _ref_decoder(transport.system_id)
    return transport.request(f"spawn({cls.__name__})", decode, "spawn", spec)


def spawn_group(
    transport: Transport,
    workers: int,
    children: Sequence[Child],
    strategy: str,
    max_restarts: int,
    period: float,
) -> ActorFuture[list[ActorRef]]:
    check_strategy(strategy)
    check_intensity(max_restarts, period)
    if not children or not all(isinstance(c, Child) for c in children):
        raise ValueError(f"spawn_group() takes a non-empty list of Child, not {children!r}")
    specs = [
        _spec(c.cls, c.args, c.kwargs, c.name, c.worker, RestartPolicy(c.restart), workers)
        for c in children
    ]
    group = {"strategy": strategy, "max_restarts": max_restarts, "period": period}
    decode = _ref_decoder(transport.system_id)
    return transport.request(
        f"spawn_group({strategy})",
        lambda refs: [decode(r) for r in refs],
        "spawn_group",
        group,
        specs,
    )


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


def watch(
    transport: Transport, ref: ActorRef, on_down: Callable[[ActorRef, str], None]
) -> ActorFuture[None]:
    """Call ``on_down(ref, reason)`` each time ``ref`` crashes and when it ends."""
    if not isinstance(ref, ActorRef):
        raise TypeError(f"watch() takes an ActorRef, not {ref!r}")
    watch_id = transport.add_watch(ref, on_down)
    return transport.request(f"watch({ref!r})", _none, "watch", ref.actor_id, watch_id)


def _none(_: Any) -> None:
    return None


def identity(value: Any) -> Any:
    """Decode a supervisor reply that is used as it comes."""
    return value


def _ref_decoder(system_id: str) -> Callable[[Any], ActorRef]:
    def decode(address: Sequence[Any]) -> ActorRef:
        actor_id, slot, name, retry, cls_name = address
        return ActorRef(system_id, actor_id, slot, name, tuple(map(tuple, retry)), cls_name)

    return decode


class WorkerContext:
    """``self.system`` inside an actor: each call returns a future to ``await``."""

    def __init__(
        self,
        transport: Transport,
        workers: int,
        on_down: Callable[[ActorRef, str], None],
        on_event: Callable[[str, Any], None],
    ) -> None:
        self._transport = transport
        self._workers = workers
        self._on_down = on_down
        self._on_event = on_event

    def spawn(
        self,
        cls: type[Actor],
        *args: Any,
        name: str | None = None,
        worker: int | None = None,
        restart: str = "permanent",
        max_restarts: int = 3,
        period: float = 5.0,
        **kwargs: Any,
    ) -> ActorFuture[ActorRef]:
        policy = RestartPolicy(restart, max_restarts, period)
        return spawn(self._transport, self._workers, cls, args, kwargs, name, worker, policy)

    def spawn_group(
        self,
        children: Sequence[Child],
        *,
        strategy: str = "one_for_one",
        max_restarts: int = 3,
        period: float = 5.0,
    ) -> ActorFuture[list[ActorRef]]:
        return spawn_group(self._transport, self._workers, children, strategy, max_restarts, period)

    def lookup(self, name: str) -> ActorFuture[ActorRef]:
        return lookup(self._transport, name)

    def stop(self, ref: ActorRef) -> ActorFuture[None]:
        return ref.stop()

    def watch(self, ref: ActorRef) -> ActorFuture[None]:
        """This actor's ``on_down(ref, reason)`` runs when ``ref`` crashes or ends."""
        return watch(self._transport, ref, self._on_down)

    def publish(self, topic: str, obj: Any) -> None:
        """Send ``obj`` to the subscribers of ``topic``'s prefixes."""
        self._transport.publish(check_topic(topic), obj)

    def subscribe(self, prefix: str) -> ActorFuture[None]:
        """From when this completes, this actor's ``on_event(topic, obj)`` gets every
        event whose topic starts with ``prefix``."""
        return self._transport.subscribe_actor(prefix, self._on_event)
