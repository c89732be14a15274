"""Linear pharmacokinetics: closed-form plasma concentrations of compartmental models.

What: the plasma concentration C(t) of linear (first-order elimination) compartmental models
after IV boluses, zero-order infusions and first-order absorption, for single doses and for
sequences of doses by superposition, and the area under the curve (AUC).

Why: exposure-driven toxicity and efficacy models (e.g. the Friberg myelosuppression model in
:mod:`oncotwin.models.myelosuppression`) need C(t). For linear PK every such curve is a sum of
exponentials, so it is computed exactly, cheaply and differentiably instead of as extra ODE
states; every function is a pure function of arrays and works under ``jax.jit`` and
``jax.vmap`` (dose schedules are arrays, never Python loops over traced values).

Units (oncotwin's canonical units): time in **days**, amounts in mg, volumes in L, clearances in
L/day, rate constants in 1/day, concentrations in mg/L. Published PK parameters are usually per
hour: convert them once, where they are declared, with :func:`per_hour` (1/h or L/h to per day)
and :func:`hours` (h to days).

Equations (Gibaldi M, Perrier D. Pharmacokinetics, 2nd ed. New York: Marcel Dekker; 1982,
chapters 1-3):

- one compartment, k = CL/V: bolus C = (D/V) e^{-k t}; infusion of duration T at rate R = D/T:
  C = R/(V k) (1 - e^{-k t}) while infusing, C(T) e^{-k (t - T)} afterwards; first-order
  absorption (Bateman): C = F D ka / (V (ka - k)) (e^{-k t} - e^{-ka t}), and
  C = F D k t e^{-k t} / V when ka = k;
- two compartments (k10 = CL/V1, k12 = Q/V1, k21 = Q/V2): macro-constants
  alpha, beta = (s +/- sqrt(s^2 - 4 k10 k21)) / 2 with s = k10 + k12 + k21, and after a bolus
  C = (D/V1) [(alpha - k21) e^{-alpha t} + (k21 - beta) e^{-beta t}] / (alpha - beta);
- any mammillary model (a central compartment exchanging with peripheral ones): the exponents
  are the eigenvalues of the symmetrised rate matrix (see :func:`mammillary_exponentials`);
- infusions integrate each exponential term; repeated doses add (linearity);
  AUC_0-inf = F D / CL.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._jax import jax, jnp
from ..errors import ModelError

HOURS_PER_DAY = 24.0

GIBALDI_PERRIER = "Gibaldi M, Perrier D. Pharmacokinetics. 2nd ed. New York: Marcel Dekker; 1982"

__all__ = [
    "GIBALDI_PERRIER",
    "HOURS_PER_DAY",
    "auc_exponentials",
    "auc_infinity",
    "auc_trapezoid",
    "exponential_doses",
    "hours",
    "mammillary_doses",
    "mammillary_exponentials",
    "one_compartment_bolus",
    "one_compartment_doses",
    "one_compartment_infusion",
    "one_compartment_oral",
    "oral_doses",
    "per_hour",
    "two_compartment_bolus",
    "two_compartment_doses",
    "two_compartment_infusion",
    "two_compartment_macro",
]


# ---------------------------------------------------------------------------------------------
# Unit conversion: the one place where published per-hour values become per-day values.


def per_hour(value: Any) -> Any:
    """A rate published per hour (1/h, L/h) in oncotwin's per-day units (1/day, L/day)."""
    return value * HOURS_PER_DAY


def hours(value: Any) -> Any:
    """A duration published in hours, in days."""
    return value / HOURS_PER_DAY


# ---------------------------------------------------------------------------------------------
# Argument checks: only on concrete values (under jit/vmap the values are tracers and are not
# inspected; invalid traced values give NaN or non-physical curves, never an exception).


def _concrete(value: Any) -> np.ndarray | None:
    if isinstance(value, jax.core.Tracer):
        return None
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """Raise :class:`ModelError` unless every element of a concrete `value` is > 0 (>= 0).

    Traced values (inside ``jax.jit``/``jax.vmap``) are not checked.
    """
    arr = _concrete(value)
    if arr is None:
        return
    bad = ~np.isfinite(arr) | ((arr < 0) if allow_zero else (arr <= 0))
    if np.any(bad):
        what = "finite and >= 0" if allow_zero else "finite and > 0"
        raise ModelError(f"{name} must be {what}, got {value!r}")


