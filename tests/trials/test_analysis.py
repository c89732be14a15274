"""Kaplan-Meier, log-rank and Cox (Efron) against lifelines on the same data; ORR difference
intervals against Newcombe RG. Stat Med 1998;17:873-890, Table II (method 10)."""

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import logrank_test

from oncotwin.trials.analysis import (
    cox_ph,
    kaplan_meier,
    logrank,
    orr_difference,
    sample_size_for_power,
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    n = 240
    g = rng.integers(0, 2, n).astype(float)
    x = rng.normal(size=n)
    t = rng.exponential(300 * np.exp(-0.4 * g + 0.5 * x))
    c = rng.uniform(100, 700, n)
    time = np.minimum(t, c)
    # Round to weeks: many ties, as at scheduled assessments.
    time = np.ceil(time / 7) * 7
    return pd.DataFrame({"t": time, "e": (t <= c).astype(int), "g": g, "x": x})


def test_kaplan_meier_matches_lifelines(data):
    km = kaplan_meier(data["t"], data["e"])
    ref = KaplanMeierFitter().fit(data["t"], data["e"])
    sf = ref.survival_function_.iloc[:, 0]
    ci = ref.confidence_interval_
    at = sf.index.to_numpy()[1:]  # lifelines adds time 0
    assert np.allclose(km.times, at)
    assert np.allclose(km.survival, sf.to_numpy()[1:], rtol=1e-12)
    assert np.allclose(km.lower, ci.iloc[1:, 0], rtol=1e-9)
    assert np.allclose(km.upper, ci.iloc[1:, 1], rtol=1e-9)
    assert km.median == ref.median_survival_time_


def test_logrank_matches_lifelines(data):
    a, b = data[data.g == 0], data[data.g == 1]
    ref = logrank_test(a.t, b.t, a.e, b.e)
    stat, p = logrank(data["t"], data["e"], data["g"])
    assert stat == pytest.approx(ref.test_statistic, rel=1e-10)
    assert p == pytest.approx(ref.p_value, rel=1e-8)


def test_cox_efron_matches_lifelines(data):
    cph = CoxPHFitter().fit(data, "t", "e")
    ref = cph.summary
    fit = cox_ph(data["t"], data["e"], data[["g", "x"]].to_numpy())
    assert fit.converged
    # lifelines stops its Newton steps at a looser tolerance (~1e-6 relative here); at least
    # as high a partial likelihood shows ours is the maximum, not a neighbour.
    assert np.allclose(fit.coef, ref["coef"].to_numpy(), rtol=1e-5)
    assert fit.loglik >= cph.log_likelihood_ - 1e-9
    assert np.allclose(fit.se, ref["se(coef)"].to_numpy(), rtol=1e-5)
    assert np.allclose(fit.lower, ref["exp(coef) lower 95%"].to_numpy(), rtol=1e-5)
    assert np.allclose(fit.p, ref["p"].to_numpy(), rtol=1e-4)


@pytest.mark.parametrize(
    ("a", "b", "low", "high"),
    [((48, 80), (56, 70), 0.0524, 0.3339), ((3, 10), (9, 10), 0.1705, 0.8090)],
)
def test_orr_difference_newcombe_table_ii(a, b, low, high):
    def group(k, n):
        return np.r_[np.ones(k), np.zeros(n - k)]

    d, lo, hi = orr_difference(group(*a), group(*b))
    assert d == pytest.approx(b[0] / b[1] - a[0] / a[1])
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_sample_size_interpolates_the_power_curve():
    curve = pd.DataFrame({"n": [100, 200, 300], "power": [0.4, 0.7, 0.9]})
    assert sample_size_for_power(curve, 0.8) == pytest.approx(250.0)
    assert np.isnan(sample_size_for_power(curve, 0.95))
