"""No silent loss: backpressure, pipelining, garbage on the wire, big payloads."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import zmq

from actors import ActorRef, MailboxFullError
from runtime import ActorSystem
from runtime import net as _sockets
from runtime import wire as proto
from runtime.worker._loop import WorkerLoop
from runtime.worker._replies import Replies
from tests.helpers import Counter


def test_200k_pipelined_asks_all_get_their_replies_in_order(system: ActorSystem) -> None:
    counter = system.spawn(Counter)
    futures = [counter.add(1) for _ in range(200_000)]
    assert [f.result(timeout=60) for f in futures] == list(range(1, 200_001))


def test_tells_sent_before_shutdown_are_all_handled(tmp_path: Path) -> None:
    marker = tmp_path / "final"
    with ActorSystem(workers=1) as system:
        counter = system.spawn(Counter, stop_marker=str(marker))
        for _ in range(50_000):
            counter.add.tell(1)
    assert marker.read_text() == "50000"  # on_stop ran after every tell


def test_backpressure_blocks_then_raises_and_loses_nothing(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with ActorSystem(workers=1, mailbox_size=100, outbox_limit=500, send_timeout=0.5) as system:
        counter = system.spawn(Counter)
        blocked = counter.block_on(str(fifo))  # the worker is stuck until we write
        sent = 0
        with pytest.raises(MailboxFullError, match="not keeping up"):
            for _ in range(5_000_000):  # far more than the pipes can hold
                counter.add.tell(1)
                sent += 1
        with open(fifo, "w") as pipe:
            pipe.write("go\n")
        assert blocked.result(timeout=30) == "go"
        assert counter.get().result(timeout=60) == sent  # every accepted tell arrived
        assert counter.add(1).result(timeout=10) == sent + 1  # and it keeps serving


@pytest.mark.parametrize(
    "garbage",
    [
        [b"not a header"],
        [b"dc\x09\x01\x00\x00\x00\x00pickle"],  # unknown version
        [proto.HEADER.pack(b"dc", proto.VERSION, proto.BATCH, 0, 0) + b"\x80\x05nonsense"],
        [proto.HEADER.pack(b"dc", proto.VERSION, proto.BATCH, 3, 0) + pickle.dumps([])],
        proto.encode_batch([(proto.CALL, 1, 2)], []),  # an entry of the wrong shape
        [proto.encode_batch([(proto.CALL, 1, 2, "add", (5,), 0)], [])[0][:-3]],  # cut
        [proto.encode_batch([(proto.CALL, 1, 2, "é", b"", 0)], [])[0].replace(b"\xc3", b"\xff")],
        proto.encode_batch([(99, 1, 2, "add", b"", 0)], []),  # an unknown entry kind
        [b"", b"", b""],
    ],
)
def test_garbage_is_logged_and_dropped_and_the_worker_serves_on(
    caplog: pytest.LogCaptureFixture, garbage: list[bytes]
) -> None:
    with ActorSystem(workers=1) as system:  # the worker's records reach our logging
        _garbage_then_a_good_call(system, garbage)
    dropped = [r for r in caplog.records if "dropped a malformed message" in r.getMessage()]
    assert dropped and dropped[0].worker == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "field, value",
    [
        (0, True),  # a kind that equals CALL but is no int
        (1, "1"),  # a call id that is no int
        (2, [0]),  # an actor id that cannot be hashed
        (3, ["add"]),  # a method name that cannot be hashed
        (5, "0"),  # a buffer count that is no int
        (0, np.array([1, 1])),  # values that do not compare as one bool
        (5, np.array([0, 0])),
    ],
)
def test_a_lone_entry_with_one_bad_field_is_dropped_and_the_worker_serves_on(
    caplog: pytest.LogCaptureFixture, field: int, value: object
) -> None:
    """A message of one entry runs from the mailbox reader's own short path (see
    worker/_batch.run_one) once its actor has run the method before: that path
    checks each field as ``wire.calls_only`` does, so a bad one is dropped, not run."""
    with ActorSystem(workers=1) as system:
        counter = system.spawn(Counter, worker=0)
        assert counter.add(0).result(timeout=10) == 0  # the method is known: the short path
        entry: list[object] = [proto.CALL, 7, counter.actor_id, "add", (5,), 0]
        entry[field] = value
        _garbage_then_a_good_call(system, proto.encode_batch([tuple(entry)], []), counter)
    dropped = [r for r in caplog.records if "dropped a malformed message" in r.getMessage()]
    assert dropped


def _garbage_then_a_good_call(
    system: ActorSystem, garbage: list[bytes], counter: ActorRef | None = None
) -> None:
    counter = counter or system.spawn(Counter, worker=0)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.connect(_sockets.worker_endpoint(system._run_dir, 0))
        sock.send_multipart(garbage)
        blob, _ = proto.dumps(((5,), {}))  # then a good call on the same connection
        good = [(proto.CALL, 1, counter.actor_id, "add", blob, 0)]
        sock.send_multipart(proto.encode_batch(good, []))
        assert sock.poll(10_000), "the worker stopped answering"
        _, body, _, _ = proto.unpack(sock.recv_multipart())
        [(kind, msg_id, _, _, reply, _)] = proto.decode_body(body)
        assert (kind, msg_id, proto.load_reply(reply, ())) == (proto.OK, 1, 5)
    finally:
        sock.close(linger=0)
        ctx.term()
    assert counter.add(1).result(timeout=5) == 6


def test_256_mib_array_round_trip(system: ActorSystem) -> None:
    counter = system.spawn(Counter)
    array = np.arange(256 * 1024 * 1024 // 8, dtype=np.int64)
    back = counter.echo(array).result(timeout=120)
    assert back.shape == array.shape and back[-1] == array[-1]
    assert np.array_equal(back[::4096], array[::4096])
    assert not back.flags.owndata  # a view of the received frame, not a copy


@pytest.mark.parametrize(
    "value", [7, -(2**70), 1.5, "text", b"x" * 10, b"", True, None, b"y" * proto.OUT_OF_BAND_MIN]
)
def test_a_lone_reply_is_the_frame_a_batch_of_one_would_be_or_is_not_sent(value: object) -> None:
    """Replies.lone encodes its frame itself: byte for byte what ``encode_batch``
    makes of that one reply; a value that is not plain (large bytes: out of band)
    is left to the usual way."""
    ctx: _sockets.Context = zmq.Context()
    loop = WorkerLoop()
    router, caller = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    try:
        router.bind("inproc://lone-frame")
        caller.connect("inproc://lone-frame")
        caller.send(b"hello")
        peer = router.recv_multipart()[0]
        replies = Replies(loop, router, 0, lambda *_: None)
        payload, bufs = proto.dumps_reply(value)
        sent = replies.lone(peer, 2**40, value)
        assert sent == (not bufs and type(payload) is tuple)
        if sent:
            assert caller.poll(5000)
            entry = (proto.OK, 2**40, 0, "", payload, 0)
            assert caller.recv() == proto.encode_batch([entry], ())[0]
    finally:
        caller.close(0)
        router.close(0)
        loop.close()
        ctx.term()


def test_a_lone_reply_to_a_full_or_gone_caller_is_queued_or_logged_never_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A lone call's plain reply goes out from its handler (Replies.lone); when the
    caller's pipe is full it is not sent but queued, behind nothing, and goes once
    the caller reads; a caller that is gone gets a logged drop."""
    ctx: _sockets.Context = zmq.Context()
    loop = WorkerLoop()
    router = ctx.socket(zmq.ROUTER)
    caller = ctx.socket(zmq.DEALER)
    try:
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.SNDHWM, 4)
        caller.setsockopt(zmq.RCVHWM, 4)
        caller.setsockopt(zmq.ROUTING_ID, b"\x00caller")
        router.bind("inproc://lone-replies")
        caller.connect("inproc://lone-replies")
        caller.send(b"hello")
        peer = router.recv_multipart()[0]
        replies = Replies(loop, router, 0, lambda *_: None)
        sent = 0
        while replies.lone(peer, sent, sent):  # the caller does not read: its pipe fills
            sent += 1
        assert 4 <= sent < 1000
        replies.reply(proto.Request(peer, proto.CALL, sent, 1, "m", (), ()), sent)  # queued
        assert not replies.lone(peer, sent + 1, sent + 1)  # a reply waits: not before it
        replies.reply(proto.Request(peer, proto.CALL, sent + 1, 1, "m", (), ()), sent + 1)
        got: list[int] = []
        while len(got) < sent + 2:
            replies.send()
            if caller.poll(1000):
                body = memoryview(caller.recv())[proto.HEADER.size :]
                got += [entry[1] for entry in pickle.loads(body)]
        assert got == list(range(sent + 2))  # every reply, in order
        assert replies.lone(b"\x00gone", 1, 1)  # dropped, and said
        assert "1 reply undeliverable" in caplog.text
    finally:
        caller.close(0)
        router.close(0)
        loop.close()
        ctx.term()
