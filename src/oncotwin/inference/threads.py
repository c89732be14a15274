"""Run independent sampler calls on a thread per core.

A NUTS run is a long chain of small XLA operations: it keeps one core busy, and XLA releases
the GIL while it runs, so independent runs (subjects, chains) on threads use every core. JAX
compiles a function on its first call with a new shape, and two threads calling it at once
would both compile it: the first call of each shape runs on the calling thread before the
rest go to the pool.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

THREADS = min(8, os.cpu_count() or 1)


def map_in_threads(
    fn: Callable[[T], R], items: Sequence[T], shape: Callable[[T], Hashable] = lambda _: None
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in order, computed on up to :data:`THREADS` threads.

    `shape(item)` names the compiled function an item needs; the first item of each shape runs
    on this thread. Results are the same as a serial loop's when `fn` depends only on its item.
    """
    futures: list[Future[R]] = []
    seen: set[Hashable] = set()
    pool = ThreadPoolExecutor(max_workers=THREADS)
    try:
        for item in items:
            key = shape(item)
            if key in seen:
                futures.append(pool.submit(fn, item))
                continue
            seen.add(key)
            done: Future[R] = Future()
            done.set_result(fn(item))
            futures.append(done)
        for future in futures:
            yield future.result()
    finally:  # on an error, do not start the items still queued
        pool.shutdown(wait=True, cancel_futures=True)
