"""The cluster across hosts made of network namespaces (root only; skipped without it).

```
 host a (namespace)                     host b                    host c
 dovecote head  :7470-7472  ◀── join ── dovecote node "b"    ──── dovecote node "c"
 driver (python -m tests.test_cluster_netns SCENARIO)       worker :7480           worker :7480
     │ JSON lines on stdout, commands on stdin
 pytest (the machine's own namespace): builds the lab, kills nodes, takes links down
```

Each scenario's driver is a function below (``_scenario_*``), run as this module's
``__main__`` inside host a; it prints JSON events and the test asserts on them. An
actor or task tells where it ran by its network namespace (``/proc/self/ns/net``),
which the test maps back to a host. Nothing sleeps and hopes: every wait polls a
condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import functools
import json
import os
import pickle
import secrets
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actors import Actor, ActorRef
from tests import netns
from tests.netns import (
    HEAD_PORT,
    NODE_PORT_BASE,
    Cluster,
    Driver,
    NetLab,
    wait_until,
)

pytestmark = pytest.mark.slow

SELF = "tests.test_cluster_netns"
netlab = netns.netlab  # the fixture: labs of namespaced hosts, skipped without root


# -- what runs on the nodes ------------------------------------------------------------


def _net() -> str:
    """This process's network namespace, e.g. ``net:[4026532301]``."""
    return os.readlink("/proc/self/ns/net")


