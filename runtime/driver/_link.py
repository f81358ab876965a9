"""How a driver reaches its system: a supervisor process of its own on this host
(``LocalLink``), or the head of a cluster (``HeadLink``). Each gives the
addresses, an fd that becomes readable when the system is lost, the words for
that loss, and the way to leave."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from actors._errors import ActorError
from runtime import net, observe, wire
from runtime.client import Transport, identity
from runtime.core import ProcessArgs, SystemOptions, exit_cause
from runtime.net import Context

__all__ = ["HeadLink", "Hosts", "Link", "LocalLink"]

log = logging.getLogger("dovecote")

BEAT = 1.0  # seconds between a driver's heartbeats to the head
LIVES = 3  # unanswered beats before the head is taken for lost


class LocalLink:
    """One host: a supervisor process started for this driver, gone with it."""

    owner: str | None = None  # its actors live as long as the system

    def __init__(self, system_id: str, options: SystemOptions) -> None:
        self.run_dir = tempfile.mkdtemp(prefix="dovecote-")  # mode 0700
        self.addresses = net.local_addresses(self.run_dir)
        options = options._replace(log_levels=observe.driver_levels())  # as the driver's
        args = ProcessArgs(system_id, self.addresses, options)
        env = dict(os.environ)  # a clean interpreter that sees what the driver sees
        env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
        self.proc, self.sentinel = net.start_watched(
            "supervisor", args.to_json(), env=env, cwd=os.getcwd()
        )

    def lost(self) -> str:
        try:
            code = self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            code = None
        return f"the supervisor (pid {self.proc.pid}) {exit_cause(code)}"

    def leave(self, transport: Transport, deadline: float, timeout: float) -> None:
        """What was sent arrives first; then the supervisor stops the actors, newest
        first, and the workers."""
        _barrier(transport, deadline - timeout * 2 / 3)
        # The rest of the time is the actors' grace; a second goes to SIGTERM, SIGKILL.
        grace = max(0.0, deadline - time.monotonic() - 2.5)
        _request(transport, "shutdown", lambda req_id: wire.Shutdown(req_id, grace), deadline)

    def close(self, timeout: float) -> None:
        proc = self.proc
        if proc.stdin is not None:
            proc.stdin.close()  # EOF: the supervisor shuts down if it has not yet
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)


class HeadLink:
    """A cluster: the head at ``address``. The actors this driver spawns are its
    own (stopped when it leaves) unless detached; a thread beats to the head and
    makes ``sentinel`` readable once the head stops answering."""

    def __init__(self, address: str, keys: str | None, ctx: Context, name: bytes) -> None:
        if keys is not None:
            net.secure(ctx, net.load_keys(keys), serve=False)
        self.address = address
        self.owner = name.decode()
        self.run_dir = tempfile.mkdtemp(prefix="dovecote-")
        self.addresses = net.cluster_addresses(address, self.run_dir, keys)
        self.sentinel, self._lost = os.pipe()
        self._stop = threading.Event()
        self._silent = 0.0
        beat = net.dealer(ctx, self.addresses.control, name + b"/beat", hwm=100)
        self._thread = threading.Thread(
            target=self._beat, args=(beat,), name="dovecote-beat", daemon=True
        )
        self._thread.start()

    def _beat(self, sock: net.Socket) -> None:
        """Until the head first answers, the start's own timeout is the bound."""
        heard: float | None = None
        try:
            while not self._stop.is_set():
                with contextlib.suppress(Exception):
                    net.send(sock, wire.encode_control(wire.ClientBeat(self.owner)), net.DONTWAIT)
                while sock.poll(int(BEAT * 1000)):
                    net.recv(sock)
                    heard = time.monotonic()
                self._silent = 0.0 if heard is None else time.monotonic() - heard
                if self._silent > BEAT * LIVES:
                    os.write(self._lost, b"!")
                    return
        finally:
            sock.close(linger=0)

    def lost(self) -> str:
        return f"the head at {self.address} is lost (silent for {self._silent:.1f} s)"

    def leave(self, transport: Transport, deadline: float, timeout: float) -> None:
        """What was sent arrives first; then the head stops the actors this driver
        owns (not the detached ones). The cluster runs on."""
        _barrier(transport, deadline - timeout * 2 / 3)
        owner = self.owner
        _request(transport, "goodbye", lambda req_id: wire.Goodbye(req_id, owner), deadline)

    def close(self, timeout: float) -> None:
        self._stop.set()
        self._thread.join(timeout)
        os.close(self._lost)
        shutil.rmtree(self.run_dir, ignore_errors=True)


Link = LocalLink | HeadLink


class Hosts:
    """``ActorSystem``'s view of where it runs: its workers and nodes."""

    options: SystemOptions
    _transport: Transport
    _check_open: Callable[[], None]

    @property
    def workers(self) -> int:
        """How many workers the system has now (in a cluster: on every node)."""
        return len(self._slots())

    def _slots(self) -> Sequence[int]:
        return self._transport.slots() or range(self.options.workers)

    def nodes(self) -> list[dict[str, Any]]:
        """The hosts of the system: name, address, workers, slots, alive, pid."""
        self._check_open()
        nodes = self._transport.control.request("nodes", identity, wire.ListNodes)
        return list(nodes.result(self.options.start_timeout))


def _barrier(transport: Transport, deadline: float) -> None:
    try:
        for sent in transport.barrier():
            sent.result(max(0.0, deadline - time.monotonic()))
    except (ActorError, TimeoutError):
        pass  # a worker is stuck in a method, or gone


def _request(
    transport: Transport, what: str, make: Callable[[int], object], deadline: float
) -> None:
    try:
        future = transport.control.request(what, identity, make)
        future.result(max(0.0, deadline - time.monotonic()))
    except (ActorError, TimeoutError):
        pass  # the supervisor is already gone or stuck: it is killed after
