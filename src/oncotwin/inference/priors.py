"""Priors on the unconstrained parameter vector: the models' defaults, or learnt from a cohort."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models import TumourModel
from ..observe import ErrorModel


@dataclass(frozen=True)
class Prior:
    """Normal prior on the unconstrained parameters: independent, or correlated when `cov` is
    given (a population prior: e.g. Gompertz alpha and beta are strongly correlated across a
    cohort, and that correlation is much of what the cohort knows about a new patient).

    Attributes:
        names: parameter names (model parameters, then error parameters).
        loc, scale: mean and SD of each unconstrained parameter (log scale for positive ones;
            size parameters relative to the subject's reference size).
        source: where the prior comes from ("default", or "reference cohort <version>").
        cov: full covariance matrix (its diagonal is ``scale**2``); None means independent.
    """

    names: tuple[str, ...]
    loc: np.ndarray
    scale: np.ndarray
    source: str = "default"
    cov: np.ndarray | None = None

    @classmethod
    def from_mean_cov(cls, names: tuple[str, ...], loc: Any, cov: Any, source: str) -> Prior:
        """A correlated Normal prior from its mean and covariance matrix."""
        cov = np.asarray(cov, float)
        cov = 0.5 * (cov + cov.T)
        return cls(names, np.asarray(loc, float), np.sqrt(np.diag(cov)), source, cov)

    @property
    def chol(self) -> np.ndarray:
        """Lower Cholesky factor of the covariance."""
        if self.cov is None:
            return np.diag(np.asarray(self.scale, float))
        return np.linalg.cholesky(self.cov)

    @classmethod
    def default(cls, model: TumourModel, error: ErrorModel) -> Prior:
        """The priors declared by the model's and error model's :class:`ParamSpec`s."""
        specs = model.params + error.params
        loc = np.array(
            [float(p.unconstrain(p.prior_median)) for p in specs]
        )  # size params: relative
        return cls(tuple(p.name for p in specs), loc, np.array([p.prior_sd for p in specs]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (for provenance); :meth:`from_dict` reads it back."""
        out: dict[str, Any] = {
            "source": self.source,
            "unconstrained_normal": {
                n: [float(m), float(s)]
                for n, m, s in zip(self.names, self.loc, self.scale, strict=True)
            },
        }
        if self.cov is not None:
            corr = self.cov / np.outer(self.scale, self.scale)
            out["correlation"] = np.round(corr, 12).tolist()
        return out

    @classmethod
    def from_dict(cls, record: dict[str, Any], names: tuple[str, ...]) -> Prior:
        """The prior written by :meth:`to_dict`, in the order of `names`."""
        normal = record["unconstrained_normal"]
        loc = np.array([normal[n][0] for n in names], float)
        scale = np.array([normal[n][1] for n in names], float)
        if "correlation" not in record:
            return cls(names, loc, scale, record["source"])
        cov = np.asarray(record["correlation"], float) * np.outer(scale, scale)
        return cls(names, loc, scale, record["source"], cov)
