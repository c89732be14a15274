"""Marker-guided treatment rules executed on a twin's posterior draws.

A threshold rule of a regimen ("abiraterone on until PSA < 50% of baseline, off until PSA >=
100% of baseline", :class:`oncotwin.regimen.ThresholdRule`) cannot become fixed switches before
the marker is forecast: each posterior draw follows its own course, so it switches at its own
times. Here the rule is applied the way a clinic applies it, at decision visits every
``check_every`` days from the forecast start (default 28: monthly marker measurements; an
assumption, set it to the protocol's visit interval), on the model value of the marker:

- on treatment, treatment stops at a visit where the marker is below the stop level;
- off treatment, it restarts at a visit where the marker is at or above the restart level;
- levels relative to baseline are multiples of the draw's marker value at t0 (the subject's
  first observation, i.e. before the therapy the rule governs, as in Zhang et al. Nat Commun
  2017;8:1816).

Decisions run in a ``lax.scan`` over visits inside one jitted ``vmap`` over draws, so any model
of the marker works: a closed form is evaluated exactly at each visit under the switches
decided so far; a fixed-step ODE model carries its state from visit to visit (RK4, 64 steps
per visit interval, which is accurate as long as other treatment jumps are rare inside an
interval); the course is then solved once more on the full grid under the decided switches.
The agent's recorded on/off state at the forecast start is kept; an agent never given before
is switched on at the forecast start.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._jax import jax, jnp
from .errors import ScheduleError
from .inference.problem import Spec, SubjectArrays, predict
from .regimen import ThresholdRule
from .schedule import Schedule, Switch
from .simulate import advance, fixed_step_states

DEFAULT_CHECK_EVERY = 28.0  # days between decision visits
# RK4 steps between visits when an ODE state is carried from visit to visit (0.44-day steps for
# monthly visits); the forecast itself is then re-solved on the full grid
VISIT_SUBSTEPS = 64


def single_rule(rules: Sequence[ThresholdRule], kind: str) -> ThresholdRule:
    """The one rule a forecast can follow, checked against the twin's observed `kind`.

    Raises:
        ScheduleError: more than one rule, or a rule that follows another marker.
    """
    if len(rules) != 1:
        raise ScheduleError(
            f"a forecast follows one threshold rule at a time, got {len(rules)}: "
            + "; ".join(f"{r.agent} {r.text()}" for r in rules)
        )
    rule = rules[0]
    if rule.marker != kind:
        raise ScheduleError(
            f"the rule for {rule.agent!r} follows {rule.marker!r}, but this twin forecasts "
            f"{kind!r}: the marker must be the twin's observed quantity"
        )
    return rule


def rule_plan(plan: Schedule, rule: ThresholdRule, start: float) -> tuple[Schedule, bool]:
    """The plan the rule acts on, and whether the agent is on at `start` (days).

    The rule decides the agent from `start` on, so the plan's own switches of that agent after
    `start` are dropped; an agent never given before is switched on at `start`.
    """
    kept = tuple(s for s in plan.switches if s.agent != rule.agent or s.time <= start)
    given = any(s.agent == rule.agent for s in kept) or any(
        d.agent == rule.agent and d.time <= start for d in plan.doses
    )
    if not given:
        kept += (Switch(start, rule.agent, True),)
    out = Schedule(plan.doses, kept, plan.half_life)
    return out, out.is_on(rule.agent, start)


def decision_times(start: float, end: float, check_every: float) -> np.ndarray:
    """Visit times (days) from `start` to `end`, every `check_every` days.

    Raises:
        ScheduleError: `check_every` not positive.
    """
    if not check_every > 0:
        raise ScheduleError(f"check_every must be > 0 days, got {check_every}")
    return start + check_every * np.arange(int(np.floor(max(end - start, 0.0) / check_every)) + 1)


@functools.lru_cache(maxsize=32)
def _rule_fn(spec: Spec, relative: bool) -> Any:
    """Jitted over draws: switch decisions at the visits, then the course at the save times."""

    def one(z: Any, data: SubjectArrays, visits: Any, levels: Any, start_on: Any, tau: Any):  # type: ignore[no-untyped-def]
        base = data.exposure
        times = jnp.concatenate([base.switch_time, data.t0 + visits])

        def with_switches(deltas: Any) -> SubjectArrays:
            delta = jnp.concatenate([base.switch_delta, deltas])
            return data._replace(exposure=base._replace(switch_time=times, switch_delta=delta))

        scale = predict(spec, z, data, jnp.zeros(1))[0] if relative else 1.0
        stop, restart = levels[0] * scale, levels[1] * scale
        n = visits.shape[0]
        theta, _ = spec.constrain(z, data.ref)
        model = spec.model

        def rule(on: Any, value: Any, deltas: Any, k: Any) -> tuple[Any, Any]:
            new_on = jnp.where(on, value >= stop, value >= restart)
            return new_on, deltas.at[k].set(new_on.astype(float) - on.astype(float))

        def decide(carry: Any, k: Any) -> tuple[Any, Any]:
            # Closed forms: the value at the visit, exactly, under the switches so far.
            on, deltas = carry
            value = predict(spec, z, with_switches(deltas), visits[k][None])[0]
            on, deltas = rule(on, value, deltas, k)
            return (on, deltas), on

        def decide_and_step(carry: Any, k: Any) -> tuple[Any, Any]:
            # ODE models: carry the state from visit to visit instead of re-solving from t0.
            on, deltas, y = carry
            on, deltas = rule(on, model.observable(y, theta), deltas, k)
            nxt = visits[jnp.minimum(k + 1, n - 1)]
            exposure = with_switches(deltas).exposure
            y = advance(model, theta, y, visits[k], nxt, data.t0, exposure, VISIT_SUBSTEPS)
            return (on, deltas, y), on

        if spec.closed_form or not model.fixed_step:
            init: tuple[Any, ...] = (start_on, jnp.zeros(n))
            (_, deltas), states = jax.lax.scan(decide, init, jnp.arange(n))
        else:
            y0 = fixed_step_states(model, theta, visits[:1], data.t0, base, spec.solver)[0]
            init = (start_on, jnp.zeros(n), y0)
            (_, deltas, _), states = jax.lax.scan(decide_and_step, init, jnp.arange(n))
        return predict(spec, z, with_switches(deltas), tau), states

    return jax.jit(jax.vmap(one, in_axes=(0, None, None, None, None, None)))


def forecast_draws(
    spec: Spec,
    z: Any,
    data: SubjectArrays,
    tau: Any,
    rule: ThresholdRule,
    visits_tau: np.ndarray,
    start_on: bool,
) -> tuple[Any, np.ndarray]:
    """Model values and treatment states of each draw under `rule`.

    Args:
        spec: the statistical model.
        z: unconstrained posterior draws, (n_draws, n_params).
        data: the subject's arrays with the plan from :func:`rule_plan`.
        tau: forecast times since t0, days.
        rule: the threshold rule.
        visits_tau: decision visits since t0, days.
        start_on: whether the agent is on at the forecast start.

    Returns:
        ``(latent, on)``: model values (n_draws, n_times), and the treatment state decided at
        each visit, (n_draws, n_visits) booleans.
    """
    restart = np.inf if rule.restart_above is None else rule.restart_above
    levels = jnp.asarray([rule.stop_below, restart])
    latent, states = _rule_fn(spec, rule.relative_to == "baseline")(
        z, data, jnp.asarray(visits_tau), levels, jnp.asarray(start_on), jnp.asarray(tau)
    )
    return latent, np.asarray(states)
