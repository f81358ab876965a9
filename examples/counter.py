"""The first dovecote program: one actor, a counter, living in a worker process.

It shows the whole basic API in a few lines:

* start an ``ActorSystem`` (a supervisor and two worker processes) and spawn an actor;
* call a method: the call returns a future, ``.result()`` waits for the reply;
* ``.tell()`` a method (fire-and-forget) and ``ask()`` the actor's ``receive``;
* find the actor again by name with ``lookup``;
* an exception raised in the actor comes back to the caller with its own type;
* stop the actor: later calls raise ``ActorStoppedError``.

Run it with ``python examples/counter.py``.
"""

from __future__ import annotations

import os

from actors import Actor, ActorStoppedError
from runtime import ActorSystem


class Counter(Actor):
    """A counter. Its state lives in one worker process; only messages reach it."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def on_start(self) -> None:
        self.pid = os.getpid()  # runs in the worker, before the first message

    def add(self, n: int = 1) -> int:
        if n < 0:
            raise ValueError(f"a counter only goes up, not by {n}")
        self.value += n
        return self.value

    def where(self) -> int:
        return self.pid

    def receive(self, message: str) -> int | None:
        # ref.tell(msg) and ref.ask(msg) end up here.
        if message == "reset":
            self.value = 0
            return None
        if message == "get":
            return self.value
        raise ValueError(f"unknown message {message!r}")


def main() -> None:
    with ActorSystem(workers=2) as system:  # the processes are all gone when the block ends
        counter = system.spawn(Counter, 10, name="counter")
        print(f"driver pid {os.getpid()}; {counter!r} runs in pid {counter.where().result()}")

        print("counter.add(5)            ->", counter.add(5).result(timeout=5))

        counter.add.tell(1)  # no reply; arrives after the add(5) above (FIFO per sender)
        futures = [counter.add(1) for _ in range(1_000)]  # sent at once, answered in order
        print("1,000 pipelined add(1)    ->", [f.result() for f in futures][-1])

        print("lookup('counter').add(0)  ->", system.lookup("counter").add(0).result())
        print("ask('get')                ->", counter.ask("get", timeout=5))
        counter.tell("reset")
        print("after tell('reset')       ->", counter.ask("get"))

        try:
            counter.add(-1).result()
        except ValueError as exc:  # the actor's exception, with its original type
            print("counter.add(-1) raised    ->", type(exc).__name__, exc)

        counter.stop().result()
        try:
            counter.add(1).result(timeout=5)
        except ActorStoppedError as exc:
            print("after stop                ->", type(exc).__name__, exc)
    print("system shut down; no dovecote process is left")


if __name__ == "__main__":
    main()
