"""A differentiable tumour-under-radiotherapy model for optimising fractionation.

Logistic (or, with an infinite capacity, exponential) growth between fractions and an
instantaneous linear-quadratic kill at each fraction, as in the high-grade glioma twins of
Chaudhuri A et al. Predictive digital twin for optimizing patient-specific radiotherapy
regimens under uncertainty in high-grade gliomas. Front Artif Intell 2023;6:1222612
(there spatially resolved; here the tumour burden only)::

    dV/dt = g V (1 - V/K)                       between fractions
    V(t_i+) = V(t_i-) exp(-(alpha d_i + beta d_i^2)),   beta = alpha / (alpha/beta)

Between fractions the reciprocal ``w = 1/V`` is exact and linear:
``w(t) = 1/K + (w(t_i) - 1/K) exp(-g (t - t_i))``, so the whole course is a ``lax.scan`` over
fractions, differentiable in every dose and vmappable over posterior draws. Clonogens are
taken proportional to the burden (N0 at the start), giving the Poisson TCP ``exp(-N_end)``.

Normal tissue: the organ at risk receives a fraction `oar_fraction` of each fraction's dose;
its BED with alpha/beta `oar_alpha_beta` (Fowler 1989) is the toxicity budget, and its
Lyman-Kutcher-Burman NTCP uses the EQD2 of that dose as the uniform equivalent dose.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .._jax import jax, jnp

__all__ = [
    "RTParams",
    "burden_course",
    "log_kill",
    "oar_bed",
    "oar_ntcp",
    "regrowth_time",
    "surviving_fraction_course",
]


class RTParams(NamedTuple):
    """Per-draw parameters of the radiotherapy twin (a pytree: stack leaves to vmap).

    Attributes:
        v0: burden at the plan start (data units, e.g. mm3).
        g: growth rate, 1/day.
        inv_capacity: 1/K, 1/(data unit); 0 for exponential growth.
        alpha: linear radiosensitivity of the burden, 1/Gy.
        alpha_beta: tumour alpha/beta, Gy.
        clonogens: clonogenic cells at the start (for TCP).
    """

    v0: Any
    g: Any
    inv_capacity: Any
    alpha: Any
    alpha_beta: Any
    clonogens: Any


def log_kill(params: RTParams, doses: Any) -> Any:
    """LQ log cell kill of each fraction, ``alpha d + beta d^2`` (Gy -> dimensionless)."""
    return params.alpha * doses * (1.0 + doses / params.alpha_beta)


def _propagate(w: Any, inv_k: Any, g: Any, dt: Any) -> Any:
    return inv_k + (w - inv_k) * jnp.exp(-g * dt)


def surviving_fraction_course(params: RTParams, fraction_times: Any, doses: Any) -> tuple[Any, Any]:
    """Reciprocal burden just after each fraction (exact logistic steps), and after the last.

    Args:
        params: one draw's parameters.
        fraction_times: (n,) days from the plan start, sorted (a zero dose is no fraction).
        doses: (n,) Gy.

    Returns:
        ``(w_after, w_last)``: 1/V just after each fraction (n,), and after the last.
    """
    kill = log_kill(params, doses)

    def step(carry: Any, x: Any) -> tuple[Any, Any]:
        w, t_prev = carry
        t, k = x
        w = _propagate(w, params.inv_capacity, params.g, t - t_prev) * jnp.exp(k)
        return (w, t), w

    (w_last, _), w_after = jax.lax.scan(
        step, (1.0 / params.v0, jnp.asarray(0.0)), (fraction_times, kill)
    )
    return w_after, w_last


def burden_course(params: RTParams, fraction_times: Any, doses: Any, ts: Any) -> Any:
    """Burden at times `ts` (days from the plan start; a fraction at t acts at t).

    Args:
        params: one draw's parameters.
        fraction_times: (n,) sorted, days. doses: (n,) Gy.
        ts: (m,) days from the plan start (>= 0).

    Returns:
        (m,) burden, data units.
    """
    w_after, _ = surviving_fraction_course(params, fraction_times, doses)
    ts = jnp.asarray(ts)
    j = jnp.searchsorted(fraction_times, ts, side="right") - 1  # last fraction at or before t
    w_ref = jnp.where(j >= 0, w_after[jnp.maximum(j, 0)], 1.0 / params.v0)
    t_ref = jnp.where(j >= 0, fraction_times[jnp.maximum(j, 0)], 0.0)
    return 1.0 / _propagate(w_ref, params.inv_capacity, params.g, ts - t_ref)


def regrowth_time(params: RTParams, fraction_times: Any, doses: Any, level: Any = None) -> Any:
    """Days from the plan start until the burden regrows to `level` after the last fraction.

    Closed form of the logistic step from the last fraction (differentiable):
    ``t = t_last + ln((w_last - 1/K) / (1/L - 1/K)) / g``. When the burden after the last
    fraction is still above `level` the value falls before ``t_last`` (the tumour was never
    brought below it), which keeps the function smooth for gradient-based search.

    Args:
        level: burden level (default: v0, the burden at the start).
    """
    _, w_last = surviving_fraction_course(params, fraction_times, doses)
    lvl = params.v0 if level is None else level
    t_last = jnp.max(jnp.where(doses > 0, fraction_times, 0.0))
    inv_k = params.inv_capacity
    ratio = (w_last - inv_k) / jnp.maximum(1.0 / lvl - inv_k, 1e-300)
    return t_last + jnp.log(ratio) / params.g


def oar_bed(doses: Any, alpha_beta: float, fraction: float = 1.0) -> Any:
    """BED (Gy) of an organ at risk receiving `fraction` of each fraction's dose (Fowler 1989)."""
    d = fraction * doses
    return jnp.sum(d * (1.0 + d / alpha_beta))


def oar_ntcp(doses: Any, alpha_beta: float, td50: float, m: float, fraction: float = 1.0) -> Any:
    """LKB NTCP with the organ's EQD2 as uniform equivalent dose: ``Phi((EQD2-TD50)/(m TD50))``."""
    eqd2 = oar_bed(doses, alpha_beta, fraction) / (1.0 + 2.0 / alpha_beta)
    return jax.scipy.stats.norm.cdf((eqd2 - td50) / (m * td50))


def stack_params(params: RTParams) -> RTParams:
    """Parameters as float64 arrays of one length (scalars broadcast)."""
    arrays = [np.asarray(x, float) for x in params]
    n = max(a.size for a in arrays)
    return RTParams(*(jnp.asarray(np.broadcast_to(a, (n,))) for a in arrays))


def doubling_rate(days: float) -> float:
    """Growth rate (1/day) of a volume doubling time in days."""
    return math.log(2.0) / days