class Where(Actor):
    """Says where it runs and which incarnation it is."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(8)

    def where(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "net": _net(), "token": self.token}

    async def nap(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "woke"

    async def ask_other(self, other: ActorRef) -> dict[str, Any]:
        return await other.where()

    def shout(self, topic: str, obj: Any) -> None:
        self.system.publish(topic, obj)


def tagged(x: int) -> tuple[int, int, str]:
    return x, x * x, _net()


def burn(x: int, ms: float) -> tuple[int, str, float]:
    """Spins the CPU for ``ms`` milliseconds of this process's CPU time; returns where,
    and when it finished (wall clock: the test's processes share it)."""
    start = time.process_time()
    while time.process_time() - start < ms / 1000:
        pass
    return x, _net(), time.time()


class Poison:
    """Unpickling it creates ``path``: proof that a receiver unpickled it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


# -- the drivers (run inside host a as this module's __main__) ----------------------------


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=str), flush=True)


def _command() -> dict[str, Any]:
    """The next JSON line the test writes to our stdin."""
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("the test closed our stdin")
    return json.loads(line)


def _field(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    return getattr(node, key, None)


def _nodes(system: Any) -> list[dict[str, Any]]:
    return [
        {k: _field(n, k) for k in ("name", "address", "slots", "alive")} for n in system.nodes()
    ]


def _wait_nodes(system: Any, names: list[str], timeout: float = 45.0) -> list[dict[str, Any]]:
    def joined() -> list[dict[str, Any]] | None:
        nodes = _nodes(system)
        alive = {n["name"] for n in nodes if n["alive"]}
        return nodes if set(names) <= alive else None

    return wait_until(joined, timeout, f"nodes {names} alive in system.nodes()", 0.1)


def _connect(cfg: dict[str, Any]) -> Any:
    from runtime import ActorSystem

    return ActorSystem(address=cfg["address"], keys=cfg["keys"])


def _call_until_moved(ref: ActorRef, old_token: str, timeout: float) -> tuple[dict, list[str]]:
    """Calls ``ref.where()`` until a new incarnation answers; the errors seen on the way."""
    errors: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            here = ref.where().result(timeout=3)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        else:
            if here["token"] != old_token:
                return here, errors
        if time.monotonic() > deadline:
            raise TimeoutError(f"no new incarnation within {timeout} s; errors: {errors[-5:]}")
        time.sleep(0.05)


def _outcome(future: Any, timeout: float) -> dict[str, str]:
    try:
        return {"value": repr(future.result(timeout=timeout))}
    except Exception as exc:
        return {"type": type(exc).__name__, "message": str(exc)}


def _scenario_join(cfg: dict[str, Any]) -> None:
    with _connect(cfg) as system:
        nodes = _wait_nodes(system, cfg["nodes"])
        _emit("joined", nodes=nodes)
        pinned = {name: system.spawn(Where, node=name) for name in cfg["nodes"]}
        where = {name: ref.where().result(timeout=20) for name, ref in pinned.items()}
        b, c = (pinned[name] for name in cfg["nodes"][:2])
        across = b.ask_other(c).result(timeout=20)  # node to node, one hop
        free = system.spawn(Where).where().result(timeout=20)
        squares = list(system.map(tagged, range(2000), timeout=60))
        spread = list(system.map(functools.partial(burn, ms=40), range(16), chunksize=1))
        with system.subscribe("netns.") as sub:
            c.shout("netns.hello", {"from": "c"}).result(timeout=20)
            topic, obj = sub.get(timeout=20)
        _emit(
            "result",
            nodes=_nodes(system),
            where=where,
            across=across,
            free=free,
            squares_ok=[(x, y) for x, y, _ in squares] == [(x, x * x) for x in range(2000)],
            squares_nets=sorted({net for *_, net in squares}),
            spread_nets=sorted({net for _, net, _ in spread}),
            bus=[topic, obj],
        )


def _scenario_kill(cfg: dict[str, Any]) -> None:
    n, ms = cfg["tasks"], cfg["ms"]
    with _connect(cfg) as system:
        _wait_nodes(system, cfg["nodes"])
        ref = system.spawn(Where)  # permanent by default
        before = ref.where().result(timeout=20)
        napping = ref.nap(120)
        seen: Counter[int] = Counter()
        finished: list[tuple[str, float]] = []
        killed_at = None
        results = system.imap_unordered(functools.partial(burn, ms=ms), range(n), chunksize=1)
        for x, net, at in results:
            seen[x] += 1
            finished.append((net, at))
            if killed_at is None and len(seen) == cfg["kill_after"]:
                _emit("mid-map", where=before, done=len(seen))
                killed_at = _command()["killed_at"]
        assert killed_at is not None
        crashed = _outcome(napping, 60)
        here, errors = _call_until_moved(ref, before["token"], 60)
        _emit(
            "result",
            before=before,
            after=here,
            errors=errors,
            napping=crashed,
            missing=[x for x in range(n) if x not in seen],
            twice=[x for x, k in seen.items() if k > 1],
            nets_after=sorted({net for net, at in finished if at > killed_at}),
            ran_after=sum(at > killed_at for _, at in finished),
            nodes=_nodes(system),
        )


def _watch(ref: ActorRef, seconds: float) -> list[dict[str, Any]]:
    """Every answer of ``ref.where()`` (or its error), called each 0.1 s for ``seconds``."""
    answers: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            answers.append(ref.where().result(timeout=5))
        except Exception as exc:
            answers.append({"error": f"{type(exc).__name__}: {exc}"})
        time.sleep(0.1)
    return answers


def _scenario_link(cfg: dict[str, Any]) -> None:
    """An actor whose host the test cuts off, then maybe restores (``watch`` > 0)."""
    with _connect(cfg) as system:
        _wait_nodes(system, cfg["nodes"])
        ref = system.spawn(Where)
        before = ref.where().result(timeout=20)
        napping = ref.nap(120)
        _emit("placed", where=before)
        _command()  # the host is cut off
        here, errors = _call_until_moved(ref, before["token"], 60)
        _emit("moved", where=here, at=time.time())
        crashed = _outcome(napping, 60)
        answers = []
        if cfg["watch"]:
            _command()  # the host is back
            answers = _watch(ref, cfg["watch"])
        _emit("answers", before=before, after=here, errors=errors, napping=crashed, answers=answers)
        _command()  # the test has looked at the node process
        _emit("result", nodes=_nodes(system))


def _scenario_blip(cfg: dict[str, Any]) -> None:
    with _connect(cfg) as system:
        _wait_nodes(system, cfg["nodes"])
        ref = system.spawn(Where)
        _emit("placed", where=ref.where().result(timeout=20))
        _command()  # the link was down for a moment
        answers = _watch(ref, cfg["watch"])
        _emit("result", answers=answers, nodes=_nodes(system))


def _scenario_rogue_victims(cfg: dict[str, Any]) -> None:
    """A legitimate driver: an actor on node b, and a subscription a rogue may try to feed."""
    with _connect(cfg) as system:
        _wait_nodes(system, cfg["nodes"])
        ref = system.spawn(Where, node=cfg["nodes"][0])
        where = ref.where().result(timeout=20)
        with system.subscribe("") as sub:
            _emit("ready", where=where)
            _command()  # the rogue has had its go
            got: list[Any] = []
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                try:
                    topic, obj = sub.get(timeout=0.2)
                except TimeoutError:
                    continue
                if not topic.startswith("dovecote."):
                    got.append([topic, repr(obj)])
        still = ref.where().result(timeout=20)
        _emit("result", foreign_events=got, still=still == where)


def _scenario_rogue_socket(cfg: dict[str, Any]) -> None:
    """Raw pyzmq: pickled poison at every tcp endpoint, with an unlisted key and without CURVE."""
    import zmq
    import zmq.auth
    from zmq.utils.monitor import recv_monitor_message

    rogue_pub, rogue_secret = zmq.auth.load_certificate(cfg["rogue_secret"])
    server_pub, _ = zmq.auth.load_certificate(cfg["server_public"])
    poison = pickle.dumps(Poison(cfg["marker"]))
    ctx = zmq.Context()
    report = {}
    try:
        for label, endpoint, kind in cfg["targets"]:
            for mechanism in ("curve", "null"):
                sock = ctx.socket(zmq.PUB if kind == "pub" else zmq.DEALER)
                sock.linger = 0
                if mechanism == "curve":
                    sock.curve_serverkey = server_pub
                    sock.curve_publickey = rogue_pub
                    sock.curve_secretkey = rogue_secret
                monitor = sock.get_monitor_socket()
                sock.connect(endpoint)
                events: list[str] = []
                replies = 0
                deadline = time.monotonic() + 1.0  # a refused handshake takes milliseconds
                while time.monotonic() < deadline:
                    if kind == "pub":
                        sock.send_multipart([b"evil.topic", poison])
                    else:
                        # The pipe comes and goes with each refused handshake.
                        with contextlib.suppress(zmq.Again):
                            sock.send_multipart([b"\x01", poison, poison], zmq.NOBLOCK)
                        if sock.poll(50, zmq.POLLIN):
                            sock.recv_multipart()
                            replies += 1
                    while monitor.poll(0):
                        ev = recv_monitor_message(monitor)["event"]
                        events.append(zmq.Event(ev).name)
                    time.sleep(0.05)
                sock.disable_monitor()
                monitor.close()
                sock.close()
                report[f"{label}/{mechanism}"] = {"replies": replies, "events": sorted(set(events))}
    finally:
        ctx.destroy(linger=0)  # closes what an error left open: term() would wait for it
    _emit("result", report=report, marker=os.path.exists(cfg["marker"]))


def _scenario_rogue_system(cfg: dict[str, Any]) -> None:
    """An ActorSystem holding a key that is not on the allow-list."""
    try:
        with _connect(cfg) as system:
            _emit("connected")
            value = system.spawn(Where).where().result(timeout=10)
            _emit("result", called=True, value=value)
    except Exception as exc:
        _emit("result", called=False, error=f"{type(exc).__name__}: {exc}")


def _scenario_echo_server(cfg: dict[str, Any]) -> None:
    """The lab's own check (no dovecote): a CURVE ROUTER with an allow-list, echoing."""
    import zmq
    import zmq.auth
    from zmq.auth.thread import ThreadAuthenticator

    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="dvc", location=cfg["authorized"])
    public, secret = zmq.auth.load_certificate(cfg["server_secret"])
    sock = ctx.socket(zmq.ROUTER)
    sock.curve_server = True
    sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.zap_domain = b"dvc"
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    sock.linger = 0
    sock.bind(cfg["endpoint"])
    _emit("listening")
    try:
        while True:
            frames = sock.recv_multipart()
            sock.send_multipart(frames)
    finally:
        sock.close()
        auth.stop()
        ctx.term()


