"""Correctness, processes: the control plane, the mailbox, fork, orphans, large
values and exits (issue "Correctness", items 1-8). Each test failed before its fix."""

from __future__ import annotations

import contextlib
import json
import operator
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import zmq

from actors import ActorCrashedError, SerializationError
from runtime import ActorSystem
from runtime import net as _sockets
from runtime import wire as proto
from tests.helpers import (
    ExitsInInit,
    ExitsWhenUnpickled,
    Fatal,
    Probe,
    wait_for_path,
)
from tests.test_lifecycle import ROOT, _gone

DEEP = 100_000


def _deep_list_pickle() -> bytes:
    """A pickle of a list nested DEEP levels: built by opcodes, as no pickler can."""
    return b"\x80\x05" + b"]" * DEEP + b"a" * (DEEP - 1) + b"."


HOSTILE_CONTROL = [
    proto.pack(proto.CONTROL, pickle.dumps(map(operator.truediv, [1], [0]))),  # was fatal
    proto.pack(proto.CONTROL, _deep_list_pickle()),  # was fatal: RecursionError
    proto.pack(proto.CONTROL, b"[" * DEEP + b"]" * DEEP),  # deep JSON
    proto.pack(proto.CONTROL, b'["no_such_op", 1]'),
    proto.pack(proto.CONTROL, b'["spawn", "not an id", {}]'),  # fields of the wrong type
    proto.pack(proto.CONTROL, b'["lookup", 1, {"$b": 7}]'),  # a buffer that is not there
    proto.pack(proto.CONTROL, b'["hello", true]'),  # a bool is not an id
    proto.pack(proto.CONTROL, b"\xff\xfe not utf-8"),
    proto.pack(proto.BATCH, pickle.dumps([])),  # data on the control socket
    [b"x"],
]


def test_no_control_message_kills_the_supervisor(capfd: pytest.CaptureFixture[str]) -> None:
    with ActorSystem(workers=1) as system:
        with _connected(system._addresses.control) as sock:
            for message in HOSTILE_CONTROL:
                sock.send_multipart(message)
            sock.send_multipart(proto.encode_control(proto.Lookup(99, "nobody")))  # a good one
            assert sock.poll(10_000), "the supervisor stopped answering"
            kind, body, buffers, _ = proto.unpack(sock.recv_multipart())
            reply = proto.decode_control(body, buffers)
            assert (kind, type(reply), reply.req_id, reply.ok) == (
                proto.CONTROL,
                proto.Reply,
                99,
                False,
            )
        assert system._link.proc.poll() is None
        assert system.spawn(Probe).add(2).result(timeout=10) == 2
    err = capfd.readouterr().err
    assert err.count("supervisor dropped a malformed message") == len(HOSTILE_CONTROL)


def test_control_messages_are_json_never_pickle() -> None:
    frames = proto.encode_control(proto.Create(7, None, b"\x80\x05opaque", [["add", 2]]))
    kind, body, buffers, _ = proto.unpack(frames)
    assert kind == proto.CONTROL
    assert json.loads(bytes(body)) == ["create", 7, None, {"$b": 0}, [["add", 2]]]
    assert proto.decode_control(body, buffers) == proto.Create(
        7, None, b"\x80\x05opaque", [["add", 2]]
    )
    with pytest.raises(proto.ProtocolError):  # a valid pickle is not a control message
        proto.decode_control(pickle.dumps(["hello", 1]), ())
    with pytest.raises(TypeError):  # nor can one be sent
        proto.encode_control(proto.Reply(1, True, object()))


