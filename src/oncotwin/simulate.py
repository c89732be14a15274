"""Simulate a model under a schedule: closed forms where they hold, ODE solvers otherwise.

Following diffrax, the equations (the model), the solver and its tolerances, and the save
times are separate values. :func:`trajectory` is the pure, jittable, vmappable core used by
calibration and forecasting; :func:`simulate` is the checked entry point for people.

Two ODE paths. Adaptive Tsit5 (diffrax) for models that declare nothing. Fixed-step RK4 for
models that declare ``fixed_step`` (mechanistic response models: Friberg, Zhang, Kuznetsov):
a ``lax.scan`` over a grid made of the save times, every jump of the exposure (doses, infusion
ends, switches) and evenly spaced times, with a fixed number of RK4 steps in each interval (the
model's ``rk4_grid``, chosen for its fastest rates over its usual horizons). Exposure is smooth
inside each interval, so the scheme keeps its 4th order; the grid has a static size, so the
solve compiles in seconds and has exact derivatives of any order (calibration differentiates
twice through it for the Laplace Hessian, which through diffrax's adaptive loop took minutes to
compile).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._jax import jax, jnp
from .errors import ModelError, SimulationError
from .models import TumourModel, get_model
from .models.base import Params
from .schedule import ExposureArrays, Schedule, ScheduleIntegrals, exposure_at


@dataclass(frozen=True)
class SolverSettings:
    """ODE solver choice: Tsit5 with an adaptive PID step, relative/absolute tolerances."""

    rtol: float = 1e-7
    atol: float = 1e-9
    max_steps: int = 4096
    # fixed-step RK4 path (models with ``fixed_step``): evenly spaced extra nodes over the
    # solve, and RK4 steps between consecutive nodes (see the module docstring); None: the
    # model's own ``rk4_grid``
    rk4_nodes: int | None = None
    rk4_substeps: int | None = None


DEFAULT_SOLVER = SolverSettings()


def uses_closed_form(model: TumourModel, schedule: Schedule | None) -> bool:
    """Whether the model's closed form is exact for this schedule."""
    return model.closed_form is not None


def trajectory(
    model: TumourModel,
    params: Params,
    tau: Any,
    t0: Any,
    arrays: ExposureArrays,
    *,
    closed_form: bool,
    solver: SolverSettings = DEFAULT_SOLVER,
) -> tuple[Any, Any]:
    """Observed quantity at times ``t0 + tau`` and a success flag (pure; jit and vmap freely).

    Args:
        model: the tumour model.
        params: parameter values (scalars, or arrays under vmap).
        tau: times since the reference time t0, days, sorted ascending; negative values are
            evaluated by the closed form, and held at t0 by the ODE path.
        t0: reference time, days (absolute time of the model's initial state).
        arrays: the schedule as :class:`ExposureArrays` (absolute times).
        closed_form: use the model's closed form instead of the ODE solver.
        solver: ODE settings.

    Returns:
        ``(values, ok)``: the observable at each time, and True when the solver succeeded.
    """
    tau = jnp.asarray(tau, dtype=float)
    if closed_form and model.closed_form is not None:
        return model.closed_form(tau, params, ScheduleIntegrals(tau, t0, arrays)), jnp.array(True)
    if model.fixed_step:
        return _fixed_step(model, params, tau, t0, arrays, solver)
    import diffrax

    def field(s: Any, y: Any, args: Any) -> Any:
        return model.vector_field(s, y, params, exposure_at(s + t0, arrays))

    # Jumps outside the integration window are moved before it so they never stop the solver.
    jumps = _jump_times(arrays, t0)
    save = jnp.maximum(tau, 0.0)
    t1 = jnp.maximum(jnp.max(save), 1e-9)
    controller = diffrax.ClipStepSizeController(
        diffrax.PIDController(rtol=solver.rtol, atol=solver.atol), jump_ts=jumps
    )
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Tsit5(),
        t0=0.0,
        t1=t1,
        dt0=None,
        y0=model.initial_state(params),
        saveat=diffrax.SaveAt(ts=save),
        stepsize_controller=controller,
        max_steps=solver.max_steps,
        throw=False,
    )
    ok = sol.result == diffrax.RESULTS.successful
    return model.observable(sol.ys, params), ok


def _jump_times(arrays: ExposureArrays, t0: Any) -> Any:
    """Times since t0 where the exposure jumps; padding and absent infusion ends give -1."""
    return jnp.concatenate(
        [
            jnp.where(arrays.dose_amount != 0, arrays.dose_time - t0, -1.0),
            jnp.where(
                (arrays.dose_amount != 0) & (arrays.dose_duration > 0),
                arrays.dose_time + arrays.dose_duration - t0,
                -1.0,
            ),
            jnp.where(arrays.switch_delta != 0, arrays.switch_time - t0, -1.0),
        ]
    )


def advance(
    model: TumourModel,
    params: Params,
    y: Any,
    a: Any,
    b: Any,
    t0: Any,
    arrays: ExposureArrays,
    substeps: int,
) -> Any:
    """The state at ``b`` from state `y` at ``a`` (days since t0) by `substeps` RK4 steps.

    The exposure is read just inside [a, b): its left limit at b, so that a dose given at b
    acts from the next interval on (where it is the right limit at a). A jump strictly inside
    (a, b) costs the scheme its order on that step: callers put jumps on interval ends.
    """
    h = (b - a) / substeps

    def f(s: Any, yy: Any) -> Any:
        inside = jnp.clip(s, a, jnp.maximum(b - 1e-9, a))
        return model.vector_field(s, yy, params, exposure_at(inside + t0, arrays))

    def step(k: Any, yy: Any) -> Any:
        s = a + k * h
        k1 = f(s, yy)
        k2 = f(s + 0.5 * h, yy + 0.5 * h * k1)
        k3 = f(s + 0.5 * h, yy + 0.5 * h * k2)
        k4 = f(s + h, yy + h * k3)
        return yy + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    return jax.lax.fori_loop(0, substeps, step, y)


