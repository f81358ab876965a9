"""Actors and refs across worker processes: the API of the core issue."""

from __future__ import annotations

import asyncio
import pickle
import threading

import pytest

from actors import (
    ActorCrashedError,
    ActorRef,
    ActorStoppedError,
    RemoteTraceback,
    SerializationError,
)
from runtime import ActorSystem
from tests.helpers import BadInit, Counter, Waiter, write_whole


def test_issue_example(system: ActorSystem) -> None:
    counter = system.spawn(Counter, 10, name="counter")
    assert counter.add(5).result(timeout=5) == 15
    counter.add.tell(1)
    assert system.lookup("counter").add(0).result(timeout=5) == 16
    assert counter.stop().result(timeout=5) is None


def test_on_start_runs_before_messages_and_on_stop_at_stop(system, tmp_path) -> None:
    marker = tmp_path / "stopped"
    counter = system.spawn(Counter, 3, stop_marker=str(marker))
    assert counter.was_started().result(timeout=5) is True
    counter.add(4).result(timeout=5)
    system.stop(counter, timeout=5)
    assert marker.read_text() == "7"


def test_tell_and_ask_go_to_receive(system: ActorSystem) -> None:
    counter = system.spawn(Counter)
    counter.tell(5)
    counter.tell(6)
    assert counter.ask("value", timeout=5) == 11  # FIFO: the tells came first


def test_placement_least_loaded_and_pinned() -> None:
    with ActorSystem(workers=2) as system:
        pids = {system.spawn(Counter).pid().result(timeout=5) for _ in range(4)}
        assert len(pids) == 2  # spread over both workers
        pinned = [system.spawn(Counter, worker=1) for _ in range(3)]
        assert {ref.slot for ref in pinned} == {1}
        assert len({ref.pid().result(timeout=5) for ref in pinned}) == 1


@pytest.mark.parametrize("worker", [-1, 2, "0", True, 1.0])
def test_bad_pin_is_rejected_naming_the_value(system: ActorSystem, worker: object) -> None:
    with pytest.raises(ValueError, match=f"worker={worker!r}"):
        system.spawn(Counter, worker=worker)


def test_names_are_unique_and_lookup_names_the_name(system: ActorSystem) -> None:
    system.spawn(Counter, name="only")
    with pytest.raises(ValueError, match="'only' already exists"):
        system.spawn(Counter, name="only")
    with pytest.raises(LookupError, match="'nobody'"):
        system.lookup("nobody")


def test_refs_travel_in_messages_and_compare_equal(system: ActorSystem) -> None:
    counter = system.spawn(Counter, name="c")
    echoed = counter.echo(counter).result(timeout=5)
    assert echoed == counter and hash(echoed) == hash(counter)
    assert counter.me().result(timeout=5) == counter
    assert pickle.loads(pickle.dumps(counter)).add(2).result(timeout=5) == 2
    assert echoed.name == "c"


def test_async_methods_await_other_actors_across_workers(system: ActorSystem) -> None:
    counter = system.spawn(Counter, worker=0)
    waiter = system.spawn(Waiter, worker=1)
    assert waiter.relay(counter, 200).result(timeout=10) == 200
    assert waiter.ask_receive(counter).result(timeout=5) == 200


def test_awaiting_does_not_block_the_other_actors_of_a_worker(system, tmp_path) -> None:
    flag = tmp_path / "flag"
    waiter = system.spawn(Waiter, worker=0)
    neighbour = system.spawn(Counter, worker=0)
    pending = waiter.wait_for_file(str(flag))
    assert neighbour.add(1).result(timeout=5) == 1  # served while waiter is mid-method
    assert not pending.done()
    write_whole(flag, "done")
    assert pending.result(timeout=5) == "done"


def test_system_calls_from_inside_an_actor(system: ActorSystem) -> None:
    waiter = system.spawn(Waiter)
    assert waiter.spawn_and_call().result(timeout=10) == (42, "child")
    with pytest.raises(LookupError):
        system.lookup("child")  # the actor stopped it


def test_blocking_result_inside_an_actor_says_to_await(system: ActorSystem) -> None:
    other = system.spawn(Counter, worker=1)
    blocker = system.spawn(Counter, worker=0)
    with pytest.raises(RuntimeError, match="await"):
        blocker.call_blocking(other).result(timeout=5)
    assert blocker.add(1).result(timeout=5) == 1  # and the worker goes on


def test_futures_can_be_awaited_from_the_driver(system: ActorSystem) -> None:
    counter = system.spawn(Counter)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(counter.add(1) for _ in range(50))))

    assert sorted(asyncio.run(main())) == list(range(1, 51))


