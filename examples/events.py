"""Event-driven actors on the bus: publish, subscribe, lifecycle events.

An ``OrderBook`` actor subscribes to the topic prefix ``"orders."`` and keeps
running totals in its ``on_event(topic, obj)`` hook, which runs in turn with
its messages, like a method. For a large order it publishes an alert of its
own on ``"alerts.large"``. The driver subscribes to three prefixes:

* ``"dovecote.actor."``, the runtime's own lifecycle events (started,
  restarted, crashed, stopped), published by the supervisor;
* ``"orders."``, to see the same orders the actor gets;
* ``"alerts."``, the actor's alerts.

Topics match by prefix. Every event published after ``subscribe()`` returns is
delivered, so nothing here sleeps: the driver reads with ``get(timeout=...)``,
and waits for the actor by asking for its totals until they add up.

Run it with ``python examples/events.py``.
"""

from __future__ import annotations

import time

from actors import Actor
from runtime import ActorSystem

ORDERS = [
    ("orders.books", {"id": 1, "amount": 12.50}),
    ("orders.games", {"id": 2, "amount": 59.99}),
    ("orders.books", {"id": 3, "amount": 8.00}),
    ("orders.music", {"id": 4, "amount": 120.00}),
    ("orders.games", {"id": 5, "amount": 19.99}),
    ("orders.books", {"id": 6, "amount": 250.00}),
]
LARGE = 100.0


class OrderBook(Actor):
    """Totals per category, from the events on ``orders.*``."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.handled = 0

    async def start_listening(self) -> None:
        await self.system.subscribe("orders.")  # from now on, on_event gets them all

    def on_event(self, topic: str, obj: dict[str, float]) -> None:
        category = topic.removeprefix("orders.")
        self.totals[category] = round(self.totals.get(category, 0.0) + obj["amount"], 2)
        self.handled += 1
        if obj["amount"] >= LARGE:
            self.system.publish("alerts.large", {"order": obj["id"], "category": category})

    def report(self) -> dict[str, object]:
        return {"handled": self.handled, "totals": self.totals}


def wait_for_handled(book: object, count: int, timeout: float = 10.0) -> dict[str, float]:
    """Ask the actor until it has handled ``count`` events (each ask is a round trip)."""
    deadline = time.monotonic() + timeout
    while True:
        report = book.report().result(timeout=5)  # type: ignore[attr-defined]
        handled = report["handled"]
        if handled >= count:
            return report["totals"]
        if time.monotonic() > deadline:
            raise TimeoutError(f"the actor handled {handled} of {count} events")


def main() -> None:
    with ActorSystem(workers=2) as system:
        lifecycle = system.subscribe("dovecote.actor.")
        orders = system.subscribe("orders.")
        alerts = system.subscribe("alerts.")

        book = system.spawn(OrderBook, name="order-book")
        book.start_listening().result(timeout=10)

        for topic, order in ORDERS:
            system.publish(topic, order)

        seen = [orders.get(timeout=5) for _ in ORDERS]
        print(f"the driver saw {len(seen)} orders: {[o['id'] for _, o in seen]}")
        totals = wait_for_handled(book, len(ORDERS))
        print(f"the actor's totals: {totals}")
        for _ in range(sum(o["amount"] >= LARGE for _, o in ORDERS)):
            topic, alert = alerts.get(timeout=5)
            print(f"alert from the actor on {topic!r}: {alert}")

        system.stop(book, timeout=5)
        print("lifecycle events:")
        for _ in range(2):  # started, then stopped
            topic, fields = lifecycle.get(timeout=5)
            print(f"  {topic:<24} {fields}")
        try:
            system.publish("dovecote.actor.started", {})
        except ValueError as exc:
            print(f"publishing on the runtime's prefix is refused: {exc}")

        for sub in (lifecycle, orders, alerts):
            sub.close()
        print(f"missed events: {lifecycle.missed + orders.missed + alerts.missed}")


if __name__ == "__main__":
    main()
