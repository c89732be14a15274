"""Tumour-size models under treatment.

Claret and sensitive/resistant models are linear in the tumour state, so they have closed forms
in the integrated exposure (:func:`oncotwin.schedule.integrated_exposure`), verified against
the ODE path in the tests.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from . import immune
from .base import Params, ParamSpec, TumourModel, first_state, v0_spec, v0_state

STEIN = "Stein WD et al. Other paradigms: growth rate constants and tumor burden determined using computed tomography data correlate strongly with the overall survival of patients with renal cell carcinoma. Oncologist 2008;13:1055-1062; Wilkerson J et al. Lancet Oncol 2017;18:143-154"  # noqa: E501
CLARET = "Claret L et al. Model-based prediction of phase III overall survival in colorectal cancer on the basis of phase II tumor dynamics. J Clin Oncol 2009;27:4103-4108"  # noqa: E501
TWO_POP = "Norton L, Simon R. Cancer Treat Rep 1977;61:1307-1317; Goldie JH, Coldman AJ. Cancer Treat Rep 1979;63:1727-1733"  # noqa: E501
INF = np.inf


def _stein_field(t: Any, y: Any, p: Params, exposure: Any) -> Any:
    return jnp.stack([-p["d"] * y[0], p["g"] * y[1]])


stein = TumourModel(
    name="stein",
    title="Stein bi-exponential (growth g, regression d)",
    params=(
        v0_spec(),
        ParamSpec("g", "1/day", 0.0, INF, 0.005, 1.5, "growth rate of the resistant part", STEIN),
        ParamSpec(
            "d", "1/day", 0.0, INF, 0.01, 1.5, "regression rate of the sensitive part", STEIN
        ),
        ParamSpec("phi", "1", 0.0, 1.0, 0.5, 1.5, "fraction of the tumour that regresses", STEIN),
    ),
    vector_field=_stein_field,
    initial_state=lambda p: jnp.stack([p["phi"] * p["v0"], (1.0 - p["phi"]) * p["v0"]]),
    observable=lambda y, p: y[..., 0] + y[..., 1],
    closed_form=lambda tau, p, cum: (
        p["v0"] * (p["phi"] * jnp.exp(-p["d"] * tau) + (1.0 - p["phi"]) * jnp.exp(p["g"] * tau))
    ),
    uses_exposure=False,
    citation=STEIN,
    description=(
        "Tumour size from treatment start (t0) as the sum of a fraction phi that regresses at "
        "rate d and a fraction 1 - phi that grows at rate g."
    ),
    equation="V = V0 (phi exp(-d t) + (1 - phi) exp(g t))",
)


def _claret_field(t: Any, y: Any, p: Params, exposure: Any) -> Any:
    return jnp.atleast_1d((p["kg"] - p["kd"] * jnp.exp(-p["lam"] * t) * exposure) * y[0])


claret = TumourModel(
    name="claret",
    title="Claret tumour growth inhibition",
    params=(
        v0_spec(),
        ParamSpec("kg", "1/day", 0.0, INF, 0.01, 1.5, "tumour growth rate", CLARET),
        ParamSpec("kd", "1/day", 0.0, INF, 0.02, 1.5, "drug kill rate per unit exposure", CLARET),
        ParamSpec(
            "lam", "1/day", 0.0, INF, 0.01, 1.5, "resistance: decay rate of the kill", CLARET
        ),
    ),
    vector_field=_claret_field,
    initial_state=v0_state,
    observable=first_state,
    closed_form=lambda tau, p, cum: p["v0"] * jnp.exp(p["kg"] * tau - p["kd"] * cum(p["lam"])),
    uses_exposure=True,
    citation=CLARET,
    description=(
        "Exponential growth minus a kill proportional to drug exposure whose potency decays "
        "with time since t0 (resistance)."
    ),
    equation="dV/dt = kg V - kd exp(-lam t) E(t) V",
)


def _two_population_field(t: Any, y: Any, p: Params, exposure: Any) -> Any:
    sensitive, resistant = y[0], y[1]
    return jnp.stack([(p["g"] - p["k"] * exposure) * sensitive, p["g"] * resistant])


two_population = TumourModel(
    name="two_population",
    title="Sensitive/resistant populations",
    params=(
        v0_spec(),
        ParamSpec("g", "1/day", 0.0, INF, 0.02, 1.5, "growth rate of both populations", TWO_POP),
        ParamSpec(
            "k", "1/day", 0.0, INF, 0.05, 1.5, "kill rate of sensitive cells per exposure", TWO_POP
        ),  # noqa: E501
        ParamSpec("fr", "1", 0.0, 1.0, 0.1, 1.5, "resistant fraction at t0", TWO_POP),
    ),
    vector_field=_two_population_field,
    initial_state=lambda p: jnp.stack([(1.0 - p["fr"]) * p["v0"], p["fr"] * p["v0"]]),
    observable=lambda y, p: y[..., 0] + y[..., 1],
    closed_form=lambda tau, p, cum: (
        p["v0"] * jnp.exp(p["g"] * tau) * ((1.0 - p["fr"]) * jnp.exp(-p["k"] * cum(0.0)) + p["fr"])
    ),
    uses_exposure=True,
    citation=TWO_POP,
    description=(
        "A drug-sensitive population killed in proportion to exposure and a resistant one, both "
        "growing at rate g; regrowth under treatment comes from the resistant cells."
    ),
    equation="dS/dt = (g - k E(t)) S;  dR/dt = g R;  V = S + R",
)

CHECKPOINT = "Simeoni M et al. Cancer Res 2004;64:1094-1101 (dying compartment); Lobo ED, Balthasar JP. AAPS PharmSci 2002;4:E42 (delay); Chatterjee MS et al. CPT Pharmacometrics Syst Pharmacol 2017;6:29-39 (responsive fraction); combined in oncotwin.models.immune"  # noqa: E501


def _checkpoint_params(p: Params) -> immune.ResponseParams:
    return immune.ResponseParams(p["v0"], p["kg"], p["kd"], p["tau"], p["kc"], p["fr"])


def _checkpoint_field(t: Any, y: Any, p: Params, exposure: Any) -> Any:
    kill = jnp.where(t >= p["tau"], p["kd"], 0.0)
    return jnp.stack([p["kg"] * y[0], (p["kg"] - kill) * y[1], kill * y[1] - p["kc"] * y[2]])


checkpoint_response = TumourModel(
    name="checkpoint_response",
    title="Checkpoint-inhibitor response with activation delay (pseudoprogression)",
    params=(
        v0_spec(),
        ParamSpec("kg", "1/day", 0.0, INF, 0.005, 1.5, "tumour growth rate", CHECKPOINT),
        ParamSpec("kd", "1/day", 0.0, INF, 0.01, 1.5, "immune kill rate once active", CHECKPOINT),
        ParamSpec(
            "tau", "day", 0.0, INF, 30.0, 0.7, "activation delay from treatment start", CHECKPOINT
        ),
        ParamSpec("kc", "1/day", 0.0, INF, 0.05, 1.0, "clearance rate of dying tumour", CHECKPOINT),
        ParamSpec(
            "fr", "1", 0.0, 1.0, 0.3, 1.5, "non-responsive fraction at treatment start", CHECKPOINT
        ),
    ),
    vector_field=_checkpoint_field,
    initial_state=lambda p: jnp.stack(
        [p["fr"] * p["v0"], (1.0 - p["fr"]) * p["v0"], 0.0 * p["v0"]]
    ),
    observable=lambda y, p: y[..., 0] + y[..., 1] + y[..., 2],
    closed_form=lambda tau, p, cum: immune.sld(tau, _checkpoint_params(p)),
    uses_exposure=False,
    citation=CHECKPOINT,
    description=(
        "Tumour size from treatment start (t0) under an immune checkpoint inhibitor: all tumour "
        "grows at kg; after an activation delay tau, immune killing at kd moves the responsive "
        "part into a dying compartment that still counts in the measured size until cleared at "
        "kc. Size can rise first and fall later (pseudoprogression)."
    ),
    equation=(
        "R = fr V0 exp(kg t); S = (1 - fr) V0 exp(kg t - kd (t - tau)+); "
        "dD/dt = kd S 1[t > tau] - kc D; V = R + S + D"
    ),
)

TREATMENT_MODELS = (stein, claret, two_population, checkpoint_response)
