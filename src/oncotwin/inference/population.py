"""Population (nonlinear mixed-effects) models: what a cohort knows about a new patient.

Each subject's unconstrained model parameters are a draw from the population (Lindstrom MJ,
Bates DM. Biometrics 1990;46:673-687), written non-centred for NUTS (Betancourt M, Girolami M.
arXiv:1312.0906):

    z_i = mu + beta^T x_i + diag(omega) L eta_i,   eta_i ~ N(0, I)

with log-normal random effects on every model parameter (size parameters relative to each
subject's reference size, so cohorts in different units pool), a full correlation matrix
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
from .calibrate import _laplace_all
from .posterior import Diagnostics
from .priors import Prior
from .problem import Spec, SubjectArrays, SubjectData, bucket, make_spec, pointwise_loglik

OMEGA_SCALE = 1.0  # HalfNormal scale of the between-subject SDs (log scale: a factor e)
BETA_SCALE = 1.0  # Normal scale of covariate effects per SD of the covariate
LKJ_CONCENTRATION = 2.0
MIN_ERROR_SD = 0.05  # floor on the prior SD of the error parameters handed to new subjects
PREDICTIVE_DRAWS = 4  # random-effect draws per posterior draw for the predictive prior


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

    def correlation(self) -> np.ndarray:
        """Posterior mean correlation matrix of the random effects."""
        return np.mean(self.corr_chol @ np.swapaxes(self.corr_chol, -1, -2), axis=0)

    def summary(self) -> dict[str, Any]:
        """Posterior medians and 90% intervals of typical values and between-subject SDs."""
        m = get_model(self.model)
        out: dict[str, Any] = {}
        for i, p in enumerate(m.params):
            typical = np.asarray(p.constrain(self.mu[:, i]))
            out[p.name] = {
                "typical": _quantiles(typical),
                "omega": _quantiles(self.omega[:, i]),
                "unit": "x reference size" if p.scale == "size" else p.unit,
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
        x = self._standardise(covariates)
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

    def _standardise(self, covariates: Mapping[str, float] | None) -> np.ndarray:
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


def _quantiles(x: np.ndarray) -> list[float]:
    return [float(v) for v in np.quantile(x, [0.5, 0.05, 0.95])]


def _population_model(spec: Spec, data: SubjectArrays, x: Any, hyper: dict[str, Any]) -> None:
    """NumPyro model of the cohort (non-centred random effects)."""
    import numpyro
    import numpyro.distributions as dist

    n, p = x.shape
    d = spec.n_model
    mu = numpyro.sample("mu", dist.Normal(hyper["mu_loc"], hyper["mu_scale"]).to_event(1))
    omega = numpyro.sample("omega", dist.HalfNormal(OMEGA_SCALE * jnp.ones(d)).to_event(1))
    corr_chol = numpyro.sample("corr_chol", dist.LKJCholesky(d, LKJ_CONCENTRATION))
    beta = numpyro.sample("beta", dist.Normal(jnp.zeros((p, d)), BETA_SCALE).to_event(2))
    z_error = numpyro.sample(
        "z_error", dist.Normal(hyper["err_loc"], hyper["err_scale"]).to_event(1)
    )
    eta = numpyro.sample("eta", dist.Normal(jnp.zeros((n, d)), 1.0).to_event(2))
    z_model = mu + x @ beta + (eta @ corr_chol.T) * omega
    z = jnp.concatenate([z_model, jnp.broadcast_to(z_error, (n, z_error.shape[0]))], axis=1)
    ll = jax.vmap(lambda zi, di: pointwise_loglik(spec, zi, di))(z, data)
    numpyro.factor("loglik", jnp.sum(ll))


@functools.lru_cache(maxsize=16)
def _nuts_population_fn(
    spec: Spec, chains: int, draws: int, warmup: int, target_accept: float
) -> Any:
    """Jitted NUTS over the cohort (one compilation per Spec and padded cohort shape)."""
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import initialize_model

    def run(init: dict[str, Any], keys: Any, data: SubjectArrays, x: Any, hyper: Any) -> Any:
        args = (spec, data, x, hyper)
        info = initialize_model(
            keys[0], _population_model, model_args=args, dynamic_args=True,
            init_strategy=_init_to(init),
        )  # fmt: skip
        potential_gen, postprocess_gen = info.potential_fn, info.postprocess_fn
        init_kernel, sample_kernel = hmc(potential_fn_gen=potential_gen, algo="NUTS")
        z0 = info.param_info.z

        def one_chain(key: Any) -> Any:
            k_jit, k_run = jax.random.split(key)
            start = jax.tree.map(lambda v: v + 0.05 * jax.random.normal(k_jit, jnp.shape(v)), z0)
            state = init_kernel(
                start, num_warmup=warmup, dense_mass=False, target_accept_prob=target_accept,
                model_args=args, rng_key=k_run,
            )  # fmt: skip

            def step(state: Any, _: Any) -> tuple[Any, Any]:
                state = sample_kernel(state, model_args=args)
                return state, (state.z, state.diverging)

            _, (zs, diverging) = jax.lax.scan(step, state, None, length=warmup + draws)
            zs = jax.tree.map(lambda v: v[warmup:], zs)
            return jax.vmap(postprocess_gen(*args))(zs), diverging[warmup:]

        return jax.vmap(one_chain)(keys)

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
    target_accept: float = 0.9,
    svi_steps: int = 3000,
    source: str = "population",
) -> Population:
    """Fit a population (mixed-effects) model to a cohort.

    Args:
        model: structural model or registry name.
        subjects: the cohort (at least 3 subjects).
        error_model: residual error model, shared by the cohort.
        covariates: optional ``{subject id: {covariate: value}}`` (fixed effects on every
            parameter, standardised).
        method: "nuts" (non-centred NUTS) or "svi" (multivariate-Normal guide, large cohorts).
        seed: random seed.
        chains, draws, warmup, target_accept: NUTS settings.
        svi_steps: optimisation steps for SVI.
        source: label carried into priors made from this population.

    Raises:
        ModelError: unknown model, error model or method.
        CalibrationError: too few subjects, or no subject could be fitted.
    """
    if method not in ("nuts", "svi"):
        raise ModelError(f"unknown population method {method!r}; use 'nuts' or 'svi'")
    if len(subjects) < 3:
        raise CalibrationError(f"a population needs at least 3 subjects, got {len(subjects)}")
    m, err = get_model(model), get_error_model(error_model)
    default = Prior.default(m, err)
    d = len(m.params)
    spec = Spec(
        m, err, all(make_spec(m, err, s.schedule).closed_form for s in subjects), DEFAULT_SOLVER
    )
    names, x, center, scale = _covariate_matrix(subjects, covariates)
    data, _ = _cohort_arrays(subjects, default)
    hyper = {
        "mu_loc": jnp.asarray(default.loc[:d]), "mu_scale": jnp.asarray(default.scale[:d]),
        "err_loc": jnp.asarray(default.loc[d:]), "err_scale": jnp.asarray(default.scale[d:]),
    }  # fmt: skip
    # Start from the individual MAP estimates (robust location and spread of them).
    fits = _laplace_all(m, err, subjects, [default] * len(subjects), seed, DEFAULT_SOLVER, 1)
    zmap = np.array([res["z_map"] for *_, res in fits])
    if not np.any(np.all(np.isfinite(zmap), axis=1)):
        raise CalibrationError(f"no subject of the cohort could be fitted with {m.name}")
    zmap = np.where(np.isfinite(zmap), zmap, np.nanmedian(zmap, axis=0))
    mu0 = np.median(zmap[:, :d], axis=0)
    omega0 = np.clip(1.4826 * np.median(np.abs(zmap[:, :d] - mu0), axis=0), 0.05, 2.0)
    init = {
        "mu": mu0, "omega": omega0, "corr_chol": np.eye(d), "beta": np.zeros((x.shape[1], d)),
        "z_error": np.median(zmap[:, d:], axis=0),
        "eta": np.clip((zmap[:, :d] - mu0) / omega0, -3.0, 3.0),
    }  # fmt: skip
    init = {k: jnp.asarray(v) for k, v in init.items()}
    key = jax.random.PRNGKey(seed)
    if method == "nuts":
        run = _nuts_population_fn(spec, chains, draws, warmup, target_accept)
        samples, diverging = jax.device_get(
            run(init, jax.random.split(key, chains), data, jnp.asarray(x), hyper)
        )
        diagnostics = _diagnostics(samples, int(np.sum(diverging)), chains)
        settings: dict[str, Any] = {"chains": chains, "draws": draws, "warmup": warmup,
                    "target_accept": target_accept}  # fmt: skip
        flat = {
            k: np.asarray(v).reshape(chains * draws, *np.shape(v)[2:]) for k, v in samples.items()
        }
    else:
        flat, converged = _svi(spec, data, jnp.asarray(x), hyper, init, key, svi_steps,
                               chains * draws)  # fmt: skip
        diagnostics = Diagnostics("svi", chains=1, optimizer_converged=converged)
        settings = {"steps": svi_steps, "draws": chains * draws, "guide": "AutoMultivariateNormal"}
    z_subjects = (
        flat["mu"][:, None, :]
        + np.einsum("np,spd->snd", x, flat["beta"])
        + np.einsum("sde,sne->snd", flat["corr_chol"], flat["eta"]) * flat["omega"][:, None, :]
    )
    settings |= {"method": method, "error_model": err.name, "seed": seed,
                 "omega_prior": f"HalfNormal({OMEGA_SCALE})", "lkj": LKJ_CONCENTRATION}  # fmt: skip
    pop = Population(
        model=m.name, error_model=err.name, names=default.names, mu=flat["mu"],
        omega=flat["omega"], corr_chol=flat["corr_chol"], beta=flat["beta"],
        z_error=flat["z_error"], covariates=names, covariate_center=center,
        covariate_scale=scale, subjects=tuple(s.id for s in subjects), z_subjects=z_subjects,
        diagnostics=diagnostics, method=method, settings=settings, source=source,
    )  # fmt: skip
    if not diagnostics.ok:
        warnings.warn(
            f"population fit of {m.name} did not converge: " + "; ".join(diagnostics.problems()),
            ConvergenceWarning,
            stacklevel=2,
        )
    return pop


def _diagnostics(samples: Mapping[str, Any], divergences: int, chains: int) -> Diagnostics:
    """R-hat and ESS over the hyperparameters (mu, omega, error parameters)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az
    columns = [
        np.asarray(samples[k]).reshape(chains, -1, int(np.prod(np.shape(samples[k])[2:]) or 1))
        for k in ("mu", "omega", "z_error")
    ]
    z = np.concatenate(columns, axis=-1)
    rhat = max(float(az.rhat(z[..., i])) for i in range(z.shape[-1]))
    bulk = min(float(az.ess(z[..., i], method="bulk")) for i in range(z.shape[-1]))
    tail = min(float(az.ess(z[..., i], method="tail")) for i in range(z.shape[-1]))
    return Diagnostics("nuts", rhat, bulk, tail, divergences, chains)


