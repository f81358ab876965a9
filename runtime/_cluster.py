"""The cluster's commands: ``dovecote head``, ``dovecote node`` and ``dovecote keys``.

Ports: the head's control and join ROUTER on PORT (7470 by default), its event
bus on PORT+1 (publishers) and PORT+2 (subscribers); worker k of a node listens
on ``--port-base`` + k (7480 by default).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

__all__ = ["COMMANDS", "HEAD_PORT", "NODE_PORT_BASE", "add_commands", "run", "secret_manifest"]

HEAD_PORT = 7470
NODE_PORT_BASE = 7480
COMMANDS = ("head", "node", "keys")
KEY_FILES = ("server.key", "server.key_secret", "client.key", "client.key_secret")


def add_commands(sub: Any, positive_int: Callable[[str], int]) -> None:
    keys_help = "the cluster's CURVE keys (default: $DOVECOTE_KEYS)"
    head = sub.add_parser("head", help="run a cluster's head: directory, event bus, join endpoint")
    head.add_argument("--listen", default=f"127.0.0.1:{HEAD_PORT}", help="HOST:PORT to bind")
    head.add_argument("--keys", default=os.environ.get("DOVECOTE_KEYS") or None, help=keys_help)
    head.add_argument("--advertise", help="the address written to --address-file")
    head.add_argument("--address-file", help="write tcp://ADVERTISE:PORT here once listening")
    head.add_argument("--log-level", default="INFO")
    node = sub.add_parser("node", help="run a cluster node: a supervisor of local workers")
    where = node.add_mutually_exclusive_group(required=True)
    where.add_argument("--join", help="the head's address, tcp://HOST:PORT")
    where.add_argument("--join-file", help="read the head's address from this file")
    node.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1)
    node.add_argument("--advertise", help="the IP other hosts reach this one on")
    node.add_argument("--port-base", type=positive_int, default=NODE_PORT_BASE)
    node.add_argument("--keys", default=os.environ.get("DOVECOTE_KEYS") or None, help=keys_help)
    node.add_argument("--name", help="the node's name (default: HOSTNAME-PID)")
    node.add_argument("--join-timeout", type=float, default=60.0)
    node.add_argument("--log-level", default="INFO")
    keys = sub.add_parser("keys", help="make a cluster's CURVE keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="write new keys into DIR (made 0700)")
    new.add_argument("dir")
    new.add_argument("--kubernetes-secret", metavar="NAME", help="print a Secret manifest")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run a cluster command; usage errors exit 2 with a message."""
    import logging

    try:
        if args.command == "keys":
            return _keys(args)
        logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
        if args.command == "head":
            return _head(args)
        return _node(args)
    except (OSError, ValueError, zmq.ZMQError) as exc:  # a bad flag, keys, a port in use
        parser.exit(2, f"dovecote {args.command}: {exc}\n")


def _head(args: argparse.Namespace) -> int:
    from runtime.supervisor import head_main

    head_main(args.listen, args.keys, args.advertise, args.address_file, args.log_level)
    return 0


def _node(args: argparse.Namespace) -> int:
    from runtime.node import main, read_join_file

    join = args.join or read_join_file(args.join_file, args.join_timeout)
    return main(join, args.keys, args.workers, args.advertise, args.port_base, args.name,
                args.join_timeout)  # fmt: skip


def _keys(args: argparse.Namespace) -> int:
    from runtime import net

    root = net.new_keys(args.dir)
    print(f"keys written to {root}", file=sys.stderr)
    if args.kubernetes_secret:
        print(secret_manifest(root, args.kubernetes_secret))
    return 0


def secret_manifest(root: Path, name: str) -> str:
    """A Kubernetes Secret holding the keys. A data key has no ``/``: the allow-list's
    file is ``authorized-client.key``, mounted back as ``authorized/client.key``."""
    files = {f: root / f for f in KEY_FILES} | {
        "authorized-client.key": root / "authorized" / "client.key"
    }
    lines = [
        "apiVersion: v1",
        "kind: Secret",
        "metadata:",
        f"  name: {name}",
        "type: Opaque",
        "data:",
    ]
    for key, path in files.items():
        lines.append(f"  {key}: {base64.b64encode(path.read_bytes()).decode()}")
    return "\n".join(lines)
