"""The architecture, enforced: imports go one way, and each package keeps to its
concern.

* ``actors`` (the user API) imports nothing from ``runtime``.
* ``runtime.wire`` and ``runtime.core`` are sans-IO: no zmq, no threads, no
  asyncio, no sockets; ``wire`` imports nothing of the runtime but itself, and
  ``core`` nothing but ``wire``.
* ``net`` is the only package that opens sockets; it sits on ``wire``.
* ``client`` sits on ``wire``, ``core`` and ``net``; so does ``observe`` (what
  operators see), which the three process packages and the CLI use.
* The three process packages (``driver``, ``supervisor``, ``worker``) never
  import each other; only ``runtime._main`` (which starts a role) and the
  top-level ``runtime`` (which exports the driver's API) name them.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import actors
import dovecote
import runtime

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("wire", "core", "net", "client", "observe", "driver", "supervisor", "worker", "node")
ALLOWED = {  # runtime package -> the runtime packages it may import
    "wire": set(),
    "core": {"wire"},
    "net": {"wire"},
    "client": {"wire", "core", "net"},
    "observe": {"wire", "core", "net"},
    "driver": {"wire", "core", "net", "client", "observe"},
    "supervisor": {"wire", "core", "net", "observe"},
    "worker": {"wire", "core", "net", "client", "observe"},
    "node": {"wire", "core", "net", "observe"},
}
SANS_IO_FORBIDDEN = {"zmq", "threading", "asyncio", "socket", "selectors", "subprocess"}
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 40


def _imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "runtime":  # from runtime import wire, net
                names.update(f"runtime.{alias.name}" for alias in node.names)
    return names


def _runtime_packages(names: set[str]) -> set[str]:
    parts = (n.split(".") for n in names if n.startswith("runtime."))
    return {p[1] for p in parts if p[1] in PACKAGES}


def _modules(package: str) -> list[pathlib.Path]:
    return sorted((ROOT / "runtime" / package).glob("*.py"))


def test_actors_never_imports_runtime() -> None:
    for path in (ROOT / "actors").glob("*.py"):
        bad = {n for n in _imports(path) if n == "runtime" or n.startswith("runtime.")}
        assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_the_layers_below_it(package: str) -> None:
    assert _modules(package), f"runtime/{package} has no modules"
    for path in _modules(package):
        used = _runtime_packages(_imports(path)) - {package}
        assert used <= ALLOWED[package], f"{path}: imports {used - ALLOWED[package]}"


@pytest.mark.parametrize("package", ["wire", "core"])
def test_wire_and_core_are_sans_io(package: str) -> None:
    for path in _modules(package):
        roots = {name.split(".")[0] for name in _imports(path)}
        assert not roots & SANS_IO_FORBIDDEN, f"{path} imports {roots & SANS_IO_FORBIDDEN}"


def test_only_net_opens_sockets() -> None:
    for package in PACKAGES:
        if package == "net":
            continue
        for path in _modules(package):
            text = path.read_text()
            assert ".socket(zmq." not in text, f"{path} opens a socket"


def test_top_level_modules_name_processes_only_to_start_them() -> None:
    for path in (ROOT / "runtime").glob("_*.py"):
        used = _runtime_packages(_imports(path))
        allowed = {"driver", "supervisor", "worker", "node", "net", "core", "wire", "observe"}
        assert used <= allowed, path


def test_classes_and_functions_stay_small() -> None:
    too_long = []
    for path in [*(ROOT / "runtime").rglob("*.py"), *(ROOT / "actors").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            lines = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, ast.ClassDef) and lines > MAX_CLASS_LINES:
                too_long.append(f"class {path.name}:{node.name} ({lines} lines)")
            is_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if is_function and lines > MAX_FUNCTION_LINES:
                too_long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert not too_long, too_long


def test_public_names_are_listed_and_private_modules_are_private() -> None:
    for package in (actors, runtime, dovecote):  # dovecote: the front door, re-exports only
        for name in package.__all__:
            assert hasattr(package, name)
    folders = [ROOT / "actors", ROOT / "runtime", *(ROOT / "runtime" / p for p in PACKAGES)]
    for folder in folders:
        modules = [p.name for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert all(m.startswith("_") for m in modules), modules
        assert (folder / "__init__.py").exists(), folder


def test_py_typed_is_shipped() -> None:
    assert (ROOT / "actors" / "py.typed").exists()
    assert (ROOT / "runtime" / "py.typed").exists()
    assert (ROOT / "dovecote" / "py.typed").exists()
