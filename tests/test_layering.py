"""Imports go one way: runtime imports actors, never the reverse."""

from __future__ import annotations

import ast
import pathlib

import actors
import runtime

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_actors_never_imports_runtime() -> None:
    for path in (ROOT / "actors").glob("*.py"):
        bad = {n for n in _imports(path) if n == "runtime" or n.startswith("runtime.")}
        assert not bad, f"{path.name} imports {bad}"


def test_public_names_are_listed_and_private_modules_are_private() -> None:
    for package in (actors, runtime):
        for name in package.__all__:
            assert hasattr(package, name)
        folder = ROOT / package.__name__
        modules = [p.name for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert all(m.startswith("_") for m in modules), modules
