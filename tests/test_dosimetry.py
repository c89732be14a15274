"""Reference tests of the radiopharmaceutical dosimetry module.

Provenance of every reference number is in the docstring of its test. Oracles:
- closed forms evaluated by hand or with :mod:`math` (TIA integrals, trapezoids, MIRD sums,
  unit conversions);
- independent numerical integration (scipy dblquad of the Lea-Catcheside integral);
- synthetic data with known truth and fixed seeds (TAC fitting), including a coverage study;
- published limits: Bodei L et al. Eur J Nucl Med Mol Imaging 2008;35:1847-1856 (abstract:
  kidney BED threshold 28 Gy with risk factors, 40 Gy without); Lassmann M et al. EANM SOP,
  PMID 18491092 (abstract: blood absorbed dose 2 Gy, "a widely accepted limit for bone marrow
  toxicity").

No numerical worked example of radionuclide BED from the literature could be verified offline,
so the BED formula is tested against numerical integration of the generalised LQ
(Lea-Catcheside) integral and its limits, as the design allowed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import dblquad, quad

from oncotwin import dosimetry as ds
from oncotwin import radiotherapy as rt
from oncotwin.errors import ModelError

TIMES = np.array([0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 7.0])  # days


def uptake_washout(t: np.ndarray) -> np.ndarray:
    """Truth for the fitting tests: A(t) = 1.0 (e^{-0.35 t} - e^{-3 t}) GBq, TIA 2.52381 GBq d."""
    return 1.0 * (np.exp(-0.35 * t) - np.exp(-3.0 * t))


TRUE_UW = {"a1": 1.0, "lam_washout": 0.35, "lam_uptake": 3.0}
TRUE_UW_TIA = 1.0 * (1 / 0.35 - 1 / 3.0)

# ----------------------------------------------------------------------------- TAC fitting


def test_tia_of_mono_exponential_is_a0_over_lambda() -> None:
    """Noise-free A0 e^{-lam t}, A0 = 2 GBq, lam = 0.4/d: TIA = A0/lam = 5 GBq d (analytic)."""
    fit = ds.fit_tac(TIMES, 2.0 * np.exp(-0.4 * TIMES))
    assert fit.model == "mono"
    assert fit.tia == pytest.approx(5.0, rel=1e-9)
    assert fit.params["a0"] == pytest.approx(2.0, rel=1e-9)
    assert fit.params["lam"] == pytest.approx(0.4, rel=1e-9)


def test_fit_recovers_uptake_washout_curve() -> None:
    """5% multiplicative noise (seed 0) on the truth above: the fit selects uptake-washout,
    every true parameter lies within 3 bootstrap SEs, and the TIA is within 5% of 2.5238."""
    rng = np.random.default_rng(0)
    y = uptake_washout(TIMES) * (1 + 0.05 * rng.standard_normal(TIMES.size))
    fit = ds.fit_tac(TIMES, y)
    assert fit.model == "uptake_washout"
    assert min(fit.aicc, key=lambda m: fit.aicc[m]) == "uptake_washout"
    for name, true in TRUE_UW.items():
        assert abs(fit.params[name] - true) < 3 * fit.params_se[name], name
    assert fit.tia == pytest.approx(TRUE_UW_TIA, rel=0.05)
    assert abs(fit.tia - TRUE_UW_TIA) < 3 * fit.tia_sd
    np.testing.assert_allclose(fit.predict(TIMES), uptake_washout(TIMES), rtol=0.1)


def test_tia_interval_has_nominal_coverage() -> None:
    """Over 100 seeds the 95% bootstrap interval covers the true TIA 88-99 times.

    With 8 points and 3 parameters the error scale has 5 degrees of freedom, so normal draws
    would cover only ~89%; the multivariate-t draws restore ~95% (binomial 95% range for
    n = 100 at p = 0.95 is about 90-99).
    """
    covered = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        y = uptake_washout(TIMES) * (1 + 0.05 * rng.standard_normal(TIMES.size))
        lo, hi = ds.fit_tac(TIMES, y, n_bootstrap=500, seed=seed).tia_interval
        covered += lo <= TRUE_UW_TIA <= hi
    assert 88 <= covered <= 99


def test_fit_recovers_sum_of_two_exponentials() -> None:
    """Truth 1.0 e^{-0.2 t} + 2.0 e^{-2 t} GBq, 3% noise (seed 1); TIA = 1/0.2 + 2/2 = 6 GBq d."""
    rng = np.random.default_rng(1)
    y = (np.exp(-0.2 * TIMES) + 2.0 * np.exp(-2.0 * TIMES)) * (1 + 0.03 * rng.standard_normal(8))
    fit = ds.fit_tac(TIMES, y)
    assert fit.model == "biexponential"
    for name, true in {"a1": 1.0, "lam1": 0.2, "a2": 2.0, "lam2": 2.0}.items():
        assert abs(fit.params[name] - true) < 3 * fit.params_se[name], name
    assert fit.tia == pytest.approx(6.0, rel=0.05)


def test_known_sigma_and_physical_decay_bound() -> None:
    """With absolute sigma the fit still recovers the truth; with a physical half-life every
    clearance rate is at least ln2/T (here 177Lu-like 6.65 d -> 0.1042/d)."""
    rng = np.random.default_rng(2)
    y = uptake_washout(TIMES) + 0.005 * rng.standard_normal(8)
    fit = ds.fit_tac(TIMES, y, sigma=0.005, physical_half_life=6.65)
    assert fit.model == "uptake_washout"
    assert fit.tia == pytest.approx(TRUE_UW_TIA, rel=0.03)
    slow = ds.fit_tac(TIMES, 2.0 * np.exp(-0.05 * TIMES), physical_half_life=6.65)
    assert slow.params["lam"] >= math.log(2) / 6.65


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(ModelError, match="activities"):
        ds.fit_tac([1.0, 2.0, 3.0], [1.0, 0.0, 0.5])
    with pytest.raises(ModelError, match="increasing"):
        ds.fit_tac([1.0, 1.0, 3.0], [1.0, 0.8, 0.5])
    with pytest.raises(ModelError, match="unknown TAC models"):
        ds.fit_tac([1.0, 2.0, 3.0], [1.0, 0.8, 0.5], models=("gamma",))


def test_tia_trapezoid_hand_example() -> None:
    """Samples (1 d, 2 GBq), (2 d, 1 GBq), T1/2 = 1 d. By hand: head (linear from 0) 1/2*1*2 = 1,
    trapezoid (2 + 1)/2 = 1.5, tail 1 / (ln2 / 1) = 1.442695: total 3.942695 GBq d."""
    expected = 1.0 + 1.5 + 1.0 / math.log(2)
    t, a = [1.0, 2.0], [2.0, 1.0]
    assert ds.tia_trapezoid(t, a, 1.0) == pytest.approx(expected, rel=1e-12)
    assert ds.tia_trapezoid(t, a, 1.0, head="constant") == pytest.approx(expected + 1.0)
    assert ds.tia_trapezoid(t, a, 1.0, head="none") == pytest.approx(expected - 1.0)


def test_tia_trapezoid_converges_to_a0_over_lambda() -> None:
    """Pure physical decay sampled from t = 0: trapezoids + exact tail -> A0/lam (2nd order)."""
    t = np.linspace(0.0, 10.0, 401)
    lam = math.log(2) / 6.65
    got = ds.tia_trapezoid(t, 3.0 * np.exp(-lam * t), 6.65)
    assert got == pytest.approx(3.0 / lam, rel=1e-5)


# ----------------------------------------------------------------------------- MIRD


def test_mird_sum_hand_example() -> None:
    """D(t) = sum_s TIA(s) S(t<-s). TIA kidneys 2, liver 5 GBq d; S(kidneys<-kidneys) = 1.5,
    S(kidneys<-liver) = 0.02, S(liver<-liver) = 0.3, S(liver<-kidneys) = 0.02 Gy/(GBq d).
    By hand: kidneys 2*1.5 + 5*0.02 = 3.1 Gy; liver 5*0.3 + 2*0.02 = 1.54 Gy."""
    tia = {"kidneys": 2.0, "liver": 5.0}
    s = {"kidneys": {"kidneys": 1.5, "liver": 0.02}, "liver": {"liver": 0.3, "kidneys": 0.02}}
    dose = ds.absorbed_dose(tia, s)
    assert dose["kidneys"] == pytest.approx(3.1, rel=1e-12)
    assert dose["liver"] == pytest.approx(1.54, rel=1e-12)
    with pytest.raises(ModelError, match="spleen"):
        ds.absorbed_dose({"spleen": 1.0}, s)


def test_s_value_unit_conversion() -> None:
    """1 GBq d = 1e3 MBq * 86400 s = 8.64e7 MBq s, so 1 mGy/(MBq s) = 8.64e7 mGy = 86400 Gy
    per GBq d; 1 Gy/(GBq h) = 24 Gy/(GBq d)."""
    assert ds.convert_s_value(1.0, "mGy/(MBq*s)") == pytest.approx(86400.0)
    assert ds.convert_s_value(0.5, "Gy/(GBq*h)") == pytest.approx(12.0)
    with pytest.raises(ModelError, match="unknown S-value unit"):
        ds.convert_s_value(1.0, "rad/(mCi*h)")


# ----------------------------------------------------------------------------- BED


def numerical_g(coefficients: list[float], rates: list[float], mu: float) -> float:
    """Lea-Catcheside G = (2/D^2) int_0^inf R(t) int_0^t R(w) e^{-mu (t-w)} dw dt by dblquad."""

    def rate(t: float) -> float:
        return sum(c * math.exp(-k * t) for c, k in zip(coefficients, rates, strict=True))

    dose = quad(rate, 0.0, math.inf)[0]
    horizon = 60.0 / min(rates)

    def integrand(w: float, t: float) -> float:
        return rate(t) * rate(w) * math.exp(-mu * (t - w))

    inner, _ = dblquad(integrand, 0.0, horizon, 0.0, lambda t: t, epsabs=1e-13, epsrel=1e-10)
    return 2.0 * inner / dose**2


MU_KIDNEY_LIKE = math.log(2) / (2.8 / 24)  # a 2.8-hour repair half-time, in 1/day


@pytest.mark.parametrize(
    ("coefficients", "rates"),
    [([1.0], [0.3]), ([1.0, -1.0], [0.3, 5.0]), ([1.0, 2.0], [0.2, 2.0])],
    ids=["mono", "uptake", "two-exponentials"],
)
def test_protraction_factor_matches_numerical_integration(
    coefficients: list[float], rates: list[float]
) -> None:
    expected = numerical_g(coefficients, rates, MU_KIDNEY_LIKE)
    got = ds.protraction_factor(coefficients, rates, MU_KIDNEY_LIKE)
    assert got == pytest.approx(expected, rel=1e-8)


def test_bed_radionuclide_matches_dale_closed_form_and_numerics() -> None:
    """Mono-exponential: BED = D (1 + D lam / ((mu + lam) a/b)) (Dale 1985), checked by hand
    and against the numerical G: D = 20 Gy, a/b 2.6 Gy, T_rep 2.8 h, T_eff 2 d."""
    lam = math.log(2) / 2.0
    hand = 20.0 * (1 + 20.0 * lam / ((MU_KIDNEY_LIKE + lam) * 2.6))
    assert ds.bed_radionuclide(20.0, 2.6, 2.8 / 24, 2.0) == pytest.approx(hand, rel=1e-12)
    g = numerical_g([1.0], [lam], MU_KIDNEY_LIKE)
    assert ds.bed_radionuclide(20.0, 2.6, 2.8 / 24, 2.0) == pytest.approx(
        20.0 * (1 + g * 20.0 / 2.6), rel=1e-8
    )
    # with a 3-hour uptake phase: numerical G of R0 (e^{-lam t} - e^{-lam_u t})
    lam_u = math.log(2) / (3.0 / 24)
    g_up = numerical_g([1.0, -1.0], [lam, lam_u], MU_KIDNEY_LIKE)
    assert ds.bed_radionuclide(20.0, 2.6, 2.8 / 24, 2.0, uptake_half_time=3.0 / 24) == (
        pytest.approx(20.0 * (1 + g_up * 20.0 / 2.6), rel=1e-8)
    )


def test_bed_radionuclide_limits() -> None:
    """Fast repair -> BED = D; fast decay (acute) -> D (1 + D/(a/b)); no repair -> G = 1."""
    assert ds.bed_radionuclide(20.0, 2.6, 1e-9, 2.0) == pytest.approx(20.0, rel=1e-7)
    assert ds.bed_radionuclide(20.0, 2.6, 2.8 / 24, 1e-9) == pytest.approx(
        20.0 * (1 + 20.0 / 2.6), rel=1e-7
    )
    assert ds.protraction_factor([1.0, -1.0], [0.3, 5.0], 0.0) == pytest.approx(1.0, rel=1e-12)
    with pytest.raises(ModelError, match="uptake_half_time"):
        ds.bed_radionuclide(20.0, 2.6, 0.1, 2.0, uptake_half_time=3.0)


def test_bed_from_tac_uses_the_fitted_time_course() -> None:
    """For a mono-exponential TAC, bed_from_tac equals bed_radionuclide at the fitted T_eff."""
    fit = ds.fit_tac(TIMES, 2.0 * np.exp(-0.4 * TIMES))
    assert ds.bed_from_tac(10.0, 2.6, 0.1, fit) == pytest.approx(
        ds.bed_radionuclide(10.0, 2.6, 0.1, math.log(2) / 0.4), rel=1e-8
    )


def test_tumour_surviving_fraction_matches_lq_for_an_acute_dose() -> None:
    """An acute dose d has BED d (1 + d/(a/b)), so exp(-alpha BED) = exp(-(alpha d + beta d^2))
    with beta = alpha/(a/b): cross-check against radiotherapy.lq_survival."""
    d, alpha, ab = 8.0, 0.3, 10.0
    bed = ds.bed_radionuclide(d, ab, 2.8 / 24, 1e-12)
    assert ds.tumour_surviving_fraction(bed, alpha) == pytest.approx(
        rt.lq_survival(d, alpha, alpha / ab), rel=1e-9
    )


# ----------------------------------------------------------------------------- cycles


def test_cumulative_organ_dose_and_limits() -> None:
    """Four cycles of kidney 5 Gy (BED 6.5 Gy) and marrow 0.3 Gy: totals 20 Gy, BED 26 Gy,
    marrow 1.2 Gy. Kidney BED limits 28 Gy (risk factors) / 40 Gy (none), Bodei et al. 2008
    (abstract); marrow (blood) 2 Gy, EANM SOP (Lassmann et al. 2008, abstract)."""
    cycle = {"kidneys": ds.OrganDose(5.0, 6.5), "red_marrow": 0.3, "tumour": ds.OrganDose(30.0)}
    out = ds.cumulative_organ_dose([cycle] * 4)
    assert out.loc["kidneys", "dose"] == pytest.approx(20.0)
    assert out.loc["kidneys", "bed"] == pytest.approx(26.0)
    assert out.loc["kidneys", "limit"] == 40.0
    assert bool(out.loc["kidneys", "within_limit"])
    assert out.loc["red_marrow", "dose"] == pytest.approx(1.2)
    assert out.loc["red_marrow", "limit"] == 2.0
    assert bool(out.loc["red_marrow", "within_limit"])
    assert out.loc["tumour", "within_limit"] is None
    risky = ds.cumulative_organ_dose([cycle] * 5, kidney_risk_factors=True)
    assert risky.loc["kidneys", "limit"] == 28.0
    assert not risky.loc["kidneys", "within_limit"]  # 32.5 Gy > 28 Gy
    assert risky.loc["kidneys", "fraction_of_limit"] == pytest.approx(32.5 / 28.0)
    assert "Bodei" in risky.loc["kidneys", "limit_source"]
    assert math.isnan(ds.cumulative_organ_dose([{"kidneys": 5.0}]).loc["kidneys", "bed"])
