"""ActorRef: the small, picklable address of an actor."""

from __future__ import annotations

from typing import Any

from actors import _engine
from actors._future import ActorFuture

__all__ = ["ActorRef"]

STOP_METHOD = "__stop__"


class ActorRef:
    """The address of an actor; hashable, picklable, usable from any process.

    ``ref.method(*args)`` returns an :class:`ActorFuture`; ``ref.method.tell(*args)``
    sends without a reply; ``ref.tell(msg)`` and ``ref.ask(msg)`` go to the actor's
    ``receive``. The names ``tell``, ``ask``, ``stop``, ``name``, ``slot``,
    ``retry``, ``actor_id`` and ``system_id`` are the ref's own: an actor method
    with one of them cannot be called through a ref.
    """

    # No __slots__: a method proxy, once made, is cached in the instance dict so
    # the next ``ref.method`` is a plain attribute lookup.

    def __init__(
        self,
        system_id: str,
        actor_id: int,
        slot: int,
        name: str | None = None,
        retry: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.system_id = system_id
        self.actor_id = actor_id
        self.slot = slot
        self.name = name
        self.retry = retry  # (method, times) of the methods marked @retryable

    def __getattr__(self, method: str) -> _Method:
        if method.startswith("_"):
            raise AttributeError(f"{self!r}: private attribute {method!r} cannot be called")
        bound = self.__dict__[method] = _Method(self, method)
        return bound

    def tell(self, message: Any) -> None:
        """Send ``message`` to the actor's ``receive`` without waiting for anything."""
        _engine.get(self.system_id).tell(self, "receive", (message,), {})

    def ask(self, message: Any, timeout: float | None = None) -> Any:
        """Send ``message`` to ``receive`` and return its reply (blocking).

        Inside an async actor method use ``await ref.receive(message)`` instead.
        """
        return _engine.get(self.system_id).call(self, "receive", (message,), {}).result(timeout)

    def stop(self) -> ActorFuture[None]:
        """Stop the actor after the messages already sent to it; runs ``on_stop``."""
        return _engine.get(self.system_id).call(self, STOP_METHOD, (), {})

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ActorRef)
            and other.actor_id == self.actor_id
            and other.system_id == self.system_id
        )

    def __hash__(self) -> int:
        return hash((self.system_id, self.actor_id))

    def __reduce__(self) -> tuple[Any, ...]:
        return (ActorRef, (self.system_id, self.actor_id, self.slot, self.name, self.retry))

    def __repr__(self) -> str:
        label = f"{self.name}#{self.actor_id}" if self.name else f"#{self.actor_id}"
        return f"ActorRef({label} on worker {self.slot})"


class _Method:
    """``ref.name``: call it for a future, or ``.tell(...)`` it. Internal."""

    __slots__ = ("name", "ref")

    def __init__(self, ref: ActorRef, name: str) -> None:
        self.ref = ref
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> ActorFuture[Any]:
        return _engine.get(self.ref.system_id).call(self.ref, self.name, args, kwargs)

    def tell(self, *args: Any, **kwargs: Any) -> None:
        _engine.get(self.ref.system_id).tell(self.ref, self.name, args, kwargs)

    def __repr__(self) -> str:
        return f"<method {self.name!r} of {self.ref!r}>"
