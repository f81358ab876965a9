"""The parts of ``runtime.observe`` that need no process: the marker protocol and
the line splitter, folding with the clock passed in, the tagged stream, log
records through JSON, discovery files' checks, and the status record."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from pathlib import Path

import pytest

from runtime import observe
from runtime.core import SystemOptions
from runtime.observe import Folder, Line, StreamSplitter

BASE = {"w": 1, "pid": 4711}


def _texts(entries: list[dict[str, object]]) -> list[object]:
    return [e.get("text") for e in entries]


def test_the_splitter_keeps_a_partial_line_for_later() -> None:
    split = StreamSplitter("out", BASE)
    assert _texts(split.feed(b"one\ntw", 1.0)) == ["one"]
    assert _texts(split.feed(b"o\nthree", 2.0)) == ["two"]
    assert _texts(split.end(3.0)) == ["three"]  # the last words, without their newline
    assert split.end(4.0) == []


def test_tags_name_the_writer_of_the_lines_that_follow() -> None:
    split = StreamSplitter("err", BASE)
    data = (
        "before\n" + observe.tag_line([3, "Counter", "c"]) + "inside\n" + observe.tag_line(None)
    ).encode() + b"after\n"
    entries = split.feed(data, 1.0)
    assert [(e["a"], e["text"]) for e in entries] == [
        (None, "before"),
        ([3, "Counter", "c"], "inside"),
        (None, "after"),
    ]
    assert all(e["s"] == "err" and e["w"] == 1 and e["pid"] == 4711 for e in entries)
    assert observe.prefix(entries[1]) == "(Counter name=c w1 pid=4711)"
    assert observe.prefix(entries[0]) == "(w1 pid=4711)"


def test_a_marker_after_a_partial_line_splits_it() -> None:
    split = StreamSplitter("out", BASE)
    record = observe.log_line({"msg": "m", "dovecote_actor": [2, "A", None]})
    entries = split.feed(b"no newline" + record + b"next\n", 1.0)
    assert entries[0]["text"] == "no newline"
    assert entries[1]["s"] == "log" and entries[1]["rec"] == {"msg": "m"}
    assert entries[1]["a"] == [2, "A", None]  # the record's own tag
    assert entries[2]["text"] == "next"


def test_a_broken_marker_is_not_fatal() -> None:
    split = StreamSplitter("out", BASE)
    entries = split.feed(observe.MARK + b"log {not json\n" + observe.MARK + b"tag [1]\nok\n", 1.0)
    assert _texts(entries) == ["ok"]
    assert entries[0]["a"] is None


def test_an_endless_line_is_cut() -> None:
    split = StreamSplitter("out", BASE)
    entries = split.feed(b"x" * (observe._lines.MAX_LINE + 10), 1.0)
    assert len(entries) == 1 and len(str(entries[0]["text"])) == observe._lines.MAX_LINE + 10
    assert split.partial == b""


def test_undecodable_bytes_are_replaced() -> None:
    assert _texts(StreamSplitter("out", BASE).feed(b"caf\xe9\r\n", 1.0)) == ["caf\ufffd"]


def _line(text: str, stream: str = "out", who: str = "(A w0 pid=1)") -> Line:
    return Line(stream, 0, who, text)


def test_the_folder_counts_repeats_within_its_window() -> None:
    folder = Folder(5.0)
    assert folder.feed(_line("same"), 0.0) == [_line("same")]
    for t in range(1, 4):
        assert folder.feed(_line("same", who=f"(B w{t} pid=2)"), float(t)) == []
    assert folder.feed(_line("other"), 4.0) == [_line("other")]
    assert folder.feed(_line("same", "err"), 4.5) == [_line("same", "err")]  # another stream
    assert folder.next_due() == 5.0
    assert folder.due(4.9) == []
    assert folder.due(5.0) == [_line("same [repeated 3x]")]  # the first writer's prefix
    assert folder.feed(_line("same"), 6.0) == [_line("same")]  # a new window
    assert folder.flush() == []  # no repeat is pending


def test_a_folder_with_no_window_folds_nothing() -> None:
    folder = Folder(0.0)
    assert folder.feed(_line("x"), 0.0) == [_line("x")]
    assert folder.feed(_line("x"), 0.0) == [_line("x")]
    assert folder.next_due() is None


def test_the_folder_remembers_a_bounded_number_of_texts() -> None:
    folder = Folder(5.0)
    folder.MAX_KEYS = 2
    folder.feed(_line("a"), 0.0)
    folder.feed(_line("a"), 0.1)
    folder.feed(_line("b"), 0.2)
    out = folder.feed(_line("c"), 0.3)  # "a" is let go, with its count
    assert out == [_line("a [repeated 1x]"), _line("c")]


def test_the_tagged_stream_writes_a_tag_only_when_the_writer_changes() -> None:
    inner = io.StringIO()
    writer: list[list[object] | None] = [None]
    stream = observe.TaggedStream(inner, lambda: writer[0])  # type: ignore[arg-type]
    print("a", file=stream)
    writer[0] = [1, "A", None]
    print("b", file=stream)
    print("c", file=stream)
    writer[0] = None
    print("d", file=stream)
    entries = StreamSplitter("out", BASE).feed(inner.getvalue().encode(), 0.0)
    assert [(e["a"], e["text"]) for e in entries] == [
        (None, "a"),
        ([1, "A", None], "b"),
        ([1, "A", None], "c"),
        (None, "d"),
    ]
    assert inner.getvalue().count("\x1edovecote:tag") == 2


def test_a_record_survives_json_with_its_traceback_and_extras() -> None:
    logger = logging.getLogger("app.unit")
    try:
        raise ValueError("bad")
    except ValueError:
        record = logger.makeRecord(
            "app.unit", logging.ERROR, "f.py", 9, "x=%d", (3,), sys.exc_info(), "fn", {"k": {1}}
        )
    data = observe.record_dict(record, logging.Formatter())
    wire_form = json.loads(observe.log_line(data)[len(observe.MARK) + 4 :])
    entry = {"w": 2, "pid": 99, "a": [5, "Counter", None], "rec": wire_form}
    rebuilt = observe.rebuild_record(entry)
    assert rebuilt.getMessage() == "x=3"
    assert (rebuilt.levelno, rebuilt.lineno, rebuilt.funcName) == (logging.ERROR, 9, "fn")
    assert rebuilt.k == "{1}"  # type: ignore[attr-defined]  # what JSON cannot hold: its repr
    assert "ValueError: bad" in logging.Formatter().format(rebuilt)
    assert (rebuilt.actor_id, rebuilt.actor_class, rebuilt.worker) == (5, "Counter", 2)  # type: ignore[attr-defined]
    assert rebuilt.dovecote == "(Counter w2 pid=99)"  # type: ignore[attr-defined]


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert observe.use_colour(Tty())
    assert not observe.use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not observe.use_colour(Tty())
    assert observe.colour("(p)", 1) == "\x1b[32m(p)\x1b[0m"


@pytest.mark.parametrize(("raw", "window"), [(None, 5.0), ("0", 0.0), ("2.5", 2.5), ("x", 5.0)])
def test_the_fold_window_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str | None, window: float
) -> None:
    if raw is None:
        monkeypatch.delenv("DOVECOTE_FOLD_REPEATS", raising=False)
    else:
        monkeypatch.setenv("DOVECOTE_FOLD_REPEATS", raw)
    assert observe.fold_window() == window


@pytest.mark.parametrize(
    "fields",
    [{"log_to_driver": "yes"}, {"log_levels": {"app": "INFO"}}, {"log_levels": [("app", 10)]}],
)
def test_bad_observe_options_are_refused(fields: dict[str, object]) -> None:
    name = next(iter(fields))
    with pytest.raises(ValueError, match=name):
        SystemOptions(2, **fields).check()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cause", "kind"),
    [
        ("worker 1 (pid 7) killed by signal SIGKILL", "signal"),
        ("worker 1 (pid 7) exited with code 3", "exit"),
        ("worker 1 (pid 7) lost its heartbeat (none for 3.2 s)", "heartbeat"),
        ("worker 0 (pid 7) was recycled: memory limit: resident 9 bytes", "memory"),
        ("worker 0 (pid 7) was recycled: message limit: 5 messages handled", "messages"),
        ("worker 0 (pid 7) vanished", "other"),
    ],
)
def test_crashes_are_counted_by_kind(cause: str, kind: str) -> None:
    assert observe.crash_kind(cause) == kind


def test_a_status_reply_without_its_fields_is_refused() -> None:
    with pytest.raises(ValueError, match="not a status reply"):
        observe.status_from_json({"system_id": "x"})
    with pytest.raises(ValueError, match="WorkerStatus"):
        observe.status_from_json(
            {
                "system_id": "x",
                "pid": 1,
                "uptime": 0.0,
                "workers": [{"slot": 0}],
                "actors": [],
                "crashes": {},
                "events": [],
            }
        )


# -- discovery files -----------------------------------------------------------------
@pytest.fixture
def discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    runtime_dir = tmp_path / "run"
    runtime_dir.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir))
    return runtime_dir / "dovecote"


def _entry(system_id: str = "abcd1234", pid: int | None = None) -> dict[str, object]:
    import psutil

    me = psutil.Process(pid or os.getpid())
    return {
        "system_id": system_id,
        "pid": me.pid,
        "created": me.create_time(),
        "driver_pid": os.getppid(),
        "run_dir": "/nowhere",
        "control": "ipc:///nowhere/sup",
    }


def test_a_discovery_file_is_private_and_found(discovery: Path) -> None:
    path = Path(observe.write_entry(_entry()))
    assert path.parent == discovery
    assert discovery.stat().st_mode & 0o777 == 0o700
    assert path.stat().st_mode & 0o777 == 0o600
    entries, refused = observe.list_systems()
    assert [e["system_id"] for e in entries] == ["abcd1234"] and refused == []
    observe.remove_entry("abcd1234")
    assert observe.list_systems() == ([], [])


def test_stale_discovery_files_are_pruned(discovery: Path) -> None:
    stale = _entry("deadbeef")
    stale["created"] = 12.0  # the pid is alive but is another process now
    observe.write_entry(stale)
    observe.write_entry(_entry("abcd1234"))  # writing prunes
    assert sorted(p.name for p in discovery.iterdir()) == ["abcd1234.json"]


def test_a_discovery_directory_open_to_others_is_refused(discovery: Path) -> None:
    discovery.mkdir(mode=0o755)
    discovery.chmod(0o755)
    with pytest.raises(observe.DiscoveryError, match="open to others"):
        observe.write_entry(_entry())
    with pytest.raises(observe.DiscoveryError, match="open to others"):
        observe.list_systems()


def test_symlinks_are_refused(discovery: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    discovery.symlink_to(elsewhere)
    with pytest.raises(observe.DiscoveryError, match="symlink"):
        observe.write_entry(_entry())
    discovery.unlink()
    observe.write_entry(_entry())
    (elsewhere / "planted.json").write_text(json.dumps(_entry("planted0")))
    (discovery / "planted0.json").symlink_to(elsewhere / "planted.json")
    entries, refused = observe.list_systems()
    assert [e["system_id"] for e in entries] == ["abcd1234"]
    assert any("symlink" in why for why in refused)


def test_a_discovery_file_open_to_others_or_malformed_is_refused(discovery: Path) -> None:
    observe.write_entry(_entry())
    loose = discovery / "loose000.json"
    loose.write_text(json.dumps(_entry("loose000")))
    loose.chmod(0o644)
    bad = discovery / "bad00000.json"
    bad.write_text(json.dumps({**_entry("bad00000"), "pid": "1"}))
    bad.chmod(0o600)
    entries, refused = observe.list_systems()
    assert [e["system_id"] for e in entries] == ["abcd1234"]
    assert len(refused) == 2
    assert any("open to others" in why for why in refused)
    assert any("pid is missing or not of type int" in why for why in refused)
