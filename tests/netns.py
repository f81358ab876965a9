"""Network namespaces as separate hosts, for cluster tests and benchmarks (Linux, root).

```
   namespace  dvc-<hex>-a        dvc-<hex>-b        dvc-<hex>-c      (one per "host")
              eth0 10.X.Y.1      eth0 10.X.Y.2      eth0 10.X.Y.3    lo up in each
                 │ veth             │ veth             │ veth
   namespace  dvc-<hex>-sw:  pa ────┴──── pb ──────────┴── pc   all in bridge br0
```

The switch lives in a namespace of its own, so nothing is added to the machine's
own network: the hosts reach only each other, and deleting the namespaces removes
every veth and the bridge with them. The /24 is drawn at random from 10.0.0.0/8
among those no address or route of this machine uses.

``NetLab`` is the whole lab; ``netlab`` is a pytest fixture factory that builds labs
and tears them down after the test, also when it fails. ``capability_problem()``
says why no lab can be built here (``None`` when one can), for a skip message.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

IP = shutil.which("ip") or "/usr/sbin/ip"
_CAP_NET_ADMIN = 12  # bit in /proc/self/status CapEff
_PREFIX = "dvc-"


def _ip(*args: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """Runs ``ip ARGS``; raises ``RuntimeError`` with its stderr when it fails and ``check``."""
    done = subprocess.run([IP, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _has_net_admin() -> bool:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return False


_probe_result: list[str | None] = []  # memo: the probe creates a namespace


def capability_problem() -> str | None:
    """Why namespaces cannot be built here (a skip reason), or ``None`` when they can."""
    if _probe_result:
        return _probe_result[0]
    reason: str | None = None
    if not sys.platform.startswith("linux"):
        reason = "network namespaces need Linux"
    elif not os.path.exists(IP):
        reason = "the ip command (iproute2) is not installed"
    elif not _has_net_admin():
        reason = "network namespaces need CAP_NET_ADMIN (run as root)"
    else:
        probe = f"{_PREFIX}{secrets.token_hex(4)}-probe"
        try:
            added = _ip("netns", "add", probe, check=False)
            if added.returncode != 0:
                reason = f"ip netns add fails here: {added.stderr.strip()}"
            else:
                veth = _ip(
                    "-n",
                    probe,
                    "link",
                    "add",
                    "x0",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "x1",
                    check=False,
                )
                if veth.returncode != 0:
                    reason = f"veth pairs cannot be made here: {veth.stderr.strip()}"
        except (OSError, subprocess.SubprocessError) as exc:
            reason = f"ip netns does not work here: {exc}"
        finally:
            _ip("netns", "del", probe, check=False)
    _probe_result.append(reason)
    return reason


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine's own namespace has an address or a route in."""
    found = []
    for args in (("-4", "-o", "addr"), ("-4", "route", "show", "table", "all")):
        for word in _ip(*args, check=False).stdout.split():
            with contextlib.suppress(ValueError):
                found.append(ipaddress.ip_network(word, strict=False))
    return [net for net in found if isinstance(net, ipaddress.IPv4Network)]


def free_subnet() -> ipaddress.IPv4Network:
    """A random 10.X.Y.0/24 that overlaps no address or route of this machine."""
    used = [net for net in _used_networks() if not net.is_loopback and net.prefixlen > 0]
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.0/24")
        if not any(net.overlaps(other) for other in used):
            return net
    raise RuntimeError("no free 10.X.Y.0/24 found")


def _close_open_labs() -> None:
    """At interpreter exit, labs a crash left open are removed all the same."""
    for lab in list(_open_labs):
        with contextlib.suppress(Exception):
            lab.close()


_open_labs: weakref.WeakSet[NetLab] = weakref.WeakSet()
atexit.register(_close_open_labs)