def _check_doses(dose_times: Any, dose_amounts: Any, dose_durations: Any | None) -> None:
    times, amounts = _concrete(dose_times), _concrete(dose_amounts)
    if times is not None and times.ndim != 1:
        raise ModelError(f"dose_times must be a 1-D array, got shape {times.shape}")
    if times is not None and not np.all(np.isfinite(times)):
        raise ModelError(f"dose_times must be finite, got {dose_times!r}")
    if amounts is not None and times is not None and amounts.shape != times.shape:
        raise ModelError(
            f"dose_amounts must have the shape of dose_times {times.shape}, got {amounts.shape}"
        )
    check_positive("dose_amounts", dose_amounts, allow_zero=True)
    if dose_durations is not None:
        durations = _concrete(dose_durations)
        if durations is not None and times is not None and durations.shape != times.shape:
            raise ModelError(
                f"dose_durations must have the shape of dose_times {times.shape}, "
                f"got {durations.shape}"
            )
        check_positive("dose_durations", dose_durations, allow_zero=True)


# ---------------------------------------------------------------------------------------------
# Sums of exponentials: the common machinery of every linear model.


def _phi(x: Any) -> Any:
    """(1 - e^{-x}) / x, with its limit 1 at x = 0 (stable for small x; x >= 0)."""
    small = x < 1e-8
    safe = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 - 0.5 * x, -jnp.expm1(-safe) / safe)


@jax.jit
def exponential_doses(
    t: Any,
    dose_times: Any,
    dose_amounts: Any,
    dose_durations: Any,
    lambdas: Any,
    coefs: Any,
) -> Any:
    """Concentration of a linear model given by its unit-bolus response, over a dose sequence.

    The unit-bolus response is ``sum_i coefs[i] * exp(-lambdas[i] * t)`` (concentration per unit
    dose). A dose of amount D given at ``t_d`` as a zero-order infusion of duration T contributes,
    at ``tau = t - t_d >= 0`` and with ``s = min(tau, T)``::

        D * sum_i coefs[i] * (s / T) * phi(lambdas[i] s) * exp(-lambdas[i] (tau - s)),
        phi(x) = (1 - exp(-x)) / x,

    which is the infusion integral of each exponential and reduces to the bolus term when T = 0.
    Doses after ``t`` contribute 0; a bolus given exactly at ``t`` counts.

    Args:
        t: evaluation times, any shape (days).
        dose_times: (n_doses,) start of each dose (days).
        dose_amounts: (n_doses,) amounts (mg; a zero amount is no dose).
        dose_durations: (n_doses,) infusion durations (days; 0 = bolus).
        lambdas: (n_exp,) exponents (1/day), > 0.
        coefs: (n_exp,) coefficients (1/L).

    Returns:
        Concentrations (mg/L) with the shape of ``t``.

    Compiled with ``jax.jit`` (one compilation per shape, instead of one per operation).
    """
    t = jnp.asarray(t, dtype=float)
    dose_times = jnp.atleast_1d(jnp.asarray(dose_times, dtype=float))
    dose_amounts = jnp.atleast_1d(jnp.asarray(dose_amounts, dtype=float))
    durations = jnp.broadcast_to(jnp.asarray(dose_durations, dtype=float), dose_times.shape)
    lambdas = jnp.atleast_1d(jnp.asarray(lambdas, dtype=float))
    coefs = jnp.atleast_1d(jnp.asarray(coefs, dtype=float))

    tau = t[..., None] - dose_times  # (..., n_doses)
    given = tau >= 0.0
    tau = jnp.where(given, tau, 0.0)  # keep the masked branch finite (and its gradient)
    s = jnp.minimum(tau, durations)  # time infused so far
    infusion = durations > 0.0
    fraction = jnp.where(infusion, s / jnp.where(infusion, durations, 1.0), 1.0)
    lam_s = lambdas * s[..., None]  # (..., n_doses, n_exp)
    decay = jnp.exp(-lambdas * (tau - s)[..., None])
    per_dose = jnp.sum(coefs * _phi(lam_s) * decay, axis=-1) * fraction
    return jnp.sum(jnp.where(given, dose_amounts * per_dose, 0.0), axis=-1)


# ---------------------------------------------------------------------------------------------
# One compartment.


