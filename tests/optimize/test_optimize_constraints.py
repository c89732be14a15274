"""Constraints: hand-worked checks of each rule, and property tests that no schedule the search
returns ever violates a constraint, over random twins (fixed seed, derandomised).

The property is checked independently of the constraint classes: from the returned
schedule's doses we recompute the weekday of every fraction, the dose per fraction, its step,
the normal-tissue BED ``sum d (1 + d / (alpha/beta))`` (Fowler 1989), the total dose and, for
the radiopharmaceutical, the kidney BED of Dale 1985 and the marrow dose from the per-draw
dosimetry, and the fraction of draws within each limit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oncotwin.errors import ModelError
from oncotwin.optimize import (
    AllowedDays,
    MaxCumulative,
    MaxPerAdministration,
    MetricBound,
    MinRest,
    WholeUnits,
    neutropenia,
    parse_constraint,
    parse_objective,
    parse_risk,
    run,
)
from oncotwin.optimize.modalities import RadiopharmaceuticalProblem, RadiotherapyProblem
from oncotwin.optimize.rt_model import RTParams
from oncotwin.schedule import Dose, Schedule


def sched(times: list[float], amounts: list[float]) -> Schedule:
    return Schedule(tuple(Dose(t, a, "x") for t, a in zip(times, amounts, strict=True)))


def test_schedule_rules_on_hand_worked_plans() -> None:
    s = sched([10, 11, 14, 17], [2.0, 2.5, 2.0, 2.0])  # day 10 is a Monday (start_weekday 0)
    assert MaxPerAdministration(2.5).check(s, {}, 10).met
    assert not MaxPerAdministration(2.4).check(s, {}, 10).met
    assert MaxCumulative(8.5).check(s, {}, 10).margin == pytest.approx(0.0)
    assert not MaxCumulative(8.4).check(s, {}, 10).met
    weekend = AllowedDays(0).check(s, {}, 10)  # day 17 = day 7 after start: Monday; 14: Thursday
    assert weekend.met
    assert not AllowedDays(0).check(sched([15], [2.0]), {}, 10).met  # day 5 after a Monday
    assert AllowedDays(5).check(sched([12], [2.0]), {}, 10).met  # Saturday start + 2 = Monday
    rest = MinRest(3).check(s, {}, 10)
    assert not rest.met and rest.value == pytest.approx(1.0) and rest.margin == pytest.approx(-2)
    assert MinRest(1).check(s, {}, 10).met
    assert WholeUnits(0.5).check(s, {}, 10).met
    assert not WholeUnits(1.0).check(s, {}, 10).met
    assert MaxCumulative(2.0).check(s, {}, 16).met  # only the future part (day 17) counts


def test_chance_constraints_count_draws() -> None:
    grades = np.array([0, 1, 2, 3, 4, 4, 2, 1, 0, 0], float)
    c = neutropenia(4, 0.2)  # P(grade >= 4) = 0.2 <= 0.2
    check = c.check(Schedule(), {"neutropenia_grade": grades}, 0)
    assert check.met and check.probability == pytest.approx(0.8) and check.required == 0.8
    assert not neutropenia(4, 0.1).check(Schedule(), {"neutropenia_grade": grades}, 0).met
    assert not neutropenia(3, 0.2).check(Schedule(), {"neutropenia_grade": grades}, 0).met
    strict = MetricBound("bed:kidneys", 40.0).check(Schedule(), {"bed:kidneys": [39, 41]}, 0)
    assert not strict.met and strict.value == 41
    with pytest.raises(ModelError, match="does not apply"):
        c.check(Schedule(), {"oar_bed": 1.0}, 0)


def test_parse_constraint_forms() -> None:
    for text in ("max-dose:5", "cumulative:60", "weekdays", "rest:21", "whole:0.1"):
        c = parse_constraint(text)
        assert parse_constraint(c.spec()) == c
    c = parse_constraint("kidneys-bed:40@0.05")
    assert isinstance(c, MetricBound) and (c.metric, c.limit, c.eps) == ("bed:kidneys", 40, 0.05)
    assert parse_constraint("ntcp:brain<=0.05").metric == "ntcp:brain"  # type: ignore[attr-defined]
    assert parse_constraint("neutropenia:3<=0.2").limit == 2.5  # type: ignore[attr-defined]
    for bad in ("max-dose:x", "ntcp:brain", "nothing:1", "neutropenia:9<=0.1", "whole:0"):
        with pytest.raises(ModelError):
            parse_constraint(bad)


def random_params(draw: st.DrawFn, n: int) -> RTParams:
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    g = draw(st.floats(0.003, 0.08)) * np.exp(0.3 * rng.standard_normal(n))
    inv_k = draw(st.sampled_from([0.0, 1e-3, 1e-2]))
    v0 = np.full(n, draw(st.floats(1.0, 50.0)))
    alpha = draw(st.floats(0.01, 0.3)) * np.exp(0.3 * rng.standard_normal(n))
    ab = draw(st.floats(3.0, 15.0)) * np.exp(0.2 * rng.standard_normal(n))
    return RTParams(v0, g, np.full(n, inv_k), alpha, ab, np.full(n, 1e4))


@st.composite
def rt_problems(draw: st.DrawFn) -> tuple[RadiotherapyProblem, list, str, bool]:
    params = random_params(draw, 8)
    budget = draw(st.floats(60.0, 160.0))
    prob = RadiotherapyProblem(
        params, budget=budget, start=3.0, start_weekday=draw(st.integers(0, 6)),
        fraction_range=(15, 40), dose_levels=(0.8, 1.0),
        max_dose_per_fraction=draw(st.floats(2.0, 6.0)),
        oar_alpha_beta=draw(st.floats(1.5, 4.0)),
        gradient_fractions=(draw(st.sampled_from([20, 30])),),
    )  # fmt: skip
    extra = []
    if draw(st.booleans()):
        extra.append(MaxCumulative(draw(st.floats(40.0, 80.0)), "Gy"))
    if draw(st.booleans()):
        extra.append(parse_constraint(f"ntcp:brain<={draw(st.floats(0.02, 0.5)):.3f}"))
    objective = draw(st.sampled_from(["regrowth", "tcp", "burden:120"]))
    return prob, extra, objective, True


@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(rt_problems())
def test_radiotherapy_recommendations_never_violate_constraints(case: tuple) -> None:
    prob, extra, objective, refine = case
    rec = run(prob, parse_objective(objective), parse_risk("cvar:0.8"), extra, top=5,
              refine=refine)  # fmt: skip
    assert rec.standard.candidate.standard  # the standard of care is always evaluated
    assert any(r.candidate.standard for r in rec.results)
    # every returned schedule, and every gradient-optimised one (rounded and repaired; the
    # search keeps it under the family's name when it is the same plan)
    grad = prob.refine(parse_objective(objective), parse_risk("cvar:0.8"),
                       [*prob.default_constraints(), *extra])  # fmt: skip
    assert grad
    assert all(r.feasible for r in rec.best)
    for cand in [*(r.candidate for r in rec.best), *grad]:
        doses = np.array([d.amount for d in cand.schedule.doses])
        days = np.array([d.time for d in cand.schedule.doses]) - prob.start
        assert np.all((prob.start_weekday + np.floor(days + 1e-9)) % 7 < 5)
        assert doses.max() <= prob.max_dose_per_fraction + 1e-9
        steps = doses / prob.dose_step
        assert np.allclose(steps, np.round(steps), atol=1e-6)
        f = prob.oar_fraction * doses
        assert np.sum(f * (1 + f / prob.oar_alpha_beta)) <= prob.limit + 1e-6
        for c in extra:
            if isinstance(c, MaxCumulative):
                assert doses.sum() <= c.limit + 1e-9
            else:
                eqd2 = np.sum(f * (1 + f / prob.oar_alpha_beta)) / (1 + 2 / prob.oar_alpha_beta)
                td50, m = prob.ntcp_td50, prob.ntcp_m
                ntcp = 0.5 * math.erfc(-(eqd2 - td50) / (m * td50) / math.sqrt(2))
                assert ntcp <= c.limit + 1e-9  # type: ignore[attr-defined]


@st.composite
def rpt_problems(draw: st.DrawFn) -> RadiopharmaceuticalProblem:
    return RadiopharmaceuticalProblem(
        random_params(draw, 16),
        kidney_gy_per_gbq=draw(st.floats(0.2, 2.0)),
        marrow_gy_per_gbq=draw(st.floats(0.01, 0.12)),
        dose_sd=draw(st.floats(0.05, 0.5)),
        kidney_risk_factors=draw(st.booleans()),
        seed=draw(st.integers(0, 100)),
        activities=(3.7, 7.4, 11.1), cycles=(2, 4, 6), intervals=(56.0,),
    )  # fmt: skip


@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(rpt_problems())
def test_radiopharmaceutical_recommendations_meet_organ_chance_constraints(
    prob: RadiopharmaceuticalProblem,
) -> None:
    rec = run(prob, parse_objective("regrowth"), parse_risk("mean"), top=3)
    s_t, s_k, s_m = prob._s
    lam = math.log(2) / prob.effective_half_life
    g_k = lam / (lam + math.log(2) / prob.kidney_repair_half_time)
    kidney_limit = 28.0 if prob.kidney_risk_factors else 40.0
    for r in rec.best:
        act = np.array([d.amount for d in r.candidate.schedule.doses])
        kid = s_k[:, None] * act[None, :]
        bed = np.sum(kid * (1 + g_k * kid / prob.kidney_alpha_beta), axis=1)
        assert np.mean(bed <= kidney_limit) >= 0.95
        assert np.mean(s_m * act.sum() <= 2.0) >= 0.95
    if not rec.best:  # nothing feasible: the recommendation must say so
        assert "No schedule considered meets every constraint" in rec.headline()


def test_margin_within_rounding_of_the_limit_reads_as_zero() -> None:
    from oncotwin.optimize.constraints import ConstraintCheck

    at_bound = ConstraintCheck("brain BED", 120.0 - 1e-9, 120.0, "Gy", True, 1e-9)
    assert "margin +0)" in at_bound.text()
    clear = ConstraintCheck("brain BED", 118.5, 120.0, "Gy", True, 1.5)
    assert "margin +1.5)" in clear.text()
