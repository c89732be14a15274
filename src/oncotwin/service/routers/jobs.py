"""Background jobs: their status and progress."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path

from ..auth import Ctx, allow
from ..schemas import JobOut
from .common import job_out

router = APIRouter(prefix="/api/jobs", tags=["jobs"])
anyone = allow("clinician", "researcher", "admin")


@router.get("", response_model=list[JobOut], summary="My jobs")
def list_jobs(ctx: Ctx = Depends(anyone)) -> list[JobOut]:
    """The user's jobs, newest first (admins: every job)."""
    by = None if ctx.principal.role == "admin" else ctx.principal.name
    return [job_out(j) for j in ctx.svc.security.jobs(created_by=by)]


@router.get("/{job_id}", response_model=JobOut, summary="One job")
def get_job(job_id: int = Path(ge=1, le=2**31 - 1), ctx: Ctx = Depends(anyone)) -> JobOut:
    """Status and progress of a job started by the user (admins: any job)."""
    job = ctx.svc.security.job(job_id)
    if ctx.principal.role != "admin" and job.created_by != ctx.principal.name:
        ctx.record("access", patient_id=job.patient_id, outcome="denied",
                   detail={"job": job_id})  # fmt: skip
        raise HTTPException(403, "this job was started by another user")
    return job_out(job)
