"""Spatially varying proliferation: solver with a rho map, the field prior, and its calibration.

References: the logistic closed form ``u(t) = u0 e^{rho t} / (1 - u0 + u0 e^{rho t})`` (each
voxel on its own when D = 0); the eigenvalues of the Neumann (zero-flux) graph Laplacian of an
``n1 x n2`` grid, ``mu = 4/h1^2 sin^2(pi k1 / (2 n1)) + 4/h2^2 sin^2(pi k2 / (2 n2))`` (the
DCT-II diagonalises it; Strang G. SIAM Rev 1999;41:135-147); the chain rule (the derivative in a
uniform rate is the sum of the derivatives in the voxels' rates); parameter recovery on a
synthetic patient whose true rate varies across the tumour (oncotwin.data.phantom with a
``rho_map``, fixed seeds).
"""

from __future__ import annotations

import numpy as np
import pytest

import oncotwin._jax  # noqa: F401
from oncotwin._jax import jax, jnp
from oncotwin.errors import ModelError
from oncotwin.inference import spatial as isp
from oncotwin.models import spatial as sp

NO_TREAT = {"D": 0.0, "alpha": 0.0, "alpha_beta": 10.0, "k_chemo": 0.0}


# --------------------------------------------------------------------------- solver


def test_rho_map_without_diffusion_is_logistic_per_voxel() -> None:
    rng = np.random.default_rng(0)
    shape = (6, 5)
    rho = rng.uniform(0.05, 0.5, shape)  # 1/day
    u0 = rng.uniform(0.01, 0.5, shape)
    op = sp.operator(np.ones(shape, bool), (1.0, 1.0))
    forcing = sp.make_forcing(100, 0.1)  # 10 days
    maps, _ = sp.simulate(u0, {**NO_TREAT, "rho": rho}, op, forcing, [100], checkpoint=False)
    g = np.exp(rho * 10.0)
    exact = u0 * g / (1.0 - u0 + u0 * g)
    # RK4 with rho dt <= 0.05: local error ~ (rho dt)^5 / 120 per step, ~1e-9 relative in all
    np.testing.assert_allclose(np.asarray(maps[0]), exact, rtol=1e-8)


def _grid_case():  # type: ignore[no-untyped-def]
    mask = np.ones((10, 12), bool)
    mask[4:6, 3:5] = False  # a hole: zero flux inside the domain too
    op = sp.operator(mask, (2.0, 2.5), dose_map=np.where(mask, 0.8, 0.0))
    x = np.indices(mask.shape).astype(float)
    u0 = 0.6 * np.exp(-((x[0] - 3) ** 2 + (x[1] - 7) ** 2) / 6.0)
    forcing = sp.make_forcing(40, 0.5, rt_days=[3.0, 4.0], chemo_days=[2.0])
    params = {"D": 0.3, "rho": 0.04, "alpha": 0.03, "alpha_beta": 10.0, "k_chemo": 0.02}
    return mask, op, u0, forcing, params


