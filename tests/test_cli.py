from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "runtime._cli", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert out.strip() == f"dovecote {metadata.version('dovecote')}"


def test_demo_runs_and_leaves_nothing_behind() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "runtime._cli", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "counter.add(5) -> 15" in out
    assert "lookup('counter').add(0) -> 10015" in out


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime._cli", *args], capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"], []])
def test_help_is_plain_text(args: list[str]) -> None:
    done = _cli(*args)
    assert done.returncode == 0, done.stderr
    assert "usage: dovecote" in done.stdout
    assert "`" not in done.stdout  # no reStructuredText markup in what a terminal shows
    if not args or args == ["--help"]:
        assert "multiprocess actor runtime" in done.stdout


@pytest.mark.parametrize(
    ("value", "says"),
    [("0", "at least 1"), ("-1", "at least 1"), ("two", "positive integer")],
)
def test_demo_rejects_a_worker_count_below_one_as_a_usage_error(value: str, says: str) -> None:
    done = _cli("demo", "--workers", value)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "usage: dovecote demo" in done.stderr
    assert "dovecote demo: error: argument --workers: " in done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr
