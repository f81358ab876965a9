"""A cluster on one machine: a head and two nodes as processes on 127.0.0.1 with
CURVE keys; each node plays a host of its own, so every call crosses tcp://."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from actors import Actor, ActorCrashedError, ActorRef
from runtime import ActorSystem, net
from tests.cluster import Cluster, wait_for

pytestmark = pytest.mark.timeout(120)


class Where(Actor):
    def where(self) -> tuple[int, str]:
        return os.getpid(), os.environ.get("DOVECOTE_HOST_ID", "")

    async def ask_other(self, other: ActorRef) -> tuple[int, str]:
        result: tuple[int, str] = await other.where()
        return result

    def emit(self, topic: str, obj: object) -> None:
        self.system.publish(topic, obj)

    def say(self, text: str) -> None:
        print(text)

    def block(self, path: str) -> None:
        while not os.path.exists(path):  # held until the test lets go (or the node dies)
            time.sleep(0.01)


def slow_square(x: int) -> int:
    time.sleep(0.002)
    return x * x


def host() -> str:
    return os.environ.get("DOVECOTE_HOST_ID", "")


def touch(path: str) -> None:
    Path(path).touch()


class Marker:
    """Unpickling this creates a file: proof that bytes were unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return touch, (self.path,)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    monkeypatch.setenv("DOVECOTE_HOST_ID", "driver")  # the driver is a host of its own
    running = Cluster(tmp_path)
    try:
        running.start_head()
        running.start_node("na")
        running.start_node("nb")
        yield running
    finally:
        running.close()


def connect(cluster: Cluster, nodes: int = 2) -> ActorSystem:
    system = ActorSystem(nodes, address=cluster.address, keys=cluster.keys, start_timeout=30)
    assert system.workers >= nodes  # it waited for them: one worker per node here
    wait_for(lambda: len(system.nodes()) >= nodes, 30, "nodes")
    return system


def test_actors_calls_maps_and_events_span_the_nodes(cluster: Cluster) -> None:
    with connect(cluster) as system:
        assert sorted(n["name"] for n in system.nodes()) == ["na", "nb"]
        a = system.spawn(Where, node="na", name="a")
        b = system.spawn(Where, node="nb")
        assert a.where().result(timeout=10)[1] == "na"
        assert b.where().result(timeout=10)[1] == "nb"
        assert a.ask_other(b).result(timeout=10)[1] == "nb"  # actor to actor, over tcp
        assert system.lookup("a").where().result(timeout=10)[1] == "na"
        assert list(system.map(slow_square, range(2000))) == [x * x for x in range(2000)]
        futures = [system.submit(host) for _ in range(40)]  # in flight together
        hosts = {future.result(10) for future in futures}
        assert hosts == {"na", "nb"}  # tasks go to every node's workers
        with system.subscribe("cluster.") as events:
            b.emit.tell("cluster.hello", {"from": "nb"})
            assert events.get(timeout=10) == ("cluster.hello", {"from": "nb"})


def test_a_node_killed_mid_map_loses_no_result_and_its_actors_move(cluster: Cluster) -> None:
    gate = str(cluster.root / "gate")
    with connect(cluster) as system:
        actor = system.spawn(Where, node="nb")
        old_pid = actor.where().result(timeout=10)[0]
        held = actor.block(gate)  # in flight on nb when it dies
        # nb's worker is held by ``block``: its chunks wait there until nb dies
        results = system.imap_unordered(slow_square, range(3000), chunksize=10)
        first = [next(results) for _ in range(100)]
        cluster.kill_node("nb")
        rest = list(results)
        assert sorted(first + rest) == [x * x for x in range(3000)]  # every one, once
        with pytest.raises(ActorCrashedError, match="node nb"):
            held.result(timeout=15)
        pid, host = actor.where().result(timeout=15)  # the same ref, restarted on na
        assert (host, pid != old_pid) == ("na", True)
        alive = {n["name"]: n["alive"] for n in system.nodes()}
        assert alive == {"na": True, "nb": False}


def test_owned_actors_stop_with_their_driver_and_detached_ones_stay(cluster: Cluster) -> None:
    with connect(cluster) as first:
        first.spawn(Where, name="owned")
        first.spawn(Where, name="detached", lifetime="detached")
    with connect(cluster) as second:
        assert second.lookup("detached").where().result(timeout=10)[1] in ("na", "nb")
        with pytest.raises(LookupError):
            second.lookup("owned")


def test_a_client_without_an_allowed_key_never_gets_bytes_unpickled(
    cluster: Cluster, tmp_path: Path
) -> None:
    with connect(cluster) as system:
        ref = system.spawn(Where, node="na")
        system.workers  # noqa: B018 (the places are known)
        mailbox = system._transport.places[ref.slot].tcp
        assert mailbox is not None
        stranger = net.new_keys(tmp_path / "stranger")
        marker = tmp_path / "unpickled"
        payload = pickle.dumps(Marker(str(marker)))
        for endpoint in (cluster.address, mailbox):
            assert _rejected(endpoint, cluster.keys, str(stranger), payload)
        assert not marker.exists()
        assert ref.where().result(timeout=10)[1] == "na"  # the system serves on


