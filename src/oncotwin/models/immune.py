"""Tumour-immune dynamics: the Kuznetsov effector-tumour model and a checkpoint-inhibitor response.

What:

1. The effector-tumour model of Kuznetsov VA, Makalkin IA, Taylor MA, Perelson AS. "Nonlinear
   dynamics of immunogenic tumors: parameter estimation and global bifurcation analysis".
   Bull Math Biol 1994;56:295-321, in its dimensionless form (x effector cells, y tumour
   cells, both in units of 10^6 cells)::

       dx/dt = sigma + rho x y / (eta + y) - mu x y - delta x
       dy/dt = alpha y (1 - beta y) - x y

   with the published values sigma = 0.1181, rho = 1.131, eta = 20.19, mu = 0.00311,
   delta = 0.3743, alpha = 1.636, beta = 0.002 (fitted to BCL1 lymphoma in mice). Values
   verified in github.com/samubernard/popdyn, ``immunogeneic_tumor_growth/stoch_tumor_growth.m``
   (Université Lyon 1 course code citing the paper). They are the paper's dimensional
   estimates (as recalled here, consistent with the dimensionless values to < 0.1 %) scaled
   by E0 = T0 = 10^6 cells and n = 1.101e-7 /(cell day) (the tumour-cell kill rate):
   s = 1.3e4 cells/day, p = 0.1245/day, g = 2.019e7 cells, m = 3.422e-10 /(cell day),
   d = 0.0412/day, a = 0.18/day, b = 2.0e-9 /cell; one dimensionless time unit is
   1/(n T0) = 9.08 days (:data:`KUZNETSOV_DAYS_PER_UNIT`). Why: it is the canonical minimal
   model of immune surveillance, with a dormant (small, immune-controlled) tumour state and
   an escaped state; equilibria are computed analytically (:func:`kuznetsov_equilibria`).

2. A tumour-size response model for immune checkpoint inhibitors (sum of longest diameters,
   SLD, in mm) that shows delayed response and pseudoprogression (:func:`sld`)::

       resistant  R = fr v0 exp(kg t)
       sensitive  S = (1 - fr) v0 exp(kg t - kd (t - tau)+)
       dying      dD/dt = kd S 1[t > tau] - kc D,  D(0) = 0
       SLD = R + S + D

   Growth at rate kg; after an activation delay tau (T-cell priming and expansion), immune
   killing at rate kd moves sensitive tumour into a dying compartment that still counts in
   the measured size until it is cleared at rate kc (necrosis, inflammatory infiltrate).
   The lesion therefore keeps growing during the delay and can be measured larger after
   killing has begun: pseudoprogression, followed by response. Sources of the structure:
   the dying (damaged-cell) compartment of Simeoni M et al. Cancer Res 2004;64:1094-1101
   (here one compartment); a delay in drug effect, as the transit compartments of Lobo ED,
   Balthasar JP. AAPS PharmSci 2002;4:E42 (a pure lag is their limit of many compartments);
   the fraction of tumour responsive to pembrolizumab of Chatterjee MS et al. CPT
   Pharmacometrics Syst Pharmacol 2017;6:29-39 (``fr`` = 1 - responsive fraction). The
   combination is this module's; its parameters are illustrative, not fitted.

3. :func:`classify_recist`: responder / pseudoprogression / progression / stable by RECIST 1.1
   thresholds (Eisenhauer EA et al. Eur J Cancer 2009;45:228-247): partial response is a
   >= 30 % decrease of the SLD from baseline; progression a >= 20 % increase from the nadir
   that is also >= 5 mm. Pseudoprogression (progression, then response) is what iRECIST
   (Seymour L et al. Lancet Oncol 2017;18:e143-e152) asks to confirm before stopping therapy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import diffrax
import numpy as np

from .._jax import jax, jnp
from ..errors import ModelError
from .base import ParamSpec, TumourModel, v0_spec

KUZNETSOV_1994 = (
    "Kuznetsov VA, Makalkin IA, Taylor MA, Perelson AS. Nonlinear dynamics of immunogenic "
    "tumors: parameter estimation and global bifurcation analysis. Bull Math Biol "
    "1994;56:295-321"
)
RECIST_11 = (
    "Eisenhauer EA et al. New response evaluation criteria in solid tumours: revised RECIST "
    "guideline (version 1.1). Eur J Cancer 2009;45:228-247"
)
KUZNETSOV_CELL_UNIT = 1.0e6  # cells per dimensionless unit (E0 = T0)
KUZNETSOV_DAYS_PER_UNIT = 1.0 / (1.101e-7 * KUZNETSOV_CELL_UNIT)  # 1/(n T0) = 9.08 days


# ---- Kuznetsov effector-tumour model ----------------------------------------------------------


class KuznetsovParams(NamedTuple):
    """Dimensionless parameters of the Kuznetsov 1994 model (a pytree; stack fields to vmap).

    Attributes:
        sigma: constant influx of effector cells.
        rho: maximal tumour-stimulated effector proliferation.
        eta: tumour size giving half-maximal stimulation.
        mu: effector inactivation by tumour cells.
        delta: effector death rate.
        alpha: tumour growth rate.
        beta: inverse tumour carrying capacity.
    """

    sigma: Any
    rho: Any
    eta: Any
    mu: Any
    delta: Any
    alpha: Any
    beta: Any


def kuznetsov_params(**overrides: Any) -> KuznetsovParams:
    """The published parameter set (Kuznetsov 1994), with optional overrides.

    Raises:
        ModelError: an unknown field name, or a value that is not positive and finite.
    """
    values: dict[str, Any] = {
        "sigma": 0.1181,
        "rho": 1.131,
        "eta": 20.19,
        "mu": 0.00311,
        "delta": 0.3743,
        "alpha": 1.636,
        "beta": 2.0e-3,
    }
    unknown = set(overrides) - set(values)
    if unknown:
        raise ModelError(f"unknown Kuznetsov parameter(s) {sorted(unknown)}; known: {list(values)}")
    values.update(overrides)
    for name, value in values.items():
        if isinstance(value, jax.core.Tracer):
            continue
        arr = np.asarray(value, dtype=float)
        if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
            raise ModelError(f"Kuznetsov parameter {name} must be positive and finite, got {arr}")
    return KuznetsovParams(**{k: jnp.asarray(v, dtype=float) for k, v in values.items()})


def kuznetsov_field(t: Any, y: Any, params: KuznetsovParams) -> Any:
    """d/dt of ``[x, y]`` (effector, tumour; dimensionless)."""
    p = params
    e, tum = y[..., 0], y[..., 1]
    de = p.sigma + p.rho * e * tum / (p.eta + tum) - p.mu * e * tum - p.delta * e
    dt = p.alpha * tum * (1.0 - p.beta * tum) - e * tum
    return jnp.stack([de, dt], axis=-1)


def kuznetsov_equilibria(params: KuznetsovParams) -> Any:
    """All equilibria with x >= 0, y >= 0, shape (4, 2): rows ``[x*, y*]``, NaN where absent.

    Row 0 is the tumour-free state ``(sigma/delta, 0)``. Rows 1-3 are the tumour-bearing
    states, sorted by y*: on the tumour nullcline ``x = alpha (1 - beta y)`` the effector
    nullcline becomes the cubic

        alpha (1 - beta y) g(y) + sigma (eta + y) = 0,
        g(y) = rho y - (mu y + delta)(eta + y),

    whose real roots with 0 < y < 1/beta (so x > 0) are the equilibria. Jit- and vmap-safe.
    """
    p = params
    b1 = p.rho - p.mu * p.eta - p.delta  # g(y) = -mu y^2 + b1 y - delta eta
    c3 = p.alpha * p.beta * p.mu
    c2 = -p.alpha * (p.mu + p.beta * b1)
    c1 = p.alpha * (b1 + p.beta * p.delta * p.eta) + p.sigma
    c0 = p.eta * (p.sigma - p.alpha * p.delta)
    roots = jnp.roots(jnp.stack([c3, c2, c1, c0]), strip_zeros=False)
    real = jnp.real(roots)
    valid = (
        (jnp.abs(jnp.imag(roots)) <= 1e-9 * jnp.maximum(1.0, jnp.abs(real)))
        & (real > 0)
        & (real < 1.0 / p.beta)
    )
    y_star = jnp.sort(jnp.where(valid, real, jnp.inf))
    y_star = jnp.where(jnp.isfinite(y_star), y_star, jnp.nan)
    x_star = p.alpha * (1.0 - p.beta * y_star)
    free = jnp.stack([p.sigma / p.delta, jnp.zeros_like(p.sigma)])
    return jnp.concatenate([free[None, :], jnp.stack([x_star, y_star], axis=-1)], axis=0)


def kuznetsov_jacobian(point: Any, params: KuznetsovParams) -> Any:
    """Jacobian of the vector field at ``point = [x, y]`` (2 x 2)."""
    return jax.jacfwd(lambda z: kuznetsov_field(0.0, z, params))(jnp.asarray(point, dtype=float))


def classify_equilibrium(jacobian: Any) -> str:
    """Type of a hyperbolic planar equilibrium from its Jacobian (eigenvalues).

    Returns:
        One of "stable node", "stable focus", "unstable node", "unstable focus", "saddle",
        "non-hyperbolic".
    """
    ev = np.linalg.eigvals(np.asarray(jacobian, dtype=float))
    re, im = ev.real, ev.imag
    if np.any(np.isclose(re, 0.0, atol=1e-12)):
        return "non-hyperbolic"
    if re[0] * re[1] < 0:
        return "saddle"
    kind = "focus" if np.any(np.abs(im) > 0) else "node"
    return f"{'stable' if np.all(re < 0) else 'unstable'} {kind}"


@dataclass(frozen=True)
class ImmuneSolver:
    """Tsit5 with a PID step controller."""

    rtol: float = 1e-9
    atol: float = 1e-11
    max_steps: int = 100_000


DEFAULT_IMMUNE_SOLVER = ImmuneSolver()


@partial(jax.jit, static_argnames=("solver",))
def simulate_kuznetsov(
    params: KuznetsovParams, y0: Any, ts: Any, solver: ImmuneSolver = DEFAULT_IMMUNE_SOLVER
) -> tuple[Any, Any]:
    """Integrate the Kuznetsov model from ``ts[0]`` (pure; jit and vmap over params / y0).

    Args:
        params: dimensionless parameters.
        y0: ``[x, y]`` at ``ts[0]`` (units of 10^6 cells).
        ts: save times in dimensionless units (days / :data:`KUZNETSOV_DAYS_PER_UNIT`), sorted.
        solver: ODE settings.

    Returns:
        ``(ys, ok)``: states at `ts`, shape (n, 2), and True when the solver succeeded.
    """
    ts = jnp.asarray(ts, dtype=float)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: kuznetsov_field(t, y, args)),
        diffrax.Tsit5(),
        t0=ts[0],
        t1=ts[-1],
        dt0=None,
        y0=jnp.asarray(y0, dtype=float),
        args=params,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=solver.rtol, atol=solver.atol),
        max_steps=solver.max_steps,
        throw=False,
    )
    return sol.ys, sol.result == diffrax.RESULTS.successful


# ---- checkpoint-inhibitor tumour-size response ------------------------------------------------


class ResponseParams(NamedTuple):
    """Parameters of the delayed-kill response model (a pytree; stack fields to vmap).

    Attributes:
        v0: SLD at the start of treatment, mm.
        kg: growth rate, 1/day.
        kd: immune kill rate of sensitive tumour once active, 1/day.
        tau: activation delay from the start of treatment to killing, days.
        kc: clearance rate of dying tumour (it still counts in the SLD until cleared), 1/day.
        fr: resistant (non-responsive) fraction at the start, 0..1.
    """

    v0: Any
    kg: Any
    kd: Any
    tau: Any
    kc: Any
    fr: Any = 0.0


def validate_response(params: ResponseParams) -> None:
    """Check concrete parameter values (traced values are skipped).

    Raises:
        ModelError: a value outside its domain, naming the parameter.
    """
    rules = {
        "v0": (lambda a: a > 0, "> 0"),
        "kg": (lambda a: a >= 0, ">= 0"),
        "kd": (lambda a: a >= 0, ">= 0"),
        "tau": (lambda a: a >= 0, ">= 0"),
        "kc": (lambda a: a > 0, "> 0"),
        "fr": (lambda a: (a >= 0) & (a <= 1), "in [0, 1]"),
    }
    for name, (ok, text) in rules.items():
        value = getattr(params, name)
        if isinstance(value, jax.core.Tracer):
            continue
        arr = np.asarray(value, dtype=float)
        if not (np.all(np.isfinite(arr)) and np.all(ok(arr))):
            raise ModelError(f"response parameter {name} must be finite and {text}, got {arr}")


def _exp_difference(a: Any, b: Any, s: Any) -> Any:
    """(exp(a s) - exp(b s)) / (a - b), continuous at a = b (where it is s exp(a s))."""
    d = a - b
    small = jnp.abs(d * s) < 1e-8
    safe = jnp.where(small, 1.0, d)
    return jnp.where(
        small, s * jnp.exp(b * s) * (1.0 + 0.5 * d * s), jnp.exp(b * s) * jnp.expm1(safe * s) / safe
    )


def sld_components(t: Any, params: ResponseParams) -> Any:
    """Closed form of the resistant, sensitive and dying parts, shape (..., 3), mm.

    Derivation: before tau all tumour grows at kg. After it, with s = t - tau, the sensitive
    part is ``S(tau) exp((kg - kd) s)`` and the dying part solves ``D' = kd S - kc D`` with
    ``D(tau) = 0``: ``D = kd S(tau) (exp((kg - kd) s) - exp(-kc s)) / (kg - kd + kc)``.
    """
    p = params
    t = jnp.asarray(t, dtype=float)
    s = jnp.maximum(t - p.tau, 0.0)
    resistant = p.fr * p.v0 * jnp.exp(p.kg * t)
    at_tau = (1.0 - p.fr) * p.v0 * jnp.exp(p.kg * jnp.minimum(t, p.tau))
    sensitive = at_tau * jnp.exp(-(p.kd - p.kg) * s)
    dying = p.kd * at_tau * _exp_difference(p.kg - p.kd, -p.kc, s)
    return jnp.stack([resistant, sensitive, dying], axis=-1)


def sld(t: Any, params: ResponseParams) -> Any:
    """Sum of longest diameters (mm) at times `t` (days since the start), vectorised in `t`.

    Closed form of the delayed-kill model (module docstring); pure, jit- and vmap-safe.
    """
    return jnp.sum(sld_components(t, params), axis=-1)


response_model = sld  # alias: the checkpoint-inhibitor response model is `sld`


def _response_field(t: Any, y: Any, args: Any) -> Any:
    p = args
    kill = jnp.where(t >= p.tau, p.kd, 0.0)
    resistant, sensitive, dying = y[0], y[1], y[2]
    return jnp.stack([p.kg * resistant, (p.kg - kill) * sensitive, kill * sensitive - p.kc * dying])


@partial(jax.jit, static_argnames=("solver",))
def sld_ode(
    t: Any, params: ResponseParams, solver: ImmuneSolver = DEFAULT_IMMUNE_SOLVER
) -> tuple[Any, Any]:
    """The response model integrated by diffrax (checks the closed form; jit/vmap-safe).

    Args:
        t: save times, days since the start, sorted, >= 0.
        params: model parameters.
        solver: ODE settings.

    Returns:
        ``(sld, ok)``: SLD at `t`, mm, and True when the solver succeeded.
    """
    p = ResponseParams(*(jnp.asarray(v, dtype=float) for v in params))
    t = jnp.asarray(t, dtype=float)
    y0 = jnp.stack([p.fr * p.v0, (1.0 - p.fr) * p.v0, jnp.zeros_like(p.v0)])
    # The kill switches on at tau: make the solver stop exactly there.
    controller = diffrax.ClipStepSizeController(
        diffrax.PIDController(rtol=solver.rtol, atol=solver.atol), jump_ts=jnp.stack([p.tau])
    )
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_response_field),
        diffrax.Tsit5(),
        t0=0.0,
        t1=t[-1],
        dt0=None,
        y0=y0,
        args=p,
        saveat=diffrax.SaveAt(ts=t),
        stepsize_controller=controller,
        max_steps=solver.max_steps,
        throw=False,
    )
    assert sol.ys is not None
    return jnp.sum(sol.ys, axis=-1), sol.result == diffrax.RESULTS.successful


# ---- RECIST 1.1 classification ----------------------------------------------------------------


@dataclass(frozen=True)
class RecistCourse:
    """Classification of one SLD trajectory.

    Attributes:
        label: "responder", "pseudoprogression", "progression" or "stable".
        progression_time: first time meeting the progression rule (None if never).
        response_time: first time meeting the partial-response rule (None if never); for
            pseudoprogression the first response after the progression.
        baseline: SLD at the first time, mm.
    """

    label: str
    progression_time: float | None
    response_time: float | None
    baseline: float


def classify_recist(
    times: Any,
    sld_mm: Any,
    *,
    response_drop: float = 0.30,
    progression_rise: float = 0.20,
    progression_mm: float = 5.0,
) -> RecistCourse:
    """Classify a trajectory by RECIST 1.1 target-lesion thresholds (Eisenhauer 2009).

    Partial response: SLD <= (1 - 0.30) x baseline. Progression: SLD >= (1 + 0.20) x nadir
    and SLD - nadir >= 5 mm, the nadir being the smallest SLD before that time (baseline
    included). The whole course is read retrospectively:

    - "pseudoprogression": a progression followed later by a partial response;
    - "progression": a progression with no later response;
    - "responder": a partial response with no earlier progression;
    - "stable": neither.

    Args:
        times: assessment times, days (sorted ascending); the first is the baseline.
        sld_mm: sum of longest diameters at `times`, mm (>= 0).
        response_drop, progression_rise, progression_mm: the RECIST 1.1 thresholds.

    Returns:
        A :class:`RecistCourse`.

    Raises:
        ModelError: mismatched, unsorted, empty, negative or non-finite inputs.
    """
    t = np.asarray(times, dtype=float).ravel()
    v = np.asarray(sld_mm, dtype=float).ravel()
    if t.size == 0 or t.shape != v.shape:
        raise ModelError(
            f"times and sld_mm must be non-empty and of equal length, got {t.shape}, {v.shape}"
        )
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))) or np.any(v < 0):
        raise ModelError("times and sld_mm must be finite, and sld_mm >= 0")
    if np.any(np.diff(t) < 0):
        raise ModelError("times must be sorted ascending (the first is the baseline)")
    baseline = float(v[0])
    nadir = np.minimum.accumulate(v)
    prior_nadir = np.concatenate([[v[0]], nadir[:-1]])
    progressed = (v >= (1.0 + progression_rise) * prior_nadir) & (v - prior_nadir >= progression_mm)
    progressed[0] = False
    responded = v <= (1.0 - response_drop) * baseline
    t_prog = float(t[np.argmax(progressed)]) if progressed.any() else None
    if t_prog is not None:
        later = responded & (t > t_prog)
        if later.any():
            return RecistCourse("pseudoprogression", t_prog, float(t[np.argmax(later)]), baseline)
        return RecistCourse("progression", t_prog, None, baseline)
    if responded.any():
        return RecistCourse("responder", None, float(t[np.argmax(responded)]), baseline)
    return RecistCourse("stable", None, None, baseline)


__all__ = [
    "DEFAULT_IMMUNE_SOLVER",
    "KUZNETSOV_1994",
    "KUZNETSOV_CELL_UNIT",
    "KUZNETSOV_DAYS_PER_UNIT",
    "RECIST_11",
    "ImmuneSolver",
    "KuznetsovParams",
    "RecistCourse",
    "ResponseParams",
    "classify_equilibrium",
    "classify_recist",
    "kuznetsov_equilibria",
    "kuznetsov_field",
    "kuznetsov_jacobian",
    "kuznetsov_params",
    "response_model",
    "simulate_kuznetsov",
    "sld",
    "sld_components",
    "sld_ode",
    "validate_response",
]


# ---- the Kuznetsov model as a registry model ----------------------------------------------------

_KUZNETSOV = kuznetsov_params()


def _kuznetsov_registry_field(t: Any, y: Any, p: Any, exposure: Any) -> Any:
    # Checkpoint blockade as less tumour-induced effector inactivation (PD-1/PD-L1 exhaustion):
    # mu -> mu / (1 + potency E). Time in days (the published model's unit is 9.08 days).
    params = _KUZNETSOV._replace(
        alpha=p["growth"], mu=_KUZNETSOV.mu / (1.0 + p["potency"] * jnp.maximum(exposure, 0.0))
    )
    return kuznetsov_field(t, y, params) / KUZNETSOV_DAYS_PER_UNIT


kuznetsov_immune = TumourModel(
    name="kuznetsov_immune",
    title="Kuznetsov effector-tumour model with checkpoint blockade",
    params=(
        v0_spec(),
        ParamSpec(
            "cells",
            "10^6 cells",
            0.0,
            np.inf,
            100.0,
            1.5,
            "tumour cells at t0",
            "assumption: between the dormant (8.2) and escaped (447) equilibria of the "
            "published parameters",
        ),
        ParamSpec(
            "effectors",
            "10^6 cells",
            0.0,
            np.inf,
            1.0,
            1.0,
            "effector (cytotoxic) cells at t0",
            "assumption",
        ),
        ParamSpec(
            "growth",
            "1",
            0.0,
            np.inf,
            1.636,
            0.5,
            "tumour growth rate (per 9.08-day model time unit)",
            KUZNETSOV_1994,
        ),
        ParamSpec(
            "potency",
            "1/exposure",
            0.0,
            np.inf,
            1.0,
            1.5,
            "reduction of tumour-induced effector inactivation per unit exposure",
            "assumption of this library (checkpoint blockade acting on inactivation)",
        ),
    ),  # fmt: skip
    vector_field=_kuznetsov_registry_field,
    initial_state=lambda p: jnp.stack([p["effectors"], p["cells"]]),
    observable=lambda y, p: p["v0"] * y[..., 1] / p["cells"],
    closed_form=None,
    uses_exposure=True,
    citation=KUZNETSOV_1994,
    description=(
        "Effector cells x and tumour cells y (10^6 cells) with the published BCL1 "
        "parameters except the tumour growth rate; a checkpoint inhibitor divides the "
        "tumour-induced inactivation of effectors by 1 + potency E(t). The measured size "
        "is proportional to the tumour cells (v0 at t0)."
    ),
    equation=(
        "dx/dt = (s + r x y/(eta + y) - mu x y/(1 + potency E) - delta x) / 9.08; "
        "dy/dt = (growth y (1 - b y) - x y) / 9.08; size = v0 y / y(t0)"
    ),
    fixed_step=True,
    observes="tumour size",
)
