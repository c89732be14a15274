"""Session-wide test set-up: free compiled code between test modules.

Every compiled XLA:CPU executable keeps memory mappings. One pytest process compiles thousands
of functions (every model, shape and inference path), and past the kernel's limit on mappings
(vm.max_map_count, 65,530 by default) the next compilation crashes inside XLA with a
segmentation fault (measured: 38,000 mappings by a third of the suite; clearing the caches after
two modules took a process from 10,844 to 1,633). So after a module that leaves the process
above MAX_MAPPINGS we drop JAX's caches and oncotwin's own caches of jitted functions; later
modules recompile what they need (from the persistent compilation cache when it is on).
"""

from __future__ import annotations

import functools
import gc
import os
import sys

import pytest

MAX_MAPPINGS = 20_000  # a third of the default vm.max_map_count, leaving room for one module


def _mappings() -> int:
    """Memory mappings of this process (Linux); 0 where /proc is not available."""
    try:
        with open(f"/proc/{os.getpid()}/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:
        return 0


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():  # type: ignore[no-untyped-def]
    yield
    jax = sys.modules.get("jax")
    if jax is None or _mappings() < MAX_MAPPINGS:
        return
    jax.clear_caches()
    for name, module in list(sys.modules.items()):
        if name == "oncotwin" or name.startswith("oncotwin."):
            for obj in list(vars(module).values()):
                if isinstance(obj, functools._lru_cache_wrapper):
                    obj.cache_clear()
    gc.collect()
