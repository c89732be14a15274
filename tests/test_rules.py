"""Threshold rules of a regimen executed on a twin's draws (oncotwin.rules, twin.forecast).

References: the module's decisions are checked against independent simulators run with the
switches it decided (hormone.simulate_switches, an event-driven diffrax solver; simulate()
with a fixed schedule), against the rule at every visit, and against the exact threshold
crossing of hormone.simulate_adaptive (Zhang et al. Nat Commun 2017;8:1816 rule: stop below
50 % of baseline PSA, restart at baseline).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from oncotwin._jax import jax, jnp
from oncotwin.errors import ConvergenceWarning, ScheduleError
from oncotwin.inference.calibrate import calibrate_subjects
from oncotwin.inference.priors import Prior
from oncotwin.inference.problem import SubjectData, make_spec
from oncotwin.models import MODELS, hormone
from oncotwin.observe import get_error_model
from oncotwin.regimen import ThresholdRule, parse_regimen
from oncotwin.rules import decision_times, forecast_draws, rule_plan
from oncotwin.schedule import Schedule, Switch
from oncotwin.simulate import simulate
from oncotwin.twin import DigitalTwin

ADAPTIVE = ThresholdRule("abiraterone", "psa", 0.5, 1.0, "baseline")
PSA = {"v0": 12.0, "burden": 0.4, "resist": 2e-3, "r_scale": 1.0}


def _draws_of(model_name: str, params: dict, kind: str, ref: float, rule: ThresholdRule,
              plan: Schedule, end: float, check_every: float):  # fmt: skip
    """forecast_draws for one draw at `params` (sigma 0.1), from t0 = 0."""
    model, err = MODELS[model_name], get_error_model("proportional")
    plan, start_on = rule_plan(plan, rule, 0.0)
    sub = SubjectData("s", np.array([0.0]), np.array([ref]), np.zeros(1, bool), plan, kind, "u")
    arrays = jax.tree.map(jnp.asarray, sub.arrays(Prior.default(model, err)))
    z = jnp.concatenate([model.unconstrain(params, ref), jnp.log(jnp.array([0.1]))])[None]
    visits = decision_times(0.0, end, check_every)
    tau = np.linspace(0.0, end, 101)
    latent, on = forecast_draws(
        make_spec(model, err, plan), z, arrays, jnp.asarray(tau), rule, visits, start_on
    )
    return tau, visits, latent[0], on[0], plan


def _switches(visits: np.ndarray, on: np.ndarray) -> np.ndarray:
    return visits[1:][np.diff(on.astype(int)) != 0]


def test_zhang_rule_agrees_with_the_event_driven_simulator():
    """Daily visits over 800 days: (1) re-simulating the decided switches with the module's
    event-driven diffrax simulator gives the same PSA (1e-4); (2) every decision obeys the rule
    at its visit; (3) the first stop is within one visit of the exact crossing (day 20.3)."""
    tau, visits, latent, on, _ = _draws_of("zhang_psa", PSA, "psa", 12.0, ADAPTIVE, Schedule(),
                                           800.0, 1.0)  # fmt: skip
    switches = _switches(visits, on)
    assert len(switches) >= 3  # off, on, off: the rule cycles
    params = hormone.zhang_params()
    eq = np.asarray(hormone.pretreatment_equilibrium(params))
    cells = np.array([0.4 * eq[0], 0.4 * eq[1], 2e-3 * 0.4 * (eq[0] + eq[1])])
    y0 = np.concatenate([cells, [cells.sum() / float(params.sigma)]])
    ref = hormone.simulate_switches(params, y0, tau, jnp.asarray(switches), start_on=True)
    psa = 12.0 * np.asarray(ref.psa) / float(ref.psa[0])
    np.testing.assert_allclose(latent, psa, rtol=1e-4)
    at_visits = (
        12.0
        * np.asarray(
            hormone.simulate_switches(params, y0, visits, jnp.asarray(switches), start_on=True).psa
        )
        / float(ref.psa[0])
    )
    before = np.concatenate([[True], on[:-1]])
    expected = np.where(before, at_visits >= 0.5 * 12.0, at_visits >= 1.0 * 12.0)
    assert np.array_equal(on, expected)
    exact = hormone.simulate_adaptive(params, y0, np.linspace(0.0, 800.0, 81))
    assert abs(switches[0] - float(exact.switch_times[1])) <= 1.0


def test_closed_form_rule_is_exact_at_each_visit():
    """A Claret twin with a size rule (stop below 60 % of baseline, restart at 90 %), visits
    every 14 days: the course equals simulate() under the decided switches, and each decision
    follows the rule at its visit."""
    rule = ThresholdRule("drug", "volume", 0.6, 0.9, "baseline")
    params = {"v0": 100.0, "kg": 0.02, "kd": 0.08, "lam": 0.005}
    tau, visits, latent, on, plan = _draws_of("claret", params, "volume", 100.0, rule,
                                              Schedule(half_life={"drug": 5.0}), 400.0, 14.0)  # fmt: skip
    switches = _switches(visits, on)
    assert len(switches) >= 2
    fixed = Schedule(
        switches=plan.switches + tuple(Switch(t, "drug", bool(on[list(visits).index(t)]))
                                       for t in switches),
        half_life={"drug": 5.0},
    )  # fmt: skip
    np.testing.assert_allclose(latent, simulate("claret", params, tau, fixed).values, rtol=1e-10)
    at_visits = simulate("claret", params, visits, fixed).values
    before = np.concatenate([[True], on[:-1]])
    assert np.array_equal(on, np.where(before, at_visits >= 60.0, at_visits >= 90.0))


@pytest.fixture(scope="module")
def psa_twin():
    """A zhang_psa twin calibrated on 8 PSA values under continuous abiraterone (days 0-140)."""
    on = Schedule(switches=(Switch(0.0, "abiraterone", True),))
    times = np.arange(0.0, 141.0, 20.0)
    values = simulate("zhang_psa", PSA, times, on).values
    y = values * np.exp(0.05 * np.random.default_rng(1).standard_normal(len(times)))
    sub = SubjectData("p1", times, y, np.zeros(len(times), bool), on, "psa", "ng/ml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        (post,) = calibrate_subjects("zhang_psa", [sub], method="laplace", seed=0, draws=400)
    return DigitalTwin(sub, [post])


def test_twin_forecast_follows_a_regimen_rule(psa_twin):
    """The regimen's text rule drives the forecast: the treatment is off at some visits (it
    was continuous), the provenance names the rule, and a continuous forecast never is."""
    regimen = parse_regimen(
        "abiraterone on until PSA < 50% of baseline, off until PSA >= 100% of baseline"
    )
    times = np.arange(140.0, 1001.0, 20.0)
    fc = psa_twin.forecast(times, rules=regimen.rules, seed=0)
    assert fc.on_treatment is not None and fc.decision_times is not None
    assert fc.on_treatment.shape == (len(fc.draws), len(fc.decision_times))
    assert fc.decision_times[0] == 140.0 and np.all(np.diff(fc.decision_times) == 28.0)
    assert "abiraterone on until PSA < 50% of baseline" in fc.provenance["rule"]
    off_share = 1.0 - fc.on_treatment.mean()
    assert 0.2 < off_share < 0.95
    continuous = psa_twin.forecast(times, seed=0)
    assert continuous.on_treatment is None
    # Under the rule the PSA stays near the band [50 %, 100 %] of baseline until resistance;
    # continuous treatment drives it lower first.
    assert np.median(fc.latent[:, 5]) > np.median(continuous.latent[:, 5])


def test_rule_errors(psa_twin):
    two = (ADAPTIVE, dataclasses.replace(ADAPTIVE, agent="leuprolide"))
    with pytest.raises(ScheduleError, match="one threshold rule at a time"):
        psa_twin.forecast([200.0], rules=two)
    with pytest.raises(ScheduleError, match="follows 'volume'.*forecasts 'psa'"):
        psa_twin.forecast([200.0], rules=(ThresholdRule("abiraterone", "volume"),))
    with pytest.raises(ScheduleError, match="check_every must be > 0"):
        psa_twin.forecast([200.0], rules=(ADAPTIVE,), check_every=0.0)


def test_rule_plan_keeps_history_and_starts_new_agents():
    recorded = Schedule(switches=(Switch(0.0, "abiraterone", True), Switch(50.0, "abiraterone", False),
                                  Switch(90.0, "abiraterone", True)))  # fmt: skip
    plan, on = rule_plan(recorded, ADAPTIVE, 60.0)
    assert not on and plan.switches == recorded.switches[:2]  # off at 60; later switch dropped
    plan, on = rule_plan(Schedule(), ADAPTIVE, 10.0)
    assert on and plan.switches == (Switch(10.0, "abiraterone", True),)


def test_cli_forecast_with_a_regimen_rule(tmp_path):
    """`oncotwin forecast ID --regimen FILE`: a PSA patient (NONMEM-style CSV with an
    abiraterone switch, evid 2) gets a zhang_psa twin and a forecast under the adaptive rule."""
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from oncotwin.cli import app

    times = np.arange(0.0, 141.0, 20.0)
    on = Schedule(switches=(Switch(0.0, "abiraterone", True),))
    psa = simulate("zhang_psa", PSA, times, on).values
    rows = [{"id": "pc-1", "time": 0.0, "evid": 2, "dv": None, "kind": "", "unit": "",
             "agent": "abiraterone", "on": 1}]  # fmt: skip
    rows += [{"id": "pc-1", "time": t, "evid": 0, "dv": v, "kind": "psa", "unit": "ng/mL",
              "agent": "", "on": None} for t, v in zip(times, psa, strict=True)]  # fmt: skip
    events = tmp_path / "psa.csv"
    pd.DataFrame(rows).to_csv(events, index=False)
    regimen = tmp_path / "adaptive.yaml"
    regimen.write_text(
        "items:\n  - abiraterone on until PSA < 50% of baseline, off until PSA >= 100% of baseline\n"
    )
    db = f"sqlite:///{tmp_path / 'r.db'}"
    runner = CliRunner()
    for args in (["ingest", str(events), "--db", db],
                 ["twin", "create", "pc-1", "--model", "zhang_psa", "--method", "laplace", "--db", db]):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["forecast", "pc-1", "--db", db, "--regimen", str(regimen),
                                 "--until", "1600", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    share = out["rule"]["on_treatment_share"]
    assert "abiraterone on until PSA < 50% of baseline" in out["rule"]["rule"]
    # PSA is already below half its baseline at the forecast start: every draw stops at the
    # first visit; PSA recovers off treatment and most draws restart later.
    assert share[0] == 0.0 and max(share) > 0.5
    both = runner.invoke(app, ["forecast", "pc-1", "--db", db, "--regimen", str(regimen),
                               "--schedule", str(regimen)])  # fmt: skip
    assert both.exit_code != 0 and "not both" in both.output
