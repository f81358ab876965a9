"""The wire format and serialization, without processes."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

import actors
from actors import ActorRef, RemoteError, RemoteTraceback, SerializationError
from runtime import wire as proto
from tests.helpers import Unpicklable


def test_batch_round_trip() -> None:
    blob, bufs = proto.dumps(((1, "two"), {"three": 3.0}))
    entries = [(proto.CALL, 7, 42, "add", blob, len(bufs))]
    frames = proto.encode_batch(entries, bufs, epoch=3)
    kind, body, buffers, epoch = proto.unpack(frames)
    assert (kind, epoch) == (proto.BATCH, 3)
    assert list(buffers) == []
    [(k, msg_id, actor_id, method, got, nbufs)] = proto.decode_body(body)
    assert (k, msg_id, actor_id, method, nbufs) == (proto.CALL, 7, 42, "add", 0)
    assert proto.loads(got) == ((1, "two"), {"three": 3.0})


def test_large_buffers_travel_out_of_band_uncopied() -> None:
    array = np.arange(1_000_000, dtype=np.int64)
    blob, bufs = proto.dumps(((array,), {}))
    assert len(bufs) == 1
    assert len(blob) < 1000  # the array's bytes are not in the pickle
    assert bufs[0].raw().obj is array  # the buffer is the array's own memory
    (back,), _ = proto.loads(blob, bufs)
    assert np.array_equal(back, array)


def test_small_buffers_stay_in_band() -> None:
    blob, bufs = proto.dumps(np.arange(10))
    assert bufs == []
    assert np.array_equal(proto.loads(blob), np.arange(10))


@pytest.mark.parametrize("value", [(1, {"x": 1.0}), (1, {}), ((1,), {"k": [1]}), ("a", 2)])
def test_tuples_that_look_like_calls_round_trip(value: object) -> None:
    blob, bufs = proto.dumps(value)
    assert proto.loads(blob, bufs) == value


def test_classes_and_lambdas_pickle_by_value() -> None:
    blob, _ = proto.dumps(((lambda x: x + 1,), {}))
    (fn,), _ = proto.loads(blob)
    assert fn(1) == 2


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [b"xx"],
        [b"dc"],
        [b"nope-not-a-header-at-all"],
        [proto.HEADER.pack(b"dc", 99, proto.BATCH, 0, 0) + b"x"],  # unknown version
        [proto.HEADER.pack(b"dc", proto.VERSION, 77, 0, 0) + b"x"],  # unknown kind
        [proto.HEADER.pack(b"dc", proto.VERSION, proto.BATCH, 2, 0) + b"x", b"buf"],  # count
    ],
)
def test_malformed_frames_are_rejected(frames: list[bytes]) -> None:
    with pytest.raises(proto.ProtocolError):
        proto.unpack(frames)


def test_body_that_does_not_unpickle_is_a_protocol_error() -> None:
    _, body, _, _ = proto.unpack(proto.pack(proto.BATCH, b"\x80\x05garbage"))
    with pytest.raises(proto.ProtocolError):
        proto.decode_body(body)


def test_unpicklable_argument_names_the_argument() -> None:
    ref = ActorRef("sys", 3, 0, "counter")
    with pytest.raises(SerializationError, match=r"'counter' #3.*add\(\).*argument 1 \(lock\)"):
        proto.dumps_call((ref, "add"), (1, threading.Lock()), {})
    with pytest.raises(SerializationError, match="keyword argument 'key'"):
        proto.dumps_call((ref, "add"), (), {"key": threading.Lock()})


def test_errors_keep_type_and_remote_traceback() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        blob = proto.encode_error(exc)
    err = proto.decode_error(blob)
    assert type(err) is KeyError and err.args == ("missing",)
    assert isinstance(err.__cause__, RemoteTraceback)
    assert "test_errors_keep_type_and_remote_traceback" in err.__cause__.text


def test_exception_that_cannot_be_unpickled_becomes_remote_error() -> None:
    err = proto.decode_error(proto.encode_error(Unpicklable(1, 2)))
    assert isinstance(err, RemoteError)
    assert "Unpicklable" in str(err)


@pytest.mark.parametrize("name", actors.__all__)
def test_every_public_error_pickles(name: str) -> None:
    cls = getattr(actors, name)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        return
    err = cls("message")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls and str(back) == str(err)


def test_crashed_error_keeps_its_cause() -> None:
    err = actors.ActorCrashedError("call failed", "worker 1 killed by signal SIGKILL")
    back = pickle.loads(pickle.dumps(err))
    assert back.cause == "worker 1 killed by signal SIGKILL"
    assert str(back) == "call failed"


def test_refs_are_small_hashable_and_picklable() -> None:
    ref = ActorRef("sys", 5, 1, "name")
    ref.add  # noqa: B018 -- a cached method proxy must not travel with the ref
    back = pickle.loads(pickle.dumps(ref))
    assert back == ref and hash(back) == hash(ref)
    assert len(pickle.dumps(ref)) < 120
    assert {ref: 1}[back] == 1
    assert ActorRef("other", 5, 1) != ref


def test_plain_arguments_travel_raw_and_others_as_a_pickle() -> None:
    raw, none = proto.dumps_call("x", (1, "two", b"3"), {"k": None})
    assert (raw, none) == ([(1, "two", b"3"), {"k": None}], ())  # pickled with the batch
    args, _ = proto.dumps_call("x", (1, 2.5), {})
    assert args == (1, 2.5)  # no keywords: the args tuple itself
    blob, _ = proto.dumps_call("x", ([1],), {})
    assert type(blob) is bytes  # a list: pickled at the call site
    entries = [
        (proto.CALL, 1, 5, "add", raw, 0),
        (proto.TELL, 0, 5, "add", blob, 0),
        (proto.OK, 2, 0, "", proto.dumps_reply(7)[0], 0),
    ]
    _, body, _, _ = proto.unpack(proto.encode_batch(entries, []))
    got = proto.decode_body(body)
    assert [e[:4] for e in got] == [e[:4] for e in entries]
    assert proto.load_call(got[0][4], ()) == ((1, "two", b"3"), {"k": None})
    assert proto.load_call(got[1][4], ()) == (([1],), {})
    assert proto.load_call(args, ()) == ((1, 2.5), {})
    assert proto.load_reply(got[2][4], ()) == 7


@pytest.mark.parametrize("value", [7, "text", b"x" * 10, None, [1, 2], {"a": 1}, (1,)])
def test_a_lone_reply_round_trips_in_either_form(value: object) -> None:
    payload, bufs = proto.dumps_reply(value)
    _, body, _, _ = proto.unpack(proto.encode_batch([(proto.OK, 3, 0, "", payload, 0)], bufs))
    [(kind, msg_id, _, _, got, _)] = proto.decode_body(body)
    assert (kind, msg_id, proto.load_reply(got, ())) == (proto.OK, 3, value)


@pytest.mark.parametrize("as_bytes", [True, False])
def test_a_plain_body_is_found_in_bytes_or_a_frame_and_nothing_else_is(as_bytes: bool) -> None:
    entries = [(proto.OK, 3, 0, "", (7,), 0)]
    frame = proto.encode_batch(entries, (), epoch=2)[0]

    def body(data: bytes) -> object:
        return proto.plain_body(data if as_bytes else memoryview(data), 2)

    found = body(frame)
    assert found is not None and proto.decode_body(found) == entries
    assert body(frame[: proto.HEADER.size]) is None  # a header and no body
    assert body(proto.encode_batch(entries, (), epoch=3)[0]) is None  # another epoch's
    assert body(b"\0" + frame[1:]) is None  # not our magic


def test_a_reply_is_completed_or_dropped_as_malformed_and_nothing_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``Results.on_data``: a reply completes its call, in one part or not, plain
    or pickled; garbage is logged, never raised (a malformed entry is dropped
    alone, the good one beside it completes)."""
    import time

    from runtime.client._call import Call
    from runtime.client._cancel import Cancels
    from runtime.client._results import Results
    from runtime.core import Calls

    calls: Calls[Call] = Calls()
    lock = threading.Lock()
    cancels = Cancels(calls, lock, lambda: None, lambda done, deadline: None, time.monotonic, None)
    results = Results(calls, lock, cancels, threading.Condition())
    futures = {msg_id: Call() for msg_id in (1, 2, 3, 4, 5)}
    calls.pending.update(futures)

    def reply(*entries: tuple[object, ...], epoch: int = 0) -> None:
        results.on_data(proto.encode_batch(list(entries), (), epoch))

    head = proto.batch_head(0)
    garbage = [
        [head],
        [head + b"\x80\x05nonsense"],
        [b"not a header"],
        [head + pickle.dumps(5)],  # not a list
        [head + pickle.dumps([(proto.OK, 1)])],  # an entry too short
        [head + pickle.dumps([(proto.OK, [1], 0, "", (7,), 0)])],  # an id that cannot be hashed
        [head + pickle.dumps([(proto.OK, 2, 0, "", (7,), 0), (proto.OK, 3, 0)])],  # one good
    ]
    for frames in garbage:
        results.on_data(frames)
    reply((proto.OK, 5, 0, "", (), 0))  # a value that is not there: its caller learns it
    reply((proto.OK, 1, 0, "", (7,), 0), epoch=3)  # not a reply's epoch: unpacked
    reply((proto.OK, 2, 0, "", (7,), 0))
    reply((proto.OK, 3, 0, "", proto.dumps(["not plain"])[0], 0))
    futures[4].cancel()
    reply((proto.OK, 4, 0, "", (7,), 0))  # for a cancelled call: nobody wants it
    reply((proto.OK, 99, 0, "", (7,), 0))  # for no call: already failed
    assert [futures[i].result(0) for i in (1, 2, 3)] == [7, 7, ["not plain"]]
    assert futures[4].cancelled() and not calls.pending
    with pytest.raises(SerializationError, match="does not unpickle"):
        futures[5].result(0)
    assert len([r for r in caplog.records if "dropped a malformed reply" in r.getMessage()]) == 7


