"""Conversions from store records to response bodies, shared by the routers."""

from __future__ import annotations

from datetime import UTC, datetime

from ...store import TwinRecord
from ...store.audit import AuditRecord
from ...store.security import ConsentRecord, JobRecord, Security
from ..schemas import AuditOut, ConsentOut, JobOut, TwinOut


def twin_out(t: TwinRecord) -> TwinOut:
    """A twin version without its draws."""
    return TwinOut(
        id=t.id, version=t.version, model=t.model, method=t.method, created_at=t.created_at,
        data_version=t.data_version, data_as_of=t.data_as_of, seed=t.seed,
        converged=t.converged, oncotwin_version=t.oncotwin_version, diagnostics=t.diagnostics,
        summary=t.summary,
    )  # fmt: skip


def consent_out(c: ConsentRecord) -> ConsentOut:
    """A consent decision and whether it holds now."""
    return ConsentOut.model_validate(dict(
        scope=c.scope, granted=c.granted, valid_from=c.valid_from, valid_until=c.valid_until,
        recorded_at=c.recorded_at, recorded_by=c.recorded_by, holds=c.holds(datetime.now(UTC)),
    ))  # fmt: skip


def job_out(j: JobRecord) -> JobOut:
    """A job with its progress fraction."""
    progress = 1.0 if j.status == "done" else (j.done / j.total if j.total else 0.0)
    return JobOut.model_validate(dict(
        id=j.id, kind=j.kind, status=j.status, patient_id=j.patient_id, created_by=j.created_by,
        created_at=j.created_at, started_at=j.started_at, finished_at=j.finished_at,
        label=j.label, done=j.done, total=j.total, progress=progress, result=j.result,
        error=j.error,
    ))  # fmt: skip


def audit_out(e: AuditRecord) -> AuditOut:
    """An audit entry."""
    return AuditOut(
        seq=e.seq, at=e.at, actor=e.actor, role=e.role, action=e.action, resource=e.resource,
        patient_id=e.patient_id, purpose=e.purpose, outcome=e.outcome, detail=e.detail,
        hash=e.hash,
    )  # fmt: skip


def latest_recommendation(security: Security, patient_id: str) -> JobRecord | None:
    """The patient's latest finished optimisation job with a result, or None."""
    done = [j for j in security.jobs(kind="optimize", patient_id=patient_id)
            if j.status == "done" and j.result]  # fmt: skip
    return max(done, key=lambda j: j.id) if done else None
