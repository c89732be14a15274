"""Patients of the user's care teams: data, events, twins, forecasts, surprises, consent, audit.

Only clinicians of a patient's care team get here (see :func:`..auth.patient_access`). Twin
computations and their results also need the patient's current consent to care use.
"""

from __future__ import annotations

import math
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse

from ...errors import NotFoundError
from ..auth import Ctx, allow, patient_access
from ..schemas import (
    AuditOut,
    ConsentIn,
    ConsentOut,
    EventsIn,
    ForecastOut,
    ForecastsOut,
    IngestOut,
    JobOut,
    NamedScheduleIn,
    ObservationsOut,
    PatientIn,
    PatientOut,
    PatientSummaryOut,
    RecommendationIn,
    RecommendationOut,
    SurpriseOut,
    TwinIn,
    TwinOut,
    TwinUpdateIn,
)
from .common import audit_out, consent_out, job_out, latest_recommendation, twin_out

router = APIRouter(prefix="/api/patients", tags=["patients"])
clinician = allow("clinician")


def require_care_consent(ctx: Ctx) -> None:
    """403 unless the patient's latest care-use consent holds now."""
    assert ctx.patient_id is not None
    yes, _ = ctx.svc.security.consenting("care", [ctx.patient_id])
    if not yes:
        ctx.record("access", outcome="denied", detail={"reason": "no care consent"})
        raise HTTPException(403, f"patient {ctx.patient_id!r} has no current consent to care use")


@router.get("", response_model=list[PatientSummaryOut], summary="Patients of my care teams")
def list_patients(ctx: Ctx = Depends(clinician)) -> list[PatientSummaryOut]:
    """Every patient in the care of the user's teams, with twin status and surprise count."""
    svc = ctx.svc
    mine = set(svc.security.team_patients(ctx.principal.teams))
    out = []
    for row in svc.store.patients():
        if row.id not in mine:
            continue
        latest = svc.store.twin_history(row.id)[-1:] if row.n_twins else []
        out.append(PatientSummaryOut(
            id=row.id, n_observations=row.n_observations, n_doses=row.n_doses,
            first_time=row.first_time, last_time=row.last_time,
            twin_version=latest[0].version if latest else None,
            twin_model=latest[0].model if latest else None,
            twin_converged=latest[0].converged if latest else None,
            n_surprises=len(svc.store.surprises(row.id)) if latest else 0,
            teams=svc.security.patient_teams(row.id),
        ))  # fmt: skip
    ctx.record("read", detail={"n_patients": len(out)})
    return out


@router.post("", status_code=201, response_model=PatientOut, summary="Register a patient")
def create_patient(body: PatientIn, ctx: Ctx = Depends(clinician)) -> PatientOut:
    """Register a new patient in the care of one of the user's teams."""
    if body.team not in ctx.principal.teams:
        ctx.record("write", outcome="denied", detail={"reason": "not a member of the team"})
        raise HTTPException(403, f"you are not a member of team {body.team!r}")
    ctx.svc.security.create_patient(body.id, body.team, body.covariates)
    ctx.record("write", patient_id=body.id, detail={"created": True})
    return _patient(ctx, body.id)


@router.get("/{patient_id}", response_model=PatientOut, summary="A patient's data")
def get_patient(ctx: Ctx = Depends(patient_access)) -> PatientOut:
    """The patient's events, covariates, consent decisions, care teams and twin versions."""
    out = _patient(ctx, ctx.patient_id or "")
    ctx.record("read", detail={"n_events": len(out.events)})
    return out


