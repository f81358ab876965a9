"""Where a ref finds the engine that carries its calls in this process.

``actors`` never imports ``runtime``: the runtime installs an engine here for
each system it runs in this process, and refs look it up by system id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from actors._errors import ActorStoppedError

if TYPE_CHECKING:
    from actors._future import ActorFuture
    from actors._ref import ActorRef

__all__ = ["Engine", "engines", "get", "install", "remove"]


class Engine(Protocol):
    """What a ref needs from the runtime."""

    def call(
        self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> ActorFuture[Any]: ...

    def tell(
        self, ref: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None: ...


engines: dict[str, Engine] = {}  # by system id; ``get`` raises for a missing one


def install(system_id: str, engine: Engine) -> None:
    engines[system_id] = engine


def remove(system_id: str) -> None:
    engines.pop(system_id, None)


def get(system_id: str) -> Engine:
    try:
        return engines[system_id]
    except KeyError:
        raise ActorStoppedError(
            f"actor system {system_id} is not running in this process"
        ) from None
