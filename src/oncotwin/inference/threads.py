"""Run independent sampler calls on a thread per core.

A NUTS run is a long chain of small XLA operations: it keeps one core busy, and XLA releases
the GIL while it runs, so independent runs (subjects, chains) on threads use every core.
Threads that call a function not yet compiled for their shapes wait for one compilation (four
threads' first calls of the per-subject NUTS took 4.3 s, as one call alone does).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

THREADS = min(8, os.cpu_count() or 1)


def map_in_threads(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in order, computed on up to :data:`THREADS` threads.

    Results are the same as a serial loop's when `fn` depends only on its item. On an error,
    the items not yet started are dropped.
    """
    pool = ThreadPoolExecutor(max_workers=THREADS)
    try:
        futures = [pool.submit(fn, item) for item in items]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
