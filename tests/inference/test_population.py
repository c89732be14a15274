"""Population (mixed-effects) fits: recovery of known population parameters, and the prior
they hand to a new subject.

Reference: a synthetic cohort drawn from the model itself (exponential growth, log-normal random
effects with known typical values, spreads and correlation; 10% proportional noise), seed 0.
"""

from __future__ import annotations

import numpy as np
import pytest

from oncotwin.errors import CalibrationError, ModelError
from oncotwin.inference.population import (
    fit_population,
    population_from_arrays,
    subject_posteriors,
)
from oncotwin.inference.problem import SubjectData
from oncotwin.schedule import Schedule

TYPICAL_A = 0.1  # 1/day
OMEGA = np.array([0.1, 0.3])  # between-subject SD of log(v0 / ref) and log(a)
RHO = 0.6  # correlation of the two random effects
TIMES = np.arange(0.0, 15.0, 2.0)


def cohort(n: int = 24, seed: int = 0) -> tuple[list[SubjectData], np.ndarray]:
    rng = np.random.default_rng(seed)
    corr = np.array([[1.0, RHO], [RHO, 1.0]])
    eta = rng.multivariate_normal(np.zeros(2), corr * np.outer(OMEGA, OMEGA), size=n)
    subjects = []
    for i, (e_v, e_a) in enumerate(eta):
        v0, a = 100.0 * np.exp(e_v), TYPICAL_A * np.exp(e_a)
        y = v0 * np.exp(a * TIMES) * np.exp(0.1 * rng.standard_normal(len(TIMES)))
        subjects.append(
            SubjectData(f"s{i}", TIMES, y, np.zeros(len(TIMES), bool), Schedule(), "volume", "mm3")
        )
    return subjects, eta


@pytest.fixture(scope="module")
def population():
    subjects, _ = cohort()
    # 4 chains: with 2 chains of 500 draws R-hat itself is too noisy for the 1.01 bar (seeds
    # 1-4: 3 of 4 fits failed it with 2 chains, none with 4).
    return fit_population("exponential", subjects, seed=1, chains=4, draws=500, warmup=500)


def test_population_recovers_known_parameters(population):
    """Typical growth rate, between-subject SD of the rate and the noise SD lie inside their
    posterior 90% intervals. v0, relative to each subject's first noisy observation, is not a
    random effect: it keeps its default prior (median 1, no between-subject SD)."""
    pop = population
    assert pop.diagnostics.ok, pop.diagnostics.problems()
    summary = pop.summary()
    _, lo, hi = summary["a"]["typical"]
    assert lo < TYPICAL_A < hi
    _, lo, hi = summary["a"]["omega"]
    assert lo < OMEGA[1] < hi
    _, lo, hi = summary["sigma"]["typical"]
    assert lo < 0.1 < hi
    assert summary["v0"]["pooled"] is False and "omega" not in summary["v0"]
    assert summary["v0"]["typical"] == [1.0, 1.0, 1.0]
    assert pop.unpooled == ("v0",) and pop.settings["centred"] == ["a"]
    assert pop.z_subjects.shape == (2000, 24, 2)


def test_prior_for_a_new_subject_is_the_population_predictive(population):
    """The new-subject prior's mean and SD of log(a) match mu and sqrt(E[omega^2] + Var[mu])."""
    prior = population.prior(seed=0)
    assert prior.names == ("v0", "a", "sigma") and prior.cov is not None
    mu, omega = population.mu[:, 1], population.omega[:, 1]
    expected_sd = np.sqrt(np.mean(omega**2) + np.var(mu))
    assert abs(prior.loc[1] - mu.mean()) < 0.05 * expected_sd + 0.01
    assert abs(prior.scale[1] / expected_sd - 1.0) < 0.05
    # error parameter independent of the random effects
    assert prior.cov[2, 0] == prior.cov[2, 1] == 0.0


