"""Supervision: actors come back after their worker process is killed.

What it shows, in three parts:

1. A permanent actor (the default restart type) whose worker is SIGKILLed comes
   back under the same ref and name; its ``__init__`` ran again, so its state is
   reset. A watch callback reports each crash, and the final stop.
2. Calls in flight when the process dies: a plain one fails with
   ``ActorCrashedError`` naming the signal; a method marked ``@retryable`` is
   re-sent to the new incarnation and succeeds.
3. A group with strategy ``"rest_for_one"``: when its middle child is killed,
   that child and the ones started after it restart; the one before it keeps
   running. The children write their hooks to a journal, printed at the end,
   so you see the order: the later sibling stops (``on_restart``, ``on_stop``),
   all start again in order, and shutdown stops them in reverse.

The program waits on futures and on watch notices (a ``queue.Queue``), never on
sleeps. The supervisor also logs each dead worker as a WARNING on stderr.

Run it with ``python examples/supervision.py``.
"""

from __future__ import annotations

import os
import queue
import secrets
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors import Actor, ActorCrashedError, ActorFuture, ActorRef, Child, retryable
from runtime import ActorSystem

WAIT = 10.0  # seconds any single step may take before the example fails


class Account(Actor):
    """A balance in memory: lost when its process dies, rebuilt by ``__init__``."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.balance = 0

    def deposit(self, amount: int) -> int:  # not safe to run twice: not retryable
        self.balance += amount
        return self.balance

    @retryable(times=3)  # read-only, so safe to re-send to a new incarnation
    def get_balance(self) -> int:
        return self.balance

    def pid(self) -> int:
        return os.getpid()


class Stage(Actor):
    """A child of the group. Each incarnation has its own token; hooks go to a journal."""

    def __init__(self, label: str, journal: str) -> None:
        self.label = label
        self.journal = journal
        self.token = secrets.token_hex(3)
        self._write(f"{label}: __init__ (incarnation {self.token})")

    def _write(self, line: str) -> None:
        with open(self.journal, "a") as journal:
            journal.write(line + "\n")

    def on_restart(self, cause: str) -> None:
        self._write(f"{self.label}: on_restart ({cause})")

    def on_stop(self) -> None:
        self._write(f"{self.label}: on_stop")

    def incarnation(self) -> str:
        return self.token

    def pid(self) -> int:
        return os.getpid()


def after_crash(call: Callable[[], ActorFuture[Any]], attempts: int = 20) -> Any:
    """A call that races the crash may fail with ActorCrashedError: try again."""
    for _ in range(attempts):
        try:
            return call().result(timeout=WAIT)
        except ActorCrashedError:
            continue
    raise RuntimeError(f"no answer after {attempts} attempts")


# Watch notices arrive on a dovecote thread; the callback only queues them.
EVENTS: queue.Queue[str] = queue.Queue()


def on_down(ref: ActorRef, reason: str) -> None:
    EVENTS.put(f"{ref.name}: {reason}")


def next_event() -> str:
    return EVENTS.get(timeout=WAIT)


def restart_one(system: ActorSystem) -> int:
    print("-- 1. a permanent actor is killed and comes back")
    account = system.spawn(Account, "alice", name="account", worker=0)
    system.watch(account, on_down)
    print("deposit(5)                  ->", account.deposit(5).result(timeout=WAIT))
    pid = account.pid().result(timeout=WAIT)
    os.kill(pid, signal.SIGKILL)
    print(f"SIGKILL pid {pid}")
    print("watch                       ->", next_event())
    new_pid = after_crash(account.pid)
    print(f"same ref, new pid           -> {account!r}, pid {new_pid}")
    print("get_balance()               ->", account.get_balance().result(timeout=WAIT))
    print("lookup('account') == ref    ->", system.lookup("account") == account)
    return new_pid


def calls_in_flight(system: ActorSystem, pid: int) -> None:
    print("\n-- 2. calls in flight when the process dies")
    account = system.lookup("account")
    print("deposit(7)                  ->", account.deposit(7).result(timeout=WAIT))
    os.kill(pid, signal.SIGSTOP)  # frozen: the next two calls surely wait in its mailbox
    plain = account.deposit(1)
    retried = account.get_balance()
    os.kill(pid, signal.SIGKILL)
    print(f"SIGSTOP, 2 calls, SIGKILL pid {pid}")
    try:
        plain.result(timeout=WAIT)
    except ActorCrashedError as exc:
        print("deposit(1)                  -> ActorCrashedError:", exc)
    print("get_balance(), @retryable   ->", retried.result(timeout=WAIT), "(run by the new one)")
    print("watch                       ->", next_event())
    account.stop().result(timeout=WAIT)
    print("watch                       ->", next_event())


def rest_for_one(system: ActorSystem, journal: Path) -> None:
    print("\n-- 3. a rest_for_one group: its middle child is killed")
    labels = ["parse", "enrich", "store"]
    children = [  # enrich alone on worker 2, so that killing its process spares the others
        Child(Stage, (label, str(journal)), name=label, worker=slot)
        for label, slot in zip(labels, (1, 2, 1), strict=True)
    ]
    group = system.spawn_group(children, strategy="rest_for_one")
    for ref in group:
        system.watch(ref, on_down)
    before = [ref.incarnation().result(timeout=WAIT) for ref in group]
    pid = group[1].pid().result(timeout=WAIT)
    os.kill(pid, signal.SIGKILL)
    print(f"SIGKILL pid {pid}")
    print("watch ->", next_event())  # enrich crashed
    print("watch ->", next_event())  # store, started after it, restarts with it
    after = [after_crash(ref.incarnation) for ref in group]
    for label, old, new in zip(labels, before, after, strict=True):
        print(f"{label:<6} incarnation {old} -> {new}: {'restarted' if old != new else 'kept'}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        journal = Path(tmp, "journal")
        with ActorSystem(workers=3) as system:
            pid = restart_one(system)
            calls_in_flight(system, pid)
            rest_for_one(system, journal)
        print("\nthe group's journal (the last three lines are the shutdown, in reverse order):")
        print("\n".join("  " + line for line in journal.read_text().splitlines()))


if __name__ == "__main__":
    main()
