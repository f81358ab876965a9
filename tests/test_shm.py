"""Large buffers through shared memory on one host: the pool and the descriptors
without processes, then round trips, reuse, cleanup and the fallback for real."""

from __future__ import annotations

import gc
import glob
import os
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest

from actors import Actor, ActorCrashedError, SerializationError
from runtime import ActorSystem, net, wire
from runtime.net import _shm

MiB = 1 << 20


def segments_of(pid: int) -> list[str]:
    return glob.glob(f"/dev/shm/dovecote.{pid}.*")


def shared_frames(pool: net.Pool, value: Any, key: object = 1) -> tuple[list[Any], list[Any]]:
    """A reply batch carrying ``value``, its large buffers shared; and the segments."""
    blob, bufs = wire.dumps(value)
    frames = wire.encode_batch([(wire.OK, 1, 0, "", blob, len(bufs))], bufs)
    return frames, pool.share(frames, 0, key)


def received(frames: list[Any]) -> Any:
    """What a receiver makes of ``frames``: unpack, map, unpickle."""
    _, body, buffers, _ = wire.unpack(frames)
    (_, _, _, _, blob, _) = wire.decode_body(body)[0]
    return wire.loads(blob, net.attach(buffers))


@pytest.fixture
def pool() -> Any:
    opened = net.Pool(64 * MiB)
    yield opened
    opened.close()


# -- sans processes -------------------------------------------------------------------
def test_size_classes_round_up_by_at_most_an_eighth() -> None:
    for n in (1, MiB, MiB + 1, 3 * MiB + 5, 256 * MiB, 256 * MiB + 1, 1000 * MiB + 7):
        capacity = _shm.size_class(n)
        assert n <= capacity <= max(n * 1.125, _shm.PAGE) + _shm.PAGE
    assert _shm.size_class(256 * MiB) == 256 * MiB


def test_a_large_array_travels_as_a_descriptor_and_comes_back_equal(pool) -> None:
    arr = np.arange(MiB, dtype=np.float64)  # 8 MiB
    frames, taken = shared_frames(pool, arr)
    assert len(taken) == 1
    assert len(frames) == 2 and len(frames[1]) <= wire.DESCRIPTOR_MAX
    assert frames[0][3] == wire.BATCH | wire.SHARED
    out = received(frames)
    assert np.array_equal(out, arr)
    assert out.ctypes.data != arr.ctypes.data  # a view of the segment, not of arr


