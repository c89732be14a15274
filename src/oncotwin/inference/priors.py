"""Priors on the unconstrained parameter vector: the models' defaults, or learnt from a cohort."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models import TumourModel
from ..observe import ErrorModel


@dataclass(frozen=True)
class Prior:
    """Independent Normal priors on the unconstrained parameters.

    Attributes:
        names: parameter names (model parameters, then error parameters).
        loc, scale: mean and SD of each unconstrained parameter (log scale for positive ones;
            size parameters relative to the subject's reference size).
        source: where the prior comes from ("default", or "reference cohort <version>").
    """

    names: tuple[str, ...]
    loc: np.ndarray
    scale: np.ndarray
    source: str = "default"

    @classmethod
    def default(cls, model: TumourModel, error: ErrorModel) -> Prior:
        """The priors declared by the model's and error model's :class:`ParamSpec`s."""
        specs = model.params + error.params
        loc = np.array(
            [float(p.unconstrain(p.prior_median)) for p in specs]
        )  # size params: relative
        return cls(tuple(p.name for p in specs), loc, np.array([p.prior_sd for p in specs]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (for provenance)."""
        return {
            "source": self.source,
            "unconstrained_normal": {
                n: [float(m), float(s)]
                for n, m, s in zip(self.names, self.loc, self.scale, strict=True)
            },
        }
