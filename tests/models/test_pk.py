"""Reference tests of the linear PK closed forms (oncotwin.models.pk).

Provenance of every reference value:
- "by hand": formulas re-derived in the test with :mod:`math`/numpy (Gibaldi & Perrier,
  Pharmacokinetics 2nd ed. 1982, ch. 1-3), independent of the code under test;
- "ODE": an independent numerical integration of the compartmental ODEs in amounts with
  ``scipy.integrate.solve_ivp`` (Radau, rtol 1e-10), segment by segment between dose events;
- "quadrature": ``scipy.integrate.quad`` of the closed form, against AUC = F dose / CL;
- docetaxel constants: Bruno et al. 1996 three-compartment model as transcribed in
  radivot/myelo (see oncotwin.models.myelosuppression); only used as a realistic stiff case.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy.integrate import quad, solve_ivp

from oncotwin._jax import jax, jnp
from oncotwin.errors import ModelError
from oncotwin.models import pk
from oncotwin.models.myelosuppression import DOCETAXEL_PK

T = np.array([0.0, 0.01, 0.1, 0.25, 0.5, 1.0, 1.7, 2.5, 4.0, 7.0])


def _linear_ode(
    k: np.ndarray,
    t_eval: np.ndarray,
    dose_times: np.ndarray,
    amounts: np.ndarray,
    durations: np.ndarray,
    into: int = 0,
) -> np.ndarray:
    """Amounts A(t) of dA/dt = K A + infusion input, integrated between dose events.

    Boluses are added to compartment `into` at their time; infusions add amount/duration per
    day to it while running. Returns A at t_eval, shape (len(t_eval), n).
    """
    n = k.shape[0]
    events = np.unique(np.concatenate([[0.0], dose_times, dose_times + durations, [t_eval.max()]]))
    a = np.zeros(n)
    out = np.full((len(t_eval), n), np.nan)
    for lo, hi in zip(events[:-1], events[1:], strict=True):
        for d, amt, dur in zip(dose_times, amounts, durations, strict=True):
            if dur == 0 and d == lo:
                a[into] += amt
        rate = np.zeros(n)
        for d, amt, dur in zip(dose_times, amounts, durations, strict=True):
            if dur > 0 and d <= lo < d + dur:
                rate[into] += amt / dur
        inside = (t_eval >= lo) & (t_eval <= hi)
        ts = np.union1d(t_eval[inside], [hi])
        sol = solve_ivp(
            lambda t, y, rate=rate: k @ y + rate,
            (lo, hi),
            a,
            method="Radau",
            rtol=1e-10,
            atol=1e-13,
            t_eval=ts,
            jac=k,
        )
        out[inside] = sol.y.T[np.searchsorted(ts, t_eval[inside])]
        a = sol.y[:, -1]
    return out


def _two_cmt_matrix(cl: float, v1: float, q: float, v2: float) -> np.ndarray:
    k10, k12, k21 = cl / v1, q / v1, q / v2
    return np.array([[-(k10 + k12), k21], [k12, -k21]])


def test_unit_conversion_hours_to_days() -> None:
    """1/h -> 1/day multiplies by 24; hours -> days divides by 24 (definition)."""
    assert pk.per_hour(1.5) == pytest.approx(36.0)
    assert pk.hours(36.0) == pytest.approx(1.5)


def test_one_compartment_bolus_by_hand_and_ode() -> None:
    """C = D/V exp(-CL/V t) (by hand) = A(t)/V of dA/dt = -k A (ODE); 0 before the dose."""
    dose, cl, v = 100.0, 12.0, 30.0
    hand = np.array([dose / v * math.exp(-cl / v * t) for t in T])
    got = np.asarray(pk.one_compartment_bolus(T, dose, cl, v))
    np.testing.assert_allclose(got, hand, rtol=1e-13)
    ode = _linear_ode(np.array([[-cl / v]]), T, np.array([0.0]), np.array([dose]), np.zeros(1))
    np.testing.assert_allclose(got, ode[:, 0] / v, rtol=1e-8)
    assert float(pk.one_compartment_bolus(-0.5, dose, cl, v)) == 0.0


def test_one_compartment_infusion_by_hand_and_ode() -> None:
    """During: R/CL (1 - e^{-kt}); after: C(T) e^{-k(t-T)} (by hand), and vs the ODE."""
    dose, dur, cl, v = 90.0, 0.5, 20.0, 15.0
    k, rate = cl / v, dose / dur

    def hand(t: float) -> float:
        if t < 0:
            return 0.0
        if t <= dur:
            return rate / cl * (1 - math.exp(-k * t))
        return rate / cl * (1 - math.exp(-k * dur)) * math.exp(-k * (t - dur))

    got = np.asarray(pk.one_compartment_infusion(T, dose, dur, cl, v))
    np.testing.assert_allclose(got, [hand(t) for t in T], rtol=1e-12, atol=1e-15)
    ode = _linear_ode(np.array([[-k]]), T, np.array([0.0]), np.array([dose]), np.array([dur]))
    np.testing.assert_allclose(got, ode[:, 0] / v, rtol=1e-7, atol=1e-12)
    # a zero-duration infusion is a bolus
    np.testing.assert_allclose(
        pk.one_compartment_infusion(T, dose, 0.0, cl, v),
        pk.one_compartment_bolus(T, dose, cl, v),
        rtol=1e-14,
    )


def test_bateman_by_hand_and_ode() -> None:
    """Bateman function (by hand) and gut -> central ODE; F scales the curve."""
    dose, ka, cl, v, f = 200.0, 3.0, 10.0, 40.0, 0.7
    k = cl / v
    hand = [f * dose * ka / (v * (ka - k)) * (math.exp(-k * t) - math.exp(-ka * t)) for t in T]
    got = np.asarray(pk.one_compartment_oral(T, dose, ka, cl, v, f))
    np.testing.assert_allclose(got, hand, rtol=1e-11, atol=1e-15)
    kmat = np.array([[-ka, 0.0], [ka, -k]])
    ode = _linear_ode(kmat, T, np.array([0.0]), np.array([f * dose]), np.zeros(1))
    np.testing.assert_allclose(got, ode[:, 1] / v, rtol=1e-7, atol=1e-12)


def test_bateman_equal_rates_limit_and_continuity() -> None:
    """ka = k: C = F D k t e^{-kt} / V (the limit, by hand, and the ODE); continuous nearby."""
    dose, cl, v = 50.0, 8.0, 16.0
    k = cl / v
    got = np.asarray(pk.one_compartment_oral(T, dose, k, cl, v))
    np.testing.assert_allclose(got, [dose * k * t * math.exp(-k * t) / v for t in T], rtol=1e-13)
    ode = _linear_ode(np.array([[-k, 0.0], [k, -k]]), T, np.array([0.0]), np.array([dose]),
                      np.zeros(1))  # fmt: skip
    np.testing.assert_allclose(got, ode[:, 1] / v, rtol=1e-7, atol=1e-12)
    near = np.asarray(pk.one_compartment_oral(T, dose, k * (1 + 1e-9), cl, v))
    np.testing.assert_allclose(near, got, rtol=1e-8)
    # flip-flop (ka < k) is the same symmetric formula
    slow = np.asarray(pk.one_compartment_oral(T, dose, 0.1, cl, v))
    hand = [dose * 0.1 / (v * (0.1 - k)) * (math.exp(-k * t) - math.exp(-0.1 * t)) for t in T]
    np.testing.assert_allclose(slow, hand, rtol=1e-11, atol=1e-15)


def test_superposition_of_repeated_and_mixed_doses() -> None:
    """Repeated doses = sum of shifted single doses; doses after t contribute 0; vs the ODE."""
    cl, v = 15.0, 25.0
    times = np.array([0.0, 1.0, 2.5, 4.0])
    amounts = np.array([100.0, 50.0, 80.0, 60.0])
    durations = np.array([0.0, 0.25, 0.0, 1.0])
    t = np.linspace(0.0, 6.0, 61)
    got = np.asarray(pk.one_compartment_doses(t, times, amounts, durations, cl, v))
    by_hand = sum(
        np.asarray(pk.one_compartment_infusion(t - d, a, dur, cl, v))
        for d, a, dur in zip(times, amounts, durations, strict=True)
    )
    np.testing.assert_allclose(got, by_hand, rtol=1e-12)
    ode = _linear_ode(np.array([[-cl / v]]), t, times, amounts, durations)
    np.testing.assert_allclose(got, ode[:, 0] / v, rtol=1e-7, atol=1e-12)
    # at t just before the third dose only two doses count; a bolus at exactly t counts
    before = float(pk.one_compartment_doses(2.5 - 1e-12, times, amounts, durations, cl, v))
    at = float(pk.one_compartment_doses(2.5, times, amounts, durations, cl, v))
    assert at - before == pytest.approx(80.0 / v, rel=1e-9)
    # oral doses superpose the same way
    oral = np.asarray(pk.oral_doses(t, times, amounts, 2.0, cl, v, 0.5))
    oral_hand = sum(
        np.asarray(pk.one_compartment_oral(t - d, a, 2.0, cl, v, 0.5))
        for d, a in zip(times, amounts, strict=True)
    )
    np.testing.assert_allclose(oral, oral_hand, rtol=1e-12)


def test_two_compartment_macro_constants_and_bolus() -> None:
    """alpha + beta = k10 + k12 + k21 and alpha beta = k10 k21 (Gibaldi & Perrier); A + B = 1/V1;
    the bolus closed form against the two-compartment ODE."""
    cl, v1, q, v2 = 10.0, 5.0, 3.0, 20.0
    k10, k12, k21 = cl / v1, q / v1, q / v2
    alpha, beta, a, b = (float(x) for x in pk.two_compartment_macro(cl, v1, q, v2))
    assert alpha + beta == pytest.approx(k10 + k12 + k21, rel=1e-14)
    assert alpha * beta == pytest.approx(k10 * k21, rel=1e-14)
    assert alpha > beta > 0
    assert a + b == pytest.approx(1.0 / v1, rel=1e-14)
    dose = 70.0
    got = np.asarray(pk.two_compartment_bolus(T, dose, cl, v1, q, v2))
    hand = [dose / v1 * ((alpha - k21) * math.exp(-alpha * t) + (k21 - beta)
            * math.exp(-beta * t)) / (alpha - beta) for t in T]  # fmt: skip
    np.testing.assert_allclose(got, hand, rtol=1e-12)
    ode = _linear_ode(_two_cmt_matrix(cl, v1, q, v2), T, np.array([0.0]), np.array([dose]),
                      np.zeros(1))  # fmt: skip
    np.testing.assert_allclose(got, ode[:, 0] / v1, rtol=1e-7, atol=1e-12)


def test_two_compartment_infusion_and_doses_vs_ode() -> None:
    """Infusion and a mixed schedule of the two-compartment model against the ODE."""
    cl, v1, q, v2 = 10.0, 5.0, 3.0, 20.0
    kmat = _two_cmt_matrix(cl, v1, q, v2)
    got = np.asarray(pk.two_compartment_infusion(T, 40.0, 0.3, cl, v1, q, v2))
    ode = _linear_ode(kmat, T, np.array([0.0]), np.array([40.0]), np.array([0.3]))
    np.testing.assert_allclose(got, ode[:, 0] / v1, rtol=1e-7, atol=1e-12)
    times, amounts, durations = np.array([0.0, 2.0]), np.array([40.0, 25.0]), np.array([0.3, 0.0])
    t = np.linspace(0, 5, 41)
    got = np.asarray(pk.two_compartment_doses(t, times, amounts, durations, cl, v1, q, v2))
    ode = _linear_ode(kmat, t, times, amounts, durations)
    np.testing.assert_allclose(got, ode[:, 0] / v1, rtol=1e-7, atol=1e-12)


def test_mammillary_matches_two_compartment_and_three_compartment_ode() -> None:
    """The eigen-decomposition route reproduces alpha, beta, A, B, and the docetaxel
    three-compartment model (stiff: half-lives of minutes and hours) matches its ODE."""
    lam, coef = pk.mammillary_exponentials(10.0, 5.0, 3.0, 20.0)
    alpha, beta, a, b = pk.two_compartment_macro(10.0, 5.0, 3.0, 20.0)
    np.testing.assert_allclose(lam, [beta, alpha], rtol=1e-12)
    np.testing.assert_allclose(coef, [b, a], rtol=1e-10)

    p = DOCETAXEL_PK
    q, vp = np.asarray(p.q), np.asarray(p.vp)
    k10, k12, k13, k21, k31 = p.cl / p.v1, q[0] / p.v1, q[1] / p.v1, q[0] / vp[0], q[1] / vp[1]
    kmat = np.array([[-(k10 + k12 + k13), k21, k31], [k12, -k21, 0.0], [k13, 0.0, -k31]])
    t = np.concatenate([np.linspace(0, 0.2, 25), np.linspace(0.25, 3.0, 12)])
    times, amounts, durations = np.array([0.0, 1.0]), np.array([135.0, 60.0]), np.array([1 / 24, 0])
    got = np.asarray(pk.mammillary_doses(t, times, amounts, durations, p.cl, p.v1, q, vp))
    ode = _linear_ode(kmat, t, times, amounts, durations)
    np.testing.assert_allclose(got, ode[:, 0] / p.v1, rtol=2e-7, atol=1e-12)
    # one compartment (no peripheral): a single exponential CL/V with coefficient 1/V
    lam1, coef1 = pk.mammillary_exponentials(12.0, 30.0, np.zeros(0), np.zeros(0))
    np.testing.assert_allclose(lam1, [0.4], rtol=1e-14)
    np.testing.assert_allclose(coef1, [1 / 30.0], rtol=1e-14)


def test_auc_equals_dose_over_clearance_by_quadrature() -> None:
    """AUC_0-inf = F D / CL for linear PK: quadrature of bolus, infusion, oral, 2- and 3-cmt."""
    dose, cl, v = 100.0, 12.0, 30.0
    expected = float(pk.auc_infinity(dose, cl))
    assert expected == pytest.approx(dose / cl)
    cases = [
        lambda t: pk.one_compartment_bolus(t, dose, cl, v),
        lambda t: pk.one_compartment_infusion(t, dose, 0.4, cl, v),
        lambda t: pk.two_compartment_bolus(t, dose, cl, v, 7.0, 60.0),
    ]
    for conc in cases:
        auc, _ = quad(lambda t, c=conc: float(c(t)), 0.0, np.inf, limit=400, epsabs=1e-11)
        assert auc == pytest.approx(expected, rel=1e-7)
    oral, _ = quad(lambda t: float(pk.one_compartment_oral(t, dose, 1.5, cl, v, 0.6)), 0, np.inf,
                   limit=400, epsabs=1e-11)  # fmt: skip
    assert oral == pytest.approx(float(pk.auc_infinity(dose, cl, 0.6)), rel=1e-7)
    p = DOCETAXEL_PK
    lam, coef = pk.mammillary_exponentials(p.cl, p.v1, p.q, p.vp)
    assert float(pk.auc_exponentials(135.0, lam, coef)) == pytest.approx(135.0 / p.cl, rel=1e-10)
    # the trapezoid rule on a fine grid converges to the same value
    t = np.linspace(0.0, 40.0, 200_001)
    trap = float(pk.auc_trapezoid(t, pk.one_compartment_bolus(t, dose, cl, v)))
    assert trap == pytest.approx(expected, rel=1e-6)


def test_vmap_and_jit_match_a_python_loop() -> None:
    """vmap over parameter values (and jit) gives the loop's values; fixed seed 0."""
    rng = np.random.default_rng(0)
    cls, v1s = rng.uniform(5, 20, 4), rng.uniform(3, 10, 4)
    qs, v2s, kas = rng.uniform(1, 5, 4), rng.uniform(10, 50, 4), rng.uniform(0.5, 4, 4)
    times, amounts, durations = jnp.array([0.0, 1.5]), jnp.array([50.0, 30.0]), jnp.array([0.1, 0])
    t = jnp.linspace(0.0, 4.0, 9)

    def two(cl: float, v1: float, q: float, v2: float) -> jax.Array:
        return pk.two_compartment_doses(t, times, amounts, durations, cl, v1, q, v2)

    def three(cl: float, v1: float, q: float, v2: float) -> jax.Array:
        qq, vv = jnp.stack([q, 0.5 * q]), jnp.stack([v2, 3.0 * v2])
        return pk.mammillary_doses(t, times, amounts, durations, cl, v1, qq, vv)

    def oral(ka: float, cl: float, v1: float) -> jax.Array:
        return pk.oral_doses(t, times, amounts, ka, cl, v1, 0.8)

    for fn, args in ((two, (cls, v1s, qs, v2s)), (three, (cls, v1s, qs, v2s)),
                     (oral, (kas, cls, v1s))):  # fmt: skip
        batched = np.asarray(jax.jit(jax.vmap(fn))(*map(jnp.asarray, args)))
        looped = np.stack([np.asarray(fn(*(float(a[i]) for a in args))) for i in range(4)])
        np.testing.assert_allclose(batched, looped, rtol=1e-12)