def _scenario_echo_client(cfg: dict[str, Any]) -> None:
    import zmq
    import zmq.auth

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_serverkey, _ = zmq.auth.load_certificate(cfg["server_public"])
    sock.curve_publickey, sock.curve_secretkey = zmq.auth.load_certificate(cfg["client_secret"])
    sock.connect(cfg["endpoint"])
    sock.send(b"ping")
    answered = bool(sock.poll(int(cfg["wait"] * 1000)))
    reply = sock.recv() if answered else None
    sock.close()
    ctx.term()
    _emit("result", reply=reply.decode() if reply else None)


# -- the tests -------------------------------------------------------------------------


def _inode(ns: str) -> str:
    return f"net:[{os.stat(f'/run/netns/{ns}').st_ino}]"


class World:
    """The lab, the cluster in it, and what the drivers need to know."""

    def __init__(self, lab: NetLab, cluster: Cluster) -> None:
        self.lab = lab
        self.cluster = cluster
        self.host_of = {_inode(ns): label for ns, label in zip(lab.names, lab.labels, strict=True)}
        self.cfg = {"address": cluster.join, "keys": cluster.keys, "nodes": ["b", "c"]}

    def drive(self, scenario: str, **cfg: Any) -> Driver:
        return self.cluster.driver("a", ["-m", SELF, scenario, json.dumps({**self.cfg, **cfg})])

    def host(self, where: dict[str, Any]) -> str:
        return self.host_of.get(where["net"], f"unknown {where['net']}")

    def why(self, drv: Driver | None = None) -> str:
        return drv.diagnostics() if drv else self.cluster.all_logs()


