"""Asking a running system for its status from another process (the CLI): find
it through its discovery file, check its run directory, and send ``Status`` on
its control socket. Only JSON is read back: a refusal's payload (a pickled
error, for the driver) is never unpickled here."""

from __future__ import annotations

import secrets
from typing import Any

import zmq

from runtime import net, wire
from runtime.observe._discovery import DiscoveryError, check_private_dir, list_systems

__all__ = ["QueryError", "cluster_entry", "find_system", "query_status"]


class QueryError(Exception):
    """The system did not answer, or answered with something that is no status."""


def find_system(system_id: str | None) -> dict[str, Any]:
    """The discovery entry of ``system_id``, or of the one system running."""
    entries, refused = list_systems()
    if system_id is not None:
        entries = [e for e in entries if e["system_id"] == system_id]
    if len(entries) == 1:
        return entries[0]
    if not entries:
        what = f"system {system_id}" if system_id else "running dovecote system"
        why = "".join(f"\n  refused: {r}" for r in refused)
        raise DiscoveryError(f"no {what} found{why}")
    ids = ", ".join(e["system_id"] for e in entries)
    raise DiscoveryError(f"{len(entries)} systems are running ({ids}): pick one with --system")


def cluster_entry(address: str, keys: str | None) -> dict[str, Any]:
    """What stands for a discovery file when the system is a cluster's head."""
    net.split_address(address)  # a bad address is a usage error, now
    return {"system_id": address, "address": address, "keys": keys}


def _control_endpoint(entry: dict[str, Any], ctx: net.Context) -> str:
    """A cluster head's (over CURVE with the keys), else the checked local one."""
    if "address" in entry:
        if entry["keys"] is not None:
            net.secure(ctx, net.load_keys(entry["keys"]), serve=False)
        return net.cluster_addresses(entry["address"], "", entry["keys"]).control
    run_dir = entry["run_dir"]
    check_private_dir(run_dir)
    endpoint = net.local_addresses(run_dir).control
    if entry["control"] != endpoint:
        raise DiscoveryError(f"control endpoint {entry['control']!r} is not in {run_dir}")
    return endpoint


def query_status(entry: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """The status reply of the system ``entry`` names, as JSON."""
    ctx: net.Context = zmq.Context()
    try:
        endpoint = _control_endpoint(entry, ctx)
    except BaseException:
        ctx.term()
        raise
    sock = net.dealer(ctx, endpoint, b"cli-" + secrets.token_hex(4).encode(), hwm=16)
    try:
        net.send(sock, wire.encode_control(wire.Status(1)))
        if not sock.poll(int(timeout * 1000)):
            raise QueryError(f"system {entry['system_id']} did not answer within {timeout} s")
        return _status_of(net.recv(sock))
    finally:
        sock.close(linger=0)
        ctx.term()


def _status_of(frames: list[Any]) -> dict[str, Any]:
    try:
        kind, body, buffers, _ = wire.unpack(frames)
        if kind != wire.CONTROL:
            raise wire.ProtocolError(f"kind {kind}")
        reply = wire.decode_control(body, buffers)
    except wire.ProtocolError as exc:
        raise QueryError(f"not a status reply: {exc}") from None
    if type(reply) is not wire.Reply or reply.req_id != 1:
        raise QueryError("not a status reply")
    if not reply.ok or not isinstance(reply.payload, dict):
        raise QueryError("the supervisor refused the status request")
    return reply.payload
