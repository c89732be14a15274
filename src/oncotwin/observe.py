"""Observation (residual error) models: how a measurement scatters around the model's value.

- ``proportional``: log-normal, ``log y ~ Normal(log f, sigma)`` — constant coefficient of
  variation, the usual choice for tumour sizes and biomarkers.
- ``combined``: ``y ~ Normal(f, sqrt(sigma_add^2 + sigma^2 f^2))`` — additive + proportional,
  for data near zero (small lesions, low PSA). Simulated measurements are never negative: the
  Normal's tail below 0 is recorded as 0, so no forecast interval reaches below 0.

Both handle left-censoring: a value below the detection limit ``lloq`` contributes
``P(y < lloq)`` (Beal SL, J Pharmacokinet Pharmacodyn 2001;28:481-504, method M3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._jax import jax, jnp
from .errors import ModelError
from .models.base import ParamSpec

_TINY = 1e-300


@dataclass(frozen=True)
class ErrorModel:
    """A residual error model; its parameters are calibrated with the model's."""

    name: str
    params: tuple[ParamSpec, ...]
    description: str

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def log_likelihood(self, y: Any, f: Any, theta: dict[str, Any], censored: Any) -> Any:
        """Log-likelihood of each observation.

        Args:
            y: observed values (the detection limit where `censored`).
            f: model predictions at the same times (same units).
            theta: error parameters by name.
            censored: boolean array, True for values below the detection limit; None when no
                value is censored.
        """
        if self.name == "proportional":
            sd = theta["sigma"]
            logf = jnp.log(jnp.maximum(f, _TINY))
            logy = jnp.log(jnp.maximum(y, _TINY))
            z = (logy - logf) / sd
            point = jax.scipy.stats.norm.logpdf(z) - jnp.log(sd) - logy
        else:
            sd = jnp.sqrt(theta["sigma_add"] ** 2 + (theta["sigma"] * f) ** 2)
            z = (y - f) / sd
            point = jax.scipy.stats.norm.logpdf(z) - jnp.log(sd)
        if censored is None:
            return point
        return jnp.where(censored, jax.scipy.stats.norm.logcdf(z), point)

    def sample(self, key: Any, f: Any, theta: dict[str, Any]) -> Any:
        """Simulated measurements around predictions `f` (same shape as `f`)."""
        eps = jax.random.normal(key, jnp.shape(f))
        if self.name == "proportional":
            return f * jnp.exp(theta["sigma"] * eps)
        sd = jnp.sqrt(theta["sigma_add"] ** 2 + (theta["sigma"] * f) ** 2)
        # a size is never measured below 0: the Normal's negative tail is recorded as 0
        return jnp.maximum(f + sd * eps, 0.0)


_SIGMA = ParamSpec(
    "sigma",
    "1",
    0.0,
    np.inf,
    0.15,
    0.75,
    "proportional residual error (coefficient of variation / log-scale SD)",
    "Typical caliper and RECIST measurement CV of 10-20%",
)

ERROR_MODELS: dict[str, ErrorModel] = {
    "proportional": ErrorModel("proportional", (_SIGMA,), "log-normal, constant CV"),
    "combined": ErrorModel(
        "combined",
        (
            _SIGMA,
            ParamSpec(
                "sigma_add",
                "size",
                0.0,
                np.inf,
                0.05,
                1.0,
                "additive residual error (SD, units of the data)",
                scale="size",
            ),
        ),
        "additive + proportional",
    ),
}


def get_error_model(name: str | ErrorModel) -> ErrorModel:
    """The error model called `name`.

    Raises:
        ModelError: unknown name.
    """
    if isinstance(name, ErrorModel):
        return name
    try:
        return ERROR_MODELS[name]
    except KeyError:
        raise ModelError(
            f"unknown error model {name!r}; available: {', '.join(ERROR_MODELS)}"
        ) from None
