"""Virtual populations: draws from a fitted population carry its hyperparameter posterior, and
the Allen-Rieger-Musante selection (CPT Pharmacometrics Syst Pharmacol 2016;5:140-146)
recovers a known target distribution from a wider plausible population (synthetic data)."""

from pathlib import Path

import numpy as np
import pytest

from oncotwin.inference.population import Population
from oncotwin.inference.posterior import Diagnostics
from oncotwin.trials import CohortSource, draw_cohort, load_design, match_observables

NULL = Path(__file__).with_name("null_design.yaml")


def test_population_draws_match_its_moments():
    # Posterior draws of a claret population (v0, kg, kd, lam): mu of log kg varies across
    # draws; kg and kd correlate (0.6). The v0 effect must be dropped, the rest kept.
    rng = np.random.default_rng(0)
    s = 50
    mu = np.tile(np.log([1.0, 0.004, 0.3, 0.01]), (s, 1))
    mu[:, 1] += rng.normal(0, 0.1, s)
    omega = np.tile([0.2, 0.5, 0.4, 0.3], (s, 1))
    corr = np.eye(4)
    corr[1, 2] = corr[2, 1] = 0.6
    chol = np.broadcast_to(np.linalg.cholesky(corr), (s, 4, 4)).copy()
    pop = Population(
        "claret", "proportional", ("v0", "kg", "kd", "lam", "sigma"), mu, omega, chol,
        np.zeros((s, 0, 4)), np.zeros((s, 1)), (), np.zeros(0), np.ones(0), (),
        np.zeros((s, 0, 4)), Diagnostics("nuts"), "nuts",
    )  # fmt: skip
    design = load_design(NULL)
    src = CohortSource.from_population(pop, (80.0, 0.5))
    assert src.names == ("kg", "kd", "lam")
    c = draw_cohort(design, 20000, source=src, seed=3)
    lkg, lkd = np.log(c.params["kg"]), np.log(c.params["kd"])
    se = 0.5 / np.sqrt(20000)
    assert np.mean(lkg) == pytest.approx(np.mean(mu[:, 1]), abs=5 * se)
    assert np.std(lkg) == pytest.approx(np.sqrt(0.25 + np.var(mu[:, 1])), rel=0.03)
    assert np.corrcoef(lkg, lkd)[0, 1] == pytest.approx(
        0.6 * 0.5 / np.sqrt(0.25 + np.var(mu[:, 1])), abs=0.03
    )
    assert np.median(c.baseline) == pytest.approx(80.0, rel=0.03)


def test_allen_selection_recovers_the_target():
    rng = np.random.default_rng(1)
    plausible = rng.normal(0.0, 1.5, (6000, 2))
    cov = np.array([[0.25, 0.1], [0.1, 0.36]])
    target = rng.multivariate_normal([0.5, -0.3], cov, 400)
    res = match_observables(plausible, target, seed=2)
    sel = plausible[res.selected]
    assert 0.02 < res.acceptance_rate < 0.5
    assert np.allclose(sel.mean(axis=0), [0.5, -0.3], atol=0.1)
    assert np.allclose(np.cov(sel.T), cov, atol=0.1)
    assert np.all(res.ks_pvalues > 0.05)
    # The importance weights reproduce the target mean too.
    assert np.allclose(res.weights @ plausible, [0.5, -0.3], atol=0.1)
    again = match_observables(plausible, target, seed=2)
    assert np.array_equal(again.selected, res.selected)


def test_population_covariate_effects_shift_the_draws():
    # beta = 0.5 per SD of ecog on log kg; ecog is 0 or 1 with probability 1/2 (design), the
    # population standardised it with centre 0.5 and scale 0.5: x = -1 or +1, a shift of +-0.5.
    s = 4
    mu = np.tile(np.log([1.0, 0.004, 0.3, 0.01]), (s, 1))
    omega = np.tile([0.2, 0.3, 0.3, 0.3], (s, 1))
    chol = np.broadcast_to(np.eye(4), (s, 4, 4)).copy()
    beta = np.zeros((s, 1, 4))
    beta[:, 0, 1] = 0.5
    pop = Population(
        "claret", "proportional", ("v0", "kg", "kd", "lam", "sigma"), mu, omega, chol, beta,
        np.zeros((s, 1)), ("ecog",), np.array([0.5]), np.array([0.5]), (),
        np.zeros((s, 0, 4)), Diagnostics("nuts"), "nuts",
    )  # fmt: skip
    c = draw_cohort(load_design(NULL), 8000, source=CohortSource.from_population(pop, (80.0, 0.5)))
    lkg = np.log(c.params["kg"])
    ecog = c.covariates["ecog"]
    diff = lkg[ecog == 1].mean() - lkg[ecog == 0].mean()
    assert diff == pytest.approx(1.0, abs=5 * 0.3 * np.sqrt(2 / 4000))
    assert np.log(c.params["kd"])[ecog == 1].mean() == pytest.approx(np.log(0.3), abs=0.03)
