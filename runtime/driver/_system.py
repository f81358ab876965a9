"""ActorSystem: the driver's handle on a supervisor and its workers."""

from __future__ import annotations

import atexit
import functools
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

import zmq

from actors import _engine
from actors._actor import Actor
from actors._errors import ActorStoppedError
from actors._future import ActorFuture
from actors._ref import ActorRef
from actors._spec import MAX_RESTARTS, PERIOD, Child, RestartPolicy
from runtime import wire
from runtime.client import Requests, identity
from runtime.core import DEFAULTS, SystemOptions
from runtime.driver import _observe
from runtime.driver._aio import AsyncActorSystem
from runtime.driver._executor import DovecoteExecutor
from runtime.driver._io import DriverIO
from runtime.driver._link import HeadLink, Hosts, Link, LocalLink
from runtime.driver._pipeline import Stage, run_pipeline
from runtime.driver._tasks import DEFAULT_RETRIES, Tasks, as_completed
from runtime.net import Context, Subscription, check_topic

__all__ = ["ActorSystem"]

A = TypeVar("A", bound=Actor)


class ActorSystem(_observe.Observed, Hosts):
    """A supervisor process and ``workers`` worker processes, gone on exit.

    Use it as a context manager, or call :meth:`shutdown` (idempotent). If the
    driver dies without shutting down, even by SIGKILL, the supervisor and the
    workers notice and exit by themselves.

    Options (keyword-only): ``mailbox_size``, messages a worker holds unhandled
    before it stops reading (backpressure); ``outbox_limit``, messages the driver
    holds for one worker before a send blocks; ``send_timeout``, seconds a send
    blocks before it raises :class:`actors.MailboxFullError`; ``start_timeout``;
    ``heartbeat_timeout``, seconds without a heartbeat before a worker is taken
    for hung, killed and replaced; ``hang_threshold``, seconds one message may
    hold an actor before its stack is logged; ``max_memory`` (bytes resident) and
    ``max_messages``, limits past which a worker is recycled; ``log_level`` for
    the supervisor and workers (default: ``$DOVECOTE_LOG_LEVEL``, else WARNING);
    ``log_to_driver=False`` keeps the workers' output in their log files only, and
    ``metrics_port`` serves Prometheus metrics on 127.0.0.1 (README: Operating it).

    With ``address`` (or ``$DOVECOTE_ADDRESS``) it joins a cluster's head instead,
    with ``keys`` (or ``$DOVECOTE_KEYS``), and starts no process: ``workers`` is
    then how many of the cluster's workers to wait for (default: one), and the
    other options are the head's (README: Cluster).
    """

    _closed = False
    _requests: Requests  # made by ``_start``, once the system's id is known
    _tasks: Tasks
    _observing: _observe.Observing | None = None

    def __init__(
        self,
        workers: int | None = None,
        *,
        mailbox_size: int = DEFAULTS.mailbox_size,
        outbox_limit: int = DEFAULTS.outbox_limit,
        send_timeout: float = DEFAULTS.send_timeout,
        start_timeout: float = DEFAULTS.start_timeout,
        heartbeat_timeout: float = DEFAULTS.heartbeat_timeout,
        hang_threshold: float = DEFAULTS.hang_threshold,
        max_memory: int | None = DEFAULTS.max_memory,
        max_messages: int | None = DEFAULTS.max_messages,
        log_level: str | None = None,
        address: str | None = None,
        keys: str | None = None,
        log_to_driver: bool = True,
        metrics_port: int | None = None,
    ) -> None:
        self.options = SystemOptions.build(
            workers,
            log_level,
            mailbox_size=mailbox_size,
            outbox_limit=outbox_limit,
            send_timeout=send_timeout,
            start_timeout=start_timeout,
            heartbeat_timeout=heartbeat_timeout,
            hang_threshold=hang_threshold,
            max_memory=max_memory,
            max_messages=max_messages,
            log_to_driver=log_to_driver,
            metrics_port=metrics_port,
        )
        self.system_id = secrets.token_hex(4)
        self._ctx: Context = zmq.Context()
        address = address or os.environ.get("DOVECOTE_ADDRESS") or None
        self._link, self._io = _connect(self._ctx, self.system_id, self.options, address, keys)
        self._addresses, self._run_dir = self._link.addresses, self._link.run_dir
        self._transport = self._io.transport
        _start(self, address is None, workers or 0)

    def spawn(
        self,
        cls: type[A],
        *args: Any,
        name: str | None = None,
        worker: int | None = None,
        restart: str = "permanent",
        max_restarts: int = MAX_RESTARTS,
        period: float = PERIOD,
        node: str | None = None,
        lifetime: str | None = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Start ``cls(*args, **kwargs)`` in a worker and return its ref.

        The least loaded worker takes it unless ``worker`` (0 to workers-1) pins
        it. ``name`` registers it for :meth:`lookup`. An exception raised by the
        constructor or ``on_start`` is raised here with its original type.

        If its process dies, the actor is restarted in a new one (``__init__``
        runs again with these arguments; the ref stays valid), per ``restart``:
        ``"permanent"`` (the default, as in OTP), ``"transient"`` or
        ``"temporary"``, at most ``max_restarts`` times within ``period`` seconds.

        In a cluster, ``node`` pins it to a node by name, and the actor stops when
        this driver leaves unless ``lifetime="detached"`` (as Ray's): a named
        detached actor serves other drivers after this one is gone.
        """
        self._check_open()
        policy = RestartPolicy(restart, max_restarts, period)
        spawn = self._requests.spawn(cls, args, kwargs, name, worker, policy, node, lifetime)
        return spawn.result()

    def spawn_group(
        self,
        children: Sequence[Child],
        *,
        strategy: str = "one_for_one",
        max_restarts: int = MAX_RESTARTS,
        period: float = PERIOD,
    ) -> list[ActorRef]:
        """Start ``children`` in order under one supervisor spec; return their refs.

        When a child crashes, ``strategy`` says what restarts: ``"one_for_one"``
        that child, ``"one_for_all"`` every child, ``"rest_for_one"`` it and those
        started after it; the others stop in reverse order and all start again
        in order. Past ``max_restarts`` within ``period`` seconds the group gives
        up: every child is stopped and calls to them raise ActorStoppedError.
        """
        self._check_open()
        return self._requests.spawn_group(children, strategy, max_restarts, period).result()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> ActorFuture[Any]:
        """Run ``fn(*args, **kwargs)`` in a worker; a future of its result.

        The least busy worker takes it. If that worker dies, the task is re-sent
        (at most 3 times, then it fails with ActorCrashedError): run at least
        once, its result seen once.
        """
        self._check_open()
        return self._tasks.submit(fn, args, kwargs)

    def map(
        self,
        fn: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        *,
        timeout: float | None = None,
        retries: int = DEFAULT_RETRIES,
        return_exceptions: bool = False,
        progress: bool | Callable[[int, int | None], None] = False,
    ) -> Iterator[Any]:
        """``fn`` over ``iterable`` in the workers; results lazily, in input order.

        The input is read lazily with a bounded number of chunks in flight, so an
        endless generator works; stopping early (break, close) stops the rest.
        ``chunksize=None`` picks about four chunks per worker (at most 100,000
        items each; 64 for an input without a length). ``timeout`` bounds the
        wait for each chunk; ``retries`` re-sends after a worker death;
        ``return_exceptions`` yields a raised exception in its item's place;
        ``progress`` is True for a bar on a terminal, or ``callback(done, total)``.
        """
        self._check_open()
        return self._tasks.map(
            fn,
            iterable,
            chunksize,
            timeout=timeout,
            retries=retries,
            return_exceptions=return_exceptions,
            progress=progress,
        )

    def imap_unordered(
        self,
        fn: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        *,
        timeout: float | None = None,
        retries: int = DEFAULT_RETRIES,
        return_exceptions: bool = False,
        progress: bool | Callable[[int, int | None], None] = False,
    ) -> Iterator[Any]:
        """As :meth:`map`, but results come as they complete."""
        self._check_open()
        return self._tasks.map(
            fn,
            iterable,
            chunksize,
            ordered=False,
            timeout=timeout,
            retries=retries,
            return_exceptions=return_exceptions,
            progress=progress,
        )

    def as_completed(
        self, futures: Iterable[ActorFuture[Any]], timeout: float | None = None
    ) -> Iterator[ActorFuture[Any]]:
        """Yield ``futures`` (from calls or tasks) as they complete."""
        self._check_open()
        return as_completed(self._io.wait_any, futures, timeout)

    def pipeline(
        self,
        source: Iterable[Any],
        *stages: Stage | Callable[[Any], Any],
        ordered: bool = True,
    ) -> Iterator[Any]:
        """Stream ``source`` through ``stages`` (functions, ``Stage``s, actor methods);
        iterate the result to drain it. Stages pull only when they have room, so a
        fast stage never floods a slow one; ``ordered`` keeps source order."""
        self._check_open()
        return run_pipeline(self._tasks, source, stages, ordered)

    def publish(self, topic: str, obj: Any) -> None:
        """Send ``obj`` to every subscriber of a prefix of ``topic``."""
        self._check_open()
        self._io.publish(check_topic(topic), obj)

    def subscribe(
        self,
        prefix: str,
        callback: Callable[[str, Any], None] | None = None,
        *,
        timeout: float = 10.0,
    ) -> Subscription:
        """Events whose topic starts with ``prefix``: iterate the subscription for
        ``(topic, obj)`` pairs, ``get(timeout=...)`` one, or pass ``callback(topic,
        obj)``. Every event published after this returns is delivered. The
        runtime's own events come on ``dovecote.worker.*`` and ``dovecote.actor.*``."""
        self._check_open()
        if not isinstance(prefix, str):
            raise ValueError(f"a prefix is a string, not {prefix!r}")
        return self._io.subscribe(prefix, callback, timeout)

    def watch(self, ref: ActorRef, callback: Callable[[ActorRef, str], None]) -> None:
        """Call ``callback(ref, reason)`` each time ``ref`` crashes and when it ends.

        The callback runs on the thread that delivers messages: keep it short.
        """
        self._check_open()
        self._requests.watch(ref, callback).result()

    def lookup(self, name: str) -> ActorRef:
        """The ref of the running actor registered as ``name``, or LookupError."""
        self._check_open()
        return self._requests.lookup(name).result()

    def stop(self, ref: ActorRef, timeout: float | None = None) -> None:
        """Stop ``ref`` after the messages already sent to it; runs its ``on_stop``."""
        self._check_open()
        ref.stop().result(timeout)

    def shutdown(self, timeout: float = 15.0) -> None:
        """Stop every actor and process. Idempotent; safe after a crash."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.shutdown)
        self._link.leave(self._transport, time.monotonic() + timeout, timeout)
        self._transport.fail_all("the actor system was shut down", crashed=False)
        _engine.remove(self.system_id)
        self._link.close(timeout)
        _observe.close(self._observing)
        self._io.close()
        self._ctx.term()

    def executor(self) -> DovecoteExecutor:
        """A ``concurrent.futures.Executor`` on this system's workers. Shutting it
        down leaves the system running."""
        return DovecoteExecutor(system=self)

    @functools.cached_property
    def aio(self) -> AsyncActorSystem:
        """This system for asyncio code: ``await system.aio.spawn(...)``,
        ``async for x in system.aio.map(...)``; the event loop is never blocked."""
        return AsyncActorSystem(self)

    def _check_open(self) -> None:
        if self._closed:
            raise ActorStoppedError(f"{self!r}: no call can be made after shutdown()")

    def __enter__(self) -> ActorSystem:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "shut down" if self._closed else "running"
        return f"<ActorSystem {self.system_id} workers={self.workers} {state}>"


def _start(self: ActorSystem, local: bool, wanted: int) -> None:
    """Wait for every worker to be up (a cluster: for one), then install the
    engine under the system's id; on any failure, leave nothing behind."""
    atexit.register(self.shutdown)
    try:
        self._observing = _observe.Observing(self)
        hello = self._transport.control.request(
            "start", identity, lambda req_id: wire.Hello(req_id, 0 if local else wanted)
        )
        self.system_id = hello.result(self.options.start_timeout)["system"]
        self._observing.started(self)
    except BaseException:
        self.shutdown()
        raise
    _engine.install(self.system_id, self._transport)
    workers = self.options.workers if local else None  # a cluster's vary
    self._requests = Requests(self._transport, self.system_id, workers, self._link.owner)
    self._tasks = Tasks(self._transport, self.system_id, self._slots, self._io.wait_any)


def _connect(
    ctx: Context, system_id: str, options: SystemOptions, address: str | None, keys: str | None
) -> tuple[Link, DriverIO]:
    """A supervisor of our own, or a cluster's head (``address``), and the sockets."""
    name = f"d{os.getpid()}-{system_id}".encode()
    keys = keys or os.environ.get("DOVECOTE_KEYS") or None
    link: Link = (
        LocalLink(system_id, options) if address is None else HeadLink(address, keys, ctx, name)
    )
    limits = (options.outbox_limit, options.send_timeout)
    return link, DriverIO(ctx, link.addresses, name, limits, (link.sentinel, link.lost))
