"""What a release ships: the front door ``dovecote``, type information, the licence,
the extras, and the benchmark's message when its extra is missing."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from typing import Any

import pytest

import actors
import dovecote
import runtime

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXTRAS = {  # extra -> the distributions it must bring
    "numpy": {"numpy"},
    "progress": {"tqdm"},
    "metrics": {"prometheus_client"},
    "cli": {"rich"},
    "titles": {"setproctitle"},
    "ops": {"tqdm", "prometheus_client", "rich", "setproctitle"},
    "bench": {"numpy", "joblib", "psutil"},
    "joblib": {"joblib"},
    "test": {
        "pytest",
        "pytest-timeout",
        "numpy",
        "joblib",
        "tqdm",
        "prometheus_client",
        "rich",
        "setproctitle",
    },
}
NEEDS_TOMLLIB = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="reading pyproject.toml needs tomllib (Python 3.11+)"
)


def _pyproject() -> dict[str, Any]:
    import tomllib

    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _name(requirement: str) -> str:
    """The distribution a requirement names: "joblib>=1.3" -> "joblib"."""
    for i, char in enumerate(requirement):
        if not (char.isalnum() or char in "-_."):
            return requirement[:i]
    return requirement


def test_the_front_door_re_exports_the_whole_public_api() -> None:
    assert len(dovecote.__all__) == len(set(dovecote.__all__))
    for name in dovecote.__all__:
        assert hasattr(dovecote, name), name
    for package in (actors, runtime):
        missing = set(package.__all__) - set(dovecote.__all__)
        assert not missing, f"dovecote.__all__ lacks {package.__name__}'s {sorted(missing)}"
        for name in package.__all__:  # the same objects, not copies
            assert getattr(dovecote, name) is getattr(package, name), name


@pytest.mark.parametrize("package", ["actors", "runtime", "dovecote"])
def test_py_typed_is_shipped(package: str) -> None:
    assert (ROOT / package / "py.typed").is_file()


def test_the_licence_is_mit() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the dovecote authors" in text


@NEEDS_TOMLLIB
def test_pyproject_declares_the_licence_as_an_spdx_expression() -> None:
    project = _pyproject()["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    # PEP 639: a licence expression excludes licence classifiers
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    assert "Typing :: Typed" in project["classifiers"]
    assert set(project["urls"]) >= {"Homepage", "Documentation", "Issues"}


@NEEDS_TOMLLIB
def test_pyproject_ships_every_package_and_the_command() -> None:
    config = _pyproject()
    assert config["project"]["scripts"] == {"dovecote": "runtime._cli:main"}
    setuptools = config["tool"]["setuptools"]
    assert {"actors", "runtime", "runtime.*", "dovecote"} <= set(
        setuptools["packages"]["find"]["include"]
    )
    assert "py.typed" in setuptools["package-data"]["*"]
    assert "dovecote" in config["tool"]["mypy"]["files"]


@NEEDS_TOMLLIB
@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_the_extras_exist(extra: str) -> None:
    requirements = _pyproject()["project"]["optional-dependencies"][extra]
    assert {_name(r) for r in requirements} >= EXTRAS[extra]


def test_the_bench_without_numpy_names_its_extra_and_runs_nothing() -> None:
    shim = (
        "import runpy, sys\n"
        "sys.modules['numpy'] = None  # import numpy now raises ImportError\n"
        "sys.argv = ['python -m bench', '--quick', '--only', 'latency']\n"
        "runpy.run_module('bench', run_name='__main__', alter_sys=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", shim], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "python -m bench needs the 'bench' extra" in done.stderr
    assert "pip install 'dovecote[bench]'" in done.stderr
    assert "numpy" in done.stderr
    assert "Traceback" not in done.stderr
    assert "running" not in done.stderr  # no metric started
    assert done.stdout == ""  # not even the header