@pytest.fixture
def world(netlab: Callable[..., NetLab], tmp_path: Any) -> Iterator[World]:
    """A head in host a and a node (one worker) in each of hosts b and c."""
    if not os.path.exists(os.path.join(os.path.dirname(sys.executable), "dovecote")):
        pytest.skip("the dovecote console script is not installed in this environment")
    lab = netlab(3)
    cluster = Cluster(lab, str(tmp_path))
    try:
        cluster.make_keys()
        cluster.start_head()
        cluster.start_node("b")
        cluster.start_node("c", use_join_file=True)
        yield World(lab, cluster)
    finally:
        cluster.close()


def _kill_host(lab: NetLab, host: str) -> list[int]:
    """SIGKILLs everything in ``host`` (its node and workers), until nothing is left."""
    killed = lab.kill_all(host)
    wait_until(lambda: not lab.kill_all(host), 10, f"every process of host {host} gone")
    return killed


@pytest.mark.timeout(90)
def test_lab_hosts_reach_each_other_with_curve_and_links_go_down(
    netlab: Callable[..., NetLab], tmp_path: Any
) -> None:
    """The harness itself, with plain pyzmq: CURVE with an allow-list across the
    bridge, an unlisted key refused, a link taken down and up, everything removed."""
    import zmq.auth

    lab = netlab(3)
    keys = tmp_path / "keys"
    (keys / "rogue").mkdir(parents=True)
    zmq.auth.create_certificates(str(keys), "server")
    zmq.auth.create_certificates(str(keys), "client")
    zmq.auth.create_certificates(str(keys / "rogue"), "client")
    (keys / "authorized").mkdir()
    shutil.copy(keys / "client.key", keys / "authorized" / "client.key")
    cluster = Cluster(lab, str(tmp_path))
    try:
        endpoint = f"tcp://{lab.address('a')}:{HEAD_PORT}"
        server = cluster.driver(
            "a",
            ["-m", SELF, "echo_server", json.dumps({
                "endpoint": endpoint, "authorized": str(keys / "authorized"),
                "server_secret": str(keys / "server.key_secret"),
            })],
        )  # fmt: skip
        server.expect("listening", 30)

        def ask(host: str, secret: str, wait: float) -> str | None:
            cfg = {"endpoint": endpoint, "server_public": str(keys / "server.key"),
                   "client_secret": secret, "wait": wait}  # fmt: skip
            drv = cluster.driver(host, ["-m", SELF, "echo_client", json.dumps(cfg)])
            reply = drv.expect("result", 30 + wait)["reply"]
            assert drv.wait(10) == 0, drv.diagnostics()
            return reply

        listed = str(keys / "client.key_secret")
        assert ask("b", listed, 10) == "ping"
        assert ask("c", listed, 10) == "ping"
        assert ask("c", str(keys / "rogue" / "client.key_secret"), 2) is None
        lab.link_down("b")
        assert ask("b", listed, 2) is None
        lab.link_up("b")
        assert ask("b", listed, 10) == "ping"
        lab.link_down("c", side="switch")
        assert ask("c", listed, 2) is None
        lab.link_up("c", side="switch")
        assert ask("c", listed, 10) == "ping"
    finally:
        cluster.close()
    names = list(lab.names)
    lab.close()
    left = {*names, lab.switch} & set(os.listdir("/run/netns"))
    assert not left, f"namespaces left behind: {left}"


