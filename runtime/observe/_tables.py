"""A status reply as text: plain tables for ``dovecote status`` and ``inspect``,
and ``rich`` renderables for ``dovecote top`` (rich is imported only there)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from runtime.observe._lines import prefix

__all__ = ["actor_text", "entry_text", "render_top", "status_text"]

WORKER_COLUMNS = ("WORKER", "PID", "EPOCH", "RSS", "CPU%", "MESSAGES", "TASKS", "MAILBOX", "NOW")
ACTOR_COLUMNS = ("ID", "NAME", "CLASS", "WORKER", "STATE", "RESTART", "RESTARTS", "MAILBOX")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n //= 1024
    return f"{n:.1f} GiB"


def _running(worker: dict[str, Any], names: dict[int, str]) -> str:
    method = worker.get("method")
    if not method:
        return "idle"
    who = names.get(worker.get("actor_id") or 0, "")
    return f"{who + '.' if who else ''}{method} {worker['running_for']:.1f}s"


def _names(status: dict[str, Any]) -> dict[int, str]:
    return {a["actor_id"]: a["name"] or a["cls"] for a in status["actors"]}


def worker_rows(status: dict[str, Any]) -> list[list[str]]:
    names = _names(status)
    rows = []
    for w in sorted(status["workers"], key=lambda w: w["slot"]):
        rows.append(
            [
                f"w{w['slot']}",
                str(w["pid"]),
                str(w["epoch"]),
                _size(w["rss"]),
                f"{w['cpu_percent']:.0f}",
                str(w["messages"]),
                str(w["tasks"]),
                str(w["mailbox"]),
                _running(w, names),
            ]
        )
    return rows


def actor_rows(status: dict[str, Any]) -> list[list[str]]:
    return [
        [
            str(a["actor_id"]),
            a["name"] or "-",
            a["cls"],
            f"w{a['worker']}",
            a["state"],
            a["restart"],
            str(a["restarts"]),
            str(a["mailbox"]),
        ]
        for a in sorted(status["actors"], key=lambda a: a["actor_id"])
    ]


def _table(columns: Sequence[str], rows: list[list[str]]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = [columns, *rows]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines
    )


def header(status: dict[str, Any], entry: dict[str, Any] | None = None) -> str:
    text = (
        f"system {status['system_id']}  supervisor pid {status['pid']}  up {status['uptime']:.0f}s"
    )
    if entry is not None:
        text += f"  driver pid {entry.get('driver_pid')}: {entry.get('driver', '?')}"
    crashes = status.get("crashes") or {}
    if crashes:
        text += "\ncrashes: " + ", ".join(f"{k} {v}" for k, v in sorted(crashes.items()))
    return text


def status_text(status: dict[str, Any], entry: dict[str, Any] | None = None) -> str:
    """``dovecote status``: the header, the workers, the actors."""
    actors = actor_rows(status)
    return "\n\n".join(
        [
            header(status, entry),
            _table(WORKER_COLUMNS, worker_rows(status)),
            _table(ACTOR_COLUMNS, actors) if actors else "no actors",
        ]
    )


def actor_text(status: dict[str, Any], name: str) -> str:
    """``dovecote inspect NAME``: one actor, and its stack if its worker runs it now."""
    actor = next((a for a in status["actors"] if a["name"] == name), None)
    if actor is None:
        raise LookupError(f"no actor named {name!r} in system {status['system_id']}")
    worker = next((w for w in status["workers"] if w["slot"] == actor["worker"]), None)
    lines = [
        f"actor {name} (#{actor['actor_id']}, {actor['cls']})",
        f"  worker   w{actor['worker']} pid {worker['pid'] if worker else '?'}",
        f"  state    {actor['state']}, restart {actor['restart']}, restarts {actor['restarts']}",
        f"  mailbox  {actor['mailbox']} waiting",
    ]
    if worker is not None and worker.get("actor_id") == actor["actor_id"]:
        lines.append(f"  running  {worker['method']}() for {worker['running_for']:.1f}s")
        stack = worker.get("stack") or "  (its stack is sent once it has run a second)\n"
        lines.append("  stack (innermost last):\n" + stack.rstrip())
    else:
        lines.append("  running  nothing now")
    return "\n".join(lines)


def entry_text(entry: dict[str, Any]) -> str:
    """One log file entry as the driver prints it."""
    record = entry.get("rec")
    if isinstance(record, dict):
        text = f"{record.get('levelname', '?')} {record.get('name', '?')}: {record.get('msg', '')}"
        if record.get("exc_text"):
            text += "\n" + str(record["exc_text"])
    else:
        text = str(entry.get("text", ""))
    return f"{prefix(entry)} {text}"


def _event_text(event: dict[str, Any]) -> str:
    fields = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("t", "topic"))
    clock = time.strftime("%H:%M:%S", time.localtime(event.get("t", 0)))
    return f"{clock} {str(event.get('topic', '')).removeprefix('dovecote.')} {fields}"


def render_top(status: dict[str, Any], events: int = 10) -> Any:
    """``dovecote top``'s screen: the header, the two tables, the latest events."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    workers = Table(*WORKER_COLUMNS, title="workers", title_justify="left", expand=True)
    for row in worker_rows(status):
        workers.add_row(*row)
    actors = Table(*ACTOR_COLUMNS, title="actors", title_justify="left", expand=True)
    for row in actor_rows(status):
        actors.add_row(*row)
    latest = [_event_text(e) for e in status.get("events", [])[-events:]]
    return Group(
        Text(header(status), style="bold"),
        workers,
        actors,
        Text("events", style="bold"),
        Text("\n".join(latest) or "none yet"),
    )
