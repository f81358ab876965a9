"""Requests to the supervisor's directory, shared by the driver and actors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from actors._actor import Actor
from actors._errors import SerializationError
from actors._future import ActorFuture
from actors._ref import ActorRef
from actors._spec import Child, RestartPolicy, check_intensity, check_strategy, retry_table
from runtime import wire
from runtime.client._transport import Transport

__all__ = ["Requests", "identity"]


def check_spawn(cls: Any, name: str | None, worker: int | None, workers: int | None) -> None:
    """Reject bad spawn options in the caller's process, naming the value."""
    if not (isinstance(cls, type) and issubclass(cls, Actor)):
        raise TypeError(f"spawn() takes an Actor subclass, not {cls!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"actor name must be a non-empty string, not {name!r}")
    if worker is None:
        return
    if isinstance(worker, bool) or not isinstance(worker, int) or worker < 0:
        raise ValueError(f"worker={worker!r} is not a worker index")
    if workers is not None and worker >= workers:  # a cluster's are checked by its head
        raise ValueError(f"worker={worker!r} is not an index from 0 to {workers - 1}")


def _spec(
    cls: type[Actor],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    name: str | None,
    worker: int | None,
    policy: RestartPolicy,
    workers: int | None,
    place: tuple[str | None, str | None] = (None, None),
) -> wire.ActorSpec:
    """A checked, pickled spawn spec: all the supervisor needs to (re)start it."""
    check_spawn(cls, name, worker, workers)
    return wire.ActorSpec(
        blob=_dumps_spawn(f"spawn({cls.__name__})", cls, args, kwargs),
        name=name,
        cls=cls.__qualname__,
        worker=worker,
        restart=policy.restart,
        max_restarts=policy.max_restarts,
        period=policy.period,
        retry=[list(pair) for pair in retry_table(cls)],
        node=place[0],
        owner=place[1],
    )


class Requests:
    """Requests to the supervisor's directory from one process: the driver's, or
    a worker's for its actors. Each returns a future of the supervisor's answer."""

    def __init__(
        self, transport: Transport, system_id: str, workers: int | None, owner: str | None = None
    ) -> None:
        self.transport = transport
        self.system_id = system_id
        self.workers = workers  # None: a cluster's, which its head checks
        self.owner = owner  # a cluster's driver: the actors it spawns stop when it leaves
        self._decode = _ref_decoder(system_id)

    def spawn(
        self,
        cls: type[Actor],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None,
        worker: int | None,
        policy: RestartPolicy,
        node: str | None = None,
        lifetime: str | None = None,
    ) -> ActorFuture[ActorRef]:
        if lifetime not in (None, "detached"):
            raise ValueError(f"lifetime={lifetime!r}: None or 'detached'")
        if node is not None and (not isinstance(node, str) or not node):
            raise ValueError(f"node={node!r} is not a node name")
        owner = None if lifetime == "detached" else self.owner
        spec = _spec(cls, args, kwargs, name, worker, policy, self.workers, (node, owner))
        return self.transport.control.request(
            f"spawn({cls.__name__})", self._decode, lambda req_id: wire.Spawn(req_id, spec)
        )

    def spawn_group(
        self, children: Sequence[Child], strategy: str, max_restarts: int, period: float
    ) -> ActorFuture[list[ActorRef]]:
        check_strategy(strategy)
        check_intensity(max_restarts, period)
        if not children or not all(isinstance(c, Child) for c in children):
            raise ValueError(f"spawn_group() takes a non-empty list of Child, not {children!r}")
        specs = [
            _spec(
                c.cls,
                c.args,
                c.kwargs,
                c.name,
                c.worker,
                RestartPolicy(c.restart),
                self.workers,
                (None, self.owner),
            )
            for c in children
        ]
        group = wire.GroupSpec(strategy, max_restarts, period)
        decode = self._decode
        return self.transport.control.request(
            f"spawn_group({strategy})",
            lambda refs: [decode(r) for r in refs],
            lambda req_id: wire.SpawnGroup(req_id, group, specs),
        )

    def lookup(self, name: str) -> ActorFuture[ActorRef]:
        return self.transport.control.request(
            f"lookup({name!r})", self._decode, lambda req_id: wire.Lookup(req_id, name)
        )

    def watch(self, ref: ActorRef, on_down: Callable[[ActorRef, str], None]) -> ActorFuture[None]:
        """Call ``on_down(ref, reason)`` each time ``ref`` crashes and when it ends."""
        if not isinstance(ref, ActorRef):
            raise TypeError(f"watch() takes an ActorRef, not {ref!r}")
        watch_id = self.transport.control.add_watch(ref, on_down)
        return self.transport.control.request(
            f"watch({ref!r})", _none, lambda req_id: wire.Watch(req_id, ref.actor_id, watch_id)
        )

    def actor_gone(self, actor_id: int) -> ActorFuture[None]:
        return self.transport.control.request(
            "actor gone", _none, lambda req_id: wire.ActorGone(req_id, actor_id)
        )


def _dumps_spawn(
    label: str, cls: type[Actor], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> bytes:
    try:
        return wire.dumps((cls, args, kwargs), out_of_band=False)[0]
    except Exception as exc:
        wire.dumps_call(label, args, kwargs)  # raises, naming the argument at fault
        raise SerializationError(f"{label}: cannot pickle {cls.__qualname__}: {exc}") from exc


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
