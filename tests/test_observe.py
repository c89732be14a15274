"""Reference tests of the observation (residual error) models against scipy.stats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from oncotwin._jax import jax, jnp
from oncotwin.errors import ModelError
from oncotwin.observe import ERROR_MODELS, get_error_model

Y = np.array([0.5, 3.0, 80.0, 100.0, 140.0, 900.0])
F = np.array([1.0, 2.0, 100.0, 100.0, 120.0, 1000.0])
NONE = np.zeros(Y.shape, bool)


def loglik(name: str, y, f, theta, censored=NONE) -> np.ndarray:
    model = ERROR_MODELS[name]
    theta = {k: jnp.asarray(v) for k, v in theta.items()}
    return np.asarray(model.log_likelihood(jnp.asarray(y), jnp.asarray(f), theta, censored))


@pytest.mark.parametrize("sigma", [0.05, 0.2, 1.3])
def test_proportional_is_lognormal(sigma):
    # log y ~ Normal(log f, sigma): scipy's lognorm with shape s = sigma and scale = f
    want = stats.lognorm.logpdf(Y, s=sigma, scale=F)
    np.testing.assert_allclose(loglik("proportional", Y, F, {"sigma": sigma}), want, rtol=1e-12)


@pytest.mark.parametrize("sigma, sigma_add", [(0.1, 2.0), (0.3, 0.01)])
def test_combined_is_normal_with_combined_sd(sigma, sigma_add):
    sd = np.sqrt(sigma_add**2 + sigma**2 * F**2)
    want = stats.norm.logpdf(Y, loc=F, scale=sd)
    got = loglik("combined", Y, F, {"sigma": sigma, "sigma_add": sigma_add})
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_censored_values_contribute_the_probability_below_the_limit():
    # Beal's M3: an observation below the detection limit L contributes log P(y < L)
    lloq = np.full(Y.shape, 50.0)
    cens = np.array([True, False, True, True, False, True])
    sigma, sigma_add = 0.25, 3.0
    got = loglik("proportional", lloq, F, {"sigma": sigma}, cens)
    want = np.where(
        cens,
        stats.lognorm.logcdf(lloq, s=sigma, scale=F),
        stats.lognorm.logpdf(lloq, s=sigma, scale=F),
    )
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got = loglik("combined", lloq, F, {"sigma": sigma, "sigma_add": sigma_add}, cens)
    sd = np.sqrt(sigma_add**2 + sigma**2 * F**2)
    want = np.where(
        cens, stats.norm.logcdf(lloq, loc=F, scale=sd), stats.norm.logpdf(lloq, loc=F, scale=sd)
    )
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # a prediction far below the limit makes the censored value almost certain
    assert loglik("proportional", [50.0], [1.0], {"sigma": 0.2}, np.array([True]))[0] > -1e-12


N_SAMPLE = 40_000


def test_proportional_samples_have_log_sd_sigma():
    sigma = 0.15
    f = jnp.full((N_SAMPLE,), 250.0)
    y = np.asarray(ERROR_MODELS["proportional"].sample(jax.random.PRNGKey(7), f, {"sigma": sigma}))
    r = np.log(y / 250.0)
    # 5 standard errors: SE(mean) = sigma/sqrt(n), SE(sd) ~ sigma/sqrt(2(n-1)) for normal data
    assert abs(r.mean()) < 5 * sigma / math.sqrt(N_SAMPLE)
    assert abs(r.std(ddof=1) - sigma) < 5 * sigma / math.sqrt(2 * (N_SAMPLE - 1))
    assert np.all(y > 0)


def test_combined_samples_have_combined_sd():
    sigma, sigma_add, f0 = 0.1, 4.0, 30.0
    sd = math.sqrt(sigma_add**2 + (sigma * f0) ** 2)  # = 5
    f = jnp.full((N_SAMPLE,), f0)
    y = np.asarray(
        ERROR_MODELS["combined"].sample(
            jax.random.PRNGKey(11), f, {"sigma": sigma, "sigma_add": sigma_add}
        )
    )
    r = y - f0
    assert abs(r.mean()) < 5 * sd / math.sqrt(N_SAMPLE)
    assert abs(r.std(ddof=1) - sd) < 5 * sd / math.sqrt(2 * (N_SAMPLE - 1))


def test_combined_samples_of_a_size_are_never_negative():
    """Near zero the Normal's negative tail is recorded as 0: P(y = 0) = Phi(-f / sd)."""
    sigma, sigma_add, f0 = 0.1, 4.0, 3.0
    sd = math.sqrt(sigma_add**2 + (sigma * f0) ** 2)
    f = jnp.full((N_SAMPLE,), f0)
    theta = {"sigma": sigma, "sigma_add": sigma_add}
    y = np.asarray(ERROR_MODELS["combined"].sample(jax.random.PRNGKey(5), f, theta))
    p0 = 0.5 * math.erfc(f0 / sd / math.sqrt(2))  # Phi(-f0 / sd) = 0.228
    assert np.all(y >= 0)
    assert abs(np.mean(y == 0) - p0) < 5 * math.sqrt(p0 * (1 - p0) / N_SAMPLE)
    positive = y[y > 0]  # above 0 the draws are the Normal's: its upper quartile is unchanged
    assert np.quantile(positive, (0.75 - p0) / (1 - p0)) == pytest.approx(
        f0 + 0.6745 * sd, rel=0.03
    )


def test_sampling_is_reproducible():
    m, f = ERROR_MODELS["proportional"], jnp.ones(5)
    a = np.asarray(m.sample(jax.random.PRNGKey(3), f, {"sigma": 0.2}))
    b = np.asarray(m.sample(jax.random.PRNGKey(3), f, {"sigma": 0.2}))
    c = np.asarray(m.sample(jax.random.PRNGKey(4), f, {"sigma": 0.2}))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_error_model_registry():
    assert get_error_model("combined") is ERROR_MODELS["combined"]
    assert get_error_model(ERROR_MODELS["proportional"]).param_names == ("sigma",)
    assert ERROR_MODELS["combined"].param_names == ("sigma", "sigma_add")
    with pytest.raises(ModelError, match="unknown error model 'additive'"):
        get_error_model("additive")
