"""The ``"dovecote"`` joblib backend: ``Parallel(...)(delayed(f)(x) ...)`` runs in the
system's workers, with joblib's batching."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import joblib
import pytest

import dovecote.joblib  # registers the backend
from runtime import ActorSystem


def square(x: int) -> int:
    return x * x


def pid(_: int) -> int:
    return os.getpid()


def test_parallel_runs_in_the_workers(system: ActorSystem) -> None:
    with joblib.parallel_config(backend="dovecote", system=system):
        squares = joblib.Parallel(n_jobs=2)(joblib.delayed(square)(i) for i in range(200))
        pids = set(joblib.Parallel(n_jobs=2)(joblib.delayed(pid)(i) for i in range(50)))
    assert squares == [i * i for i in range(200)]
    assert os.getpid() not in pids and pids  # every call ran in a worker process


def test_batching_and_generators(system: ActorSystem) -> None:
    with joblib.parallel_config(backend="dovecote", system=system, n_jobs=-1):
        batched = joblib.Parallel(batch_size=7)(joblib.delayed(square)(i) for i in range(50))
        lazily = joblib.Parallel(return_as="generator")(
            joblib.delayed(square)(i) for i in range(20)
        )
        assert list(lazily) == [i * i for i in range(20)]
    assert batched == [i * i for i in range(50)]


def test_an_error_is_raised_with_its_type(system: ActorSystem) -> None:
    with joblib.parallel_config(backend="dovecote", system=system):
        with pytest.raises(ZeroDivisionError):
            joblib.Parallel(n_jobs=2)(joblib.delayed(divmod)(1, x) for x in [1, 2, 0, 3])
        # the backend serves the next call
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(square)(i) for i in range(3)) == [0, 1, 4]


def test_n_jobs_is_bounded_by_the_workers(system: ActorSystem) -> None:
    backend = dovecote.joblib.DovecoteBackend(system=system)
    assert backend.effective_n_jobs(8) == system.workers
    assert backend.effective_n_jobs(-1) == system.workers
    assert backend.effective_n_jobs(None) == system.workers
    with pytest.raises(ValueError):
        backend.effective_n_jobs(0)


def test_without_a_system_the_backend_starts_one_and_it_ends_at_exit() -> None:
    script = textwrap.dedent(
        """
        import joblib, dovecote.joblib
        with joblib.parallel_config(backend="dovecote", n_jobs=2):
            print(sum(joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(100))))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sum(range(100)))
