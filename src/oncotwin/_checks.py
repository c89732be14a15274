"""Argument checks shared by the dose-physics modules (radiotherapy, dosimetry)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .errors import ModelError


def checked_array(name: str, value: ArrayLike, *, positive: bool = False) -> np.ndarray:
    """`value` as a float array; every element finite and >= 0 (> 0 when `positive`)."""
    arr = np.asarray(value, dtype=float)
    bad = ~np.isfinite(arr) | ((arr <= 0.0) if positive else (arr < 0.0))
    if np.any(bad):
        first = arr[bad].flat[0]
        raise ModelError(f"{name} must be finite and {'>' if positive else '>='} 0, got {first!r}")
    return arr


def scalar_or_array(x: np.ndarray) -> Any:
    """A float for 0-d results, else the array (so scalar inputs give scalar outputs)."""
    return float(x) if np.ndim(x) == 0 else x
