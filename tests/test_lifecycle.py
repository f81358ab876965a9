"""Processes: started clean, never left behind, whatever happens to the driver."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from actors import ActorCrashedError, ActorStoppedError
from runtime import ActorSystem
from tests.helpers import Counter

ROOT = Path(__file__).resolve().parent.parent

# A driver program of its own: its classes and lambdas live in __main__.
DRIVER = textwrap.dedent(
    """
    import os, sys
    from actors import Actor
    from runtime import ActorSystem
    import localmod

    class Where(Actor):
        def pid(self):
            return os.getpid()
        def cwd(self):
            return os.getcwd()
        def apply(self, fn, x):
            return fn(x)
        def local(self):
            return localmod.ANSWER

    system = ActorSystem(workers=2)
    refs = [system.spawn(Where, worker=i) for i in range(2)]
    pids = [system._link.proc.pid] + [r.pid().result(timeout=10) for r in refs]
    print(" ".join(map(str, pids)), flush=True)
    print(refs[0].cwd().result(timeout=10), flush=True)
    print(refs[1].apply(lambda x: x * 2, 21).result(timeout=10), flush=True)
    print(refs[0].local().result(timeout=10), flush=True)
    if sys.argv[1] == "wait":
        sys.stdin.read()  # until the test kills us
    """
)


def _gone(pids: list[int], timeout: float) -> list[psutil.Process]:
    """Wait until none of ``pids`` runs (zombies count as gone); return the rest."""
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    deadline = time.monotonic() + timeout
    while True:  # polled: psutil.wait_procs waits out its timeout on another's zombie
        alive = [p for p in procs if _running(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _start_driver(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], list[int]]:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    (tmp_path / "localmod.py").write_text("ANSWER = 'found next to the script'\n")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), mode],
        cwd=workdir,
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 3, "the driver did not start"
    assert proc.stdout.readline().strip() == str(workdir)  # workers share the cwd
    assert proc.stdout.readline().strip() == "42"  # a lambda from __main__
    assert proc.stdout.readline().strip() == "found next to the script"  # and sys.path
    return proc, pids


def test_driver_exit_without_shutdown_leaves_nothing(tmp_path: Path) -> None:
    proc, pids = _start_driver(tmp_path, "exit")
    with proc:
        assert proc.wait(timeout=30) == 0  # atexit shut the system down
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    assert _gone(pids, timeout=5) == []


def test_sigkilled_driver_leaves_no_orphans(tmp_path: Path) -> None:
    proc, pids = _start_driver(tmp_path, "wait")
    with proc:
        proc.kill()
        proc.wait(timeout=10)
        assert _gone(pids, timeout=5) == []  # the supervisor and workers noticed
        assert proc.stderr is not None
        errors = proc.stderr.read()  # EOF: every process holding the pipe has exited
    assert "Traceback" not in errors, errors


def test_exception_in_with_block_shuts_everything_down() -> None:
    with pytest.raises(ZeroDivisionError), ActorSystem(workers=2) as system:
        system.spawn(Counter).add(1).result(timeout=5)
        children = psutil.Process().children(recursive=True)
        assert len(children) == 3
        run_dir = system._run_dir
        1 / 0  # noqa: B018
    assert not psutil.Process().children(recursive=True)
    assert not os.path.exists(run_dir)


def test_shutdown_is_idempotent_and_run_dir_is_private() -> None:
    system = ActorSystem(workers=1)
    assert os.stat(system._run_dir).st_mode & 0o777 == 0o700
    system.shutdown()
    system.shutdown()
    assert "shut down" in repr(system)


def test_shutdown_is_bounded_when_a_worker_is_stuck(tmp_path: Path) -> None:
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)
    system = ActorSystem(workers=1)
    stuck = system.spawn(Counter).block_on(str(fifo))
    system.shutdown(timeout=4)  # the worker is SIGTERMed once its grace is over
    with pytest.raises(ActorStoppedError, match="shut down"):
        stuck.result(timeout=5)


def test_workers_exit_when_the_supervisor_is_killed() -> None:
    with ActorSystem(workers=2) as system:
        counter = system.spawn(Counter)
        counter.add(1).result(timeout=5)
        supervisor = psutil.Process(system._link.proc.pid)
        workers = supervisor.children()
        assert len(workers) == 2
        supervisor.kill()
        assert _gone([w.pid for w in workers], timeout=5) == []
        with pytest.raises((ActorCrashedError, ActorStoppedError), match="supervisor"):
            counter.add(1).result(timeout=5)


def test_sigkilled_worker_is_named_in_the_error(system: ActorSystem) -> None:
    victim = system.spawn(Counter, worker=0)
    pid = victim.pid().result(timeout=5)
    pending = [victim.add(1) for _ in range(3)]
    [f.result(timeout=5) for f in pending]
    os.kill(pid, signal.SIGSTOP)  # hold it still so the next call is surely pending
    call = victim.add(1)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ActorCrashedError, match="SIGKILL") as info:
        call.result(timeout=10)
    assert f"pid {pid}" in info.value.cause


def test_system_starts_and_answers_quickly() -> None:
    # Not a timing test: a generous bound that only catches a start that hangs.
    with ActorSystem(workers=2, start_timeout=30) as system:
        assert system.spawn(Counter).add(1).result(timeout=10) == 1
