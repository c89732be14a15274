"""Research use: pseudonymised data of consenting patients, cohort summaries, synthetic cohorts.

Patients without a current research-use consent are left out of every answer, which says how
many were left out. Identifiers never leave: ids become keyed pseudonyms, times are shifted
per patient, identifying covariates are dropped (see :mod:`oncotwin.privacy`).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from fastapi import APIRouter, Depends

from ..auth import Ctx, allow
from ..schemas import (
    CohortOut,
    JobOut,
    ResearchExportOut,
    ResearchPatientOut,
    ResearchPatientsOut,
    SyntheticIn,
    SyntheticOut,
    TrialIn,
)
from .common import job_out

router = APIRouter(prefix="/api/research", tags=["research"])
researcher = allow("researcher")
researcher_or_admin = allow("researcher", "admin")


def _records(frame: Any) -> list[dict[str, Any]]:
    rows = frame.to_dict("records")
    return [{k: _plain(v) for k, v in r.items()} for r in rows]


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@router.get("/patients", response_model=ResearchPatientsOut, summary="Consenting patients")
def research_patients(ctx: Ctx = Depends(researcher)) -> ResearchPatientsOut:
    """Pseudonymised list of the patients who consented to research use."""
    from ...privacy import pseudonym

    svc = ctx.svc
    yes, no = svc.security.consenting("research")
    rows = {r.id: r for r in svc.store.patients()}
    key = svc.settings.pseudonym_key
    out = [ResearchPatientOut(
        pseudonym=pseudonym(key, pid), n_observations=rows[pid].n_observations,
        n_doses=rows[pid].n_doses,
        twin_model=(svc.store.twin_history(pid)[-1].model if rows[pid].n_twins else None),
    ) for pid in yes]  # fmt: skip
    out.sort(key=lambda p: p.pseudonym)  # the order of real ids would leak
    ctx.record("read", detail={"n_included": len(yes), "n_excluded": len(no)})
    return ResearchPatientsOut(patients=out, n_included=len(yes), n_excluded=len(no))


@router.get("/export", response_model=ResearchExportOut, summary="Pseudonymised export")
def research_export(ctx: Ctx = Depends(researcher)) -> ResearchExportOut:
    """Event table of consenting patients: keyed pseudonyms, shifted times, no identifiers."""
    from ...privacy import pseudonymise

    svc = ctx.svc
    yes, no = svc.security.consenting("research")
    dropped: list[str] = []
    events: list[dict[str, Any]] = []
    if yes:
        exp = pseudonymise(svc.store.events_all(yes), svc.settings.pseudonym_key,
                           max_shift_days=svc.settings.max_shift_days)  # fmt: skip
        frame = exp.events.sort_values(["id", "time"], kind="stable")
        events, dropped = _records(frame), exp.dropped_columns
    ctx.record("export", detail={"n_included": len(yes), "n_excluded": len(no),
                                 "n_rows": len(events)})  # fmt: skip
    return ResearchExportOut(events=events, n_included=len(yes), n_excluded=len(no),
                             dropped_columns=dropped,
                             max_shift_days=svc.settings.max_shift_days)  # fmt: skip


@router.get("/cohort", response_model=CohortOut, summary="Cohort summary")
def cohort(ctx: Ctx = Depends(researcher)) -> CohortOut:
    """Counts over consenting patients: twins, convergence, models, surprises."""
    svc = ctx.svc
    yes, no = svc.security.consenting("research")
    models: Counter[str] = Counter()
    n_twin = n_conv = n_surprises = 0
    for pid in yes:
        history = svc.store.twin_history(pid)
        if history:
            n_twin += 1
            n_conv += history[-1].converged
            models[history[-1].model] += 1
            n_surprises += len(svc.store.surprises(pid))
    ctx.record("read", detail={"n_included": len(yes), "n_excluded": len(no)})
    return CohortOut(n_included=len(yes), n_excluded=len(no), n_with_twin=n_twin,
                     n_converged=n_conv, models=dict(models), n_surprises=n_surprises)  # fmt: skip


@router.post("/synthetic", response_model=SyntheticOut, summary="Synthetic cohort")
def synthetic(body: SyntheticIn, ctx: Ctx = Depends(researcher)) -> SyntheticOut:
    """Synthetic patients drawn from a stored population model, checked against the real ones."""
    from ... import workflow
    from ...privacy import synthetic_cohort

    svc = ctx.svc
    rec = svc.store.population(body.population, body.version)
    pop = workflow.load_population(svc.store, body.population, rec.version)
    real = workflow.population_subjects(svc.store, pop)
    cohort = synthetic_cohort(pop, body.n, body.times, real=real, seed=body.seed,
                              min_distance=body.min_distance)  # fmt: skip
    ctx.record("export", detail={"population": body.population, "version": rec.version,
                                 "n": body.n, "seed": body.seed, **cohort.check})  # fmt: skip
    return SyntheticOut(events=_records(cohort.events), params=_records(cohort.params),
                        seed=cohort.seed, check=cohort.check, population=body.population,
                        version=rec.version)  # fmt: skip


@router.post("/trials", status_code=202, response_model=JobOut,
             summary="Simulate a virtual trial (background job)")  # fmt: skip
def start_trial(body: TrialIn, ctx: Ctx = Depends(researcher_or_admin)) -> JobOut:
    """Simulate `replicates` virtual trials of `n` patients of a design, and analyse them.

    The design has the fields of a YAML design file (docs/trials.md) and is checked now: a bad
    field is a 422 that names it (``arms[2].ratio``). No patient data are involved (the
    patients are drawn from the design's distributions), so consent does not apply. The job
    (kind "trial") reports progress; its result has the arms (ORR, median PFS and OS), the
    hazard ratios with 95% intervals, and over replicates the rejection rate of the primary
    analysis with its Monte Carlo standard error.
    """
    from ..compute import check_design, run_virtual_trial

    svc = ctx.svc
    design = check_design(body.design)

    def work(progress: Any) -> dict[str, Any]:
        return run_virtual_trial(design, body.n, body.replicates, body.seed, progress)

    params = {"design": design.name, "model": design.model, "arms": len(design.arms),
              "n": body.n, "replicates": body.replicates, "seed": body.seed}  # fmt: skip
    job_id = svc.jobs.submit("trial", work, created_by=ctx.principal.name, params=params)
    ctx.record("compute", detail={"job": job_id, **params})
    return job_out(svc.security.job(job_id))
