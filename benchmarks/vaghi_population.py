"""Baseline: the population (mixed-effects) reduced Gompertz approach of Vaghi et al. 2020.

Vaghi C, Rodallec A, Fanciullino R, et al. Population modeling of tumor growth curves and the
reduced Gompertz model improve prediction of the age of experimental tumors. PLoS Comput Biol
16(2):e1007178 (2020), doi:10.1371/journal.pcbi.1007178. The authors' code, github.com/
cristinavaghi/plumky (commit 5b0a84fd684d4c11164c00d7efd29a850c7eaffa), is what we read:

- code/monolix_models/gompertz.txt: dV/dt = (alpha0 - beta * ln(V / Vc)) * V, V(tin) = V0.
- code/monolix_models/reduced_gompertz.txt: the same with alpha0 = q + k * beta; in
  code/model_definition.py q is fixed to 0, k is a population parameter without random effect
  (a "fixed effect"), and beta is the only individual (log-normal) parameter.
- code/import_data.py: tin = 0 (day of injection), V0 = Vc = 1 mm^3 for the volume data sets
  (lung, breast), V0 = Vc = 0.08 mm^3 x 1.519e7 (photons/s)/mm^3 for bioluminescence.
- code/main.py: proportional residual error. code/stan_model_definition.py and
  code/backward_prediction.py: individual predictions by Bayesian inference in Stan, with the
  Monolix population estimates (beta_pop, omega_beta, k) as the prior.

With alpha0 = k * beta the solution is ln V(t) = ln K + (ln V0 - ln K) * exp(-beta * (t - tin)),
K = Vc * exp(k): the strong alpha0-beta correlation amounts to a carrying capacity K shared by
the population, with a per-animal rate beta.

What this module does (simpler than Monolix SAEM + Stan NUTS, and said so in the output):
1. Population fit on the reference cohort: joint least squares of the log-observations over
   ln K (shared) and each subject's individual parameters; their mean and covariance across
   subjects are the population distribution (a two-stage estimate, whose spread includes
   estimation noise), and the pooled residual SD on the log scale is the residual error (an
   additive log-scale error, close to the proportional error for small errors).
2. Each test subject: MAP estimate of its individual parameters with the population
   distribution as prior (ln K held at the population value, as k is in the published
   model), then the Laplace (Gaussian) approximation of the posterior; 2000 draws from it plus
   the residual error give the predictive median and interval.

Individual parameters: [ln beta] when the data set gives the injection time and volume (the
Vaghi sets: time = days after injection; the published method used V0 = Vc at t = 0), else
[ln V1, ln beta], with V1 the value at the subject's first observation (for example FFCD
2000-05 colorectal, where this tumour-growth model is applied out of its original scope).
Censored observations (cens == 1) are left out of all fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize

# volume at injection (t = 0) in the data set's unit, as in plumky code/import_data.py
INJECTION = {
    "vaghi2020-lung": 1.0,  # mm^3
    "vaghi2020-breast": 1.0,  # mm^3
    "vaghi2020-breast-fluo": 0.08 * 1.519e7,  # photons/s
}
LOG_BETA_BOUNDS = (np.log(1e-5), np.log(10.0))  # per day


@dataclass(frozen=True)
class Population:
    log_k: float  # ln K, the carrying capacity shared by the population (alpha0 = k * beta)
    mean: np.ndarray  # mean of the individual parameters
    cov: np.ndarray  # their covariance
    sigma: float  # residual SD of ln(observation)
    injection: float | None  # volume at t = 0, when known


def log_curve(t: np.ndarray, log_k: float, log_v1: np.ndarray, log_beta: np.ndarray) -> np.ndarray:
    """Gompertz ln V(t), t from the anchor time at which V = V1."""
    return log_k + (log_v1 - log_k) * np.exp(-np.exp(log_beta) * t)


def _unpack(theta: np.ndarray, injection: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(ln V1, ln beta) from the individual parameters (last axis)."""
    if injection is None:
        return theta[..., 0], theta[..., 1]
    return np.full(theta.shape[:-1], np.log(injection)), theta[..., 0]


