"""The ``dovecote`` command: ``--version``, ``demo``, a cluster's ``head``, ``node``
and ``keys``, and the operators' commands (``status``, ``top``, ``inspect``,
``logs``, ``metrics``: ``runtime.observe``)."""

from __future__ import annotations

import argparse
import sys
import time
from importlib import metadata

from actors import Actor
from runtime import _cluster
from runtime.driver import ActorSystem
from runtime.observe import commands

__all__ = ["main"]

DESCRIPTION = "dovecote, a multiprocess actor runtime for Python with ZeroMQ sockets as mailboxes."


class _Counter(Actor):
    def __init__(self, start: int = 0) -> None:
        self.value = start

    def add(self, n: int = 1) -> int:
        self.value += n
        return self.value


def _demo(workers: int) -> None:
    started = time.perf_counter()
    with ActorSystem(workers=workers) as system:
        counter = system.spawn(_Counter, 10, name="counter")
        print(f"up with {workers} workers in {time.perf_counter() - started:.3f} s")
        print("counter.add(5) ->", counter.add(5).result(timeout=5))
        futures = [counter.add(1) for _ in range(10_000)]
        print("10,000 pipelined asks, last ->", futures[-1].result(timeout=30))
        print("lookup('counter').add(0) ->", system.lookup("counter").add(0).result())


def _positive_int(text: str) -> int:
    """An argparse type: a bad value is a usage error (status 2), not a traceback."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``dovecote`` command line: every subcommand and its options."""
    parser = argparse.ArgumentParser(prog="dovecote", description=DESCRIPTION)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="start a system, talk to an actor, shut down")
    demo.add_argument(
        "--workers", type=_positive_int, default=2, help="worker processes to start (default: 2)"
    )
    _cluster.add_commands(sub, _positive_int)
    commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is not None:
        raise SystemExit(commands.run(args.handler, args))
    if args.version:
        print(f"dovecote {metadata.version('dovecote')}")
    elif args.command == "demo":
        _demo(args.workers)
    elif args.command in _cluster.COMMANDS:
        sys.exit(_cluster.run(parser, args))
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
