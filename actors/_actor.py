"""The Actor base class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from actors._spec import MAX_RESTARTS, PERIOD

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from actors._future import ActorFuture
    from actors._ref import ActorRef
    from actors._spec import Child

__all__ = ["Actor", "ActorContext", "concurrent"]


class ActorContext(Protocol):
    """``self.system`` inside an actor. Each call returns a future: ``await`` it."""

    def spawn(
        self,
        cls: type[Actor],
        *args: Any,
        name: str | None = None,
        worker: int | None = None,
        restart: str = "permanent",
        max_restarts: int = MAX_RESTARTS,
        period: float = PERIOD,
        **kwargs: Any,
    ) -> ActorFuture[ActorRef]: ...

    def spawn_group(
        self,
        children: Sequence[Child],
        *,
        strategy: str = "one_for_one",
        max_restarts: int = MAX_RESTARTS,
        period: float = PERIOD,
    ) -> ActorFuture[list[ActorRef]]: ...

    def lookup(self, name: str) -> ActorFuture[ActorRef]: ...

    def stop(self, ref: ActorRef) -> ActorFuture[None]: ...

    def watch(self, ref: ActorRef) -> ActorFuture[None]: ...

    def publish(self, topic: str, obj: Any) -> None: ...

    def subscribe(self, prefix: str) -> ActorFuture[None]: ...


class Actor:
    """Subclass it; public methods become callable through an :class:`ActorRef`.

    An actor handles one message at a time, in arrival order. A method may be
    ``async def`` and ``await`` other actors; it keeps the actor busy until it
    returns, while other actors in the same worker go on.

    ``max_concurrency = n`` (or the :func:`concurrent` decorator) lets up to n
    messages be in progress at once: while async methods wait at an ``await``, the
    next messages start, still in arrival order. A sync method still runs alone,
    to completion. Stopping the actor cancels the async methods in progress.
    """

    max_concurrency: ClassVar[int] = 1

    _ref: ActorRef
    _system: ActorContext

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "max_concurrency" in cls.__dict__:
            check_concurrency(
                cls.__dict__["max_concurrency"], f"{cls.__qualname__}.max_concurrency"
            )

    def on_start(self) -> None:
        """Runs in the worker after ``__init__``, before any message."""

    def on_stop(self) -> None:
        """Runs when the actor is stopped or its worker shuts down."""

    def on_restart(self, cause: str) -> None:
        """Runs on this incarnation before it is replaced, when it is still alive to
        see it (its group restarts it, or its worker is recycled at a limit): the
        place to save state. After a crash of its process it cannot run."""

    def on_down(self, ref: ActorRef, reason: str) -> None:
        """A watched actor (see ``self.system.watch``) crashed or stopped."""

    def on_event(self, topic: str, obj: Any) -> None:
        """An event on a topic this actor subscribed to (``self.system.subscribe``)."""

    def receive(self, message: Any) -> Any:
        """Handles ``ref.tell(message)`` and ``ref.ask(message)``."""
        raise NotImplementedError(f"{type(self).__name__} does not define receive()")

    @property
    def ref(self) -> ActorRef:
        """This actor's own ref."""
        return self._ref

    @property
    def system(self) -> ActorContext:
        """Spawn, look up and stop actors from inside this one."""
        return self._system


# Names a ref may not call: the hooks and the attributes above.
RESERVED = frozenset({"on_start", "on_stop", "on_restart", "on_down", "on_event", "ref", "system"})


A = TypeVar("A", bound=type[Actor])


def concurrent(n: int) -> Callable[[A], A]:
    """Class decorator: up to ``n`` messages of the actor in progress at once, as
    ``max_concurrency = n`` (see :class:`Actor`)::

        @concurrent(8)
        class Fetcher(Actor):
            async def get(self, url): ...
    """
    check_concurrency(n, f"concurrent({n!r})")

    def mark(cls: A) -> A:
        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise TypeError(f"concurrent({n}) decorates an Actor subclass, not {cls!r}")
        cls.max_concurrency = n
        return cls

    return mark


def check_concurrency(n: object, where: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{where}: max_concurrency must be a whole number >= 1, not {n!r}")
