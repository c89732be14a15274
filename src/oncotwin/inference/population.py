"""Population (nonlinear mixed-effects) models: what a cohort knows about a new patient.

Each subject's unconstrained model parameters are a draw from the population (Lindstrom MJ,
Bates DM. Biometrics 1990;46:673-687):

    z_i = mu + beta^T x_i + diag(omega) L eta_i,   eta_i ~ N(0, I)

sampled non-centred (Betancourt M, Girolami M. arXiv:1312.0906) or centred per parameter (see
:class:`_Layout`), with log-normal random effects on every model parameter but the size at the
reference time (see UNPOOLED; other size parameters are relative to each subject's reference
size, so cohorts in different units pool), a full correlation matrix
(Cholesky factor L, LKJ(2) prior: Lewandowski D et al. J Multivar Anal 2009;100:1989-2001),
fixed effects beta for covariates x_i (centred and scaled), and residual-error parameters shared
by the cohort. Censoring and the error model are those of the individual likelihood. Fitted by
NUTS (default) or, for large cohorts, by SVI with a multivariate-Normal guide.

A fitted :class:`Population` gives a new subject's prior (:meth:`Population.prior`): the
population-predictive distribution of z, moment-matched to a correlated Normal.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._jax import jax, jnp
from ..errors import CalibrationError, ConvergenceWarning, DataError, ModelError
from ..models import TumourModel, get_model
from ..observe import ErrorModel, get_error_model
from ..simulate import DEFAULT_SOLVER
from .calibrate import _laplace_all, _loglik_fn, _posterior
from .posterior import Diagnostics, Posterior
from .priors import Prior
from .problem import Spec, SubjectArrays, SubjectData, bucket, make_spec, pointwise_loglik
from .threads import map_in_threads

MIN_SUBJECTS = 3  # a population fit needs at least this many subjects
OMEGA_SCALE = 1.0  # HalfNormal scale of the between-subject SDs (log scale: a factor e)
BETA_SCALE = 1.0  # Normal scale of covariate effects per SD of the covariate
LKJ_CONCENTRATION = 2.0
# The size at the reference time is relative to each subject's first (noisy) measurement, so
# its spread across subjects is measurement noise, not biology. Pooled, its between-subject SD
# collapsed towards 0 (0.04 for a true noise SD of 0.1 in the synthetic cohort of the tests),
# pinning every subject's curve to its first measurement: 90% intervals of the growth rate
# covered the truth for 15 of 24 subjects. It keeps its default prior in every subject.
UNPOOLED = ("v0",)
MIN_ERROR_SD = 0.05  # floor on the prior SD of the error parameters handed to new subjects
PREDICTIVE_DRAWS = 4  # random-effect draws per posterior draw for the predictive prior
LAPLACE_DRAWS = 256  # importance draws per subject to size its own posterior spread
CENTRE_BELOW = 0.5  # centre a random effect when its own posterior SD < this x omega
# The sampled sites of the cohort model, in the order it samples them.
SITES = ("mu", "omega", "corr_chol", "beta", "z_error", "z_centred", "eta", "eta_unpooled")


@dataclass(frozen=True)
class Population:
    """A fitted population model (posterior draws of its hyperparameters).

    Attributes:
        model, error_model: names of the structural and error models.
        names: model parameter names (random effects), then error parameter names.
        mu: population means of the unconstrained model parameters, (draws, d).
        omega: between-subject SDs, (draws, d).
        corr_chol: Cholesky factors of the random-effect correlation, (draws, d, d).
        beta: covariate effects, (draws, p, d) (p = 0 without covariates).
        (Parameters in :attr:`unpooled` are not random effects: their mu and omega are their
        default prior's location and scale, uncorrelated and without covariate effects.)
        z_error: unconstrained error parameters, (draws, e).
        covariates: covariate names; `covariate_center` and `covariate_scale` standardise them.
        subjects: ids of the subjects fitted; `z_subjects` their unconstrained parameters,
            (draws, n, d), for goodness-of-fit and predictive checks.
        diagnostics: sampler diagnostics over all hyperparameters.
        method: "nuts" or "svi"; settings: what the fit used; source: a label.
    """

    model: str
    error_model: str
    names: tuple[str, ...]
    mu: np.ndarray
    omega: np.ndarray
    corr_chol: np.ndarray
    beta: np.ndarray
    z_error: np.ndarray
    covariates: tuple[str, ...]
    covariate_center: np.ndarray
    covariate_scale: np.ndarray
    subjects: tuple[str, ...]
    z_subjects: np.ndarray
    diagnostics: Diagnostics
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = "population"

    @property
    def n_model(self) -> int:
        return self.mu.shape[-1]

    @property
    def unpooled(self) -> tuple[str, ...]:
        """Model parameters each subject keeps with its default prior (see UNPOOLED)."""
        return tuple(self.settings.get("unpooled", ()))

    def correlation(self) -> np.ndarray:
        """Posterior mean correlation matrix of the random effects."""
        return np.mean(self.corr_chol @ np.swapaxes(self.corr_chol, -1, -2), axis=0)

    def summary(self) -> dict[str, Any]:
        """Posterior medians and 90% intervals of typical values and between-subject SDs
        ("omega"; absent for error parameters, and for unpooled ones, marked "pooled": False),
        and of covariate effects ("effects": the change of the unconstrained parameter, log or
        logit, per unit of each covariate; for an indicator, that level against the reference
        level)."""
        m = get_model(self.model)
        out: dict[str, Any] = {}
        for i, p in enumerate(m.params):
            typical = np.asarray(p.constrain(self.mu[:, i]))
            out[p.name] = {
                "typical": _quantiles(typical),
                "unit": "x reference size" if p.scale == "size" else p.unit,
            }
            if p.name in self.unpooled:
                out[p.name]["pooled"] = False  # the typical value is the prior median
            else:
                out[p.name]["omega"] = _quantiles(self.omega[:, i])
                if self.covariates:
                    out[p.name]["effects"] = {
                        c: _quantiles(self.beta[:, k, i] / self.covariate_scale[k])
                        for k, c in enumerate(self.covariates)
                    }
        err = get_error_model(self.error_model)
        for j, p in enumerate(err.params):
            out[p.name] = {"typical": _quantiles(np.asarray(p.constrain(self.z_error[:, j])))}
        return out

    def prior(self, covariates: Mapping[str, float] | None = None, *, seed: int = 0) -> Prior:
        """Prior for a new subject: the population-predictive distribution of its z.

        Draws ``mu + beta^T x + diag(omega) L eta`` over posterior draws (and several eta per
        draw) and moment-matches a correlated Normal; the error parameters get the posterior of
        the cohort's (with a floor on their spread), independent of the model parameters.
        """
        x = self.standardise(covariates)
        rng = np.random.default_rng(seed)
        eta = rng.standard_normal((PREDICTIVE_DRAWS, *self.mu.shape))
        shift = np.einsum("p,spd->sd", x, self.beta) if len(x) else 0.0
        effects = np.einsum("sde,kse->ksd", self.corr_chol, eta) * self.omega
        z = (self.mu + shift + effects).reshape(-1, self.n_model)
        cov = np.zeros((len(self.names),) * 2)
        cov[: self.n_model, : self.n_model] = np.cov(z, rowvar=False)
        err_sd = np.maximum(np.std(self.z_error, axis=0), MIN_ERROR_SD)
        cov[self.n_model :, self.n_model :] = np.diag(err_sd**2)
        loc = np.concatenate([z.mean(axis=0), self.z_error.mean(axis=0)])
        return Prior.from_mean_cov(
            self.names, loc, cov, f"{self.source} ({len(self.subjects)} subjects)"
        )

    def standardise(self, covariates: Mapping[str, float] | None) -> np.ndarray:
        """A subject's covariates, centred and scaled as in the fit (``x`` of the model).

        Raises:
            ModelError: a covariate of the population is missing.
        """
        if not self.covariates:
            return np.zeros(0)
        covariates = covariates or {}
        missing = [c for c in self.covariates if c not in covariates]
        if missing:
            raise ModelError(f"the population needs covariates {missing} for a new subject")
        x = np.array([float(covariates[c]) for c in self.covariates])
        return (x - self.covariate_center) / self.covariate_scale

    def arrays(self) -> dict[str, np.ndarray]:
        """The draws, for storage (see :func:`population_from_arrays`)."""
        return {
            "mu": self.mu, "omega": self.omega, "corr_chol": self.corr_chol, "beta": self.beta,
            "z_error": self.z_error, "z_subjects": self.z_subjects,
            "covariate_center": self.covariate_center, "covariate_scale": self.covariate_scale,
        }  # fmt: skip

    def record(self) -> dict[str, Any]:
        """JSON-ready description (everything but the draws)."""
        return {
            "model": self.model, "error_model": self.error_model, "names": list(self.names),
            "covariates": list(self.covariates), "subjects": list(self.subjects),
            "diagnostics": self.diagnostics.to_dict(), "method": self.method,
            "settings": self.settings, "source": self.source,
        }  # fmt: skip


def population_from_arrays(record: Mapping[str, Any], arrays: Mapping[str, Any]) -> Population:
    """Rebuild a :class:`Population` from :meth:`Population.record` and :meth:`Population.arrays`."""
    d = record["diagnostics"]
    fields: dict[str, Any] = {
        k: (float("nan") if v is None else v) for k, v in d.items() if k not in ("ok", "problems")
    }
    diagnostics = Diagnostics(**fields)
    return Population(
        model=record["model"], error_model=record["error_model"], names=tuple(record["names"]),
        mu=arrays["mu"], omega=arrays["omega"], corr_chol=arrays["corr_chol"], beta=arrays["beta"],
        z_error=arrays["z_error"], covariates=tuple(record["covariates"]),
        covariate_center=arrays["covariate_center"], covariate_scale=arrays["covariate_scale"],
        subjects=tuple(record["subjects"]), z_subjects=arrays["z_subjects"],
        diagnostics=diagnostics, method=record["method"], settings=dict(record["settings"]),
        source=record.get("source", "population"),
    )  # fmt: skip


def subject_posteriors(
    pop: Population,
    subjects: Sequence[SubjectData],
    covariates: Mapping[str, Mapping[str, float]] | None = None,
    *,
    seed: int = 0,
) -> list[Posterior]:
    """The posterior of subjects that were part of the fit, read off the joint fit.

    In the joint (hierarchical) posterior each subject's parameters are informed by its own
    data and, through the population, by every other subject's: the full-Bayes counterpart of
    the empirical Bayes estimates of mixed-effects software. Each posterior carries its own
    R-hat and ESS, and as its prior the population prior a new subject with its covariates gets
    (what a later twin update recalibrates against).

    Args:
        pop: a population fitted on (among others) `subjects`.
        subjects: the subjects, as given to :func:`fit_population`.
        covariates: the covariates the fit used, ``{subject id: {name: value}}``.
        seed: seed recorded with the posteriors (and used for their priors).

    Raises:
        ModelError: a subject was not part of the fit.
    """
    m, err = get_model(pop.model), get_error_model(pop.error_model)
    index = {sid: i for i, sid in enumerate(pop.subjects)}
    chains = int(pop.settings.get("chains", 1)) if pop.method == "nuts" else 1
    default = Prior.default(m, err)
    settings = {**pop.settings, "pooled": len(pop.subjects), "calibration_method": "nuts"}
    out = []
    for s in subjects:
        if s.id not in index:
            raise ModelError(f"subject {s.id!r} was not part of the population fit")
        z = np.concatenate([pop.z_subjects[:, index[s.id]], pop.z_error], axis=1)
        spec = make_spec(m, err, s.schedule, censoring=bool(s.censored.any()))
        data = jax.tree.map(jnp.asarray, s.arrays(default))
        log_lik = np.asarray(_loglik_fn(spec)(jnp.asarray(z), data))
        z, log_lik = (
            z.reshape(chains, -1, z.shape[-1]),
            log_lik.reshape(chains, -1, log_lik.shape[-1]),
        )
        diagnostics = (
            Diagnostics.from_chains(z, pop.diagnostics.divergences)
            if pop.method == "nuts" else pop.diagnostics
        )  # fmt: skip
        prior = pop.prior(covariates.get(s.id) if covariates else None, seed=seed)
        method = f"population-{pop.method}"
        out.append(_posterior(s, spec, z, log_lik, diagnostics, prior, method, seed, settings))
    return out


def _quantiles(x: np.ndarray) -> list[float]:
    return [float(v) for v in np.quantile(x, [0.5, 0.05, 0.95])]


@dataclass(frozen=True)
class _Layout:
    """Which model parameters are random effects, and which of those are sampled centred.

    Non-centred random effects (z = mu + omega eta) mix well when a subject's data say little
    about its own value; centred ones (z sampled directly) when they say much more than the
    population does (Papaspiliopoulos O et al. Stat Sci 2007;22:59-73). With correlated effects
    the centred block C comes first: z_C ~ N(m_C, S_CC S_CC^T) and z_N = m_N + S_NC e_C +
    S_NN eta_N, where S = diag(omega) L in the order (C, N) and e_C = S_CC^-1 (z_C - m_C).
    """

    d: int  # model parameters
    pooled: tuple[int, ...]  # random effects (indices into the model parameters)
    centred: tuple[int, ...]  # the ones sampled centred (a subset of `pooled`)

    @property
    def order(self) -> tuple[int, ...]:
        """The random effects as sampled: centred first (indices into the model parameters)."""
        return self.centred + tuple(i for i in self.pooled if i not in self.centred)


def _population_model(
    spec: Spec, layout: _Layout, data: SubjectArrays, x: Any, hyper: dict[str, Any]
) -> None:
    """NumPyro model of the cohort. Random effects in `layout.order`; parameters that are not
    pooled keep their default prior, independently in each subject."""
    import numpyro
    import numpyro.distributions as dist

    n, p = x.shape
    order = np.asarray(layout.order, dtype=int)
    r, k = len(order), len(layout.centred)
    loc, scale = hyper["mu_loc"], hyper["mu_scale"]
    mu = numpyro.sample("mu", dist.Normal(loc[order], scale[order]).to_event(1))
    omega = numpyro.sample("omega", dist.HalfNormal(OMEGA_SCALE * jnp.ones(r)).to_event(1))
    chol = (
        numpyro.sample("corr_chol", dist.LKJCholesky(r, LKJ_CONCENTRATION)) if r > 1 else jnp.eye(r)
    )
    beta = numpyro.sample("beta", dist.Normal(jnp.zeros((p, r)), BETA_SCALE).to_event(2))
    z_error = numpyro.sample(
        "z_error", dist.Normal(hyper["err_loc"], hyper["err_scale"]).to_event(1)
    )
    m = mu + x @ beta  # (n, r)
    s = omega[:, None] * chol  # scale_tril of the random effects
    z_c = e_c = eta = eta_free = jnp.zeros((n, 0))
    if k:
        z_c = numpyro.sample(
            "z_centred", dist.MultivariateNormal(m[:, :k], scale_tril=s[:k, :k]).to_event(1)
        )
        e_c = jax.scipy.linalg.solve_triangular(s[:k, :k], (z_c - m[:, :k]).T, lower=True).T
    if r > k:
        eta = numpyro.sample("eta", dist.Normal(jnp.zeros((n, r - k)), 1.0).to_event(2))
    z_n = m[:, k:] + e_c @ s[k:, :k].T + eta @ s[k:, k:].T
    free = np.asarray([i for i in range(layout.d) if i not in layout.pooled], dtype=int)
    if free.size:
        eta_free = numpyro.sample(
            "eta_unpooled", dist.Normal(jnp.zeros((n, free.size)), 1.0).to_event(2)
        )
    z_model = jnp.zeros((n, layout.d))
    z_model = z_model.at[:, order].set(jnp.concatenate([z_c, z_n], axis=1))
    z_model = z_model.at[:, free].set(loc[free] + scale[free] * eta_free)
    numpyro.deterministic("z_model", z_model)
    z = jnp.concatenate([z_model, jnp.broadcast_to(z_error, (n, z_error.shape[0]))], axis=1)
    ll = jax.vmap(lambda zi, di: pointwise_loglik(spec, zi, di))(z, data)
    numpyro.factor("loglik", jnp.sum(ll))


def _full(
    layout: _Layout, hyper: Mapping[str, Any], mu: np.ndarray, omega: np.ndarray,
    chol: np.ndarray, beta: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Draws of the random effects' hyperparameters (in `layout.order`) -> all d model
    parameters in model order (unpooled ones: their prior's location and scale)."""
    order = np.asarray(layout.order, dtype=int)
    draws, d = mu.shape[0], layout.d
    full_mu = np.tile(np.asarray(hyper["mu_loc"], float), (draws, 1))
    full_omega = np.tile(np.asarray(hyper["mu_scale"], float), (draws, 1))
    full_beta = np.zeros((draws, beta.shape[1], d))
    corr = np.tile(np.eye(d), (draws, 1, 1))
    full_mu[:, order], full_omega[:, order], full_beta[:, :, order] = mu, omega, beta
    corr[:, order[:, None], order] = chol @ np.swapaxes(chol, -1, -2)
    return full_mu, full_omega, np.linalg.cholesky(corr), full_beta


@functools.lru_cache(maxsize=16)
def _nuts_population_fn(
    spec: Spec, layout: _Layout, draws: int, warmup: int, target_accept: float
) -> Any:
    """Jitted NUTS over the cohort, one chain per call (one compilation per Spec and padded
    cohort shape). Not vmapped over chains: a vmapped NUTS turns every lax.cond and while_loop
    of the tree building into batched selects (tracing 7.1 s and compiling 6.2 s on the breast
    cohort even for a batch of one, against 0.65 s and 3.9 s unbatched)."""
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import initialize_model

    def run(
        init: dict[str, Any], sd: dict[str, Any], key: Any, data: SubjectArrays, x: Any,
        hyper: Any,
    ) -> Any:  # fmt: skip
        args = (spec, layout, data, x, hyper)
        info = initialize_model(
            key, _population_model, model_args=args, dynamic_args=True,
            init_strategy=_init_to(init),
        )  # fmt: skip
        potential_gen, postprocess_gen = info.potential_fn, info.postprocess_fn
        init_kernel, sample_kernel = hmc(potential_fn_gen=potential_gen, algo="NUTS")
        z0 = info.param_info.z
        # Initial diagonal metric: the posterior SDs expected from the individual fits.
        # Adaptation replaces it after its first window; with the identity instead, that
        # window ran at tree depth 10 and cost 42% of all leapfrog steps on the breast cohort.
        guess = {k: jnp.broadcast_to(sd.get(k, 1.0), jnp.shape(v)) ** 2 for k, v in z0.items()}
        inverse_mass = ravel_pytree(guess)[0]

        k_jit, k_run = jax.random.split(key)
        start = jax.tree.map(lambda v: v + 0.05 * jax.random.normal(k_jit, jnp.shape(v)), z0)
        state = init_kernel(
            start, num_warmup=warmup, dense_mass=False, target_accept_prob=target_accept,
            inverse_mass_matrix=inverse_mass, model_args=args, rng_key=k_run,
        )  # fmt: skip

        def step(state: Any, _: Any) -> tuple[Any, Any]:
            state = sample_kernel(state, model_args=args)
            return state, (state.z, state.diverging)

        _, (zs, diverging) = jax.lax.scan(step, state, None, length=warmup + draws)
        zs = jax.tree.map(lambda v: v[warmup:], zs)
        return jax.vmap(postprocess_gen(*args))(zs), diverging[warmup:]

    return jax.jit(run)


def _init_to(values: dict[str, Any]) -> Any:
    from numpyro.infer import init_to_value

    return init_to_value(values=values)


def _cohort_arrays(
    subjects: Sequence[SubjectData], prior: Prior
) -> tuple[SubjectArrays, tuple[int, int, int]]:
    shape = (
        bucket(max(len(s.times) for s in subjects)),
        bucket(max(len(s.schedule.doses) for s in subjects), 1),
        bucket(max(len(s.schedule.switches) for s in subjects), 1),
    )
    arrays = [s.arrays(prior, None, *shape) for s in subjects]
    stacked = jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(v) for v in xs]), *arrays)
    return stacked, shape


