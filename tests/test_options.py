"""One options object, validated once in the driver, carried to every process as JSON."""

from __future__ import annotations

import pytest

from runtime.core import ProcessArgs, SystemOptions
from runtime.wire import Addresses


def test_process_args_survive_a_json_round_trip() -> None:
    options = SystemOptions(3, mailbox_size=7, max_memory=1 << 30, log_level="INFO")
    addresses = Addresses("tcp://h:7470", "tcp://h:7471", "tcp://h:7472", "/tmp/run", "h1", "/k")
    args = ProcessArgs("abcd", addresses, options)
    worker = args.for_worker(2, {0: 0, 1: 4, 2: 1}, [11, 12], parent=4711)
    worker = worker._replace(listen="tcp://10.0.0.2:7481")
    for original in (args, worker):
        assert ProcessArgs.from_json(original.to_json()) == original
    assert (worker.slot, worker.epoch, worker.parent) == (2, 1, 4711)
    assert worker.expect == (11, 12) and worker.epochs == ((0, 0), (1, 4), (2, 1))
    assert worker.options is options
    assert ProcessArgs.from_json(worker.to_json()).addresses == addresses


@pytest.mark.parametrize(
    "bad",
    [
        {"workers": 0},
        {"workers": True},
        {"workers": 2.5},
        {"mailbox_size": 0},
        {"outbox_limit": 1.5},
        {"send_timeout": -1},
        {"heartbeat_timeout": "3"},
        {"max_messages": 0.5},
        {"max_memory": -1},
        {"log_level": 10},
    ],
)
def test_bad_options_are_refused_once_naming_the_option(bad: dict[str, object]) -> None:
    fields = {"workers": 2, **bad}
    (name,) = bad
    with pytest.raises(ValueError, match=name):
        SystemOptions(**fields).check()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=name):
        SystemOptions.build(fields.pop("workers"), fields.pop("log_level", None), **fields)  # type: ignore[arg-type]


def test_build_defaults_workers_and_the_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOVECOTE_LOG_LEVEL", "DEBUG")
    options = SystemOptions.build(None, None)
    assert options.workers >= 1 and options.log_level == "DEBUG"
    assert SystemOptions.build(2, "ERROR").log_level == "ERROR"
    assert options.heartbeat_interval == options.heartbeat_timeout / 6
