"""The work behind the optimisation and virtual-trial jobs of the service, and their checks.

Requests are checked here, before a job is queued, with the parsers of the CLI
(``oncotwin optimize`` and ``oncotwin trial run``): a bad objective, constraint, risk measure or
trial design is a 422 that names the field, and no job is started. The job results are plain
JSON (no NaN or infinity: they become null) so that any client and PostgreSQL's JSON columns
read them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import DataError, ModelError, OncotwinError

Progress = Callable[[str, int], Callable[[int], None]]

#: Longest objective horizon a request may ask for, days (the forecast grid grows with it).
MAX_HORIZON_DAYS = 3650.0
#: Most assessments per simulated patient of a requested trial (follow-up / visit interval).
MAX_TRIAL_VISITS = 400
#: Most administrations per arm of a requested trial.
MAX_ARM_DOSES = 2000
#: Most arms of a requested trial.
MAX_ARMS = 10


def plain(x: Any) -> Any:
    """`x` as strict JSON: numpy scalars and arrays as Python values, NaN and +-inf as None."""
    if isinstance(x, Mapping):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return plain(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# -- optimisation ----------------------------------------------------------------------------


def check_optimisation(
    modality: str, objective: str | None, risk: str, constraints: list[str]
) -> tuple[Any, Any, list[Any]]:
    """Parse a recommendation request's objective, risk measure and constraints.

    Args:
        modality: one of ``oncotwin.optimize.MODALITIES``.
        objective: objective text (None: the modality's default), e.g. "burden:180" (days).
        risk: risk measure text, e.g. "cvar:0.9".
        constraints: constraint texts, e.g. ["ntcp:brain<=0.05"].

    Returns:
        The parsed (objective, risk measure, constraints).

    Raises:
        ModelError: an unknown modality or a field that cannot be read; the message names the
            field (``objective``, ``risk``, ``constraints[2]``, counted from 1).
    """
    from ..optimize import (
        DEFAULT_OBJECTIVE,
        MODALITIES,
        parse_constraint,
        parse_objective,
        parse_risk,
    )

    if modality not in MODALITIES:
        raise ModelError(f"field 'modality': unknown {modality!r}; use one of "
                         f"{', '.join(MODALITIES)}")  # fmt: skip
    text = objective or DEFAULT_OBJECTIVE[modality]
    obj = _parsed("objective", parse_objective, text)
    if obj.horizon is not None and obj.horizon > MAX_HORIZON_DAYS:
        raise ModelError(f"field 'objective': horizon {obj.horizon:g} days is beyond the "
                         f"service's limit of {MAX_HORIZON_DAYS:g} days")  # fmt: skip
    rm = _parsed("risk", parse_risk, risk)
    cons = [_parsed(f"constraints[{i}]", parse_constraint, c)
            for i, c in enumerate(constraints, start=1)]  # fmt: skip
    return obj, rm, cons


def _parsed(field: str, parse: Callable[[str], Any], text: str) -> Any:
    try:
        return parse(text)
    except (OncotwinError, ValueError, TypeError, OverflowError) as exc:
        raise ModelError(f"field '{field}': {exc}") from None


def recommendation_result(rec: Any, twin_version: int, converged: bool) -> dict[str, Any]:
    """A :class:`~oncotwin.optimize.Recommendation` as the result of an optimisation job.

    ``rec.to_dict()`` plus what :func:`oncotwin.data.fhir_export.recommendation_to_fhir` reads:
    ``schedule_name`` and ``schedule`` (the best schedule, or the standard of care when no
    schedule meets every constraint), ``risks`` (probabilities with the draws behind them) and
    ``constraints`` (the margins of that schedule's constraints), and ``lines`` (the text
    summary of ``rec.lines()``).

    Args:
        rec: the recommendation.
        twin_version: the twin version optimised (recorded in the provenance).
        converged: whether that version's calibration passed its checks.
    """
    from .. import __version__

    out = rec.to_dict()
    top = rec.best[0] if rec.best else rec.standard
    risks: list[dict[str, Any]] = []
    c = rec.comparison
    if c is not None and not top.candidate.standard:
        risks.append({"outcome": f"{top.candidate.name} does better than the standard of care "
                                 f"on {rec.objective.label} ({rec.risk.label})",
                      "probability": c.probability_better})  # fmt: skip
    if rec.objective.name == "control":  # 0/1 per draw: the mean is a probability
        risks.append({"outcome": rec.objective.label,
                      "probability": float(np.mean(top.outcome)),
                      "when": float(rec.provenance.get("start", 0.0)) + float(
                          rec.objective.horizon or 0.0)})  # fmt: skip
    for ch in top.checks:
        if ch.probability is not None:  # a bound over draws: the chance it is exceeded
            exceeded = min(1.0, max(0.0, 1.0 - float(ch.probability)))
            risks.append({"outcome": f"{ch.name} above {ch.limit:.3g} {ch.unit}".strip(),
                          "probability": exceeded})  # fmt: skip
    constraints = [
        {"name": ch.name, "value": ch.value, "limit": ch.limit, "margin": ch.margin,
         "unit": ch.unit, "met": ch.met, "text": ch.text()}
        for ch in top.checks
    ]  # fmt: skip
    provenance = {
        **out["provenance"], "twin_version": twin_version, "converged": bool(converged),
        "models": out["provenance"].get("model"), "oncotwin_version": __version__,
        "optimisation_seed": rec.seed, "n_draws": rec.n_draws,
    }  # fmt: skip
    out.update(
        schedule_name=top.candidate.name, schedule=top.candidate.schedule.to_dict(),
        standard_is_best=bool(rec.standard_is_best), risks=risks, constraints=constraints,
        provenance=provenance, lines=rec.lines(),
    )  # fmt: skip
    return plain(out)


def run_optimisation(store: Any, patient_id: str, body: Any, progress: Progress) -> dict[str, Any]:
    """Load the patient's latest twin and optimise it (the work of an "optimize" job).

    Args:
        store: the service's store.
        patient_id: the patient.
        body: the checked :class:`~oncotwin.service.schemas.RecommendationIn`.
        progress: ``start(label, total) -> advance(n)``.
    """
    import warnings

    from .. import workflow
    from ..errors import ConvergenceWarning
    from ..optimize import optimize_twin

    obj, rm, cons = check_optimisation(body.modality, body.objective, body.risk,
                                       list(body.constraints))  # fmt: skip
    advance = progress("loading the twin", 1)
    twin, record = workflow.load_twin(store, patient_id)
    advance(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # shown in the result instead
        rec = optimize_twin(twin, body.modality, objective=obj, risk=rm, constraints=cons,
                            n_draws=body.draws, seed=body.seed, top=body.top,
                            threshold=body.threshold, progress=progress)  # fmt: skip
    rec.provenance["twin_version"] = record.version
    return recommendation_result(rec, record.version, record.converged)


# -- virtual trials ---------------------------------------------------------------------------


def check_design(raw: Mapping[str, Any]) -> Any:
    """A trial design from a request, checked as a design file is, plus the service's limits.

    Regimens must be given inline: a request may not name a file on the server.

    Raises:
        DataError: a bad field, named (``arms[2].ratio``), or a design beyond the limits.
    """
    from ..trials import design_from_dict

    arms = raw.get("arms") if isinstance(raw, Mapping) else None
    if isinstance(arms, list):
        if len(arms) > MAX_ARMS:
            raise DataError(f"field 'arms': at most {MAX_ARMS} arms, got {len(arms)}")
        for i, arm in enumerate(arms, start=1):
            reg = arm.get("regimen") if isinstance(arm, Mapping) else None
            if (
                isinstance(reg, str)
                and "\n" not in reg
                and reg.strip().endswith((".yaml", ".yml", ".json"))
            ):
                raise DataError(f"field 'arms[{i}].regimen': a request cannot name a regimen "
                                "file; give the regimen itself (items)")  # fmt: skip
    try:
        design = design_from_dict(raw, base="/nonexistent", source="request")
    except (ValueError, TypeError, ArithmeticError) as exc:  # a value no design file would hold
        raise DataError(f"the design cannot be read: {exc}", file="request") from None
    visits = design.follow_up / design.visits.every + 1
    if visits > MAX_TRIAL_VISITS:
        raise DataError(f"field 'visits.every': {visits:.3g} assessments per patient over the "
                        f"follow-up; the service allows {MAX_TRIAL_VISITS}")  # fmt: skip
    for i, arm in enumerate(design.arms, start=1):
        if len(arm.schedule.doses) > MAX_ARM_DOSES:
            raise DataError(f"field 'arms[{i}].regimen': {len(arm.schedule.doses)} "
                            f"administrations; the service allows {MAX_ARM_DOSES}")  # fmt: skip
    return design


def run_virtual_trial(
    design: Any, n: int, replicates: int, seed: int | None, progress: Progress
) -> dict[str, Any]:
    """Simulate and analyse a trial (the work of a "trial" job); returns its summary.

    Args:
        design: a checked :class:`~oncotwin.trials.TrialDesign`.
        n: patients per trial. replicates: replicate trials.
        seed: random seed (None: the design's).
        progress: ``start(label, total) -> advance(n)``.

    Returns:
        design name and settings, arms (n, ORR with its 95% interval, median PFS and OS in
        days, best responses), comparisons with the first arm (hazard ratios with 95% CIs and
        p-values, ORR difference), and over replicates the rejection rate of the primary
        analysis (its power, or its type-I error under a null design) with its Monte Carlo SE.
    """
    import json

    from ..trials import analyse_trial, run_trial
    from ..trials.analysis import rejection_rate, replicate_estimates

    res = run_trial(design, n, replicates=replicates, seed=seed, progress=progress)
    advance = progress("analysing", 1)
    analysis = analyse_trial(res)
    power: dict[str, Any] | None = None
    if replicates > 1 and len(design.arms) > 1:
        est = replicate_estimates(res)
        rate, se = rejection_rate(est, design.endpoints.alpha)
        power = {"primary_endpoint": design.endpoints.primary, "alpha": design.endpoints.alpha,
                 "replicates": replicates, "rejection_rate": rate, "mc_se": se,
                 "mean_estimate": float(np.nanmean(est["estimate"])),
                 "sd_estimate": float(np.nanstd(est["estimate"]))}  # fmt: skip
    advance(1)
    return plain({
        "design": design.name, "model": design.model, "n": n, "replicates": replicates,
        "seed": res.plan.seed, "primary_endpoint": design.endpoints.primary,
        "alpha": design.endpoints.alpha, "status": res.counts(),
        "arms": json.loads(analysis.arms.to_json(orient="records")),
        "comparisons": json.loads(analysis.comparisons.to_json(orient="records")),
        "analysed_replicate": analysis.replicate,
        "power": power, "provenance": res.provenance(),
    })  # fmt: skip