def _covariate_matrix(
    subjects: Sequence[SubjectData], covariates: Mapping[str, Mapping[str, float]] | None
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray]:
    """Standardised covariate matrix (n, p), with names, centres and scales."""
    if not covariates:
        return (), np.zeros((len(subjects), 0)), np.zeros(0), np.ones(0)
    names = tuple(sorted({k for c in covariates.values() for k in c}))
    x = np.full((len(subjects), len(names)), np.nan)
    for i, s in enumerate(subjects):
        for j, name in enumerate(names):
            if s.id not in covariates or name not in covariates[s.id]:
                raise DataError(f"subject {s.id!r} has no value for covariate {name!r}")
            x[i, j] = float(covariates[s.id][name])
    center, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return names, (x - center) / scale, center, scale


def fit_population(
    model: str | TumourModel,
    subjects: Sequence[SubjectData],
    *,
    error_model: str | ErrorModel = "proportional",
    covariates: Mapping[str, Mapping[str, float]] | None = None,
    method: str = "nuts",
    seed: int = 0,
    chains: int = 4,
    draws: int = 500,
    warmup: int = 500,
    target_accept: float = 0.95,
    svi_steps: int = 3000,
    source: str = "population",
) -> Population:
    """Fit a population (mixed-effects) model to a cohort.

    Args:
        model: structural model or registry name.
        subjects: the cohort (at least MIN_SUBJECTS).
        error_model: residual error model, shared by the cohort.
        covariates: optional ``{subject id: {covariate: value}}`` (fixed effects on every
            parameter, standardised).
        method: "nuts" (NUTS; see :class:`_Layout` for the parametrisation) or "svi"
            (multivariate-Normal guide, large cohorts).
        seed: random seed.
        chains, draws, warmup, target_accept: NUTS settings (a high target acceptance, as
            usual for hierarchical models: smaller steps through the narrow neck of the
            between-subject SDs. Measured with the earlier all-non-centred model, 2 chains: on
            the synthetic cohort of the tests 3 of 4 seeds failed R-hat at 0.9, 1 of 4 at
            0.95; on the breast cohort the steps per draw were the same at both).
        svi_steps: optimisation steps for SVI.
        source: label carried into priors made from this population.

    Raises:
        ModelError: unknown model, error model or method.
        CalibrationError: too few subjects, or no subject could be fitted.
    """
    if method not in ("nuts", "svi"):
        raise ModelError(f"unknown population method {method!r}; use 'nuts' or 'svi'")
    if len(subjects) < MIN_SUBJECTS:
        raise CalibrationError(
            f"a population needs at least {MIN_SUBJECTS} subjects, got {len(subjects)}"
        )
    m, err = get_model(model), get_error_model(error_model)
    default = Prior.default(m, err)
    d = len(m.params)
    spec = Spec(
        m,
        err,
        all(make_spec(m, err, s.schedule).closed_form for s in subjects),
        DEFAULT_SOLVER,
        censoring=any(s.censored.any() for s in subjects),
    )
    names, x, center, scale = _covariate_matrix(subjects, covariates)
    data, _ = _cohort_arrays(subjects, default)
    hyper = {
        "mu_loc": jnp.asarray(default.loc[:d]), "mu_scale": jnp.asarray(default.scale[:d]),
        "err_loc": jnp.asarray(default.loc[d:]), "err_scale": jnp.asarray(default.scale[d:]),
    }  # fmt: skip
    # Start from the individual MAP estimates (robust location and spread of them); their
    # Laplace spreads say which random effects the data inform more than the population does.
    fits = _laplace_all(m, err, subjects, [default] * len(subjects), seed, DEFAULT_SOLVER,
                        LAPLACE_DRAWS)  # fmt: skip
    zmap = np.array([res["z_map"] for *_, res in fits])
    if not np.any(np.all(np.isfinite(zmap), axis=1)):
        raise CalibrationError(f"no subject of the cohort could be fitted with {m.name}")
    zmap = np.where(np.isfinite(zmap), zmap, np.nanmedian(zmap, axis=0))
    own = np.array([_weighted_sd(res["z"], res["log_weights"]) for *_, res in fits])
    own_sd = np.nanmedian(own, axis=0)
    own = np.where(np.isfinite(own), own, own_sd)
    pooled = tuple(i for i, p in enumerate(m.params) if p.name not in UNPOOLED)
    # Covariate-adjusted start: least squares of the MAPs on the covariates, robust SD of the
    # residuals (the between-subject SD left once the covariates are accounted for).
    design = np.column_stack([np.ones(len(subjects)), x])
    coef = np.linalg.lstsq(design, zmap[:, :d], rcond=None)[0]
    resid = zmap[:, :d] - design @ coef
    mu0, omega0 = np.array(default.loc[:d]), np.array(default.scale[:d])
    for i in pooled:
        mu0[i] = coef[0, i]
        mad = np.median(np.abs(resid[:, i] - np.median(resid[:, i])))
        omega0[i] = np.clip(1.4826 * mad, 0.05, 2.0)
    # Centred only where the data clearly dominate: a centred effect whose SD turns out small
    # is a funnel (divergences), a non-centred one whose data dominate is merely slower. The
    # MAPs scatter by the between-subject SD and by their own error: take the latter out.
    between = np.sqrt(np.maximum(omega0**2 - own_sd[:d] ** 2, 0.0))
    centred = tuple(i for i in pooled if own_sd[i] < CENTRE_BELOW * between[i])
    layout = _Layout(d, pooled, centred)
    order = list(layout.order)
    k = len(layout.centred)
    eta0 = (zmap[:, :d] - mu0) / omega0  # unpooled: against their prior
    eta0[:, list(pooled)] = resid[:, list(pooled)] / omega0[list(pooled)]
    eta0 = np.clip(eta0, -3.0, 3.0)
    init = {
        "mu": mu0[order], "omega": omega0[order], "beta": coef[1:, order],
        "z_error": np.median(zmap[:, d:], axis=0), "z_centred": zmap[:, order[:k]],
        "eta": eta0[:, order[k:]], "eta_unpooled": eta0[:, [i for i in range(d) if i not in pooled]],
    }  # fmt: skip
    if len(order) > 1:
        init["corr_chol"] = np.eye(len(order))
    init = {k: jnp.asarray(v) for k, v in init.items() if np.size(v) or k == "beta"}
    key = jax.random.PRNGKey(seed)
    if method == "nuts":
        run = _nuts_population_fn(spec, layout, draws, warmup, target_accept)
        sd = _posterior_sd_guess(layout, own, omega0, default, coef.shape[0] - 1, len(subjects))
        x_jax = jnp.asarray(x)
        # One chain per call, the chains on a thread per core (inference/threads.py); a chain
        # also no longer waits for the longest trajectory of a vmapped batch at every draw.
        per_chain = list(map_in_threads(
            lambda k: jax.device_get(run(init, sd, k, data, x_jax, hyper)),
            list(jax.random.split(key, chains)),
        ))  # fmt: skip
        samples = {k: np.stack([c[0][k] for c in per_chain]) for k in per_chain[0][0]}
        diverging = np.stack([c[1] for c in per_chain])
        diagnostics = _diagnostics(samples, int(np.sum(diverging)), chains)
        settings: dict[str, Any] = {"chains": chains, "draws": draws, "warmup": warmup,
                    "target_accept": target_accept}  # fmt: skip
        flat = {
            k: np.asarray(v).reshape(chains * draws, *np.shape(v)[2:]) for k, v in samples.items()
        }
    else:
        flat, converged = _svi(spec, layout, data, jnp.asarray(x), hyper, init, key, svi_steps,
                               chains * draws)  # fmt: skip
        diagnostics = Diagnostics("svi", chains=1, optimizer_converged=converged)
        settings = {"steps": svi_steps, "draws": chains * draws, "guide": "AutoMultivariateNormal"}
    n_draws = flat["mu"].shape[0]
    chol = flat.get("corr_chol", np.ones((n_draws, 1, 1)))
    np_hyper = {k: np.asarray(v) for k, v in hyper.items()}
    mu, omega, corr_chol, beta = _full(layout, np_hyper, flat["mu"], flat["omega"], chol,
                                       flat["beta"])  # fmt: skip
    names_of = [p.name for p in m.params]
    settings |= {"unpooled": [names_of[i] for i in range(d) if i not in pooled],
                 "centred": [names_of[i] for i in layout.centred]}  # fmt: skip
    settings |= {"method": method, "error_model": err.name, "seed": seed,
                 "omega_prior": f"HalfNormal({OMEGA_SCALE})", "lkj": LKJ_CONCENTRATION}  # fmt: skip
    pop = Population(
        model=m.name, error_model=err.name, names=default.names, mu=mu, omega=omega,
        corr_chol=corr_chol, beta=beta, z_error=flat["z_error"], covariates=names,
        covariate_center=center, covariate_scale=scale, subjects=tuple(s.id for s in subjects),
        z_subjects=flat["z_model"],
        diagnostics=diagnostics, method=method, settings=settings, source=source,
    )  # fmt: skip
    if not diagnostics.ok:
        warnings.warn(
            f"population fit of {m.name} did not converge: " + "; ".join(diagnostics.problems()),
            ConvergenceWarning,
            stacklevel=2,
        )
    return pop


