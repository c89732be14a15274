"""The service API end to end on SQLite and PostgreSQL: twins as jobs, versions and as_of,
forecasts under named schedules, events without double writes, consent, research exports,
FHIR import/export, error codes, size limit, and logs free of health data."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import numpy as np
import pytest
from svcworld import PSEUDONYM_KEY, World, mini_bundle, wait_job

from oncotwin.inference.population import Population
from oncotwin.inference.posterior import Diagnostics
from oncotwin.privacy import date_shift, pseudonym


def test_twin_job_versions_and_as_of(world: World) -> None:
    c, h = world.client, world.auth("clin_a")
    v1 = c.get("/api/patients/P1/twin", headers=h).json()
    r = c.post("/api/patients/P1/twins", json={"method": "laplace", "draws": 200, "seed": 3},
               headers=h)  # fmt: skip
    assert r.status_code == 202, r.text
    job = wait_job(world, r.json())
    assert job["status"] == "done", job
    assert job["progress"] == 1.0 and job["done"] == job["total"] >= 2
    assert job["result"]["twin_version"] == v1["version"] + 1
    versions = c.get("/api/patients/P1/twins", headers=h).json()
    assert [v["version"] for v in versions][-2:] == [v1["version"], v1["version"] + 1]
    assert versions[-1]["seed"] == 3 and versions[-1]["method"] == "laplace"
    # as_of just before the new version was created gives the old one
    created = datetime.fromisoformat(versions[-1]["created_at"])
    before = created.timestamp() - 1e-3
    as_of = datetime.fromtimestamp(before, created.tzinfo).isoformat()
    old = c.get("/api/patients/P1/twin", params={"as_of": as_of}, headers=h).json()
    assert old["version"] == v1["version"]
    assert c.get("/api/patients/P1/twin", params={"version": 1}, headers=h).json()["version"] == 1
    r = c.get("/api/patients/P1/twin", params={"version": 99}, headers=h)
    assert r.status_code == 404 and "no twin version 99" in r.json()["detail"]


def test_events_are_stored_exactly_once_and_update_finds_surprises(world: World) -> None:
    c, h = world.client, world.auth("clin_a")
    # 5000 mm^3 at day 28 is far above the fit's 95% interval (growth 100 e^{0.08 t}: ~940)
    body = {"events": [{"time": 28.0, "dv": 5000.0, "kind": "volume", "unit": "mm3"}]}
    first = c.post("/api/patients/P1/events", json=body, headers=h).json()
    again = c.post("/api/patients/P1/events", json=body, headers=h).json()
    assert (first["n_inserted"], again["n_inserted"], again["n_skipped"]) == (1, 0, 1)
    events = c.get("/api/patients/P1", headers=h).json()["events"]
    assert sum(e["time"] == 28.0 for e in events) == 1
    job = wait_job(world, c.post("/api/patients/P1/twins/update", json={"seed": 1},
                                 headers=h).json())  # fmt: skip
    assert job["status"] == "done", job
    surprises = c.get("/api/patients/P1/surprises", headers=h).json()
    assert [(s["time"], s["observed"]) for s in surprises] == [(28.0, 5000.0)]
    assert surprises[0]["hi"] < 5000.0 and surprises[0]["level"] == pytest.approx(0.95)
    listed = {p["id"]: p for p in c.get("/api/patients", headers=h).json()}
    assert listed["P1"]["n_surprises"] == 1 and "P3" not in listed


def test_forecasts_under_named_schedules(world: World) -> None:
    c, h = world.client, world.auth("clin_a")
    fc = c.get("/api/patients/P1/forecasts", headers=h).json()
    names = [f["schedule_name"] for f in fc["forecasts"]]
    assert names[0] == "no treatment"  # P1 is untreated: the recorded plan
    assert fc["treatment_effect"] is False  # Gompertz growth has no treatment term
    body = {"name": "docetaxel weekly", "seed": 2,
            "schedule": {"doses": [{"agent": "docetaxel", "amount": 75, "unit": "mg",
                                    "start": fc["last_observation"] + 1, "every": 7,
                                    "count": 3}]}}  # fmt: skip
    r = c.post("/api/patients/P1/forecasts", json=body, headers=h)
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["seed"] == 2 and len(new["schedule"]["doses"]) == 3
    f = {x["schedule_name"]: x for x in c.get("/api/patients/P1/forecasts", headers=h).json()[
        "forecasts"]}  # fmt: skip
    assert set(f) == {"no treatment", "docetaxel weekly"}
    for x in f.values():  # every forecast says how sure it is
        lo90, lo50, med, hi50, hi90 = (np.array(x[k], float) for k in
                                       ("lo90", "lo50", "median", "hi50", "hi90"))  # fmt: skip
        assert np.all(lo90 <= lo50) and np.all(lo50 <= med) and np.all(med <= hi50)
        assert np.all(hi50 <= hi90)
        assert x["provenance"]["forecast_seed"] in (0, 1, 2)
    bad = dict(body, schedule={"doses": [{"amount": -1, "start": 0}]})
    assert c.post("/api/patients/P1/forecasts", json=bad, headers=h).status_code == 422


def test_error_codes(world: World) -> None:
    c, h = world.client, world.auth("clin_a")
    r = c.post("/api/patients/P1/twins", json={"model": "no_such_model"}, headers=h)
    assert r.status_code == 422 and r.json()["error"] == "ModelError"
    r = c.get("/api/patients/P2/forecasts", headers=h)
    assert r.status_code == 404 and "no twin yet" in r.json()["detail"]
    r = c.post("/api/patients/P2/twins/update", json={}, headers=h)
    assert r.status_code == 404
    r = c.post("/api/patients/P1/events", json={"events": [{"time": 1, "evid": 3}]}, headers=h)
    assert r.status_code == 422
    r = c.post("/api/patients", json={"id": "P1", "team": "oncology-a"}, headers=h)
    assert r.status_code == 409 and r.json()["error"] == "StoreError"
    assert c.get("/api/jobs/999999", headers=h).status_code == 404


def test_request_size_limit(world: World) -> None:
    limit = world.svc.settings.max_request_bytes
    events = [{"time": float(i), "dv": 1.0, "kind": "volume", "unit": "mm3"} for i in range(9000)]
    body = json.dumps({"events": events}).encode() + b" " * limit
    r = world.client.post("/api/patients/P2/events", content=body, headers={
        **world.auth("clin_a"), "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 413

    def chunks():  # streamed without a Content-Length: counted as it arrives
        yield b'{"events": ['
        for _ in range(limit // 1000 + 1):
            yield b" " * 1000

    r = world.client.post("/api/patients/P2/events", content=chunks(), headers={
        **world.auth("clin_a"), "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    assert world.svc.store.events("P2").shape[0] == 7  # nothing was stored


def test_consent_gates_research_and_care(world: World) -> None:
    c = world.client
    res = c.get("/api/research/patients", headers=world.auth("res")).json()
    n_all = res["n_included"] + res["n_excluded"]
    assert pseudonym(PSEUDONYM_KEY, "P2") not in {p["pseudonym"] for p in res["patients"]}
    assert pseudonym(PSEUDONYM_KEY, "P1") in {p["pseudonym"] for p in res["patients"]}
    # P3's research consent is withdrawn: excluded everywhere, and counted
    r = c.post("/api/patients/P3/consent", json={"scope": "research", "granted": False},
               headers=world.auth("clin_b"))  # fmt: skip
    assert r.status_code == 201 and r.json()["holds"] is False
    after = c.get("/api/research/patients", headers=world.auth("res")).json()
    assert after["n_excluded"] == res["n_excluded"] + 1
    assert after["n_included"] + after["n_excluded"] == n_all
    export = c.get("/api/research/export", headers=world.auth("res")).json()
    assert {e["id"] for e in export["events"]} == {p["pseudonym"] for p in after["patients"]}
    assert export["n_excluded"] == after["n_excluded"]
    cohort = c.get("/api/research/cohort", headers=world.auth("res")).json()
    assert (cohort["n_included"], cohort["n_excluded"]) == (after["n_included"],
                                                            after["n_excluded"])  # fmt: skip
    # consent that expired is not consent
    r = c.post("/api/patients/P2/consent", headers=world.auth("clin_a"), json={
        "scope": "care", "granted": True, "valid_from": "2020-01-01T00:00:00Z",
        "valid_until": "2021-01-01T00:00:00Z"})  # fmt: skip
    assert r.json()["holds"] is False
    r = c.post("/api/patients/P2/twins", json={"method": "laplace"}, headers=world.auth("clin_a"))
    assert r.status_code == 403 and "consent" in r.json()["detail"]
    r = c.post("/api/patients/P2/consent", json={"scope": "care", "granted": True, "valid_from":
               "2024-01-01T00:00:00Z", "valid_until": "2023-01-01T00:00:00Z"},
               headers=world.auth("clin_a"))  # fmt: skip
    assert r.status_code == 422


def test_research_export_has_no_identifiers(world: World) -> None:
    c = world.client
    export = c.get("/api/research/export", headers=world.auth("res")).json()
    text = json.dumps(export)
    for pid in ("P1", "P2", "P3", "NEW-1", "FHIR-1"):
        assert f'"{pid}"' not in text
    rows_text = json.dumps(export["events"])
    assert "Doe" not in text and "surname" not in rows_text
    assert "surname" in export["dropped_columns"]
    rows = [e for e in export["events"] if e["id"] == pseudonym(PSEUDONYM_KEY, "P1")]
    shift = date_shift(PSEUDONYM_KEY, "P1", export["max_shift_days"])
    times = sorted({e["time"] for e in rows if e["evid"] == 0})
    assert times[:7] == [t + shift for t in (0.0, 3, 7, 10, 14, 17, 21)]  # intervals kept
    assert export["events"][0]["age"] == 61  # numeric, non-identifying covariates stay


def test_synthetic_cohort_export(world: World) -> None:
    rng = np.random.default_rng(0)
    s = 40
    pop = Population(
        model="exponential", error_model="proportional", names=("v0", "a", "sigma"),
        mu=np.tile([0.0, np.log(0.07)], (s, 1)), omega=np.full((s, 2), 0.2),
        corr_chol=np.tile(np.eye(2), (s, 1, 1)), beta=np.zeros((s, 0, 2)),
        z_error=np.full((s, 1), np.log(0.05)), covariates=(), covariate_center=np.zeros(0),
        covariate_scale=np.zeros(0), subjects=("P1", "P2", "P3"),
        z_subjects=rng.normal(0, 0.2, (s, 3, 2)) + [0.0, np.log(0.07)],
        diagnostics=Diagnostics("nuts", 1.0, 1000.0, 1000.0, 0, 4), method="nuts",
    )  # fmt: skip
    world.svc.store.save_population("demo-pop", model="exponential", record=pop.record(),
                                    draws=pop.arrays())  # fmt: skip
    r = world.client.post("/api/research/synthetic", headers=world.auth("res"),
                          json={"population": "demo-pop", "n": 5, "seed": 4})  # fmt: skip
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["check"]["exact_row_matches"] == 0 and out["check"]["min_distance"] >= 0.1
    assert {e["id"] for e in out["events"]} == {f"SYN-{i:04d}" for i in range(1, 6)}
    assert len(out["events"]) == 25 and out["seed"] == 4
    real = {round(v, 6) for pid in ("P1", "P2", "P3") for v in world.svc.store.events(pid)["dv"]}
    assert not {round(e["dv"], 6) for e in out["events"]} & real
    again = world.client.post(
        "/api/research/synthetic",
        headers=world.auth("res"),
        json={"population": "demo-pop", "n": 5, "seed": 4},
    ).json()
    assert again["events"] == out["events"]  # same seed, same cohort


def test_fhir_import_and_forecast_export(world: World) -> None:
    c, h = world.client, world.auth("clin_a")
    bad = mini_bundle("FHIR-2")
    bad["entry"][1]["resource"]["component"][0]["valueQuantity"]["code"] = "kg"
    r = c.post("/fhir/Bundle", params={"team": "oncology-a"}, json=bad, headers=h)
    assert r.status_code == 422 and r.json()["resourceType"] == "OperationOutcome"
    assert "FHIR-2" not in {p.id for p in world.svc.store.patients()}  # rejected whole
    r = c.post("/fhir/Bundle", params={"team": "oncology-a"}, json=mini_bundle("FHIR-3"),
               headers=h)  # fmt: skip
    assert r.status_code == 201 and r.json()["n_inserted"] == 2
    assert world.svc.security.patient_teams("FHIR-3") == ["oncology-a"]
    c.get("/api/patients/P1/forecasts", headers=h)
    r = c.get("/fhir/Patient/P1/forecast", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle"
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert kinds == {"RiskAssessment", "Observation"}


def test_report_and_audit_trail(world: World) -> None:
    c, h = world.client, world.auth("clin_a")
    r = c.get("/api/patients/P1/report", headers=h)
    assert r.status_code == 200 and r.text.startswith("<!DOCTYPE html>")
    trail = c.get("/api/patients/P1/audit", headers=h).json()
    assert trail[0]["resource"] == "GET /api/patients/{patient_id}/report"
    assert (trail[0]["actor"], trail[0]["action"], trail[0]["purpose"]) == (
        "clin_a", "compute", "care")  # fmt: skip
    v = c.get("/api/audit/verify", headers=world.auth("admin")).json()
    assert v["ok"] and v["n_entries"] > 20


def test_logs_hold_no_health_data(world: World, caplog: pytest.LogCaptureFixture) -> None:
    c, h = world.client, world.auth("clin_a")
    with caplog.at_level(logging.DEBUG):
        c.post(
            "/api/patients/P2/events",
            headers=h,
            json={"events": [{"time": 40.0, "dv": 4321.5, "kind": "volume", "unit": "mm3"}]},
        )
        c.get("/api/patients/P2", headers=h)
        c.get("/api/patients/P2/forecasts", headers=h)  # 404: no twin
        c.get("/api/research/export", headers=world.auth("res"))
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(
        ("oncotwin", "uvicorn", "fastapi")))  # fmt: skip
    assert "GET /api/patients/{patient_id}" in text  # routes are logged ...
    for secret in ("P2", "4321.5", "Doe", "oncology"):  # ... ids, values and names are not
        assert secret not in text
