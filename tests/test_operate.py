"""Attaching from another terminal: the discovery file, ``dovecote status``,
``inspect``, ``logs`` and ``top`` (rendered into a recording console), the
metrics endpoint scraped and parsed, and the processes' titles."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from actors import ActorCrashedError
from runtime import ActorSystem, observe
from tests.helpers import wait_for_path
from tests.talkers import Talker
from tests.test_output import wait_for_entry


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private XDG_RUNTIME_DIR: the systems of this test, and no others, are found."""
    path = tmp_path / "xdg"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def system(runtime_dir: Path) -> Iterator[ActorSystem]:
    with ActorSystem(workers=2, heartbeat_timeout=0.6) as running:
        yield running


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime._cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_running_system_is_found_and_its_file_removed_at_shutdown(runtime_dir: Path) -> None:
    with ActorSystem(workers=1) as running:
        path = runtime_dir / "dovecote" / f"{running.system_id}.json"
        entry = observe.read_entry(str(path))  # written before the system was up
        assert entry["pid"] == running._link.proc.pid and entry["driver_pid"] == os.getpid()
        assert path.stat().st_mode & 0o777 == 0o600
    assert not path.exists()
    done = cli("status")
    assert done.returncode == 1
    assert "no running dovecote system found" in done.stderr


def test_status_prints_the_tables_and_json(system: ActorSystem) -> None:
    talker = system.spawn(Talker, name="talker", worker=1)
    pid = talker.pid().result(timeout=10)
    done = cli("status")
    assert done.returncode == 0, done.stderr
    assert f"system {system.system_id}" in done.stdout
    assert any(line.split()[:2] == ["w1", str(pid)] for line in done.stdout.splitlines())
    assert any(line.split()[1:3] == ["talker", "Talker"] for line in done.stdout.splitlines())
    as_json = cli("status", "--system", system.system_id, "--json")
    status = observe.status_from_json(json.loads(as_json.stdout))
    assert status.system_id == system.system_id
    assert status.actor("talker").worker == 1


def test_a_second_system_needs_to_be_named(system: ActorSystem) -> None:
    with ActorSystem(workers=1) as other:
        done = cli("inspect", "x")
        assert done.returncode == 1
        assert "2 systems are running" in done.stderr and other.system_id in done.stderr
        both = cli("status", "--json")
        assert sorted(s["system_id"] for s in json.loads(both.stdout)) == sorted(
            [system.system_id, other.system_id]
        )


def test_inspect_shows_a_busy_actor_with_its_stack(system: ActorSystem, tmp_path: Path) -> None:
    talker = system.spawn(Talker, name="holder")
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    held = talker.hold(started, release)
    wait_for_path(started)
    try:
        while "wait_for_path" not in (shown := cli("inspect", "holder").stdout):
            assert not held.done(), shown  # the stack comes with a heartbeat, a second in
            assert "stack (innermost last)" in shown
        assert "running  hold() for" in shown
        assert "in hold" in shown and "wait_for_path" in shown
    finally:
        Path(release).touch()
    assert held.result(timeout=10) == "held"
    idle = cli("inspect", "holder")
    assert "actor holder" in idle.stdout and "Talker" in idle.stdout
    missing = cli("inspect", "nobody")
    assert missing.returncode == 1 and "no actor named 'nobody'" in missing.stderr


def test_logs_by_worker_and_by_actor(system: ActorSystem) -> None:
    a = system.spawn(Talker, name="a", worker=0)
    b = system.spawn(Talker, name="b", worker=1)
    pid_a = a.say("from a").result(timeout=10)
    b.say("from b").result(timeout=10)
    b.log("app", 40, "b failed").result(timeout=10)
    wait_for_entry(observe.log_file(system._run_dir, 0), "from a")
    wait_for_entry(observe.log_file(system._run_dir, 1), "from b")
    assert f"(Talker name=a w0 pid={pid_a}) from a" in cli("logs", "--worker", "0").stdout
    only_b = cli("logs", "--actor", "b").stdout
    assert "from b" in only_b and "from a" not in only_b
    assert "ERROR app: b failed" in only_b  # a record, as the driver shows it
    assert cli("logs", "-n", "1", "--actor", "a").stdout.count("\n") == 1


def _recorded(status: dict[str, object]) -> str:
    console = Console(record=True, width=160, file=io.StringIO())
    console.print(observe.commands.render_top(status))
    return console.export_text()