def _posterior_sd_guess(
    layout: _Layout, own: np.ndarray, omega: np.ndarray, default: Prior, p: int, n: int
) -> dict[str, Any]:
    """Rough posterior SD of each sampled site (unconstrained) from the individual fits: `own`
    (n, d + e) are the subjects' own posterior SDs, `omega` the between-subject SDs, p the number
    of covariates. Scales the sampler's first metric; within a factor of a few is enough."""
    order, k = list(layout.order), len(layout.centred)
    free = [i for i in range(layout.d) if i not in layout.pooled]
    sd = {
        "mu": omega[order] / np.sqrt(n),
        "omega": np.full(len(order), 1.0 / np.sqrt(2 * n)),  # log scale
        "corr_chol": np.asarray(1.0 / np.sqrt(n)),
        "beta": np.broadcast_to(omega[order] / np.sqrt(n), (p, len(order))),
        "z_error": np.median(own[:, layout.d :], axis=0) / np.sqrt(n),
        "z_centred": own[:, order[:k]],
        "eta": np.clip(own[:, order[k:]] / omega[order[k:]], 0.05, 1.0),
        "eta_unpooled": np.clip(own[:, free] / np.asarray(default.scale)[free], 0.05, 1.0),
    }
    return {key: jnp.asarray(v) for key, v in sd.items()}


