"""Risk measures against their definitions on distributions with closed forms.

References: CVaR/superquantile ``CVaR_a(X) = min_t t + E[(X - t)+]/(1 - a)`` (Rockafellar &
Uryasev, J Risk 2000;2:21-41); for X ~ Normal(mu, s): ``mu + s phi(z_a) / (1 - a)``; for
X ~ Exponential(rate l): ``(1 - ln(1 - a)) / l`` (VaR ``-ln(1 - a)/l`` plus the mean excess
``1/l``, memorylessness). Standard results, e.g. Rockafellar & Royset, INFORMS Tutorials 2013.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from oncotwin.errors import ModelError
from oncotwin.optimize import RiskMeasure, chance, cvar, parse_risk, quantile


def test_cvar_of_a_normal_matches_the_closed_form() -> None:
    # Antithetic stratified sample: the exact Normal quantiles at (i + 0.5)/n.
    n = 200_000
    x = 3.0 + 2.0 * norm.ppf((np.arange(n) + 0.5) / n)
    for a in (0.5, 0.9, 0.95):
        exact = 3.0 + 2.0 * norm.pdf(norm.ppf(a)) / (1 - a)
        assert cvar(x, a) == pytest.approx(exact, rel=2e-4)


def test_cvar_of_an_exponential_matches_the_closed_form() -> None:
    n = 200_000
    rate = 0.5
    x = -np.log1p(-(np.arange(n) + 0.5) / n) / rate  # exact quantiles of Exp(0.5)
    for a in (0.0, 0.8, 0.9):
        assert cvar(x, a) == pytest.approx((1 - math.log(1 - a)) / rate, rel=1e-3)


def test_cvar_is_the_rockafellar_uryasev_minimum_on_a_discrete_sample() -> None:
    x = np.array([1.0, 7.0, 2.0, 9.0, 4.0, 3.0, 10.0])  # any sample, any order
    for a in (0.0, 0.3, 0.5, 0.8, 0.9):
        ts = np.linspace(0, 11, 110_001)
        ru = np.min(ts + np.mean(np.maximum(x[None, :] - ts[:, None], 0), axis=1) / (1 - a))
        assert cvar(x, a) == pytest.approx(ru, abs=1e-4)
    assert cvar(x, 0.0) == pytest.approx(x.mean())
    # Two of ten draws worth of tail: the mean of the two largest.
    y = np.arange(10.0)
    assert cvar(y, 0.8) == pytest.approx(8.5)


def test_cvar_works_under_jax_and_is_differentiable() -> None:
    import jax
    import jax.numpy as jnp

    x = jnp.arange(10.0)
    assert float(cvar(x, 0.8)) == pytest.approx(8.5)
    grad = jax.grad(lambda v: cvar(v, 0.8))(x)
    assert np.allclose(np.asarray(grad), [0] * 8 + [0.5, 0.5])


def test_risk_measure_directions_and_quantile() -> None:
    x = np.arange(1.0, 11.0)  # an outcome where larger is better (e.g. days)
    r = RiskMeasure("cvar", 0.8)
    assert r.of_outcome(x, larger_is_better=True) == pytest.approx(1.5)  # two worst: 1, 2
    assert r.of_outcome(x, larger_is_better=False) == pytest.approx(9.5)  # two worst: 10, 9
    assert RiskMeasure("mean").of_outcome(x, True) == pytest.approx(5.5)
    assert RiskMeasure("worst").of_outcome(x, True) == pytest.approx(1.0)
    assert quantile(x, 0.5) == pytest.approx(np.median(x))
    assert chance(x <= 3) == pytest.approx(0.3)


def test_parse_risk() -> None:
    assert parse_risk("cvar:0.95") == RiskMeasure("cvar", 0.95)
    assert parse_risk("mean").kind == "mean"
    assert parse_risk("quantile:0.1") == RiskMeasure("quantile", 0.1)
    assert parse_risk(RiskMeasure("cvar", 0.9).spec()) == RiskMeasure("cvar", 0.9)
    for bad in ("cvar:1.0", "cvar:x", "median"):
        with pytest.raises(ModelError):
            parse_risk(bad)