def test_a_dealer_reads_the_header_s_count_of_buffers_and_never_eats_the_next_message() -> None:
    """``net.recv_batch`` trusts a header that counts no buffers and asks ZeroMQ
    otherwise: a malformed message's parts may arrive as messages of their own, but
    never take a part of the good message behind it."""
    import zmq

    from runtime import net

    good = proto.encode_batch([(proto.OK, 1, 0, "", (5,), 0)], ())
    with zmq.Context() as ctx, ctx.socket(zmq.PAIR) as tx, ctx.socket(zmq.PAIR) as rx:
        tx.bind("inproc://recv-batch")
        rx.connect("inproc://recv-batch")
        lying = proto.pack(proto.BATCH, b"body", [b"one", b"two"])[0]  # counts 2
        tx.send_multipart([lying, b"one", b"two"])
        first, *buffers = net.recv_batch(rx)
        assert first == lying and [bytes(b) for b in buffers] == [b"one", b"two"]
        for message in ([lying], [good[0][:4] + bytes(8) + b"x", b"tail"], good):
            tx.send_multipart(message)
        assert net.recv_batch(rx) == [lying]  # its count made it ask ZeroMQ: no more parts
        assert net.recv_batch(rx) == [good[0][:4] + bytes(8) + b"x"]  # counts none: believed
        assert net.recv_batch(rx) == [b"tail"]  # then its stray part alone, malformed
        assert net.recv_batch(rx) == good  # and the good message whole
        with pytest.raises(proto.ProtocolError):
            proto.unpack([b"tail"])