def test_top_renders_workers_actors_and_events(system: ActorSystem) -> None:
    talker = system.spawn(Talker, name="talker", worker=0)
    pid = talker.pid().result(timeout=10)
    with pytest.raises(ActorCrashedError):
        talker.say_and_die("bye").result(timeout=10)
    talker.pid().result(timeout=20)
    raw = observe.commands.query_status(observe.commands.find_system(system.system_id))
    screen = _recorded(raw)
    assert f"system {system.system_id}" in screen and "crashes: signal 1" in screen
    assert "talker" in screen and "Talker" in screen and "running" in screen
    assert "actor.restarted" in screen and f"worker.exited slot=0 pid={pid}" in screen
    once = cli("top", "-n", "1")
    assert once.returncode == 0, once.stderr
    assert "talker" in once.stdout and "events" in once.stdout


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_the_metrics_endpoint_is_scraped_and_parsed(runtime_dir: Path) -> None:
    with ActorSystem(workers=2, metrics_port=0) as running:
        talker = running.spawn(Talker, name="t", worker=0)
        running.spawn(Talker, worker=1).pid().result(timeout=10)
        talker.pid().result(timeout=10)
        with pytest.raises(ActorCrashedError):
            talker.say_and_die("x").result(timeout=10)
        talker.pid().result(timeout=20)
        assert running._observing is not None
        samples = _scrape(running._observing.metrics.port)
    assert samples["dovecote_up"] == [({}, 1.0)]
    assert {labels["worker"] for labels, _ in samples["dovecote_worker_messages_total"]} == {
        "0",
        "1",
    }
    assert ({"cause": "signal"}, 1.0) in samples["dovecote_worker_crashes_total"]
    assert ({"actor": "t", "class": "Talker"}, 1.0) in samples["dovecote_actor_restarts_total"]
    assert ({"actor": "Talker", "class": "Talker"}, 1.0) in samples["dovecote_actors"]
    labels = {k for values in samples.values() for lbls, _ in values for k in lbls}
    assert labels <= {"worker", "actor", "class", "cause"}  # never an actor id
    assert "dovecote_worker_rss_bytes" in samples


# `python -m runtime._cli ARGS` as from a terminal, where Ctrl-C raises KeyboardInterrupt:
# a suite started in the background by a non-interactive shell has SIGINT ignored, its
# children inherit that, and Python then leaves it ignored (seen in a CI run).
_WITH_CTRL_C = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'dovecote'; runpy.run_module('runtime._cli', run_name='__main__')"
)


def test_the_metrics_command_serves_another_terminals_system(system: ActorSystem) -> None:
    system.spawn(Talker, name="t").pid().result(timeout=10)
    with subprocess.Popen(
        [sys.executable, "-c", _WITH_CTRL_C, "metrics", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # SIGABRT dumps its threads
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("serving http://127.0.0.1:"), line
            port = int(line.split(":")[2].split("/")[0])
            samples = _scrape(port)
            assert samples["dovecote_up"] == [({}, 1.0)]
            assert ({"actor": "t", "class": "Talker"}, 1.0) in samples["dovecote_actors"]
        finally:
            proc.send_signal(signal.SIGINT)
            _exits_or_dumps(proc)


def _exits_or_dumps(proc: subprocess.Popen[str]) -> None:
    """``proc`` exits 0 within 10 s; else its threads' stacks are the failure."""
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"it did not exit on SIGINT; its stacks:\n{err[-6000:]}")
    assert code == 0, proc.stderr.read() if proc.stderr else code


@pytest.mark.parametrize(
    ("listen", "public", "says"),
    [
        ("0.0.0.0:9464", False, "not loopback"),
        ("example.org:9464", False, "not loopback"),
        ("9464", False, "expected HOST:PORT"),
        ("127.0.0.1:99999", False, "expected HOST:PORT"),
    ],
)
def test_metrics_listen_on_loopback_unless_told(listen: str, public: bool, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        observe.check_listen(listen, public)
    assert observe.check_listen("0.0.0.0:9464", public=True) == ("0.0.0.0", 9464)
    assert observe.check_listen("[::1]:1") == ("::1", 1)


def test_processes_carry_readable_titles(system: ActorSystem) -> None:
    pid = system.spawn(Talker, worker=1).pid().result(timeout=10)
    worker = " ".join(psutil.Process(pid).cmdline())
    assert worker.startswith(f"dovecote worker 1 (system {system.system_id})")
    supervisor = " ".join(psutil.Process(system._link.proc.pid).cmdline())
    assert supervisor.startswith(f"dovecote supervisor (system {system.system_id})")
