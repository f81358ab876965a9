"""The bench's own processes (raw servers, the spinner) die with the bench, even
when it is SIGKILLed and has no chance to stop them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import multiprocessing, sys, time
from bench import _raw
import zmq
ctx = zmq.Context()
server = _raw.RawServer(ctx, "pickle")
server.ping()
with _raw.a_core_busy():
    print(*(p.pid for p in multiprocessing.active_children()), flush=True)
    time.sleep(60)
"""


def test_the_bench_children_die_with_a_killed_bench() -> None:
    bench = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        line = bench.stdout.readline()  # type: ignore[union-attr]
        children = [psutil.Process(int(pid)) for pid in line.split()]
        assert len(children) == 2, line  # the raw server and the spinner
        assert all(child.is_running() for child in children)
    finally:
        os.kill(bench.pid, signal.SIGKILL)
        bench.wait(10)
        bench.stdout.close()  # type: ignore[union-attr]
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"outlived the bench: {alive}"
