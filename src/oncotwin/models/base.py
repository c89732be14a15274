"""What a tumour model is: a pure vector field, its parameters, and (where one exists) a closed form.

A model is declared once as a :class:`TumourModel`; calibration, forecasting and the CLI then
work unchanged. Conventions shared by every model:

- time runs from the subject's reference time ``t0`` (its first observation), in days;
- parameter ``v0`` is the observed quantity at ``t0`` (in the units of the data);
- ``exposure`` is the dimensionless treatment exposure at ``t`` (see :mod:`oncotwin.schedule`);
- parameters with ``scale="size"`` (``v0``, carrying capacities) are expressed relative to the
  subject's reference size, so that default priors work whatever the unit or scale of the data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..errors import ModelError

Params = Mapping[str, Any]  # parameter name -> value (float or JAX array)
VectorField = Callable[[Any, Any, Params, Any], Any]  # (t, y, params, exposure) -> dy/dt


@dataclass(frozen=True)
class ParamSpec:
    """One model parameter.

    Attributes:
        name: identifier used in code, files and reports.
        unit: physical unit ("1/day", "mm3", "1" for fractions; "size" means the data's unit).
        lower, upper: bounds of the parameter; the sampler works on an unconstrained value mapped
            into (lower, upper) by exp (upper infinite) or a scaled logistic (both finite).
        prior_median: median of the default prior (for ``scale="size"``: a multiple of the
            subject's reference size).
        prior_sd: standard deviation of the default prior on the unconstrained scale
            (on the log scale for positive parameters).
        description: one line for model cards and reports.
        citation: where the parameter and its typical values come from.
        scale: "size" for parameters proportional to the observed quantity, else None.
    """

    name: str
    unit: str
    lower: float
    upper: float
    prior_median: float
    prior_sd: float
    description: str
    citation: str = ""
    scale: str | None = None

    def __post_init__(self) -> None:
        if not self.lower < self.prior_median < self.upper:
            raise ModelError(f"{self.name}: prior median {self.prior_median} outside bounds")
        if self.lower != 0.0 and np.isinf(self.upper):
            raise ModelError(f"{self.name}: positive parameters must have lower bound 0")

    @property
    def logistic(self) -> bool:
        """True when both bounds are finite (scaled-logistic transform)."""
        return bool(np.isfinite(self.upper))

    def constrain(self, z: Any, ref: Any = 1.0) -> Any:
        """Map an unconstrained value to the parameter (times `ref` for size parameters)."""
        if self.logistic:
            value = self.lower + (self.upper - self.lower) / (1.0 + jnp.exp(-z))
        else:
            value = jnp.exp(z)
        return value * ref if self.scale == "size" else value

    def unconstrain(self, value: Any, ref: Any = 1.0) -> Any:
        """Inverse of :meth:`constrain`."""
        v = value / ref if self.scale == "size" else value
        if self.logistic:
            u = (v - self.lower) / (self.upper - self.lower)
            return jnp.log(u) - jnp.log1p(-u)
        return jnp.log(v)


@dataclass(frozen=True)
class TumourModel:
    """A mechanistic model of one observed quantity: tumour size, or a biomarker (PSA) or a
    toxicity marker (neutrophil count) driven by the tumour or the treatment.

    Attributes:
        name: registry key ("gompertz").
        title: human-readable name.
        params: parameter specifications (``v0`` first).
        vector_field: ``f(tau, y, params, exposure) -> dy/dt`` on the state vector ``y``, with
            ``tau`` the time since t0 (days).
        initial_state: ``params -> y(t0)``.
        observable: ``(y, params) -> observed quantity`` (e.g. total volume).
        closed_form: ``(tau, params, cum) -> observed quantity`` with ``tau = t - t0`` and
            ``cum`` a :class:`oncotwin.schedule.ScheduleIntegrals`: ``cum(decay)`` is the
            integrated exposure at each tau, ``cum.fractions`` the radiotherapy fractions;
            None when the model has none (the ODE path is then used).
        uses_exposure: whether the treatment exposure enters the vector field.
        citation: the paper that defines the model.
        description: the equations in words, for model cards.
        equation: the equation as plain text.
        fixed_step: solve the ODE by fixed-step RK4 on a static grid instead of adaptive Tsit5
            (see :mod:`oncotwin.simulate`): for ODE-only models that are calibrated, whose
            second derivatives through an adaptive solver compile too slowly.
        rk4_grid: (evenly spaced nodes, RK4 steps per interval) of the fixed-step path; the
            step is at most horizon / (nodes x steps), so choose it against the fastest rate.
        observes: what the observed quantity is, in words (for model cards and `oncotwin models`).
    """

    name: str
    title: str
    params: tuple[ParamSpec, ...]
    vector_field: VectorField
    initial_state: Callable[[Params], Any]
    observable: Callable[[Any, Params], Any]
    closed_form: Callable[[Any, Params, Any], Any] | None
    uses_exposure: bool
    citation: str
    description: str
    equation: str
    fixed_step: bool = False
    rk4_grid: tuple[int, int] = (32, 4)
    observes: str = "tumour size"

    @property
    def param_names(self) -> tuple[str, ...]:
        """Parameter names in declaration order."""
        return tuple(p.name for p in self.params)

    def spec(self, name: str) -> ParamSpec:
        """The :class:`ParamSpec` called `name`."""
        for p in self.params:
            if p.name == name:
                return p
        raise ModelError(f"model {self.name!r} has no parameter {name!r}; has {self.param_names}")

    def constrain(self, z: Any, ref: Any = 1.0) -> dict[str, Any]:
        """Unconstrained vector ``z[..., n_params]`` -> parameter dict."""
        return {p.name: p.constrain(z[..., i], ref) for i, p in enumerate(self.params)}

    def unconstrain(self, params: Params, ref: Any = 1.0) -> Any:
        """Parameter dict -> unconstrained vector ``z[..., n_params]``."""
        return jnp.stack([p.unconstrain(params[p.name], ref) for p in self.params], axis=-1)

    def validate(self, params: Params) -> None:
        """Raise :class:`ModelError` if names are wrong or values fall outside the bounds."""
        missing = set(self.param_names) - set(params)
        extra = set(params) - set(self.param_names)
        if missing or extra:
            raise ModelError(
                f"model {self.name!r} parameters: missing {sorted(missing)}, unknown {sorted(extra)}"
            )
        for p in self.params:
            v = np.asarray(params[p.name], dtype=float)
            if not np.all(np.isfinite(v)) or np.any(v <= p.lower) or np.any(v >= p.upper):
                raise ModelError(f"{self.name}.{p.name} = {v} is outside ({p.lower}, {p.upper})")

    def prior_medians(self, ref: float = 1.0) -> dict[str, float]:
        """Median of each parameter's default prior for a subject of reference size `ref`."""
        return {p.name: p.prior_median * (ref if p.scale == "size" else 1.0) for p in self.params}


def v0_spec() -> ParamSpec:
    """The size at the reference time, shared by every model."""
    return ParamSpec(
        name="v0",
        unit="size",
        lower=0.0,
        upper=np.inf,
        prior_median=1.0,
        prior_sd=1.0,
        description="observed quantity at the reference time t0 (first observation)",
        scale="size",
    )


def scalar_state(model_fn: Callable[[Any, Params, Any], Any]) -> VectorField:
    """Lift a scalar ``dv/dt = f(v, params, exposure)`` to the state-vector convention."""

    def vector_field(t: Any, y: Any, params: Params, exposure: Any) -> Any:
        return jnp.atleast_1d(model_fn(y[0], params, exposure))

    return vector_field


def first_state(y: Any, params: Params) -> Any:
    """Observable of one-state models: the state itself."""
    return y[..., 0]


def v0_state(params: Params) -> Any:
    """Initial state of one-state models."""
    return jnp.atleast_1d(params["v0"])