def one_compartment_bolus(t: Any, dose: Any, cl: Any, v: Any) -> Any:
    """Concentration (mg/L) after an IV bolus at t = 0: (dose/V) exp(-CL/V t); 0 for t < 0.

    Args:
        t: times (days). dose: mg. cl: clearance (L/day). v: volume (L).
    """
    check_positive("cl", cl)
    check_positive("v", v)
    return _bolus_1cmt(t, dose, cl, v)


@jax.jit
def _bolus_1cmt(t: Any, dose: Any, cl: Any, v: Any) -> Any:
    t = jnp.asarray(t, dtype=float)
    tau = jnp.maximum(t, 0.0)
    return jnp.where(t >= 0.0, dose / v * jnp.exp(-cl / v * tau), 0.0)


def one_compartment_infusion(t: Any, dose: Any, duration: Any, cl: Any, v: Any) -> Any:
    """Concentration (mg/L) for a zero-order infusion of `dose` over `duration` days from t = 0.

    During the infusion C = R/CL (1 - e^{-k t}) with R = dose/duration and k = CL/V; afterwards
    C(duration) e^{-k (t - duration)}. ``duration = 0`` is a bolus.
    """
    check_positive("cl", cl)
    check_positive("v", v)
    check_positive("duration", duration, allow_zero=True)
    return exponential_doses(t, jnp.zeros(1), jnp.atleast_1d(dose), duration, cl / v, 1.0 / v)


def one_compartment_doses(
    t: Any, dose_times: Any, dose_amounts: Any, dose_durations: Any, cl: Any, v: Any
) -> Any:
    """Concentration (mg/L) of a one-compartment model after a sequence of boluses/infusions.

    Args:
        t: evaluation times (days), any shape.
        dose_times, dose_amounts, dose_durations: (n_doses,) arrays in days, mg, days
            (duration 0 = bolus). Doses after ``t`` contribute 0.
        cl: clearance (L/day). v: volume (L).
    """
    check_positive("cl", cl)
    check_positive("v", v)
    _check_doses(dose_times, dose_amounts, dose_durations)
    return exponential_doses(t, dose_times, dose_amounts, dose_durations, cl / v, 1.0 / v)


def _bateman(t: Any, ka: Any, k: Any) -> Any:
    """(e^{-k t} - e^{-ka t}) / (ka - k) for t >= 0, and its limit t e^{-k t} when ka = k.

    Symmetric in (ka, k), so it is written with the smaller rate as the base,
    t e^{-k_min t} phi(|ka - k| t), which never cancels catastrophically nor overflows.
    """
    k_min = jnp.minimum(ka, k)
    return t * jnp.exp(-k_min * t) * _phi(jnp.abs(ka - k) * t)


def one_compartment_oral(t: Any, dose: Any, ka: Any, cl: Any, v: Any, f: Any = 1.0) -> Any:
    """Bateman function: concentration (mg/L) after an oral dose at t = 0 (first-order absorption).

    C = f dose ka / (V (ka - k)) (e^{-k t} - e^{-ka t}) with k = CL/V; the ka = k case is its
    limit f dose k t e^{-k t} / V (handled exactly, and stably near it). 0 for t < 0.

    Args:
        t: times (days). dose: mg. ka: absorption rate (1/day). cl: L/day. v: L.
        f: bioavailable fraction (0, 1].
    """
    check_positive("ka", ka)
    check_positive("cl", cl)
    check_positive("v", v)
    check_positive("f", f)
    return _oral_1cmt(t, dose, ka, cl, v, f)


@jax.jit
def _oral_1cmt(t: Any, dose: Any, ka: Any, cl: Any, v: Any, f: Any) -> Any:
    t = jnp.asarray(t, dtype=float)
    tau = jnp.maximum(t, 0.0)
    return jnp.where(t >= 0.0, f * dose * ka / v * _bateman(tau, ka, cl / v), 0.0)


def oral_doses(
    t: Any, dose_times: Any, dose_amounts: Any, ka: Any, cl: Any, v: Any, f: Any = 1.0
) -> Any:
    """Superposition of Bateman functions for a sequence of oral doses (mg/L).

    Args:
        t: evaluation times (days), any shape.
        dose_times, dose_amounts: (n_doses,) arrays (days, mg). Doses after ``t`` contribute 0.
        ka: absorption rate (1/day). cl: L/day. v: L. f: bioavailable fraction.
    """
    check_positive("ka", ka)
    check_positive("cl", cl)
    check_positive("v", v)
    check_positive("f", f)
    _check_doses(dose_times, dose_amounts, None)
    return _oral_doses(t, dose_times, dose_amounts, ka, cl, v, f)