def test_done_callbacks_fire_without_anyone_waiting(system: ActorSystem) -> None:
    counter = system.spawn(Counter)
    fired = threading.Event()
    counter.add(1).add_done_callback(lambda f: fired.set())
    assert fired.wait(timeout=5)


def test_many_threads_share_one_ref(system: ActorSystem) -> None:
    counter = system.spawn(Counter)
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(300):
                counter.add(1).result(timeout=10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert counter.get().result(timeout=5) == 1200


# -- errors ------------------------------------------------------------------------


def test_remote_exception_keeps_type_and_traceback(system: ActorSystem) -> None:
    counter = system.spawn(Counter)
    with pytest.raises(KeyError) as info:
        counter.fail(KeyError("boom")).result(timeout=5)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in fail" in info.value.__cause__.text


def test_constructor_error_reaches_the_caller(system: ActorSystem) -> None:
    with pytest.raises(KeyError, match="no good"):
        system.spawn(BadInit, "no good")


def test_unknown_and_private_methods_raise_attribute_error(system: ActorSystem) -> None:
    counter = system.spawn(Counter)
    with pytest.raises(AttributeError, match="no method 'nope'"):
        counter.nope().result(timeout=5)
    with pytest.raises(AttributeError, match="private"):
        counter._secret()
    with pytest.raises(AttributeError, match="cannot be called"):
        counter.on_stop().result(timeout=5)


def test_unpicklable_argument_raises_at_the_call_site(system: ActorSystem) -> None:
    counter = system.spawn(Counter)
    with pytest.raises(SerializationError, match=r"argument 0 \(lock\)"):
        counter.echo(threading.Lock())
    with pytest.raises(SerializationError, match="lock"):
        system.spawn(Counter, threading.Lock())
    assert counter.add(1).result(timeout=5) == 1


def test_unpicklable_return_value_is_an_error_not_a_hang(system: ActorSystem) -> None:
    counter = system.spawn(Counter)
    with pytest.raises(
        SerializationError, match=r"make_lock\(\) returned a value that does not pickle"
    ):
        counter.make_lock().result(timeout=5)
    assert counter.add(1).result(timeout=5) == 1


def test_timeout_raises_timeout_error(system: ActorSystem, tmp_path) -> None:
    flag = tmp_path / "flag"
    waiter = system.spawn(Waiter)
    pending = waiter.wait_for_file(str(flag))
    with pytest.raises(TimeoutError, match="wait_for_file"):
        pending.result(timeout=0.2)
    write_whole(flag, "late")  # the actor may look at any moment
    assert pending.result(timeout=5) == "late"  # the call itself went on


def test_calls_to_a_stopped_actor_raise_stopped(system: ActorSystem) -> None:
    counter = system.spawn(Counter, name="gone")
    queued = [counter.add(1) for _ in range(5)]
    counter.stop().result(timeout=5)
    assert [f.result(timeout=5) for f in queued] == [1, 2, 3, 4, 5]
    with pytest.raises(ActorStoppedError, match="not running"):
        counter.add(1).result(timeout=5)
    assert counter.stop().result(timeout=5) is None  # stopping twice is harmless
    with pytest.raises(LookupError):
        system.lookup("gone")


def test_refs_fail_cleanly_after_shutdown() -> None:
    with ActorSystem(workers=1) as system:
        counter = system.spawn(Counter)
    with pytest.raises(ActorStoppedError, match="not running"):
        counter.add(1)


def test_crash_of_the_worker_fails_pending_calls_with_the_cause(system: ActorSystem) -> None:
    victim = system.spawn(Counter, worker=1)
    with pytest.raises(ActorCrashedError, match="exited with code 7") as info:
        victim.exit(7).result(timeout=10)
    assert "worker 1" in info.value.cause
    survivor = system.spawn(Counter, worker=1)  # the slot has a new worker
    assert survivor.add(1).result(timeout=10) == 1
    assert victim.add(1).result(timeout=10) == 1  # restarted: a fresh incarnation


def test_a_temporary_actor_is_not_restarted(system: ActorSystem) -> None:
    victim = system.spawn(Counter, worker=1, restart="temporary")
    with pytest.raises(ActorCrashedError):
        victim.exit(7).result(timeout=10)
    with pytest.raises(ActorStoppedError, match="not running"):
        victim.add(1).result(timeout=10)


def test_unhandled_message_type(system: ActorSystem) -> None:
    waiter = system.spawn(Waiter)
    with pytest.raises(NotImplementedError, match="Waiter does not define receive"):
        waiter.ask("hello", timeout=5)


def test_ref_must_be_an_actor_class(system: ActorSystem) -> None:
    with pytest.raises(TypeError, match="Actor subclass"):
        system.spawn(int)  # type: ignore[arg-type]
    assert isinstance(system.spawn(Counter), ActorRef)