@pytest.mark.timeout(60)
def test_head_refuses_a_non_loopback_bind_without_keys(netlab: Callable[..., NetLab]) -> None:
    from tests.netns import DOVECOTE, clean_env

    if not os.path.exists(DOVECOTE):
        pytest.skip("the dovecote console script is not installed in this environment")
    lab = netlab(1)
    done = lab.run_to_end(
        "a", [DOVECOTE, "head", "--listen", f"{lab.address('a')}:{HEAD_PORT}"],
        timeout=30, env=clean_env(),
    )  # fmt: skip
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "key" in done.stderr.lower(), done.stderr


@pytest.mark.timeout(150)
def test_join_remote_calls_map_and_bus_across_hosts(world: World) -> None:
    drv = world.drive("join")
    joined = drv.expect("joined", 60)
    by_name = {n["name"]: n for n in joined["nodes"]}
    assert {"b", "c"} <= set(by_name), joined
    for name in ("b", "c"):
        assert world.lab.address(name) in str(by_name[name]["address"]), by_name[name]
        assert by_name[name]["alive"], by_name[name]
    result = drv.expect("result", 120)
    assert drv.wait(30) == 0, world.why(drv)
    assert world.host(result["where"]["b"]) == "b", result
    assert world.host(result["where"]["c"]) == "c", result
    assert world.host(result["across"]) == "c", result
    assert world.host(result["free"]) in ("b", "c"), result
    assert result["squares_ok"], result
    assert {world.host({"net": n}) for n in result["squares_nets"]} <= {"b", "c"}
    assert {world.host({"net": n}) for n in result["spread_nets"]} == {"b", "c"}, result
    assert result["bus"] == ["netns.hello", {"from": "c"}], result


@pytest.mark.timeout(180)
def test_node_killed_mid_map_loses_no_result_and_its_actor_answers_elsewhere(
    world: World,
) -> None:
    drv = world.drive("kill", tasks=240, ms=25, kill_after=30)
    mid = drv.expect("mid-map", 90)
    victim = world.host(mid["where"])
    assert victim in ("b", "c"), mid
    node = world.cluster.nodes[victim]
    killed = _kill_host(world.lab, victim)
    killed_at = time.time()  # once all of it is gone: a task on it may end while it is killed
    assert node.pid in killed, (node.pid, killed)
    drv.send({"killed_at": killed_at})
    result = drv.expect("result", 150)
    assert drv.wait(30) == 0, world.why(drv)
    survivor = "c" if victim == "b" else "b"
    assert result["missing"] == [] and result["twice"] == [], result
    # What finished after the kill ran on the survivor.
    assert result["ran_after"] > 0, result
    assert {world.host({"net": n}) for n in result["nets_after"]} == {survivor}, result
    assert world.host(result["after"]) == survivor, result
    assert result["napping"].get("type") == "ActorCrashedError", result["napping"]
    assert victim in result["napping"]["message"], result["napping"]  # names the node
    print(f"killed node {victim} after {mid['done']} results: no result lost or doubled; "
          f"its actor answers from {survivor}; errors on the way: {result['errors']}")  # fmt: skip


