"""joblib on dovecote's workers: ``import dovecote.joblib`` registers the
``"dovecote"`` backend.

::

    import joblib
    import dovecote.joblib  # noqa: F401 - registers the backend

    with joblib.parallel_config(backend="dovecote", n_jobs=4):
        squares = joblib.Parallel()(joblib.delayed(pow)(i, 2) for i in range(1000))

``parallel_config(backend="dovecote", system=system)`` runs on an ``ActorSystem``
you started; without one the backend starts one the first time it is used
(``n_jobs`` workers, all CPUs for ``-1``) and keeps it for later calls until the
interpreter exits. joblib's automatic batching applies: each batch of calls is
one dovecote task, re-sent if its worker dies.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from joblib import register_parallel_backend
from joblib._parallel_backends import AutoBatchingMixin, ParallelBackendBase

from actors._future import ActorFuture
from runtime.driver import ActorSystem, DovecoteExecutor

__all__ = ["DovecoteBackend"]

_shared: ActorSystem | None = None  # the system the backend starts when given none
_shared_lock = threading.Lock()


def _shared_system(workers: int) -> ActorSystem:
    global _shared
    with _shared_lock:
        if _shared is None or _shared._closed:
            _shared = ActorSystem(workers)
        return _shared


class DovecoteBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]
    """A joblib backend whose batches are tasks of an ``ActorSystem``."""

    supports_retrieve_callback = True
    supports_timeout = True

    def __init__(self, system: ActorSystem | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.system = system
        self._executor: DovecoteExecutor | None = None

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        available = self.system.workers if self.system is not None else (os.cpu_count() or 1)
        if n_jobs is None:
            return available if self.system is not None else 1
        if n_jobs < 0:
            return max(available + 1 + n_jobs, 1)
        return n_jobs if self.system is None else min(n_jobs, available)

    def configure(self, n_jobs: int | None = 1, parallel: Any = None, **kwargs: Any) -> int:
        n_jobs = self.effective_n_jobs(n_jobs)
        if self.system is None:
            self.system = _shared_system(n_jobs)
        self.parallel = parallel
        self._executor = self.system.executor()
        return n_jobs

    def submit(self, func: Any, callback: Any = None) -> ActorFuture[Any]:
        assert self._executor is not None, "configure() first"
        future = self._executor.submit(func)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def retrieve_result_callback(self, future: ActorFuture[Any]) -> Any:
        return future.result()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """A call failed: the batches not started are cancelled."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if ensure_ready and self.system is not None:
            self._executor = self.system.executor()

    def terminate(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        self.reset_batch_stats()


register_parallel_backend("dovecote", DovecoteBackend)