def test_uniform_rho_map_equals_scalar_bit_for_bit() -> None:
    mask, op, u0, forcing, params = _grid_case()
    scalar = sp.simulate(u0, params, op, forcing, [20, 40], checkpoint=False)
    as_map = dict(params, rho=np.full(mask.shape, params["rho"]))
    mapped = sp.simulate(u0, as_map, op, forcing, [20, 40], checkpoint=False)
    for a, b in zip(scalar, mapped, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_gradient_in_uniform_rho_is_sum_of_voxel_gradients() -> None:
    mask, op, u0, forcing, params = _grid_case()

    def loss(p):  # type: ignore[no-untyped-def]
        m, _ = sp.simulate(u0, p, op, forcing, [40], checkpoint=False)
        return jnp.sum(m[0] ** 2)

    d_scalar = jax.grad(lambda r: loss(dict(params, rho=r)))(params["rho"])
    d_map = jax.grad(lambda r: loss(dict(params, rho=r)))(jnp.full(mask.shape, params["rho"]))
    assert float(d_scalar) == pytest.approx(float(jnp.sum(d_map)), rel=1e-10)
    assert float(jnp.max(jnp.abs(d_map))) > 0


def test_rho_map_of_wrong_shape_is_refused() -> None:
    mask, op, u0, forcing, params = _grid_case()
    with pytest.raises(ModelError, match="rho map shape"):
        sp.simulate(u0, dict(params, rho=np.full(mask.shape[1], 0.04)), op, forcing, [40])


# --------------------------------------------------------------------------- field prior


def _neumann_eigenvalues(n1: int, n2: int, h1: float, h2: float) -> np.ndarray:
    k1, k2 = np.meshgrid(np.arange(n1), np.arange(n2), indexing="ij")
    mu = (
        4 / h1**2 * np.sin(np.pi * k1 / (2 * n1)) ** 2
        + 4 / h2**2 * np.sin(np.pi * k2 / (2 * n2)) ** 2
    )
    return np.sort(mu.ravel())


@pytest.mark.parametrize("shape", [(12, 9), (40, 41)])  # dense eigh and sparse shift-invert
def test_field_basis_matches_neumann_laplacian_and_prior_scale(shape: tuple[int, int]) -> None:
    h = (2.0, 3.0)
    prior = isp.FieldPrior(sd=0.4, range_mm=25.0, modes=10)
    assert shape[0] * shape[1] > isp.DENSE_EIGEN_MAX or shape == (12, 9)
    mask = np.zeros((shape[0] + 2, shape[1] + 2), bool)  # a rectangle inside a frame
    mask[1:-1, 1:-1] = True
    basis, mu = isp.field_basis(mask, h, prior)
    np.testing.assert_allclose(mu, _neumann_eigenvalues(*shape, *h)[1:11], rtol=1e-8, atol=1e-12)
    assert basis.shape == (10, *mask.shape) and np.all(basis[:, ~mask] == 0)
    flat = basis.reshape(10, -1)[:, mask.ravel()]
    # modes are orthogonal, zero-mean over the mask (constants removed), and scaled so that
    # the mean prior variance over the mask is sd^2
    gram = flat @ flat.T
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-10)
    np.testing.assert_allclose(flat.sum(axis=1), 0.0, atol=1e-9)
    assert np.mean(np.sum(flat**2, axis=0)) == pytest.approx(0.4**2, rel=1e-10)
    # variance decreases with roughness: lambda_k proportional to (kappa^2 + mu_k)^-2 (2D: nu = 1)
    kappa2 = 8.0 / 25.0**2
    np.testing.assert_allclose(
        np.diag(gram) / gram[0, 0], (kappa2 + mu[0]) ** 2 / (kappa2 + mu) ** 2, rtol=1e-8
    )


def test_field_prior_and_mode_are_checked() -> None:
    mask = np.ones((4, 4), bool)
    with pytest.raises(ModelError, match="modes"):
        isp.field_basis(mask, (1.0, 1.0), isp.FieldPrior(modes=16))
    with pytest.raises(ModelError, match="field prior"):
        isp.field_basis(mask, (1.0, 1.0), isp.FieldPrior(sd=0.0))


# --------------------------------------------------------------------------- recovery


SHAPE, SPACING, SEED = (36, 40), (2.5, 2.5), 5  # the shared noisy phantom's anatomy (conftest)


def rho_factor(offsets: tuple[np.ndarray, ...]) -> np.ndarray:
    """True rate / 0.025: x 0.5 on one side of the seed, x 2 on the other, 12 mm transition."""
    return np.exp(0.7 * np.tanh(offsets[0] / 12.0))


