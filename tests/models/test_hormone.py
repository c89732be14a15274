"""Reference tests of the Zhang 2017 hormone-therapy model (oncotwin.models.hormone).

Provenance of every reference number:
- logistic closed form ``K / (1 + (K/x0 - 1) exp(-r t))``: the solution of dx/dt = r x (1 - x/K),
  which each population follows with treatment off, identity competition matrix and a constant
  T+ carrying capacity (m_off = 0, so K_T+ = k_floor);
- PSA relaxation ``P* + (P0 - P*) exp(-sigma t)``, ``P* = c sum(T) / sigma``: the solution of the
  linear ODE dP/dt = c sum(T) - sigma P with the cells held constant (r = 0);
- pre-treatment equilibrium 6060.606 / 7575.758 T+ / TP cells and PSA 27272.727: the "ESS"
  values of the published example patient in the public re-implementation
  github.com/HannaKlus/Topological-early-warning-system-for-cancer-treatment-resistance,
  ``p_portrait.py`` (Zhang J et al. Nat Commun 2017;8:1816, Methods), and the solution of the
  two linear equilibrium equations by hand: TP = 10000 / (1 + 0.4 (1.5 - 0.7)) = 7575.758;
- switch times: PSA at each switch must equal its threshold (50 % / 100 % of baseline), both
  as reported and when the switch times are replayed as a fixed schedule (independent
  integration without events);
- adaptive therapy delays the takeover by resistant (T-) cells compared with continuous
  therapy, with less drug: the qualitative result of Zhang 2017's simulations (and of its
  pilot trial: median time to progression >= 27 months with 47 % of the standard cumulative
  dose, abstract), for the published parameter set; the numbers asserted are ratios, not
  values read from the paper;
- vmap over a batch of parameter sets equals a Python loop over the same sets.

All simulations share one time grid so that one compiled function serves every test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from oncotwin._jax import jax, jnp
from oncotwin.errors import ModelError
from oncotwin.models import hormone as h

TS = np.linspace(0.0, 4000.0, 401)  # days; shared by every test (one compilation)


@pytest.fixture(scope="module")
def published() -> tuple[h.ZhangParams, jnp.ndarray]:
    params = h.zhang_params()
    return params, h.initial_state(params)


@pytest.fixture(scope="module")
def adaptive(published: tuple[h.ZhangParams, jnp.ndarray]) -> h.HormoneResult:
    params, y0 = published
    return h.simulate_adaptive(params, y0, TS)


@pytest.fixture(scope="module")
def continuous(published: tuple[h.ZhangParams, jnp.ndarray]) -> h.HormoneResult:
    params, y0 = published
    return h.simulate_continuous(params, y0, TS)


def test_pretreatment_equilibrium_matches_published_ess() -> None:
    params = h.zhang_params(k_floor=0.0)
    eq = np.asarray(h.pretreatment_equilibrium(params))
    np.testing.assert_allclose(
        eq, [6060.60606060606, 7575.75757575758, 0.0, 27272.7272727273], rtol=1e-12
    )
    # It is a fixed point of the untreated vector field (T- absent).
    rates = np.asarray(h.vector_field(0.0, jnp.asarray(eq), params, 0.0))
    np.testing.assert_allclose(rates, 0.0, atol=1e-9)
    # T- cannot invade it: its per-capita growth rate there is negative (0.6 x 6060.6 +
    # 0.9 x 7575.8 > 10 000), so adaptive therapy can hold resistant cells back.
    invader = np.asarray(h.vector_field(0.0, jnp.asarray(eq).at[2].set(1.0), params, 0.0))
    assert invader[2] < 0


def test_logistic_closed_form_without_competition() -> None:
    r = np.array([2.7726e-3, 3.4657e-3, 6.6542e-3])
    k = np.array([8000.0, 10000.0, 10000.0])  # K_T+ = k_floor (m_off = 0), K_TP, K_T-
    params = h.zhang_params(alpha=np.eye(3), m_off=0.0, k_floor=k[0])
    x0 = np.array([100.0, 2000.0, 1.0])
    y0 = np.concatenate([x0, [10.0]])
    res = h.simulate_continuous(params, y0, TS, on=False)
    assert bool(res.ok)
    expected = k / (1.0 + (k / x0 - 1.0) * np.exp(-r * TS[:, None]))
    np.testing.assert_allclose(np.asarray(res.cells), expected, rtol=1e-6)
    assert np.all(np.asarray(res.on) == 0.0)


def test_psa_relaxes_to_burden_over_sigma() -> None:
    sigma, c = 0.005, 2.0
    params = h.zhang_params(r=[0.0, 0.0, 0.0], sigma=sigma, c_psa=c)
    cells = np.array([3000.0, 2000.0, 500.0])
    p0 = 100.0
    res = h.simulate_continuous(params, np.concatenate([cells, [p0]]), TS)
    steady = c * cells.sum() / sigma
    expected = steady + (p0 - steady) * np.exp(-sigma * TS)
    np.testing.assert_allclose(np.asarray(res.psa), expected, rtol=1e-7)
    np.testing.assert_allclose(np.asarray(res.cells), np.broadcast_to(cells, (TS.size, 3)))


def test_switches_happen_at_the_psa_thresholds(
    published: tuple[h.ZhangParams, jnp.ndarray], adaptive: h.HormoneResult
) -> None:
    params, y0 = published
    k = int(adaptive.n_switches)
    assert bool(adaptive.ok) and k >= 5  # at least two full on/off cycles
    times = np.asarray(adaptive.switch_times)[:k]
    on = np.asarray(adaptive.switch_on)[:k]
    assert np.all(on == (np.arange(k) % 2 == 0))  # starts on, then alternates
    base = float(adaptive.baseline)
    level = np.where(on, 1.0, 0.5) * base  # entering "on" at baseline, "off" at 50 %
    np.testing.assert_allclose(np.asarray(adaptive.switch_psa)[1:k], level[1:], rtol=1e-6)
    # Replay the switch times as a fixed schedule, saving exactly at them: no event machinery.
    grid = np.sort(np.concatenate([times[1:], np.linspace(0.0, 4000.0, TS.size - (k - 1))]))
    replay = h.simulate_switches(params, y0, grid, times[1:])
    at = np.searchsorted(grid, times[1:])
    np.testing.assert_allclose(np.asarray(replay.psa)[at], level[1:], rtol=1e-6)
    # The replay's PSA stays on the right side of the thresholds between switches.
    psa, state = np.asarray(replay.psa), np.asarray(replay.on)
    assert np.all(psa[state == 1.0] >= 0.5 * base * (1 - 1e-6))
    assert np.all(psa[(state == 0.0)] <= base * (1 + 1e-6))


def test_adaptive_therapy_delays_resistance(
    adaptive: h.HormoneResult, continuous: h.HormoneResult
) -> None:
    """Zhang 2017 (qualitative): adaptive therapy delays T- takeover, with less drug."""
    t_res_adaptive = float(h.time_to_resistance(adaptive))
    t_res_continuous = float(h.time_to_resistance(continuous))
    assert math.isfinite(t_res_continuous)
    assert t_res_adaptive > 1.5 * t_res_continuous
    assert float(h.time_to_psa_progression(adaptive)) > float(h.time_to_psa_progression(continuous))
    assert float(h.drug_on_time(adaptive)) < 0.8 * float(h.drug_on_time(continuous))
    assert float(h.drug_on_time(continuous)) == pytest.approx(4000.0)
    assert int(h.n_cycles(adaptive)) >= 3 and int(h.n_cycles(continuous)) == 1


def test_vmap_over_parameters_equals_loop(published: tuple[h.ZhangParams, jnp.ndarray]) -> None:
    params, y0 = published
    r3 = np.array([6.0e-3, 6.6542e-3, 7.5e-3])  # T- growth rate varies across the batch
    batch = jax.tree.map(lambda a: jnp.stack([a, a, a]), params)
    batch = batch._replace(r=batch.r.at[:, 2].set(r3))
    out = jax.jit(jax.vmap(lambda p: h.simulate_adaptive(p, y0, TS)))(batch)
    for i in range(3):
        one = h.simulate_adaptive(jax.tree.map(lambda a, i=i: a[i], batch), y0, TS)
        assert int(out.n_switches[i]) == int(one.n_switches)
        np.testing.assert_allclose(out.switch_times[i], one.switch_times, rtol=1e-8)
        np.testing.assert_allclose(out.psa[i], one.psa, rtol=1e-8)
    # A faster-growing resistant population takes over sooner.
    t_res = np.asarray(jax.vmap(h.time_to_resistance)(out))
    assert t_res[0] > t_res[1] > t_res[2]


def test_intermittent_fixed_periods(published: tuple[h.ZhangParams, jnp.ndarray]) -> None:
    params, y0 = published
    res = h.simulate_intermittent(params, y0, TS, on_days=100.0, off_days=200.0)
    k = int(res.n_switches)
    np.testing.assert_allclose(np.asarray(res.switch_times)[:4], [0.0, 100.0, 300.0, 400.0])
    assert k == 27  # switches at 0, 100, 300, ..., 3900 (< 4000)
    # On 100 of every 300 days, plus a last full on-period 3900-4000.
    assert float(h.drug_on_time(res)) == pytest.approx(14 * 100.0)
    assert np.all(np.asarray(res.on)[(TS % 300.0 > 0) & (TS % 300.0 < 100.0)] == 1.0)


def test_switches_become_a_schedule(adaptive: h.HormoneResult) -> None:
    schedule = h.to_schedule(adaptive, agent="abiraterone")
    k = int(adaptive.n_switches)
    assert len(schedule.switches) == k
    first_off = float(adaptive.switch_times[1])
    assert schedule.is_on("abiraterone", 0.0)
    assert not schedule.is_on("abiraterone", first_off + 1e-9)
    periods = [p for p in schedule.periods() if p[0] == "abiraterone"]
    on_time = sum(min(end, 4000.0) - start for _, start, end in periods)
    assert on_time == pytest.approx(float(h.drug_on_time(adaptive)))


def test_invalid_arguments_name_the_argument(published: tuple[h.ZhangParams, jnp.ndarray]) -> None:
    params, y0 = published
    with pytest.raises(ModelError, match="stop_below"):
        h.AdaptiveRule(stop_below=-0.5)
    with pytest.raises(ModelError, match="restart_above"):
        h.AdaptiveRule(stop_below=0.5, restart_above=0.4)
    with pytest.raises(ModelError, match="relative_to"):
        h.AdaptiveRule(relative_to="nadir")
    with pytest.raises(ModelError, match="sigma"):
        h.simulate_adaptive(h.zhang_params(sigma=-1.0), y0, TS)
    with pytest.raises(ModelError, match="y0"):
        h.simulate_adaptive(params, np.array([1.0, 0.0, 1.0, 1.0]), TS)
    with pytest.raises(ModelError, match="ts"):
        h.simulate_adaptive(params, y0, TS[::-1])
    with pytest.raises(ModelError, match="on_days"):
        h.simulate_intermittent(params, y0, TS, on_days=0.0, off_days=10.0)
    with pytest.raises(ModelError, match="unknown"):
        h.zhang_params(growth=1.0)
