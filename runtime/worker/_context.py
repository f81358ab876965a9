"""What an actor's code reaches through ``self.system``, and the worker's end of
the event bus, driven by its event loop."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

from actors._actor import Actor
from actors._future import ActorFuture
from actors._ref import ActorRef
from actors._spec import MAX_RESTARTS, PERIOD, Child, RestartPolicy
from runtime.client import Requests
from runtime.net import Bus, Socket, Subscription, check_topic
from runtime.worker._loop import Reader, WorkerLoop, noop

__all__ = ["ActorBus", "WorkerContext"]


class ActorBus:
    """The bus for a worker's actors: publishes and subscriptions, with the sync
    handshake run on the loop until it completes."""

    def __init__(self, loop: WorkerLoop, bus_factory: Callable[..., Bus]) -> None:
        self.loop = loop
        self.bus = bus_factory(self._on_socket)
        self._readers: dict[Socket, Reader] = {}
        self._handshaking = False

    def publish(self, topic: str, obj: Any) -> None:
        self.bus.publisher.publish(topic, obj)
        if not self._handshaking:  # the first event of these turns
            self._schedule()

    def subscribe(self, prefix: str, on_event: Callable[[str, Any], None]) -> ActorFuture[None]:
        """Completes once every later event on ``prefix`` reaches ``on_event``."""
        future: ActorFuture[None] = ActorFuture(f"subscribe({prefix!r})", _no_block)
        sub = Subscription(
            self.bus.ctx, self.bus.addresses, prefix, on_event, _no_wait, self.bus.remove
        )
        self.bus.add(sub, functools.partial(_synced, future))
        self._schedule()
        return future

    def _on_socket(self, sock: Socket, added: bool) -> None:
        if added:
            deliver = self.bus.subs[sock].deliver
            self._readers[sock] = Reader(self.loop, sock, lambda f: deliver(f[0].bytes), noop)
        else:
            self._readers.pop(sock).stop()

    def _schedule(self) -> None:
        if not self._handshaking:
            self._handshaking = True
            self.loop.before_poll(self._handshake)  # the turns' events in one frame

    def _handshake(self) -> None:
        """Sync messages until they come back; then the held events go out."""
        self._handshaking = False
        if not self.bus.handshake(time.monotonic()):
            self._handshaking = True
            self.loop.call_later(0.01, self._handshake)

    def close(self) -> None:
        for reader in self._readers.values():
            reader.stop()
        self._readers.clear()
        self.bus.close()


def _synced(future: ActorFuture[None]) -> None:
    if not future.done():
        future.set_result(None)


def _no_wait(done: Callable[[], bool], deadline: float | None) -> None:
    raise RuntimeError("inside an actor, events arrive in on_event(topic, obj)")


def _no_block(future: ActorFuture[Any], timeout: float | None) -> None:
    if timeout is None or timeout >= 0:
        raise RuntimeError(f"{future.label}: inside an actor, await it instead")


class WorkerContext:
    """``self.system`` inside an actor: each call returns a future to ``await``."""

    def __init__(
        self,
        requests: Requests,
        bus: ActorBus,
        on_down: Callable[[ActorRef, str], None],
        on_event: Callable[[str, Any], None],
    ) -> None:
        self._requests = requests
        self._bus = bus
        self._on_down = on_down
        self._on_event = on_event

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
    ) -> ActorFuture[ActorRef]:
        policy = RestartPolicy(restart, max_restarts, period)
        return self._requests.spawn(cls, args, kwargs, name, worker, policy)

    def spawn_group(
        self,
        children: Sequence[Child],
        *,
        strategy: str = "one_for_one",
        max_restarts: int = MAX_RESTARTS,
        period: float = PERIOD,
    ) -> ActorFuture[list[ActorRef]]:
        return self._requests.spawn_group(children, strategy, max_restarts, period)

    def lookup(self, name: str) -> ActorFuture[ActorRef]:
        return self._requests.lookup(name)

    def stop(self, ref: ActorRef) -> ActorFuture[None]:
        return ref.stop()

    def watch(self, ref: ActorRef) -> ActorFuture[None]:
        """This actor's ``on_down(ref, reason)`` runs when ``ref`` crashes or ends."""
        return self._requests.watch(ref, self._on_down)

    def publish(self, topic: str, obj: Any) -> None:
        """Send ``obj`` to the subscribers of ``topic``'s prefixes."""
        self._bus.publish(check_topic(topic), obj)

    def subscribe(self, prefix: str) -> ActorFuture[None]:
        """From when this completes, this actor's ``on_event(topic, obj)`` gets every
        event whose topic starts with ``prefix``."""
        return self._bus.subscribe(prefix, self._on_event)