@jax.jit
def _oral_doses(
    t: Any, dose_times: Any, dose_amounts: Any, ka: Any, cl: Any, v: Any, f: Any
) -> Any:
    t = jnp.asarray(t, dtype=float)
    tau = t[..., None] - jnp.atleast_1d(jnp.asarray(dose_times, dtype=float))
    given = tau >= 0.0
    tau = jnp.where(given, tau, 0.0)
    per_dose = f * ka / v * _bateman(tau, ka, cl / v)
    return jnp.sum(jnp.where(given, jnp.asarray(dose_amounts, dtype=float) * per_dose, 0.0), -1)


# ---------------------------------------------------------------------------------------------
# Two compartments (Gibaldi & Perrier macro-constants) and general mammillary models.


def two_compartment_macro(cl: Any, v1: Any, q: Any, v2: Any) -> tuple[Any, Any, Any, Any]:
    """Macro-constants of the two-compartment model from CL, V1, Q, V2.

    With k10 = CL/V1, k12 = Q/V1, k21 = Q/V2 and s = k10 + k12 + k21:
    alpha = (s + sqrt(s^2 - 4 k10 k21)) / 2 and beta = k10 k21 / alpha (the product form avoids
    the cancellation of (s - sqrt(...)) / 2). After a unit bolus
    C(t) = A e^{-alpha t} + B e^{-beta t} with A = (alpha - k21) / (V1 (alpha - beta)) and
    B = (k21 - beta) / (V1 (alpha - beta)) (Gibaldi & Perrier 1982, ch. 2).

    Returns:
        ``(alpha, beta, A, B)``: exponents in 1/day (alpha > beta) and coefficients in 1/L.
    """
    check_positive("cl", cl)
    check_positive("v1", v1)
    check_positive("q", q, allow_zero=True)
    check_positive("v2", v2)
    return _macro_2cmt(cl, v1, q, v2)


@jax.jit
def _macro_2cmt(cl: Any, v1: Any, q: Any, v2: Any) -> tuple[Any, Any, Any, Any]:
    k10, k12, k21 = cl / v1, q / v1, q / v2
    s = k10 + k12 + k21
    alpha = 0.5 * (s + jnp.sqrt(s * s - 4.0 * k10 * k21))
    beta = k10 * k21 / alpha
    a = (alpha - k21) / (v1 * (alpha - beta))
    b = (k21 - beta) / (v1 * (alpha - beta))
    return alpha, beta, a, b


def two_compartment_bolus(t: Any, dose: Any, cl: Any, v1: Any, q: Any, v2: Any) -> Any:
    """Central concentration (mg/L) after an IV bolus at t = 0: dose (A e^{-alpha t} + B e^{-beta t})."""
    alpha, beta, a, b = two_compartment_macro(cl, v1, q, v2)
    return exponential_doses(
        t, jnp.zeros(1), jnp.atleast_1d(dose), 0.0, jnp.stack([alpha, beta]), jnp.stack([a, b])
    )


def two_compartment_infusion(
    t: Any, dose: Any, duration: Any, cl: Any, v1: Any, q: Any, v2: Any
) -> Any:
    """Central concentration (mg/L) for a zero-order infusion of `dose` over `duration` days.

    Each exponential term X e^{-x t} of the bolus response becomes
    R X (1 - e^{-x t}) / x while infusing (R = dose/duration) and
    R X (1 - e^{-x T}) e^{-x (t - T)} / x afterwards.
    """
    check_positive("duration", duration, allow_zero=True)
    alpha, beta, a, b = two_compartment_macro(cl, v1, q, v2)
    return exponential_doses(
        t, jnp.zeros(1), jnp.atleast_1d(dose), duration, jnp.stack([alpha, beta]), jnp.stack([a, b])
    )


def two_compartment_doses(
    t: Any,
    dose_times: Any,
    dose_amounts: Any,
    dose_durations: Any,
    cl: Any,
    v1: Any,
    q: Any,
    v2: Any,
) -> Any:
    """Central concentration (mg/L) of the two-compartment model after a sequence of doses."""
    _check_doses(dose_times, dose_amounts, dose_durations)
    alpha, beta, a, b = two_compartment_macro(cl, v1, q, v2)
    return exponential_doses(
        t, dose_times, dose_amounts, dose_durations, jnp.stack([alpha, beta]), jnp.stack([a, b])
    )