def _svi(
    spec: Spec, data: SubjectArrays, x: Any, hyper: Any, init: dict[str, Any], key: Any,
    steps: int, n_draws: int,
) -> tuple[dict[str, np.ndarray], bool]:  # fmt: skip
    """SVI with a multivariate-Normal guide (Kucukelbir A et al. JMLR 2017;18:1-45).

    Returns the guide's draws and whether the ELBO settled: the mean loss of the last tenth of
    the steps within one unit (nats) of the tenth before it.
    """
    import optax
    from numpyro.infer import SVI, Predictive, Trace_ELBO
    from numpyro.infer.autoguide import AutoMultivariateNormal

    guide = AutoMultivariateNormal(_population_model, init_loc_fn=_init_to(init))
    svi = SVI(_population_model, guide, optax.adam(0.01), Trace_ELBO())
    k_fit, k_draw = jax.random.split(key)
    result = svi.run(k_fit, steps, spec, data, x, hyper, progress_bar=False)
    params = result.params
    sites = ("mu", "omega", "corr_chol", "beta", "z_error", "eta")
    pred = Predictive(guide, params=params, num_samples=n_draws, return_sites=list(sites))
    samples = pred(k_draw, spec, data, x, hyper)
    losses = np.asarray(result.losses)
    tenth = max(len(losses) // 10, 1)
    settled = bool(
        np.all(np.isfinite(losses[-tenth:]))
        and abs(losses[-tenth:].mean() - losses[-2 * tenth : -tenth].mean()) < 1.0
    )
    return {k: np.asarray(samples[k]) for k in sites}, settled
