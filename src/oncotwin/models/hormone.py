"""Continuous, intermittent and adaptive hormone therapy of prostate cancer, with PSA.

What: the Lotka-Volterra competition model of Zhang J, Cunningham JJ, Brown JS, Gatenby RA,
"Integrating evolutionary dynamics into treatment of metastatic castrate-resistant prostate
cancer", Nat Commun 2017;8:1816 (Methods), with three cell types

- T+ (androgen dependent; uses testosterone made by TP cells),
- TP (testosterone producing; their carrying capacity collapses under abiraterone),
- T- (androgen independent: resistant),

and PSA as a linear readout of the total burden::

    dx_i/dt = r_i x_i (1 - sum_j alpha_ij x_j / K_i)        i in (T+, TP, T-)
    K_T+ = m x_TP + k_floor,   m = 1.5 off treatment, 0.5 on treatment
    K_TP = 10 000 off treatment, 100 on treatment,   K_T- = 10 000
    dPSA/dt = c sum_i x_i - sigma PSA

Treatment (abiraterone on top of androgen deprivation) is an on/off state. Three rules:
:func:`simulate_continuous` (always on), :func:`simulate_intermittent` (fixed on/off periods),
:func:`simulate_switches` (any given switch times) and :func:`simulate_adaptive`: the rule of the
Zhang 2017 pilot trial, on until PSA < 50 % of its pre-treatment value, off until PSA is back
at that value (:class:`AdaptiveRule`).

Why: adaptive therapy keeps drug-sensitive cells to compete with resistant ones (competitive
release; Zhang 2017, Fig. 1). Comparing it with continuous therapy needs exact switching:
each segment is integrated by diffrax until the PSA threshold crossing, found by diffrax's
event root finder, inside a ``jax.lax.while_loop`` over segments, so the whole simulation
jit-compiles and vmaps over parameter values. The switch times come back with the trajectory
and become the on/off :class:`~oncotwin.schedule.Switch` records of a schedule
(:func:`to_schedule`).

Parameter values (:func:`zhang_params`): growth rates r, carrying capacities, the on/off
values of m and K_TP, sigma = 0.5/day and the competition matrix of the paper's example
patient, as implemented in a public re-implementation that we read:
github.com/HannaKlus/Topological-early-warning-system-for-cancer-treatment-resistance, files
``Model.py`` (r, K, m, sigma) and ``p_portrait.py`` (alpha; pre-treatment equilibrium
6060.6 / 7575.8 / 0 cells, PSA 27272.7). The same numbers appear in an independent public
reinforcement-learning environment of the model ("patient #1"), and the growth rates in an
independent public Matlab optimal-control code of it. The model structure (carrying capacity
of T+ proportional to TP, abiraterone lowering K_TP and m, PSA as produced by all cells and
cleared at rate sigma) follows the authors' discrete-time code,
github.com/cunninghamjj/Applying-evolutionary-principles-to-optimize-control-of-mcrpc
(``ADT_ONLY.m``, ``ABI_ADT.m``; Jessica Cunningham, Moffitt). The paper's own parameter
table could not be read directly here, so the values are verified by agreement of these
independent sources, not against the paper.

Numerical choices (assumptions, documented in docs/treatments/hormone.md):

- cell numbers are integrated on the log scale: the T+ rate depends on x_TP through K_T+, which
  makes the linear-scale system stiff once TP collapses; on the log scale it is not;
- ``k_floor`` (1 cell) keeps K_T+ positive when x_TP -> 0 (the authors' code floors cell
  numbers at 0.1 instead); it changes the equilibria by about one cell;
- PSA is in the model's unit (``c = 1`` per cell per day); scale ``c`` to express it in ng/mL
  for a given patient. Switching rules relative to baseline do not depend on ``c``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import diffrax
import numpy as np
import optimistix as optx

from .._jax import jax, jnp
from ..errors import ModelError
from ..schedule import Schedule, Switch
from .base import ParamSpec, TumourModel, v0_spec

ZHANG_2017 = (
    "Zhang J, Cunningham JJ, Brown JS, Gatenby RA. Integrating evolutionary dynamics into "
    "treatment of metastatic castrate-resistant prostate cancer. Nat Commun 2017;8:1816"
)
POPULATIONS = ("T+", "TP", "T-")


class ZhangParams(NamedTuple):
    """Parameters of the Zhang 2017 model (a pytree: stack fields to vmap over patients).

    Attributes:
        r: growth rates of (T+, TP, T-), 1/day, shape (..., 3).
        alpha: competition matrix, ``alpha[i, j]`` = effect of population j on i, shape (..., 3, 3).
        k_tp_off: carrying capacity of TP cells off treatment, cells.
        k_tp_on: carrying capacity of TP cells on treatment (abiraterone), cells.
        k_tminus: carrying capacity of T- cells, cells.
        m_off: T+ cells supported per TP cell off treatment.
        m_on: T+ cells supported per TP cell on treatment.
        sigma: PSA clearance rate, 1/day.
        c_psa: PSA produced per cell per day (PSA unit per cell per day).
        k_floor: added to K_T+ so it stays positive when TP vanishes, cells.
    """

    r: Any
    alpha: Any
    k_tp_off: Any
    k_tp_on: Any
    k_tminus: Any
    m_off: Any
    m_on: Any
    sigma: Any
    c_psa: Any
    k_floor: Any


def zhang_params(**overrides: Any) -> ZhangParams:
    """The published parameter set (Zhang 2017, example patient), with optional overrides.

    Args:
        **overrides: field values of :class:`ZhangParams` to replace.

    Returns:
        The parameters as float64 JAX arrays.

    Raises:
        ModelError: an unknown field name.
    """
    values: dict[str, Any] = {
        "r": [2.7726e-3, 3.4657e-3, 6.6542e-3],  # 1/day
        "alpha": [[1.0, 0.7, 0.8], [0.4, 1.0, 0.5], [0.6, 0.9, 1.0]],
        "k_tp_off": 10_000.0,
        "k_tp_on": 100.0,
        "k_tminus": 10_000.0,
        "m_off": 1.5,
        "m_on": 0.5,
        "sigma": 0.5,
        "c_psa": 1.0,
        "k_floor": 1.0,
    }
    unknown = set(overrides) - set(values)
    if unknown:
        raise ModelError(f"unknown Zhang parameter(s) {sorted(unknown)}; known: {list(values)}")
    values.update(overrides)
    return ZhangParams(**{k: jnp.asarray(v, dtype=float) for k, v in values.items()})


def validate_params(params: ZhangParams) -> None:
    """Check concrete parameter values (skipped for traced values inside jit/vmap).

    Raises:
        ModelError: a parameter with the wrong shape or outside its domain, naming it.
    """
    for name in ZhangParams._fields:
        value = getattr(params, name)
        if isinstance(value, jax.core.Tracer):
            continue
        arr = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(arr)):
            raise ModelError(f"Zhang parameter {name} must be finite, got {arr}")
        if name == "r" and arr.shape[-1:] != (3,):
            raise ModelError(f"Zhang parameter r must have shape (..., 3), got {arr.shape}")
        if name == "alpha" and arr.shape[-2:] != (3, 3):
            raise ModelError(f"Zhang parameter alpha must have shape (..., 3, 3), got {arr.shape}")
        non_negative = ("alpha", "r", "k_floor", "m_off", "m_on")
        if name in non_negative and np.any(arr < 0):
            raise ModelError(f"Zhang parameter {name} must be >= 0, got {arr}")
        if name not in non_negative and np.any(arr <= 0):
            raise ModelError(f"Zhang parameter {name} must be > 0, got {arr}")


def pretreatment_equilibrium(params: ZhangParams) -> Any:
    """Untreated coexistence equilibrium of T+ and TP without T- cells (Zhang's ESS).

    Solves ``x1 + a12 x2 = m_off x2 + k_floor`` and ``a21 x1 + x2 = k_tp_off``.

    Returns:
        ``[T+, TP, T-, PSA]`` with T- = 0 and PSA at its steady state ``c (T+ + TP) / sigma``.
    """
    a = params.alpha
    slope = params.m_off - a[..., 0, 1]
    tp = (params.k_tp_off - a[..., 1, 0] * params.k_floor) / (1.0 + a[..., 1, 0] * slope)
    tplus = slope * tp + params.k_floor
    psa = params.c_psa * (tplus + tp) / params.sigma
    return jnp.stack([tplus, tp, jnp.zeros_like(tp), psa], axis=-1)


def initial_state(params: ZhangParams, scale: float = 0.4, tminus: float = 1.0) -> Any:
    """A pre-treatment state: T+ and TP at `scale` x equilibrium, `tminus` resistant cells.

    The 0.4 default follows the re-implementations cited in the module docstring (treatment
    starts with the tumour at 40 % of its equilibrium). The number of resistant cells at the
    start is not given there (they start T- at ~0); 1 cell is this module's assumption.

    Args:
        params: model parameters.
        scale: fraction of the untreated equilibrium for T+ and TP (> 0).
        tminus: T- cells at the start (> 0: cells are integrated on the log scale).

    Returns:
        ``[T+, TP, T-, PSA]`` with PSA at the steady state of the given burden.

    Raises:
        ModelError: `scale` or `tminus` not positive.
    """
    if not scale > 0:
        raise ModelError(f"scale must be > 0, got {scale}")
    if not tminus > 0:
        raise ModelError(f"tminus must be > 0 (log-scale state), got {tminus}")
    eq = pretreatment_equilibrium(params)
    cells = jnp.stack([scale * eq[..., 0], scale * eq[..., 1], jnp.full_like(eq[..., 0], tminus)])
    psa = params.c_psa * jnp.sum(cells, axis=0) / params.sigma
    return jnp.concatenate([cells, psa[None]], axis=0).T


def vector_field(t: Any, y: Any, params: ZhangParams, on: Any) -> Any:
    """d/dt of ``[T+, TP, T-, PSA]`` on the linear scale (``on``: 0 off, 1 on).

    The model as written in the paper, for checks; the solver integrates the same model with
    log cell numbers (:func:`_log_field`).
    """
    x = y[:3]
    dpsa = params.c_psa * jnp.sum(x) - params.sigma * y[3]
    return jnp.concatenate([x * _growth_factors(x, params, on), dpsa[None]])


def _growth_factors(x: Any, params: ZhangParams, on: Any) -> Any:
    """Per-capita growth rates ``r_i (1 - sum_j alpha_ij x_j / K_i)``, 1/day."""
    m = params.m_off + on * (params.m_on - params.m_off)
    k_tp = params.k_tp_off + on * (params.k_tp_on - params.k_tp_off)
    k = jnp.stack([m * x[1] + params.k_floor, k_tp, params.k_tminus])
    return params.r * (1.0 - params.alpha @ x / k)


def _log_field(t: Any, z: Any, args: Any) -> Any:
    params, on = args
    x = jnp.exp(z[:3])
    dpsa = params.c_psa * jnp.sum(x) - params.sigma * z[3]
    return jnp.concatenate([_growth_factors(x, params, on), dpsa[None]])


@dataclass(frozen=True)
class AdaptiveRule:
    """PSA-guided on/off rule (Zhang 2017 pilot trial: stop below 50 %, restart at baseline).

    Attributes:
        stop_below: treatment stops when PSA falls below this level.
        restart_above: treatment restarts when PSA rises back to this level.
        relative_to: "baseline" (levels are fractions of PSA at the start) or "absolute"
            (levels are PSA values, in the unit of the model's PSA).
        start_on: whether treatment is on at the start.
    """

    stop_below: float = 0.5
    restart_above: float = 1.0
    relative_to: str = "baseline"
    start_on: bool = True

    def __post_init__(self) -> None:
        if self.relative_to not in ("baseline", "absolute"):
            raise ModelError(
                f"relative_to must be 'baseline' or 'absolute', got {self.relative_to!r}"
            )
        if not (math.isfinite(self.stop_below) and self.stop_below > 0):
            raise ModelError(f"stop_below must be finite and > 0, got {self.stop_below}")
        if not (math.isfinite(self.restart_above) and self.restart_above > self.stop_below):
            raise ModelError(
                f"restart_above must be finite and > stop_below ({self.stop_below}), "
                f"got {self.restart_above}"
            )


@dataclass(frozen=True)
class HormoneSolver:
    """Tsit5 with a PID step controller; tolerances apply to log cell numbers and PSA."""

    rtol: float = 1e-8
    atol: float = 1e-8
    max_steps: int = 100_000
    root_tol: float = 1e-10  # relative/absolute tolerance of the event root finder, days


DEFAULT_HORMONE_SOLVER = HormoneSolver()


class HormoneResult(NamedTuple):
    """A simulated course (a pytree; under vmap every field gains a leading batch axis).

    Attributes:
        ts: save times, days.
        cells: (n, 3) cell numbers of T+, TP, T- at `ts`.
        psa: (n,) PSA at `ts`.
        on: (n,) treatment state at `ts` (1.0 on, 0.0 off; at a switch time the new state).
        switch_times: (max_switches,) times of the on/off switches, days, in order; the first
            is the start (the initial state); unused slots hold +inf.
        switch_on: (max_switches,) treatment state from each switch on (True = on).
        switch_psa: (max_switches,) PSA at each switch.
        n_switches: number of used switch slots (including the start).
        baseline: PSA at the start.
        t_end: end of the simulation, days.
        ok: True when every segment solved and the switch slots sufficed.
    """

    ts: Any
    cells: Any
    psa: Any
    on: Any
    switch_times: Any
    switch_on: Any
    switch_psa: Any
    n_switches: Any
    baseline: Any
    t_end: Any
    ok: Any


def _check_times(ts: Any) -> None:
    if isinstance(ts, jax.core.Tracer):
        return
    arr = np.asarray(ts, dtype=float)
    if arr.ndim != 1 or arr.size < 2:
        raise ModelError(f"ts must be a 1-D array of at least 2 times, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(np.diff(arr) < 0):
        raise ModelError("ts must be finite and sorted ascending (ts[0] is the start)")


def _check_state(y0: Any) -> None:
    if isinstance(y0, jax.core.Tracer):
        return
    arr = np.asarray(y0, dtype=float)
    if arr.shape != (4,):
        raise ModelError(f"y0 must be [T+, TP, T-, PSA] (shape (4,)), got shape {arr.shape}")
    if not np.all(arr[:3] > 0) or not np.isfinite(arr).all() or arr[3] < 0:
        raise ModelError(f"y0 cells must be > 0 and PSA >= 0 (log-scale cells), got {arr}")


class _Carry(NamedTuple):
    """State of the segment loop."""

    t: Any  # start of the next segment, days
    z: Any  # state there: log cells and PSA
    on: Any  # treatment state of the next segment (1.0 / 0.0)
    k: Any  # switch slots used
    j: Any  # index of the next given switch time
    sw_t: Any
    sw_on: Any
    sw_psa: Any
    out: Any  # (n, 4) saved states
    out_on: Any  # (n,) saved treatment states
    ok: Any
    done: Any


@partial(jax.jit, static_argnames=("max_switches", "solver"))
def simulate_segments(
    params: ZhangParams,
    y0: Any,
    ts: Any,
    levels: Any,
    switch_at: Any,
    start_on: Any,
    *,
    max_switches: int,
    solver: HormoneSolver,
) -> HormoneResult:
    """Segment loop shared by every rule (pure, no argument checks; jit and vmap freely).

    A segment ends at ``ts[-1]``, at the next of the given ``switch_at`` times (sorted, +inf
    padded), or at a PSA threshold crossing found by diffrax's event root finder, whichever
    comes first; ``levels = (stop, restart)`` PSA values, (-inf, inf) for no PSA rule. One
    compiled function serves every rule (it is cached per array shapes and static settings).
    """
    ts = jnp.asarray(ts, dtype=float)
    y0 = jnp.asarray(y0, dtype=float)
    n = ts.shape[0]
    t_start, t_end = ts[0], ts[-1]
    z0 = jnp.concatenate([jnp.log(y0[:3]), y0[3:]])
    term = diffrax.ODETerm(_log_field)
    controller = diffrax.PIDController(rtol=solver.rtol, atol=solver.atol)
    stop, restart = levels[0], levels[1]

    def cond_fn(t: Any, y: Any, args: Any, **kwargs: Any) -> Any:
        # Positive once the threshold is crossed in the direction that matters: PSA below
        # `stop` while on, above `restart` while off (an upcrossing: direction=True).
        on = args[1]
        return jnp.where(on > 0.5, stop - y[3], y[3] - restart)

    event = diffrax.Event(
        cond_fn,
        root_finder=optx.Newton(rtol=solver.root_tol, atol=solver.root_tol),
        direction=True,
    )
    # One +inf slot past the last switch, so indexing never runs off the end.
    sw_times = jnp.concatenate([jnp.asarray(switch_at, dtype=float), jnp.full(1, jnp.inf)])

    def body(c: _Carry) -> _Carry:
        t_seg = jnp.clip(sw_times[jnp.minimum(c.j, sw_times.shape[0] - 1)], c.t, t_end)
        sol = diffrax.diffeqsolve(
            term,
            diffrax.Tsit5(),
            t0=c.t,
            t1=t_seg,
            dt0=None,
            y0=c.z,
            args=(params, c.on),
            # Separate outputs: with an event, diffrax ends the `ts` output at the event and
            # reports the event time and state in the `t1` output.
            saveat=diffrax.SaveAt(
                subs=[diffrax.SubSaveAt(ts=jnp.clip(ts, c.t, t_seg)), diffrax.SubSaveAt(t1=True)]
            ),
            stepsize_controller=controller,
            event=event,
            max_steps=solver.max_steps,
            throw=False,
        )
        assert sol.ts is not None and sol.ys is not None
        t_stop, z_stop = sol.ts[1][0], sol.ys[1][0]
        seg_ok = (sol.result == diffrax.RESULTS.successful) | (
            sol.result == diffrax.RESULTS.event_occurred
        )
        inside = (ts >= c.t) & (ts <= t_stop)
        switched = seg_ok & (t_stop < t_end)
        record = switched & (c.k < max_switches)
        new_on = jnp.where(record, 1.0 - c.on, c.on)
        slot = jnp.minimum(c.k, max_switches - 1)
        # At a switch time the saved point belongs to the new state.
        out_on = jnp.where(inside, c.on, c.out_on)
        out_on = jnp.where(record & (ts == t_stop), new_on, out_on)
        return _Carry(
            t=t_stop,
            z=z_stop,
            on=new_on,
            k=c.k + record,
            j=c.j + switched,
            sw_t=jnp.where(record, c.sw_t.at[slot].set(t_stop), c.sw_t),
            sw_on=jnp.where(record, c.sw_on.at[slot].set(new_on > 0.5), c.sw_on),
            sw_psa=jnp.where(record, c.sw_psa.at[slot].set(z_stop[3]), c.sw_psa),
            out=jnp.where(inside[:, None], sol.ys[0], c.out),
            out_on=out_on,
            ok=c.ok & seg_ok & ~(switched & ~record),  # out of switch slots: not ok
            done=~record,
        )

    on0 = jnp.where(start_on, 1.0, 0.0)
    init = _Carry(
        t=t_start,
        z=z0,
        on=on0,
        k=jnp.asarray(1),  # slot 0 records the start
        j=jnp.asarray(0),
        sw_t=jnp.full((max_switches,), jnp.inf).at[0].set(t_start),
        sw_on=jnp.zeros((max_switches,), dtype=bool).at[0].set(on0 > 0.5),
        sw_psa=jnp.full((max_switches,), jnp.nan).at[0].set(y0[3]),
        out=jnp.full((n, 4), jnp.nan),
        out_on=jnp.full((n,), jnp.nan),
        ok=jnp.asarray(True),
        done=jnp.asarray(False),
    )
    c = jax.lax.while_loop(lambda c: ~c.done, body, init)
    return HormoneResult(
        ts=ts,
        cells=jnp.exp(c.out[:, :3]),
        psa=c.out[:, 3],
        on=c.out_on,
        switch_times=c.sw_t,
        switch_on=c.sw_on,
        switch_psa=c.sw_psa,
        n_switches=c.k,
        baseline=y0[3],
        t_end=t_end,
        ok=c.ok,
    )


def _f64(x: Any) -> Any:
    """float64 with a strong type, so that every call hits the same compiled function."""
    return jnp.array(x, dtype=jnp.float64)


def _slots(n_switch_times: int) -> int:
    """Switch slots for `n_switch_times` given switches: 64, or the next power of two (so that
    runs with different numbers of switches share one compiled function)."""
    return max(64, 1 << math.ceil(math.log2(n_switch_times + 1)))


def simulate_adaptive(
    params: ZhangParams,
    y0: Any,
    ts: Any,
    rule: AdaptiveRule = AdaptiveRule(),
    *,
    max_switches: int = 64,
    solver: HormoneSolver = DEFAULT_HORMONE_SOLVER,
) -> HormoneResult:
    """Adaptive therapy: switch at the exact PSA threshold crossings of `rule`.

    Pure in `params`, `y0` and `ts`: wrap in ``jax.jit`` / ``jax.vmap`` freely (the rule, the
    number of switch slots and the solver settings are static).

    Args:
        params: model parameters (:func:`zhang_params`).
        y0: ``[T+, TP, T-, PSA]`` at ``ts[0]`` (cells > 0).
        ts: save times, days, sorted; ``ts[0]`` is the start and ``ts[-1]`` the end.
        rule: the switching rule.
        max_switches: switch slots (including the start); ``ok`` is False if they run out.
        solver: ODE settings.

    Returns:
        A :class:`HormoneResult`; ``switch_times`` are exact threshold crossings.

    Raises:
        ModelError: invalid arguments (concrete values only).
    """
    _check_times(ts)
    _check_state(y0)
    validate_params(params)
    if max_switches < 1:
        raise ModelError(f"max_switches must be >= 1, got {max_switches}")
    base = jnp.asarray(y0, dtype=float)[3]
    scale = base if rule.relative_to == "baseline" else 1.0
    levels = (rule.stop_below * scale, rule.restart_above * scale)
    return simulate_segments(
        params,
        _f64(y0),
        _f64(ts),
        _f64(jnp.stack(levels)),
        _f64(jnp.full(max_switches - 1, jnp.inf)),
        jnp.asarray(rule.start_on),
        max_switches=max_switches,
        solver=solver,
    )


def simulate_switches(
    params: ZhangParams,
    y0: Any,
    ts: Any,
    switch_times: Any,
    *,
    start_on: bool = True,
    solver: HormoneSolver = DEFAULT_HORMONE_SOLVER,
) -> HormoneResult:
    """Treatment toggled at given times (e.g. the switches of a schedule or of an adaptive run).

    Args:
        params: model parameters.
        y0: ``[T+, TP, T-, PSA]`` at ``ts[0]``.
        ts: save times, days, sorted; ``ts[0]`` is the start.
        switch_times: times at which treatment toggles, sorted; +inf entries are padding.
        start_on: treatment state at the start.
        solver: ODE settings.

    Returns:
        A :class:`HormoneResult`.

    Raises:
        ModelError: invalid arguments (concrete values only).
    """
    _check_times(ts)
    _check_state(y0)
    validate_params(params)
    sw = jnp.asarray(switch_times, dtype=float).reshape(-1)
    if not isinstance(switch_times, jax.core.Tracer):
        arr = np.asarray(switch_times, dtype=float).reshape(-1)
        if np.any(np.isnan(arr)) or np.any(np.diff(arr) < 0):
            raise ModelError("switch_times must be sorted ascending and not NaN")
    slots = _slots(sw.shape[0])
    padded = jnp.concatenate([sw, jnp.full(slots - 1 - sw.shape[0], jnp.inf)])
    no_rule = jnp.array([-jnp.inf, jnp.inf])
    return simulate_segments(
        params,
        _f64(y0),
        _f64(ts),
        _f64(no_rule),
        _f64(padded),
        jnp.asarray(start_on),
        max_switches=slots,
        solver=solver,
    )


def simulate_continuous(
    params: ZhangParams,
    y0: Any,
    ts: Any,
    *,
    on: bool = True,
    solver: HormoneSolver = DEFAULT_HORMONE_SOLVER,
) -> HormoneResult:
    """Treatment always on (standard of care), or always off with ``on=False``."""
    return simulate_switches(params, y0, ts, jnp.zeros(0), start_on=on, solver=solver)


def simulate_intermittent(
    params: ZhangParams,
    y0: Any,
    ts: Any,
    on_days: float,
    off_days: float,
    *,
    solver: HormoneSolver = DEFAULT_HORMONE_SOLVER,
) -> HormoneResult:
    """Fixed cycles: `on_days` on treatment, then `off_days` off, from ``ts[0]`` to ``ts[-1]``.

    Raises:
        ModelError: non-positive periods, or times that are not concrete.
    """
    if not (on_days > 0 and off_days > 0 and math.isfinite(on_days + off_days)):
        raise ModelError(f"on_days and off_days must be > 0, got {on_days}, {off_days}")
    if isinstance(ts, jax.core.Tracer):
        raise ModelError(
            "simulate_intermittent needs concrete ts (the number of switches is static); "
            "inside jit use simulate_switches with the switch times"
        )
    _check_times(ts)
    t = np.asarray(ts, dtype=float)  # the number of switches must be static
    cycles = math.ceil((t[-1] - t[0]) / (on_days + off_days))
    starts = t[0] + (on_days + off_days) * np.arange(cycles)
    times = np.stack([starts + on_days, starts + on_days + off_days], axis=1).ravel()
    times = times[times < t[-1]]
    return simulate_switches(params, y0, ts, times, start_on=True, solver=solver)


# ---- summaries -------------------------------------------------------------------------------


def _first_crossing(ts: Any, values: Any, level: Any, after: Any = -jnp.inf) -> Any:
    """First time after `after` at which `values` reaches `level`; inf if never.

    Linear interpolation between save times (jit- and vmap-safe).
    """
    above = (values >= level) & (ts > after)
    i = jnp.argmax(above)
    prev = jnp.maximum(i - 1, 0)
    v0, v1 = values[prev], values[i]
    t0, t1 = ts[prev], ts[i]
    frac = jnp.where((v1 != v0) & (i > 0), (level - v0) / (v1 - v0), 1.0)
    t_cross = jnp.where(i > 0, t0 + jnp.clip(frac, 0.0, 1.0) * (t1 - t0), ts[0])
    return jnp.where(jnp.any(above), jnp.maximum(t_cross, after), jnp.inf)


def time_to_psa_progression(result: HormoneResult, factor: float = 1.25) -> Any:
    """First time PSA reaches `factor` x baseline, days since the start (inf if never).

    A model-level proxy for progression that treats both arms alike (adaptive therapy brings
    PSA back to baseline by design, so the threshold must lie above it). Resolution: the save
    grid, with linear interpolation.
    """
    t = _first_crossing(result.ts, result.psa, factor * result.baseline, result.ts[0])
    return t - result.ts[0]


def time_to_resistance(result: HormoneResult, fraction: float = 0.5) -> Any:
    """First time T- cells make up at least `fraction` of all cells, days since the start."""
    share = result.cells[:, 2] / jnp.sum(result.cells, axis=1)
    return _first_crossing(result.ts, share, fraction) - result.ts[0]


def drug_on_time(result: HormoneResult, until: Any = None) -> Any:
    """Cumulative time on treatment from the start to `until` (default: the end), days.

    Exact: computed from the switch records, not from the save grid.
    """
    end = result.t_end if until is None else jnp.minimum(until, result.t_end)
    start = result.switch_times
    stop = jnp.concatenate([start[1:], jnp.full((1,), jnp.inf)])
    lo = jnp.minimum(start, end)
    hi = jnp.minimum(stop, end)
    return jnp.sum(jnp.where(result.switch_on, hi - lo, 0.0))


def n_cycles(result: HormoneResult) -> Any:
    """Number of on-treatment periods (each restart begins a cycle)."""
    used = jnp.arange(result.switch_on.shape[0]) < result.n_switches
    return jnp.sum(result.switch_on & used)


def to_schedule(result: HormoneResult, agent: str = "abiraterone") -> Schedule:
    """The switches of one (unbatched) run as on/off records of a :class:`Schedule`.

    Raises:
        ModelError: a batched result (vmap output).
    """
    times = np.asarray(result.switch_times)
    if times.ndim != 1:
        raise ModelError(f"to_schedule takes one run, got switch_times of shape {times.shape}")
    k = int(result.n_switches)
    on = np.asarray(result.switch_on)
    return Schedule(switches=tuple(Switch(float(times[i]), agent, bool(on[i])) for i in range(k)))


__all__ = [
    "DEFAULT_HORMONE_SOLVER",
    "POPULATIONS",
    "ZHANG_2017",
    "AdaptiveRule",
    "HormoneResult",
    "HormoneSolver",
    "ZhangParams",
    "drug_on_time",
    "initial_state",
    "n_cycles",
    "pretreatment_equilibrium",
    "simulate_adaptive",
    "simulate_continuous",
    "simulate_intermittent",
    "simulate_segments",
    "simulate_switches",
    "time_to_psa_progression",
    "time_to_resistance",
    "to_schedule",
    "validate_params",
    "vector_field",
    "zhang_params",
]


# ---------------------------------------------------------------------------------------------
# The Zhang model as a registry model: calibrated per patient from PSA under the recorded on/off
# treatment (evid 2 switches, or doses through their K-PD exposure), like every tumour model.

_PUBLISHED = zhang_params()


def _registry_params(p: Any) -> ZhangParams:
    return _PUBLISHED._replace(r=_PUBLISHED.r * p["r_scale"])


def _registry_cells(p: Any) -> Any:
    """Cells at t0: T+ and TP at `burden` x the untreated equilibrium, T- `resist` x those."""
    eq = pretreatment_equilibrium(_registry_params(p))
    sensitive = p["burden"] * (eq[0] + eq[1])
    return jnp.stack([p["burden"] * eq[0], p["burden"] * eq[1], p["resist"] * sensitive])


def _registry_state(p: Any) -> Any:
    cells = _registry_cells(p)
    # log cells (see the module notes), and PSA (c = 1) at the steady state of that burden
    return jnp.concatenate([jnp.log(cells), (jnp.sum(cells) / _PUBLISHED.sigma)[None]])


def _registry_field(t: Any, y: Any, p: Any, exposure: Any) -> Any:
    on = jnp.clip(exposure, 0.0, 1.0)
    params = _registry_params(p)
    x = jnp.exp(y[:3])
    dpsa = jnp.sum(x) - params.sigma * y[3]
    return jnp.concatenate([_growth_factors(x, params, on), dpsa[None]])


def _registry_psa(y: Any, p: Any) -> Any:
    # PSA in the data's unit: the model's PSA relative to its value at t0, times v0.
    return p["v0"] * y[..., 3] * _PUBLISHED.sigma / jnp.sum(_registry_cells(p))


zhang_psa = TumourModel(
    name="zhang_psa",
    title="Zhang adaptive-therapy model (PSA under on/off hormone therapy)",
    params=(
        v0_spec(),
        ParamSpec(
            "burden",
            "1",
            0.0,
            1.0,
            0.4,
            1.0,
            "T+ and TP cells at t0 as a fraction of their untreated equilibrium",
            "0.4 as in the re-implementations cited in " + ZHANG_2017,
        ),
        ParamSpec(
            "resist",
            "1",
            0.0,
            np.inf,
            1e-3,
            2.0,
            "resistant (T-) cells at t0 per sensitive cell",
            "assumption: rare at the start (the cited re-implementations start T- near 0)",
        ),
        ParamSpec(
            "r_scale",
            "1",
            0.0,
            np.inf,
            1.0,
            0.5,
            "multiplier of the published growth rates of the three cell types",
            ZHANG_2017 + " (patient #1 rates: 2.77e-3, 3.47e-3, 6.65e-3 /day)",
        ),
    ),  # fmt: skip
    vector_field=_registry_field,
    initial_state=_registry_state,
    observable=_registry_psa,
    closed_form=None,
    uses_exposure=True,
    citation=ZHANG_2017,
    description=(
        "Lotka-Volterra competition of androgen-dependent (T+), testosterone-producing (TP) "
        "and resistant (T-) cells with the published competition matrix and carrying "
        "capacities; abiraterone (exposure clipped to [0, 1]: on/off switches give 0 or 1) "
        "lowers the TP capacity and the T+ cells supported per TP cell. PSA is produced by "
        "all cells and cleared at 0.5/day; it is reported relative to its value at t0, "
        "times v0. Patient-specific: the burden at t0, the resistant share and a common "
        "scale of the growth rates."
    ),
    equation=(
        "dx_i/dt = r_scale r_i x_i (1 - sum_j a_ij x_j / K_i(on)); "
        "dPSA/dt = sum x_i - 0.5 PSA; PSA_obs = v0 PSA(t) / PSA(t0)"
    ),
    fixed_step=True,
    # steps of at most horizon / 512: 2 days over the 3 years of an adaptive course, against
    # PSA clearance at 0.5/day and TP decline at up to about 0.3/day on treatment
    rk4_grid=(64, 8),
    observes="PSA (ng/mL)",
)