def test_small_buffers_stay_frames(pool) -> None:
    frames, taken = shared_frames(pool, np.ones(MiB // 32))  # 256 KiB: below SHM_MIN
    assert taken == [] and frames[0][3] == wire.BATCH
    assert memoryview(frames[1]).nbytes == MiB // 4


def test_large_bytes_round_trip(pool) -> None:
    data = os.urandom(3 * MiB)
    frames, taken = shared_frames(pool, {"a": data, "b": bytearray(data)})
    assert len(taken) == 2
    out = received(frames)
    assert out["a"] == data and type(out["a"]) is bytes
    assert out["b"] == data and type(out["b"]) is bytearray


def test_a_segment_is_reused_once_the_view_is_collected(pool) -> None:
    for i in range(20):
        frames, _ = shared_frames(pool, np.full(MiB, i, dtype=np.float64))
        out = received(frames)
        assert out[0] == i and out[-1] == i
        del out
    assert pool.segments() == 1


def test_a_held_view_is_never_overwritten(pool) -> None:
    kept = []
    for i in range(6):
        frames, _ = shared_frames(pool, np.full(MiB, i, dtype=np.float64))
        kept.append(received(frames))
    assert pool.segments() == 6
    for i, arr in enumerate(kept):
        assert (arr == i).all()
    kept.clear()
    gc.collect()
    shared_frames(pool, np.ones(MiB))
    assert pool.segments() == 6  # all free again: reused, none added


def test_a_full_pool_falls_back_to_frames() -> None:
    small = net.Pool(20 * MiB)  # two 8 MiB segments and their headers
    try:
        kept = []
        for i in range(4):
            frames, taken = shared_frames(small, np.full(MiB, i, dtype=np.float64))
            assert bool(taken) == (i < 2)
            kept.append(received(frames))
        assert small.segments() == 2 and small.fallbacks == 2
        assert [int(a[0]) for a in kept] == [0, 1, 2, 3]
    finally:
        small.close()


def test_a_message_not_sent_frees_its_segments(pool) -> None:
    _, taken = shared_frames(pool, np.ones(MiB))
    pool.release(taken)
    _, again = shared_frames(pool, np.ones(MiB))
    assert again == taken


def test_what_a_dead_peer_held_or_never_mapped_is_taken_back() -> None:
    small = net.Pool(9 * MiB)  # one segment
    try:
        _, lost = shared_frames(small, np.ones(MiB), key="w1")  # never mapped
        small.lost("w1")
        frames, again = shared_frames(small, np.ones(MiB), key="w2")
        assert again == lost
        held = received(frames)  # mapped by this process: "alive"
        assert shared_frames(small, np.ones(MiB))[1] == []
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, check=True)  # fmt: skip
        _shm._WORD.pack_into(again[0].mm, _shm._HOLDER, int(dead.stdout))  # as if it mapped it
        assert shared_frames(small, np.ones(MiB))[1] == again
        del held
    finally:
        small.close()


def test_views_outlive_the_pool_and_its_files(pool) -> None:
    frames, _ = shared_frames(pool, np.full(MiB, 7.0))
    out = received(frames)
    pool.close()
    assert not segments_of(os.getpid())
    assert (out == 7.0).all()


def test_a_receiver_refuses_bad_descriptors(pool) -> None:
    frames, _ = shared_frames(pool, np.ones(MiB))
    _, _, buffers, _ = wire.unpack(frames)
    with pytest.raises(wire.ProtocolError, match="another host"):
        net.attach(buffers, near=False)
    good = buffers[0]
    bad = [
        wire.Descriptor(good.name, good.length, good.lease + 1),  # not its lease
        wire.Descriptor(good.name, 9 * MiB, good.lease),  # longer than the segment
        wire.Descriptor("../etc/passwd", 8, 1),
        wire.Descriptor("dovecote.1.ab.999999", 8, 1),  # no such file
    ]
    blob = wire.dumps(np.ones(MiB))[0]
    for unmapped, why in zip(net.attach(bad), ("lease", "lease", "name", "No such"), strict=True):
        assert why in unmapped.reason
        with pytest.raises(TypeError, match="UnmappedSharedMemory"):  # the caller is told
            wire.loads(blob, [unmapped])
    truncated = [frames[0], frames[1][:10]]
    with pytest.raises(wire.ProtocolError):
        wire.unpack(truncated)


def test_shared_memory_can_be_turned_off(monkeypatch) -> None:
    monkeypatch.setenv("DOVECOTE_SHM", "0")
    assert net.Pool.open() is None
    monkeypatch.setenv("DOVECOTE_SHM", "1")
    monkeypatch.setenv("DOVECOTE_SHM_POOL", "3")
    opened = net.Pool.open()
    assert opened is not None and opened.limit == 3 * MiB


# -- with processes --------------------------------------------------------------------
class Keeper(Actor):
    def __init__(self) -> None:
        self.kept: list[Any] = []

    def echo(self, x: Any) -> Any:
        return x

    def keep(self, arr: np.ndarray) -> float:
        self.kept.append(arr)
        return float(sum(float(a[0] + a[-1]) for a in self.kept))

    def check(self) -> bool:
        return all((a == a[0]).all() for a in self.kept)

    def pid(self) -> int:
        return os.getpid()

    def die_holding(self, arr: np.ndarray) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def segments(self) -> int:
        from runtime.net import _shm as shm  # the worker's own pool, by its files

        return len(glob.glob(f"{shm.SHM_DIR}/dovecote.{os.getpid()}.*"))


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_round_trips_of_arrays_and_bytes_across_processes() -> None:
    with ActorSystem(workers=1) as system:
        ref = system.spawn(Keeper, worker=0)
        for shape in ((MiB,), (3 * MiB + 3,), (512, 1024)):
            arr = np.random.default_rng(1).random(shape)
            assert np.array_equal(ref.echo(arr).result(10), arr)
        data = os.urandom(5 * MiB)
        assert ref.echo(data).result(10) == data
        assert ref.echo([data, data[:100]]).result(10) == [data, data[:100]]
        assert segments_of(os.getpid())  # it went through shared memory
        worker = ref.pid().result(10)
        assert segments_of(worker)
    assert not segments_of(os.getpid()) and not segments_of(worker)


def test_arrays_kept_on_both_sides_stay_intact_and_the_pools_stay_bounded() -> None:
    with ActorSystem(workers=1) as system:
        ref = system.spawn(Keeper, worker=0)
        mine = []
        for i in range(12):
            arr = np.full(MiB // 4, float(i))  # 2 MiB
            assert ref.keep(arr).result(10) == 2 * sum(range(i + 1))
            mine.append(ref.echo(arr).result(10))
        for _ in range(40):  # nothing kept: the same segments go round
            assert ref.echo(np.full(MiB // 4, -1.0)).result(10)[0] == -1.0
        assert ref.check().result(10) is True
        assert [int(a[0]) for a in mine] == list(range(12))
        assert len(segments_of(os.getpid())) <= 12 + 2
        assert ref.segments().result(10) <= 12 + 2


def test_segments_of_a_killed_worker_are_removed_and_the_lost_ones_reused() -> None:
    with ActorSystem(workers=1) as system:
        pool = system._transport.shm.pool
        ref = system.spawn(Keeper, worker=0, restart="temporary")
        ref.echo(np.ones(MiB)).result(10)  # the worker now owns a segment
        worker = ref.pid().result(10)
        assert segments_of(worker)
        with pytest.raises(ActorCrashedError):
            ref.die_holding(np.ones(MiB)).result(10)  # mapped, held, never let go
        wait_until(lambda: not segments_of(worker))  # the supervisor unlinked them
        assert pool is not None and pool.segments() <= 2
        mine = pool.segments()
        pool.limit = pool.size  # no more segments: only those the dead worker held
        other = system.spawn(Keeper, worker=0)
        assert other.echo(np.full(MiB, 7.0)).result(10)[0] == 7.0
        assert pool.segments() == mine and pool.fallbacks == 0  # taken back, reused
        # later calls may find their segment still held (the worker lets go of an
        # argument when it drops the request): they go as frames, nothing lost
        kept = [other.echo(np.full(MiB, float(i))).result(10) for i in range(3)]
        assert [a[0] for a in kept] == [0.0, 1.0, 2.0]
        newer = other.pid().result(10)
    assert not segments_of(os.getpid()) and not segments_of(newer)


def test_a_buffer_that_cannot_be_mapped_fails_its_call_at_the_caller(monkeypatch) -> None:
    with ActorSystem(workers=1) as system:
        ref = system.spawn(Keeper, worker=0)
        pool = system._transport.shm.pool
        assert pool is not None
        real = pool.share

        def unlinked(frames: list[Any], first: int, key: object) -> list[Any]:
            taken = real(frames, first, key)
            os.unlink(f"/dev/shm/{taken[0].name}")  # as if /dev/shm were another
            return taken

        monkeypatch.setattr(pool, "share", unlinked)
        with pytest.raises(SerializationError, match="UnmappedSharedMemory"):
            ref.echo(np.ones(MiB)).result(10)
        monkeypatch.undo()
        assert ref.echo(7).result(10) == 7  # the worker lives on


def test_the_fallback_when_shared_memory_is_off(monkeypatch) -> None:
    monkeypatch.setenv("DOVECOTE_SHM", "0")
    with ActorSystem(workers=1) as system:
        ref = system.spawn(Keeper, worker=0)
        arr = np.arange(MiB, dtype=np.float64)
        assert np.array_equal(ref.echo(arr).result(10), arr)
        assert not segments_of(os.getpid())
        assert ref.segments().result(10) == 0


def test_a_pool_at_its_limit_sends_frames_and_loses_nothing(monkeypatch) -> None:
    monkeypatch.setenv("DOVECOTE_SHM_POOL", "5")  # MiB: two 2 MiB segments
    with ActorSystem(workers=1) as system:
        ref = system.spawn(Keeper, worker=0)
        mine = [ref.echo(np.full(MiB // 4, float(i))).result(10) for i in range(8)]
        assert [int(a[0]) for a in mine] == list(range(8))
        # each argument is let go of once the worker drops its request, at the latest
        # while the next call runs: the driver needs at most two segments
        assert len(segments_of(os.getpid())) <= 2
        assert ref.segments().result(10) == 2
