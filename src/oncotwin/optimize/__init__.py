"""Treatment optimisation under uncertainty: the best schedule for a patient's twin, with risk.

Objectives (:mod:`.objectives`) are functions of posterior-predictive trajectories; risk
measures (:mod:`.risk`) summarise them over posterior draws (mean, quantile, CVaR, chance
constraints); constraints (:mod:`.constraints`) encode dose caps, allowed days, rest, whole
units and toxicity bounds; the search (:mod:`.search`) enumerates schedule families and refines
continuous doses by gradient through the differentiable simulators; the result is a
:class:`~.recommendation.Recommendation` that always compares with the standard of care.

Example::

    from oncotwin.optimize import optimize_twin
    rec = optimize_twin(twin, "radiotherapy", objective="regrowth", risk="cvar:0.9")
    print("\\n".join(rec.lines()))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import ModelError
from .constraints import (
    AllowedDays,
    Constraint,
    ConstraintCheck,
    MaxCumulative,
    MaxPerAdministration,
    MetricBound,
    MinRest,
    WholeUnits,
    neutropenia,
    ntcp,
    organ_limit,
    parse_constraint,
)
from .objectives import Objective, Trajectories, parse_objective
from .recommendation import Candidate, CandidateResult, Comparison, Recommendation
from .risk import RiskMeasure, chance, cvar, expectation, parse_risk, quantile
from .search import augmented_lagrangian, evaluate, pareto_front, run

MODALITIES = ("radiotherapy", "chemotherapy", "radiopharmaceutical", "hormone")
DEFAULT_OBJECTIVE = {
    "radiotherapy": "regrowth",
    "chemotherapy": "burden:180",
    "radiopharmaceutical": "regrowth",
    "hormone": "resistance",
}

__all__ = [
    "DEFAULT_OBJECTIVE",
    "MODALITIES",
    "AllowedDays",
    "Candidate",
    "CandidateResult",
    "Comparison",
    "Constraint",
    "ConstraintCheck",
    "MaxCumulative",
    "MaxPerAdministration",
    "MetricBound",
    "MinRest",
    "Objective",
    "Recommendation",
    "RiskMeasure",
    "Trajectories",
    "WholeUnits",
    "augmented_lagrangian",
    "chance",
    "cvar",
    "evaluate",
    "expectation",
    "neutropenia",
    "ntcp",
    "optimize_twin",
    "organ_limit",
    "parse_constraint",
    "parse_objective",
    "parse_risk",
    "pareto_front",
    "problem_for_twin",
    "quantile",
    "run",
]


def problem_for_twin(
    twin: Any,
    modality: str,
    *,
    n_draws: int = 200,
    seed: int = 0,
    start: float | None = None,
    **options: Any,
) -> Any:
    """The optimisation problem of `modality` for a twin's posterior draws.

    Args:
        twin: a :class:`~oncotwin.twin.DigitalTwin`.
        modality: one of :data:`MODALITIES`.
        n_draws: posterior draws to use (the same draws for every schedule).
        seed: seed of the draws (recorded in the recommendation).
        start: first treatment day, days (default: the day after the last observation).
        **options: fields of the modality's problem class (see :mod:`.modalities`).

    Raises:
        ModelError: unknown modality, or a twin that cannot inform it.
    """
    from . import modalities as m
    from .rt_model import RTParams

    if modality not in MODALITIES:
        raise ModelError(f"unknown modality {modality!r}; use one of {', '.join(MODALITIES)}")
    s = twin.subject
    day = float(s.last_time + 1.0) if start is None else float(start)
    prov = {
        "model": ", ".join(p.model for p in twin.posteriors),
        "method": twin.posterior.method,
        "calibration_seed": twin.posterior.seed,
        "data_version": twin.data_version,
        "start": day,
    }
    if modality in ("radiotherapy", "radiopharmaceutical"):
        prior = options.pop("prior", None) or m.RTPrior()
        v0, g, inv_k = m.growth_from_twin(twin, day, n_draws, seed)
        alpha, ab = prior.draw(n_draws, seed)
        params = RTParams(v0, g, inv_k, alpha, ab, np.full(n_draws, prior.clonogens))
        rt_notes = (
            "tumour growth from the twin's untreated forecast (logistic curve matched per draw)",
            f"radiosensitivity not identified by the data: log-normal prior, median alpha "
            f"{prior.alpha:g}/Gy, alpha/beta {prior.alpha_beta:g} Gy ({m.PEDICINI_2014})",
        )
        cls = m.RadiotherapyProblem if modality == "radiotherapy" else m.RadiopharmaceuticalProblem
        return cls(params, patient=s.id, unit=s.unit, start=day, seed=seed, warning=twin.warning,
                   notes=rt_notes, provenance=prov, **options)  # fmt: skip
    if modality == "chemotherapy":
        agents = Counter(d.agent for d in s.schedule.doses)
        agent = options.pop("agent", None) or (agents.most_common(1)[0][0] if agents else None)
        standard = options.pop("standard", None)
        if standard is None:
            if agent is None:
                raise ModelError(
                    f"patient {s.id!r} has no recorded chemotherapy dose: give the agent and "
                    "the standard-of-care schedule"
                )
            past = [d for d in s.schedule.doses if d.agent == agent]
            gaps = np.diff([d.time for d in past])
            every = float(np.median(gaps)) if gaps.size else 21.0
            from ..schedule import Dose, Schedule

            standard = Schedule(
                tuple(Dose(day + k * every, past[-1].amount, agent, past[-1].duration,
                           past[-1].unit) for k in range(6)),
                half_life=s.schedule.half_life,
            )  # fmt: skip
        if agent is None:
            raise ModelError("give the chemotherapy agent with the standard-of-care schedule")
        return m.ChemotherapyProblem(twin, agent, day, standard, n_draws=n_draws, seed=seed,
                                     provenance=prov, **options)  # fmt: skip
    baseline = float(s.y[-1]) if s.kind == "psa" else options.pop("baseline_psa", 20.0)
    options.pop("baseline_psa", None)
    notes: tuple[str, ...] = (
        () if s.kind == "psa" else (f"no PSA data: baseline PSA taken as {baseline:g}",)
    )
    return m.HormoneProblem(patient=s.id, start=day, baseline_psa=baseline,
                            n_draws=min(n_draws, options.pop("max_draws", 64)), seed=seed,
                            warning=twin.warning, notes=notes, provenance=prov, **options)  # fmt: skip


def optimize_twin(
    twin: Any,
    modality: str,
    *,
    objective: str | Objective | None = None,
    risk: str | RiskMeasure = "cvar:0.9",
    constraints: Sequence[str | Constraint] = (),
    n_draws: int = 200,
    seed: int = 0,
    top: int = 3,
    threshold: float = 0.8,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    **options: Any,
) -> Recommendation:
    """Optimise a treatment schedule for a twin and compare it with the standard of care.

    Args:
        twin: the patient's twin.
        modality: "radiotherapy", "chemotherapy", "radiopharmaceutical" or "hormone".
        objective: an :class:`Objective` or its text (default per modality:
            :data:`DEFAULT_OBJECTIVE`).
        risk: a :class:`RiskMeasure` or its text ("mean", "quantile:0.9", "cvar:0.9").
        constraints: extra constraints (objects or :func:`parse_constraint` text) on top of the
            modality's defaults.
        n_draws: posterior draws. seed: their seed (recorded).
        top: number of best schedules returned.
        threshold: probability of beating the standard of care needed for a confident
            recommendation.
        progress: ``start(label, total) -> advance(n)``.
        **options: problem settings (see :func:`problem_for_twin`).

    Returns:
        A :class:`Recommendation`.
    """
    problem = problem_for_twin(twin, modality, n_draws=n_draws, seed=seed, **options)
    obj = objective if isinstance(objective, Objective) else parse_objective(
        objective or DEFAULT_OBJECTIVE[modality]
    )  # fmt: skip
    rm = risk if isinstance(risk, RiskMeasure) else parse_risk(risk)
    cons = [c if isinstance(c, Constraint) else parse_constraint(c) for c in constraints]
    return run(problem, obj, rm, cons, top=top, threshold=threshold, progress=progress)