def _patient(ctx: Ctx, pid: str) -> PatientOut:
    svc = ctx.svc
    events = svc.store.events(pid)
    covariates = next((r.covariates for r in svc.store.patients() if r.id == pid), {})
    cols = [c for c in events.columns if c in ("time", "evid", "dv", "kind", "unit", "amt",
                                                "agent", "on", "cens")]  # fmt: skip
    rows = [{k: _plain(v) for k, v in r.items()} for r in events[cols].to_dict("records")]
    return PatientOut(
        id=pid, covariates=covariates, teams=svc.security.patient_teams(pid), events=rows,
        consent=[consent_out(c) for c in svc.security.consents(pid)],
        twins=[twin_out(t) for t in svc.store.twin_history(pid)],
    )  # fmt: skip


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@router.post("/{patient_id}/events", status_code=201, response_model=IngestOut,
             summary="Ingest events")  # fmt: skip
def post_events(body: EventsIn, ctx: Ctx = Depends(patient_access)) -> IngestOut:
    """Store new events (observations, doses, switches) of the patient, atomically.

    Rows already stored (same time, evid, kind, agent, dv, amt) are skipped, so a retried
    request stores nothing twice.
    """
    from ...data import PatientData

    frame = pd.DataFrame([{"id": ctx.patient_id, **e.model_dump(exclude_none=True)}
                          for e in body.events])  # fmt: skip
    data = PatientData.from_frame(frame, source="api")
    res = ctx.svc.store.ingest(data, source=f"api:{ctx.principal.name}")
    ctx.record("write", detail={"n_rows": res.n_rows, "n_inserted": res.n_inserted})
    return IngestOut(ingest_id=res.ingest_id, n_rows=res.n_rows, n_inserted=res.n_inserted,
                     n_skipped=res.n_skipped, data_version=res.data_version)  # fmt: skip


@router.get("/{patient_id}/twins", response_model=list[TwinOut], summary="Twin versions")
def twin_versions(ctx: Ctx = Depends(patient_access)) -> list[TwinOut]:
    """Every stored twin version of the patient, oldest first."""
    out = [twin_out(t) for t in ctx.svc.store.twin_history(ctx.patient_id or "")]
    ctx.record("read", detail={"n_versions": len(out)})
    return out


@router.get("/{patient_id}/twin", response_model=TwinOut, summary="One twin version")
def get_twin(
    ctx: Ctx = Depends(patient_access),
    version: int | None = Query(None, ge=1, le=10**6),
    as_of: datetime | None = Query(None, description="latest version created by then (UTC)"),
) -> TwinOut:
    """The latest twin version, a given version, or the latest one created by `as_of`."""
    require_care_consent(ctx)
    rec = ctx.svc.store.twin(ctx.patient_id or "", version, as_of=as_of)
    ctx.record("read", detail={"twin_version": rec.version})
    return twin_out(rec)


@router.post("/{patient_id}/twins", status_code=202, response_model=JobOut,
             summary="Create a twin (background job)")  # fmt: skip
def create_twin(body: TwinIn, ctx: Ctx = Depends(patient_access)) -> JobOut:
    """Calibrate a new twin version on the stored data, as a background job with progress."""
    from ...models import get_model

    require_care_consent(ctx)
    get_model(body.model)  # an unknown model is a 422 now, not a failed job later
    svc, pid = ctx.svc, ctx.patient_id or ""
    method = body.method or svc.settings.default_method
    calibration: dict[str, Any] = {k: v for k, v in (("draws", body.draws), ("chains", body.chains),
                                     ("warmup", body.warmup)) if v is not None}  # fmt: skip

    def work(progress: Any) -> dict[str, Any]:
        from ... import workflow

        advance = progress("calibrating the twin", 1)
        rec, _ = workflow.create_twin(svc.store, pid, model=body.model, method=method,
                                      seed=body.seed, **calibration)  # fmt: skip
        advance(1)
        _forecast_scenarios(svc, pid, progress, seed=body.seed)
        return {"twin_version": rec.version, "model": rec.model, "converged": rec.converged}

    params = {"model": body.model, "method": method, "seed": body.seed, **calibration}
    job_id = svc.jobs.submit("twin.create", work, created_by=ctx.principal.name, patient_id=pid,
                             params=params)  # fmt: skip
    ctx.record("compute", detail={"job": job_id, **params})
    return job_out(svc.security.job(job_id))


