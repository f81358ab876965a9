"""The operators' subcommands of ``dovecote``: ``status``, ``top``, ``inspect``,
``logs`` and ``metrics``. Each finds the system through its discovery file and
reads JSON only; ``rich`` is imported by ``top`` alone."""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import sys
import threading
import time
from typing import Any

from runtime.observe._discovery import DiscoveryError, list_systems
from runtime.observe._metrics import check_listen, serve_metrics
from runtime.observe._pipes import log_dir, log_file
from runtime.observe._query import QueryError, cluster_entry, find_system, query_status
from runtime.observe._tables import actor_text, entry_text, render_top, status_text

__all__ = ["find_system", "query_status", "register", "render_top", "run"]

FOLLOW_EVERY = 0.25  # seconds between looks at the log files with --follow


def register(sub: Any) -> None:
    """Add the subcommands to ``dovecote``'s subparsers; each sets ``handler``."""
    status = sub.add_parser("status", help="show the workers and actors of running systems")
    _system_option(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_status)
    top = sub.add_parser("top", help="status refreshed every second, with lifecycle events")
    _system_option(top)
    top.add_argument("-n", "--iterations", type=int, default=0, help="stop after N screens")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between screens")
    top.set_defaults(handler=_top)
    inspect = sub.add_parser("inspect", help="one actor, with its stack if it is busy")
    inspect.add_argument("name", help="the actor's registered name")
    _system_option(inspect)
    inspect.set_defaults(handler=_inspect)
    logs = sub.add_parser("logs", help="the workers' output and log records")
    _system_option(logs, cluster=False)  # a cluster's logs stay on its hosts
    logs.add_argument("-f", "--follow", action="store_true", help="print new lines as they come")
    logs.add_argument("-n", "--lines", type=int, default=20, help="how many to print first")
    which = logs.add_mutually_exclusive_group()
    which.add_argument("--worker", type=int, help="only this worker slot's")
    which.add_argument("--actor", help="only the lines of the actor with this name")
    logs.set_defaults(handler=_logs)
    metrics = sub.add_parser("metrics", help="serve Prometheus metrics of a running system")
    _system_option(metrics)
    metrics.add_argument("--listen", default="127.0.0.1:9464", help="HOST:PORT (loopback)")
    metrics.add_argument("--public", action="store_true", help="allow a non-loopback HOST")
    metrics.set_defaults(handler=_metrics)


def _system_option(parser: argparse.ArgumentParser, cluster: bool = True) -> None:
    parser.add_argument("--system", help="the system id (needed when several run)")
    if not cluster:
        return
    parser.add_argument(
        "--address",
        default=os.environ.get("DOVECOTE_ADDRESS") or None,
        help="a cluster's head, tcp://HOST:PORT (default: $DOVECOTE_ADDRESS)",
    )
    parser.add_argument("--keys", default=os.environ.get("DOVECOTE_KEYS") or None,
                        help="the cluster's keys (default: $DOVECOTE_KEYS)")  # fmt: skip


def _target(args: argparse.Namespace) -> dict[str, Any]:
    """The system asked: a cluster's head (``--address``), else one found here."""
    if args.address is not None:
        return cluster_entry(args.address, args.keys)
    return find_system(args.system)


def run(handler: Any, args: argparse.Namespace) -> int:
    """Run a subcommand; a failure is one line on stderr and status 1."""
    try:
        return int(handler(args))
    except (DiscoveryError, QueryError, LookupError, OSError, ImportError, ValueError) as exc:
        print(f"dovecote {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


# -- status, inspect, top ---------------------------------------------------------------
def _status(args: argparse.Namespace) -> int:
    if args.system is not None or args.address is not None:
        entries = [_target(args)]
    else:
        entries, refused = list_systems()
        for why in refused:
            print(f"dovecote status: refused {why}", file=sys.stderr)
        if not entries:
            raise DiscoveryError("no running dovecote system found")
    statuses = [query_status(entry) for entry in entries]
    if args.json:
        one = args.system is not None or args.address is not None
        print(json.dumps(statuses[0] if one else statuses, indent=2))
    else:
        print("\n\n".join(status_text(s, e) for s, e in zip(statuses, entries, strict=True)))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    print(actor_text(query_status(_target(args)), args.name))
    return 0


def _top(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:
        raise ImportError("top needs rich: pip install 'dovecote[cli]'") from None
    entry = _target(args)
    shown = 0
    with Live(console=Console(), auto_refresh=False, screen=False) as live:
        while True:
            live.update(render_top(query_status(entry)), refresh=True)
            shown += 1
            if args.iterations and shown >= args.iterations:
                return 0
            time.sleep(args.interval)


# -- logs ------------------------------------------------------------------------------
class _Tail:
    """New complete lines of a set of log files, from where it last read."""

    def __init__(self, paths: list[str]) -> None:
        self.offsets = dict.fromkeys(paths, 0)

    def read(self) -> list[dict[str, Any]]:
        entries = []
        for path, offset in self.offsets.items():
            with contextlib.suppress(FileNotFoundError), open(path, "rb") as file:
                file.seek(offset)
                data = file.read()
                end = data.rfind(b"\n") + 1  # a line being written waits for its end
                self.offsets[path] = offset + end
                for line in data[:end].splitlines():
                    with contextlib.suppress(ValueError):
                        entries.append(json.loads(line))
        return sorted(entries, key=lambda e: e.get("t", 0))


def _log_paths(entry: dict[str, Any], worker: int | None) -> list[str]:
    if worker is not None:
        return [log_file(entry["run_dir"], worker)]
    return sorted(glob.glob(os.path.join(log_dir(entry["run_dir"]), "worker-*.jsonl")))


def _mine(entry: dict[str, Any], actor: str | None) -> bool:
    tag = entry.get("a")
    return actor is None or (isinstance(tag, list) and len(tag) == 3 and tag[2] == actor)


def _logs(args: argparse.Namespace) -> int:
    system = find_system(args.system)
    query_status(system)  # it answers: its run directory is checked and its own
    tail = _Tail(_log_paths(system, args.worker))
    first = [e for e in tail.read() if _mine(e, args.actor)]
    for entry in first[-args.lines :] if args.lines > 0 else []:
        print(entry_text(entry), flush=True)
    stop = threading.Event()
    while args.follow and not stop.wait(FOLLOW_EVERY):
        if not os.path.isdir(system["run_dir"]):
            return 0  # the system has shut down
        for path in _log_paths(system, args.worker):
            tail.offsets.setdefault(path, 0)  # a worker slot that wrote its first line
        for entry in tail.read():
            if _mine(entry, args.actor):
                print(entry_text(entry), flush=True)
    return 0


# -- metrics ---------------------------------------------------------------------------
def _metrics(args: argparse.Namespace) -> int:
    host, port = check_listen(args.listen, args.public)
    entry = _target(args)
    server = serve_metrics(lambda: query_status(entry), host, port)
    print(f"serving http://{host}:{server.port}/metrics for system {entry['system_id']}")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    finally:
        server.close()
    return 0
