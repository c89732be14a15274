"""FHIR R4 interoperability: import a Bundle, export a forecast as FHIR resources.

The conversions live in :mod:`oncotwin.data.fhir`; this router adds who may do it. A Bundle
is imported whole or not at all: a problem answers 422 with a FHIR OperationOutcome that
names each offending resource and field.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Body, Depends, HTTPException, Query
from fastapi.responses import JSONResponse

from ..auth import Ctx, allow, patient_access
from ..schemas import IngestOut
from .common import latest_recommendation
from .patients import require_care_consent

router = APIRouter(prefix="/fhir", tags=["fhir"])
clinician = allow("clinician")
FHIR_JSON = "application/fhir+json"


@router.post("/Bundle", status_code=201, response_model=IngestOut, summary="Import a Bundle")
def import_bundle(
    bundle: dict[str, Any] = Body(..., description="a FHIR R4 Bundle (JSON)"),
    team: str | None = Query(None, max_length=128, description="care team of new patients"),
    ctx: Ctx = Depends(clinician),
) -> IngestOut:
    """Import the Patients, Observations, MedicationAdministrations and radiotherapy courses.

    Patients already stored must be in the care of the user's teams; new patients are put in
    the care of `team` (one of the user's teams).
    """
    from ...data.fhir import import_bundle as convert

    svc = ctx.svc
    stored = {r.id: r for r in svc.store.patients()}
    origins = {pid: r.covariates["time_origin"] for pid, r in stored.items()
               if r.covariates.get("time_origin")}  # fmt: skip
    result = convert(bundle, source="fhir", origins=origins)
    ids = list(result.data.ids)
    mine = set(ctx.principal.teams)
    foreign = [p for p in ids if p in stored and not set(svc.security.patient_teams(p)) & mine]
    new = [p for p in ids if p not in stored]
    if foreign:
        ctx.record("write", outcome="denied", detail={"n_foreign_patients": len(foreign)})
        raise HTTPException(403, f"{len(foreign)} patient(s) of the Bundle are not in the care "
                                 "of your teams; nothing was imported")  # fmt: skip
    if new and (team is None or team not in mine):
        ctx.record("write", outcome="denied", detail={"n_new_patients": len(new)})
        raise HTTPException(403, f"the Bundle has {len(new)} new patient(s): name one of your "
                                 "teams (?team=) to care for them; nothing was imported")  # fmt: skip
    res = svc.store.ingest(result.data, source=f"fhir:{ctx.principal.name}")
    for pid in new:
        svc.security.assign_patient(pid, team or "")
    for pid in ids:
        ctx.record("write", patient_id=pid, detail={"fhir": True, "n_rows": res.n_rows,
                                                    "new": pid in new})  # fmt: skip
    return IngestOut(ingest_id=res.ingest_id, n_rows=res.n_rows, n_inserted=res.n_inserted,
                     n_skipped=res.n_skipped, data_version=res.data_version)  # fmt: skip


class _StoredForecast:
    """A stored forecast payload seen as :class:`oncotwin.data.fhir.ForecastLike`."""

    def __init__(self, subject: str, payload: dict[str, Any]) -> None:
        self.subject, self.p = subject, payload
        self.times = np.asarray(payload["times"], float)
        self.kind, self.unit = payload["kind"], payload["unit"]
        self.warning, self.provenance = payload.get("warning"), payload.get("provenance") or {}

    @property
    def median(self) -> np.ndarray:
        return np.asarray(self.p["median"], float)

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        tag = {0.5: "50", 0.9: "90"}[level]
        return np.asarray(self.p[f"lo{tag}"], float), np.asarray(self.p[f"hi{tag}"], float)


@router.get("/Patient/{patient_id}/forecast", summary="A forecast as a FHIR Bundle")
def export_forecast(
    ctx: Ctx = Depends(patient_access),
    schedule: str | None = Query(None, max_length=64, description="schedule name"),
) -> JSONResponse:
    """The latest twin's stored forecast under `schedule` (default: the first) as FHIR R4."""
    from ...data.fhir import forecast_to_fhir

    require_care_consent(ctx)
    svc, pid = ctx.svc, ctx.patient_id or ""
    rec = svc.store.twin(pid)
    stored = {f.schedule_name: f for f in svc.store.forecasts(rec.id)}
    if not stored:
        raise HTTPException(404, "no forecast of the latest twin yet; GET its forecasts first")
    name = schedule if schedule is not None else next(iter(stored))
    if name not in stored:
        raise HTTPException(404, f"no forecast under schedule {name!r}; have: {list(stored)}")
    origin = next((r.covariates.get("time_origin") for r in svc.store.patients() if r.id == pid),
                  None)  # fmt: skip
    body = forecast_to_fhir(_StoredForecast(pid, stored[name].payload), origin=origin,
                            schedule_name=name, levels=(0.5, 0.9))  # fmt: skip
    ctx.record("export", detail={"fhir": True, "twin_version": rec.version, "schedule": name})
    return JSONResponse(body, media_type=FHIR_JSON)


@router.get("/Patient/{patient_id}/recommendation",
            summary="The latest recommendation as a FHIR RiskAssessment")  # fmt: skip
def export_recommendation(ctx: Ctx = Depends(patient_access)) -> JSONResponse:
    """The latest treatment recommendation as a FHIR R4 RiskAssessment (404 when none).

    ``mitigation`` names the recommended schedule; predictions carry the probabilities behind
    it; constraint margins and provenance are extensions; status is "preliminary" with a
    warning note when the calibration behind it did not pass its checks.
    """
    from ...data.fhir_export import recommendation_to_fhir

    require_care_consent(ctx)
    svc, pid = ctx.svc, ctx.patient_id or ""
    job = latest_recommendation(svc.security, pid)
    if job is None or job.result is None:
        raise HTTPException(404, f"patient {pid!r} has no recommendation yet; request one with "
                                 "POST /api/patients/{patient_id}/recommendations")  # fmt: skip
    origin = next((r.covariates.get("time_origin") for r in svc.store.patients() if r.id == pid),
                  None)  # fmt: skip
    body = recommendation_to_fhir(job.result, origin=origin)
    ctx.record("export", detail={"fhir": True, "job": job.id,
                                 "schedule": job.result.get("schedule_name")})  # fmt: skip
    return JSONResponse(body, media_type=FHIR_JSON)
