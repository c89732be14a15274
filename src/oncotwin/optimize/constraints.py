"""Constraints on schedules: dose caps, allowed days, rest, whole units, and toxicity bounds.

Two kinds, checked the same way (:meth:`Constraint.check` -> :class:`ConstraintCheck`):

- **schedule rules**, exact properties of the plan: maximum dose per administration, cumulative
  dose, weekdays only (external-beam radiotherapy), minimum rest between administrations,
  whole units (fractions of a set size, whole vials);
- **toxicity bounds** on a per-draw model quantity the modality computes (a *metric*): normal
  tissue BED, NTCP per organ at risk (Lyman-Kutcher-Burman), Friberg neutropenia grade,
  cumulative organ absorbed dose or BED of a radiopharmaceutical. With ``eps`` set a bound is a
  **chance constraint**, met when ``P(metric <= limit) >= 1 - eps`` over the posterior draws;
  without, every draw must meet it.

The margin of a check is ``limit - value`` in the constraint's unit (positive: room left), and
for a chance constraint also the probability it holds next to the probability required.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import ModelError
from ..schedule import Schedule

__all__ = [
    "AllowedDays",
    "Constraint",
    "ConstraintCheck",
    "MaxCumulative",
    "MaxPerAdministration",
    "MetricBound",
    "MinRest",
    "WholeUnits",
    "neutropenia",
    "ntcp",
    "organ_limit",
    "parse_constraint",
]

TOL = 1e-9


@dataclass(frozen=True)
class ConstraintCheck:
    """The outcome of one constraint for one schedule.

    Attributes:
        name: the constraint ("max dose per administration", ...).
        value: the schedule's value (for a bound over draws: its quantile at 1 - eps, or the
            largest draw when every draw must comply), in `unit`.
        limit: the limit, in `unit`.
        unit: unit of value and limit.
        met: whether the constraint holds.
        margin: limit - value (>= 0 when met).
        probability: fraction of draws meeting the limit (None for schedule rules).
        required: probability required (1 - eps), None for schedule rules.
    """

    name: str
    value: float
    limit: float
    unit: str
    met: bool
    margin: float
    probability: float | None = None
    required: float | None = None
    detail: str | None = None

    def text(self) -> str:
        """One line: "NTCP brain: 0.031 vs limit 0.05 (met, margin +0.019)"."""
        verdict = "met" if self.met else "VIOLATED"
        if self.detail is not None:  # yes/no rules read better in words
            return f"{self.name}: {self.detail} ({verdict})"
        unit = f" {self.unit}" if self.unit else ""
        line = f"{self.name}: {self.value:.3g}{unit} vs limit {self.limit:.3g}{unit}"
        # A margin within rounding of the limit (a plan built to the bound) reads as 0.
        margin = 0.0 if abs(self.margin) <= 1e-6 * max(abs(self.limit), 1.0) else self.margin
        line += f" ({verdict}, margin {margin:+.3g})"
        if self.probability is not None:
            line += f"; holds in {100 * self.probability:.0f}% of draws"
            if self.required is not None and self.required < 1:
                line += f" (required {100 * self.required:.0f}%)"
        return line

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Constraint:
    """Base class: a named requirement on a schedule (and on per-draw toxicity metrics)."""

    name: str = "constraint"

    def check(
        self, schedule: Schedule, metrics: Mapping[str, Any], start: float
    ) -> ConstraintCheck:
        """Check `schedule` (its part after `start`, days) given per-draw `metrics`."""
        raise NotImplementedError

    def spec(self) -> str:
        """The text form :func:`parse_constraint` reads back."""
        raise NotImplementedError


def _future(schedule: Schedule, start: float, agent: str | None) -> list[Any]:
    return [
        d for d in schedule.doses if d.time > start - TOL and (agent is None or d.agent == agent)
    ]


def _rule(name: str, value: float, limit: float, unit: str) -> ConstraintCheck:
    margin = limit - value
    return ConstraintCheck(name, value, limit, unit, bool(margin >= -TOL * max(1.0, abs(limit))),
                           margin)  # fmt: skip


@dataclass(frozen=True)
class MaxPerAdministration(Constraint):
    """No single administration above `limit` (Gy per fraction, mg per dose, GBq per cycle)."""

    limit: float
    unit: str = ""
    agent: str | None = None
    name: str = "maximum dose per administration"

    def check(
        self, schedule: Schedule, metrics: Mapping[str, Any], start: float
    ) -> ConstraintCheck:
        doses = _future(schedule, start, self.agent)
        value = max((d.amount for d in doses), default=0.0)
        return _rule(self.name, value, self.limit, self.unit)

    def spec(self) -> str:
        return f"max-dose:{self.limit:g}"


@dataclass(frozen=True)
class MaxCumulative(Constraint):
    """Total planned dose at most `limit` (Gy, mg, GBq)."""

    limit: float
    unit: str = ""
    agent: str | None = None
    name: str = "cumulative dose"

    def check(
        self, schedule: Schedule, metrics: Mapping[str, Any], start: float
    ) -> ConstraintCheck:
        value = float(sum(d.amount for d in _future(schedule, start, self.agent)))
        return _rule(self.name, value, self.limit, self.unit)

    def spec(self) -> str:
        return f"cumulative:{self.limit:g}"


@dataclass(frozen=True)
class AllowedDays(Constraint):
    """Administrations on weekdays only (Monday to Friday).

    Attributes:
        start_weekday: weekday of the plan start day, 0 = Monday ... 6 = Sunday.
    """

    start_weekday: int = 0
    name: str = "weekdays only"

    def check(
        self, schedule: Schedule, metrics: Mapping[str, Any], start: float
    ) -> ConstraintCheck:
        bad = [
            d
            for d in _future(schedule, start, None)
            if (self.start_weekday + math.floor(d.time - start + TOL)) % 7 >= 5
        ]
        check = _rule(self.name, float(len(bad)), 0.0, "")
        words = f"{len(bad)} at weekends" if bad else "no administration at a weekend"
        return replace(check, detail=words)

    def spec(self) -> str:
        return "weekdays"


@dataclass(frozen=True)
class MinRest(Constraint):
    """At least `days` between consecutive administrations (of `agent`, or of any agent)."""

    days: float
    agent: str | None = None
    name: str = "minimum rest between administrations"

    def check(
        self, schedule: Schedule, metrics: Mapping[str, Any], start: float
    ) -> ConstraintCheck:
        times = sorted(d.time for d in _future(schedule, start, self.agent))
        gap = float(np.min(np.diff(times))) if len(times) > 1 else math.inf
        # margin in days: the shortest gap minus the required rest
        check = _rule(self.name, -gap, -self.days, "day")
        return ConstraintCheck(self.name, gap, self.days, "day", check.met, gap - self.days)

    def spec(self) -> str:
        return f"rest:{self.days:g}"


@dataclass(frozen=True)
class WholeUnits(Constraint):
    """Every amount a whole number of `size` (vials, tablets, dose steps of a fraction)."""

    size: float
    unit: str = ""
    agent: str | None = None
    name: str = "whole units"

    def check(
        self, schedule: Schedule, metrics: Mapping[str, Any], start: float
    ) -> ConstraintCheck:
        worst = 0.0
        for d in _future(schedule, start, self.agent):
            k = d.amount / self.size
            worst = max(worst, abs(k - round(k)) * self.size)
        name = f"{self.name} of {self.size:g} {self.unit}".rstrip()
        check = _rule(name, worst, 1e-6 * self.size, self.unit)
        words = "every amount" if check.met else f"an amount off by {worst:.3g} {self.unit}"
        return replace(check, detail=words.rstrip())

    def spec(self) -> str:
        return f"whole:{self.size:g}"


@dataclass(frozen=True)
class MetricBound(Constraint):
    """A per-draw toxicity metric at most `limit`, in every draw or with probability >= 1 - eps.

    Attributes:
        metric: key of the metric the modality computes (e.g. "oar_bed", "ntcp:brain",
            "neutropenia_grade", "bed:kidneys", "dose:red_marrow").
        limit: upper limit, in `unit`.
        eps: allowed probability of exceeding the limit (None: no draw may exceed it).
        label: words for reports.
        unit: unit of the metric.
    """

    metric: str
    limit: float
    eps: float | None = None
    label: str = ""
    unit: str = ""

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.label or self.metric

    def __post_init__(self) -> None:
        if self.eps is not None and not 0.0 <= self.eps < 1.0:
            raise ModelError(f"chance-constraint eps must be in [0, 1), got {self.eps}")

    def check(
        self, schedule: Schedule, metrics: Mapping[str, Any], start: float
    ) -> ConstraintCheck:
        if self.metric not in metrics:
            known = ", ".join(sorted(metrics)) or "none"
            raise ModelError(
                f"constraint on {self.metric!r} does not apply to this modality "
                f"(its metrics: {known})"
            )
        x = np.atleast_1d(np.asarray(metrics[self.metric], float))
        ok = x <= self.limit + TOL * max(1.0, abs(self.limit))
        prob = float(np.mean(ok))
        required = 1.0 - (self.eps or 0.0)
        value = float(np.max(x)) if self.eps is None else float(np.quantile(x, required))
        met = bool(prob >= required - 1e-12)
        return ConstraintCheck(self.name, value, self.limit, self.unit, met, self.limit - value,
                               prob, required)  # fmt: skip

    def spec(self) -> str:
        tail = "" if self.eps is None else f"@{self.eps:g}"
        return f"metric:{self.metric}<={self.limit:g}{tail}"


def neutropenia(grade: int = 4, max_probability: float = 0.1) -> MetricBound:
    """P(CTCAE neutropenia grade >= `grade` at any nadir) <= `max_probability` (Friberg model)."""
    if grade not in (1, 2, 3, 4):
        raise ModelError(f"neutropenia grade must be 1 to 4, got {grade}")
    return MetricBound(
        "neutropenia_grade",
        grade - 0.5,
        max_probability,
        f"P(grade >= {grade} neutropenia) <= {max_probability:g}",
        "grade",
    )


def ntcp(organ: str, limit: float, eps: float | None = None) -> MetricBound:
    """NTCP of `organ` at most `limit` (a probability)."""
    if not 0 < limit < 1:
        raise ModelError(f"NTCP limit must be in (0, 1), got {limit}")
    return MetricBound(f"ntcp:{organ}", limit, eps, f"NTCP {organ}", "")


def organ_limit(organ: str, quantity: str, limit: float, eps: float | None = None) -> MetricBound:
    """Cumulative absorbed dose ("dose") or BED ("bed") of `organ` at most `limit` Gy."""
    if quantity not in ("dose", "bed"):
        raise ModelError(f"organ limit quantity must be 'dose' or 'bed', got {quantity!r}")
    what = "absorbed dose" if quantity == "dose" else "BED"
    return MetricBound(f"{quantity}:{organ}", limit, eps, f"cumulative {organ} {what}", "Gy")


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ModelError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ModelError(f"{what}: {text!r} is not finite")
    return value


def parse_constraint(text: str) -> Constraint:
    """A constraint from text (the CLI's ``--constraint``).

    Forms (``@EPS`` makes a bound a chance constraint, P(exceeded) <= EPS)::

        max-dose:5            no administration above 5 (Gy, mg, GBq)
        cumulative:60         total at most 60
        weekdays              Monday to Friday only
        rest:21               at least 21 days between administrations
        whole:0.1             amounts in whole steps (vials) of 0.1
        oar-bed:120           organ-at-risk BED at most 120 Gy
        ntcp:brain<=0.05      NTCP of the organ at most 0.05
        neutropenia:4<=0.1    P(grade >= 4 neutropenia) at most 0.1
        kidneys-bed:40@0.05   kidney BED at most 40 Gy with probability >= 95%
        red_marrow-dose:2     red marrow absorbed dose at most 2 Gy

    Raises:
        ModelError: a form not listed, or a bad number.
    """
    raw = text.strip()
    body, _, eps_text = raw.partition("@")
    eps = _number(eps_text, f"constraint {raw!r}") if eps_text else None
    name, _, arg = body.partition(":")
    name = name.strip().lower()
    if name == "weekdays":
        return AllowedDays()
    if name in ("max-dose", "max_dose", "per-dose"):
        return MaxPerAdministration(_number(arg, raw))
    if name in ("cumulative", "total"):
        return MaxCumulative(_number(arg, raw))
    if name == "rest":
        return MinRest(_number(arg, raw))
    if name in ("whole", "vial"):
        size = _number(arg, raw)
        if size <= 0:
            raise ModelError(f"{raw!r}: the unit size must be > 0")
        return WholeUnits(size)
    if name == "oar-bed":
        return MetricBound("oar_bed", _number(arg, raw), eps, "organ-at-risk BED", "Gy")
    if name == "ntcp":
        organ, sep, lim = arg.partition("<=")
        if not sep:
            raise ModelError(f"{raw!r}: write ntcp:ORGAN<=P, e.g. ntcp:brain<=0.05")
        return ntcp(organ.strip(), _number(lim, raw), eps)
    if name == "neutropenia":
        grade, sep, prob = arg.partition("<=")
        if not sep:
            raise ModelError(f"{raw!r}: write neutropenia:GRADE<=P, e.g. neutropenia:4<=0.1")
        return neutropenia(int(_number(grade, raw)), _number(prob, raw))
    if name.endswith("-bed") or name.endswith("-dose"):
        organ, _, quantity = name.rpartition("-")
        return organ_limit(organ, quantity, _number(arg, raw), eps)
    if name == "metric":
        metric, sep, lim = arg.partition("<=")
        if not sep:
            raise ModelError(f"{raw!r}: write metric:NAME<=LIMIT")
        return MetricBound(metric.strip(), _number(lim, raw), eps)
    raise ModelError(
        f"unknown constraint {raw!r}; use max-dose:X, cumulative:X, weekdays, rest:DAYS, "
        "whole:SIZE, oar-bed:GY, ntcp:ORGAN<=P, neutropenia:GRADE<=P, ORGAN-bed:GY, ORGAN-dose:GY"
    )