def test_subject_posteriors_from_the_joint_fit_recover_each_subject(population):
    """Each subject's posterior read off the joint fit covers its true growth rate with its 90%
    interval for most of the 24 subjects (21.6 expected; 18 or fewer has probability 0.03 under
    the binomial), and carries its own draws, log-likelihoods and diagnostics."""
    subjects, eta = cohort()
    posts = subject_posteriors(population, subjects)
    true_a = TYPICAL_A * np.exp(eta[:, 1])
    covered = [
        p.summary()["a"]["lo"] < a < p.summary()["a"]["hi"]
        for p, a in zip(posts, true_a, strict=True)
    ]
    assert sum(covered) >= 19, sum(covered)
    first = posts[0]
    assert first.z.shape == (4, 500, 3) and first.log_lik.shape == (4, 500, len(TIMES))
    assert first.diagnostics.method == "nuts" and np.isfinite(first.diagnostics.rhat_max)
    assert first.prior.names == ("v0", "a", "sigma") and first.method == "population-nuts"
    # the subject's draws are the joint fit's: mean log-rate equals z_subjects' mean
    assert first.flat_z()[:, 1].mean() == pytest.approx(population.z_subjects[:, 0, 1].mean())
    other = SubjectData("new", TIMES, np.ones(len(TIMES)), np.zeros(len(TIMES), bool),
                        Schedule(), "volume", "mm3")  # fmt: skip
    with pytest.raises(ModelError, match="not part of the population fit"):
        subject_posteriors(population, [other])


def test_population_round_trips_through_its_arrays(population):
    back = population_from_arrays(population.record(), population.arrays())
    np.testing.assert_array_equal(back.mu, population.mu)
    assert back.diagnostics.to_dict() == population.diagnostics.to_dict()
    assert back.subjects == population.subjects
    np.testing.assert_allclose(back.prior(seed=3).cov, population.prior(seed=3).cov)


def test_covariates_and_errors():
    subjects, _ = cohort(n=6)
    with pytest.raises(CalibrationError, match="at least 3"):
        fit_population("exponential", subjects[:2])
    with pytest.raises(ModelError, match="unknown population method"):
        fit_population("exponential", subjects, method="em")
    covariates = {s.id: {"age": 50.0 + i} for i, s in enumerate(subjects)}
    pop = fit_population("exponential", subjects, covariates=covariates, method="svi",
                         svi_steps=500, chains=1, draws=200)  # fmt: skip
    assert pop.covariates == ("age",) and pop.beta.shape == (200, 1, 2)
    with pytest.raises(ModelError, match="covariates"):
        pop.prior()
    assert pop.prior({"age": 52.0}).names == ("v0", "a", "sigma")


def test_first_metric_names_every_sampled_site():
    """The guess the sampler's first metric is built from covers every latent site of the
    population model with a shape that broadcasts to it (a misnamed site would silently fall
    back to the identity metric), for centred and non-centred effects and a covariate; and SITES
    lists them in the model's order (the order SVI flattens them in, as NumPyro would)."""
    from numpyro import handlers

    from oncotwin.inference.population import (
        SITES,
        _cohort_arrays,
        _Layout,
        _population_model,
        _posterior_sd_guess,
    )
    from oncotwin.inference.priors import Prior
    from oncotwin.inference.problem import Spec
    from oncotwin.models import get_model
    from oncotwin.observe import get_error_model

    subjects, _ = cohort(n=6)
    m, err = get_model("gompertz"), get_error_model("proportional")
    default = Prior.default(m, err)
    data, _ = _cohort_arrays(subjects, default)
    d, n = len(m.params), len(subjects)
    hyper = {"mu_loc": default.loc[:d], "mu_scale": default.scale[:d],
             "err_loc": default.loc[d:], "err_scale": default.scale[d:]}  # fmt: skip
    layout = _Layout(d, pooled=(1, 2), centred=(1,))
    x = np.linspace(-1.0, 1.0, n)[:, None]
    model = handlers.seed(_population_model, 0)
    trace = handlers.trace(model).get_trace(Spec(m, err, True), layout, data, x, hyper)
    latent = {
        k: v["value"].shape
        for k, v in trace.items()
        if v["type"] == "sample" and not v["is_observed"]
    }
    guess = _posterior_sd_guess(layout, np.full((n, d + 1), 0.1), np.full(d, 0.3), default, 1, n)
    assert set(latent) == set(guess)
    assert list(latent) == list(SITES)
    for site, shape in latent.items():
        if site != "corr_chol":  # sampled as a (2, 2) factor, one unconstrained value
            assert np.broadcast_shapes(guess[site].shape, shape) == shape, site
        assert np.all(np.asarray(guess[site]) > 0), site
