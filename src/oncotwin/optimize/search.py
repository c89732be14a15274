"""Search: gradient-based optimisation of continuous schedule parameters, discrete search over
schedule families, Pareto fronts, and the generic driver that turns a modality's problem into a
:class:`~oncotwin.optimize.recommendation.Recommendation`.

Continuous parameters (e.g. the dose of every fraction) are optimised through the
differentiable JAX simulator with optax's L-BFGS inside an augmented Lagrangian loop for the
constraints (Nocedal J, Wright SJ. Numerical Optimization, 2nd ed. 2006, chapters 7 and 17;
the inequality form with ``max(0, mu + rho g)``), with box bounds by a logistic transform. Discrete choices (fraction number, cycle length, number of cycles, on/off
thresholds) are enumerated: the families are small, so every member is simulated over the same
posterior draws and the best feasible one is exact within the family.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import ModelError
from .constraints import Constraint
from .objectives import Objective, Trajectories
from .recommendation import Candidate, CandidateResult, Comparison, Recommendation
from .risk import RiskMeasure

__all__ = [
    "ContinuousResult",
    "Problem",
    "augmented_lagrangian",
    "evaluate",
    "pareto_front",
    "run",
]

Progress = Callable[[str, int], Callable[[int], None]]


def pareto_front(efficacy: Any, toxicity: Any) -> np.ndarray:
    """Indices of the non-dominated points (efficacy: larger better; toxicity: smaller better).

    A point is dominated when another is at least as good on both and strictly better on one.
    Returns the indices sorted by toxicity.
    """
    e = np.asarray(efficacy, float)
    t = np.asarray(toxicity, float)
    keep = []
    for i in range(e.size):
        dominated = np.any((e >= e[i]) & (t <= t[i]) & ((e > e[i]) | (t < t[i])))
        if not dominated and np.isfinite(e[i]) and np.isfinite(t[i]):
            keep.append(i)
    return np.asarray(sorted(keep, key=lambda i: (t[i], -e[i])), dtype=int)


@dataclass(frozen=True)
class ContinuousResult:
    """Outcome of :func:`augmented_lagrangian`.

    Attributes:
        x: the solution (within the bounds).
        value: objective at x.
        ineq: inequality constraint values at x (<= 0 when met).
        eq: equality constraint values at x (0 when met).
        converged: constraints met within tolerance and the objective settled.
        iterations: L-BFGS iterations taken in total.
    """

    x: np.ndarray
    value: float
    ineq: np.ndarray
    eq: np.ndarray
    converged: bool
    iterations: int


def _none(x: Any, args: Any) -> Any:
    import jax.numpy as jnp

    return jnp.zeros(0)


@functools.lru_cache(maxsize=32)
def _inner_solver(fun: Callable[..., Any], ineq: Callable[..., Any], eq: Callable[..., Any],
                  steps: int, rho: float) -> Any:  # fmt: skip
    """The compiled inner minimisation; cached on the (module-level) functions, so repeated
    calls with new data in `args` reuse one compilation."""
    import optax

    from .._jax import jax, jnp

    opt = optax.lbfgs()

    def lagrangian(xx: Any, mu: Any, lam: Any, args: Any) -> Any:
        g, h = ineq(xx, args), eq(xx, args)
        pen = jnp.sum(jnp.maximum(0.0, mu + rho * g) ** 2 - mu**2) / (2 * rho)
        return fun(xx, args) + pen + jnp.sum(lam * h) + 0.5 * rho * jnp.sum(h**2)

    @jax.jit
    def inner(x: Any, mu: Any, lam: Any, lo: Any, width: Any, args: Any) -> Any:
        def to_x(u: Any) -> Any:  # the box as a logistic transform: the inner problem is free
            return lo + width * jax.nn.sigmoid(u)

        def f(u: Any) -> Any:
            return lagrangian(to_x(u), mu, lam, args)

        p = jnp.clip((x - lo) / width, 1e-9, 1 - 1e-9)
        u = jnp.log(p) - jnp.log1p(-p)
        value_and_grad = optax.value_and_grad_from_state(f)

        def step(carry: Any, _: Any) -> tuple[Any, None]:
            uu, st = carry
            value, grad = value_and_grad(uu, state=st)
            upd, st = opt.update(grad, st, uu, value=value, grad=grad, value_fn=f)
            return (optax.apply_updates(uu, upd), st), None

        (u, _), _ = jax.lax.scan(step, (u, opt.init(u)), None, length=steps)
        return to_x(u)

    return inner


def augmented_lagrangian(
    fun: Callable[..., Any],
    x0: Any,
    lower: Any,
    upper: Any,
    *,
    ineq: Callable[..., Any] | None = None,
    eq: Callable[..., Any] | None = None,
    args: Any = None,
    outer: int = 12,
    steps: int = 60,
    rho: float = 10.0,
    tol: float = 1e-6,
    xtol: float = 1e-5,
) -> ContinuousResult:
    """Minimise `fun(x)` s.t. ``ineq(x) <= 0``, ``eq(x) = 0``, ``lower <= x <= upper``.

    Each outer iteration minimises the augmented Lagrangian
    ``f + (1/2rho) sum(max(0, mu + rho g)^2 - mu^2) + lam h + (rho/2) h^2``
    with `steps` L-BFGS iterations (optax, zoom line search) on a logistic transform of the
    box, then updates the multipliers ``mu <- max(0, mu + rho g)``, ``lam <- lam + rho h``.
    All functions must be JAX-traceable; the inner loop is one compiled ``lax.scan``.

    Args:
        fun: objective, ``x -> scalar``, or ``(x, args) -> scalar`` when `args` is given.
        x0: start (clipped into the box).
        lower, upper: finite bounds (arrays like x0).
        ineq, eq: constraint functions ``x -> vector`` (``(x, args)`` with `args`), or None.
        args: a pytree of data passed to every function; with module-level functions and new
            `args` the compiled solver is reused.
        outer: outer iterations. steps: L-BFGS iterations per outer iteration.
        rho: penalty weight.
        tol: feasibility tolerance (absolute, in the constraints' units).
        xtol: converged when feasible and x moves less than this (relative) in one outer
            iteration.

    Returns:
        A :class:`ContinuousResult`.

    Raises:
        ModelError: infinite bounds.
    """
    from .._jax import jnp

    if args is None:  # plain functions of x
        f1, g1, h1 = fun, ineq, eq
        fun = lambda x, a: f1(x)  # noqa: E731
        ineq = None if g1 is None else (lambda x, a: g1(x))  # noqa: E731
        eq = None if h1 is None else (lambda x, a: h1(x))  # noqa: E731
    g_fn, h_fn = ineq or _none, eq or _none
    lo, hi = jnp.asarray(lower, float), jnp.asarray(upper, float)
    if not (bool(jnp.all(jnp.isfinite(lo))) and bool(jnp.all(jnp.isfinite(hi)))):
        raise ModelError("augmented_lagrangian needs finite bounds")
    width = jnp.maximum(hi - lo, 1e-12)
    x = jnp.clip(jnp.asarray(x0, float), lo, hi)
    mu = jnp.zeros(jnp.shape(g_fn(x, args)))
    lam = jnp.zeros(jnp.shape(h_fn(x, args)))
    inner = _inner_solver(fun, g_fn, h_fn, steps, rho)
    previous = np.asarray(x)
    converged = False
    k = 0
    for k in range(1, outer + 1):  # noqa: B007 - k is reported
        x = inner(x, mu, lam, lo, width, args)
        g, h = g_fn(x, args), h_fn(x, args)
        mu = jnp.maximum(0.0, mu + rho * g)
        lam = lam + rho * h
        feasible = bool(jnp.all(g <= tol)) and bool(jnp.all(jnp.abs(h) <= tol))
        # stationary: the iterate no longer moves between outer iterations
        moved = float(np.max(np.abs(np.asarray(x) - previous), initial=0.0))
        previous = np.asarray(x)
        if k >= 3 and feasible and moved <= xtol * max(1.0, float(np.max(np.abs(previous)))):
            converged = True
            break
    return ContinuousResult(
        np.asarray(x), float(fun(x, args)), np.asarray(g_fn(x, args)),
        np.asarray(h_fn(x, args)), converged, k * steps,
    )  # fmt: skip


class Problem(Protocol):
    """What a modality supplies to the search (see :mod:`oncotwin.optimize.modalities`)."""

    modality: str
    patient: str
    start: float
    n_draws: int
    seed: int
    unit: str
    toxicity_label: str
    notes: tuple[str, ...]
    warning: str | None
    provenance: dict[str, Any]

    def standard_of_care(self) -> Candidate: ...

    def family(self) -> list[Candidate]: ...

    def refine(
        self, objective: Objective, risk: RiskMeasure, constraints: Sequence[Constraint]
    ) -> list[Candidate]: ...

    def default_constraints(self) -> list[Constraint]: ...

    def simulate(
        self, candidates: Sequence[Candidate], horizon: float
    ) -> list[tuple[Trajectories, dict[str, Any], float]]: ...

    def default_horizon(self, objective: Objective) -> float: ...


def evaluate(
    problem: Problem,
    candidates: Sequence[Candidate],
    objective: Objective,
    risk: RiskMeasure,
    constraints: Sequence[Constraint],
    *,
    progress: Progress | None = None,
    chunk: int = 16,
) -> list[CandidateResult]:
    """Simulate candidates over the problem's posterior draws and score them.

    Returns:
        One :class:`CandidateResult` per candidate, in the given order.
    """
    horizon = objective.horizon or problem.default_horizon(objective)
    tick = progress("simulating schedules", len(candidates)) if progress else None
    out: list[CandidateResult] = []
    for i in range(0, len(candidates), chunk):
        part = list(candidates[i : i + chunk])
        for cand, (traj, metrics, tox) in zip(part, problem.simulate(part, horizon), strict=True):
            outcome = objective(traj)
            value = float(risk.of_outcome(outcome, objective.larger_is_better))
            checks = tuple(c.check(cand.schedule, metrics, problem.start) for c in constraints)
            out.append(CandidateResult(cand, outcome, value, float(tox), checks, traj))
        if tick:
            tick(len(part))
    return out


def _rank_key(r: CandidateResult, larger_is_better: bool) -> tuple[float, float, int]:
    v = r.risk_value if np.isfinite(r.risk_value) else -np.inf
    # best risk value first; ties: lower toxicity, then the standard of care
    return (-v if larger_is_better else v, r.toxicity, 0 if r.candidate.standard else 1)


def run(
    problem: Problem,
    objective: Objective,
    risk: RiskMeasure,
    constraints: Sequence[Constraint] = (),
    *,
    top: int = 3,
    threshold: float = 0.8,
    use_defaults: bool = True,
    refine: bool = True,
    progress: Progress | None = None,
) -> Recommendation:
    """Optimise a modality's schedule for `objective` under `risk` and `constraints`.

    The standard of care, every member of the problem's schedule families and (with `refine`)
    the gradient-optimised schedules are simulated on the same posterior draws; the feasible
    ones are ranked by the risk measure of the objective.

    Args:
        problem: the modality's problem (twin draws, families, toxicity model).
        objective, risk: what to optimise and how to summarise the draws.
        constraints: extra constraints (added to the problem's defaults if `use_defaults`).
        top: number of best schedules to return.
        threshold: probability of beating the standard of care for a confident
            recommendation (0.5-1).
        progress: ``start(label, total) -> advance(n)`` callback.

    Returns:
        A :class:`~oncotwin.optimize.recommendation.Recommendation`.
    """
    if not 0.5 <= threshold < 1.0:
        raise ModelError(f"confidence threshold must be in [0.5, 1), got {threshold}")
    cons = [*(problem.default_constraints() if use_defaults else []), *constraints]
    standard = problem.standard_of_care()
    candidates = [standard, *problem.family()]
    if refine:
        candidates += problem.refine(objective, risk, cons)
    seen: set[str] = set()
    unique = []
    for c in candidates:  # the same plan reached twice is evaluated once
        if c.name not in seen:
            seen.add(c.name)
            unique.append(c)
    results = evaluate(problem, unique, objective, risk, cons, progress=progress)
    soc = results[0]
    ranked = sorted(results, key=lambda r: _rank_key(r, objective.larger_is_better))
    feasible = [r for r in ranked if r.feasible]
    best = tuple(feasible[:top])
    comparison = (
        Comparison.of(best[0], soc, objective.larger_is_better, threshold) if best else None
    )
    if best and best[0].candidate.standard:
        comparison = None
    eff = [r.risk_value if objective.larger_is_better else -r.risk_value for r in feasible]
    front = pareto_front(eff, [r.toxicity for r in feasible]) if feasible else np.zeros(0, int)
    # Keep the forecast trajectories only where they are shown (memory: draws x times each).
    shown = {id(soc), *(id(r) for r in best), *(id(feasible[i]) for i in front)}
    ranked = [r if id(r) in shown else dataclasses.replace(r, trajectories=None) for r in ranked]
    best = tuple(next(x for x in ranked if x.candidate is r.candidate) for r in best)
    pareto = tuple(next(x for x in ranked if x.candidate is feasible[i].candidate) for i in front)

    return Recommendation(
        patient=problem.patient, modality=problem.modality, objective=objective, risk=risk,
        results=tuple(ranked), best=best, standard=soc, comparison=comparison,
        pareto=pareto, toxicity_label=problem.toxicity_label,
        unit=problem.unit if objective.unit == "data" else objective.unit, threshold=threshold,
        n_draws=problem.n_draws, seed=problem.seed, warning=problem.warning,
        notes=problem.notes, data_unit=problem.unit,
        provenance={**problem.provenance, "constraints": [c.spec() for c in cons],
                    "n_candidates": len(unique)},
    )  # fmt: skip