def mammillary_exponentials(cl: Any, v1: Any, q: Any, vp: Any) -> tuple[Any, Any]:
    """Exponents and coefficients of the unit-bolus response of a mammillary model.

    A central compartment (volume V1, elimination clearance CL) exchanges with peripheral
    compartments j (volume Vp_j, inter-compartmental clearance Q_j). In concentrations,
    diag(V) dC/dt = -M C with the symmetric matrix M (M_00 = CL + sum Q_j, M_jj = Q_j,
    M_0j = M_j0 = -Q_j). With S = V^{-1/2} M V^{-1/2} = U diag(lambda) U^T (symmetric, so
    ``eigh`` is exact, real and differentiable), a unit bolus into the central compartment gives
    C(t) = sum_i (U_0i^2 / V1) e^{-lambda_i t}. One peripheral compartment reproduces
    :func:`two_compartment_macro`; two give the classical three-compartment model.

    Args:
        cl: elimination clearance (L/day). v1: central volume (L).
        q: (n_peripheral,) inter-compartmental clearances (L/day) (may be empty).
        vp: (n_peripheral,) peripheral volumes (L).

    Returns:
        ``(lambdas, coefs)``: exponents (1/day, ascending) and coefficients (1/L), each of
        shape (n_peripheral + 1,).
    """
    check_positive("cl", cl)
    check_positive("v1", v1)
    check_positive("q", q, allow_zero=True)
    check_positive("vp", vp)
    q = jnp.atleast_1d(jnp.asarray(q, dtype=float))
    vp = jnp.atleast_1d(jnp.asarray(vp, dtype=float))
    if q.shape != vp.shape:
        raise ModelError(f"q and vp must have the same shape, got {q.shape} and {vp.shape}")
    return _mammillary(cl, v1, q, vp)


@jax.jit
def _mammillary(cl: Any, v1: Any, q: Any, vp: Any) -> tuple[Any, Any]:
    cl = jnp.asarray(cl, dtype=float)
    v1 = jnp.asarray(v1, dtype=float)
    n = q.shape[0] + 1
    diag = jnp.concatenate([jnp.atleast_1d((cl + jnp.sum(q)) / v1), q / vp])
    off = -q / jnp.sqrt(v1 * vp)
    s = jnp.diag(diag)
    s = s.at[0, 1:].set(off).at[1:, 0].set(off) if n > 1 else s
    lambdas, u = jnp.linalg.eigh(s)
    return lambdas, u[0, :] ** 2 / v1


def mammillary_doses(
    t: Any,
    dose_times: Any,
    dose_amounts: Any,
    dose_durations: Any,
    cl: Any,
    v1: Any,
    q: Any,
    vp: Any,
) -> Any:
    """Central concentration (mg/L) of a mammillary model after a sequence of IV doses.

    See :func:`mammillary_exponentials` for the parameters and :func:`exponential_doses` for
    the dose arrays (durations 0 = bolus).
    """
    _check_doses(dose_times, dose_amounts, dose_durations)
    lambdas, coefs = mammillary_exponentials(cl, v1, q, vp)
    return exponential_doses(t, dose_times, dose_amounts, dose_durations, lambdas, coefs)


# ---------------------------------------------------------------------------------------------
# Exposure.


def auc_infinity(dose: Any, cl: Any, f: Any = 1.0) -> Any:
    """AUC_0-inf (mg.day/L) of linear PK: f dose / CL, whatever the number of compartments."""
    check_positive("cl", cl)
    return f * dose / cl


def auc_exponentials(dose: Any, lambdas: Any, coefs: Any) -> Any:
    """AUC_0-inf (mg.day/L) of a bolus response dose sum_i coefs_i e^{-lambda_i t}: dose sum c/lambda."""
    return dose * jnp.sum(jnp.asarray(coefs) / jnp.asarray(lambdas), axis=-1)


def auc_trapezoid(t: Any, c: Any) -> Any:
    """AUC (concentration x time) of sampled concentrations by the linear trapezoidal rule."""
    t = jnp.asarray(t, dtype=float)
    c = jnp.asarray(c, dtype=float)
    return jnp.sum(0.5 * (c[..., 1:] + c[..., :-1]) * jnp.diff(t), axis=-1)