@contextlib.contextmanager
def _connected(endpoint: str) -> Iterator[zmq.Socket]:
    """A DEALER of the test's own, connected to one of the runtime's sockets."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.connect(endpoint)
        yield sock
    finally:
        sock.close(linger=0)
        ctx.term()


def _deep_entry_batch(good_id: int, actor_id: int) -> list[bytes]:
    """A batch of five entries: good, non-integer buffer count, unhashable actor id,
    a field nested DEEP levels, good."""
    blob, _ = proto.dumps(((5,), {}))
    entries = [
        (proto.CALL, good_id, actor_id, "add", blob, 0),
        (proto.CALL, 90, actor_id, "add", blob, "one"),
        (proto.CALL, 91, [actor_id], "add", blob, 0),
        (proto.CALL, 92, "DEEP", "add", blob, 0),
        (proto.CALL, good_id + 1, actor_id, "add", blob, 0),
    ]
    body = pickle.dumps(entries, 5)
    deep = b"]" * DEEP + b"a" * (DEEP - 1)
    body = body.replace(b"\x8c\x04DEEP\x94", deep + b"\x94", 1)
    return [proto.HEADER.pack(proto.MAGIC, proto.VERSION, proto.BATCH, 0, 0) + body]


def test_a_malformed_entry_is_dropped_alone(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with ActorSystem(workers=1) as system:
        probe = system.spawn(Probe, worker=0)
        with _connected(_sockets.worker_endpoint(system._run_dir, 0)) as sock:
            sock.send_multipart(_deep_entry_batch(1, probe.actor_id))
            answered = {}
            while len(answered) < 2:
                assert sock.poll(10_000), f"only {answered} were answered"
                _, body, _, _ = proto.unpack(sock.recv_multipart())
                for kind, msg_id, _, _, blob, _ in proto.decode_body(body):
                    answered[msg_id] = (kind, proto.load_reply(blob, ()))
            assert answered == {1: (proto.OK, 5), 2: (proto.OK, 10)}
        assert probe.add(1).result(timeout=10) == 11
    err = capfd.readouterr().err + caplog.text  # the worker's records reach our logging
    assert err.count("dropped a malformed message") == 3
    assert "Exception in callback" not in err


def test_a_dropped_entry_leaves_the_next_one_its_own_buffers() -> None:
    with ActorSystem(workers=1) as system:
        probe = system.spawn(Probe, worker=0)
        with _connected(_sockets.worker_endpoint(system._run_dir, 0)) as sock:
            bad_blob, bad_bufs = proto.dumps(((b"a" * 100_000,), {}))
            good_blob, good_bufs = proto.dumps(((b"b" * 100_000,), {}))
            entries = [
                (proto.CALL, 1, probe.actor_id, 123, bad_blob, 1),  # a method name that is no str
                (proto.CALL, 2, probe.actor_id, "give", good_blob, 1),
            ]
            sock.send_multipart(proto.encode_batch(entries, [*bad_bufs, *good_bufs]))
            assert sock.poll(10_000), "no answer"
            kind, body, buffers, _ = proto.unpack(sock.recv_multipart())
            [(kind, msg_id, _, _, blob, _)] = proto.decode_body(body)
            assert (kind, msg_id) == (proto.OK, 2)
            assert proto.load_reply(blob, [memoryview(b) for b in buffers]) == b"b" * 100_000


def test_a_forked_child_that_returns_into_the_runtime_exits(system: ActorSystem) -> None:
    probe = system.spawn(Probe)
    child = probe.fork().result(timeout=10)
    assert child > 0
    try:
        assert _gone([child], timeout=10) == []  # it would spin at 100% CPU for ever
    finally:
        with contextlib.suppress(ProcessLookupError):  # no orphan, even on failure
            os.kill(child, signal.SIGKILL)
    assert probe.add(3).result(timeout=10) == 3


def test_a_forked_child_does_not_hide_its_workers_death(system: ActorSystem) -> None:
    probe = system.spawn(Probe, worker=0)
    sleeper = probe.fork_sleeper().result(timeout=10)
    try:
        worker = probe.pid().result(timeout=10)
        pending = probe.nap(30)
        os.kill(worker, signal.SIGKILL)
        with pytest.raises(ActorCrashedError, match="SIGKILL"):
            pending.result(timeout=10)  # hung: the sleeper held the worker's death pipe
        assert probe.pid().result(timeout=20) != worker  # the slot was filled again
    finally:
        os.kill(sleeper, signal.SIGKILL)


STUCK_DRIVER = textwrap.dedent(
    """
    import signal, sys, time
    from actors import Actor
    from runtime import ActorSystem

    class Stuck(Actor):
        def __init__(self):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        def sleep(self, marker):
            open(marker, "w").close()
            time.sleep(1000)

    system = ActorSystem(workers=2)
    refs = [system.spawn(Stuck, worker=i) for i in range(2)]
    for i, ref in enumerate(refs):
        ref.sleep.tell(sys.argv[1] + str(i))
    print(system._link.proc.pid, flush=True)
    sys.stdin.read()
    """
)


def test_a_sigkilled_driver_leaves_nothing_within_5_s_even_with_stuck_actors(
    tmp_path: Path,
) -> None:
    script = tmp_path / "driver.py"
    script.write_text(STUCK_DRIVER)
    marker = str(tmp_path / "asleep")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, str(script), marker],
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as driver:
        assert driver.stdout is not None
        supervisor = psutil.Process(int(driver.stdout.readline()))
        pids = [supervisor.pid] + [p.pid for p in supervisor.children()]
        assert len(pids) == 3
        for i in range(2):
            wait_for_path(marker + str(i))  # both actors are in time.sleep(1000)
        killed = time.monotonic()
        driver.kill()
        procs = [psutil.Process(pid) for pid in pids]
        while any(map(_running, procs)):  # a zombie is gone, whoever is to reap it
            assert time.monotonic() - killed < 10, "processes were left behind"
            time.sleep(0.01)
        took = time.monotonic() - killed
    assert took < 4.0, f"processes were left for {took:.2f} s"  # was 6.05 s


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_1_gib_bytes_reply_does_not_cost_its_worker_its_heartbeat() -> None:
    with ActorSystem(workers=1) as system:
        probe = system.spawn(Probe)
        worker = probe.pid().result(timeout=10)
        value = probe.big(1 << 30).result(timeout=150)
        assert type(value) is bytes and len(value) == 1 << 30 and value[-1:] == b"\0"
        del value
        assert probe.pid().result(timeout=10) == worker  # not killed and replaced


def test_large_bytes_travel_out_of_band() -> None:
    big = b"y" * (1 << 20)
    task = (((abs, (big,), {}),), {})  # a task's arguments, inside its call's
    for value in (big, ((big, 1), {}), {"k": [bytearray(big)]}, task):
        blob, buffers = proto.dumps(value)
        assert len(blob) < 200 and len(buffers) == 1  # no copy inside the pickle
        assert proto.loads(blob, [memoryview(b) for b in buffers]) == value


def test_system_exit_goes_to_the_caller_and_the_worker_lives() -> None:
    with ActorSystem(workers=1) as system:
        probe = system.spawn(Probe)
        worker = probe.pid().result(timeout=10)
        exits = [
            system.submit(sys.exit, 3),
            probe.raise_(SystemExit(2)),
            probe.raise_async(SystemExit(6)),
            probe.exits_when_pickled(),  # while pickling the result
        ]
        codes = [f.exception(timeout=10) for f in exits]
        assert [type(e) for e in codes] == [SystemExit] * 4
        assert [e.code for e in codes] == [3, 2, 6, 4]  # type: ignore[union-attr]
        assert isinstance(probe.raise_(Fatal("x")).exception(timeout=10), Fatal)
        assert probe.add(1).result(timeout=10) == 1  # the actor goes on, in the same worker
        assert system.submit(os.getpid).result(timeout=10) == worker


def test_system_exit_in_init_fails_the_spawn_and_the_worker_lives() -> None:
    with ActorSystem(workers=1) as system:
        worker = system.spawn(Probe).pid().result(timeout=10)
        with pytest.raises(SystemExit):
            system.spawn(ExitsInInit)
        assert system.spawn(Probe).pid().result(timeout=10) == worker


def test_a_result_whose_unpickling_exits_is_a_serialization_error(system: ActorSystem) -> None:
    probe = system.spawn(Probe)
    with pytest.raises(SerializationError, match="does not unpickle"):
        probe.exits_when_unpickled().result(timeout=10)
    with pytest.raises(SerializationError, match="does not unpickle"):
        system.submit(ExitsWhenUnpickled).result(timeout=10)
    with pytest.raises(SerializationError, match=r"give\(\): cannot unpickle its arguments"):
        probe.give(ExitsWhenUnpickled()).result(timeout=10)  # unpickled by the worker
    assert probe.add(1).result(timeout=10) == 1


def test_max_messages_counts_tasks() -> None:
    with ActorSystem(workers=1, max_messages=3) as system:
        pids = [system.submit(os.getpid).result(timeout=20) for _ in range(4)]
    assert pids[0] == pids[1] == pids[2] != pids[3]
