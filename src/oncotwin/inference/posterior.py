"""A calibrated posterior and the diagnostics that travel with it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConvergenceWarning
from .priors import Prior

RHAT_MAX = 1.01
ESS_MIN_PER_CHAIN = 100  # bulk and tail ESS >= 100 per chain (Vehtari et al. 2021)
KHAT_MAX = 0.7  # Pareto k of the Laplace importance weights (Yao et al. 2018)
ACCEPTANCE_MIN = 0.1  # SMC rejuvenation: fewer accepted moves leave resampled duplicates in place


@dataclass(frozen=True)
class Diagnostics:
    """Convergence diagnostics of a posterior.

    NUTS: R-hat (rank-normalised split), bulk and tail ESS, divergent transitions
    (Vehtari A et al. Bayesian Analysis 2021;16:667-718). Laplace: whether the optimiser
    converged and the Pareto k of importance weights p/q (Yao Y et al. ICML 2018).
    SMC (sequential update, :mod:`oncotwin.inference.assimilate`): the Pareto k of the
    incremental weights, their effective sample size as a fraction of the draws, and the
    acceptance rate of the Metropolis-Hastings rejuvenation moves.
    """

    method: str
    rhat_max: float = float("nan")
    ess_bulk_min: float = float("nan")
    ess_tail_min: float = float("nan")
    divergences: int = 0
    chains: int = 1
    optimizer_converged: bool = True
    pareto_k: float = float("nan")
    ess_fraction: float = float("nan")
    acceptance: float = float("nan")

    def problems(self) -> list[str]:
        """Plain-language list of what failed (empty when the posterior can be trusted)."""
        out = []
        if self.method == "nuts":
            if not self.rhat_max <= RHAT_MAX:
                out.append(f"chains disagree (R-hat {self.rhat_max:.3f} > {RHAT_MAX})")
            need = ESS_MIN_PER_CHAIN * self.chains
            if not self.ess_bulk_min >= need:
                out.append(f"too few effective draws (bulk ESS {self.ess_bulk_min:.0f} < {need})")
            if not self.ess_tail_min >= need:
                out.append(
                    f"interval tails poorly resolved (tail ESS {self.ess_tail_min:.0f} < {need})"
                )
            if self.divergences:
                out.append(
                    f"{self.divergences} divergent transitions: the sampler missed part of the posterior"
                )
        elif self.method == "smc":
            if not self.pareto_k <= KHAT_MAX:
                out.append(
                    f"the new data moved the posterior too far for reweighting (Pareto k {self.pareto_k:.2f} > {KHAT_MAX})"
                )
            if not self.acceptance >= ACCEPTANCE_MIN:
                out.append(
                    f"the rejuvenation moves were rarely accepted (acceptance {self.acceptance:.2f} < {ACCEPTANCE_MIN})"
                )
        elif self.method == "svi":
            if not self.optimizer_converged:
                out.append("the variational fit did not converge (the ELBO was still changing)")
        else:
            if not self.optimizer_converged:
                out.append("the optimiser did not converge to a mode")
            if not self.pareto_k <= KHAT_MAX:
                out.append(
                    f"the Gaussian (Laplace) approximation is poor (Pareto k {self.pareto_k:.2f} > {KHAT_MAX})"
                )
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()

    @classmethod
    def from_chains(cls, z: np.ndarray, divergences: int = 0) -> Diagnostics:
        """NUTS diagnostics of draws `z` (chains, draws, k): worst R-hat and ESS over the k."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import arviz as az
        z = np.asarray(z).reshape(z.shape[0], z.shape[1], -1)
        columns = range(z.shape[-1])
        return cls(
            "nuts",
            rhat_max=max(float(az.rhat(z[..., i])) for i in columns),
            ess_bulk_min=min(float(az.ess(z[..., i], method="bulk")) for i in columns),
            ess_tail_min=min(float(az.ess(z[..., i], method="tail")) for i in columns),
            divergences=divergences,
            chains=z.shape[0],
        )

    def to_dict(self) -> dict[str, Any]:
        d = {
            k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in self.__dict__.items()
        }
        d["ok"] = self.ok
        d["problems"] = self.problems()
        return d


@dataclass(frozen=True)
class Posterior:
    """Posterior draws of one subject's parameters under one model.

    Attributes:
        subject: subject id.
        model: model name; error_model: residual error model name.
        names: parameter names (model then error parameters).
        z: unconstrained draws, shape (chains, draws, n_params).
        params: constrained draws by name, each (chains, draws), in the data's units.
        log_lik: pointwise log-likelihood of each observation, (chains, draws, n_obs).
        t0, ref: the subject's reference time (days) and reference size.
        diagnostics, prior, method, seed, settings: how it was obtained.
    """

    subject: str
    model: str
    error_model: str
    names: tuple[str, ...]
    z: np.ndarray
    params: dict[str, np.ndarray]
    log_lik: np.ndarray
    t0: float
    ref: float
    diagnostics: Diagnostics
    prior: Prior
    method: str
    seed: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_draws(self) -> int:
        return int(self.z.shape[0] * self.z.shape[1])

    @property
    def converged(self) -> bool:
        return self.diagnostics.ok

    @property
    def warning(self) -> str | None:
        """The warning every forecast from this posterior repeats, or None."""
        problems = self.diagnostics.problems()
        if not problems:
            return None
        return f"calibration of {self.subject} ({self.model}) did not converge: " + "; ".join(
            problems
        )

    def warn(self) -> None:
        """Emit :class:`ConvergenceWarning` if the diagnostics failed."""
        if self.warning:
            warnings.warn(self.warning, ConvergenceWarning, stacklevel=3)

    def flat_z(self) -> np.ndarray:
        """Unconstrained draws with chains merged, (n_draws, n_params)."""
        return self.z.reshape(-1, self.z.shape[-1])

    def summary(self, level: float = 0.9) -> dict[str, dict[str, float]]:
        """Median and central credible interval of each parameter."""
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        out = {}
        for name, draws in self.params.items():
            d = np.asarray(draws).ravel()
            out[name] = {
                "median": float(np.median(d)),
                "lo": float(np.quantile(d, lo)),
                "hi": float(np.quantile(d, hi)),
            }
        return out