def _subjects(obs: pd.DataFrame, injection: float | None) -> dict[str, tuple]:
    """id -> (times from the anchor, ln dv) of the uncensored observations."""
    out = {}
    for ident, g in obs.sort_values("time").groupby("id", sort=False):
        anchor = 0.0 if injection is not None else g["time"].min()
        g = g[g["cens"] == 0]
        out[ident] = (g["time"].to_numpy() - anchor, np.log(g["dv"].to_numpy()), anchor)
    return out


def fit_population(reference: pd.DataFrame, injection: float | None) -> Population:
    """Joint least squares over ln K and each reference subject's parameters (see module doc)."""
    subjects = [s for s in _subjects(reference, injection).values() if len(s[0]) >= 2]
    n, n_ind = len(subjects), 1 if injection is not None else 2
    t = np.concatenate([s[0] for s in subjects])
    y = np.concatenate([s[1] for s in subjects])
    which = np.repeat(np.arange(n), [len(s[0]) for s in subjects])  # subject of each row
    span = np.median([s[0].max() - s[0].min() for s in subjects])
    start = [[s[1][0], np.log(2 / span)][-n_ind:] for s in subjects]
    x0 = np.concatenate([[y.max() + 1.0], np.ravel(start)])
    low = np.tile([-np.inf, LOG_BETA_BOUNDS[0]][-n_ind:], n)  # (ln V1,) ln beta per subject
    high = np.tile([np.inf, LOG_BETA_BOUNDS[1]][-n_ind:], n)
    sparsity = np.zeros((len(t), len(x0)), dtype=bool)  # row i depends on ln K and its subject
    sparsity[:, 0] = True
    for j in range(n_ind):
        sparsity[np.arange(len(t)), 1 + which * n_ind + j] = True

    def residuals(x: np.ndarray) -> np.ndarray:
        thetas = x[1:].reshape(n, n_ind)[which]
        return y - log_curve(t, x[0], *_unpack(thetas, injection))

    fit = optimize.least_squares(
        residuals, x0, bounds=(np.r_[-np.inf, low], np.r_[np.inf, high]), jac_sparsity=sparsity
    )
    thetas = fit.x[1:].reshape(n, n_ind)
    return Population(
        log_k=float(fit.x[0]),
        mean=thetas.mean(axis=0),
        cov=np.atleast_2d(np.cov(thetas, rowvar=False)),
        sigma=float(np.sqrt(np.sum(fit.fun**2) / (len(t) - len(x0)))),
        injection=injection,
    )


def fit_individual(t: np.ndarray, y: np.ndarray, pop: Population) -> tuple[np.ndarray, np.ndarray]:
    """MAP individual parameters under the population prior, and the Laplace covariance."""
    chol = np.linalg.cholesky(pop.cov)

    def residuals(theta: np.ndarray) -> np.ndarray:
        fit = (y - log_curve(t, pop.log_k, *_unpack(theta, pop.injection))) / pop.sigma
        return np.concatenate([fit, np.linalg.solve(chol, theta - pop.mean)])

    res = optimize.least_squares(residuals, pop.mean)
    return res.x, np.linalg.inv(res.jac.T @ res.jac)  # Gauss-Newton Hessian of -log posterior


def forecast(history: pd.DataFrame, targets: pd.DataFrame, reference: pd.DataFrame,
             injection: float | None, level: float = 0.9, draws: int = 2000) -> pd.DataFrame:  # fmt: skip
    """Predictive median and central interval (id, time, median, lo, hi) at the targets.

    history, reference: observation rows (id, time, dv, cens); targets: id, time.
    """
    rng = np.random.default_rng(0)
    pop = fit_population(reference, injection)
    subjects = _subjects(history, injection)
    rows = []
    for ident, tg in targets.groupby("id", sort=False):
        t, y, anchor = subjects[ident]
        theta, cov = fit_individual(t, y, pop)
        sample = rng.multivariate_normal(theta, cov, size=draws)
        xt = tg["time"].to_numpy() - anchor
        log_v = log_curve(xt[None, :], pop.log_k, *(p[:, None] for p in _unpack(sample, injection)))
        log_v += rng.normal(0.0, pop.sigma, size=log_v.shape)
        lo, med, hi = np.percentile(log_v, [50 - 50 * level, 50, 50 + 50 * level], axis=0)
        rows.append(pd.DataFrame({"id": ident, "time": tg["time"].to_numpy(),
                                  "median": np.exp(med), "lo": np.exp(lo), "hi": np.exp(hi)}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)
