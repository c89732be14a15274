"""Trial designs: the example files load; bad fields give errors that name the file and field."""

from pathlib import Path

import pytest
import yaml

from oncotwin.errors import DataError
from oncotwin.trials.design import design_from_dict, load_design, parse_duration

ROOT = Path(__file__).resolve().parents[2]
NULL = Path(__file__).with_name("null_design.yaml")


@pytest.mark.parametrize(
    "path", sorted((ROOT / "examples" / "trials").glob("*.yaml")), ids=lambda p: p.name
)
def test_example_designs_load(path):
    d = load_design(path)
    assert d.arms and d.visit_times[0] == 0.0
    assert all(arm.schedule.doses or arm.schedule.switches or not arm.regimen for arm in d.arms)


def test_visit_grid_and_shared_exposure_reference():
    d = load_design(ROOT / "examples" / "trials" / "docetaxel_dose.yaml")
    assert d.visit_times.tolist() == [42.0 * k for k in range(18)]  # 6-weekly to 2 years
    # 100 mg/m2 x 1.8 m2 = 180 mg is the exposure unit of both arms, so 75 mg/m2 is 0.75.
    assert d.reference_amounts() == {"docetaxel": pytest.approx(180.0)}
    assert parse_duration("q3w") == 21.0 and parse_duration("2 years") == 730.5


def raw():
    return yaml.safe_load(NULL.read_text())


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("arms", 1, "ratio"), 0, "field 'arms[2].ratio': must be > 0"),
        (("arms", 0, "regimen"), {"items": ["docetaxel 75 mg q3w x 0"]}, "field 'arms[1].regimen'"),
        (("arms", 0, "modifiers"), {"kx": 2.0}, "field 'arms[1].modifiers.kx'"),
        (("visits", "every"), "6 fortnights", "field 'visits.every'"),
        (("endpoints", "primary"), "dfs", "field 'endpoints.primary'"),
        (("population", "kg"), {"median": -1}, "field 'population.kg.median'"),
        (("eligibility",), ["weight > 50"], "field 'eligibility[1]': unknown field 'weight'"),
        (
            ("endpoints", "survival", "covariates"),
            {"age": 0.1},
            "endpoints.survival.covariates.age",
        ),
        (("follow_up",), "1 week", "field 'follow_up'"),
        (("misspelt",), 1, "field 'misspelt': unknown field"),
    ],
)
def test_bad_fields_are_named(path, value, message):
    spec = raw()
    target = spec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(DataError) as err:
        design_from_dict(spec, source="trial.yaml")
    assert str(err.value).startswith("trial.yaml: ")
    assert message in str(err.value)


def test_load_design_reports_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("arms: [unclosed\n")
    with pytest.raises(DataError, match="bad.yaml"):
        load_design(bad)
