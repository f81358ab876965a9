"""CURVE keys and the ZAP allow-list (ZeroMQ's "Ironhouse"): every tcp:// socket of
a cluster is encrypted, servers are authenticated by their key, and a client is
let in only if its public key is in the allow-list. The check happens in the
handshake, in libzmq and the ZAP handler: a peer without an allowed key never
gets a message through, so nothing it sends is ever unpickled.

The keys live in a directory made by ``dovecote keys new DIR``::

    server.key  server.key_secret    the key pair of every socket that binds
    client.key  client.key_secret    the key pair of every socket that connects
    authorized/client.key            the allow-list: public keys of allowed clients

Keys are registered per context (``secure``): the socket factories then apply
them to every tcp:// endpoint of that context. A context without keys may bind
tcp:// on loopback only (tests, one host); anything else is refused.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

if TYPE_CHECKING:  # as net._sockets has them, without importing it (it imports us)
    Socket = zmq.Socket[bytes]
    Context = zmq.Context[Socket]

__all__ = [
    "ZAP_DOMAIN",
    "Keys",
    "check_bind",
    "is_loopback",
    "keys_of",
    "load_keys",
    "new_keys",
    "secure",
    "secure_socket",
]

ZAP_DOMAIN = b"dovecote"
HEARTBEAT_MS = 1000  # ZMTP pings on every tcp connection; 3 unanswered close it
_KEYS: weakref.WeakKeyDictionary[Context, Keys] = weakref.WeakKeyDictionary()


class Keys(NamedTuple):
    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes
    authorized: str  # the directory of allowed client public keys


def new_keys(directory: str | os.PathLike[str]) -> Path:
    """Make a cluster's keys in ``directory`` (created 0700; secrets 0600)."""
    root = Path(directory)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    if (root / "server.key_secret").exists():
        raise FileExistsError(f"{root} already holds keys; remove them first to make new ones")
    authorized = root / "authorized"
    authorized.mkdir(mode=0o700, exist_ok=True)
    for name in ("server", "client"):
        _, secret = zmq.auth.create_certificates(str(root), name)
        os.chmod(secret, 0o600)
    (authorized / "client.key").write_bytes((root / "client.key").read_bytes())
    return root


def load_keys(directory: str | os.PathLike[str]) -> Keys:
    """The keys in ``directory``; a clear error if one is missing or readable by others."""
    root = Path(directory)
    pairs: list[bytes] = []
    for name in ("server", "client"):
        path = root / f"{name}.key_secret"
        if not path.is_file():
            raise FileNotFoundError(
                f"no {path.name} in {root}: make the cluster's keys with `dovecote keys new DIR`"
            )
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PermissionError(f"{path} is readable by others: chmod 600 it")
        public, secret = zmq.auth.load_certificate(str(path))
        if secret is None:
            raise ValueError(f"{path} holds no secret key")
        pairs += [public, secret]
    authorized = root / "authorized"
    if not authorized.is_dir():
        raise FileNotFoundError(f"no allow-list directory {authorized}")
    server_public, server_secret, client_public, client_secret = pairs
    return Keys(server_public, server_secret, client_public, client_secret, str(authorized))


def secure(ctx: Context, keys: Keys, serve: bool) -> ThreadAuthenticator | None:
    """Use ``keys`` for every tcp:// socket of ``ctx``. A process that binds tcp
    (``serve``) also runs the ZAP handler, in this context as ZAP requires: it
    lets in only the allow-listed client keys."""
    _KEYS[ctx] = keys
    if not serve:
        return None
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain=ZAP_DOMAIN.decode(), location=keys.authorized)
    return auth


def keys_of(ctx: Context) -> Keys | None:
    return _KEYS.get(ctx)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host(endpoint: str) -> str:
    return endpoint.removeprefix("tcp://").rsplit(":", 1)[0]


def check_bind(endpoint: str, keys: Keys | None) -> None:
    """Binding tcp:// beyond loopback without keys would let anyone who can connect
    have their bytes unpickled: refused."""
    if keys is None and endpoint.startswith("tcp://") and not is_loopback(_host(endpoint)):
        raise PermissionError(
            f"refusing to bind {endpoint} without CURVE keys: anyone who can reach it could "
            "run code here. Make keys with `dovecote keys new DIR` and pass --keys DIR "
            "(or $DOVECOTE_KEYS), or bind 127.0.0.1"
        )


def secure_socket(sock: Socket, endpoint: str, server: bool) -> None:
    """Before bind or connect: CURVE and ZMTP heartbeats on a tcp:// endpoint of a
    context with keys; a server also enforces the ZAP domain (fail closed)."""
    if not endpoint.startswith("tcp://"):
        return
    keys = keys_of(sock.context)
    if server:
        check_bind(endpoint, keys)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * HEARTBEAT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, 3 * HEARTBEAT_MS)
    if keys is None:
        return
    if server:
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.server_public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.server_secret)
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    else:
        sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.client_public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.client_secret)
