"""FHIR R4 import and export (oncotwin.data.fhir).

References: the fixture Bundle tests/data/fhir/mcode_two_patients.json follows mCODE STU3/4
(TumorSize: LOINC 21889-1 with the longest dimension in component 33728-7; TumorMarkerTest
PSA LOINC 2857-1; RadiotherapyCourseSummary: SNOMED 1217123003 with the
radiotherapy-dose-delivered-to-volume and radiotherapy-sessions extensions,
https://hl7.org/fhir/us/mcode/). Its equivalent event table mcode_two_patients.csv was written
by hand from the Bundle (day numbers counted on the calendar, 2024-01-08 is a Monday): the
import must give exactly that table, and the same twin.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.riskassessment import RiskAssessment

from oncotwin import units, workflow
from oncotwin.data import read_events
from oncotwin.data.fhir import (
    UCUM_UNITS,
    FhirImportError,
    codes,
    export_code,
    fraction_times,
    import_bundle,
    read_bundle,
    time_origin,
)
from oncotwin.data.fhir_export import (
    forecast_from_fhir,
    forecast_to_fhir,
    recommendation_from_fhir,
    recommendation_to_fhir,
)
from oncotwin.data.io import DOSE_UNITS
from oncotwin.errors import DataError
from oncotwin.store import Store

HERE = Path(__file__).parent / "fhir"
BUNDLE = HERE / "mcode_two_patients.json"
CSV = HERE / "mcode_two_patients.csv"


def good() -> dict[str, Any]:
    return json.loads(BUNDLE.read_text())


def resource(bundle: dict[str, Any], rid: str) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == rid)


def refused(bundle: Any, **kwargs: Any) -> FhirImportError:
    with pytest.raises(FhirImportError) as info:
        import_bundle(bundle, **kwargs)
    OperationOutcome.model_validate(info.value.outcome)  # the outcome itself is valid FHIR
    return info.value


# -- the code table -----------------------------------------------------------------------------


def test_code_table_maps_to_known_kinds_and_units() -> None:
    table = codes()
    assert len({(c.system, c.code) for c in table}) == len(table)
    for c in table:
        assert c.value == "value" or c.value.startswith("component "), c
        assert c.display and c.source, c
        if c.kind in units.KINDS:  # cea waits for oncotwin.units (rejected as not supported)
            assert UCUM_UNITS[c.ucum] in units.KINDS[c.kind][1], c
    for kind in units.KINDS:
        assert export_code(kind).kind == kind
    assert export_code("diameter").code == "33728-7" and export_code("psa").code == "2857-1"
    for spelling in UCUM_UNITS.values():
        assert spelling in DOSE_UNITS or any(spelling in acc for _, acc in units.KINDS.values())


def test_fraction_times_weekdays_or_even_spread() -> None:
    thu = datetime(2024, 1, 11, 8, 30, tzinfo=UTC)  # a Thursday
    got = fraction_times(thu, 5)
    assert [t.day for t in got] == [11, 12, 15, 16, 17]  # Thu Fri, weekend off, Mon Tue Wed
    assert all(t.hour == 8 and t.minute == 30 for t in got)
    sat = datetime(2024, 1, 13, tzinfo=UTC)  # a fraction given on a Saturday stays there
    assert [t.day for t in fraction_times(sat, 3)] == [13, 15, 16]
    mon, fri = datetime(2024, 1, 8, tzinfo=UTC), datetime(2024, 1, 12, tzinfo=UTC)
    assert [t.day for t in fraction_times(mon, 5, fri)] == [8, 9, 10, 11, 12]  # matches: weekdays
    assert [t.day for t in fraction_times(mon, 3, fri)] == [8, 10, 12]  # 3 a week: even spread


# -- import: the same table and twin as the CSV ------------------------------------------------


def test_bundle_imports_the_table_of_the_equivalent_csv() -> None:
    got = import_bundle(BUNDLE)
    csv = read_events(CSV)
    assert got.data == csv  # every column, dtype and row order
    assert got.data.version == csv.version
    assert got.origins == {"pat-1": date(2024, 3, 4), "pat-2": date(2024, 1, 8)}
    assert time_origin(got.data.subject("pat-2").events) == date(2024, 1, 8)
    assert (
        time_origin(
            read_events(HERE.parent / "fhir" / "mcode_two_patients.csv").events.drop(
                columns="time_origin"
            )
        )
        is None
    )
    assert got.counts == {"Patient": 2, "Condition": 2, "Observation": 17,
                          "MedicationAdministration": 4, "Procedure": 1}  # fmt: skip
    # Medication and BodyStructure are context: said so, not errors
    issues = OperationOutcome.model_validate(got.outcome).issue
    assert {i.severity for i in issues} == {"information"}
    assert [i.expression for i in issues] == [
        ["Bundle.entry[2].resource"],
        ["Bundle.entry[18].resource"],
    ]
    ev = got.data.events
    rt = ev[(ev["agent"] == "rt")]
    assert rt["amt"].tolist() == [4.0] * 5 and set(rt["unit"]) == {"Gy"}  # 2000 cGy / 5
    psa = ev[(ev["kind"] == "psa") & (ev["cens"] == 1)]
    assert psa[["time", "dv", "lloq"]].values.tolist() == [[84.0, 0.2, 0.2]]  # "<0.2 ng/mL"


def test_transaction_bundle_with_uuid_references_imports_the_same() -> None:
    b = good()
    b["type"] = "transaction"
    urls = {}
    for k, e in enumerate(b["entry"]):
        r = e["resource"]
        urls[f"{r['resourceType']}/{r['id']}"] = e["fullUrl"] = (
            f"urn:uuid:00000000-0000-4000-8000-{k:012d}"
        )
        e["request"] = {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}
    text = json.dumps(b)
    for rel, url in urls.items():
        text = text.replace(f'"reference": "{rel}"', f'"reference": "{url}"')
    assert import_bundle(text).data == read_events(CSV)


def test_a_later_bundle_lines_up_with_the_stored_origin(tmp_path: Path) -> None:
    """A second Bundle with only pat-2's later observations: same days, given the origin."""
    b = good()
    keep = {"pat-2", "cond-2", "ts-2-4", "ts-2-5"}
    b["entry"] = [e for e in b["entry"] if e["resource"]["id"] in keep]
    path = tmp_path / "later.json"
    path.write_text(json.dumps(b))
    alone = workflow.load_source(str(path)).events  # own rule: day 0 = 2024-04-01
    assert alone["time"].tolist() == [0.0, 28.0]
    lined_up = workflow.load_source(str(path), origins={"pat-2": "2024-01-08"}).events
    full = read_events(CSV).subject("pat-2").events
    full = full[full["kind"] == "diameter"].tail(2).reset_index(drop=True)
    pd.testing.assert_frame_equal(lined_up, full, check_exact=True)


