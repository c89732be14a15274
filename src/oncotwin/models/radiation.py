"""Tumour size under fractionated radiotherapy: LQ kill per fraction, regrowth, and clearance of
lethally damaged cells.

A fraction of ``d`` Gy leaves the surviving fraction ``s = exp(-(alpha d + beta d^2))`` of the
viable (clonogenic) cells (linear-quadratic model: Fowler JF. Br J Radiol 1989;62:679-694) with
``beta = alpha / ALPHA_BETA``. Viable cells grow exponentially at rate ``lam`` between fractions
(repopulation). Cells killed by a fraction do not vanish at once: they stay in the measured
volume until cleared at rate ``kc`` (the damaged-cell compartment of Simeoni M et al. Cancer Res
2004;64:1094-1101, here one compartment), which is why tumours shrink over weeks after a course
rather than at each fraction. With fractions ``d_i`` at times ``t_i >= 0`` since t0::

    viable V(t) = v0 exp(lam t) prod_{t_i <= t} s_i
    damaged D(t) = sum_{t_i <= t} V(t_i^-) (1 - s_i) exp(-kc (t - t_i))
    size = V + D

a closed form, so calibration and forecasts are exact, fast and twice differentiable. Only
doses given in Gy act (``cum.fractions``; other agents are ignored); fractions before t0 are
history already contained in ``v0``. One fraction per time: fractions given at the same instant
should be entered as one dose.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from .base import Params, ParamSpec, TumourModel, v0_spec

ALPHA_BETA = 10.0  # Gy: the conventional value for tumours (and early-responding tissues)
FOWLER_1989 = (
    "Fowler JF. The linear-quadratic formula and progress in fractionated radiotherapy. "
    "Br J Radiol 1989;62:679-694"
)
SIMEONI_2004 = (
    "Simeoni M et al. Predictive pharmacokinetic-pharmacodynamic modeling of tumor growth "
    "kinetics in xenograft models after administration of anticancer agents. Cancer Res "
    "2004;64:1094-1101"
)


def _size(tau: Any, p: Params, cum: Any) -> Any:
    t_frac, gy = cum.fractions  # (n,)
    log_s = -p["alpha"] * (gy + gy**2 / ALPHA_BETA)
    given = (t_frac >= 0.0) & (gy > 0.0)
    log_s = jnp.where(given, log_s, 0.0)
    # log viable fraction just before each fraction: the fractions strictly before it
    before = (t_frac[None, :] < t_frac[:, None]) & given[None, :]
    log_before = jnp.sum(jnp.where(before, log_s[None, :], 0.0), axis=1)
    tau = jnp.asarray(tau)[..., None]  # (..., 1) against the fractions
    done = given & (t_frac <= tau)
    viable = p["v0"] * jnp.exp(p["lam"] * tau[..., 0] + jnp.sum(jnp.where(done, log_s, 0.0), -1))
    at_fraction = p["v0"] * jnp.exp(p["lam"] * t_frac + log_before)
    killed = at_fraction * -jnp.expm1(log_s)
    damaged = jnp.where(done, killed * jnp.exp(-p["kc"] * (tau - t_frac)), 0.0)
    return viable + jnp.sum(damaged, axis=-1)


def _field(t: Any, y: Any, p: Params, exposure: Any) -> Any:
    # Between fractions: viable cells grow, damaged cells are cleared. (The kill itself is an
    # impulse at each fraction, which only the closed form applies.)
    return jnp.stack([p["lam"] * y[0], -p["kc"] * y[1]])


lq_regrowth = TumourModel(
    name="lq_regrowth",
    title="Radiotherapy: LQ kill per fraction, regrowth, clearance of damaged cells",
    params=(
        v0_spec(),
        ParamSpec(
            "lam",
            "1/day",
            0.0,
            np.inf,
            0.01,
            1.0,
            "growth rate of viable cells (repopulation)",
            "assumption: weakly informative (doubling time about 70 days)",
        ),
        ParamSpec(
            "alpha",
            "1/Gy",
            0.0,
            np.inf,
            0.15,
            0.7,
            f"linear LQ radiosensitivity (beta = alpha / {ALPHA_BETA:g} Gy)",
            FOWLER_1989,
        ),
        ParamSpec(
            "kc",
            "1/day",
            0.0,
            np.inf,
            0.05,
            1.0,
            "clearance rate of lethally damaged cells",
            SIMEONI_2004 + " (damaged compartment); the value is an assumption (half-life 14 d)",
        ),
    ),  # fmt: skip
    vector_field=_field,
    initial_state=lambda p: jnp.stack([p["v0"], jnp.zeros_like(p["v0"])]),
    observable=lambda y, p: y[..., 0] + y[..., 1],
    closed_form=_size,
    uses_exposure=True,
    citation=FOWLER_1989,
    description=(
        "Viable tumour cells grow exponentially; each radiotherapy fraction of d Gy kills a "
        "fraction 1 - exp(-alpha d (1 + d / 10 Gy)) of them; killed cells stay in the measured "
        "size until cleared at rate kc. Only doses in Gy act."
    ),
    equation=(
        "V = v0 exp(lam t) prod s_i; D = sum V(t_i-) (1 - s_i) exp(-kc (t - t_i)); size = V + D"
    ),
)
