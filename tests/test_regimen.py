"""Tests of the regimen language (oncotwin.regimen).

Provenance: every expected value is worked out by hand in the test's docstring or comments,
from the plan as a clinician would read it (cycle times = start + k * interval, BSA-based dose
= mg/m² × m², weekday fractions skip Saturdays and Sundays), independently of the parser.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from oncotwin.errors import ScheduleError
from oncotwin.models.hormone import AdaptiveRule
from oncotwin.regimen import Regimen, ThresholdRule, load_regimen, parse_regimen
from oncotwin.schedule import Dose, Switch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "regimens"


def one(item: object, **patient: float) -> Regimen:
    """A regimen of a single item."""
    return parse_regimen({"patient": patient, "items": [item]} if patient else {"items": [item]})


# --------------------------------------------------------------------------- chemotherapy


def test_docetaxel_text_with_bsa():
    """75 mg/m² × 1.8 m² = 135 mg; q3w = every 21 days; 6 cycles at 0, 21, ..., 5 × 21 = 105;
    a 1 h infusion lasts 1/24 day."""
    r = one("docetaxel 75 mg/m2 q3w x 6 over 1 h", bsa=1.8)
    doses = r.schedule().doses
    assert [d.time for d in doses] == [0.0, 21.0, 42.0, 63.0, 84.0, 105.0]
    for d in doses:
        assert d.amount == pytest.approx(135.0, rel=1e-12)
        assert (d.agent, d.unit) == ("docetaxel", "mg")
        assert d.duration == pytest.approx(1 / 24, rel=1e-12)
    assert r.items[0].note == "75 mg/m2"
    assert r.describe() == [
        "docetaxel 135 mg (75 mg/m² × BSA 1.8 m²) as a 1-hour infusion every 21 days, "
        "6 cycles, days 0–105"
    ]
    assert r.rules == ()


def test_structured_dose_equals_text_dose():
    """The structured example of the brief means the same plan as its text form."""
    structured = one(
        {"drug": "docetaxel", "dose": "75 mg/m2", "every": "3 weeks", "cycles": 6,
         "infusion": "1 h"},
        bsa=1.8,
    )  # fmt: skip
    text = one("docetaxel 75 mg/m2 q3w x 6 over 1 h", bsa=1.8)
    assert structured.schedule() == text.schedule()


@pytest.mark.parametrize(
    ("text", "times"),
    [
        ("drugx 10 mg q1w x 3", [0.0, 7.0, 14.0]),  # weekly
        ("drugx 10 mg q2w x 3", [0.0, 14.0, 28.0]),
        ("drugx 10 mg q4w x 3", [0.0, 28.0, 56.0]),
        ("drugx 10 mg daily x 3", [0.0, 1.0, 2.0]),
        ("drugx 10 mg q12h x 3", [0.0, 0.5, 1.0]),  # 12 h = 0.5 day
        ("drugx 10 mg every 3 weeks for 2 cycles", [0.0, 21.0]),
        ("drugx 10 mg weekly × 2 from day 7", [7.0, 14.0]),
        ("drugx 10mg q21d x2 starting day 3", [3.0, 24.0]),
        ("drugx 10 mg once", [0.0]),
        ("drugx 10 mg", [0.0]),  # one dose by default
        ("DrugX 10 MG Q1W X 3 Over 1 H", [0.0, 7.0, 14.0]),  # case does not matter
    ],
)
def test_frequency_and_count_words(text, times):
    r = one(text)
    assert [d.time for d in r.schedule().doses] == pytest.approx(times, abs=1e-12)
    assert all(d.amount == 10.0 for d in r.schedule().doses)


def test_mass_units_and_per_kg():
    """1 g = 1000 mg; 500 µg = 0.5 mg; 2 mg/kg × 70 kg = 140 mg; 30 min = 1/48 day."""
    assert one("x 1 g").schedule().doses[0].amount == 1000.0
    assert one("x 500 µg").schedule().doses[0].amount == pytest.approx(0.5)
    r = one("pembrolizumab 2 mg/kg q3w x 2 over 30 min", weight=70.0)
    doses = r.schedule().doses
    assert [d.amount for d in doses] == pytest.approx([140.0, 140.0])
    assert [d.duration for d in doses] == pytest.approx([1 / 48, 1 / 48])
    assert "2 mg/kg × weight 70 kg" in r.describe()[0]
    assert "30-minute infusion" in r.describe()[0]


def test_keyword_bsa_overrides_the_spec():
    """The same protocol for another patient: 75 mg/m² × 2.0 m² = 150 mg."""
    r = parse_regimen(
        {"patient": {"bsa": 1.8}, "items": ["docetaxel 75 mg/m2"]}, body_surface_area=2.0
    )
    assert r.schedule().doses[0].amount == pytest.approx(150.0)
    assert r.patient["bsa"] == 2


# --------------------------------------------------------------------------- radiotherapy


def test_conventional_radiotherapy_on_weekdays():
    """60 Gy / 30 = 2 Gy; 30 weekday fractions from a Monday: 6 weeks of days 0-4, 7-11, ...,
    35-39 (week w gives 7w + 0..4); total 30 × 2 = 60 Gy."""
    r = one("60 Gy in 30 fractions, weekdays")
    doses = r.schedule().doses
    expected = [7.0 * w + d for w in range(6) for d in range(5)]
    assert [d.time for d in doses] == expected
    assert all(d == Dose(d.time, 2.0, "radiotherapy", 0.0, "Gy") for d in doses)
    assert sum(d.amount for d in doses) == pytest.approx(60.0)
    structured = one({"radiotherapy": "60 Gy in 30 fractions", "days": "weekdays", "start": 0})
    assert structured.schedule() == r.schedule()


def test_short_course_and_hypofractionation():
    """5 x 5 Gy daily: 5 Gy at days 0..4. 40.05 Gy in 15: 2.67 Gy per fraction, weekdays
    0-4, 7-11, 14-18 (15 fractions = 3 weeks)."""
    short = one("5 x 5 Gy daily").schedule().doses
    assert [(d.time, d.amount) for d in short] == [(float(t), 5.0) for t in range(5)]
    hypo = one("40.05 Gy in 15 fractions").schedule().doses
    assert [d.time for d in hypo] == [7.0 * w + d for w in range(3) for d in range(5)]
    assert all(d.amount == pytest.approx(2.67) for d in hypo)
    assert sum(d.amount for d in hypo) == pytest.approx(40.05)


def test_radiotherapy_daily_start_and_weekday():
    """Daily: 7 fractions at days 10..16. Weekdays from a Wednesday (start_weekday 2), day 0:
    Wed 0, Thu 1, Fri 2, then Mon 5, Tue 6. From a Saturday (5): first fraction Monday = day 2."""
    daily = one("14 Gy in 7 fractions, daily, from day 10").schedule().doses
    assert [d.time for d in daily] == [float(t) for t in range(10, 17)]
    wed = one({"radiotherapy": "5 x 2 Gy", "start_weekday": "Wednesday"}).schedule().doses
    assert [d.time for d in wed] == [0.0, 1.0, 2.0, 5.0, 6.0]
    sat = one({"radiotherapy": "1 x 8 Gy", "start_weekday": 5}).schedule().doses
    assert [d.time for d in sat] == [2.0]


# --------------------------------------------------------------------------- radiopharmaceutical


def test_radiopharmaceutical_cycles_in_gbq():
    """7.4 GBq every 6 weeks = 42 days, 4 cycles: 0, 42, 84, 126."""
    r = one({"radiopharmaceutical": "177Lu-PSMA-617", "activity": "7.4 GBq",
             "every": "6 weeks", "cycles": 4})  # fmt: skip
    doses = r.schedule().doses
    assert [d.time for d in doses] == [0.0, 42.0, 84.0, 126.0]
    assert all((d.amount, d.unit, d.agent) == (7.4, "GBq", "177Lu-PSMA-617") for d in doses)
    assert one("177Lu-PSMA-617 7.4 GBq q6w x 4").schedule() == r.schedule()


def test_activity_units():
    """200 mCi × 0.037 GBq/mCi = 7.4 GBq; 55 kBq/kg × 80 kg = 4400 kBq = 0.0044 GBq."""
    assert one("lu 200 mCi").schedule().doses[0].amount == pytest.approx(7.4)
    ra = one("223Ra 55 kBq/kg q4w x 6", weight=80.0).schedule().doses
    assert len(ra) == 6 and ra[0].amount == pytest.approx(0.0044) and ra[0].unit == "GBq"


# --------------------------------------------------------------------------- on/off


def test_on_off_periods():
    """[0, 90] gives on at 0, off at 90; [0, null] only switches on; pairs give several."""
    assert one({"drug": "abiraterone", "on": [0, 90]}).schedule().switches == (
        Switch(0.0, "abiraterone", True),
        Switch(90.0, "abiraterone", False),
    )
    assert one({"drug": "adt", "on": [0, None]}).schedule().switches == (Switch(0.0, "adt", True),)
    two = one({"drug": "adt", "on": [[0, 90], ["26 weeks", "39 weeks"]]}).schedule()
    # 26 weeks = 182 days, 39 weeks = 273 days
    assert [(s.time, s.on) for s in two.switches] == [
        (0.0, True), (90.0, False), (182.0, True), (273.0, False)
    ]  # fmt: skip
    assert (
        one("abiraterone on days 0-90").schedule()
        == one({"drug": "abiraterone", "on": [0, 90]}).schedule()
    )
    assert one("adt continuous from day 5").schedule().switches == (Switch(5.0, "adt", True),)


def test_intermittent_on_off():
    """90 on, 60 off: cycle k starts at 150 k; on at 0, 150, 300, off 90 later: 90, 240, 390."""
    r = one({"drug": "leuprolide", "on_days": 90, "off_days": 60, "cycles": 3})
    sw = r.schedule().switches
    assert [s.time for s in sw if s.on] == [0.0, 150.0, 300.0]
    assert [s.time for s in sw if not s.on] == [90.0, 240.0, 390.0]
    assert one("leuprolide on 90 days, off 60 days x 3").schedule() == r.schedule()
    assert one("leuprolide 90 days on, 60 days off x 3").schedule() == r.schedule()
    assert r.describe() == [
        "leuprolide intermittent: 90 days on, 60 days off, 3 cycles, days 0–390"
    ]


# --------------------------------------------------------------------------- threshold rules


def test_threshold_rule_text():
    """50% -> 0.5 and 100% -> 1.0 of baseline; the Zhang 2017 rule."""
    r = one("abiraterone on until PSA < 50% of baseline, off until PSA >= 100% of baseline")
    assert r.rules == (ThresholdRule("abiraterone", "psa", 0.5, 1.0, "baseline"),)
    assert r.rules[0].to_adaptive_rule() == AdaptiveRule(
        stop_below=0.5, restart_above=1.0, relative_to="baseline"
    )
    assert r.schedule().is_empty  # a rule is not a fixed switch


def test_threshold_rule_structured_and_variants():
    """Structured == text; no 'off until' -> restart None; '4 ng/mL' is absolute (ng/mL is
    PSA's canonical unit, factor 1); 'back to baseline' = 100 %."""
    structured = one(
        {
            "drug": "abiraterone",
            "rule": "on until PSA < 50% of baseline, off until PSA >= 100% of baseline",
        }
    )
    assert structured.rules[0] == ThresholdRule("abiraterone", stop_below=0.5, restart_above=1.0)
    no_restart = one("abiraterone on until PSA < 50% of baseline").rules[0]
    assert no_restart.restart_above is None and no_restart.stop_below == 0.5
    with pytest.raises(ScheduleError, match="never restarts"):
        no_restart.to_adaptive_rule()
    absolute = one({"drug": "abi", "rule": "on until PSA < 4 ng/mL, off until PSA > 10 ng/mL"})
    assert absolute.rules[0] == ThresholdRule("abi", "psa", 4.0, 10.0, "absolute")
    back = one("abi on until PSA below 30%, then off until PSA back to baseline").rules[0]
    assert (back.stop_below, back.restart_above) == (0.3, 1.0)


# --------------------------------------------------------------------------- whole plans


PLAN = {
    "patient": {"bsa": 1.8},
    "half_life": {"docetaxel": "11.1 h"},
    "items": [
        "docetaxel 75 mg/m2 q3w x 6 over 1 h",
        {"radiotherapy": "60 Gy in 30 fractions", "days": "weekdays", "start": 0},
        {"radiopharmaceutical": "177Lu-PSMA-617", "activity": "7.4 GBq", "every": "6 weeks",
         "cycles": 4},
        {"drug": "abiraterone", "on": [0, 90]},
        {"drug": "leuprolide", "on_days": 90, "off_days": 60, "cycles": 3},
        "abiraterone on until PSA < 50% of baseline, off until PSA >= 100% of baseline",
    ],
}  # fmt: skip


def test_round_trip_and_event_rows():
    """Doses: 6 docetaxel + 30 fractions + 4 cycles = 40; switches: 2 (period) + 6
    (intermittent) = 8; event rows = 40 + 8 = 48; half-life 11.1 h = 11.1/24 day."""
    r = parse_regimen(PLAN)
    s = r.schedule()
    assert (len(s.doses), len(s.switches)) == (40, 8)
    assert len(s.to_events("p-1")) == 48
    assert s.half_life == {"docetaxel": pytest.approx(11.1 / 24)}
    back = parse_regimen(r.to_dict())
    assert back.schedule() == s
    assert back.rules == r.rules
    assert back.describe() == r.describe()
    # the structured form survives JSON and YAML
    assert parse_regimen(json.loads(json.dumps(r.to_dict()))).schedule() == s
    assert parse_regimen(yaml.safe_load(yaml.safe_dump(r.to_dict()))).schedule() == s
    assert len(r.describe()) == len(PLAN["items"])


def test_text_plan_string():
    """A string is one text item per line; ';' separates too; '#' starts a comment."""
    r = parse_regimen(
        "docetaxel 75 mg/m2 q3w x 6  # TAX 327\n\n5 x 5 Gy; adt on days 0-30",
        body_surface_area=1.8,
    )
    assert [i.kind for i in r.items] == ["dose", "radiotherapy", "period"]
    assert r.items[0].text == "docetaxel 75 mg/m2 q3w x 6"


def test_unquoted_yaml_on_key(tmp_path):
    """YAML 1.1 reads `on:` as the boolean True; it still means the on period."""
    path = tmp_path / "plan.yaml"
    path.write_text("items:\n  - {drug: adt, on: [0, 90]}\n")
    assert len(load_regimen(path).schedule().switches) == 2


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("items", "patient", "match"),
    [
        (["x 1 mg", "docetaxel 75 mg/m2 q3w x 6"], {}, r"item 2: field 'dose': .*body surface"),
        ([{"drug": "x", "dose": "75 mg/kg"}], {"bsa": 1.8}, r"item 1: field 'dose': .*weight"),
        (["docetaxel 75 mg q3w x 0"], {}, r"item 1: field 'cycles': .*positive integer, got 0"),
        ([{"drug": "x", "dose": "1 mg", "cycles": -2, "every": 7}], {}, r"item 1: field 'cycles'"),
        (["some unknown words"], {}, r"item 1: field 'text': cannot parse 'some unknown words'"),
        (["x 1 mg q3w banana"], {}, r"item 1: field 'text': cannot parse 'banana'"),
        ([{"pill": "x"}], {}, r"item 1: .*unknown item form"),
        ([{"drug": "x", "dose": "1 mg", "cylces": 3}], {}, r"item 1: field 'cylces': unknown"),
        ([{"drug": "x", "dose": "1 mg", "cycles": 3}], {}, r"item 1: field 'every': required"),
        ([{"drug": "x", "dose": "1 furlong"}], {}, r"item 1: field 'dose': unknown unit"),
        ([{"drug": "x", "dose": "1 mg", "infusion": 1}], {}, r"field 'infusion': give a unit"),
        ([{"drug": "x", "dose": "1 GBq"}], {}, r"field 'dose': .*radiopharmaceutical"),
        ([{"radiotherapy": "60 Gy"}], {}, r"item 1: field 'radiotherapy': cannot parse '60 Gy'"),
        ([{"radiotherapy": "0 x 2 Gy"}], {}, r"field 'radiotherapy': .*fractions"),
        ([{"drug": "x", "on": [90, 0]}], {}, r"field 'on': the end must be after the start"),
        ([{"drug": "x", "on_days": 90, "off_days": 60}], {}, r"field 'cycles': required"),
        ([{"drug": "x", "rule": "on until PSA < 50%, off until PSA > 4 ng/mL"}], {},
         r"field 'rule': mixes"),
        ([{"drug": "x", "rule": "on until PSA < 50%, off until PSA > 40%"}], {},
         r"field 'rule': restart_above"),
        ([{"drug": "x", "rule": "whenever"}], {}, r"field 'rule': cannot parse 'whenever'"),
    ],
)  # fmt: skip
def test_errors_name_item_and_field(items, patient, match):
    with pytest.raises(ScheduleError, match=match):
        parse_regimen({"patient": patient, "items": items})


