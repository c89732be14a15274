"""Reference tests of treatment schedules and the exposure they produce.

Provenance: the K-PD exposure (Jacqmin et al. 2007) has closed forms per dose, written out by
hand below; the integrated exposure is checked against adaptive quadrature (scipy.integrate.quad)
of the pointwise exposure, independently of the closed form that the models use.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import integrate

from oncotwin._jax import jax, jnp
from oncotwin.errors import ScheduleError
from oncotwin.schedule import Dose, Schedule, Switch, exposure_at, integrated_exposure

LN2 = math.log(2.0)


def test_bolus_decays_with_its_half_life():
    s = Schedule((Dose(2.0, 100.0),), half_life={"drug": 3.0})
    e = s.exposure([0.0, 1.999, 2.0, 5.0, 8.0, 11.0])
    # one half-life after the dose: 1/2, two: 1/4, three: 1/8; nothing before the dose
    np.testing.assert_allclose(e, [0.0, 0.0, 1.0, 0.5, 0.25, 0.125], rtol=1e-14, atol=0)


def test_bolus_uses_the_default_half_life_of_one_day():
    e = Schedule((Dose(0.0, 5.0),)).exposure([1.0, 2.0])
    np.testing.assert_allclose(e, [0.5, 0.25], rtol=1e-14)


def test_infusion_rises_then_decays():
    # Infusion of duration D at a constant rate, eliminated at k = ln2/h:
    # E(s) = (1 - exp(-k s)) / (k D) while infusing, peaks at the end of the infusion with
    # (1 - exp(-k D)) / (k D), then decays as exp(-k (s - D)).
    h, dur = 2.0, 0.5
    k = LN2 / h
    s = Schedule((Dose(1.0, 100.0, duration=dur),), half_life={"drug": h})
    peak = (1 - math.exp(-k * dur)) / (k * dur)
    assert float(s.exposure([1.0 + dur])[0]) == pytest.approx(peak, rel=1e-14)
    mid = float(s.exposure([1.0 + dur / 2])[0])
    assert mid == pytest.approx((1 - math.exp(-k * dur / 2)) / (k * dur), rel=1e-14)
    later = float(s.exposure([1.0 + dur + 3.0])[0])
    assert later == pytest.approx(peak * math.exp(-3.0 * k), rel=1e-14)
    grid = np.linspace(0.0, 8.0, 801)
    e = s.exposure(grid)
    rising, falling = e[(grid >= 1.0) & (grid <= 1.5)], e[grid >= 1.5]
    assert np.all(e[grid < 1.0] == 0.0)
    assert np.all(np.diff(rising) > 0) and np.all(np.diff(falling) < 0)
    # the peak is below the bolus' 1 (the drug is eliminated while it is infused), and tends
    # to 1 as the infusion gets shorter
    assert 0.9 < peak < 1.0
    short = Schedule((Dose(0.0, 1.0, duration=1e-6),), half_life={"drug": h})
    assert float(short.exposure([1e-6])[0]) == pytest.approx(1.0, rel=1e-6)


def test_switches_hold_until_the_next_switch():
    s = Schedule(
        switches=(
            Switch(5.0, "adt", True),
            Switch(6.0, "adt", True),  # already on: no change
            Switch(10.0, "adt", False),
            Switch(12.0, "adt", False),  # already off: no change
            Switch(7.0, "arsi", True),  # a second agent adds its own indicator
        )
    )
    times = [0.0, 4.999, 5.0, 6.5, 7.0, 9.999, 10.0, 11.0, 13.0, 400.0]
    want = [0, 0, 1, 1, 2, 2, 1, 1, 1, 1]
    np.testing.assert_array_equal(s.exposure(times), want)


def test_doses_are_normalised_by_the_reference_amount():
    s = Schedule((Dose(0.0, 100.0), Dose(10.0, 50.0), Dose(0.0, 4.0, agent="b")))
    assert s.reference_amounts() == {"drug": 100.0, "b": 4.0}
    # 50 mg at day 10 is half the reference dose; agent b's 4 mg is its own reference
    e = s.exposure([10.0])[0]
    assert e == pytest.approx(0.5 + 2.0**-10 + 2.0**-10, rel=1e-14)
    # zero doses do not divide by zero
    assert Schedule((Dose(0.0, 0.0),)).reference_amounts() == {"drug": 1.0}


def test_doubling_every_dose_doubles_exposure_when_the_reference_is_kept():
    base = Schedule((Dose(0.0, 60.0), Dose(7.0, 80.0, duration=0.2), Dose(14.0, 80.0)))
    doubled = Schedule(tuple(Dose(d.time, 2 * d.amount, d.agent, d.duration) for d in base.doses))
    times = np.linspace(0.0, 20.0, 41)
    ref = base.reference_amounts()
    np.testing.assert_allclose(doubled.exposure(times, ref), 2 * base.exposure(times), rtol=1e-14)
    # with its own reference (its largest dose) the doubled schedule looks the same
    np.testing.assert_allclose(doubled.exposure(times), base.exposure(times), rtol=1e-14)


def independent_exposure(t: float, schedule: Schedule) -> float:
    """E(t) written from the module docstring, in plain Python (no shared code)."""
    ref = schedule.reference_amounts()
    total = 0.0
    for d in schedule.doses:
        k = LN2 / schedule.half_life.get(d.agent, 1.0)
        s = t - d.time
        if s < 0:
            continue
        a = d.amount / ref[d.agent]
        if d.duration == 0:
            total += a * math.exp(-k * s)
        elif s <= d.duration:
            total += a * (1 - math.exp(-k * s)) / (k * d.duration)
        else:
            total += (
                a
                * (1 - math.exp(-k * d.duration))
                / (k * d.duration)
                * math.exp(-k * (s - d.duration))
            )
    state: dict[str, bool] = {}
    for sw in schedule.switches:
        if sw.time <= t:
            state[sw.agent] = sw.on
    return total + sum(state.values())


MIXED = Schedule(
    doses=(
        Dose(-4.0, 50.0),  # before t0: enters through its residual exposure
        Dose(-0.5, 80.0, duration=1.0),  # an infusion that straddles t0
        Dose(3.0, 100.0),
        Dose(9.0, 100.0, duration=0.25),
        Dose(16.0, 70.0),
        Dose(2.0, 10.0, agent="mab"),
        Dose(12.0, 10.0, agent="mab", duration=2.0),
    ),
    switches=(
        Switch(-2.0, "adt", True),
        Switch(6.0, "adt", False),
        Switch(11.0, "adt", True),
        Switch(17.0, "adt", False),
    ),
    half_life={"drug": 1.5, "mab": 6.0},
)


def test_exposure_at_matches_the_formula():
    times = [-5.0, -4.0, -1.0, 0.0, 0.25, 2.9, 3.0, 6.0, 9.1, 12.5, 14.0, 16.5, 40.0]
    got = MIXED.exposure(times)
    want = [independent_exposure(t, MIXED) for t in times]
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("decay", [0.0, 0.05])
def test_integrated_exposure_matches_quadrature(decay):
    t0 = 0.0
    arrays = jax.tree.map(jnp.asarray, MIXED.arrays(n_doses=8, n_switches=6))  # padded
    pointwise = jax.jit(lambda t: exposure_at(t, arrays))
    taus = np.array([0.0, 0.3, 2.5, 3.0, 7.0, 9.2, 12.7, 18.0, 30.0])
    got = np.asarray(integrated_exposure(jnp.asarray(taus), t0, arrays, decay))
    breaks = [float(b) for b in MIXED.jump_times() if b > t0]

    def integrand(s: float) -> float:
        return math.exp(-decay * s) * float(pointwise(t0 + s))

    for tau, value in zip(taus, got, strict=True):
        points = [b for b in breaks if b < tau]
        want, err = integrate.quad(
            integrand, 0.0, tau, points=points or None, limit=200, epsabs=1e-13, epsrel=1e-13
        )
        assert err < 1e-10
        assert value == pytest.approx(want, rel=1e-8, abs=1e-12), tau


def test_integrated_exposure_of_a_bolus_by_hand():
    # int_0^tau exp(-decay s) a exp(-k (s + t0 - t_dose)) ds for a bolus at t_dose < t0.
    k, decay, t0, tau = LN2 / 2.0, 0.03, 5.0, 7.0
    arrays = Schedule((Dose(1.0, 1.0),), half_life={"drug": 2.0}).arrays()
    want = math.exp(-k * (t0 - 1.0)) * (1 - math.exp(-(k + decay) * tau)) / (k + decay)
    assert float(integrated_exposure(tau, t0, arrays, decay)) == pytest.approx(want, rel=1e-13)


# ---- construction, views, files -------------------------------------------------------------


def test_from_dict_expands_every_and_count_and_periods():
    s = Schedule.from_dict(
        {
            "doses": [
                {"agent": "docetaxel", "amount": 75, "unit": "mg/m2", "start": 0, "every": 21,
                 "count": 6, "duration": 0.04},
                {"agent": "zol", "amount": 4, "time": 3},
            ],
            "periods": [{"agent": "adt", "start": 0, "end": 90}, {"agent": "arsi", "start": 30}],
            "half_life": {"docetaxel": 0.5},
        }
    )  # fmt: skip
    doc = [d for d in s.doses if d.agent == "docetaxel"]
    assert [d.time for d in doc] == [0.0, 21.0, 42.0, 63.0, 84.0, 105.0]
    assert all(d.amount == 75.0 and d.duration == 0.04 and d.unit == "mg/m2" for d in doc)
    assert [(d.time, d.amount, d.unit) for d in s.doses if d.agent == "zol"] == [(3.0, 4.0, "mg")]
    assert s.half_life == {"docetaxel": 0.5}
    assert s.agents == ("adt", "arsi", "docetaxel", "zol")
    periods = s.periods()
    assert ("adt", 0.0, 90.0) in periods and ("arsi", 30.0, math.inf) in periods
    assert ("zol", 3.0, 3.0) in periods  # a bolus: start == end
    assert ("docetaxel", 21.0, 21.04) in periods  # an infusion: start, start + duration
    assert [p[1] for p in periods] == sorted(p[1] for p in periods)
    # day 50: adt and arsi on (docetaxel 16 half-lives after its dose); day 200: arsi only
    np.testing.assert_allclose(s.exposure([50.0, 200.0]), [2.0, 1.0], atol=1e-4)


def test_dict_round_trip():
    d = MIXED.to_dict()
    json.dumps(d)  # JSON-ready
    back = Schedule.from_dict(d)
    assert back == MIXED


def test_events_round_trip():
    events = MIXED.to_events("p-1")
    assert set(events["evid"]) == {1, 2} and (events["id"] == "p-1").all()
    back = Schedule.from_events(events, half_life=MIXED.half_life)
    assert back == MIXED


def test_from_events_reads_infusion_rate():
    events = pd.DataFrame(
        {"time": [0.0], "evid": [1], "amt": [60.0], "agent": ["x"], "dur": [0.0], "rate": [30.0],
         "unit": ["mg"], "on": [np.nan]}
    )  # fmt: skip
    (dose,) = Schedule.from_events(events).doses
    assert dose.duration == 2.0 and dose.agent == "x"


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_from_file(tmp_path, suffix):
    spec = {
        "doses": [{"agent": "cisplatin", "amount": 100, "start": 1, "every": 7, "count": 3}],
        "periods": [{"agent": "rt", "start": 2, "end": 9}],
        "half_life": {"cisplatin": 0.8},
    }
    path = tmp_path / f"plan{suffix}"
    path.write_text(json.dumps(spec) if suffix == ".json" else yaml.safe_dump(spec))
    s = Schedule.from_file(path)
    assert [d.time for d in s.doses] == [1.0, 8.0, 15.0]
    assert s.periods()[1] == ("rt", 2.0, 9.0)
    assert s == Schedule.from_dict(spec)


def test_jump_times_until_then():
    s = Schedule(
        (Dose(0.0, 1.0), Dose(7.0, 1.0, duration=0.5), Dose(14.0, 1.0)),
        (Switch(3.0, "rt", True), Switch(7.0, "rt", False)),
    )
    np.testing.assert_array_equal(s.jump_times(), [0.0, 3.0, 7.0, 7.5, 14.0])
    past = s.until(7.0)
    assert [d.time for d in past.doses] == [0.0, 7.0] and len(past.switches) == 2
    new = s.then(Schedule((Dose(5.0, 9.0), Dose(21.0, 2.0))), 7.0)
    # history up to day 7 kept, the plan's events after day 7 appended, the plan's day 5 dropped
    assert [(d.time, d.amount) for d in new.doses] == [(0.0, 1.0), (7.0, 1.0), (21.0, 2.0)]
    stop = s.then(Schedule(), 7.0)
    assert [d.time for d in stop.doses] == [0.0, 7.0]
    assert Schedule().is_empty and not s.is_empty


@pytest.mark.parametrize(
    "make",
    [
        lambda: Schedule((Dose(0.0, -1.0),)),
        lambda: Schedule((Dose(float("nan"), 1.0),)),
        lambda: Schedule((Dose(0.0, float("inf")),)),
        lambda: Schedule((Dose(0.0, 1.0, duration=-0.1),)),
        lambda: Schedule((Dose(0.0, 1.0, duration=float("nan")),)),  # was taken as a bolus
        lambda: Schedule(switches=(Switch(float("nan"), "adt", True),)),
        lambda: Schedule(switches=(Switch(float("inf"), "adt", True),)),
        lambda: Schedule(half_life={"drug": 0.0}),
        lambda: Schedule(half_life={"drug": float("nan")}),
        lambda: Schedule.from_dict({"doses": [{"start": 0}]}),  # no amount
        lambda: Schedule.from_dict({"doses": [{"amount": 1, "count": "many"}]}),
        lambda: Schedule.from_dict({"periods": [{"agent": "adt"}]}),  # no start
        lambda: Schedule.from_dict({"doses": [{"amount": -5}]}),
    ],
)
def test_bad_schedules_raise(make):
    with pytest.raises(ScheduleError):
        make()


def test_bad_schedule_files_name_the_file(tmp_path):
    bad_json = tmp_path / "plan.json"
    bad_json.write_text("{not json")
    with pytest.raises(ScheduleError, match="plan.json"):
        Schedule.from_file(bad_json)
    a_list = tmp_path / "plan.yaml"
    a_list.write_text("- 1\n- 2\n")
    with pytest.raises(ScheduleError, match="mapping"):
        Schedule.from_file(a_list)
    no_amount = tmp_path / "plan2.yaml"
    no_amount.write_text("doses:\n  - start: 0\n")
    with pytest.raises(ScheduleError, match="plan2.yaml"):
        Schedule.from_file(no_amount)