@router.post("/{patient_id}/twins/update", status_code=202, response_model=JobOut,
             summary="Update the twin with new data (background job)")  # fmt: skip
def update_twin(body: TwinUpdateIn, ctx: Ctx = Depends(patient_access)) -> JobOut:
    """Assimilate the events stored since the latest version into a new twin version."""
    require_care_consent(ctx)
    svc, pid = ctx.svc, ctx.patient_id or ""
    svc.store.twin(pid)  # 404 now when there is no twin to update

    def work(progress: Any) -> dict[str, Any]:
        from ... import workflow

        advance = progress("assimilating new data", 1)
        rec, upd = workflow.update_twin(svc.store, pid, seed=body.seed)
        advance(1)
        _forecast_scenarios(svc, pid, progress, seed=body.seed)
        return {"twin_version": rec.version, "how": upd.how, "n_surprises": len(upd.surprises),
                "converged": rec.converged}  # fmt: skip

    job_id = svc.jobs.submit("twin.update", work, created_by=ctx.principal.name, patient_id=pid,
                             params={"seed": body.seed})  # fmt: skip
    ctx.record("compute", detail={"job": job_id, "seed": body.seed})
    return job_out(svc.security.job(job_id))


def _forecast_scenarios(svc: Any, pid: str, progress: Any, *, seed: int = 0) -> None:
    """Forecast the latest twin under the default scenarios and store them."""
    from ... import workflow

    twin, rec = workflow.load_twin(svc.store, pid)
    until = workflow.horizon(twin)
    scenarios = workflow.scenarios(twin, until)
    advance = progress("forecasting scenarios", len(scenarios))
    for sc in scenarios:
        workflow.forecast_and_save(svc.store, twin, rec, sc, until, seed=seed)
        advance(1)


@router.get("/{patient_id}/forecasts", response_model=ForecastsOut,
            summary="Forecasts under named schedules")  # fmt: skip
def get_forecasts(ctx: Ctx = Depends(patient_access)) -> ForecastsOut:
    """Forecasts of the latest twin under the current plan and each stored alternative.

    The default scenarios are computed (once) when the latest version has none yet.
    """
    from ... import workflow

    require_care_consent(ctx)
    svc, pid = ctx.svc, ctx.patient_id or ""
    history = svc.store.twin_history(pid)  # without draws: cheap
    if not history:
        raise NotFoundError(f"patient {pid!r} has no twin yet; calibrate one first")
    rec = history[-1]
    info = _twin_info(svc, pid, rec.version, rec.id)
    stored = svc.store.forecasts(rec.id)
    if not set(info["defaults"]) <= {f.schedule_name for f in stored}:
        with svc.lock(f"forecast:{pid}"):  # concurrent readers compute them once
            stored = svc.store.forecasts(rec.id)
            have = {f.schedule_name for f in stored}
            twin, full = workflow.load_twin(svc.store, pid, rec.version)
            until = workflow.horizon(twin)
            for sc in workflow.scenarios(twin, until):
                if sc.name not in have:
                    workflow.forecast_and_save(svc.store, twin, full, sc, until)
            stored = svc.store.forecasts(rec.id)
    # The default scenarios first (the current plan leads), then alternatives; the latest
    # forecast of a name replaces earlier ones.
    by_name = {f.schedule_name: f for f in stored}
    defaults = info["defaults"]
    latest = {n: by_name[n] for n in defaults} | {
        n: f for n, f in by_name.items() if n not in defaults
    }
    ctx.record("read", detail={"twin_version": rec.version, "schedules": len(latest)})
    return ForecastsOut(
        patient_id=pid, twin_version=rec.version, converged=rec.converged,
        warning=info["warning"], last_observation=info["last_time"], kind=info["kind"],
        unit=info["unit"], observations=info["observations"],
        treatment_effect=info["treatment_effect"],
        forecasts=[_forecast_out(f) for f in latest.values()],
    )  # fmt: skip


