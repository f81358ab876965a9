"""Actor classes the tests share. Workers import this module by name: they see the
driver's sys.path, which is part of what the tests check."""

from __future__ import annotations

import asyncio
import ctypes
import os
import pathlib
import sys
import threading
import time
from typing import Any

from actors import Actor, ActorRef, Child, retryable


class Counter(Actor):
    def __init__(self, start: int = 0, stop_marker: str | None = None) -> None:
        self.value = start
        self.stop_marker = stop_marker
        self.started = False

    def on_start(self) -> None:
        self.started = True

    def on_stop(self) -> None:
        if self.stop_marker:
            pathlib.Path(self.stop_marker).write_text(str(self.value))

    def add(self, n: int = 1) -> int:
        self.value += n
        return self.value

    def get(self) -> int:
        return self.value

    def was_started(self) -> bool:
        return self.started

    def receive(self, message: Any) -> Any:
        if message == "value":
            return self.value
        self.value += message
        return None

    def pid(self) -> int:
        return os.getpid()

    def fail(self, exc: BaseException) -> None:
        raise exc

    def exit(self, code: int) -> None:
        os._exit(code)

    def block_on(self, fifo: str) -> str:
        """Blocks this worker until someone writes a line into ``fifo``."""
        with open(fifo) as pipe:
            return pipe.readline().strip()

    def call_blocking(self, other: ActorRef) -> Any:
        return other.get().result(timeout=5)

    def me(self) -> ActorRef:
        return self.ref

    def echo(self, value: Any) -> Any:
        return value

    def make_lock(self) -> Any:
        return threading.Lock()


class Waiter(Actor):
    async def wait_for_file(self, path: str) -> str:
        """Yields to the loop until ``path`` exists: other actors go on meanwhile."""
        while not os.path.exists(path):
            await asyncio.sleep(0.005)
        return pathlib.Path(path).read_text()

    async def relay(self, other: ActorRef, n: int) -> int:
        total = 0
        for _ in range(n):
            total = await other.add(1)
        return total

    async def spawn_and_call(self) -> tuple[int, str | None]:
        child = await self.system.spawn(Counter, 41, name="child")
        found = await self.system.lookup("child")
        value = await found.add(1)
        await self.system.stop(child)
        return value, found.name

    async def ask_receive(self, other: ActorRef) -> Any:
        return await other.receive("value")

    async def start_group(self, log_path: str) -> str:
        refs = await self.system.spawn_group([Child(Incarnation, ("x", log_path))])
        return await refs[0].incarnation()


class BadInit(Actor):
    def __init__(self, why: str) -> None:
        raise KeyError(why)


class Unpicklable(Exception):
    """An exception whose pickle cannot be loaded: it must still reach the caller."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(a)  # args do not match __init__: unpickling fails


class Incarnation(Actor):
    """Knows which incarnation it is, and logs its starts and stops to a file."""

    def __init__(self, label: str, log_path: str) -> None:
        self.label = label
        self.log_path = log_path
        self.token = os.urandom(8).hex()
        self.count = 0
        self._log(f"start {label}")

    def _log(self, line: str) -> None:
        with open(self.log_path, "a") as log:
            log.write(line + "\n")

    def on_stop(self) -> None:
        self._log(f"stop {self.label}")

    def on_restart(self, cause: str) -> None:
        self._log(f"restart {self.label}")

    def incarnation(self) -> str:
        return self.token

    def pid(self) -> int:
        return os.getpid()

    def exit(self, code: int) -> None:
        os._exit(code)

    @retryable(times=2)
    def add(self, n: int) -> int:
        self.count += n
        return self.count

    def add_once(self, n: int) -> int:
        self.count += n
        return self.count

    def hold(self, nbytes: int) -> int:
        self.ballast = bytearray(nbytes)  # resident: bytearray writes its zeros
        return len(self.ballast)

    def spin(self, seconds: float) -> int:
        """Pure Python work for ``seconds``: busy, not hung."""
        end, n = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            n += 1
        return n

    def nap(self, seconds: float) -> None:
        time.sleep(seconds)

    def hold_gil(self, seconds: int) -> None:
        """Stuck in C code that keeps the GIL: no Python thread of this process runs."""
        ctypes.PyDLL(None).sleep(seconds)  # PyDLL calls do not release the GIL


class Watcher(Actor):
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def watch(self, ref: ActorRef) -> None:
        await self.system.watch(ref)

    def on_down(self, ref: ActorRef, reason: str) -> None:
        self.seen.append(f"{ref.actor_id}: {reason}")

    def reasons(self) -> list[str]:
        return self.seen


class RefusesRestart(Actor):
    """Starts once; every later start (a restart) fails."""

    def __init__(self, marker: str) -> None:
        if os.path.exists(marker):
            raise RuntimeError("restart refused")
        pathlib.Path(marker).touch()

    def exit(self) -> None:
        os._exit(1)

    def noop(self) -> None:
        return None


class Listener(Actor):
    """Subscribes to the bus and keeps what it hears; publishes on request."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, Any]] = []

    async def listen(self, prefix: str) -> None:
        await self.system.subscribe(prefix)

    def on_event(self, topic: str, obj: Any) -> None:
        self.heard.append((topic, obj))

    def events(self) -> list[tuple[str, Any]]:
        return self.heard

    def shout(self, topic: str, n: int, done_marker: str | None = None) -> None:
        for i in range(n):
            self.system.publish(topic, i)
        if done_marker:
            pathlib.Path(done_marker).touch()

    def shout_apart(self, topic: str, n: int, done_marker: str) -> None:
        """``n`` events on two topics in turn: each is a frame of its own (a batch
        holds one topic's run), so they fill the bus's queues, counted in frames."""
        for i in range(n):
            self.system.publish(f"{topic}.{i % 2}", i)
        pathlib.Path(done_marker).touch()