@pytest.fixture(scope="module")
def field_phantom(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from oncotwin.data.phantom import make_phantom, write_phantom

    ph = make_phantom(SHAPE, SPACING, seed=SEED, noise=0.03, detection=0.05, rho_map=rho_factor)
    return ph, write_phantom(tmp_path_factory.mktemp("field"), ph)


def _setup(manifest, proliferation: str):  # type: ignore[no-untyped-def]
    from oncotwin.data.imaging import load_manifest

    # dt = 1 d (the phantom was grown with 0.5 d): halves the run time; RK4's time error is
    # negligible here (the seed-5 figures below agree with dt = 0.5 to 3 digits)
    return isp.prepare(
        load_manifest(manifest), calibration_visits=[0, 1, 2], fixed={"k_chemo": 0.01},
        detection=0.05, crop_margin_mm=15.0, dt=1.0, proliferation=proliferation,
    )  # fmt: skip


@pytest.fixture(scope="module")
def field_fits(field_phantom):  # type: ignore[no-untyped-def]
    import warnings

    ph, manifest = field_phantom
    out = {}
    for mode in ("scalar", "field"):
        setup = _setup(manifest, mode)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # must converge
            post = isp.calibrate(setup, n_draws=50, seed=21)
        fc = isp.forecast(post, [v.day for v in setup.patient.visits[2:]])
        out[mode] = (post, fc)
    return ph, out


def _tumour(ph, post):  # type: ignore[no-untyped-def]
    """Tumour voxels (last calibration ROI) in the crop, and the true rate there."""
    box = post.setup.box
    roi = post.setup.patient.visits[2].roi & post.setup.patient.mask
    return roi, ph.rho_map[box][roi]


def test_field_recovers_the_true_rate_map(field_fits) -> None:  # type: ignore[no-untyped-def]
    """(a) shape of the field, (c) pointwise 90% coverage; seed 5, measured 2026-11-26.

    Measured here (seed 5, dt 1 d): Pearson r of log rho over the 206 tumour voxels 0.988;
    median |rho/truth - 1| 0.10; the 90% intervals cover the truth in 0.53 of the voxels. The
    level is 11% high (geometric mean; it trades off against D: 0.121 for a true 0.2) and the
    intervals (upper/lower 1.23) are too narrow for that. With dt 0.5 d and phantom seeds 3, 4,
    6: r 0.985, 0.983, 0.989 and coverage 0.71, 0.64, 0.95 (benchmarks/spatial.py --field
    --field-seed S). Bounds: r > 0.9 and coverage > 0.35: margins below the worst seed, far
    above a constant map (no correlation; the scalar fit's one rate covers 0.25 of the voxels).
    """
    ph, fits = field_fits
    post, _ = fits["field"]
    assert post.converged and post.diagnostics["field_modes"] == 24
    roi, truth = _tumour(ph, post)
    med, lo, hi = post.rho_field()
    assert roi.sum() > 150 and np.all(lo[roi] < med[roi]) and np.all(med[roi] < hi[roi])
    r = np.corrcoef(np.log(med[roi]), np.log(truth))[0, 1]
    assert r > 0.9, r
    covered = np.mean((lo[roi] <= truth) & (truth <= hi[roi]))
    assert covered > 0.35, covered
    # the scalar fit's map is one number: no spatial information at all
    s_med, _, _ = fits["scalar"][0].rho_field()
    assert np.ptp(s_med[roi]) == 0.0
    # the field reaches across the true range (x 0.5 .. x 2 of 0.025 per day)
    assert np.min(med[roi]) < 0.02 < 0.035 < np.max(med[roi])


def test_field_forecast_beats_scalar_on_held_out_visits(field_fits) -> None:  # type: ignore[no-untyped-def]
    """(b) held-out totals (days 105 and 161) within 10%, and closer than the scalar fit's.

    Measured here (seed 5): field +5.0% and +5.8%; scalar -20.4% and -22.2% (one rate cannot
    carry the fast side's regrowth after treatment). Neither 90% interval holds the truth. Not
    universal: on seed 4 the scalar fit is closer at day 161 (+3.2% vs +3.9%; -9.3% vs +3.7%
    at day 105; benchmarks/spatial.py --field --field-seed 4).
    """
    _, fits = field_fits
    errors = {}
    for mode, (post, fc) in fits.items():
        rows = isp.compare_visits(fc, post, [3, 4])
        errors[mode] = [abs(r["total_median"] / r["true_total"] - 1) for r in rows]
    assert max(errors["field"]) < 0.10, errors
    for f, s in zip(errors["field"], errors["scalar"], strict=True):
        assert f < s, errors


def test_field_draws_same_seed_same_numbers(field_fits) -> None:  # type: ignore[no-untyped-def]
    ph, fits = field_fits
    post, _ = fits["field"]
    rng = np.random.default_rng(post.seed)
    zs = rng.multivariate_normal(post.z_map, post.cov, size=len(post.draws), method="cholesky")
    n = len(post.names)
    np.testing.assert_allclose(np.exp(zs[:, :n]), post.draws)
    np.testing.assert_allclose(zs[:, n:], post.field_draws)
    # the reference rate is no longer the phantom's scalar rho: its truth is not shown
    assert "truth" not in next(r for r in post.summary() if r["parameter"] == "rho")


def test_phantom_writes_the_true_rate_map(field_phantom) -> None:  # type: ignore[no-untyped-def]
    from oncotwin.data.imaging import load_manifest, load_nifti

    ph, manifest = field_phantom
    pt = load_manifest(manifest)
    assert pt.truth["rho_map"] == "truth_rho.nii.gz"
    stored = load_nifti(manifest.parent / "truth_rho.nii.gz").data
    np.testing.assert_allclose(np.squeeze(stored), ph.rho_map, rtol=1e-6)


def test_cli_proliferation_field(field_phantom, field_fits, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`--proliferation field` reaches prepare; the JSON and report show the field.

    The calibration itself is the fixture's (same manifest, settings and field prior: checked
    below), so that this test does not pay for a third fit.
    """
    import json

    from typer.testing import CliRunner

    from oncotwin.cli_spatial import spatial_app

    _, manifest = field_phantom
    post = field_fits[1]["field"][0]
    seen = {}

    def fake_calibrate(setup, **kw):  # type: ignore[no-untyped-def]
        seen["setup"] = setup
        return post

    monkeypatch.setattr(isp, "calibrate", fake_calibrate)
    runner = CliRunner()
    args = ["calibrate", str(manifest), "--visits", "0,1,2", "--fix", "k_chemo=0.01",
            "--detection", "0.05", "--crop-margin", "15", "--proliferation", "field",
            "--out", str(tmp_path / "out"), "--json"]  # fmt: skip
    res = runner.invoke(spatial_app, args)
    assert res.exit_code == 0, res.output
    s = seen["setup"]
    assert s.proliferation == "field" and s.field_prior == post.setup.field_prior
    assert s.box == post.setup.box and s.calib == post.setup.calib
    out = json.loads(res.stdout[res.stdout.index("{") :])
    assert out["proliferation"] == "field"
    f = out["proliferation_field"]
    assert f["prior"] == {"sd": 0.5, "range_mm": 30.0, "modes": 24}
    assert f["first_roi"]["median_min"] < f["first_roi"]["median_max"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Proliferation field" in html and "<script" not in html
    bad = runner.invoke(spatial_app, [*args[:-3], "--proliferation", "voxels"])
    assert bad.exit_code == 2 and "proliferation must be one of" in bad.output


def test_conjugate_gradients_solves_spd_system_column_by_column() -> None:
    # hand-checkable: C = [[4, 1], [1, 3]], C^-1 = [[3, -1], [-1, 4]] / 11; a zero right-hand
    # side column stays zero (no 0/0)
    c = np.array([[4.0, 1.0], [1.0, 3.0]])
    rhs = np.array([[1.0, 0.0, 2.0], [2.0, 0.0, -1.0]])
    x, res, its = isp._conjugate_gradients(lambda p: c @ p, rhs)
    np.testing.assert_allclose(x, np.array([[3, -1], [-1, 4]]) @ rhs / 11.0, atol=1e-12)
    assert its <= 3 and res < 1e-10 and np.all(x[:, 1] == 0.0)  # CG: exact in n = 2 steps
