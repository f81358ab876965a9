"""Worker output reaches the driver: prefixed, never glued, folded, kept through a
SIGKILL, coloured only on a terminal; worker logging arrives as real records.

A system's shutdown waits for the supervisor's last lines, so what a test reads
from its captured output after the ``with`` block is complete."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors import ActorCrashedError
from runtime import ActorSystem, observe
from tests.talkers import Talker, shout
from tests.terminal import run_on_a_terminal

ROOT = Path(__file__).resolve().parent.parent


def _lines(text: str) -> list[str]:
    return text.splitlines()


def test_an_actors_print_reaches_the_driver_with_its_prefix(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with ActorSystem(workers=1) as system:
        talker = system.spawn(Talker, name="talker")
        pid = talker.say("hello").result(timeout=10)
        talker.say_err("oops").result(timeout=10)
        talker.say_raw("from C").result(timeout=10)
    out, err = capfd.readouterr()
    assert f"(Talker name=talker w0 pid={pid}) hello" in _lines(out)
    assert f"(Talker name=talker w0 pid={pid}) from C" in _lines(out)
    assert f"(Talker name=talker w0 pid={pid}) oops" in _lines(err)
    assert "\x1b[" not in out + err  # not a terminal: no colour


def test_async_methods_and_tasks_are_named_in_the_prefix(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with ActorSystem(workers=1) as system:
        talker = system.spawn(Talker)  # no name: the class alone
        pid = talker.pid().result(timeout=10)
        talker.say_later("after an await").result(timeout=10)
        system.submit(shout, "from a task").result(timeout=10)
    out = _lines(capfd.readouterr().out)
    assert f"(Talker w0 pid={pid}) after an await" in out
    assert f"(task w0 pid={pid}) from a task" in out


def test_lines_of_two_workers_are_never_glued(capfd: pytest.CaptureFixture[str]) -> None:
    with ActorSystem(workers=2) as system:
        a = system.spawn(Talker, name="a", worker=0)
        b = system.spawn(Talker, name="b", worker=1)
        pids = [a.pid().result(timeout=10), b.pid().result(timeout=10)]
        calls = [ref.say(f"{ref.name}-{i}") for i in range(300) for ref in (a, b)]
        for call in calls:
            call.result(timeout=30)
    out = set(_lines(capfd.readouterr().out))
    for slot, (name, pid) in enumerate(zip("ab", pids, strict=True)):
        missing = [
            i for i in range(300) if f"(Talker name={name} w{slot} pid={pid}) {name}-{i}" not in out
        ]
        assert not missing, f"lines of {name} missing or glued: {missing[:5]}"


def test_repeats_are_folded(capfd: pytest.CaptureFixture[str]) -> None:
    with ActorSystem(workers=1) as system:
        pid = system.spawn(Talker, name="t").say("same", 12).result(timeout=10)
    out = _lines(capfd.readouterr().out)
    assert out.count(f"(Talker name=t w0 pid={pid}) same") == 1
    assert f"(Talker name=t w0 pid={pid}) same [repeated 11x]" in out


def test_folding_can_be_turned_off(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOVECOTE_FOLD_REPEATS", "0")
    with ActorSystem(workers=1) as system:
        pid = system.spawn(Talker, name="t").say("same", 12).result(timeout=10)
    assert _lines(capfd.readouterr().out).count(f"(Talker name=t w0 pid={pid}) same") == 12


def test_a_line_printed_just_before_a_sigkill_is_kept(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # the workers' streams are pipes
    with ActorSystem(workers=1) as system:
        talker = system.spawn(Talker, name="t")
        pid = talker.pid().result(timeout=10)
        with pytest.raises(ActorCrashedError, match="SIGKILL"):
            talker.say_and_die("last words").result(timeout=10)
        assert talker.pid().result(timeout=20) != pid  # restarted in a new worker
    assert f"(Talker name=t w0 pid={pid}) last words" in _lines(capfd.readouterr().out)


def wait_for_entry(path: str, text: str, timeout: float = 20.0) -> dict[str, object]:
    """The entry of ``text`` in a worker's log file, once the supervisor has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as file:
                for line in file:
                    entry = json.loads(line)
                    if entry.get("text") == text:
                        return entry  # type: ignore[no-any-return]
        time.sleep(0.005)
    raise TimeoutError(f"{text!r} did not reach {path} within {timeout} s")


