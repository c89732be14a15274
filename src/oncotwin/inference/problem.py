"""The statistical model of one subject, written once.

Parameters live on an unconstrained vector ``z`` (model parameters, then error parameters; size
parameters relative to the subject's reference size). The prior is Normal on ``z``. The same
functions give the log-posterior (MAP, Laplace), the NumPyro model (NUTS), pointwise
log-likelihoods (PSIS-LOO) and predictions (forecasts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .._jax import jax, jnp
from ..errors import DataError
from ..models import TumourModel
from ..observe import ErrorModel
from ..schedule import ExposureArrays, Schedule
from ..simulate import DEFAULT_SOLVER, SolverSettings, trajectory, uses_closed_form
from .priors import Prior


@dataclass(frozen=True)
class Spec:
    """The static part of a subject's statistical model (hashable: one compilation per Spec)."""

    model: TumourModel
    error: ErrorModel
    closed_form: bool
    solver: SolverSettings = DEFAULT_SOLVER
    # False when no observation is censored: the likelihood then skips the normal CDF, which
    # costs as much as the rest of it (and its gradient) for closed-form models.
    censoring: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        return self.model.param_names + self.error.param_names

    @property
    def n_model(self) -> int:
        return len(self.model.params)

    def constrain(self, z: Any, ref: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Unconstrained ``z[..., n]`` -> (model parameters, error parameters)."""
        n = self.n_model
        theta = self.model.constrain(z[..., :n], ref)
        err = {p.name: p.constrain(z[..., n + i], ref) for i, p in enumerate(self.error.params)}
        return theta, err


class SubjectArrays(NamedTuple):
    """One subject's data and prior as fixed-shape arrays (padded; `mask` marks real rows)."""

    tau: Any  # observation times since t0, days
    y: Any  # observed values (detection limit where censored)
    censored: Any
    mask: Any
    t0: Any  # reference time, days
    ref: Any  # reference size (first uncensored observation), units of the data
    exposure: ExposureArrays
    prior_loc: Any
    prior_chol: Any  # lower Cholesky factor of the prior covariance


def bucket(n: int, smallest: int = 16) -> int:
    """Padded length for `n` rows: the next power of two, so few shapes are compiled. At least
    16: a typical cohort (a few to 16 visits per subject) then compiles one shape, not two; on
    CPU the padded rows cost little next to a second compilation."""
    return max(smallest, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


@dataclass(frozen=True)
class SubjectData:
    """A subject's observations and schedule, prepared for inference (NumPy, unpadded)."""

    id: str
    times: np.ndarray
    y: np.ndarray
    censored: np.ndarray
    schedule: Schedule
    kind: str
    unit: str

    @property
    def t0(self) -> float:
        return float(self.times[0])

    @property
    def ref(self) -> float:
        uncensored = self.y[~self.censored]
        return float(uncensored[0] if uncensored.size else self.y[0])

    @property
    def last_time(self) -> float:
        return float(self.times[-1])

    @classmethod
    def from_events(
        cls, subject_id: str, events: pd.DataFrame, kind: str | None = None
    ) -> SubjectData:
        """From one subject's rows of the canonical event table.

        Args:
            subject_id: the subject.
            events: that subject's rows (observations and treatments).
            kind: which observed quantity to model; default the only (or most frequent) one.

        Raises:
            DataError: the subject has no usable observation of that kind.
        """
        obs = events[(events["evid"] == 0) & (events["mdv"] == 0)]
        if kind is None and len(obs):
            kind = str(obs["kind"].mode().iloc[0])
        obs = obs[obs["kind"] == kind].sort_values("time")
        if obs.empty:
            raise DataError(f"subject {subject_id!r} has no usable observation of kind {kind!r}")
        treat = events[events["evid"].isin([1, 2])]
        return cls(
            id=str(subject_id),
            times=obs["time"].to_numpy(float),
            y=obs["dv"].to_numpy(float),
            censored=obs["cens"].to_numpy(int).astype(bool),
            schedule=Schedule.from_events(treat),
            kind=str(kind),
            unit=str(obs["unit"].iloc[0]),
        )

    def arrays(
        self,
        prior: Prior,
        reference: dict[str, float] | None = None,
        n_obs: int | None = None,
        n_doses: int | None = None,
        n_switches: int | None = None,
    ) -> SubjectArrays:
        """Padded arrays for the jitted likelihood, with `prior` as its mean and Cholesky factor."""
        n = len(self.times)
        size = max(n_obs or 0, bucket(n))
        pad = size - n
        tau = np.concatenate([self.times - self.t0, np.full(pad, self.times[-1] - self.t0)])
        y = np.concatenate([self.y, np.full(pad, self.y[-1])])
        cens = np.concatenate([self.censored, np.zeros(pad, bool)])
        mask = np.concatenate([np.ones(n, bool), np.zeros(pad, bool)])
        exposure = self.schedule.arrays(
            reference,
            n_doses=n_doses or bucket(len(self.schedule.doses), 1),
            n_switches=n_switches or bucket(len(self.schedule.switches), 1),
        )
        return SubjectArrays(
            tau, y, cens, mask, self.t0, self.ref, exposure, np.asarray(prior.loc, float), prior.chol,
        )  # fmt: skip


def predict(spec: Spec, z: Any, data: SubjectArrays, tau: Any) -> Any:
    """Model values at `tau` (days since t0) for one unconstrained parameter vector."""
    theta, _ = spec.constrain(z, data.ref)
    values, ok = trajectory(
        spec.model,
        theta,
        tau,
        data.t0,
        data.exposure,
        closed_form=spec.closed_form,
        solver=spec.solver,
    )
    return jnp.where(ok, values, jnp.nan)


def measure(spec: Spec, z: Any, ref: Any, latent: Any, key: Any) -> Any:
    """Simulated measurements of model values `latent` (n_draws, n_times) for draws `z`."""
    _, err = spec.constrain(z, ref)
    return spec.error.sample(key, latent, {k: v[:, None] for k, v in err.items()})


def pointwise_loglik(spec: Spec, z: Any, data: SubjectArrays) -> Any:
    """Log-likelihood of each (padded) observation; padding contributes 0, failures -inf."""
    _, err = spec.constrain(z, data.ref)
    f = predict(spec, z, data, data.tau)
    ll = spec.error.log_likelihood(data.y, f, err, data.censored if spec.censoring else None)
    ll = jnp.where(jnp.isfinite(ll), ll, -jnp.inf)
    return jnp.where(data.mask, ll, 0.0)


def log_prior(z: Any, data: SubjectArrays) -> Any:
    """(Multivariate) Normal prior on the unconstrained vector."""
    chol = data.prior_chol
    r = jax.scipy.linalg.solve_triangular(chol, z - data.prior_loc, lower=True)
    log_det = jnp.sum(jnp.log(jnp.diagonal(chol)))
    return -0.5 * jnp.sum(r**2) - log_det - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def log_posterior(spec: Spec, z: Any, data: SubjectArrays) -> Any:
    """Unnormalised log-posterior density of `z`."""
    return log_prior(z, data) + jnp.sum(pointwise_loglik(spec, z, data))


def numpyro_model(spec: Spec, data: SubjectArrays) -> None:
    """The subject's model for NumPyro (prior on `z`, likelihood as a factor)."""
    import numpyro
    import numpyro.distributions as dist

    z = numpyro.sample("z", dist.MultivariateNormal(data.prior_loc, scale_tril=data.prior_chol))
    numpyro.factor("loglik", jnp.sum(pointwise_loglik(spec, z, data)))


def make_spec(
    model: TumourModel,
    error: ErrorModel,
    schedule: Schedule,
    solver: SolverSettings = DEFAULT_SOLVER,
    censoring: bool = True,
) -> Spec:
    """The :class:`Spec` for a model and a subject's schedule (closed form when exact);
    `censoring` False only when no observation it will see is censored."""
    return Spec(model, error, uses_closed_form(model, schedule), solver, censoring)