def _twin_info(svc: Any, pid: str, version: int, twin_id: int) -> dict[str, Any]:
    """What a forecast answer needs of a twin version, cached: stored versions never change."""
    from ... import workflow
    from ...models import get_model

    info = svc.twin_info.get(twin_id)
    if info is None:
        twin, _ = workflow.load_twin(svc.store, pid, version)
        until = workflow.horizon(twin)
        s = twin.subject
        info = {
            "defaults": [sc.name for sc in workflow.scenarios(twin, until)],
            "treatment_effect": any(get_model(p.model).uses_exposure for p in twin.posteriors),
            "warning": twin.warning, "last_time": s.last_time, "kind": s.kind, "unit": s.unit,
            "observations": ObservationsOut(times=s.times.tolist(), values=s.y.tolist(),
                                            censored=s.censored.tolist()),
        }  # fmt: skip
        if len(svc.twin_info) > 10_000:
            svc.twin_info.clear()
        svc.twin_info[twin_id] = info
    return dict(info)


def _forecast_out(f: Any) -> ForecastOut:
    p = f.payload
    return ForecastOut(
        schedule_name=f.schedule_name, created_at=f.created_at, seed=f.seed, times=p["times"],
        median=p["median"], lo50=p["lo50"], hi50=p["hi50"], lo90=p["lo90"], hi90=p["hi90"],
        kind=p["kind"], unit=p["unit"], warning=p.get("warning"),
        provenance=p.get("provenance") or {}, schedule=f.schedule,
    )  # fmt: skip


@router.post("/{patient_id}/forecasts", status_code=201, response_model=ForecastOut,
             summary="Forecast under a named alternative schedule")  # fmt: skip
def post_forecast(body: NamedScheduleIn, ctx: Ctx = Depends(patient_access)) -> ForecastOut:
    """Forecast the latest twin under a new plan (from the last observation on) and store it."""
    from ... import workflow
    from ...schedule import Schedule

    require_care_consent(ctx)
    svc, pid = ctx.svc, ctx.patient_id or ""
    schedule = Schedule.from_dict(body.schedule.model_dump())
    twin, rec = workflow.load_twin(svc.store, pid)
    until = workflow.horizon(twin)
    workflow.forecast_and_save(svc.store, twin, rec, workflow.Scenario(body.name, schedule),
                               until, seed=body.seed)  # fmt: skip
    f = [x for x in svc.store.forecasts(rec.id) if x.schedule_name == body.name][-1]
    ctx.record("compute", detail={"twin_version": rec.version, "schedule": body.name})
    return _forecast_out(f)


@router.get("/{patient_id}/surprises", response_model=list[SurpriseOut], summary="Surprises")
def get_surprises(ctx: Ctx = Depends(patient_access)) -> list[SurpriseOut]:
    """Observations that fell outside the previous twin version's 95% predictive interval."""
    svc, pid = ctx.svc, ctx.patient_id or ""
    version_of = {t.id: t.version for t in svc.store.twin_history(pid)}
    out = [SurpriseOut(twin_version=version_of[x.twin_id], time=x.time, observed=x.observed,
                       lo=x.lo, hi=x.hi, level=x.level) for x in svc.store.surprises(pid)]  # fmt: skip
    ctx.record("read", detail={"n_surprises": len(out)})
    return out


@router.get("/{patient_id}/recommendation", response_model=RecommendationOut,
            summary="The latest treatment recommendation")  # fmt: skip
def get_recommendation(ctx: Ctx = Depends(patient_access)) -> RecommendationOut:
    """The result of the latest finished optimisation job of the patient, if there is one."""
    require_care_consent(ctx)
    job = latest_recommendation(ctx.svc.security, ctx.patient_id or "")
    ctx.record("read", detail={"available": job is not None})
    if job is None:
        return RecommendationOut(available=False, message="no recommendation yet")
    return RecommendationOut(available=True, message=f"from optimisation job {job.id}",
                             recommendation=job.result, job_id=job.id)  # fmt: skip