class NetLab:
    """``n`` namespaces ("hosts") on one bridge. Use as a context manager, or ``close()``.

    ``names[i]`` is host i's namespace, ``addresses[i]`` its IPv4 address (a str).
    Processes started with ``run`` are killed by ``close()``, and so is every other
    process left inside the namespaces (``ip netns pids``).
    """

    def __init__(self, n: int, *, labels: Sequence[str] | None = None) -> None:
        labels = list(labels) if labels else [chr(ord("a") + i) for i in range(n)]
        if len(labels) != n or len(set(labels)) != n:
            raise ValueError(f"labels {labels!r} must be {n} distinct names")
        self.tag = secrets.token_hex(4)
        self.subnet = free_subnet()
        self.switch = f"{_PREFIX}{self.tag}-sw"
        self.labels = labels
        self.names = [f"{_PREFIX}{self.tag}-{label}" for label in labels]
        hosts = list(self.subnet.hosts())
        self.addresses = [str(hosts[i]) for i in range(n)]
        self.procs: list[subprocess.Popen[Any]] = []
        self._made: list[str] = []  # namespaces created so far, for close()
        _open_labs.add(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        self._add_namespace(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for i, name in enumerate(self.names):
            self._add_namespace(name)
            port = f"p{i}"
            # Both ends are made inside namespaces: no name in the machine's own.
            _ip(
                "-n",
                self.switch,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                name,
            )
            _ip("-n", self.switch, "link", "set", port, "master", "br0")
            _ip("-n", self.switch, "link", "set", port, "up")
            _ip(
                "-n",
                name,
                "addr",
                "add",
                f"{self.addresses[i]}/{self.subnet.prefixlen}",
                "dev",
                "eth0",
            )
            _ip("-n", name, "link", "set", "eth0", "up")
            _ip("-n", name, "link", "set", "lo", "up")

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)

    def __enter__(self) -> NetLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ns(self, host: int | str) -> str:
        """The namespace of host ``host`` (its index, label or namespace name)."""
        if isinstance(host, int):
            return self.names[host]
        if host in self.names:
            return host
        return self.names[self.labels.index(host)]

    def address(self, host: int | str) -> str:
        return self.addresses[self.names.index(self.ns(host))]

    def exec_argv(self, host: int | str, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed to run inside host ``host``'s namespace."""
        return [IP, "netns", "exec", self.ns(host), *argv]

    def run(self, host: int | str, argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
        """Starts ``argv`` inside the namespace, in a session (process group) of its own.

        ``ip netns exec`` execs the program, so the Popen's pid is the program's.
        """
        popen.setdefault("start_new_session", True)
        popen.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self.exec_argv(host, argv), **popen)
        self.procs.append(proc)
        return proc

    def run_to_end(
        self, host: int | str, argv: Sequence[str], *, timeout: float, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Runs ``argv`` in the namespace to its end (killed past ``timeout``), output captured."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(
            self.exec_argv(host, argv),
            timeout=timeout,
            check=False,
            start_new_session=True,
            **kwargs,
        )

    def pids(self, host: int | str) -> list[int]:
        """Every process inside host ``host``'s namespace."""
        out = _ip("netns", "pids", self.ns(host), check=False).stdout
        return [int(word) for word in out.split()]

    def kill_all(self, host: int | str, sig: int = signal.SIGKILL) -> list[int]:
        """Sends ``sig`` to every process inside the namespace; returns their pids."""
        pids = self.pids(host)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pids

    def link_down(self, host: int | str, *, side: str = "host") -> None:
        """Takes the host's link down: its own eth0 (``side="host"``) or the switch port."""
        self._set_link(host, side, "down")

    def link_up(self, host: int | str, *, side: str = "host") -> None:
        """Brings the link back; the kernel restores the subnet's route with it."""
        self._set_link(host, side, "up")

    def _set_link(self, host: int | str, side: str, state: str) -> None:
        if side == "host":
            _ip("-n", self.ns(host), "link", "set", "eth0", state)
        elif side == "switch":
            port = f"p{self.names.index(self.ns(host))}"
            _ip("-n", self.switch, "link", "set", port, state)
        else:
            raise ValueError(f"side must be 'host' or 'switch', not {side!r}")

    def close(self, timeout: float = 10.0) -> None:
        """Kills every process in the namespaces, then deletes them (veths and bridge go too).

        Idempotent; errors while cleaning are collected and raised once at the end.
        """
        problems: list[str] = []
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        for name in self._made:
            while True:
                pids = _ip("netns", "pids", name, check=False).stdout.split()
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                if time.monotonic() > deadline:
                    problems.append(f"processes {pids} would not leave {name}")
                    break
                self._reap()
                time.sleep(0.02)
        self._reap(block=True, deadline=deadline)
        for name in reversed(self._made):  # the hosts first, then the switch
            done = _ip("netns", "del", name, check=False)
            if done.returncode != 0 and name in _ip("netns", "list", check=False).stdout:
                problems.append(f"ip netns del {name}: {done.stderr.strip()}")
        self._made.clear()
        if problems:
            raise RuntimeError("; ".join(problems))

    def _reap(self, block: bool = False, deadline: float = 0.0) -> None:
        """Waits for our own children (no zombies) and closes their pipes (no leaked fds)."""
        for proc in list(self.procs):
            if block:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is not None:
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()
                self.procs.remove(proc)


def labs() -> Iterator[Callable[..., NetLab]]:
    """A factory of labs closed afterwards; the body of the ``netlab`` fixture."""
    made: list[NetLab] = []

    def make(n: int = 3, *, labels: Sequence[str] | None = None) -> NetLab:
        lab = NetLab(n, labels=labels)
        made.append(lab)
        return lab

    try:
        yield make
    finally:
        errors = []
        for lab in reversed(made):
            try:
                lab.close()
            except RuntimeError as exc:
                errors.append(str(exc))
        if errors:
            raise RuntimeError("netlab cleanup: " + "; ".join(errors))


try:
    import pytest
except ImportError:  # the benchmark uses this module without pytest
    pass
else:

    @pytest.fixture
    def netlab() -> Iterator[Callable[..., NetLab]]:
        """``netlab(n)`` builds ``n`` namespaced hosts, removed after the test; skips the
        test when namespaces cannot be built here (no root, no ``ip``)."""
        reason = capability_problem()
        if reason:
            pytest.skip(reason)
        yield from labs()


# -- dovecote processes in a lab ---------------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
DOVECOTE = os.path.join(os.path.dirname(sys.executable), "dovecote")
HEAD_PORT = 7470  # the head's join port; bus on +1 and +2
NODE_PORT_BASE = 7480  # worker k of a node listens on base + k


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of the lab's processes: the repository importable (workers
    unpickle test classes by module name), no cluster settings inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOVECOTE_")}
    env["PYTHONPATH"] = REPO
    env.update(extra)
    return env


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Polls ``condition`` until it returns something true; ``TimeoutError`` naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)


