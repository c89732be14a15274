"""The result of an optimisation: the best schedules beside the standard of care, with risk.

A :class:`Recommendation` is always a comparison. Every candidate was simulated on the *same*
posterior draws, so differences between schedules are paired draw by draw: "better than the
standard of care in 84 % of draws" is the posterior probability that this patient does better
on it, given the twin. When that probability is below the confidence threshold the
recommendation says so in words: the data do not support a confident recommendation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..schedule import Schedule
from .constraints import ConstraintCheck
from .objectives import Objective, Trajectories
from .risk import RiskMeasure

__all__ = ["Candidate", "CandidateResult", "Comparison", "Recommendation"]

INTERVAL = 0.9


@dataclass(frozen=True)
class Candidate:
    """A schedule considered by the search.

    Attributes:
        name: short label ("60 Gy in 30 fractions of 2 Gy").
        family: the schedule family it belongs to ("uniform fractionation", "gradient", ...).
        params: the family's parameters (numbers; e.g. n_fractions, dose_per_fraction).
        schedule: the plan from the start day on (absolute days).
        standard: True for the standard of care.
    """

    name: str
    family: str
    params: dict[str, float]
    schedule: Schedule
    standard: bool = False


@dataclass(frozen=True)
class CandidateResult:
    """One candidate simulated over the posterior draws.

    Attributes:
        candidate: the schedule.
        outcome: the objective per draw (n_draws,).
        risk_value: the risk measure of the outcome (in the outcome's direction and unit).
        toxicity: scalar toxicity summary used for the Pareto front (smaller is better).
        checks: every constraint's check.
        trajectories: the forecast (burden draws on a grid), for plots.
    """

    candidate: Candidate
    outcome: np.ndarray
    risk_value: float
    toxicity: float
    checks: tuple[ConstraintCheck, ...]
    trajectories: Trajectories | None = field(default=None, repr=False)

    @property
    def feasible(self) -> bool:
        """Whether every constraint is met."""
        return all(c.met for c in self.checks)

    @property
    def median(self) -> float:
        return float(np.median(self.outcome))

    def interval(self, level: float = INTERVAL) -> tuple[float, float]:
        """Central interval of the outcome over draws."""
        lo, hi = np.quantile(self.outcome, [(1 - level) / 2, 1 - (1 - level) / 2])
        return float(lo), float(hi)

    def summary(self) -> dict[str, Any]:
        lo, hi = self.interval()
        return {
            "name": self.candidate.name,
            "family": self.candidate.family,
            "standard_of_care": self.candidate.standard,
            "params": self.candidate.params,
            "schedule": self.candidate.schedule.to_dict(),
            "risk_value": self.risk_value,
            "median": self.median,
            "lo90": lo,
            "hi90": hi,
            "toxicity": self.toxicity,
            "feasible": self.feasible,
            "constraints": [c.to_dict() for c in self.checks],
        }


@dataclass(frozen=True)
class Comparison:
    """Paired comparison of a schedule with the standard of care over the same draws.

    Attributes:
        gain: per-draw improvement (positive: better than the standard of care), outcome unit.
        probability_better: fraction of draws where the schedule does better (ties count half).
        median, lo, hi: median and 90 % interval of the gain.
        confident: probability_better >= the threshold.
    """

    gain: np.ndarray
    probability_better: float
    median: float
    lo: float
    hi: float
    confident: bool

    @classmethod
    def of(
        cls, best: CandidateResult, standard: CandidateResult, larger_is_better: bool,
        threshold: float,
    ) -> Comparison:  # fmt: skip
        sign = 1.0 if larger_is_better else -1.0
        gain = sign * (best.outcome - standard.outcome)
        tol = 1e-9 * max(1.0, float(np.max(np.abs(best.outcome))))
        better = np.mean(gain > tol) + 0.5 * np.mean(np.abs(gain) <= tol)
        lo, med, hi = np.quantile(gain, [(1 - INTERVAL) / 2, 0.5, 1 - (1 - INTERVAL) / 2])
        return cls(gain, float(better), float(med), float(lo), float(hi),
                   bool(better >= threshold))  # fmt: skip


def _fmt(x: float, unit: str) -> str:
    if not math.isfinite(x):
        return "n/a"
    if unit == "probability":
        return f"{100 * x:.0f}%"
    text = f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    if unit in ("day", "days"):
        return f"{text} days"
    return f"{text} {unit}".strip()


@dataclass(frozen=True)
class Recommendation:
    """The best schedules for one patient's twin, compared with the standard of care.

    Attributes:
        patient: subject id.
        modality: "radiotherapy", "chemotherapy", "radiopharmaceutical" or "hormone".
        objective: what was optimised. risk: how the draws were summarised.
        results: every candidate evaluated (feasible or not), best first.
        best: the best feasible candidates (at most `top`), best first; may be empty.
        standard: the standard of care (always evaluated).
        comparison: the best candidate against the standard of care (None without a best).
        pareto: candidates on the efficacy-toxicity Pareto front (feasible ones).
        toxicity_label: what the Pareto toxicity axis measures.
        unit: unit of the outcome (data unit for burden objectives).
        data_unit: unit of the tumour burden (the twin's data).
        threshold: probability of doing better required for a confident recommendation.
        n_draws, seed: the posterior draws used and the seed that chose them.
        warning: the twin's calibration warning, if any.
        notes: assumptions the user must know (parameters not identified by the data, ...).
        provenance: model, twin version, package version, settings.
    """

    patient: str
    modality: str
    objective: Objective
    risk: RiskMeasure
    results: tuple[CandidateResult, ...]
    best: tuple[CandidateResult, ...]
    standard: CandidateResult
    comparison: Comparison | None
    pareto: tuple[CandidateResult, ...]
    toxicity_label: str
    unit: str
    threshold: float
    n_draws: int
    seed: int
    warning: str | None = None
    notes: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    data_unit: str = ""

    @property
    def confident(self) -> bool:
        """True when the best schedule beats the standard of care with the required probability."""
        return self.comparison is not None and self.comparison.confident

    @property
    def standard_is_best(self) -> bool:
        return bool(self.best) and self.best[0].candidate.standard

    @property
    def _binary(self) -> bool:
        """Outcomes that are 0/1 per draw (control at a horizon): shown as probabilities."""
        return self.objective.name == "control"

    def _outcome(self, r: CandidateResult) -> str:
        if self._binary:
            return f"{100 * float(np.mean(r.outcome)):.0f}% of posterior draws"
        lo, hi = r.interval()
        return (
            f"median {_fmt(r.median, self.unit)} (90% interval {_fmt(lo, self.unit)} to "
            f"{_fmt(hi, self.unit)})"
        )

    def headline(self) -> str:
        """The recommendation in one or two sentences a clinician reads at a glance."""
        what = self.objective.label
        soc = self.standard
        if not self.best:
            return (
                "No schedule considered meets every constraint; the data do not support a "
                f"recommendation. Standard of care ({soc.candidate.name}): {what} "
                f"{self._outcome(soc)}."
            )
        best = self.best[0]
        if best.candidate.standard:
            return (
                f"Keep the standard of care ({soc.candidate.name}): no schedule considered does "
                f"better on {what} ({self.risk.label}) within the constraints. Forecast "
                f"{what}: {self._outcome(soc)}."
            )
        c = self.comparison
        assert c is not None
        if self._binary:
            delta = 100 * (float(np.mean(best.outcome)) - float(np.mean(soc.outcome)))
            gain = (
                f"changes the probability by {delta:+.0f} percentage points and is better than "
                f"the standard of care in {100 * c.probability_better:.0f}% of posterior draws "
                "(ties count half)"
            )
        else:
            gain = (
                f"is better than the standard of care in {100 * c.probability_better:.0f}% of "
                f"posterior draws (median gain {_fmt(c.median, self.unit)}, 90% interval "
                f"{_fmt(c.lo, self.unit)} to {_fmt(c.hi, self.unit)})"
            )
        if not c.confident:
            return (
                "The data do not support a confident recommendation: the best schedule found "
                f"({best.candidate.name}) {gain}, below the {100 * self.threshold:.0f}% "
                "required, so it and the standard of care "
                f"({soc.candidate.name}) cannot be told apart for this patient. Forecast {what}: "
                f"{self._outcome(best)} versus {self._outcome(soc)}."
            )
        return (
            f"Recommended: {best.candidate.name}. Forecast {what}: {self._outcome(best)}, versus "
            f"{self._outcome(soc)} with the standard of care ({soc.candidate.name}); it {gain}."
        )

    def lines(self) -> list[str]:
        """The headline, the constraint margins of the best schedule, and the caveats."""
        out = [self.headline()]
        if self.warning:
            out.insert(0, f"WARNING: {self.warning} - not for clinical decisions.")
        top = self.best[0] if self.best else self.standard
        for ch in top.checks:
            out.append(f"  {ch.text()}")
        if not self.standard.feasible:
            out.append(
                "  note: the standard of care itself violates: "
                + "; ".join(c.name for c in self.standard.checks if not c.met)
            )
        out.extend(f"  assumption: {n}" for n in self.notes)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-draw arrays except the comparison's quantiles)."""
        c = self.comparison
        return {
            "patient": self.patient,
            "modality": self.modality,
            "objective": {"name": self.objective.spec(), "label": self.objective.label,
                          "larger_is_better": self.objective.larger_is_better, "unit": self.unit},
            "risk": {"measure": self.risk.spec(), "label": self.risk.label},
            "headline": self.headline(),
            "confident": self.confident,
            "threshold": self.threshold,
            "best": [r.summary() for r in self.best],
            "standard_of_care": self.standard.summary(),
            "comparison": None if c is None else {
                "probability_better": c.probability_better, "median_gain": c.median,
                "lo90": c.lo, "hi90": c.hi, "confident": c.confident,
            },
            "pareto": [r.candidate.name for r in self.pareto],
            "toxicity_label": self.toxicity_label,
            "n_candidates": len(self.results),
            "n_draws": self.n_draws,
            "seed": self.seed,
            "warning": self.warning,
            "notes": list(self.notes),
            "provenance": self.provenance,
        }  # fmt: skip