@router.post("/{patient_id}/recommendations", status_code=202, response_model=JobOut,
             summary="Request a treatment recommendation (background job)")  # fmt: skip
def request_recommendation(body: RecommendationIn, ctx: Ctx = Depends(patient_access)) -> JobOut:
    """Optimise a schedule of `modality` for the latest twin, beside the standard of care.

    The objective, risk measure and constraints are checked now (422 naming the field); the
    optimisation runs as a job of kind "optimize" with progress, whose result
    ``GET .../recommendation`` then returns: the best schedules with their forecast (median
    and 90% interval), the standard of care, the probability of doing better, the constraint
    margins, the assumptions and the calibration warning, if any.
    """
    from ..compute import check_optimisation, run_optimisation

    require_care_consent(ctx)
    svc, pid = ctx.svc, ctx.patient_id or ""
    check_optimisation(body.modality, body.objective, body.risk, list(body.constraints))
    if not svc.store.twin_history(pid):  # a 404 now, not a failed job later
        raise NotFoundError(f"patient {pid!r} has no twin yet; calibrate one first")

    def work(progress: Any) -> dict[str, Any]:
        return run_optimisation(svc.store, pid, body, progress)

    params = body.model_dump()
    job_id = svc.jobs.submit("optimize", work, created_by=ctx.principal.name, patient_id=pid,
                             params=params)  # fmt: skip
    ctx.record("compute", detail={"job": job_id, **params})
    return job_out(svc.security.job(job_id))


@router.get("/{patient_id}/report", response_class=HTMLResponse, summary="HTML patient report")
def get_report(ctx: Ctx = Depends(patient_access)) -> HTMLResponse:
    """The patient's self-contained HTML report (forecasts are recomputed and stored)."""
    from ... import workflow

    require_care_consent(ctx)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "patient.html"
        page = workflow.write_patient_page(ctx.svc.store, ctx.patient_id or "", path, link="")
        html = path.read_text(encoding="utf-8")
    ctx.record("compute", detail={"twin_version": page.record.version, "report": True})
    return HTMLResponse(html)


@router.get("/{patient_id}/consent", response_model=list[ConsentOut], summary="Consent")
def get_consent(ctx: Ctx = Depends(patient_access)) -> list[ConsentOut]:
    """Every consent decision of the patient, oldest first."""
    out = [consent_out(c) for c in ctx.svc.security.consents(ctx.patient_id or "")]
    ctx.record("read", detail={"n_decisions": len(out)})
    return out


@router.post("/{patient_id}/consent", status_code=201, response_model=ConsentOut,
             summary="Record a consent decision")  # fmt: skip
def post_consent(body: ConsentIn, ctx: Ctx = Depends(patient_access)) -> ConsentOut:
    """Record a consent (or withdrawal) for care use, research use or data sharing."""
    rec = ctx.svc.security.record_consent(
        ctx.patient_id or "", body.scope, body.granted, valid_from=body.valid_from,
        valid_until=body.valid_until, recorded_by=ctx.principal.name,
    )  # fmt: skip
    ctx.record("write", detail={"scope": body.scope, "granted": body.granted})
    return consent_out(rec)


@router.get("/{patient_id}/audit", response_model=list[AuditOut], summary="Audit trail")
def get_audit(
    ctx: Ctx = Depends(patient_access), limit: int = Query(200, ge=1, le=5000)
) -> list[AuditOut]:
    """Who read, wrote or computed what on this patient, newest first."""
    out = [audit_out(e) for e in ctx.svc.audit.entries(patient_id=ctx.patient_id, limit=limit,
                                                        newest_first=True)]  # fmt: skip
    ctx.record("read", detail={"n_entries": len(out)})
    return out
