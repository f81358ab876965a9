"""Discovery files: how a CLI in another terminal finds the running systems.

Each supervisor writes ``<system id>.json`` into ``$XDG_RUNTIME_DIR/dovecote/``
(else ``/tmp/dovecote-$UID/``) and removes it when it stops; the next one to
start prunes the files of supervisors that are gone. The directory is 0700 and
must be ours, each file 0600 and ours, and symlinks are refused on both sides:
another user can neither plant a file we would trust nor have us write through
a link. A file only names where to connect; what comes back is JSON.

A file, for example::

    {"system_id": "a1b2c3d4", "pid": 4242, "created": 1700000000.12,
     "driver_pid": 4241, "driver": "python train.py", "workers": 4,
     "run_dir": "/tmp/dovecote-x1y2", "control": "ipc:///tmp/dovecote-x1y2/sup",
     "started": 1700000000.5}
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from typing import Any

import psutil

__all__ = [
    "DiscoveryError",
    "check_private_dir",
    "discovery_dir",
    "list_systems",
    "prune",
    "read_entry",
    "remove_entry",
    "write_entry",
]

_FIELDS = {
    "system_id": str,
    "pid": int,
    "created": float,
    "driver_pid": int,
    "run_dir": str,
    "control": str,
}


class DiscoveryError(Exception):
    """A discovery directory or file that cannot be trusted, or none at all."""


def discovery_dir() -> str:
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir and os.path.isdir(runtime_dir):
        return os.path.join(runtime_dir, "dovecote")
    return f"/tmp/dovecote-{os.getuid()}"


def check_private_dir(path: str) -> None:
    """``path`` is a real directory (no symlink), ours, and closed to others."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise DiscoveryError(f"{path} does not exist") from None
    if not stat.S_ISDIR(info.st_mode):
        raise DiscoveryError(f"{path} is not a directory (a symlink is refused)")
    if info.st_uid != os.getuid():
        raise DiscoveryError(f"{path} belongs to uid {info.st_uid}, not to us")
    if info.st_mode & 0o077:
        raise DiscoveryError(f"{path} is open to others (mode {info.st_mode & 0o777:o})")


def _ensure_dir() -> str:
    path = discovery_dir()
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    check_private_dir(path)
    return path


def write_entry(entry: dict[str, Any]) -> str:
    """Write this system's file (0600, atomically), after pruning stale ones."""
    folder = _ensure_dir()
    prune(folder)
    path = os.path.join(folder, f"{entry['system_id']}.json")
    partial = f"{path}.{os.getpid()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(partial, flags, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(entry, file)
    os.replace(partial, path)
    return path


def remove_entry(system_id: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(discovery_dir(), f"{system_id}.json"))


def read_entry(path: str) -> dict[str, Any]:
    """One file, checked: a regular file of ours, 0600, with the fields it needs."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise DiscoveryError(f"{path}: {exc.strerror} (a symlink is refused)") from None
    with os.fdopen(fd) as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            raise DiscoveryError(f"{path} is not a regular file of ours")
        if info.st_mode & 0o077:
            raise DiscoveryError(f"{path} is open to others (mode {info.st_mode & 0o777:o})")
        try:
            entry = json.load(file)
        except ValueError:
            raise DiscoveryError(f"{path} is not JSON") from None
    if not isinstance(entry, dict):
        raise DiscoveryError(f"{path} is not a JSON object")
    for name, kind in _FIELDS.items():
        value = entry.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise DiscoveryError(f"{path}: {name} is missing or not of type {kind.__name__}")
    return entry


def _alive(entry: dict[str, Any]) -> bool:
    """Is the supervisor the file names still running (the same process, not a
    later one that got its pid)?"""
    try:
        process = psutil.Process(entry["pid"])
        return bool(abs(process.create_time() - entry["created"]) < 1.0)
    except (psutil.Error, KeyError, TypeError):
        return False


def prune(folder: str) -> None:
    """Remove the files of supervisors that are gone, and of files we cannot read."""
    for name in os.listdir(folder):
        if not name.endswith(".json"):
            continue
        path = os.path.join(folder, name)
        try:
            alive = _alive(read_entry(path))
        except DiscoveryError:
            alive = os.path.islink(path)  # not ours to judge: leave a link alone
        if not alive:
            with contextlib.suppress(OSError):
                os.unlink(path)


def list_systems() -> tuple[list[dict[str, Any]], list[str]]:
    """The running systems' entries, and why each refused file was refused."""
    folder = discovery_dir()
    if not os.path.exists(folder):
        return [], []
    check_private_dir(folder)
    entries, refused = [], []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".json"):
            continue
        try:
            entry = read_entry(os.path.join(folder, name))
        except DiscoveryError as exc:
            refused.append(str(exc))
            continue
        if _alive(entry):
            entries.append(entry)
    return entries, refused