def _cut(world: World, host: str, how: str) -> None:
    if how == "freeze":  # every process of the host stopped: a node that hangs, not a link
        world.lab.kill_all(host, signal.SIGSTOP)
    else:
        world.lab.link_down(host)


def _restore(world: World, host: str, how: str) -> None:
    if how == "freeze":
        world.lab.kill_all(host, signal.SIGCONT)
    else:
        world.lab.link_up(host)


def _lose_node(world: World, how: str) -> tuple[dict[str, Any], str, Driver]:
    """An actor's host cut off (``down``), cut off and back (``flap``), or frozen and
    thawed (``freeze``) once the actor answers from the other node."""
    drv = world.drive("link", watch=0 if how == "down" else 5)
    placed = drv.expect("placed", 90)
    victim = world.host(placed["where"])
    assert victim in ("b", "c"), placed
    _cut(world, victim, how)
    cut_at = time.time()
    drv.send({"cut": how})
    moved = drv.expect("moved", 90)
    survivor = "c" if victim == "b" else "b"
    assert world.host(moved["where"]) == survivor, world.why(drv)
    print(f"{how} {victim}: actor answered from {survivor} after {moved['at'] - cut_at:.2f} s")
    if how != "down":
        _restore(world, victim, how)
        drv.send({"restored": how})
    answers = drv.expect("answers", 90)
    return {**answers, "moved": moved}, victim, drv


@pytest.mark.timeout(180)
def test_link_down_restarts_actors_elsewhere_and_the_node_exits(world: World) -> None:
    answers, victim, drv = _lose_node(world, "down")
    assert answers["napping"].get("type") == "ActorCrashedError", answers["napping"]
    assert victim in answers["napping"]["message"], answers["napping"]
    node = world.cluster.nodes[victim]
    wait_until(lambda: node.poll() is not None, 30, f"node {victim} exits after losing the head")
    assert node.returncode != 0, world.why(drv)
    wait_until(lambda: not world.lab.pids(victim), 15, f"node {victim}'s workers exit too")
    drv.send({"checked": True})
    result = drv.expect("result", 30)
    assert drv.wait(30) == 0, world.why(drv)
    listed = [n for n in result["nodes"] if n["name"] == victim]
    assert not any(n["alive"] for n in listed), result["nodes"]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["flap", "freeze"])
def test_a_node_back_after_being_lost_is_fenced_by_epoch(world: World, how: str) -> None:
    """Once a node is declared lost and its actor restarted elsewhere, nothing of its old
    incarnation is taken as current when it comes back: its link back up (``flap``),
    or its processes resumed after a freeze (``freeze``, the zombie case)."""
    answers, victim, drv = _lose_node(world, how)
    old, new = answers["before"]["token"], answers["after"]["token"]
    tokens = [a.get("token") for a in answers["answers"]]
    assert tokens, answers
    assert old not in tokens, f"the old incarnation answered after the {how}: {answers}"
    assert all(t == new for t in tokens), answers
    node = world.cluster.nodes[victim]
    # The node back either finds itself lost and exits, or is refused: then it must not
    # be listed as alive.
    exited = True
    try:
        wait_until(lambda: node.poll() is not None, 20, f"node {victim} exits")
    except TimeoutError:
        exited = False
    drv.send({"checked": True})
    result = drv.expect("result", 30)
    assert drv.wait(30) == 0, world.why(drv)
    listed_alive = [n for n in result["nodes"] if n["name"] == victim and n["alive"]]
    assert exited or not listed_alive, (result["nodes"], world.why(drv))
    if exited:
        assert node.returncode != 0, world.why(drv)
        wait_until(lambda: not world.lab.pids(victim), 15, f"node {victim}'s workers exit too")
    print(f"{how}: node {victim} {'exited' if exited else 'is refused (not listed alive)'}")


