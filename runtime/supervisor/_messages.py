"""What the supervisor sends: control records on its ROUTER, lifecycle events on
the bus (whose proxy it runs), and the watchers' ``down`` notices."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import zmq

from runtime import net, wire
from runtime.core import ActorRecord
from runtime.net import Context, Socket

__all__ = ["SEND_TIMEOUT_MS", "Control", "Events", "Watchers", "open_control", "open_events"]

log = logging.getLogger("dovecote")

SEND_TIMEOUT_MS = 2000  # a client that reads no control message for this long is stuck
CONTROL_HWM = 10_000
BUS_START_TIMEOUT = 10.0  # seconds to wait for the bus proxy to bind


class Control:
    """The control ROUTER, and the clients to tell of a worker's death."""

    def __init__(self, socket: Socket) -> None:
        self.socket = socket
        self.clients: set[bytes] = set()

    def reachable(self, peer: bytes, message: object) -> bool:
        """Send, and say whether ``peer`` is still connected: a ROUTER forgets a peer
        whose connection closed (its process died, or ZMTP heartbeats timed out)."""
        try:
            net.send(self.socket, [peer, *wire.encode_control(message)], net.DONTWAIT)
        except zmq.ZMQError as exc:
            return exc.errno != zmq.EHOSTUNREACH
        return True

    def send(self, peer: bytes, message: object) -> None:
        op = wire.op_name(type(message))
        try:
            net.send(self.socket, [peer, *wire.encode_control(message)])
        except zmq.Again:
            log.error(
                "supervisor: %s has not read its control messages for %.0f s; dropped %s",
                wire.peer_name(peer),
                SEND_TIMEOUT_MS / 1000,
                op,
            )
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            log.info("supervisor: %s is gone; dropped %s", wire.peer_name(peer), op)
            self.clients.discard(peer)

    def reply(self, peer: bytes, req_id: int, ok: bool, payload: Any) -> None:
        self.send(peer, wire.Reply(req_id, ok, payload))

    def fail(self, peer: bytes, req_id: int, error: Exception) -> None:
        self.reply(peer, req_id, False, wire.encode_error(error))

    def close(self) -> None:
        self.socket.close(linger=100)


def open_control(ctx: Context, addresses: wire.Addresses) -> Control:
    socket = net.router(ctx, addresses.control, CONTROL_HWM)
    socket.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
    return Control(socket)


class Events:
    """The runtime's own lifecycle events, published into the bus proxy."""

    def __init__(self, socket: Socket, proxy: threading.Thread) -> None:
        self.socket = socket
        self.proxy = proxy
        self.seqs: dict[str, int] = {}  # per topic, as every publisher numbers them
        self.on_publish: Callable[[str, dict[str, Any]], None] | None = None  # the observer

    def publish(self, topic: str, **fields: Any) -> None:
        seq = self.seqs[topic] = self.seqs.get(topic, 0) + 1
        self.socket.send(net.encode(topic, b"supervisor", seq, [fields]))
        if self.on_publish is not None:
            self.on_publish(topic, fields)

    def close(self) -> None:
        self.socket.close()


def open_events(ctx: Context, addresses: wire.Addresses) -> Events:
    """Start the bus proxy's thread, then connect to it."""
    bound = threading.Event()
    proxy = threading.Thread(target=net.run_proxy, args=(ctx, addresses, bound), daemon=True)
    proxy.start()
    bound.wait(BUS_START_TIMEOUT)
    return Events(net.lifecycle_publisher(ctx), proxy)


class Watchers:
    """Who watches which actor; each is told of its crashes and of its final stop."""

    def __init__(self, control: Control, events: Events) -> None:
        self.control = control
        self.events = events
        self.by_actor: dict[int, list[tuple[bytes, int]]] = {}  # actor id -> (peer, watch id)

    def add(self, actor_id: int, peer: bytes, watch_id: int) -> None:
        self.by_actor.setdefault(actor_id, []).append((peer, watch_id))

    def down(self, actor: ActorRecord, reason: str, final: bool) -> None:
        """Publish the actor's crash or stop and tell its watchers; once final, they
        are forgotten."""
        kind = "stopped" if final else "crashed"
        self.events.publish(
            f"dovecote.actor.{kind}", actor_id=actor.actor_id, name=actor.name, reason=reason
        )
        watchers = (
            self.by_actor.pop(actor.actor_id, [])
            if final
            else self.by_actor.get(actor.actor_id, [])
        )
        for peer, watch_id in watchers:
            self.control.send(peer, wire.Down(watch_id, actor.actor_id, reason, final))