def fixed_step_states(
    model: TumourModel,
    params: Params,
    tau: Any,
    t0: Any,
    arrays: ExposureArrays,
    solver: SolverSettings = DEFAULT_SOLVER,
) -> Any:
    """States at ``tau`` (days since t0; negative held at t0) by fixed-step RK4 on the grid
    of save times, exposure jumps and even nodes (pure)."""
    n_even = solver.rk4_nodes or model.rk4_grid[0]
    substeps = solver.rk4_substeps or model.rk4_grid[1]
    save = jnp.maximum(tau, 0.0)
    t1 = jnp.max(save)
    even = t1 * jnp.arange(1, n_even + 1) / n_even
    # Jumps outside [0, t1] are clipped to the ends, where they make empty intervals.
    nodes = jnp.concatenate([save, jnp.clip(_jump_times(arrays, t0), 0.0, t1), even])
    order = jnp.argsort(nodes)
    ends = nodes[order]
    starts = jnp.concatenate([jnp.zeros(1), ends[:-1]])

    def interval(y: Any, span: Any) -> tuple[Any, Any]:
        y = advance(model, params, y, span[0], span[1], t0, arrays, substeps)
        return y, y

    _, states = jax.lax.scan(interval, model.initial_state(params), (starts, ends))
    # Position of each save time in the sorted grid (the save times come first in `nodes`).
    return states[jnp.argsort(order)[: save.shape[0]]]


def _fixed_step(
    model: TumourModel,
    params: Params,
    tau: Any,
    t0: Any,
    arrays: ExposureArrays,
    solver: SolverSettings,
) -> tuple[Any, Any]:
    values = model.observable(fixed_step_states(model, params, tau, t0, arrays, solver), params)
    return values, jnp.all(jnp.isfinite(values))


@dataclass(frozen=True)
class Trajectory:
    """A simulated course: `values` of the observed quantity at `times` (days).

    For batched simulations `values` has shape (n_runs, n_times) and `ok` one flag per run:
    a failed run is data (NaN values, ``ok=False``), not an exception.
    """

    times: np.ndarray
    values: np.ndarray
    ok: np.ndarray
    model: str
    method: str  # "closed form", "ode" or "ode (fixed-step RK4)"


def simulate(
    model: str | TumourModel,
    params: Params,
    times: Any,
    schedule: Schedule | None = None,
    *,
    t0: float = 0.0,
    reference: dict[str, float] | None = None,
    method: str = "auto",
    solver: SolverSettings = DEFAULT_SOLVER,
) -> Trajectory:
    """Simulate `model` from its state at `t0` to `times` under `schedule`.

    Args:
        model: a model or its registry name.
        params: parameter values; arrays with a leading batch dimension simulate a batch
            (posterior draws, virtual patients) in one vmapped call.
        times: save times, days (absolute, any order).
        schedule: treatment; None for untreated growth.
        t0: reference time at which the state equals ``v0``, days.
        reference: exposure unit per agent (see :mod:`oncotwin.schedule`).
        method: "auto" (closed form when exact), "closed" or "ode".
        solver: ODE tolerances.

    Returns:
        A :class:`Trajectory`.

    Raises:
        SimulationError: a single (unbatched) run whose ODE solve failed.
        ModelError: unknown model or method, or parameters outside their bounds.
    """
    m = get_model(model)
    m.validate(params)
    if method not in ("auto", "closed", "ode"):
        raise ModelError(f"unknown simulation method {method!r}; use 'auto', 'closed' or 'ode'")
    schedule = schedule or Schedule()
    closed = uses_closed_form(m, schedule) if method == "auto" else method == "closed"
    if closed and m.closed_form is None:
        raise SimulationError(f"model {m.name!r} has no closed form")
    t = np.asarray(times, dtype=float).ravel()
    order = np.argsort(t)
    arrays = jax.tree.map(jnp.asarray, schedule.arrays(reference))
    # A batch is any parameter given as a 1-D array; scalars are shared by every run.
    sizes = {np.shape(v) for v in params.values() if np.ndim(v) > 0}
    if len(sizes) > 1 or any(len(s) > 1 for s in sizes):
        shapes = {k: np.shape(v) for k, v in params.items()}
        raise ModelError(f"batched parameters must be 1-D arrays of one length, got {shapes}")
    batch = bool(sizes)
    shape = next(iter(sizes)) if batch else ()
    p = {k: jnp.broadcast_to(jnp.asarray(v, dtype=float), shape) for k, v in params.items()}

    def one(pp: Params) -> tuple[Any, Any]:
        return trajectory(m, pp, t[order] - t0, t0, arrays, closed_form=closed, solver=solver)

    run = jax.jit(jax.vmap(one) if batch else one)
    values, ok = run(p)
    values = np.asarray(values)
    out = np.empty_like(values)
    out[..., order] = values
    ok = np.asarray(ok)
    out = np.where(ok[..., None] if batch else ok, out, np.nan)
    if not batch and not bool(ok):
        raise SimulationError(f"ODE solve failed for {m.name} with {dict(params)}")
    label = "closed form" if closed else ("ode (fixed-step RK4)" if m.fixed_step else "ode")
    return Trajectory(t, out, ok, m.name, label)
