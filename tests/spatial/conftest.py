"""Shared synthetic patient of the spatial tests (one phantom, written once per session).

The calibration tests and the CLI test use the same grid, visits and settings, so JAX compiles
the calibration once (the persistent compile cache serves the second use).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from oncotwin.data.phantom import make_phantom, write_phantom

SHAPE, SPACING, SEED = (36, 40), (2.5, 2.5), 5


@pytest.fixture(scope="session")
def noisy_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Realistic imaging: noise sd 0.03 in cellularity, tumour segmented above 0.05."""
    ph = make_phantom(SHAPE, SPACING, seed=SEED, noise=0.03, detection=0.05)
    return write_phantom(tmp_path_factory.mktemp("noisy"), ph)