class Driver:
    """A program run inside a host that talks in JSON lines.

    It prints ``{"event": KIND, ...}`` lines on stdout; ``expect(KIND)`` waits for the
    next one of that kind (others are kept in ``events``), ``send(obj)`` writes a JSON
    line to its stdin. Everything else it prints is kept in ``noise``; its stderr
    goes to a file.
    """

    def __init__(
        self,
        lab: NetLab,
        host: int | str,
        argv: Sequence[str],
        stderr_path: str,
        context: Callable[[], str] | None = None,
    ) -> None:
        self._context = context  # more to show when it fails: the cluster's logs
        self._stderr = open(stderr_path, "w")  # noqa: SIM115 - closed in close()
        self.stderr_path = stderr_path
        self.proc = lab.run(
            host,
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=REPO,
            env=clean_env(),
        )
        self.events: list[dict[str, Any]] = []
        self.noise: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def expect(self, kind: str, timeout: float) -> dict[str, Any]:
        """The next event of ``kind`` (an ``error`` event or the end of the program
        raises ``AssertionError`` with its stderr)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(0.0, left))
            except queue.Empty:
                raise TimeoutError(
                    f"driver: no {kind!r} event within {timeout} s\n{self.diagnostics()}"
                ) from None
            if line is None:
                self._lines.put(None)
                raise AssertionError(
                    f"driver ended (exit {self.proc.wait()}) before a {kind!r} event\n"
                    f"{self.diagnostics()}"
                )
            try:
                event = json.loads(line)
            except ValueError:
                self.noise.append(line.rstrip("\n"))
                continue
            if not isinstance(event, dict) or "event" not in event:
                self.noise.append(line.rstrip("\n"))
                continue
            self.events.append(event)
            if event["event"] == kind:
                return event
            if event["event"] == "error":
                raise AssertionError(f"driver failed: {event}\n{self.diagnostics()}")

    def send(self, obj: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def diagnostics(self) -> str:
        self._stderr.flush()
        with open(self.stderr_path) as err:
            tail = err.read()[-4000:]
        more = f"\n{self._context()}" if self._context else ""
        return f"events: {self.events}\nother output: {self.noise[-20:]}\nstderr:\n{tail}{more}"

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()


class Cluster:
    """A dovecote head in one host of ``lab`` and nodes in the others, with CURVE keys.

    Logs go to ``workdir``: ``head.log``, ``node-<label>.log``, ``driver-<n>.err``.
    ``close()`` stops what it started (the lab's own close kills the rest).
    """

    def __init__(self, lab: NetLab, workdir: str, *, head: int | str = 0) -> None:
        self.lab = lab
        self.workdir = workdir
        self.head_host = head
        self.head_address = lab.address(head)
        self.keys = os.path.join(workdir, "keys")
        self.address_file = os.path.join(workdir, "head.address")
        self.join = f"tcp://{self.head_address}:{HEAD_PORT}"
        self.head: subprocess.Popen[Any] | None = None
        self.nodes: dict[str, subprocess.Popen[Any]] = {}
        self._files: list[Any] = []
        self._drivers: list[Driver] = []

    def make_keys(self) -> str:
        done = subprocess.run(
            [DOVECOTE, "keys", "new", self.keys],
            capture_output=True,
            text=True,
            timeout=30,
            env=clean_env(),
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"dovecote keys new failed ({done.returncode}): {done.stderr}")
        return self.keys

    def _log(self, name: str) -> Any:
        log = open(os.path.join(self.workdir, name), "w")  # noqa: SIM115 - closed in close()
        self._files.append(log)
        return log

    def start_head(self, *, timeout: float = 30.0, extra: Sequence[str] = ()) -> str:
        """Starts the head and waits for its address file; returns the join address."""
        log = self._log("head.log")
        self.head = self.lab.run(
            self.head_host,
            [
                DOVECOTE,
                "head",
                "--listen",
                f"{self.head_address}:{HEAD_PORT}",
                "--keys",
                self.keys,
                "--advertise",
                self.head_address,
                "--address-file",
                self.address_file,
                "--log-level",
                "INFO",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=clean_env(),
        )
        head = self.head

        def ready() -> bool:
            if head.poll() is not None:
                raise RuntimeError(f"the head exited ({head.returncode}):\n{self.log('head')}")
            return os.path.exists(self.address_file)

        wait_until(ready, timeout, "the head's address file")
        with open(self.address_file) as f:
            written = f.read().strip()
        if written != self.join:
            raise RuntimeError(f"the head wrote {written!r} to its address file, not {self.join}")
        return written

    def start_node(
        self,
        host: int | str,
        *,
        workers: int = 1,
        use_join_file: bool = False,
        extra: Sequence[str] = (),
    ) -> subprocess.Popen[Any]:
        """Starts ``dovecote node`` in ``host``, named after the host's label."""
        label = self.lab.labels[self.lab.names.index(self.lab.ns(host))]
        join = ["--join-file", self.address_file] if use_join_file else ["--join", self.join]
        proc = self.lab.run(
            host,
            [
                DOVECOTE,
                "node",
                *join,
                "--workers",
                str(workers),
                "--advertise",
                self.lab.address(host),
                "--keys",
                self.keys,
                "--name",
                label,
                "--port-base",
                str(NODE_PORT_BASE),
                *extra,
            ],
            stdout=self._log(f"node-{label}.log"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=clean_env(DOVECOTE_LOG_LEVEL="INFO"),
        )
        self.nodes[label] = proc
        return proc

    def driver(self, host: int | str, argv: Sequence[str]) -> Driver:
        """Runs ``python ARGV`` in ``host`` as a JSON-lines ``Driver``."""
        path = os.path.join(self.workdir, f"driver-{len(self._drivers)}.err")
        drv = Driver(self.lab, host, [PYTHON, *argv], path, self.all_logs)
        self._drivers.append(drv)
        return drv

    def log(self, name: str) -> str:
        """The log ``head`` or ``node-<label>`` so far."""
        for f in self._files:
            f.flush()
        path = os.path.join(self.workdir, f"{name}.log")
        if not os.path.exists(path):
            return ""
        with open(path) as f:
            return f.read()

    def all_logs(self, limit: int = 3000) -> str:
        names = ["head", *(f"node-{label}" for label in self.nodes)]
        return "\n".join(f"--- {n}.log (tail)\n{self.log(n)[-limit:]}" for n in names)

    def close(self) -> None:
        for drv in self._drivers:
            drv.close()
        for proc in [*self.nodes.values(), *([self.head] if self.head else [])]:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.nodes.values(), *([self.head] if self.head else [])]:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        for f in self._files:
            f.close()
        self._files.clear()
