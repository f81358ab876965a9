"""A cluster on this machine for tests: a head and nodes as processes on 127.0.0.1,
with CURVE keys. Each node plays a host of its own (``DOVECOTE_HOST_ID``), so
calls between them take the tcp:// path, as across machines."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from runtime import net

START_TIMEOUT = 30.0


def free_ports(count: int) -> int:
    """A base port with ``count`` free ports from it (each checked by binding it)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count < 65000 and all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no run of free ports")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``condition`` (a process state, a file) until true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Cluster:
    """A head and its nodes; ``close`` leaves no process behind."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys = str(net.new_keys(root / "keys"))
        self.port = free_ports(3)
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.head: subprocess.Popen[bytes] | None = None
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}

    def command(self, *args: str, host: str, log: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "DOVECOTE_HOST_ID": host}
        out = open(self.root / f"{log}.log", "ab")  # noqa: SIM115 (the child owns it)
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "runtime._cli", *args],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        finally:
            out.close()

    def start_head(self, *extra: str) -> subprocess.Popen[bytes]:
        listen = f"127.0.0.1:{self.port}"
        self.head = self.command("head", "--listen", listen, "--keys", self.keys, *extra,
                                 host="head", log="head")  # fmt: skip
        return self.head

    def start_node(self, name: str, workers: int = 1, *extra: str) -> subprocess.Popen[bytes]:
        join = extra if extra else ("--join", self.address)
        base = str(free_ports(workers + 2))
        self.nodes[name] = proc = self.command(
            "node", *join, "--keys", self.keys, "--workers", str(workers), "--name", name,
            "--port-base", base, "--join-timeout", str(START_TIMEOUT), host=name, log=name,
        )  # fmt: skip
        return proc

    def kill_node(self, name: str) -> None:
        """SIGKILL a node and its workers at once: a host gone."""
        proc = self.nodes[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def close(self) -> None:
        procs = [p for p in (self.head, *self.nodes.values()) if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            _kill_group(proc.pid)
            proc.wait()


def _kill_group(pgid: int) -> None:
    """Whatever is left of a process group (a node's workers): SIGKILL, then reap."""
    left = [p for p in psutil.process_iter() if _group(p) == pgid]
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(left, timeout=5)


def _group(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None