def test_output_is_kept_in_the_workers_log_file_even_when_not_forwarded(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with ActorSystem(workers=1, log_to_driver=False) as system:
        talker = system.spawn(Talker, name="t")
        pid = talker.say("to the file only").result(timeout=10)
        line = wait_for_entry(observe.log_file(system._run_dir, 0), "to the file only")
    assert line["a"] == [talker.actor_id, "Talker", "t"]
    assert (line["w"], line["pid"], line["s"]) == (0, pid, "out")
    assert "to the file only" not in capfd.readouterr().out


def test_worker_logging_arrives_as_records(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # before the system starts: its workers log at INFO
    with ActorSystem(workers=1) as system:
        talker = system.spawn(Talker, name="t")
        pid = talker.pid().result(timeout=10)
        talker.log("app.sub", logging.INFO, "hello").result(timeout=10)
        talker.log_error("it broke").result(timeout=10)
    hello = next(r for r in caplog.records if r.getMessage() == "hello")
    assert (hello.name, hello.levelno, hello.funcName) == ("app.sub", logging.INFO, "log")
    assert hello.process == pid and hello.worker_pid == pid  # type: ignore[attr-defined]
    assert (hello.actor_name, hello.actor_class, hello.worker) == ("t", "Talker", 0)  # type: ignore[attr-defined]
    assert hello.actor_id == talker.actor_id  # type: ignore[attr-defined]
    assert hello.order == 7  # type: ignore[attr-defined]  # the caller's extra field
    broke = next(r for r in caplog.records if r.getMessage() == "it broke")
    assert broke.levelno == logging.ERROR
    assert "KeyError: 'inner'" in logging.Formatter().format(broke)  # the traceback, as text


def test_worker_loggers_honour_the_drivers_levels(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    caplog.set_level(logging.DEBUG, logger="app.db")
    with ActorSystem(workers=1) as system:
        talker = system.spawn(Talker, name="t")
        assert talker.level_of("app").result(timeout=10) == logging.WARNING
        assert talker.level_of("app.db").result(timeout=10) == logging.DEBUG
        talker.log("app", logging.INFO, "below the level").result(timeout=10)
        talker.log("app.db", logging.DEBUG, "db detail").result(timeout=10)
    messages = [r.getMessage() for r in caplog.records]
    assert "db detail" in messages
    assert "below the level" not in messages


_SCRIPT = """
import logging, sys
from actors import Actor
from runtime import ActorSystem

class T(Actor):
    def say(self, text):
        print(text)
    def warn(self, text):
        logging.getLogger("app").warning(text)

with ActorSystem(workers=1) as system:
    t = system.spawn(T, name="t")
    t.say("coloured?").result(timeout=10)
    t.warn("careful").result(timeout=10)
"""


def _environment(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "PYTHONUNBUFFERED")}
    env.update({k: v for k, v in changes.items() if v is not None})
    return env


def test_on_a_terminal_the_prefix_is_coloured(tmp_path: Path) -> None:
    shown = run_on_a_terminal(_SCRIPT, _environment(), time.monotonic() + 40)
    assert "\x1b[36m(T name=t w0 pid=" in shown
    assert "coloured?" in shown
    assert "careful" in shown  # no handler in the driver: printed as Python's last resort would


def test_no_color_turns_the_colour_off(tmp_path: Path) -> None:
    shown = run_on_a_terminal(_SCRIPT, _environment(NO_COLOR="1"), time.monotonic() + 40)
    assert "(T name=t w0 pid=" in shown and "coloured?" in shown
    assert "\x1b[" not in shown


def test_a_warning_without_a_driver_handler_is_printed_with_its_prefix() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        timeout=40,
        env=_environment(),
    )
    assert done.returncode == 0, done.stderr
    assert "(T name=t w0 pid=" in done.stdout and "coloured?" in done.stdout
    assert any(line.endswith(") careful") for line in done.stderr.splitlines()), done.stderr
