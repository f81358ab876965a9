"""ActorRef: the small, picklable address of an actor."""

from __future__ import annotations

from typing import Any

from actors import _engine
from actors._engine import engines as _engines
from actors._future import ActorFuture

__all__ = ["ActorRef"]

STOP_METHOD = "__stop__"


class ActorRef:
    """The address of an actor; hashable, picklable, usable from any process.

    ``ref.method(*args)`` returns an :class:`ActorFuture`; ``ref.method.tell(*args)``
    sends without a reply; ``ref.tell(msg)`` and ``ref.ask(msg)`` go to the actor's
    ``receive``. The names ``tell``, ``ask``, ``stop``, ``name``, ``slot``,
    ``retry``, ``actor_id``, ``system_id`` and ``cls_name`` are the ref's own: an
    actor method with one of them cannot be called through a ref. A ref is
    immutable: setting or deleting an attribute raises AttributeError.
    """

    # No __slots__: a method proxy, once made, is cached in the instance dict so
    # the next ``ref.method`` is a plain attribute lookup.
    system_id: str
    actor_id: int
    slot: int
    name: str | None
    retry: tuple[tuple[str, int], ...]
    cls_name: str

    def __init__(
        self,
        system_id: str,
        actor_id: int,
        slot: int,
        name: str | None = None,
        retry: tuple[tuple[str, int], ...] = (),
        cls_name: str = "",
    ) -> None:
        fields = self.__dict__
        fields["system_id"] = system_id
        fields["actor_id"] = actor_id
        fields["slot"] = slot
        fields["name"] = name
        fields["retry"] = retry  # (method, times) of the methods marked @retryable
        fields["cls_name"] = cls_name  # the actor's class, for messages

    def __getattr__(self, method: str) -> _Method:
        if method.startswith("_"):
            raise AttributeError(f"{self!r}: private attribute {method!r} cannot be called")
        bound = self.__dict__[method] = _Method(self, method)
        return bound

    def __setattr__(self, attribute: str, value: Any) -> None:
        raise AttributeError(f"{self!r} is immutable: cannot set {attribute!r}")

    def __delattr__(self, attribute: str) -> None:
        raise AttributeError(f"{self!r} is immutable: cannot delete {attribute!r}")

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
        fields = (self.system_id, self.actor_id, self.slot, self.name, self.retry, self.cls_name)
        return (ActorRef, fields)

    def __repr__(self) -> str:
        label = " ".join(filter(None, (self.cls_name, self.name and repr(self.name))))
        return f"ActorRef({label + ' ' if label else ''}#{self.actor_id} on worker {self.slot})"


class _Method:
    """``ref.name``: call it for a future, or ``.tell(...)`` it. Internal."""

    __slots__ = ("name", "ref")

    def __init__(self, ref: ActorRef, name: str) -> None:
        self.ref = ref
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> ActorFuture[Any]:
        ref = self.ref  # the engine looked up inline: a call per message less
        engine = _engines.get(ref.system_id) or _engine.get(ref.system_id)
        return engine.call(ref, self.name, args, kwargs)

    def tell(self, *args: Any, **kwargs: Any) -> None:
        ref = self.ref
        engine = _engines.get(ref.system_id) or _engine.get(ref.system_id)
        engine.tell(ref, self.name, args, kwargs)

    def __repr__(self) -> str:
        return f"<method {self.name!r} of {self.ref!r}>"
