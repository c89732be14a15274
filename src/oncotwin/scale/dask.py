"""Dask backend: the chunks of a virtual trial on a ``distributed`` cluster.

Why identical results: each chunk is a pure function of (plan, chunk number); patients draw
their random numbers from their own keys, and chunks have one fixed shape, so the worker that
runs a chunk and the order chunks finish in change nothing. The plan is sent to the cluster
once (``scatter``) and each worker compiles the chunk function once per plan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import OncotwinError
from ..trials.run import TrialPlan, run_chunk

__all__ = ["DaskExecutor"]


class DaskExecutor:
    """Run trial chunks on Dask.

    Args:
        scheduler: address of a running scheduler ("tcp://host:8786"); None starts a
            ``LocalCluster``.
        n_workers: workers of the local cluster (ignored with `scheduler`).
        threads_per_worker: threads per local worker.
        processes: local workers as processes (True) or threads in this process (False,
            faster to start; for tests).
        memory_limit: per local worker, e.g. "4GiB" (Dask's format).

    Use as a context manager (``with DaskExecutor() as ex: run_trial(..., executor=ex)``) so
    the local cluster is closed afterwards.
    """

    def __init__(
        self, scheduler: str | None = None, *, n_workers: int = 2, threads_per_worker: int = 1,
        processes: bool = True, memory_limit: str | None = "auto",
    ) -> None:  # fmt: skip
        self.scheduler = scheduler
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.processes = processes
        self.memory_limit = memory_limit
        self._cluster: Any = None
        self._client: Any = None

    @property
    def name(self) -> str:
        where = (
            self.scheduler or f"LocalCluster({self.n_workers} workers, processes={self.processes})"
        )
        return f"dask {where}"

    def __enter__(self) -> DaskExecutor:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> Any:
        """Connect (or start the local cluster); returns the client.

        Raises:
            OncotwinError: the scheduler cannot be reached.
        """
        if self._client is not None:
            return self._client
        from distributed import Client, LocalCluster

        try:
            if self.scheduler:
                self._client = Client(self.scheduler, timeout="20s")
            else:
                self._cluster = LocalCluster(
                    n_workers=self.n_workers, threads_per_worker=self.threads_per_worker,
                    processes=self.processes, memory_limit=self.memory_limit,
                    dashboard_address=None,
                )  # fmt: skip
                self._client = Client(self._cluster)
        except OSError as exc:
            raise OncotwinError(f"cannot reach the Dask scheduler {self.scheduler}: {exc}") from exc
        return self._client

    def close(self) -> None:
        """Close the client and any local cluster this executor started."""
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    @property
    def workers(self) -> int:
        client = self.start()
        return len(client.scheduler_info().get("workers", {}))

    def map_chunks(
        self, plan: TrialPlan, chunks: Sequence[int], advance: Callable[[int], None]
    ) -> list[dict[str, np.ndarray]]:
        """Run the chunks on the cluster and return them in chunk order."""
        from distributed import as_completed

        client = self.start()
        remote = client.scatter(plan, broadcast=True)
        futures = client.map(run_chunk, [remote] * len(chunks), list(chunks), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        out: list[Any] = [None] * len(futures)
        for fut in as_completed(futures):
            out[index[fut.key]] = fut.result()
            advance(1)
        return out
