from __future__ import annotations

import subprocess
import sys
from importlib import metadata


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