def _rejected(endpoint: str, keys: str, stranger: str, payload: bytes) -> bool:
    """Connect with the cluster's server key but a client key of our own: the
    handshake fails (the ZAP handler's verdict) before any message is taken."""
    server = net.load_keys(keys)
    mine = net.load_keys(stranger)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.CURVE_SERVERKEY, server.server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, mine.client_public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, mine.client_secret)
        monitor = sock.get_monitor_socket()
        sock.connect(endpoint)
        sock.send_multipart([b"\x00", payload])
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                if monitor.poll(100):
                    event = recv_monitor_message(monitor)["event"]
                    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                        return True
            return False
        finally:
            sock.disable_monitor()
            monitor.close()
    finally:
        sock.close()
        ctx.term()


def test_binding_beyond_loopback_without_keys_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runtime._cli", "head", "--listen", "0.0.0.0:7999"],
        capture_output=True, text=True, timeout=30, env={**os.environ, "DOVECOTE_KEYS": ""},
    )  # fmt: skip
    assert result.returncode == 2
    assert "refusing to bind tcp://0.0.0.0:7999 without CURVE keys" in result.stderr


def test_a_node_that_loses_its_head_ends_its_workers_and_exits(cluster: Cluster) -> None:
    with connect(cluster) as system:
        pid = system.spawn(Where, node="na").where().result(timeout=10)[0]
        worker = psutil.Process(pid)
        assert cluster.head is not None
        cluster.head.kill()
        cluster.head.wait()
        assert cluster.nodes["na"].wait(15) == 3  # LOST, after three missed beats
        worker.wait(10)
        with pytest.raises(ActorCrashedError, match="head"):
            system.spawn(Where)  # the driver saw the head go too


def test_a_node_joins_through_a_file_before_the_head_is_up(tmp_path: Path) -> None:
    running = Cluster(tmp_path)
    address_file = str(tmp_path / "address")
    try:
        node = running.start_node("late", 1, "--join-file", address_file)
        running.start_head("--address-file", address_file)
        wait_for(lambda: os.path.exists(address_file), 30, "the address file")
        assert Path(address_file).read_text().strip() == running.address
        with connect(running, nodes=1) as system:
            assert system.spawn(Where).where().result(timeout=10)[1] == "late"
        assert node.poll() is None
    finally:
        running.close()
    assert not os.path.exists(address_file)  # the head removes it as it leaves


def test_status_of_a_cluster_from_another_terminal(cluster: Cluster) -> None:
    with connect(cluster) as system:
        system.spawn(Where, node="nb", name="seen")
        command = [sys.executable, "-m", "runtime._cli", "status", "--json"]
        args = ["--address", cluster.address, "--keys", cluster.keys]
        result = subprocess.run(command + args, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        assert sorted(w["slot"] for w in status["workers"]) == sorted(system._slots())
        assert [a["name"] for a in status["actors"]] == ["seen"]
        stranger = subprocess.run(  # without the keys: refused, a clear line, no hang
            [*command, "--address", cluster.address], capture_output=True, text=True, timeout=30
        )
        assert stranger.returncode == 1 and "did not answer" in stranger.stderr


def test_the_output_of_a_nodes_workers_reaches_the_driver(
    cluster: Cluster, capfd: pytest.CaptureFixture[str]
) -> None:
    with connect(cluster) as system:
        ref = system.spawn(Where, node="nb", name="talker")
        ref.say("hello from nb").result(timeout=10)
        seen = ""

        def printed() -> bool:
            nonlocal seen
            seen += capfd.readouterr().out
            return "hello from nb" in seen

        wait_for(printed, 15, "the line from nb's worker")
        line = next(x for x in seen.splitlines() if "hello from nb" in x)
        assert "Where" in line and "name=talker" in line  # the prefix names the actor


KILLED_DRIVER = """
import sys
from runtime import ActorSystem
from tests.test_cluster import Where
system = ActorSystem(address=sys.argv[1], keys=sys.argv[2], start_timeout=30)
system.spawn(Where, name="orphan")
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_killed_drivers_actors_are_stopped(cluster: Cluster) -> None:
    driver = subprocess.Popen(
        [sys.executable, "-c", KILLED_DRIVER, cluster.address, cluster.keys],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert driver.stdout is not None and driver.stdout.readline() == "ready\n"
        with connect(cluster) as system:
            assert system.lookup("orphan").where().result(timeout=10)[1] in ("na", "nb")
            driver.kill()  # no goodbye: its heartbeats stop

            def stopped() -> bool:
                try:
                    system.lookup("orphan")
                except LookupError:
                    return True
                return False

            wait_for(stopped, 30, "the dead driver's actor to be stopped")
    finally:
        driver.kill()
        driver.wait()
        if driver.stdin is not None:
            driver.stdin.close()
        if driver.stdout is not None:
            driver.stdout.close()


def test_a_slot_with_no_node_left_waits_for_one_to_join(cluster: Cluster) -> None:
    with connect(cluster) as system:
        actor = system.spawn(Where, node="nb")
        actor.where().result(timeout=10)
        cluster.kill_node("na")
        cluster.kill_node("nb")
        cluster.start_node("nc")

        def answered_from_nc() -> bool:
            try:
                return actor.where().result(timeout=10)[1] == "nc"
            except ActorCrashedError:
                return False  # the call that was in flight when its node died

        wait_for(answered_from_nc, 30, "the actor restarted on the new node")
