"""Treatment optimisation and virtual trials as service jobs: requests checked before a job
is queued (422 naming the field), jobs with progress, results equal to the library's on the
same seed, the recommendation on the patient's API and as a FHIR RiskAssessment, audit.

References: the service must return exactly what ``oncotwin.optimize.optimize_twin`` and
``oncotwin.trials.run_trial``/``analyse_trial`` give for the same twin, design and seed (the
CLI's numbers); the paired comparison's confidence rule (probability of beating the standard
of care >= threshold) is checked on the returned numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from svcworld import World, wait_job

NULL_DESIGN = Path(__file__).parents[1] / "trials" / "null_design.yaml"
DRAWS = 40  # small: one compilation of the radiotherapy search, ~0.5 s per run after it


def _jobs(world: World, kind: str) -> int:
    return len(world.svc.security.jobs(kind=kind))


def test_bad_recommendation_requests_are_422_and_start_nothing(world: World) -> None:
    c, h = world.client, world.auth("clin_a")
    before = _jobs(world, "optimize")
    url = "/api/patients/P1/recommendations"
    r = c.post(url, json={"modality": "surgery"}, headers=h)
    assert r.status_code == 422 and "radiotherapy" in r.text
    cases = [
        ({"objective": "longevity"}, "field 'objective': unknown objective 'longevity'"),
        ({"objective": "burden:99999"}, "field 'objective': horizon 99999 days"),
        ({"risk": "cvar:1.5"}, "field 'risk': risk level must be in [0, 1)"),
        ({"constraints": ["weekdays", "max-dose:lots"]}, "field 'constraints[2]'"),
        ({"constraints": ["ntcp:brain"]}, "field 'constraints[1]'"),
    ]
    for extra, message in cases:
        r = c.post(url, json={"modality": "radiotherapy", **extra}, headers=h)
        assert r.status_code == 422, (extra, r.text)
        assert message in r.json()["detail"], (extra, r.text)
    r = c.post(url, json={"modality": "radiotherapy", "draws": 5}, headers=h)
    assert r.status_code == 422  # fewer than 10 draws
    r = c.post("/api/patients/P2/recommendations", json={"modality": "radiotherapy"}, headers=h)
    assert r.status_code == 404 and "no twin yet" in r.json()["detail"]
    assert _jobs(world, "optimize") == before


def test_recommendation_job_matches_the_library_and_exports_to_fhir(world: World) -> None:
    from fhir.resources.R4B.riskassessment import RiskAssessment

    from oncotwin import workflow
    from oncotwin.data.fhir_export import recommendation_from_fhir
    from oncotwin.optimize import optimize_twin

    c, h = world.client, world.auth("clin_a")
    assert c.get("/api/patients/P1/recommendation", headers=h).json()["available"] is False
    r = c.get("/fhir/Patient/P1/recommendation", headers=h)
    assert r.status_code == 404 and "no recommendation yet" in r.json()["detail"]
    body = {"modality": "radiotherapy", "draws": DRAWS, "seed": 7,
            "constraints": ["max-dose:3"]}  # fmt: skip
    r = c.post("/api/patients/P1/recommendations", json=body, headers=h)
    assert r.status_code == 202, r.text
    assert (r.json()["kind"], r.json()["patient_id"]) == ("optimize", "P1")
    job = wait_job(world, r.json())
    assert job["status"] == "done", job
    assert job["progress"] == 1.0 and job["done"] == job["total"] > 1  # stages were reported
    got = c.get("/api/patients/P1/recommendation", headers=h).json()
    assert got["available"] and got["job_id"] == job["id"]
    rec = got["recommendation"]
    assert rec == job["result"]

    # The library on the same twin and seed gives the same recommendation.
    twin, record = workflow.load_twin(world.svc.store, "P1")
    lib = optimize_twin(twin, "radiotherapy", constraints=["max-dose:3"], n_draws=DRAWS, seed=7)
    assert rec["headline"] == lib.headline()
    assert rec["best"][0]["name"] == lib.best[0].candidate.name
    assert rec["standard_of_care"]["median"] == pytest.approx(lib.standard.median, rel=1e-12)
    assert (rec["n_draws"], rec["seed"], rec["modality"]) == (DRAWS, 7, "radiotherapy")
    assert rec["provenance"]["twin_version"] == record.version
    # How sure: confident exactly when the probability of doing better reaches the threshold.
    comp = rec["comparison"]
    assert rec["confident"] == (comp["probability_better"] >= rec["threshold"])
    assert comp["lo90"] <= comp["median_gain"] <= comp["hi90"]
    top = rec["best"][0] if rec["best"] else rec["standard_of_care"]
    assert rec["schedule_name"] == top["name"]
    assert [x["name"] for x in rec["constraints"]] == [x["name"] for x in top["constraints"]]
    # The requested cap sits beside the modality's default 5 Gy cap; its margin is limit - value.
    default = next(x for x in rec["constraints"] if x["name"] == "dose per fraction")
    capped = next(x for x in rec["constraints"] if x["name"] == "maximum dose per administration")
    assert (default["limit"], capped["limit"]) == (5.0, 3.0)
    assert capped["met"] and capped["value"] <= 3.0
    assert capped["margin"] == pytest.approx(3.0 - capped["value"])
    assert rec["notes"] and rec["warning"] is None

    # The FHIR export validates and carries the recommendation's numbers.
    r = c.get("/fhir/Patient/P1/recommendation", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    ra = RiskAssessment.model_validate_json(r.text)
    assert ra.mitigation == f"recommended schedule: {rec['schedule_name']}"
    assert ra.status == "final"  # the twin's calibration passed its checks
    back = recommendation_from_fhir(r.text)
    assert [x["probability"] for x in back["risks"]] == [x["probability"] for x in rec["risks"]]
    assert back["risks"][0]["probability"] == comp["probability_better"]
    assert [x["name"] for x in back["constraints"]] == [x["name"] for x in rec["constraints"]]
    assert back["provenance"]["twin_version"] == record.version

    # Audited as a computation (the request and the job) and as an export.
    trail = c.get("/api/patients/P1/audit", headers=h).json()
    seen = {(e["action"], e["resource"]) for e in trail}
    assert ("compute", "POST /api/patients/{patient_id}/recommendations") in seen
    assert ("compute", "job optimize") in seen
    assert ("export", "GET /fhir/Patient/{patient_id}/recommendation") in seen


def test_recommendation_needs_care_consent(world: World) -> None:
    c, h = world.client, world.auth("clin_a")
    r = c.post("/api/patients/P1/consent", json={"scope": "care", "granted": False}, headers=h)
    assert r.status_code == 201
    try:
        for method, url, body in (
            ("POST", "/api/patients/P1/recommendations", {"modality": "radiotherapy"}),
            ("GET", "/api/patients/P1/recommendation", None),
            ("GET", "/fhir/Patient/P1/recommendation", None),
        ):
            r = c.request(method, url, json=body, headers=h)
            assert r.status_code == 403 and "consent" in r.json()["detail"], (url, r.text)
    finally:
        c.post("/api/patients/P1/consent", json={"scope": "care", "granted": True}, headers=h)


def _design() -> dict[str, Any]:
    return yaml.safe_load(NULL_DESIGN.read_text(encoding="utf-8"))


def test_bad_trial_requests_are_422_naming_the_field(world: World) -> None:
    c, h = world.client, world.auth("res")
    before = _jobs(world, "trial")
    design = _design()
    cases = [
        ({"design": {**design, "arms": [{"name": "A", "ratio": -1}]}}, "arms[1].ratio"),
        ({"design": {**design, "arms": [{"name": "A", "regimen": "/etc/regimen.yaml"}]}},
         "arms[1].regimen"),
        ({"design": {**design, "visits": {"every": "1 day"}, "follow_up": "5 years"}},
         "visits.every"),
        ({"design": {**design, "endpoints": {"primary": "happiness"}}}, "endpoints.primary"),
        ({"design": {**design, "colour": "blue"}}, "colour"),
        ({"design": "not a mapping"}, "design"),
    ]  # fmt: skip
    for body, field in cases:
        r = c.post("/api/research/trials", json=body, headers=h)
        assert r.status_code == 422, (field, r.text)
        assert field in r.text, (field, r.text)
    for extra in ({"n": 5000}, {"replicates": 51}, {"n": 1}):  # the service's caps
        r = c.post("/api/research/trials", json={"design": design, **extra}, headers=h)
        assert r.status_code == 422, (extra, r.text)
    assert _jobs(world, "trial") == before


def test_trial_job_matches_the_library(world: World) -> None:
    from oncotwin.trials import analyse_trial, design_from_dict, run_trial
    from oncotwin.trials.analysis import rejection_rate, replicate_estimates

    c = world.client
    body = {"design": _design(), "n": 100, "replicates": 2, "seed": 5}
    r = c.post("/api/research/trials", json=body, headers=world.auth("admin"))
    assert r.status_code == 202, r.text
    assert (r.json()["kind"], r.json()["patient_id"]) == ("trial", None)
    job = wait_job(world, r.json(), user="admin")
    assert job["status"] == "done", job
    assert job["done"] == job["total"] > 1
    out = job["result"]
    assert (out["n"], out["replicates"], out["seed"]) == (100, 2, 5)
    assert [a["arm"] for a in out["arms"]] == ["A", "B"]

    d = design_from_dict(_design())
    res = run_trial(d, 100, replicates=2, seed=5)
    lib = analyse_trial(res)
    assert [a["n"] for a in out["arms"]] == lib.arms["n"].tolist()
    assert [a["orr"] for a in out["arms"]] == pytest.approx(lib.arms["orr"].tolist(), rel=1e-9)
    comp, ref = out["comparisons"][0], lib.comparisons.iloc[0]
    for key in ("hr_os", "hr_os_low", "hr_os_high", "hr_pfs", "orr_diff"):
        assert comp[key] == pytest.approx(float(ref[key]), rel=1e-9), key
    assert comp["hr_os_low"] < comp["hr_os"] < comp["hr_os_high"]
    rate, se = rejection_rate(replicate_estimates(res), d.endpoints.alpha)
    assert out["power"]["rejection_rate"] == rate and out["power"]["mc_se"] == se
    assert out["status"] == res.counts()
    json.dumps(out, allow_nan=False)  # strict JSON: no NaN or infinity
    entries = world.svc.audit.entries(actor="admin")
    assert any(e.action == "compute" and e.resource == "POST /api/research/trials"
               and e.patient_id is None for e in entries)  # fmt: skip
