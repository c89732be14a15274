"""JAX set-up shared by every numerical module: float64, and a persistent compilation cache.

Import JAX through this module (``from ._jax import jax, jnp``) so that the CLI's start-up stays
fast (JAX is imported only by commands that compute) and every computation runs in float64.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

_cache = os.environ.get("ONCOTWIN_JAX_CACHE")
if _cache is None:
    import platformdirs

    _cache = os.path.join(platformdirs.user_cache_dir("oncotwin"), "jax")
if _cache:  # ONCOTWIN_JAX_CACHE="" turns the persistent cache off
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

__all__ = ["jax", "jnp"]
