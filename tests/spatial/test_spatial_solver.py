"""Verification of the reaction-diffusion solver (oncotwin.models.spatial) against closed forms.

References: Fisher RA, Ann Eugen 1937;7:355-369 (minimal front speed 2 sqrt(D rho)); the heat
kernel (Gaussian spreading with variance s0^2 + 2 D t per axis); RK4 is fourth order and the
finite-volume Laplacian second order on smooth solutions; LQ survival exp(-n(alpha d + beta d^2))
(Fowler 1989); Gompertz closed form u(t) = exp(ln(u0) exp(-rho t)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import oncotwin._jax  # noqa: F401
from oncotwin._jax import jax, jnp
from oncotwin.errors import ModelError
from oncotwin.models import spatial as sp
from oncotwin.radiotherapy import lq_survival

NO_TREAT = {"alpha": 0.0, "alpha_beta": 10.0, "k_chemo": 0.0}


def run(u0, params, op, forcing, saves, **kw):  # type: ignore[no-untyped-def]
    maps, totals = sp.simulate(u0, params, op, forcing, saves, checkpoint=False, **kw)
    return np.asarray(maps), np.asarray(totals)


@pytest.mark.parametrize("ndim", [1, 2])
def test_travelling_wave_speed_is_2_sqrt_D_rho(ndim: int) -> None:
    # D = 1 mm^2/day, rho = 1/day: speed 2 mm/day. The front from a step approaches it with a
    # -3/(2t) (Bramson) correction, so measure between t = 100 and 200 d (correction 0.5%);
    # h = 0.25 mm gives a discrete-speed error of h^2/12 / 2 ~ 0.3%.
    h, n, dt = 0.25, 1800, 0.04
    shape = (n,) if ndim == 1 else (n, 3)
    op = sp.operator(np.ones(shape, bool), (h,) * ndim)
    x = (np.arange(n) + 0.5) * h
    u0 = np.where(x < 5.0, 1.0, 0.0)
    if ndim == 2:
        u0 = np.repeat(u0[:, None], 3, axis=1)
    forcing = sp.make_forcing(5000, dt)
    maps, _ = run(u0, {"D": 1.0, "rho": 1.0, **NO_TREAT}, op, forcing, [2500, 5000])
    prof = maps[:, :, 1] if ndim == 2 else maps
    speed = (sp.front_position(prof[1], h) - sp.front_position(prof[0], h)) / 100.0
    assert speed == pytest.approx(2.0, rel=0.01)


def _gaussian(h: float, D: float = 1.0, t: float = 1.0, s0: float = 1.0, L: float = 10.0):  # type: ignore[no-untyped-def]
    n = int(round(2 * L / h))
    x = -L + (np.arange(n) + 0.5) * h
    xx, yy = np.meshgrid(x, x, indexing="ij")
    r2 = xx**2 + yy**2
    u0 = np.exp(-r2 / (2 * s0**2))
    var = s0**2 + 2 * D * t
    exact = s0**2 / var * np.exp(-r2 / (2 * var))
    dt = 0.01
    op = sp.operator(np.ones((n, n), bool), (h, h))
    forcing = sp.make_forcing(int(round(t / dt)), dt)
    maps, _ = run(u0, {"D": D, "rho": 0.0, **NO_TREAT}, op, forcing, [forcing.n_steps])
    return float(np.max(np.abs(maps[0] - exact)))


def test_pure_diffusion_matches_gaussian_with_second_order_in_space() -> None:
    e1, e2 = _gaussian(0.5), _gaussian(0.25)
    assert e2 < 2e-3  # peak is 1/3
    order = math.log2(e1 / e2)
    assert 1.8 < order < 2.2


def test_fourth_order_in_time() -> None:
    # logistic reaction-diffusion with an RT fraction at day 1 (a step boundary for every dt)
    n, h = 40, 1.0
    x = (np.arange(n) + 0.5) * h
    u0 = 0.5 * np.exp(-((x - 20) ** 2) / 20)
    op = sp.operator(np.ones(n, bool), (h,))
    p = {"D": 1.0, "rho": 0.5, "alpha": 0.3, "alpha_beta": 10.0, "k_chemo": 0.0}

    def final(dt: float) -> np.ndarray:
        f = sp.make_forcing(int(round(2.0 / dt)), dt, rt_days=[1.0], rt_doses=2.0)
        return run(u0, p, op, f, [f.n_steps])[0][0]

    ref = final(0.2 / 16)
    e1, e2 = np.max(np.abs(final(0.2) - ref)), np.max(np.abs(final(0.1) - ref))
    assert 3.7 < math.log2(e1 / e2) < 4.3


def test_rt_fractions_follow_lq_and_dose_map() -> None:
    mask = np.ones((4, 5), bool)
    dose = np.linspace(0.5, 1.0, 20).reshape(4, 5)
    op = sp.operator(mask, (1.0, 1.0), dose_map=dose)
    sched = sp.stupp_schedule(0.0)
    f = sp.make_forcing(100, 0.5, rt_days=sched["rt_days"], rt_doses=2.0)
    p = {"D": 0.0, "rho": 0.0, "alpha": 0.1, "alpha_beta": 10.0, "k_chemo": 0.0}
    maps, _ = run(np.full((4, 5), 0.5), p, op, f, [100])
    expected = 0.5 * lq_survival(2.0 * dose, 0.1, 0.01, n=30)
    np.testing.assert_allclose(maps[0], expected, rtol=1e-12)


def test_chemo_kill_integrates_exposure_exactly() -> None:
    # u' = -k E(t) u  =>  u(T) = u0 exp(-k AUC), AUC = sum r_i (1 - exp(-ke (T - t_i)))
    days, doses, hl, T, k = [0.0, 1.0, 2.0, 3.25], [1.0, 1.0, 2.0, 0.5], 0.1, 5.0, 0.3
    f = sp.make_forcing(10, 0.5, chemo_days=days, chemo_doses=doses, chemo_half_life=hl)
    ke = math.log(2) / hl
    auc = sum(r * (1 - math.exp(-ke * (T - t))) for t, r in zip(days, doses, strict=True))
    assert float(np.sum(f.exposure) * 0.5) == pytest.approx(auc, rel=1e-12)
    op = sp.operator(np.ones(3, bool), (1.0,))
    p = {"D": 0.0, "rho": 0.0, "alpha": 0.0, "alpha_beta": 10.0, "k_chemo": k}
    maps, _ = run(np.full(3, 0.8), p, op, f, [10])
    # RK4 multiplies by R(z) = 1 + z + z^2/2 + z^3/6 + z^4/24, z = -k E_n dt, each step ...
    z = -k * f.exposure * 0.5
    rk4 = 0.8 * np.prod(1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24)
    assert maps[0][0] == pytest.approx(rk4, rel=1e-12)
    # ... which is exp(z) up to sum z^5/120 (~1e-3 here, with step-mean exposures up to 2/day)
    assert maps[0][0] == pytest.approx(
        0.8 * math.exp(-k * auc), rel=2 * np.sum(np.abs(z) ** 5) / 120
    )


def test_gompertz_closed_form_without_diffusion() -> None:
    op = sp.operator(np.ones(2, bool), (1.0,))
    f = sp.make_forcing(200, 0.1)
    maps, _ = run(
        np.array([0.01, 0.3]), {"D": 0.0, "rho": 0.2, **NO_TREAT}, op, f, [200], growth="gompertz"
    )
    exact = np.exp(np.log([0.01, 0.3]) * math.exp(-0.2 * 20.0))
    np.testing.assert_allclose(maps[0], exact, rtol=1e-7)


def test_zero_flux_at_mask_conserves_cells_and_keeps_outside_empty() -> None:
    rng = np.random.default_rng(0)
    g = np.indices((12, 10, 6)).astype(float)
    mask = ((g[0] - 6) ** 2 / 30 + (g[1] - 5) ** 2 / 20 + (g[2] - 3) ** 2 / 8) < 1
    mask[5:7, 4:6, :] = False  # a hole (ventricle)
    w = np.where(rng.random(mask.shape) < 0.5, 1.0, 0.1)
    op = sp.operator(mask, (1.0, 1.5, 2.0), w)
    u0 = np.where(mask, rng.random(mask.shape), 0.0)
    f = sp.make_forcing(50, 0.1)
    maps, totals = run(u0, {"D": 0.5, "rho": 0.0, **NO_TREAT}, op, f, [50])
    assert totals[-1] == pytest.approx(u0.sum(), rel=1e-12)
    assert np.all(maps[0][~mask] == 0.0)


def test_unstable_step_is_refused_with_the_bound() -> None:
    op = sp.operator(np.ones((8, 8, 8), bool), (1.0, 1.0, 1.0))
    bound = sp.max_stable_diffusivity((1.0, 1.0, 1.0), 0.5)
    sp.check_stability(op, 0.99 * bound, 0.5)
    with pytest.raises(ModelError, match="unstable"):
        sp.check_stability(op, 1.01 * bound, 0.5)


def test_gradient_matches_finite_differences() -> None:
    mask = np.ones((10, 9), bool)
    op = sp.operator(mask, (1.0, 1.0), dose_map=np.full((10, 9), 0.9))
    g = np.indices((10, 9)).astype(float)
    u0 = 0.6 * np.exp(-((g[0] - 5) ** 2 + (g[1] - 4) ** 2) / 6)
    f = sp.make_forcing(40, 0.5, rt_days=[5.0, 6.0], chemo_days=[5.0, 6.0])

    def loss(th):  # type: ignore[no-untyped-def]
        p = {"D": th[0], "rho": th[1], "alpha": th[2], "alpha_beta": 10.0, "k_chemo": 0.05}
        m, tot = sp.simulate(u0, p, op, f, [20, 40])
        return jnp.sum(m[1] ** 2) + tot[-1]

    th = jnp.array([0.3, 0.1, 0.05])
    g_ad = np.asarray(jax.grad(loss)(th))
    for i in range(3):
        e = np.zeros(3)
        e[i] = 1e-6
        fd = (float(loss(th + e)) - float(loss(th - e))) / 2e-6
        assert g_ad[i] == pytest.approx(fd, rel=1e-5)
