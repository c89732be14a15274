"""Background jobs with progress: any kind of work given as a callable.

``runner.submit(kind, work, created_by=..., patient_id=..., params=...)`` records a queued job
and runs ``work(progress)`` on a worker thread; ``progress`` is the usual
``start(label, total) -> advance(n)`` callback (see ``cli_common.progress_bars``), whose calls
are written to the job's row so clients can poll ``GET /api/jobs/{id}``. The callable returns
a JSON-able dict (the job's result); an exception marks the job failed with its message.
Twin creation and update use it; optimisation and trial runs submit their own callables.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from ..errors import OncotwinError
from ..store.security import Security

log = logging.getLogger("oncotwin.service.jobs")

Progress = Callable[[str, int], Callable[[int], None]]
Work = Callable[[Progress], Mapping[str, Any] | None]


class JobRunner:
    """Runs jobs on `workers` threads and keeps their state in the store.

    Args:
        security: the store's security repository (holds the jobs table).
        workers: jobs run at the same time.
        on_finish: called with (job id, status) after each job (e.g. to audit it).
    """

    def __init__(
        self, security: Security, workers: int = 1,
        on_finish: Callable[[int, str], None] | None = None,
    ) -> None:  # fmt: skip
        self.security = security
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="oncotwin-job")
        self._futures: dict[int, Future[None]] = {}
        self._lock = threading.Lock()
        self._on_finish = on_finish

    def submit(
        self, kind: str, work: Work, *, created_by: str, patient_id: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> int:  # fmt: skip
        """Queue `work` as a job of `kind`; returns the job id at once."""
        job_id = self.security.create_job(kind, created_by=created_by, patient_id=patient_id,
                                          params=params)  # fmt: skip
        future = self._pool.submit(self._run, job_id, work)
        with self._lock:
            self._futures[job_id] = future
        return job_id

    def wait(self, job_id: int, timeout: float | None = None) -> None:
        """Block until a job submitted here has finished (for tests and the CLI)."""
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout)

    def shutdown(self) -> None:
        """Stop taking jobs; wait for the running ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, job_id: int, work: Work) -> None:
        sec = self.security
        sec.update_job(job_id, status="running", started_at=datetime.now(UTC))
        state: dict[str, int] = {"done": 0, "total": 0}

        def start(label: str, total: int) -> Callable[[int], None]:
            # Successive stages add up: the job shows done/total over all of them.
            state["total"] += int(total)
            sec.update_job(job_id, label=label, total=state["total"])

            def advance(n: int) -> None:
                state["done"] = min(state["done"] + int(n), state["total"])
                sec.update_job(job_id, done=state["done"])

            return advance

        try:
            result = work(start)
        except Exception as exc:  # a failed job is data, not a crash of the worker
            message = str(exc) if isinstance(exc, OncotwinError) else type(exc).__name__
            log.info("job %d failed: %s", job_id, type(exc).__name__)
            sec.update_job(job_id, status="failed", error=message,
                           finished_at=datetime.now(UTC))  # fmt: skip
            self._finished(job_id, "failed")
            return
        sec.update_job(job_id, status="done", result=dict(result or {}), done=state["total"],
                       finished_at=datetime.now(UTC))  # fmt: skip
        self._finished(job_id, "done")

    def _finished(self, job_id: int, status: str) -> None:
        if self._on_finish is not None:
            try:
                self._on_finish(job_id, status)
            except Exception:  # auditing must not take the worker down
                log.exception("recording the end of job %d failed", job_id)
