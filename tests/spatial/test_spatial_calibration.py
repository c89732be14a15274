"""Parameter recovery and forecasting on a synthetic patient (oncotwin.inference.spatial).

Reference: a phantom generated with known parameters (oncotwin.data.phantom, seed fixed), imaged
with noise, calibrated on its first three visits (pre-treatment, pre-treatment, end of
chemoradiation) and forecast at two held-out visits.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from oncotwin.data.imaging import load_manifest
from oncotwin.data.phantom import make_phantom, write_phantom
from oncotwin.errors import DataError
from oncotwin.inference import spatial as isp

SHAPE, SPACING, SEED = (36, 40), (2.5, 2.5), 5  # as in conftest.py (the shared noisy phantom)


def _fit(manifest: Path, detection: float, seed: int, initial_state: str):  # type: ignore[no-untyped-def]
    patient = load_manifest(manifest)
    # no crop: both fixtures (and the CLI test) share one grid, hence one compilation
    setup = isp.prepare(
        patient, calibration_visits=[0, 1, 2], fixed={"k_chemo": 0.01}, detection=detection,
        crop_margin_mm=None, initial_state=initial_state,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # must converge
        post = isp.calibrate(setup, n_draws=50, seed=seed)
    fc = isp.forecast(post, [v.day for v in patient.visits[2:]])
    return patient, post, fc


@pytest.fixture(scope="module")
def fitted(noisy_manifest: Path):  # type: ignore[no-untyped-def]
    """Realistic imaging: noise sd 0.03 in cellularity, tumour visible above 0.05."""
    return _fit(noisy_manifest, 0.05, 11, "latent")


@pytest.fixture(scope="module")
def fitted_ideal(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Noise-free images, tumour visible above 0.001: model and data agree up to the NIfTI
    storage quantisation (ADC in 1e-6 mm^2/s, 8-bit tissue and dose maps), so this checks the
    inference itself (gradients through the solver, optimiser, Laplace). The first map is exact
    here, so it is taken as observed (no latent initial state)."""
    ph = make_phantom(SHAPE, SPACING, seed=SEED, noise=0.0, detection=0.001)
    return _fit(write_phantom(tmp_path_factory.mktemp("ideal"), ph), 0.001, 12, "observed")


def test_true_parameters_recovered_from_ideal_images(fitted_ideal) -> None:  # type: ignore[no-untyped-def]
    patient, post, _ = fitted_ideal
    truth = patient.truth["params"]
    for name in ("D", "rho", "alpha"):
        lo, hi = post.interval(name)
        # within 0.3%: what is left is the storage quantisation and the shape of the invisible
        # tail below 0.001 (an exponential fill; the true front decays more slowly); on this
        # seed D is 0.19% high, rho and alpha within 0.02%
        assert post.map[name] == pytest.approx(truth[name], rel=3e-3)
        # the interval is as narrow as the quantisation noise (sigma ~ 1.5e-4): it covers the
        # truth to within 0.2% of its value (the same misfit)
        assert lo * (1 - 2e-3) < truth[name] < hi * (1 + 2e-3), (name, lo, hi)
    assert post.converged and post.seed == 12


def test_noisy_images_truth_within_90_intervals_and_forecast(fitted) -> None:  # type: ignore[no-untyped-def]
    """Issue 9's criterion on one fixed phantom (seed 5, noise sd 0.03, ROI above 0.05).

    With the first map as a latent state (errors in variables) and the invisible tail's decay
    length calibrated, D is no longer biased upwards. Not a proof of calibration: across 12
    phantom seeds (3-14; python benchmarks/spatial.py --coverage 12) the 90% intervals cover the
    truth for D, rho and alpha in 9, 7 and 9 of 12, and seed 5 is one of the 5 seeds where all
    three are covered (docs/spatial.md, Limits). With the first map taken as exact (the previous
    method) D was covered in 1 of 12, at 1.5x the truth.
    """
    patient, post, fc = fitted
    truth = patient.truth["params"]
    for name in ("D", "rho", "alpha"):
        lo, hi = post.interval(name)
        assert lo < truth[name] < hi, (name, lo, post.map[name], hi, truth[name])
    # the intervals are informative, not the prior's (prior log-sd >= 1: a factor > 25 at 90%)
    assert post.interval("D")[1] / post.interval("D")[0] < 3.0
    for name in ("rho", "alpha"):
        assert post.interval(name)[1] / post.interval(name)[0] < 1.3
    assert post.diagnostics["latent_voxels"] == int(patient.visits[0].roi.sum())
    rows = isp.compare_visits(fc, post, [3, 4])
    for row in rows:
        assert row["total_median"] == pytest.approx(row["true_total"], rel=0.10)
        assert row["total_lower"] < row["total_median"] < row["total_upper"]
        assert row["dice"] > 0.8 and row["ccc"] > 0.8
    assert np.all(fc.upper_map >= fc.lower_map) and fc.sd_map.max() > 0


def test_same_seed_same_draws(fitted) -> None:  # type: ignore[no-untyped-def]
    _, post, _ = fitted
    rng = np.random.default_rng(post.seed)
    zs = rng.multivariate_normal(post.z_map, post.cov, size=len(post.draws), method="cholesky")
    np.testing.assert_allclose(np.exp(zs), post.draws)


def test_prepare_rejects_bad_visit_choice(fitted) -> None:  # type: ignore[no-untyped-def]
    patient, _, _ = fitted
    with pytest.raises(DataError, match="calibration visits"):
        isp.prepare(patient, calibration_visits=[2])
    with pytest.raises(DataError, match="calibration visits"):
        isp.prepare(patient, calibration_visits=[0, 9])


def test_dice_and_concordance_hand_worked() -> None:
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([1, 0, 1, 0], bool)
    assert isp.dice(a, b) == 0.5  # 2*1 / (2+2)
    assert isp.concordance([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    # x = (1,2,3), y = x + 1: var 2/3 each, cov 2/3, mean shift 1 -> 2(2/3)/(4/3 + 1) = 4/7
    assert isp.concordance([1, 2, 3], [2, 3, 4]) == pytest.approx(4 / 7)
