"""The cluster benchmark: hosts made of network namespaces on one machine (root only).

```
 host a: dovecote head, the driver, the raw client      hosts b, c, d: dovecote node (1 worker)
         │ tcp + CURVE over a bridge                          host b also: the raw CURVE server
```

- **cross-host ask p50**: sequential asks of a small pickled int from the driver in a
  to an actor on node b, beside raw pyzmq (DEALER in a, ROUTER in b, both CURVE with a
  ZAP allow-list, the server unpickling and pickling again), rounds alternated.
- **map over 3 nodes**: 1M tiny items (``abs``) and 40 CPU-bound tasks of 50 ms CPU
  each. Worker use = (sum of the tasks' CPU time) / (wall x workers); for the tiny map,
  the CPU time the workers used is measured from outside (psutil).
- **node loss**: SIGKILL the host holding a permanent actor, then time until a call on
  the same ref is answered by its new incarnation elsewhere.

``python -m bench._cluster`` prints the lines; ``run_cluster_bench()`` returns them.
The module imports only the standard library at the top: workers import it to run
``spin``. Its subprocesses are this module again (``python -m bench._cluster ROLE``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

ROUNDS = 5  # latency rounds per side, alternated
CALLS = 2000  # asks per round
WARMUP = 300
MAP_ITEMS = 1_000_000
CPU_TASKS = 40
CPU_MS = 50.0
LOSS_TRIALS = 3
RAW_PORT = 7600
CALL_TIMEOUT = 60.0


def spin(ms: float, _item: object = None) -> float:
    """Spins for ``ms`` milliseconds of this process's CPU time; returns the CPU time used.
    (``_item``: the map's item, when mapped through a partial.)"""
    start = time.process_time()
    while time.process_time() - start < ms / 1000:
        pass
    return time.process_time() - start


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def _quantiles(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[round(q * (len(ordered) - 1))] / 1000  # noqa: E731
    return {"p50": pick(0.5), "p99": pick(0.99)}


# -- the roles run inside the hosts ---------------------------------------------------------


def _raw_server(cfg: dict[str, Any]) -> None:
    """A ROUTER with CURVE and an allow-list: unpickles each request and pickles it back."""
    import pickle

    import zmq
    import zmq.auth
    from zmq.auth.thread import ThreadAuthenticator

    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="bench", location=cfg["authorized"])
    sock = ctx.socket(zmq.ROUTER)
    sock.curve_server = True
    sock.curve_publickey, sock.curve_secretkey = zmq.auth.load_certificate(cfg["server_secret"])
    sock.zap_domain = b"bench"
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.linger = 0
    sock.bind(cfg["endpoint"])
    _emit("listening")
    try:
        while True:
            ident, body = sock.recv_multipart()
            sock.send_multipart([ident, pickle.dumps(pickle.loads(body), 5)])
    finally:
        sock.close()
        auth.stop()
        ctx.term()


def _raw_client(cfg: dict[str, Any]) -> None:
    """Answers ``{"n": N}`` commands with the quantiles of N sequential round trips."""
    import pickle

    import zmq
    import zmq.auth

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = int(CALL_TIMEOUT * 1000)
    sock.curve_serverkey, _ = zmq.auth.load_certificate(cfg["server_public"])
    sock.curve_publickey, sock.curve_secretkey = zmq.auth.load_certificate(cfg["client_secret"])
    sock.connect(cfg["endpoint"])
    _emit("ready")
    try:
        for line in sys.stdin:
            n = json.loads(line)["n"]
            samples = []
            for i in range(n):
                t0 = time.perf_counter_ns()
                sock.send(pickle.dumps(i, 5))
                if pickle.loads(sock.recv()) != i:
                    raise RuntimeError("raw server answered with another number")
                samples.append(time.perf_counter_ns() - t0)
            _emit("latency", **_quantiles(samples))
    finally:
        sock.close()
        ctx.term()


def _wait_nodes(system: Any, names: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        nodes = system.nodes()
        alive = {getattr(n, "name", None) or n["name"] for n in nodes if _alive(n)}
        if set(names) <= alive:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes {names} not all alive within {timeout} s: {nodes}")
        time.sleep(0.1)


def _alive(node: Any) -> bool:
    return bool(node["alive"] if isinstance(node, dict) else node.alive)


def _call_until_answered(ref: Any, since: float) -> tuple[int, list[str]]:
    """Calls ``ref.pid()`` until one is answered; the errors met on the way."""
    errors = []
    while True:
        try:
            return ref.pid().result(5.0), errors
        except Exception as exc:  # ActorCrashedError, TimeoutError: the node is being lost
            errors.append(type(exc).__name__)
            if time.time() - since > CALL_TIMEOUT:
                raise
            time.sleep(0.005)


def _dove_driver(cfg: dict[str, Any]) -> None:
    """The dovecote side, driven by commands on stdin."""
    import functools

    from bench._actors import Echo
    from runtime import ActorSystem

    with ActorSystem(address=cfg["address"], keys=cfg["keys"]) as system:
        _wait_nodes(system, cfg["nodes"])
        echo = system.spawn(Echo, node=cfg["nodes"][0])
        echo.echo(0).result(CALL_TIMEOUT)
        _emit("ready")
        for line in sys.stdin:
            cmd = json.loads(line)
            what = cmd["do"]
            if what == "latency":
                samples = []
                for i in range(cmd["n"]):
                    t0 = time.perf_counter_ns()
                    if echo.echo(i).result(CALL_TIMEOUT) != i:
                        raise RuntimeError("the echo actor answered with another number")
                    samples.append(time.perf_counter_ns() - t0)
                _emit("latency", **_quantiles(samples))
            elif what == "map_tiny":
                n = cmd["n"]
                t0 = time.perf_counter()
                total = sum(system.map(abs, range(-n // 2, n - n // 2), timeout=CALL_TIMEOUT))
                wall = time.perf_counter() - t0
                expected = sum(abs(x) for x in range(-n // 2, n - n // 2))
                _emit("mapped", wall=wall, ok=total == expected)
            elif what == "map_cpu":
                task = functools.partial(spin, cmd["ms"])
                t0 = time.perf_counter()
                cpu = list(system.map(task, range(cmd["n"]), chunksize=1, timeout=CALL_TIMEOUT))
                _emit(
                    "mapped", wall=time.perf_counter() - t0, cpu=sum(cpu), ok=len(cpu) == cmd["n"]
                )
            elif what == "place":
                ref = system.spawn(Echo)  # permanent: restarted elsewhere on a node loss
                old = ref.pid().result(CALL_TIMEOUT)
                _emit("placed", pid=old)
                killed_at = json.loads(sys.stdin.readline())["killed_at"]
                pid, errors = _call_until_answered(ref, killed_at)
                if pid == old:
                    raise RuntimeError("the killed incarnation answered")
                _emit("recovered", seconds=time.time() - killed_at, pid=pid, errors=errors)
                system.stop(ref, timeout=CALL_TIMEOUT)
            elif what == "quit":
                break
    _emit("bye")


ROLES = {"raw-server": _raw_server, "raw-client": _raw_client, "driver": _dove_driver}


# -- the benchmark, run from the machine's own namespace --------------------------------


def _cli_has_cluster() -> str | None:
    """Why the dovecote CLI cannot run a cluster (None when it can)."""
    import subprocess

    from tests.netns import DOVECOTE, clean_env

    if not os.path.exists(DOVECOTE):
        return f"{DOVECOTE} is not installed"
    for command in (["head", "--help"], ["node", "--help"], ["keys", "--help"]):
        done = subprocess.run(
            [DOVECOTE, *command],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(),
            check=False,
        )
        if done.returncode != 0:
            return f"`dovecote {' '.join(command)}` fails: {done.stderr.strip()[-200:]}"
    return None


def _raw_keys(directory: str) -> dict[str, str]:
    import shutil

    import zmq.auth

    os.makedirs(os.path.join(directory, "authorized"))
    zmq.auth.create_certificates(directory, "server")
    zmq.auth.create_certificates(directory, "client")
    shutil.copy(os.path.join(directory, "client.key"), os.path.join(directory, "authorized"))
    return {
        "authorized": os.path.join(directory, "authorized"),
        "server_secret": os.path.join(directory, "server.key_secret"),
        "server_public": os.path.join(directory, "server.key"),
        "client_secret": os.path.join(directory, "client.key_secret"),
    }


def _role(cluster: Any, host: str, role: str, cfg: dict[str, Any]) -> Any:
    return cluster.driver(host, ["-m", "bench._cluster", role, json.dumps(cfg)])


def _worker_cpu(cluster: Any) -> float:
    """CPU seconds used so far by every worker of every node (the nodes' children)."""
    import psutil

    total = 0.0
    for node in cluster.nodes.values():
        try:
            children = psutil.Process(node.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for child in children:
            try:
                times = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def _latency(lines: list[str], raw: Any, dove: Any) -> None:
    for drv, n in ((raw, WARMUP), (dove, WARMUP)):
        drv.send({"n": n, "do": "latency"})
        drv.expect("latency", CALL_TIMEOUT * 5)
    raws, doves = [], []
    for _ in range(ROUNDS):
        raw.send({"n": CALLS})
        raws.append(raw.expect("latency", CALL_TIMEOUT * 10))
        dove.send({"do": "latency", "n": CALLS})
        doves.append(dove.expect("latency", CALL_TIMEOUT * 10))
    p50 = statistics.median(d["p50"] for d in doves)
    raw50 = statistics.median(r["p50"] for r in raws)
    p99 = statistics.median(d["p99"] for d in doves)
    raw99 = statistics.median(r["p99"] for r in raws)
    verdict = "PASS" if p50 <= 1.3 * raw50 else "MISS"
    lines.append(
        f"cross-host ask p50: dovecote {p50:.1f} us, raw pyzmq tcp+CURVE {raw50:.1f} us, "
        f"ratio {p50 / raw50:.2f}x (target <= 1.3x: {verdict}); "
        f"p99 {p99:.1f} us vs {raw99:.1f} us; median of {ROUNDS} rounds of {CALLS} calls"
    )


def _maps(lines: list[str], cluster: Any, dove: Any, workers: int) -> None:
    cores = os.cpu_count() or 1
    cpu0 = _worker_cpu(cluster)
    dove.send({"do": "map_tiny", "n": MAP_ITEMS})
    tiny = dove.expect("mapped", 600)
    used = _worker_cpu(cluster) - cpu0
    lines.append(
        f"map of {MAP_ITEMS:,} tiny items over {workers} nodes: {tiny['wall']:.2f} s, "
        f"{MAP_ITEMS / tiny['wall']:,.0f} items/s, results {'ok' if tiny['ok'] else 'WRONG'}; "
        f"worker CPU / (wall x workers) = {used / (tiny['wall'] * workers):.2f}"
    )
    dove.send({"do": "map_cpu", "n": CPU_TASKS, "ms": CPU_MS})
    cpu = dove.expect("mapped", 600)
    use = cpu["cpu"] / (cpu["wall"] * workers)
    usable = min(workers, cores)
    lines.append(
        f"map of {CPU_TASKS} CPU tasks x {CPU_MS:.0f} ms over {workers} nodes: "
        f"{cpu['wall']:.2f} s, task CPU {cpu['cpu']:.2f} s; worker use {use:.2f} "
        f"(target >= 0.9: {'PASS' if use >= 0.9 else 'MISS'}; with {cores} cores, "
        f"{workers} workers can reach at most {usable / workers:.2f}); "
        f"per usable core: {cpu['cpu'] / (cpu['wall'] * usable):.2f}"
    )


def _node_loss(lines: list[str], cluster: Any, dove: Any) -> None:
    import psutil

    lab = cluster.lab
    figures = []
    for _ in range(LOSS_TRIALS):
        dove.send({"do": "place"})
        placed = dove.expect("placed", CALL_TIMEOUT)
        host = next(
            (h for h in cluster.nodes if placed["pid"] in lab.pids(h)),
            None,
        )
        if host is None:
            raise RuntimeError(f"the actor's worker {placed['pid']} is in no node's host")
        killed_at = time.time()
        lab.kill_all(host)
        dove.send({"killed_at": killed_at})
        recovered = dove.expect("recovered", CALL_TIMEOUT * 2)
        if psutil.pid_exists(placed["pid"]) and placed["pid"] in lab.pids(host):
            raise RuntimeError("the killed worker is still alive")
        figures.append(recovered["seconds"])
        # Bring the host back as a fresh node for the next trial.
        deadline = time.monotonic() + 20
        while lab.kill_all(host) and time.monotonic() < deadline:
            time.sleep(0.05)
        cluster.nodes[host].wait(timeout=20)
        cluster.start_node(host)
    median = statistics.median(figures)
    lines.append(
        f"node loss to its permanent actor answering elsewhere: median {median:.2f} s "
        f"(trials: {', '.join(f'{s:.2f}' for s in figures)}; target <= 2 s: "
        f"{'PASS' if median <= 2.0 else 'MISS'})"
    )


def run_cluster_bench() -> list[str]:
    """Runs every cluster metric; returns printable lines (a skip line without root)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.netns import Cluster, NetLab, capability_problem

    reason = capability_problem()
    if reason:
        return [f"cluster benchmark skipped: {reason}"]
    lines = [
        f"cluster benchmark: hosts are network namespaces on one machine, {os.cpu_count()} cores"
    ]
    no_cluster = _cli_has_cluster()
    with tempfile.TemporaryDirectory(prefix="dvc-bench-") as work, NetLab(4) as lab:
        cluster = Cluster(lab, work)
        try:
            keys = _raw_keys(os.path.join(work, "raw-keys"))
            endpoint = f"tcp://{lab.address('b')}:{RAW_PORT}"
            server = _role(cluster, "b", "raw-server", {**keys, "endpoint": endpoint})
            server.expect("listening", 30)
            raw = _role(cluster, "a", "raw-client", {**keys, "endpoint": endpoint})
            raw.expect("ready", 30)
            if no_cluster:
                raw.send({"n": WARMUP})
                raw.expect("latency", 60)
                raw.send({"n": CALLS})
                got = raw.expect("latency", 60)
                lines.append(
                    f"raw pyzmq tcp+CURVE ping-pong between namespaces: p50 {got['p50']:.1f} us, "
                    f"p99 {got['p99']:.1f} us ({CALLS} calls)"
                )
                lines.append(f"dovecote cluster metrics skipped: {no_cluster}")
                return lines
            cluster.make_keys()
            cluster.start_head()
            nodes = ["b", "c", "d"]
            for host in nodes:
                cluster.start_node(host)
            dove = _role(
                cluster, "a", "driver",
                {"address": cluster.join, "keys": cluster.keys, "nodes": nodes},
            )  # fmt: skip
            dove.expect("ready", 120)
            _latency(lines, raw, dove)
            _maps(lines, cluster, dove, len(nodes))
            _node_loss(lines, cluster, dove)
            dove.send({"do": "quit"})
            dove.expect("bye", 60)
        except (RuntimeError, TimeoutError, AssertionError) as exc:
            lines.append(f"cluster benchmark failed: {exc}")  # with the drivers' and logs' tails
        finally:
            cluster.close()
    return lines


def main(argv: list[str]) -> int:
    if argv:
        ROLES[argv[0]](json.loads(argv[1]))
        return 0
    for line in run_cluster_bench():
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