def test_top_level_errors():
    with pytest.raises(ScheduleError, match="non-empty list"):
        parse_regimen({"items": []})
    with pytest.raises(ScheduleError, match="unknown field 'patinet'"):
        parse_regimen({"patinet": {"bsa": 1.8}, "items": ["x 1 mg"]})
    with pytest.raises(ScheduleError, match="patient: field 'bsa' must be finite and > 0"):
        parse_regimen({"patient": {"bsa": 0}, "items": ["x 1 mg"]})


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "plan.yaml"
    bad.write_text("patient: {bsa: 1.8}\nitems:\n  - docetaxel 75 mg/m2 q3w x 6\n  - 75 mg/kg x\n")
    with pytest.raises(ScheduleError, match=r"plan\.yaml: item 2: field 'text'"):
        load_regimen(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("items: [unclosed\n")
    with pytest.raises(ScheduleError, match=r"broken\.yaml: cannot parse"):
        load_regimen(broken)
    with pytest.raises(ScheduleError, match=r"missing\.yaml: cannot read"):
        load_regimen(tmp_path / "missing.yaml")
    as_json = tmp_path / "plan.json"
    as_json.write_text(json.dumps({"items": [{"drug": "x", "dose": "1 mg", "cycles": 0}]}))
    with pytest.raises(ScheduleError, match=r"plan\.json: item 1: field 'cycles'"):
        load_regimen(as_json)


# --------------------------------------------------------------------------- examples


def test_example_regimens_load():
    paths = sorted(EXAMPLES.glob("*.yaml"))
    assert len(paths) == 4
    for path in paths:
        r = load_regimen(path)
        assert not r.schedule().is_empty, path.name
        assert len(r.describe()) == len(r.items)
        assert parse_regimen(r.to_dict()).schedule() == r.schedule()


def test_example_adaptive_rule_feeds_the_hormone_model():
    """The Zhang 2017 file: leuprolide switched on at day 0, one rule with 0.5 / 1.0."""
    r = load_regimen(EXAMPLES / "adaptive_abiraterone.yaml")
    assert r.schedule().switches == (Switch(0.0, "leuprolide", True),)
    assert r.rules[0].to_adaptive_rule() == AdaptiveRule(0.5, 1.0, "baseline")
