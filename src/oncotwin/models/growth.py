"""Untreated tumour growth models (Benzekry et al. 2014, PLoS Comput Biol 10:e1003800).

Every model here has a closed form; the vector field is kept for the ODE path (verification,
and composition with treatment effects).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from .base import Params, ParamSpec, TumourModel, first_state, scalar_state, v0_spec, v0_state

BENZEKRY = "Benzekry S et al. Classical mathematical models for description and prediction of experimental tumor growth. PLoS Comput Biol 2014;10(8):e1003800"  # noqa: E501
VAGHI = "Vaghi C et al. Population modeling of tumor growth curves and the reduced Gompertz model improve prediction of the age of experimental tumors. PLoS Comput Biol 2020;16(2):e1007178"  # noqa: E501

INF = np.inf


def _rate(name: str, median: float, sd: float, description: str, cite: str = BENZEKRY) -> ParamSpec:
    return ParamSpec(name, "1/day", 0.0, INF, median, sd, description, cite)


def _exponent(description: str) -> ParamSpec:
    return ParamSpec("gamma", "1", 0.0, 1.0, 2.0 / 3.0, 1.0, description, BENZEKRY)


def _carrying_capacity(median: float, sd: float, cite: str) -> ParamSpec:
    return ParamSpec(
        "k", "size", 0.0, INF, median, sd, "carrying capacity (maximal size)", cite, "size"
    )


exponential = TumourModel(
    name="exponential",
    title="Exponential",
    params=(v0_spec(), _rate("a", 0.1, 1.0, "specific growth rate")),
    vector_field=scalar_state(lambda v, p, e: p["a"] * v),
    initial_state=v0_state,
    observable=first_state,
    closed_form=lambda tau, p, cum: p["v0"] * jnp.exp(p["a"] * tau),
    uses_exposure=False,
    citation=BENZEKRY,
    description="Unlimited growth at a constant specific rate.",
    equation="dV/dt = a V",
)


def _logistic(tau: Any, p: Params, cum: Any = None) -> Any:
    v0, k = p["v0"], p["k"]
    return k * v0 / (v0 + (k - v0) * jnp.exp(-p["a"] * tau))


logistic = TumourModel(
    name="logistic",
    title="Logistic",
    params=(
        v0_spec(),
        _rate("a", 0.2, 1.0, "specific growth rate at small size"),
        _carrying_capacity(10.0, 1.5, BENZEKRY),
    ),
    vector_field=scalar_state(lambda v, p, e: p["a"] * v * (1.0 - v / p["k"])),
    initial_state=v0_state,
    observable=first_state,
    closed_form=_logistic,
    uses_exposure=False,
    citation=BENZEKRY,
    description="Growth slowing linearly with size towards a carrying capacity K.",
    equation="dV/dt = a V (1 - V/K)",
)

gompertz = TumourModel(
    name="gompertz",
    title="Gompertz",
    params=(
        v0_spec(),
        _rate("alpha", 0.2, 1.0, "specific growth rate at t0"),
        _rate("beta", 0.05, 1.5, "exponential decay rate of the specific growth rate"),
    ),
    vector_field=scalar_state(lambda v, p, e: (p["alpha"] - p["beta"] * jnp.log(v / p["v0"])) * v),
    initial_state=v0_state,
    observable=first_state,
    closed_form=lambda tau, p, cum: (
        p["v0"] * jnp.exp(p["alpha"] / p["beta"] * (1.0 - jnp.exp(-p["beta"] * tau)))
    ),
    uses_exposure=False,
    citation=BENZEKRY,
    description="Specific growth rate decaying exponentially in time; plateau V0 exp(alpha/beta).",
    equation="dV/dt = (alpha - beta ln(V/V0)) V",
)

reduced_gompertz = TumourModel(
    name="reduced_gompertz",
    title="Reduced Gompertz",
    params=(
        v0_spec(),
        _rate("beta", 0.05, 1.5, "rate of approach to the carrying capacity", VAGHI),
        _carrying_capacity(20.0, 0.5, VAGHI),
    ),
    vector_field=scalar_state(lambda v, p, e: p["beta"] * jnp.log(p["k"] / v) * v),
    initial_state=v0_state,
    observable=first_state,
    closed_form=lambda tau, p, cum: (
        p["k"] * jnp.exp(jnp.log(p["v0"] / p["k"]) * jnp.exp(-p["beta"] * tau))
    ),
    uses_exposure=False,
    citation=VAGHI,
    description=(
        "Gompertz growth in which the carrying capacity K is shared by the population (the "
        "alpha-beta correlation of Vaghi et al. 2020), leaving beta as the one individual growth "
        "parameter; K gets a tight prior, which a population fit or reference cohort replaces."
    ),
    equation="dV/dt = beta ln(K/V) V",
)


def _bertalanffy(tau: Any, p: Params, cum: Any = None) -> Any:
    one_minus = 1.0 - p["gamma"]
    ratio = p["a"] / p["b"]
    return p["v0"] * (ratio + (1.0 - ratio) * jnp.exp(-one_minus * p["b"] * tau)) ** (1 / one_minus)


bertalanffy = TumourModel(
    name="bertalanffy",
    title="von Bertalanffy (general)",
    params=(
        v0_spec(),
        _rate("a", 0.3, 1.0, "growth coefficient (specific growth rate a - b at V = V0)"),
        _rate("b", 0.05, 1.5, "loss (death) rate"),
        _exponent("allometric exponent of growth (2/3: surface-limited)"),
    ),
    vector_field=scalar_state(
        lambda v, p, e: p["a"] * p["v0"] ** (1 - p["gamma"]) * v ** p["gamma"] - p["b"] * v
    ),
    initial_state=v0_state,
    observable=first_state,
    closed_form=_bertalanffy,
    uses_exposure=False,
    citation=BENZEKRY,
    description="Growth proportional to V^gamma minus loss proportional to V.",
    equation="dV/dt = a V0^(1-gamma) V^gamma - b V",
)

power_law = TumourModel(
    name="power_law",
    title="Power law",
    params=(
        v0_spec(),
        _rate("a", 0.2, 1.0, "specific growth rate at V = V0"),
        _exponent("growth exponent (fractal dimension of the proliferative rim / 3)"),
    ),
    vector_field=scalar_state(
        lambda v, p, e: p["a"] * p["v0"] ** (1 - p["gamma"]) * v ** p["gamma"]
    ),
    initial_state=v0_state,
    observable=first_state,
    closed_form=lambda tau, p, cum: (
        p["v0"] * (1.0 + (1.0 - p["gamma"]) * p["a"] * tau) ** (1.0 / (1.0 - p["gamma"]))
    ),
    uses_exposure=False,
    citation=BENZEKRY,
    description="Sub-exponential growth at a rate proportional to V^gamma.",
    equation="dV/dt = a V0^(1-gamma) V^gamma",
)


def _exponential_linear(tau: Any, p: Params, cum: Any = None) -> Any:
    a0, a1, v0 = p["a0"], p["a1"], p["v0"]
    v_switch = a1 / a0  # size at which the exponential phase turns linear
    tau_switch = jnp.log(jnp.maximum(v_switch / v0, 1.0)) / a0
    exp_phase = v0 * jnp.exp(a0 * jnp.minimum(tau, tau_switch))
    return exp_phase + a1 * jnp.maximum(tau - tau_switch, 0.0)


exponential_linear = TumourModel(
    name="exponential_linear",
    title="Exponential-linear",
    params=(
        v0_spec(),
        _rate("a0", 0.2, 1.0, "specific growth rate of the exponential phase"),
        ParamSpec(
            "a1",
            "size/day",
            0.0,
            INF,
            0.3,
            1.5,
            "growth rate of the linear phase",
            BENZEKRY,
            "size",
        ),
    ),  # fmt: skip
    vector_field=scalar_state(lambda v, p, e: jnp.minimum(p["a0"] * v, p["a1"])),
    initial_state=v0_state,
    observable=first_state,
    closed_form=_exponential_linear,
    uses_exposure=False,
    citation="Simeoni M et al. Cancer Res 2004;64:1094-1101; " + BENZEKRY,
    description="Exponential growth that turns linear once the growth rate a0 V reaches a1.",
    equation="dV/dt = min(a0 V, a1)",
)

GROWTH_MODELS = (
    exponential,
    logistic,
    gompertz,
    reduced_gompertz,
    bertalanffy,
    power_law,
    exponential_linear,
)
