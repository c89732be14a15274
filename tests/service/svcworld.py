"""Helpers of the service tests: the populated test service ("world") and test data.

The world: care teams "oncology-a" and "oncology-b"; users admin, clin_a (team a), clin_b
(team b), res (researcher); patients P1 (team a; care and research consent; a twin,
calibrated by MAP + Laplace on seven tumour volumes of exponential growth 100 e^{0.08 t} mm^3),
P2 (team a; care consent only) and P3 (team b; care and research consent). PostgreSQL runs
when ``ONCOTWIN_TEST_POSTGRES_URL`` points at a server (as in tests/store/conftest.py); each
world gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from oncotwin.service import Settings, create_app
from oncotwin.store.security import Security

POSTGRES_URL = os.environ.get("ONCOTWIN_TEST_POSTGRES_URL")
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(POSTGRES_URL is None, reason="set ONCOTWIN_TEST_POSTGRES_URL"),
        ],
    ),
]
TIMES = np.array([0.0, 3, 7, 10, 14, 17, 21])
PSEUDONYM_KEY = b"test-pseudonym-key"


def tumour_events(pid: str, times: np.ndarray = TIMES, rate: float = 0.08) -> pd.DataFrame:
    """Noise-free exponential growth 100 e^{rate t} mm^3 observed at `times` (days)."""
    return pd.DataFrame({"id": pid, "time": times, "evid": 0, "dv": 100 * np.exp(rate * times),
                         "kind": "volume", "unit": "mm3"})  # fmt: skip


@dataclass
class World:
    """A running test service and the API tokens of its users."""

    client: TestClient
    app: Any
    url: str
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, user: str | None) -> dict[str, str]:
        return {} if user is None else {"Authorization": f"Bearer {self.tokens[user]}"}

    @property
    def svc(self) -> Any:
        return self.app.state.svc


def build_world(url: str) -> World:
    """Create the service of the module docstring on the empty database at `url`."""
    from oncotwin import workflow

    app = create_app(Settings(db_url=url, pseudonym_key=PSEUDONYM_KEY, secret_key=b"k" * 32,
                              default_method="laplace"))  # fmt: skip
    svc = app.state.svc
    sec: Security = svc.security
    for team in ("oncology-a", "oncology-b"):
        sec.add_team(team)
    tokens = {}
    for name, role, teams in (("admin", "admin", []), ("clin_a", "clinician", ["oncology-a"]),
                              ("clin_b", "clinician", ["oncology-b"]),
                              ("res", "researcher", [])):  # fmt: skip
        tokens[name] = sec.add_user(name, role, teams)[1]
    for pid, team in (("P1", "oncology-a"), ("P2", "oncology-a"), ("P3", "oncology-b")):
        sec.create_patient(pid, team, {"age": 61, "surname": f"Doe-{pid}"})
        svc.store.ingest(tumour_events(pid, rate=0.08 if pid != "P3" else 0.05), source="test")
        sec.record_consent(pid, "care", True, recorded_by="admin")
    for pid in ("P1", "P3"):
        sec.record_consent(pid, "research", True, recorded_by="admin")
    workflow.create_twin(svc.store, "P1", method="laplace", draws=200)
    return World(TestClient(app), app, url, tokens)


def wait_job(world: World, job: dict[str, Any], user: str = "clin_a") -> dict[str, Any]:
    """Wait for a background job and return its final state from the API."""
    world.svc.jobs.wait(job["id"], timeout=120)
    r = world.client.get(f"/api/jobs/{job['id']}", headers=world.auth(user))
    assert r.status_code == 200, r.text
    return r.json()


def mini_bundle(pid: str, values_mm: tuple[float, ...] = (42.0, 47.0)) -> dict[str, Any]:
    """A FHIR R4 Bundle: one mCODE cancer patient and mCODE TumorSize Observations (LOINC
    21889-1, longest dimension as component 33728-7 in mm, UCUM), a week apart from 2024-02-19."""
    obs = [
        {"resource": {
            "resourceType": "Observation", "id": f"ts-{pid}-{i}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "21889-1"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": f"2024-02-{19 + 7 * i:02d}",
            "component": [{
                "code": {"coding": [{"system": "http://loinc.org", "code": "33728-7"}]},
                "valueQuantity": {"value": v, "unit": "mm", "system": "http://unitsofmeasure.org",
                                  "code": "mm"},
            }],
        }}
        for i, v in enumerate(values_mm)
    ]  # fmt: skip
    patient = {"resource": {"resourceType": "Patient", "id": pid, "gender": "female",
                            "birthDate": "1961-05-17"}}  # fmt: skip
    return {"resourceType": "Bundle", "type": "collection", "entry": [patient, *obs]}