def test_export_functions_are_reachable_from_the_import_module() -> None:
    from oncotwin.data import fhir, fhir_export

    assert fhir.forecast_to_fhir is fhir_export.forecast_to_fhir
    with pytest.raises(AttributeError):
        fhir.no_such_function  # noqa: B018


def test_origins_given_for_a_known_patient_shift_its_times() -> None:
    got = import_bundle(BUNDLE, origins={"pat-1": "2024-03-01"})
    base = import_bundle(BUNDLE)
    a, b = got.data.subject("pat-1").events, base.data.subject("pat-1").events
    np.testing.assert_array_equal(a["time"], b["time"] + 3.0)
    assert set(a["time_origin"]) == {"2024-03-01"}
    assert got.data.subject("pat-2") == base.data.subject("pat-2")


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Bundle and the CSV, each ingested into its own SQLite store, and pat-2's twins."""
    d = tmp_path_factory.mktemp("stores")
    out: dict[str, Any] = {}
    for name, path in (("bundle", BUNDLE), ("csv", CSV)):
        store = Store(f"sqlite:///{d / name}.db")
        workflow.ingest(store, str(path))
        # claret uses drug exposure: the radiotherapy fractions enter the likelihood
        record, post = workflow.create_twin(store, "pat-2", model="claret", method="laplace",
                                            seed=11)  # fmt: skip
        out[name] = (store, record, post)
    return out


def test_bundle_and_csv_give_the_same_twin(stores: dict[str, Any]) -> None:
    (_, ra, pa), (_, rb, pb) = stores["bundle"], stores["csv"]
    assert ra.data_version == rb.data_version
    assert pa.summary() == pb.summary()  # exactly: same data, same seed
    np.testing.assert_array_equal(pa.z, pb.z)
    assert pa.converged