def _weighted_sd(z: np.ndarray, log_weights: np.ndarray) -> np.ndarray:
    """Importance-weighted SD of Laplace draws (n_draws, k) -> (k,)."""
    w = np.exp(log_weights - np.nanmax(log_weights))
    w = np.where(np.isfinite(w), w, 0.0)
    w = w / w.sum()
    mean = w @ z
    return np.sqrt(w @ (z - mean) ** 2)


def _diagnostics(samples: Mapping[str, Any], divergences: int, chains: int) -> Diagnostics:
    """R-hat and ESS over the hyperparameters (mu, omega, error parameters)."""
    columns = [
        np.asarray(samples[k]).reshape(chains, -1, int(np.prod(np.shape(samples[k])[2:]) or 1))
        for k in ("mu", "omega", "z_error")
    ]
    return Diagnostics.from_chains(np.concatenate(columns, axis=-1), divergences)


def _svi(
    spec: Spec, layout: _Layout, data: SubjectArrays, x: Any, hyper: Any,
    init: dict[str, Any], key: Any, steps: int, n_draws: int,
) -> tuple[dict[str, np.ndarray], bool]:  # fmt: skip
    """SVI with a multivariate-Normal guide (Kucukelbir A et al. JMLR 2017;18:1-45).

    The guide sees one flat vector of the unconstrained sites with the cohort's jitted
    log-density: NumPyro sets a guide up by running the model eagerly, which compiled the
    cohort model operation by operation (a cold fit of 3 lung subjects: 42 s, now 17 s).

    Returns the guide's draws and whether the ELBO settled: the mean loss of the last tenth of
    the steps within one unit (nats) of the tenth before it.
    """
    import numpyro
    import numpyro.distributions as dist
    import optax
    from jax.flatten_util import ravel_pytree
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoMultivariateNormal
    from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

    args = (spec, layout, data, x, hyper)
    u0 = jax.jit(lambda v: unconstrain_fn(_population_model, args, {}, v))(init)
    # Flattened in the model's order of sites, as NumPyro's guide flattens them: the order
    # shapes the guide's Cholesky factor, and with it the optimiser's path.
    sites = [k for k in SITES if k in u0]
    z0, unravel_list = ravel_pytree([u0[k] for k in sites])

    def unravel(z: Any) -> dict[str, Any]:
        return dict(zip(sites, unravel_list(z), strict=True))

    @jax.jit
    def potential(z: Any) -> Any:
        with numpyro.handlers.block():  # the cohort's sites are not the guide's
            return potential_energy(_population_model, args, {}, unravel(z))

    def flat_model() -> None:
        z = numpyro.sample("z", dist.ImproperUniform(dist.constraints.real, (), z0.shape))
        numpyro.factor("log_density", -potential(z))

    guide = AutoMultivariateNormal(flat_model, init_loc_fn=_init_to({"z": z0}))
    svi = SVI(flat_model, guide, optax.adam(0.01), Trace_ELBO())
    k_fit, k_draw = jax.random.split(key)
    result = svi.run(k_fit, steps, progress_bar=False)
    z = guide.sample_posterior(k_draw, result.params, sample_shape=(n_draws,))["z"]
    kept = [k for k in ("mu", "omega", "corr_chol", "beta", "z_error", "z_model")
            if len(layout.pooled) > 1 or k != "corr_chol"]  # fmt: skip
    constrain = jax.jit(jax.vmap(lambda zi: constrain_fn(
        _population_model, args, {}, unravel(zi), return_deterministic=True
    )))  # fmt: skip
    samples = constrain(z)
    losses = np.asarray(result.losses)
    tenth = max(len(losses) // 10, 1)
    settled = bool(
        np.all(np.isfinite(losses[-tenth:]))
        and abs(losses[-tenth:].mean() - losses[-2 * tenth : -tenth].mean()) < 1.0
    )
    return {k: np.asarray(samples[k]) for k in kept}, settled