def wait_for_path(path: str, timeout: float = 20.0) -> None:
    """Block until ``path`` exists: how an actor tells a test it has got somewhere."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.002)


class Fatal(BaseException):
    """Not an Exception: what a sync method may raise all the same."""


class ExitsWhenPickled:
    def __reduce__(self) -> Any:
        raise SystemExit(4)


class ExitsWhenUnpickled:
    def __reduce__(self) -> Any:
        return (sys.exit, (5,))


class Probe(Actor):
    """Holds, forks, raises, stops itself: what the correctness tests need."""

    def __init__(self, stop_marker: str | None = None) -> None:
        self.value = 0
        self.stop_marker = stop_marker

    def on_stop(self) -> None:
        if self.stop_marker:
            pathlib.Path(self.stop_marker).touch()

    def add(self, n: int) -> int:
        self.value += n
        return self.value

    def get(self) -> int:
        return self.value

    def pid(self) -> int:
        return os.getpid()

    def hold(self, started: str, release: str) -> str:
        """Keeps its worker's loop busy until ``release`` exists."""
        pathlib.Path(started).touch()
        wait_for_path(release, timeout=60)
        return "held"

    async def hold_async(self, started: str, release: str) -> str:
        pathlib.Path(started).touch()
        while not os.path.exists(release):
            await asyncio.sleep(0.002)
        return "held"

    def nap(self, seconds: float) -> None:
        time.sleep(seconds)

    def fork(self) -> int:
        return os.fork()  # the child comes back into the runtime with 0

    def fork_sleeper(self) -> int:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)  # holds every fd the worker had
            os._exit(0)
        return pid

    def raise_(self, exc: BaseException) -> None:
        raise exc

    async def raise_async(self, exc: BaseException) -> None:
        raise exc

    def give(self, obj: Any) -> Any:
        return obj

    def exits_when_pickled(self) -> Any:
        return ExitsWhenPickled()

    def exits_when_unpickled(self) -> Any:
        return ExitsWhenUnpickled()

    def big(self, nbytes: int) -> bytes:
        with open("/dev/zero", "rb") as zeros:  # the read releases the GIL, unlike b"x" * n
            return zeros.read(nbytes)

    async def quit(self) -> str:
        await self.ref.stop()
        return "bye"

    def quit_sync(self) -> str:
        self.ref.stop()
        return "bye"

    async def quit_returning(self) -> Any:
        return self.ref.stop()

    def ask_self(self) -> Any:
        return self.ref.get()

    async def ask_self_async(self) -> Any:
        return self.ref.get()


def write_whole(path: pathlib.Path, text: str) -> None:
    """Write a file that appears whole: an actor polling for it may read it at once."""
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    part.rename(path)


def touch_file(path: str) -> None:
    pathlib.Path(path).touch()


def hold_task(started: str, release: str) -> str:
    pathlib.Path(started).touch()
    wait_for_path(release, timeout=60)
    return "held"


def die_on_two(x: int) -> int:
    if x == 2:
        os._exit(1)
    return x


class Recorder(Actor):
    """Records what it is sent, slowly enough that the worker's keeper reads meanwhile."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def record(self, n: int) -> None:
        time.sleep(0.003)
        self.seen.append(n)

    def log(self) -> list[int]:
        return self.seen


class ExitsInInit(Actor):
    def __init__(self) -> None:
        sys.exit(3)


class Relay(Actor):
    """Calls another actor from inside a worker."""

    async def tell_then_ask(self, other: ActorRef, n: int) -> list[int]:
        """``n`` rounds of a tell to ``other.add`` and an ask of ``other.get``."""
        seen = []
        for _ in range(n):
            other.add.tell(1)
            seen.append(await other.get())
        return seen
