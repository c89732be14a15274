"""Reference tests of the external-beam radiotherapy module.

Provenance of every reference number is in the docstring of its test. Three kinds of oracle:
- identities of the definitions (BED/EQD2 arithmetic, LKB symmetry, gEUD limits), evaluated by
  hand or with :mod:`math`, so a wrong implementation cannot agree with itself;
- independent numerical methods (scipy.integrate.quad for the population TCP);
- published values: QUANTEC Table 1 (Marks LB et al. Int J Radiat Oncol Biol Phys
  2010;76(3 Suppl):S10-S19) and published LKB parameters, cited per test.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm

from oncotwin import radiotherapy as rt
from oncotwin.errors import ModelError

# ----------------------------------------------------------------------------- BED / EQD2


@pytest.mark.parametrize(("alpha_beta", "bed_ref"), [(10.0, 72.0), (3.0, 100.0)])
def test_bed_and_eqd2_of_60_gy_in_30_fractions(alpha_beta: float, bed_ref: float) -> None:
    """60 Gy in 30 x 2 Gy: BED = 60 (1 + 2/(a/b)) = 72 Gy (a/b 10) and 100 Gy (a/b 3).

    BED = nd (1 + d/(alpha/beta)) (Fowler JF, Br J Radiol 1989;62:679-694); EQD2 of any
    2-Gy-per-fraction course equals its physical dose, 60 Gy, by definition.
    """
    assert rt.bed(60.0, 2.0, alpha_beta) == pytest.approx(bed_ref, rel=1e-12)
    assert rt.eqd2(60.0, 2.0, alpha_beta) == pytest.approx(60.0, rel=1e-12)


def test_bed_is_vectorised() -> None:
    """Hypofractionation raises BED: 55 Gy in 20 (2.75 Gy) at a/b 3: 55 (1 + 2.75/3) = 105.4167."""
    out = rt.bed(np.array([60.0, 55.0]), np.array([2.0, 2.75]), 3.0)
    np.testing.assert_allclose(out, [100.0, 55.0 * (1 + 2.75 / 3.0)], rtol=1e-12)


def test_bed_repopulation_correction() -> None:
    """Repopulation term ln2 (T - Tk)/(alpha Tpot) (Fowler 1989), hand-computed.

    T = 39 d, Tk = 21 d, alpha = 0.3 /Gy, Tpot = 3 d: ln2 * 18 / 0.9 = 13.8629 Gy off BED 72.
    Before the kick-off (T = 20 d <= Tk) nothing is subtracted.
    """
    kw = {"kickoff_days": 21.0, "alpha": 0.3, "potential_doubling_days": 3.0}
    assert rt.bed(60.0, 2.0, 10.0, treatment_days=39.0, **kw) == pytest.approx(
        72.0 - math.log(2) * 18.0 / 0.9, rel=1e-12
    )
    assert rt.bed(60.0, 2.0, 10.0, treatment_days=20.0, **kw) == pytest.approx(72.0)
    # EQD2 passes the correction through: (72 - 13.8629) / 1.2
    assert rt.eqd2(60.0, 2.0, 10.0, treatment_days=39.0, **kw) == pytest.approx(
        (72.0 - math.log(2) * 18.0 / 0.9) / 1.2, rel=1e-12
    )


def test_bed_rejects_bad_arguments() -> None:
    with pytest.raises(ModelError, match="alpha_beta"):
        rt.bed(60.0, 2.0, 0.0)
    with pytest.raises(ModelError, match="total_dose"):
        rt.bed(-1.0, 2.0, 10.0)
    with pytest.raises(ModelError, match="potential_doubling_days"):
        rt.bed(60.0, 2.0, 10.0, treatment_days=39.0, alpha=0.3)
    with pytest.raises(ModelError, match="without treatment_days"):
        rt.bed(60.0, 2.0, 10.0, alpha=0.3)


def test_lq_survival_closed_form() -> None:
    """SF = exp(-n (alpha d + beta d^2)): 30 x 2 Gy, alpha 0.3, beta 0.03 -> exp(-21.6)."""
    assert rt.lq_survival(2.0, 0.3, 0.03, 30) == pytest.approx(math.exp(-21.6), rel=1e-12)
    assert rt.lq_survival(0.0, 0.3, 0.03) == 1.0


# ----------------------------------------------------------------------------- TCP


def test_tcp_poisson_closed_form() -> None:
    """TCP = exp(-N SF) evaluated with math: N = 1e9, SF = exp(-21.6) -> exp(-1e9 e^-21.6)."""
    expected = math.exp(-1e9 * math.exp(-30 * (0.3 * 2 + 0.03 * 4)))
    assert rt.tcp_poisson(0.3, 0.03, 2.0, 30, 1e9) == pytest.approx(expected, rel=1e-12)
    assert 0.6 < expected < 0.7  # a mid-curve value, so the check is sensitive


def test_tcp_poisson_with_repopulation() -> None:
    """Repopulation multiplies SF by exp(ln2 (T - Tk)/Tpot) = 2^((39 - 21)/3) = 64 (hand)."""
    expected = math.exp(-1e9 * 64.0 * math.exp(-21.6))
    got = rt.tcp_poisson(
        0.3, 0.03, 2.0, 30, 1e9, treatment_days=39.0, kickoff_days=21.0, potential_doubling_days=3.0
    )
    assert got == pytest.approx(expected, rel=1e-10)


def test_tcp_population_reduces_to_poisson_without_spread() -> None:
    """sigma_alpha -> 0 gives the individual Poisson TCP (exactly at 0, continuously near it)."""
    args = (0.03, 2.0, 30, 1e9)
    ref = rt.tcp_poisson(0.3, *args)
    assert rt.tcp_population(0.3, 0.0, *args) == ref
    assert rt.tcp_population(0.3, 1e-6, *args) == pytest.approx(ref, rel=1e-4)


@pytest.mark.parametrize("fixed_alpha_beta", [False, True])
def test_tcp_population_matches_adaptive_quadrature(fixed_alpha_beta: bool) -> None:
    """Oracle: scipy.integrate.quad of TCP(alpha) against the normal density truncated at 0.

    Webb & Nahum (Phys Med Biol 1993;38:653-666) population model; sigma_alpha = 0.08 with mean
    0.15 puts real mass near 0, so the truncation matters.
    """
    mean, sd, beta, d, n, clonogens = 0.15, 0.08, 0.015, 2.0, 35, 1e7

    def tcp(a: float) -> float:
        b = beta * a / mean if fixed_alpha_beta else beta
        return math.exp(-clonogens * math.exp(-n * (a * d + b * d * d)))

    mass = 1.0 - norm.cdf(0.0, mean, sd)

    def integrand(a: float) -> float:
        return tcp(a) * norm.pdf(a, mean, sd)

    integral = quad(integrand, 0.0, mean + 12 * sd, epsabs=1e-13, epsrel=1e-11, limit=200)[0]
    expected = integral / mass
    got = rt.tcp_population(mean, sd, beta, d, n, clonogens, fixed_alpha_beta=fixed_alpha_beta)
    assert got == pytest.approx(expected, abs=1e-7)


def test_tcp_population_is_flatter_than_individual() -> None:
    """Spread in alpha flattens the dose response: lower TCP at high dose, higher at low dose."""
    doses = np.array([1.4, 2.4])  # per fraction, 30 fractions
    ind = rt.tcp_poisson(0.3, 0.03, doses, 30, 1e9)
    pop = rt.tcp_population(0.3, 0.07, 0.03, doses, 30, 1e9)
    assert ind[0] < pop[0] and pop[1] < ind[1]


# ----------------------------------------------------------------------------- gEUD and NTCP

DVH_DOSES = np.array([5.0, 15.0, 25.0, 35.0, 45.0])
DVH_VOLUMES = np.array([30.0, 25.0, 20.0, 15.0, 10.0])  # cm3, normalised inside


def test_geud_of_uniform_dose_is_that_dose() -> None:
    for a in (-10.0, 0.5, 1.0, 7.0, 40.0):
        assert rt.geud([42.0, 42.0], [3.0, 5.0], a) == pytest.approx(42.0, rel=1e-12)


def test_geud_limits() -> None:
    """a = 1 is the volume-weighted mean (hand: 2000 Gy cm3 / 100 cm3 = 20 Gy); a -> inf the max, a -> -inf the min."""
    mean = float(np.sum(DVH_DOSES * DVH_VOLUMES) / DVH_VOLUMES.sum())
    assert mean == pytest.approx(20.0)
    assert rt.geud(DVH_DOSES, DVH_VOLUMES, 1.0) == pytest.approx(mean, rel=1e-12)
    assert rt.geud(DVH_DOSES, DVH_VOLUMES, 1000.0) == pytest.approx(45.0, rel=5e-3)
    assert rt.geud(DVH_DOSES, DVH_VOLUMES, -1000.0) == pytest.approx(5.0, rel=5e-3)
    # increases with a (power-mean inequality)
    values = rt.geud(DVH_DOSES, DVH_VOLUMES, np.array([-5.0, 0.0, 1.0, 5.0, 50.0]))
    assert np.all(np.diff(values) > 0)


def test_differential_from_cumulative() -> None:
    """Cumulative 100/80/30/0 % at 0/10/20/30 Gy: bins 20 % at 5, 50 % at 15, 30 % at 25 Gy."""
    d, v = rt.differential_from_cumulative([0.0, 10.0, 20.0, 30.0], [100.0, 80.0, 30.0, 0.0])
    np.testing.assert_allclose(d, [5.0, 15.0, 25.0, 30.0])
    np.testing.assert_allclose(v, [20.0, 50.0, 30.0, 0.0])
    assert rt.geud(d, v, 1.0) == pytest.approx(0.2 * 5 + 0.5 * 15 + 0.3 * 25)
    with pytest.raises(ModelError, match="increase"):
        rt.differential_from_cumulative([0.0, 10.0], [50.0, 60.0])


def test_lkb_is_one_half_at_td50_and_symmetric() -> None:
    """NTCP(TD50) = Phi(0) = 1/2; NTCP(TD50 + x) + NTCP(TD50 - x) = 1 (Phi(-u) = 1 - Phi(u))."""
    assert rt.lkb_ntcp(48.0, 48.0, 0.1) == pytest.approx(0.5, abs=1e-15)
    x = np.array([1.0, 3.0, 7.5])
    np.testing.assert_allclose(rt.lkb_ntcp(48 + x, 48.0, 0.1) + rt.lkb_ntcp(48 - x, 48.0, 0.1), 1.0)
    # and one step of the probit: gEUD = TD50 (1 - m) gives Phi(-1) = 0.158655...
    assert rt.lkb_ntcp(48.0 * 0.9, 48.0, 0.1) == pytest.approx(norm.cdf(-1.0), rel=1e-12)


def test_lkb_partial_volume_follows_lyman_volume_law() -> None:
    """Published QUANTEC rectum LKB parameters with Lyman's volume law.

    Michalski JM et al. Radiation dose-volume effects in radiation-induced rectal injury. Int J
    Radiat Oncol Biol Phys 2010;76(3 Suppl) (QUANTEC), abstract: "n = 0.09 (0.04-0.14);
    m = 0.13 (0.10-0.17); and TD50 = 76.9 (73.7-80.1) Gy" (read on the journal's page).
    Irradiating a fraction v uniformly (rest 0 Gy) gives gEUD = v^n D, so NTCP = 1/2 at
    D = TD50 v^-n (Lyman JT, Radiat Res Suppl 1985;8:S13-S19): for v = 0.4, D = 76.9 * 0.4^-0.09 = 83.51 Gy.
    """
    n, m, td50, v = 0.09, 0.13, 76.9, 0.4
    dose = td50 * v**-n
    assert dose == pytest.approx(83.51, abs=0.01)
    dvh = (np.array([0.0, dose]), np.array([1.0 - v, v]))
    assert rt.lkb_ntcp(dvh, td50, m, n) == pytest.approx(0.5, abs=1e-12)
    assert rt.lkb_ntcp(dvh, td50, m, n) > rt.lkb_ntcp((dvh[0] * 0.9, dvh[1]), td50, m, n)


def test_lkb_lung_parameters_reproduce_quantec_mean_lung_dose_rates() -> None:
    """Two published QUANTEC statements agree through the LKB model (n = 1: gEUD = mean dose).

    - QUANTEC lung review (Marks LB, Bentzen SM, Deasy JO et al. Radiation dose-volume effects
      in the lung. Int J Radiat Oncol Biol Phys 2010;76(3 Suppl):S70-S76): probit (Lyman) fit
      to pooled mean-lung-dose data, TD50 = 31.4 Gy, m = 0.45, n = 1 (values as transcribed in
      two independent public sources; the original PDF was not available offline).
    - Marks et al. 2010 (ref. above), Table 1, lung, symptomatic pneumonitis: mean dose
      7 / 13 / 20 / 24 / 27 Gy -> 5 / 10 / 20 / 30 / 40 %.
    The model gives 4.2 / 9.7 / 21.0 / 30.0 / 37.8 %: within 3 percentage points.
    """
    mld = np.array([7.0, 13.0, 20.0, 24.0, 27.0])
    table_rates = np.array([0.05, 0.10, 0.20, 0.30, 0.40])
    ntcp = rt.lkb_ntcp(mld, 31.4, 0.45)
    np.testing.assert_allclose(ntcp, table_rates, atol=0.03)
    # the same through a DVH with n = 1 (a = 1): a two-bin lung with mean dose 20 Gy
    assert rt.lkb_ntcp(([10.0, 30.0], [1.0, 1.0]), 31.4, 0.45, 1.0) == pytest.approx(ntcp[2])


def test_lkb_rejects_bad_arguments() -> None:
    with pytest.raises(ModelError, match="n must be"):
        rt.lkb_ntcp(([10.0], [1.0]), 30.0, 0.2)
    with pytest.raises(ModelError, match="td50"):
        rt.lkb_ntcp(20.0, 0.0, 0.2)


# ----------------------------------------------------------------------------- schedules


def test_weekday_schedule_60_gy_in_30() -> None:
    """30 weekday fractions from a Monday (day 0): Mon-Fri of 6 weeks, last on day 39."""
    s = rt.fractions(60.0, 30)
    expected = np.concatenate([7 * w + np.arange(5) for w in range(6)]).astype(float)
    np.testing.assert_array_equal(s.times, expected)
    np.testing.assert_allclose(s.doses, 2.0)
    assert s.total_dose == pytest.approx(60.0)
    assert s.overall_days == 39.0


def test_schedule_start_day_weekday_and_daily() -> None:
    """From a Wednesday (weekday 2) on day 10: Wed-Fri = 10-12, then Mon 15 ...; daily: 0-4."""
    s = rt.fractions(10.0, 5, start_day=10.0, start_weekday=2)
    np.testing.assert_array_equal(s.times, [10.0, 11.0, 12.0, 15.0, 16.0])
    sat = rt.fractions(4.0, 2, start_weekday=5)  # Saturday start: first fraction on Monday
    np.testing.assert_array_equal(sat.times, [2.0, 3.0])
    daily = rt.fractions(10.0, 5, weekdays=False)
    np.testing.assert_array_equal(daily.times, np.arange(5.0))
    with pytest.raises(ModelError, match="n_fractions"):
        rt.fractions(60.0, 0)


# ----------------------------------------------------------------------------- QUANTEC


def test_quantec_table_values() -> None:
    """Rows of quantec.csv against Marks et al. 2010 Table 1 (pp. S15-S18).

    Spinal cord Dmax 50 Gy (myelopathy 0.2%, S15); lung V20 <= 30% and mean dose 20 Gy
    (pneumonitis <20% / 20%, S16); parotids combined mean < 25 Gy (<20%, S15-S16); heart V25 <
    10% (<1% long-term cardiac mortality, S16); rectum V50 < 50% ... V75 < 15% (S18).
    """
    table = rt.load_constraints()
    assert len(table) >= 10
    assert {"organ", "endpoint", "metric", "limit", "unit", "rate", "source"} <= set(table)
    assert table["source"].str.contains("Marks LB").all()

    def limit(organ: str, metric: str) -> float:
        row = table[(table["organ"] == organ) & (table["metric"] == metric)]
        assert len(row) == 1, (organ, metric)
        return float(row["limit"].iloc[0])

    assert limit("spinal_cord", "Dmax") == 50.0
    assert limit("lung", "V20") == 30.0
    assert limit("lung", "Dmean") == 20.0
    assert limit("parotid_bilateral", "Dmean") == 25.0
    assert limit("heart", "V25") == 10.0
    assert [limit("rectum", f"V{x}") for x in (50, 60, 65, 70, 75)] == [50, 35, 25, 20, 15]


def test_check_constraints_met_and_violated() -> None:
    result = rt.check_constraints(
        {"lung": {"V20": 34.0, "dmean": 17.0}, "spinal_cord": {"Dmax": 50.0}}
    )
    met = {(r.organ, r.metric): r.met for r in result.itertuples()}
    assert met == {("lung", "V20"): False, ("lung", "Dmean"): True, ("spinal_cord", "Dmax"): True}
    with pytest.raises(ModelError, match="no constraint for organ"):
        rt.check_constraints({"lungs": {"V20": 10.0}})
    with pytest.raises(ModelError, match="V5"):
        rt.check_constraints({"lung": {"V5": 10.0}})


# ----------------------------------------------------------------------------- tumour volume


def test_volume_after_fractions_closed_form() -> None:
    """V(t) = v0 e^{g t} SF^k for k fractions delivered by t (hand-computed with math)."""
    s = rt.fractions(10.0, 5)  # days 0..4, 2 Gy
    sf = math.exp(-(0.3 * 2 + 0.03 * 4))
    t = np.array([0.0, 2.5, 4.0, 20.0])
    got = np.asarray(rt.volume_after_fractions(100.0, 0.02, 0.3, 0.03, s.times, s.doses, t))
    expected = [100 * math.exp(0.02 * tt) * sf**k for tt, k in zip(t, (1, 3, 5, 5), strict=True)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_volume_after_fractions_is_differentiable_and_vmaps() -> None:
    """jax.grad matches a central difference; jax.vmap over alpha matches a Python loop."""
    s = rt.fractions(60.0, 30)

    def v_at_50(alpha: float) -> float:
        return rt.volume_after_fractions(50.0, 0.01, alpha, 0.03, s.times, s.doses, 50.0)

    grad = float(jax.grad(v_at_50)(0.3))
    h = 1e-6
    fd = (float(v_at_50(0.3 + h)) - float(v_at_50(0.3 - h))) / (2 * h)
    assert grad == pytest.approx(fd, rel=1e-6)
    # analytic: dV/dalpha = -V sum d_i
    assert grad == pytest.approx(-60.0 * float(v_at_50(0.3)), rel=1e-10)
    alphas = jax.numpy.array([0.1, 0.2, 0.3])
    batched = jax.vmap(v_at_50)(alphas)
    np.testing.assert_allclose(batched, [float(v_at_50(float(a))) for a in alphas], rtol=1e-12)