BAD = [
    ("bad_unknown_loinc.json", "code-invalid|not-supported", "Bundle.entry[7].resource.code",
     "Observation/ts-1-3"),
    ("bad_unit.json", "code-invalid",
     "Bundle.entry[23].resource.component[0].valueQuantity.code", "Observation/ts-2-2"),
    ("bad_missing_time.json", "required", "Bundle.entry[22].resource.effective[x]",
     "Observation/psa-2-2"),
    ("bad_missing_patient.json", "not-found", "Bundle.entry[9].resource.subject.reference",
     "Observation/anc-1-2"),
    ("bad_not_a_bundle.json", "invalid", "resourceType", "got a Patient"),
    ("bad_invalid_json.json", "structure", None, "not valid JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "code", "expression", "names"), BAD)
def test_malformed_bundles_are_refused_with_an_operation_outcome(
    name: str, code: str, expression: str | None, names: str
) -> None:
    err = refused(HERE / name)
    issues = [i for i in err.outcome["issue"] if i["severity"] in ("error", "fatal")]
    assert len(issues) == 1, issues
    (issue,) = issues
    assert issue["code"] in code.split("|")
    assert issue.get("expression", [None]) == [expression]
    assert names in issue["diagnostics"]
    assert isinstance(err, DataError) and err.file == str(HERE / name)
    assert names in str(err)


def test_failed_ingest_changes_nothing_in_the_store(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'oncotwin.db'}")
    for name, *_ in BAD:  # an empty store stays empty
        with pytest.raises(FhirImportError):
            workflow.ingest(store, str(HERE / name))
    assert store.patients() == []
    workflow.ingest(store, str(BUNDLE))
    before = (store.events_all(), store.patients())
    for name, *_ in BAD:
        with pytest.raises(FhirImportError):
            workflow.ingest(store, str(HERE / name))
    after = (store.events_all(), store.patients())
    pd.testing.assert_frame_equal(before[0], after[0])
    assert before[1] == after[1]
    assert workflow.ingest(store, str(BUNDLE)).n_inserted == 0  # idempotent


def test_cli_ingest_reads_a_bundle(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from oncotwin.cli import app

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    ok = CliRunner().invoke(app, ["ingest", str(BUNDLE), "--db", db, "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["n_inserted"] == 26
    bad = CliRunner().invoke(app, ["ingest", str(HERE / "bad_unit.json"), "--db", db])
    assert bad.exit_code == 2
    assert "Observation/ts-2-2" in bad.output


def _tumour(b: dict[str, Any], rid: str) -> dict[str, Any]:
    return resource(b, rid)["component"][0]["valueQuantity"]


def test_errors_found_by_the_event_table_check_name_the_resource() -> None:
    b = good()
    _tumour(b, "ts-1-2")["value"] = -4.0  # a negative diameter
    err = refused(b)
    (issue,) = err.outcome["issue"]
    assert issue["expression"] == ["Bundle.entry[4].resource.component[0].valueQuantity.value"]
    assert "Observation/ts-1-2" in issue["diagnostics"] and "must be > 0" in issue["diagnostics"]
    b = good()
    resource(b, "ts-1-3")["effectiveDateTime"] = "2024-03-01"  # same day as ts-1-2
    (issue,) = refused(b).outcome["issue"]
    assert issue["code"] == "duplicate" and "Observation/ts-1-3" in issue["diagnostics"]


def test_every_problem_is_listed_and_nothing_is_returned() -> None:
    b = good()
    _tumour(b, "ts-1-1")["value"] = "abc"  # not a decimal: fhir.resources rejects it
    resource(b, "ma-1-2")["dosage"]["dose"].update({"unit": "tablets", "code": "{tbl}"})
    resource(b, "rt-2")["extension"].append(copy.deepcopy(resource(b, "rt-2")["extension"][2]))
    resource(b, "psa-2-3")["valueQuantity"]["comparator"] = ">"
    resource(b, "ts-2-5")["effectiveDateTime"] = "2024-04"
    err = refused(b)
    got = {(i["expression"][0], i["code"]) for i in err.outcome["issue"]}
    assert got == {
        ("Bundle.entry[3].resource.component[0].valueQuantity.value", "value"),
        ("Bundle.entry[8].resource.dosage.dose.code", "code-invalid"),
        ("Bundle.entry[21].resource.extension[3]", "not-supported"),
        ("Bundle.entry[25].resource.valueQuantity.comparator", "not-supported"),
        ("Bundle.entry[27].resource.effectiveDateTime", "value"),
    }
    assert "and 4 more issue(s)" in str(err)


def test_unsupported_resources_are_refused_or_skipped_on_request() -> None:
    b = good()
    b["entry"].append({"resource": {"resourceType": "MedicationRequest", "id": "mr-1",
                                    "status": "active", "intent": "order",
                                    "medicationCodeableConcept": {"text": "docetaxel"},
                                    "subject": {"reference": "Patient/pat-1"}}})  # fmt: skip
    resource(b, "ts-1-3")["code"]["coding"][0]["code"] = "33729-5"  # a real LOINC, not imported
    (issue, issue2) = refused(b).outcome["issue"]
    assert "Observation/ts-1-3" in issue["diagnostics"] and issue["code"] == "not-supported"
    assert issue2["expression"] == ["Bundle.entry[28].resource"]
    got = import_bundle(b, skip_unsupported=True)
    warnings = [i for i in got.outcome["issue"] if i["severity"] == "warning"]
    assert len(warnings) == 2 and "skipped" in warnings[0]["diagnostics"]
    ev = got.data.subject("pat-1").events
    assert 21.0 not in ev.loc[ev["kind"] == "diameter", "time"].tolist()
    assert len(got.data.events) == len(read_events(CSV).events) - 1


def test_read_bundle_reads_a_path_and_a_non_json_extension(tmp_path: Path) -> None:
    p = tmp_path / "export.fhir"
    p.write_text(BUNDLE.read_text())
    assert read_bundle(p) == workflow.load_source(str(p)) == read_events(CSV)


# -- export ----------------------------------------------------------------------------------


def test_forecast_exports_as_valid_fhir_and_reads_back(stores: dict[str, Any]) -> None:
    store = stores["bundle"][0]
    twin, _ = workflow.load_twin(store, "pat-2")
    fc = twin.forecast(np.linspace(0.0, 140.0, 8), seed=5)
    out = forecast_to_fhir(fc, origin="2024-01-08", schedule_name="recorded")
    text = json.dumps(out)
    Bundle.model_validate_json(text)  # valid R4(B)
    assert forecast_to_fhir(fc, origin="2024-01-08", schedule_name="recorded") == out  # stable
    back = forecast_from_fhir(text)
    expected = fc.to_frame().drop(columns="id")
    pd.testing.assert_frame_equal(back["frame"][expected.columns], expected, check_exact=True)
    assert back["subject"] == "pat-2" and back["kind"] == fc.kind == "diameter"
    assert back["unit"] == "mm" and back["provenance"] == json.loads(json.dumps(fc.provenance))
    assert back["status"] == "final" and back["method"] == ["claret"]
    assert back["schedule"]["doses"] == fc.schedule.to_dict()["doses"]
    first = out["entry"][1]["resource"]
    assert first["effectiveDateTime"] == "2024-01-08T00:00:00Z"
    assert first["code"]["coding"][0]["code"] == "33728-7"


@dataclass
class FakeForecast:
    """A forecast with a NaN and a failed calibration (what a non-converged twin gives)."""

    subject: str = "p-1"
    times: np.ndarray = field(default_factory=lambda: np.array([0.0, 7.0]))
    kind: str = "volume"
    unit: str = "mm3"
    warning: str | None = "R-hat 1.2 > 1.01"
    provenance: dict[str, Any] = field(
        default_factory=lambda: {
            "models": {"gompertz": 0.75, "logistic": 0.25},
            "method": "nuts",
            "converged": False,
        }  # fmt: skip
    )

    @property
    def median(self) -> np.ndarray:
        return np.array([100.0, np.nan])

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        return np.array([90.0, np.nan]), np.array([110.0 + level, np.nan])


def test_forecast_export_says_when_unsure_and_handles_nan() -> None:
    out = forecast_to_fhir(FakeForecast(), levels=(0.9,))
    risk = out["entry"][0]["resource"]
    assert risk["status"] == "preliminary" and "R-hat" in risk["note"][0]["text"]
    assert [c["code"] for c in risk["method"]["coding"]] == ["gompertz", "logistic"]
    nan_obs = out["entry"][2]["resource"]
    assert "valueQuantity" not in nan_obs
    assert nan_obs["dataAbsentReason"]["coding"][0]["code"] == "not-a-number"
    back = forecast_from_fhir(out)
    assert back["frame"]["hi_90"].iloc[0] == 110.9 and np.isnan(back["frame"]["median"].iloc[1])
    assert back["warning"] == "R-hat 1.2 > 1.01"


def test_recommendation_round_trip() -> None:
    rec = {
        "patient": "pat-1",
        "schedule_name": "docetaxel 60 mg/m2 q3w x6",
        "schedule": {"doses": [{"time": 0.0, "amount": 60.0, "agent": "docetaxel",
                                "duration": 0.125, "unit": "mg/m2"}], "periods": [],
                     "half_life": {}},
        "risks": [{"outcome": "progression (>= 20% growth) by day 180", "probability": 0.23,
                   "lo": 0.15, "hi": 0.31, "when": 180.0},
                  {"outcome": "grade 4 neutropenia", "probability": 0.04}],
        "constraints": [{"name": "P(ANC < 0.5 x10^9/L)", "value": 0.04, "limit": 0.1,
                         "margin": 0.06, "unit": "1"}],
        "provenance": {"models": {"claret": 1.0}, "method": "laplace", "seed": 3,
                       "converged": True},
        "warning": None,
    }  # fmt: skip
    for origin in (None, "2024-03-04"):
        out = recommendation_to_fhir(rec, origin=origin)
        RiskAssessment.model_validate_json(json.dumps(out))
        back = recommendation_from_fhir(json.dumps(out))
        for key in ("patient", "schedule_name", "schedule", "risks", "constraints", "provenance",
                    "warning"):  # fmt: skip
            assert back[key] == rec[key], key
        assert back["status"] == "final"
    with pytest.raises(DataError, match="outside"):
        recommendation_to_fhir({**rec, "risks": [{"outcome": "x", "probability": 1.5}]})