def test_gradients_are_finite_at_the_equal_rates_point() -> None:
    """d C / d ka is finite at ka = k (the Bateman limit is differentiable)."""
    g = jax.grad(lambda ka: pk.one_compartment_oral(1.0, 10.0, ka, 2.0, 4.0))(0.5)
    assert np.isfinite(float(g))


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: pk.one_compartment_bolus(1.0, 10.0, -1.0, 5.0), "cl"),
        (lambda: pk.one_compartment_infusion(1.0, 10.0, -0.1, 1.0, 5.0), "duration"),
        (lambda: pk.one_compartment_oral(1.0, 10.0, 0.0, 1.0, 5.0), "ka"),
        (lambda: pk.two_compartment_macro(1.0, 5.0, 1.0, 0.0), "v2"),
        (
            lambda: pk.one_compartment_doses(1.0, [0.0, 1.0], [1.0], [0.0, 0.0], 1.0, 2.0),
            "dose_amounts",
        ),  # fmt: skip
        (lambda: pk.one_compartment_doses(1.0, [0.0], [-1.0], [0.0], 1.0, 2.0), "dose_amounts"),
        (lambda: pk.mammillary_exponentials(1.0, 2.0, [1.0, 2.0], [3.0]), "q and vp"),
    ],
)
def test_invalid_arguments_raise_model_error_naming_them(
    call: Callable[[], object], name: str
) -> None:
    with pytest.raises(ModelError, match=name):
        call()
