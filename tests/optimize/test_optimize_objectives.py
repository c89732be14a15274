"""Objectives on hand-worked trajectories and on closed forms.

- area under an exponential ``v0 exp(g t)`` from 0 to H: ``v0 (exp(g H) - 1) / g``;
- RECIST 1.1 progression (Eisenhauer 2009): +20 % over the running nadir;
- regrowth of ``v0 exp(g t)`` knocked down by a factor k at t0: back at v0 at
  ``t0 + ln(k) / g`` when the kill is at the start.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from oncotwin.errors import ModelError
from oncotwin.optimize import Trajectories, parse_objective
from oncotwin.optimize.objectives import (
    auc,
    burden_at,
    time_to_progression,
    time_to_regrowth,
)


def test_burden_at_and_auc_of_an_exponential() -> None:
    t = np.linspace(0, 100, 20_001)
    g = np.array([0.01, 0.02])
    b = 5.0 * np.exp(g[:, None] * t[None, :])
    assert burden_at(t, b, 50.0) == pytest.approx(5.0 * np.exp(50 * g), rel=1e-7)
    assert auc(t, b, 0.0, 100.0) == pytest.approx(5.0 * np.expm1(100 * g) / g, rel=1e-6)
    with pytest.raises(ModelError):
        burden_at(t, b, 101.0)


def test_time_to_progression_is_twenty_percent_above_the_running_nadir() -> None:
    t = np.array([0.0, 10, 20, 30, 40, 50])
    b = np.array(
        [
            [10.0, 8, 6, 6.6, 7.2, 9.0],  # nadir 6; 7.2 is +20% at day 40
            [10.0, 11, 11.9, 12.5, 13, 13],
        ]
    )  # 12 = +20 % over 10: between days 20 and 30
    ttp = time_to_progression(t, b, 0.0)
    assert ttp[0] == pytest.approx(40.0)
    assert ttp[1] == pytest.approx(20 + 10 * (12 - 11.9) / (12.5 - 11.9))
    never = time_to_progression(t, np.full((1, 6), 5.0), 0.0)
    assert never[0] == pytest.approx(50.0)  # censored at the horizon
    assert np.isinf(time_to_progression(t, np.full((1, 6), 5.0), 0.0, censor=False)[0])


def test_time_to_regrowth_of_an_instant_kill() -> None:
    g, k = 0.02, 8.0
    t = np.linspace(0, 400, 40_001)
    b = (100.0 / k) * np.exp(g * t)[None, :]  # killed by k at t = 0, regrowing
    level = np.array([100.0])
    assert time_to_regrowth(t, b, 0.0, level)[0] == pytest.approx(math.log(k) / g, abs=1e-3)


def test_parse_objective_and_exact_times() -> None:
    obj = parse_objective("burden:90")
    assert (obj.name, obj.horizon, obj.larger_is_better) == ("burden", 90.0, False)
    assert parse_objective(obj.spec()) == obj
    t = np.linspace(0, 10, 11)
    tr = Trajectories(
        t,
        np.ones((2, 11)),
        0.0,
        {"regrowth_time": np.array([3.0, 4.0]), "surviving_clonogens": np.array([0.0, 1.0])},
    )
    assert np.allclose(parse_objective("regrowth")(tr), [3.0, 4.0])  # the exact value is used
    assert np.allclose(parse_objective("tcp")(tr), [1.0, math.exp(-1)])
    with pytest.raises(ModelError, match="tracks"):
        parse_objective("resistance")(tr)
    for bad in ("volume:-3", "cure", "auc:x"):
        with pytest.raises(ModelError):
            parse_objective(bad)


def test_radiotherapy_regrowth_is_exact_when_the_course_shrinks_the_tumour() -> None:
    """Exponential growth g and n fractions of d: V_last = v0 exp(g t_last - n a d (1 + d/ab)),
    back at v0 after ``t_last + (n a d (1 + d/ab) - g t_last) / g`` days. A tumour that the course
    never shrinks below v0 takes the grid definition instead (not an extrapolated time)."""
    from oncotwin.optimize.modalities import RadiotherapyProblem
    from oncotwin.optimize.objectives import time_to_regrowth
    from oncotwin.optimize.rt_model import RTParams

    def problem(g: float, alpha: float) -> RadiotherapyProblem:
        p = RTParams(np.array([10.0]), np.array([g]), np.array([0.0]), np.array([alpha]),
                     np.array([10.0]), np.array([1e4]))  # fmt: skip
        return RadiotherapyProblem(p, weekdays=False, grid_points=2001)

    prob = problem(0.01, 0.1)
    ((traj, _, _),) = prob.simulate([prob.standard_of_care()], 400.0)
    kill, t_last = 30 * 0.1 * 2.0 * 1.2, 29.0
    exact = t_last + (kill - 0.01 * t_last) / 0.01
    assert traj.extras["regrowth_time"][0] == pytest.approx(exact, rel=1e-9)
    fast = problem(0.2, 0.05)  # grows faster than 60 Gy/30 kills: never below v0
    ((traj, _, _),) = fast.simulate([fast.standard_of_care()], 400.0)
    grid = time_to_regrowth(traj.times, traj.burden, traj.start)[0]
    assert traj.extras["regrowth_time"][0] == pytest.approx(grid) and grid < 1.0