@pytest.mark.timeout(120)
def test_a_short_link_blip_is_not_a_node_loss(world: World) -> None:
    """Half a second without a link is well under 3 missed 1 s heartbeats: the node
    stays, and its actor answers from the same incarnation."""
    drv = world.drive("blip", watch=5)
    placed = drv.expect("placed", 90)
    victim = world.host(placed["where"])
    world.lab.link_down(victim)
    time.sleep(0.5)  # the length of the outage under test, not a wait for a condition
    world.lab.link_up(victim)
    drv.send({"blipped": True})
    result = drv.expect("result", 90)
    assert drv.wait(30) == 0, world.why(drv)
    tokens = {a.get("token") or a.get("error") for a in result["answers"]}
    assert tokens == {placed["where"]["token"]}, (result, world.why())
    assert world.cluster.nodes[victim].poll() is None, world.why()
    assert [n["alive"] for n in result["nodes"] if n["name"] == victim] == [True], result


@pytest.mark.timeout(150)
def test_a_key_not_on_the_allow_list_reaches_no_unpickling(world: World, tmp_path: Any) -> None:
    import zmq.auth

    rogue = tmp_path / "rogue-keys"
    rogue.mkdir()
    zmq.auth.create_certificates(str(rogue), "client")  # a well-formed key nobody listed
    shutil.copy(os.path.join(world.cluster.keys, "server.key"), rogue / "server.key")
    marker = tmp_path / f"unpickled-{secrets.token_hex(4)}"
    victims = world.drive("rogue_victims")
    ready = victims.expect("ready", 90)
    assert world.host(ready["where"]) == "b", ready
    head, b = world.lab.address("a"), world.lab.address("b")
    targets = [
        ("head-control", f"tcp://{head}:{HEAD_PORT}", "dealer"),
        ("head-bus-in", f"tcp://{head}:{HEAD_PORT + 1}", "pub"),
        ("worker-b", f"tcp://{b}:{NODE_PORT_BASE}", "dealer"),
    ]
    cfg = {
        "rogue_secret": str(rogue / "client.key_secret"),
        "server_public": str(rogue / "server.key"),
        "marker": str(marker),
        "targets": targets,
        "hang_after": 60,
    }
    attack = world.cluster.driver("c", ["-m", SELF, "rogue_socket", json.dumps(cfg)])
    report = attack.expect("result", 90)
    assert attack.wait(30) == 0, attack.diagnostics()
    victims.send({"done": True})
    seen = victims.expect("result", 60)
    assert victims.wait(30) == 0, world.why(victims)
    assert not report["marker"] and not marker.exists(), "a receiver unpickled the poison"
    for target, what in report["report"].items():
        assert what["replies"] == 0, (target, what)
        assert "HANDSHAKE_SUCCEEDED" not in what["events"], (target, what)
    assert seen["foreign_events"] == [], seen
    print("rogue handshakes:", {t: w["events"] for t, w in report["report"].items()})
    assert seen["still"], seen
    # The whole runtime with that key: it must not get to call anything.
    imposter = world.cluster.driver(
        "c", ["-m", SELF, "rogue_system", json.dumps({**world.cfg, "keys": str(rogue)})]
    )
    try:
        outcome = imposter.expect("result", 60)
    except TimeoutError:
        outcome = {"called": False, "error": "no answer within 60 s"}
    assert not outcome["called"], outcome
    # With an allowed key the same frames reach the parsers, which log each one as
    # malformed: here nothing may have got that far.
    logs = world.cluster.all_logs(limit=1_000_000).lower()
    for word in ("unpickl", "poison", "malformed"):
        assert word not in logs, world.cluster.all_logs()
    assert not marker.exists()


def _main(argv: list[str]) -> int:
    scenario, cfg = argv[0], json.loads(argv[1])
    # A driver that hangs shows its stacks on stderr (in the test's failure) and ends.
    faulthandler.dump_traceback_later(cfg.get("hang_after", 170), exit=True)
    try:
        globals()[f"_scenario_{scenario}"](cfg)
    except Exception as exc:
        import traceback

        _emit("error", error=f"{type(exc).__name__}: {exc}", tb=traceback.format_exc())
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
