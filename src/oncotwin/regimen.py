"""A readable regimen language: whole treatment plans written the way clinicians write them.

A regimen is a list of items, one line of a plan each, in a structured form (YAML/JSON
mappings) or a short text form::

    patient: {bsa: 1.8}
    items:
      - docetaxel 75 mg/m2 q3w x 6 over 1 h
      - {radiotherapy: "60 Gy in 30 fractions", days: weekdays, start: 0}
      - {radiopharmaceutical: 177Lu-PSMA-617, activity: 7.4 GBq, every: 6 weeks, cycles: 6}
      - {drug: abiraterone, "on": [0, 90]}
      - {drug: leuprolide, on_days: 90, off_days: 60, cycles: 3}
      - abiraterone on until PSA < 50% of baseline, off until PSA >= 100% of baseline

Fixed items become the :class:`~oncotwin.schedule.Dose` and :class:`~oncotwin.schedule.Switch`
records of a :class:`~oncotwin.schedule.Schedule` (:meth:`Regimen.schedule`); threshold rules
cannot become fixed switches before the marker is simulated, so they stay on the regimen
(:attr:`Regimen.rules`) and convert to :class:`oncotwin.models.hormone.AdaptiveRule` for
:func:`oncotwin.models.hormone.simulate_adaptive`.

Canonical units as everywhere (:mod:`oncotwin.units`): days, mg, GBq, Gy. Doses per m² or per
kg are converted once, here, with the patient's body surface area or weight. Bare numbers in
time fields are days; an infusion length needs a unit ("1 h"), because a bare "1" there is
ambiguous. Items are numbered from 1 in error messages. The format is described in
``docs/regimens.md``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DataError, ScheduleError
from .schedule import Dose, Schedule, Switch
from .units import KIND_LABELS, KINDS, TIME_TO_DAYS, canonical_kind, to_canonical

if TYPE_CHECKING:
    from .models.hormone import AdaptiveRule

__all__ = [
    "Regimen",
    "RegimenItem",
    "ThresholdRule",
    "load_regimen",
    "parse_regimen",
]

# Time words -> days; minutes added for short infusions ("over 30 min").
_TIME: dict[str, float] = {
    **TIME_TO_DAYS,
    "min": 1 / 1440, "mins": 1 / 1440, "minute": 1 / 1440, "minutes": 1 / 1440,
    "hr": 1 / 24, "hrs": 1 / 24, "wks": 7.0,
}  # fmt: skip
# Dose units -> (kind, factor to the canonical unit). 1 Ci = 37 GBq by definition.
_MASS = {"mg": 1.0, "g": 1e3, "ug": 1e-3, "mcg": 1e-3}
_ACTIVITY = {"gbq": 1.0, "mbq": 1e-3, "kbq": 1e-6, "mci": 0.037}
_UNIT_LABEL = {"mg": "mg", "g": "g", "ug": "µg", "mcg": "µg", "gbq": "GBq", "mbq": "MBq",
               "kbq": "kBq", "mci": "mCi"}  # fmt: skip
_PER = {"m2": "bsa", "kg": "weight"}
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_NUM = r"\d+(?:\.\d+)?"
_MAX_COUNT = 10_000
_TIME_UNIT = r"[a-z]+"

# Fields accepted per item form; anything else is an error (a misspelt "cylces" must not
# silently mean one cycle).
_FIELDS: dict[str, tuple[str, ...]] = {
    "dose": ("drug", "dose", "every", "cycles", "start", "infusion"),
    "period": ("drug", "on"),
    "intermittent": ("drug", "on_days", "off_days", "cycles", "start"),
    "rule": ("drug", "rule"),
    "radiotherapy": ("radiotherapy", "days", "start", "start_weekday"),
    "radiopharmaceutical": ("radiopharmaceutical", "activity", "every", "cycles", "start"),
}
# The field that tells which kind of drug item it is.
_DRUG_FORMS = {"dose": "dose", "on": "period", "on_days": "intermittent", "rule": "rule"}
_TOP_FIELDS = ("name", "description", "patient", "half_life", "items")
_PATIENT_FIELDS = ("id", "bsa", "body_surface_area", "weight")

_TEXT_EXAMPLES = (
    "'docetaxel 75 mg/m2 q3w x 6 over 1 h', '60 Gy in 30 fractions, weekdays', '5 x 5 Gy', "
    "'177Lu-PSMA-617 7.4 GBq q6w x 6', 'abiraterone on days 0-90', "
    "'leuprolide on 90 days, off 60 days x 3', 'abiraterone on until PSA < 50% of baseline'"
)


class _FieldError(Exception):
    """A problem with one field of one item; the parser adds the item number."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ThresholdRule:
    """Marker-guided on/off rule: on until the marker falls below a level, off until it recovers.

    Attributes:
        agent: the treatment switched on and off.
        marker: canonical observation kind it follows (:func:`oncotwin.units.canonical_kind`).
        stop_below: treatment stops when the marker falls below this level.
        restart_above: treatment restarts when the marker rises back to this level; None when
            the plan does not restart it.
        relative_to: "baseline" (levels are fractions of the marker at the start) or
            "absolute" (levels in the marker's canonical unit, e.g. PSA in ng/mL).
    """

    agent: str
    marker: str = "psa"
    stop_below: float = 0.5
    restart_above: float | None = 1.0
    relative_to: str = "baseline"

    def __post_init__(self) -> None:
        if self.relative_to not in ("baseline", "absolute"):
            raise ScheduleError(
                f"relative_to must be 'baseline' or 'absolute', got {self.relative_to!r}"
            )
        if not (math.isfinite(self.stop_below) and self.stop_below > 0):
            raise ScheduleError(f"stop_below must be finite and > 0, got {self.stop_below}")
        if self.restart_above is not None and not (
            math.isfinite(self.restart_above) and self.restart_above > self.stop_below
        ):
            raise ScheduleError(
                f"restart_above must be finite and > stop_below ({self.stop_below}), "
                f"got {self.restart_above}"
            )

    def to_adaptive_rule(self) -> AdaptiveRule:
        """The rule as :class:`oncotwin.models.hormone.AdaptiveRule` (starts on treatment).

        Raises:
            ScheduleError: the rule does not follow PSA, or never restarts treatment (the
                hormone model's rule needs a restart level).
        """
        from .models.hormone import AdaptiveRule  # imports JAX: only when asked for

        if self.marker != "psa":
            raise ScheduleError(
                f"hormone.simulate_adaptive follows PSA; this rule follows {self.marker!r}"
            )
        if self.restart_above is None:
            raise ScheduleError(
                f"the rule for {self.agent!r} never restarts treatment; AdaptiveRule needs a "
                "restart level ('off until PSA >= 100% of baseline')"
            )
        return AdaptiveRule(
            stop_below=self.stop_below,
            restart_above=self.restart_above,
            relative_to=self.relative_to,
        )

    def text(self) -> str:
        """The rule in the regimen language, e.g. "on until PSA < 50% of baseline, ..."."""
        out = f"on until {self._label()} < {self._level(self.stop_below)}"
        if self.restart_above is not None:
            out += f", off until {self._label()} >= {self._level(self.restart_above)}"
        return out

    def _label(self) -> str:
        return KIND_LABELS.get(self.marker, self.marker)

    def _level(self, value: float) -> str:
        if self.relative_to == "baseline":
            return f"{_percent(value)}% of baseline"
        return f"{_s(value)} {KINDS[self.marker][0]}" if self.marker in KINDS else _s(value)


@dataclass(frozen=True)
class RegimenItem:
    """One parsed line of a plan.

    Attributes:
        kind: "dose", "radiotherapy", "radiopharmaceutical", "period", "intermittent" or
            "rule".
        agent: the drug, radiopharmaceutical, or "radiotherapy".
        spec: the item in structured form (what :meth:`Regimen.to_dict` writes).
        doses: the administrations it makes (absolute amounts, canonical units).
        switches: the on/off switches it makes.
        rule: the threshold rule of a "rule" item, else None.
        note: the dose as written when it was converted (e.g. "75 mg/m2"), else "".
        text: the original text line of a text item, else "".
        description: one human sentence (see :meth:`Regimen.describe`).
    """

    kind: str
    agent: str
    spec: Mapping[str, Any]
    doses: tuple[Dose, ...] = ()
    switches: tuple[Switch, ...] = ()
    rule: ThresholdRule | None = None
    note: str = ""
    text: str = ""
    description: str = ""


@dataclass(frozen=True)
class Regimen:
    """A whole treatment plan: fixed doses and switches, and threshold rules.

    Attributes:
        items: the parsed items, in the order written.
        patient: body surface area ("bsa", m²) and weight ("weight", kg) used for per-m² and
            per-kg doses.
        half_life: effect-compartment half-life per agent, days (passed to the schedule).
        name: optional name of the plan.
    """

    items: tuple[RegimenItem, ...]
    patient: Mapping[str, Any] = field(default_factory=dict)
    half_life: Mapping[str, float] = field(default_factory=dict)
    name: str | None = None

    @property
    def rules(self) -> tuple[ThresholdRule, ...]:
        """Threshold rules, which become switches only when the marker is simulated."""
        return tuple(item.rule for item in self.items if item.rule is not None)

    def schedule(self) -> Schedule:
        """The fixed part of the plan (every item except threshold rules) as a schedule."""
        doses = tuple(d for item in self.items for d in item.doses)
        switches = tuple(s for item in self.items for s in item.switches)
        return Schedule(doses, switches, dict(self.half_life))

    def describe(self) -> list[str]:
        """One human sentence per item, e.g. "docetaxel 135 mg (75 mg/m² × BSA 1.8 m²) ..."."""
        return [item.description for item in self.items]

    def to_dict(self) -> dict[str, Any]:
        """Structured, JSON/YAML-ready form that :func:`parse_regimen` reads back."""
        out: dict[str, Any] = {}
        if self.name is not None:
            out["name"] = self.name
        if self.patient:
            out["patient"] = dict(self.patient)
        if self.half_life:
            out["half_life"] = {k: _num(v) for k, v in self.half_life.items()}
        out["items"] = [dict(item.spec) for item in self.items]
        return out


# --------------------------------------------------------------------------- entry points


def parse_regimen(
    spec: Mapping[str, Any] | str,
    *,
    body_surface_area: float | None = None,
    weight: float | None = None,
) -> Regimen:
    """Parse a regimen from its structured form, or from text with one item per line.

    Args:
        spec: a mapping with ``items`` (each a mapping or a text line) and optionally
            ``patient`` ({bsa: m², weight: kg}), ``half_life`` ({agent: days}) and ``name``;
            or a string of text items, one per line (or separated by ";"), "#" starts a
            comment.
        body_surface_area: m²; overrides ``patient.bsa`` (so one protocol file serves many
            patients).
        weight: kg; overrides ``patient.weight``.

    Returns:
        The :class:`Regimen`.

    Raises:
        ScheduleError: naming the item (from 1) and field: an unknown item form or field, a
            bad or missing unit, a per-m² or per-kg dose without the patient's BSA or weight,
            a non-positive count, or text that cannot be parsed (quoted).
    """
    if isinstance(spec, str):
        lines = [part.split("#", 1)[0].strip() for part in re.split(r"[\n;]", spec)]
        spec = {"items": [line for line in lines if line]}
    if not isinstance(spec, Mapping):
        raise ScheduleError(f"a regimen must be a mapping with 'items', got {type(spec).__name__}")
    unknown = [str(k) for k in spec if k not in _TOP_FIELDS]
    if unknown:
        raise ScheduleError(
            f"unknown field {unknown[0]!r} in the regimen; accepted: {', '.join(_TOP_FIELDS)}"
        )
    patient = _patient(spec.get("patient") or {}, body_surface_area, weight)
    half_life = _half_life(spec.get("half_life") or {})
    raw_items = spec.get("items")
    if not isinstance(raw_items, Sequence) or isinstance(raw_items, str) or not raw_items:
        raise ScheduleError("a regimen needs 'items': a non-empty list of items")
    items = []
    for i, raw in enumerate(raw_items, start=1):
        try:
            items.append(_item(raw, patient))
        except _FieldError as exc:
            raise ScheduleError(f"item {i}: field '{exc.field}': {exc.message}") from None
    name = spec.get("name")
    return Regimen(tuple(items), patient, half_life, None if name is None else str(name))


def load_regimen(
    path: str | Path, *, body_surface_area: float | None = None, weight: float | None = None
) -> Regimen:
    """Read a regimen from a YAML or JSON file (JSON when the name ends in ".json").

    Args:
        path: the file.
        body_surface_area: m²; overrides the file's ``patient.bsa``.
        weight: kg; overrides the file's ``patient.weight``.

    Raises:
        ScheduleError: the message starts with the file, then the item and field (see
            :func:`parse_regimen`).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScheduleError(f"{path}: cannot read the regimen file: {exc}") from exc
    try:
        if str(path).endswith(".json"):
            spec = json.loads(text)
        else:
            import yaml

            spec = yaml.safe_load(text)
    except Exception as exc:  # any parser error: report it with the file name
        raise ScheduleError(f"{path}: cannot parse the regimen file: {exc}") from exc
    if not isinstance(spec, Mapping):
        raise ScheduleError(f"{path}: a regimen file must hold a mapping with 'items'")
    try:
        return parse_regimen(spec, body_surface_area=body_surface_area, weight=weight)
    except ScheduleError as exc:
        raise ScheduleError(f"{path}: {exc}") from exc


# --------------------------------------------------------------------------- top level


def _patient(raw: Any, bsa: float | None, weight: float | None) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ScheduleError("field 'patient' must be a mapping such as {bsa: 1.8, weight: 70}")
    unknown = [str(k) for k in raw if k not in _PATIENT_FIELDS]
    if unknown:
        raise ScheduleError(
            f"patient: unknown field {unknown[0]!r}; accepted: {', '.join(_PATIENT_FIELDS)}"
        )
    out: dict[str, Any] = {}
    if "id" in raw:
        out["id"] = str(raw["id"])
    given_bsa = raw.get("bsa", raw.get("body_surface_area"))
    for key, value, override in (("bsa", given_bsa, bsa), ("weight", raw.get("weight"), weight)):
        value = override if override is not None else value
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ScheduleError(f"patient: field '{key}' must be a number, got {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise ScheduleError(f"patient: field '{key}' must be finite and > 0, got {value!r}")
        out[key] = _num(float(value))
    return out


def _half_life(raw: Any) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        raise ScheduleError("field 'half_life' must map agents to half-lives")
    out = {}
    for agent, value in raw.items():
        try:
            days = _days(value, f"half_life.{agent}")
        except _FieldError as exc:
            raise ScheduleError(f"field '{exc.field}': {exc.message}") from None
        if not days > 0:
            raise ScheduleError(f"field 'half_life.{agent}': must be > 0, got {value!r}")
        out[str(agent)] = days
    return out


# --------------------------------------------------------------------------- items


def _item(raw: Any, patient: Mapping[str, Any]) -> RegimenItem:
    """Parse one item: text lines are first translated into the structured form."""
    text = ""
    if isinstance(raw, str):
        text = raw.strip()
        spec = _from_text(text)
    elif isinstance(raw, Mapping):
        # YAML 1.1 reads an unquoted key `on` as the boolean True.
        spec = {("on" if k is True else str(k)): v for k, v in raw.items()}
    else:
        raise _FieldError("item", f"expected a mapping or a text line, got {raw!r}")
    kind = _kind(spec)
    unknown = [k for k in spec if k not in _FIELDS[kind]]
    if unknown:
        raise _FieldError(
            unknown[0],
            f"unknown for a {kind} item; accepted: {', '.join(_FIELDS[kind])}",
        )
    return replace(_BUILDERS[kind](spec, patient), text=text)


def _kind(spec: Mapping[str, Any]) -> str:
    if "radiotherapy" in spec:
        return "radiotherapy"
    if "radiopharmaceutical" in spec:
        return "radiopharmaceutical"
    if "drug" not in spec:
        fields = ", ".join(repr(k) for k in spec) or "none"
        raise _FieldError(
            "drug",
            f"unknown item form (fields: {fields}); an item needs 'drug', 'radiotherapy' or "
            "'radiopharmaceutical', or is a text line",
        )
    forms = [k for k in _DRUG_FORMS if k in spec]
    if len(forms) != 1:
        raise _FieldError(
            "drug",
            "a drug item needs exactly one of 'dose', 'on', 'on_days' or 'rule'"
            + (f", got {', '.join(repr(f) for f in forms)}" if forms else ""),
        )
    return _DRUG_FORMS[forms[0]]


def _agent(spec: Mapping[str, Any], key: str) -> str:
    name = spec.get(key)
    if not isinstance(name, str) or not name.strip():
        raise _FieldError(key, f"must be a non-empty name, got {name!r}")
    return name.strip()


def _dosing(spec: Mapping[str, Any]) -> tuple[float, int, float]:
    """start, cycles and interval (days) of a repeated administration."""
    start = _days(spec.get("start", 0), "start")
    cycles = _count(spec.get("cycles", 1), "cycles")
    if "every" in spec:
        every = _every(spec["every"], "every")
    elif cycles > 1:
        raise _FieldError("every", "required when cycles > 1 (e.g. 'q3w' or '3 weeks')")
    else:
        every = 0.0
    return start, cycles, every


def _build_dose(spec: dict[str, Any], patient: Mapping[str, Any]) -> RegimenItem:
    agent = _agent(spec, "drug")
    amount, unit, kind, note, conv = _amount(spec.get("dose"), "dose", patient)
    if kind != "mass":
        raise _FieldError(
            "dose",
            f"{spec['dose']!r} is an activity; write a radiopharmaceutical item "
            "({radiopharmaceutical: ..., activity: ...})",
        )
    start, cycles, every = _dosing(spec)
    duration = 0.0
    if "infusion" in spec:
        duration = _days(spec["infusion"], "infusion", bare_days=False)
        if not duration > 0:
            raise _FieldError("infusion", f"must be > 0, got {spec['infusion']!r}")
    doses = tuple(Dose(start + k * every, amount, agent, duration, unit) for k in range(cycles))
    infusion = f" as a {_length(duration)} infusion" if duration > 0 else ""
    sentence = f"{agent} {_p(amount)} {unit}{conv}{infusion}{_when(doses, every)}"
    return RegimenItem("dose", agent, spec, doses, note=note, description=sentence)


def _build_radiopharmaceutical(spec: dict[str, Any], patient: Mapping[str, Any]) -> RegimenItem:
    agent = _agent(spec, "radiopharmaceutical")
    amount, unit, kind, note, conv = _amount(spec.get("activity"), "activity", patient)
    if kind != "activity":
        raise _FieldError(
            "activity", f"{spec['activity']!r} is not an activity (GBq, MBq, kBq or mCi)"
        )
    start, cycles, every = _dosing(spec)
    doses = tuple(Dose(start + k * every, amount, agent, 0.0, unit) for k in range(cycles))
    sentence = f"{agent} {_p(amount)} {unit}{conv}{_when(doses, every)}"
    return RegimenItem("radiopharmaceutical", agent, spec, doses, note=note, description=sentence)


def _build_radiotherapy(spec: dict[str, Any], patient: Mapping[str, Any]) -> RegimenItem:
    prescription = spec.get("radiotherapy")
    if not isinstance(prescription, str):
        raise _FieldError(
            "radiotherapy", f"must be text such as '60 Gy in 30 fractions', got {prescription!r}"
        )
    parsed = _rt_text(prescription)
    if parsed is None:
        raise _FieldError(
            "radiotherapy",
            f"cannot parse {prescription!r} (expected e.g. '60 Gy in 30 fractions', '5 x 5 Gy')",
        )
    for key in ("days", "start"):  # given both in the prescription text and as a field
        if key in parsed and key in spec and parsed[key] != spec[key]:
            raise _FieldError(key, f"{spec[key]!r} contradicts {prescription!r}")
    n, per_fraction = parsed["n"], parsed["per_fraction"]
    if not 1 <= n <= _MAX_COUNT:
        raise _FieldError(
            "radiotherapy", f"the number of fractions must be 1 to {_MAX_COUNT}, got {n}"
        )
    if not per_fraction > 0:
        raise _FieldError("radiotherapy", f"the dose must be > 0 Gy, got {prescription!r}")
    days = str(spec.get("days", parsed.get("days", "weekdays"))).strip().lower()
    if days not in ("weekdays", "daily"):
        raise _FieldError("days", f"must be 'weekdays' or 'daily', got {spec.get('days')!r}")
    start = _days(spec.get("start", parsed.get("start", 0)), "start")
    weekday = _weekday(spec.get("start_weekday", 0))

    from .radiotherapy import fractions  # imports JAX: only when a plan has radiotherapy

    times = fractions(per_fraction * n, n, start, days == "weekdays", weekday).times
    doses = tuple(Dose(float(t), per_fraction, "radiotherapy", 0.0, "Gy") for t in times)
    where = "weekdays (Monday to Friday)" if days == "weekdays" else "daily"
    if weekday and days == "weekdays":
        where += f", starting on a {_WEEKDAYS[weekday].capitalize()}"
    plural = "fraction" if n == 1 else "fractions"
    sentence = (
        f"radiotherapy {_p(per_fraction * n)} Gy in {n} {plural} of {_p(per_fraction)} Gy, "
        f"{where}, {_span(doses)}"
    )
    return RegimenItem("radiotherapy", "radiotherapy", spec, doses, description=sentence)


def _build_period(spec: dict[str, Any], patient: Mapping[str, Any]) -> RegimenItem:
    agent = _agent(spec, "drug")
    raw = spec["on"]
    # [start, end] is one period; a list of pairs is several; a single time is open-ended.
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        pairs = list(raw) if raw and all(_is_pair(p) for p in raw) else [raw]
    else:
        pairs = [[raw, None]]
    switches: list[Switch] = []
    parts = []
    for pair in pairs:
        if not _is_pair(pair):
            raise _FieldError("on", f"expected [start, end] (days; end may be null), got {pair!r}")
        start = _days(pair[0], "on")
        if pair[1] is None:
            switches.append(Switch(start, agent, True))
            parts.append(f"from day {_p(start)}, open-ended")
            continue
        end = _days(pair[1], "on")
        if not end > start:
            raise _FieldError("on", f"the end must be after the start, got {list(pair)!r}")
        switches += [Switch(start, agent, True), Switch(end, agent, False)]
        parts.append(f"days {_p(start)}–{_p(end)}")
    sentence = f"{agent} on {' and '.join(parts)}"
    return RegimenItem("period", agent, spec, switches=tuple(switches), description=sentence)


def _build_intermittent(spec: dict[str, Any], patient: Mapping[str, Any]) -> RegimenItem:
    agent = _agent(spec, "drug")
    on = _days(spec["on_days"], "on_days")
    if "off_days" not in spec:
        raise _FieldError("off_days", "required with on_days")
    off = _days(spec["off_days"], "off_days")
    for key, value in (("on_days", on), ("off_days", off)):
        if not value > 0:
            raise _FieldError(key, f"must be > 0, got {spec[key]!r}")
    if "cycles" not in spec:
        raise _FieldError("cycles", "required with on_days (the number of on/off cycles)")
    cycles = _count(spec["cycles"], "cycles")
    start = _days(spec.get("start", 0), "start")
    switches = []
    for k in range(cycles):
        t = start + k * (on + off)
        switches += [Switch(t, agent, True), Switch(t + on, agent, False)]
    sentence = (
        f"{agent} intermittent: {_p(on)} days on, {_p(off)} days off, {cycles} "
        f"{'cycle' if cycles == 1 else 'cycles'}, days {_p(start)}–{_p(switches[-1].time)}"
    )
    return RegimenItem("intermittent", agent, spec, switches=tuple(switches), description=sentence)


def _build_rule(spec: dict[str, Any], patient: Mapping[str, Any]) -> RegimenItem:
    agent = _agent(spec, "drug")
    text = spec["rule"]
    if not isinstance(text, str):
        raise _FieldError(
            "rule", f"must be text such as 'on until PSA < 50% of baseline', got {text!r}"
        )
    rule = _rule(agent, text)
    sentence = f"{agent} {rule.text().replace(', off', ', then off').replace('>=', '≥')}"
    sentence += " (adaptive: the switching times come from the simulated marker)"
    return RegimenItem("rule", agent, spec, rule=rule, description=sentence)


_BUILDERS: dict[str, Callable[[dict[str, Any], Mapping[str, Any]], RegimenItem]] = {
    "dose": _build_dose,
    "radiopharmaceutical": _build_radiopharmaceutical,
    "radiotherapy": _build_radiotherapy,
    "period": _build_period,
    "intermittent": _build_intermittent,
    "rule": _build_rule,
}


# --------------------------------------------------------------------------- field values


def _num(x: float) -> int | float:
    """`x` as an int when integral (tidy YAML/JSON), else unchanged."""
    return int(x) if float(x).is_integer() and abs(x) < 1e15 else x


def _s(x: float) -> str:
    """Exact, shortest text of a number (reads back to the same float)."""
    return repr(_num(float(x)))


def _p(x: float) -> str:
    """A number for people: at most 4 decimals, no trailing zeros."""
    r = round(float(x), 4)
    return str(int(r)) if r.is_integer() else f"{r}"


def _percent(fraction: float) -> str:
    """Shortest percentage text p with float(p) / 100 == fraction (exact round trip)."""
    for digits in range(17):
        text = f"{fraction * 100:.{digits}f}"
        if float(text) / 100 == fraction:
            return text
    return repr(fraction * 100)


def _is_pair(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2


def _count(value: Any, name: str) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _FieldError(name, f"must be a positive integer, got {value!r}")
    if value < 1:
        raise _FieldError(name, f"must be a positive integer, got {value}")
    if value > _MAX_COUNT:  # a typo such as "x 6000000" would build millions of doses
        raise _FieldError(name, f"must be at most {_MAX_COUNT}, got {value}")
    return value


def _days(value: Any, name: str, *, bare_days: bool = True) -> float:
    """A time or duration in days: a number (days) or text such as "3 weeks", "1 h", "day 14"."""
    if isinstance(value, bool):
        raise _FieldError(name, f"expected a time, got {value!r}")
    if isinstance(value, int | float):
        if not bare_days:
            raise _FieldError(name, f"give a unit, e.g. '{_p(value)} h' or '{_p(value)} days'")
        days = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        m = re.fullmatch(rf"day\s*(-?{_NUM})", text)
        if m:
            days = float(m.group(1))
        elif re.fullmatch(rf"-?{_NUM}", text):
            if not bare_days:
                raise _FieldError(name, f"give a unit, e.g. '{text} h' or '{text} days'")
            days = float(text)
        else:
            m = re.fullmatch(rf"(-?{_NUM})\s*({_TIME_UNIT})", text)
            if not m or m.group(2) not in _TIME:
                raise _FieldError(
                    name, f"cannot read {value!r} as a time (e.g. '21 days', '3 weeks', '1 h')"
                )
            days = float(m.group(1)) * _TIME[m.group(2)]
    else:
        raise _FieldError(name, f"expected a time, got {value!r}")
    if not math.isfinite(days):
        raise _FieldError(name, f"must be finite, got {value!r}")
    return days


def _every(value: Any, name: str) -> float:
    """Dosing interval in days: "q3w", "q21d", "q12h", "daily", "weekly", "3 weeks", 21."""
    if isinstance(value, str):
        text = value.strip().lower()
        text = re.sub(r"^every\s+", "", text)
        if text in ("daily", "qd", "od", "day"):
            return 1.0
        if text in ("weekly", "week"):
            return 7.0
        m = re.fullmatch(rf"q\s*({_NUM})\s*({_TIME_UNIT})", text)
        if m:
            if m.group(2) not in _TIME:
                raise _FieldError(name, f"unknown time unit in {value!r}")
            days = float(m.group(1)) * _TIME[m.group(2)]
        else:
            days = _days(text, name)
    else:
        days = _days(value, name)
    if not days > 0:
        raise _FieldError(name, f"must be > 0, got {value!r}")
    return days


def _weekday(value: Any) -> int:
    if isinstance(value, str):
        text = value.strip().lower()
        for i, day in enumerate(_WEEKDAYS):
            if len(text) >= 3 and day.startswith(text):
                return i
        if text.isdigit():
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value not in range(7):
        raise _FieldError(
            "start_weekday", f"must be 0 (Monday) to 6 (Sunday) or a day name, got {value!r}"
        )
    return value


def _amount(value: Any, name: str, patient: Mapping[str, Any]) -> tuple[float, str, str, str, str]:
    """Absolute amount in canonical units from text such as "75 mg/m2" or "7.4 GBq".

    Returns:
        amount, canonical unit ("mg" or "GBq"), kind ("mass" or "activity"), the note (the
        text as written when it was converted, else "") and the explanation for sentences.
    """
    if not isinstance(value, str):
        raise _FieldError(
            name, f"must be text with a unit, e.g. '75 mg/m2' or '7.4 GBq', got {value!r}"
        )
    m = re.fullmatch(rf"\s*({_NUM})\s*(\S+)\s*", value)
    if not m:
        raise _FieldError(name, f"cannot read {value!r} as an amount with a unit")
    number = float(m.group(1))
    unit = m.group(2).lower().replace("²", "2").replace("^2", "2").replace("µ", "u")
    unit = unit.replace("μ", "u")  # Greek mu, as well as the micro sign above
    base, _, per = unit.partition("/")
    if base in _MASS:
        kind, canonical, factor = "mass", "mg", _MASS[base]
    elif base in _ACTIVITY:
        kind, canonical, factor = "activity", "GBq", _ACTIVITY[base]
    else:
        raise _FieldError(
            name,
            f"unknown unit in {value!r}; accepted: mg, g, µg (mass), GBq, MBq, kBq, mCi "
            "(activity), optionally per m2 or per kg",
        )
    if not number > 0:
        raise _FieldError(name, f"must be > 0, got {value!r}")
    amount = number * factor
    if not per:
        conv = "" if factor == 1.0 else f" ({_p(number)} {_UNIT_LABEL[base]})"
        return amount, canonical, kind, ("" if factor == 1.0 else value.strip()), conv
    if per not in _PER:
        raise _FieldError(name, f"unknown unit in {value!r}; doses are per m2 or per kg")
    need = _PER[per]
    if need not in patient:
        what = (
            "body surface area (patient: {bsa: ...}, m²)"
            if need == "bsa"
            else ("weight (patient: {weight: ...}, kg)")
        )
        raise _FieldError(name, f"{value.strip()!r} needs the patient's {what}")
    size = float(patient[need])
    shown = f"{_p(number)} {_UNIT_LABEL[base]}/{'m²' if per == 'm2' else 'kg'}"
    conv = (
        f" ({shown} × BSA {_p(size)} m²)" if need == "bsa" else f" ({shown} × weight {_p(size)} kg)"
    )
    return amount * size, canonical, kind, value.strip(), conv


def _length(days: float) -> str:
    """An infusion length for sentences: "30-minute", "1-hour", "2-day"."""
    hours = days * 24
    if hours < 1:
        return f"{_p(hours * 60)}-minute"
    return f"{_p(hours)}-hour" if days < 1 else f"{_p(days)}-day"


def _span(doses: Sequence[Dose]) -> str:
    first, last = doses[0].time, doses[-1].time
    return f"day {_p(first)}" if first == last else f"days {_p(first)}–{_p(last)}"


def _when(doses: Sequence[Dose], every: float) -> str:
    if len(doses) == 1:
        return f" on day {_p(doses[0].time)}"
    if every == 1:
        freq = "daily"
    elif every < 1:
        freq = f"every {_p(every * 24)} hours"
    else:
        freq = f"every {_p(every)} days"
    what = "cycles" if every >= 7 else "doses"
    return f" {freq}, {len(doses)} {what}, {_span(doses)}"


# --------------------------------------------------------------------------- text forms

_RT_PREFIX = r"(?:(?:radiotherapy|rt|ebrt|sbrt|imrt|vmat)\s*:?\s+)?"
_RT_TOTAL = re.compile(
    rf"{_RT_PREFIX}(?P<total>{_NUM})\s*gy\s+in\s+(?P<n>\d+)\s*(?:fractions?|fx|#)(?P<rest>.*)"
)
_RT_EACH = re.compile(rf"{_RT_PREFIX}(?P<n>\d+)\s*[x×]\s*(?P<d>{_NUM})\s*gy(?P<rest>.*)")
_RT_CLAUSES = (
    (re.compile(r"(?:on\s+)?(?:weekdays|monday\s+to\s+friday|mon\s*-\s*fri)"), "days", "weekdays"),
    (re.compile(r"(?:daily|every\s+day|consecutive\s+days|7\s+days\s+a\s+week)"), "days", "daily"),
    (re.compile(rf"(?:from|starting|start)\s+(?:on\s+)?day\s+(?P<v>{_NUM})"), "start", None),
)


def _rt_text(text: str) -> dict[str, Any] | None:
    """Prescription, fraction days and start from radiotherapy text; None when it is not RT."""
    low = text.strip().lower()
    m = _RT_TOTAL.fullmatch(low)
    if m:
        n = int(m.group("n"))
        per_fraction = float(m.group("total")) / n if n else 0.0
        prescription = f"{m.group('total')} Gy in {n} {'fraction' if n == 1 else 'fractions'}"
    else:
        m = _RT_EACH.fullmatch(low)
        if not m:
            return None
        n, per_fraction = int(m.group("n")), float(m.group("d"))
        prescription = f"{n} x {m.group('d')} Gy"
    out: dict[str, Any] = {"n": n, "per_fraction": per_fraction, "prescription": prescription}
    rest = m.group("rest")
    while rest.strip(" ,;"):
        rest = rest.strip(" ,;")
        for pattern, key, value in _RT_CLAUSES:
            c = pattern.match(rest)
            if c:
                out[key] = value if value is not None else _num(float(c.group("v")))
                rest = rest[c.end() :]
                break
        else:
            return None
    return out


_DOSE_CLAUSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "every",
        re.compile(
            rf"(?P<v>q\s*{_NUM}\s*{_TIME_UNIT}|daily|weekly|qd|od"
            rf"|every\s+(?:{_NUM}\s*)?{_TIME_UNIT})",
            re.IGNORECASE,
        ),
    ),
    (
        "cycles",
        re.compile(
            r"(?:[x×]\s*|for\s+)(?P<v>\d+)(?:\s*(?:cycles?|doses?|courses?))?", re.IGNORECASE
        ),
    ),
    ("cycles", re.compile(r"(?P<v>\d+)\s*(?:cycles?|doses?|courses?)", re.IGNORECASE)),
    (
        "infusion",
        re.compile(
            rf"(?:over|infused\s+over|as\s+an?)\s+(?P<v>{_NUM}\s*{_TIME_UNIT})"
            r"(?:\s+infusion)?",
            re.IGNORECASE,
        ),
    ),
    (
        "start",
        re.compile(rf"(?:from|starting|start|on)\s+(?:on\s+)?day\s+(?P<v>{_NUM})", re.IGNORECASE),
    ),
    ("once", re.compile(r"(?P<v>once|single\s+dose)", re.IGNORECASE)),
)
_TIME_WORDS = rf"(?P<{{0}}>{_NUM})\s*(?P<{{0}}u>{_TIME_UNIT})"
_INTERMITTENT = (
    re.compile(
        rf"(?P<drug>.+?)\s+on\s+{_TIME_WORDS.format('on')}\s*[,;/]?\s*(?:then\s+)?"
        rf"off\s+{_TIME_WORDS.format('off')}(?P<rest>.*)",
        re.IGNORECASE,
    ),
    re.compile(
        rf"(?P<drug>.+?)\s+{_TIME_WORDS.format('on')}\s+on\s*[,;/]?\s*(?:then\s+)?"
        rf"{_TIME_WORDS.format('off')}\s+off(?P<rest>.*)",
        re.IGNORECASE,
    ),
)
_PERIOD = re.compile(
    rf"(?P<drug>.+?)\s+on\s+(?:from\s+)?days?\s+(?P<a>{_NUM})\s*(?:-|–|to)\s*(?:day\s+)?(?P<b>{_NUM})",
    re.IGNORECASE,
)
_OPEN_PERIOD = re.compile(
    rf"(?P<drug>.+?)\s+(?:on|continuous(?:ly)?)(?:\s+from\s+day\s+(?P<a>{_NUM}))?(?:\s+on)?",
    re.IGNORECASE,
)
_DOSE = re.compile(
    rf"(?P<drug>.+?)\s+(?P<amount>{_NUM})\s*(?P<unit>[^\s,;]+)(?P<rest>.*)", re.IGNORECASE
)


def _from_text(text: str) -> dict[str, Any]:
    """The structured form of a text item (raises a 'text' field error quoting it)."""
    low = text.lower()
    if re.search(r"\bon\s+until\b", low):
        m = re.fullmatch(r"(?P<drug>.+?)\s+(?P<rule>on\s+until\s.+)", text.strip(), re.IGNORECASE)
        if m:
            return {"drug": m.group("drug"), "rule": m.group("rule")}
    rt = _rt_text(low)
    if rt is not None:
        # Options written after the prescription become the structured fields.
        return {"radiotherapy": rt["prescription"]} | {
            k: rt[k] for k in ("days", "start") if k in rt
        }
    for pattern in _INTERMITTENT:
        m = pattern.fullmatch(text.strip())
        if m and all(m.group(u).lower() in _TIME for u in ("onu", "offu")):
            spec: dict[str, Any] = {
                "drug": m.group("drug"),
                "on_days": _num(float(m.group("on")) * _TIME[m.group("onu").lower()]),
                "off_days": _num(float(m.group("off")) * _TIME[m.group("offu").lower()]),
            }
            _clauses(text, m.group("rest"), spec, allowed=("cycles", "start"))
            return spec
    m = _PERIOD.fullmatch(text.strip())
    if m:
        return {
            "drug": m.group("drug"),
            "on": [_num(float(m.group("a"))), _num(float(m.group("b")))],
        }
    m = _OPEN_PERIOD.fullmatch(text.strip())
    if m:
        return {"drug": m.group("drug"), "on": [_num(float(m.group("a") or 0)), None]}
    m = _DOSE.fullmatch(text.strip())
    if m:
        unit = m.group("unit").lower().replace("µ", "u").replace("μ", "u").partition("/")[0]
        amount = f"{m.group('amount')} {m.group('unit')}"
        if unit in _ACTIVITY:
            spec = {"radiopharmaceutical": m.group("drug"), "activity": amount}
            _clauses(text, m.group("rest"), spec, allowed=("every", "cycles", "start", "once"))
            return spec
        if unit in _MASS:
            spec = {"drug": m.group("drug"), "dose": amount}
            _clauses(text, m.group("rest"), spec)
            return spec
    raise _FieldError("text", f"cannot parse {text!r} (expected e.g. {_TEXT_EXAMPLES})")


def _clauses(
    text: str,
    rest: str,
    spec: dict[str, Any],
    allowed: tuple[str, ...] = ("every", "cycles", "infusion", "start", "once"),
) -> None:
    """Read the options after a text item's amount ("q3w", "x 6", "over 1 h", "from day 7")."""
    while rest.strip(" ,;"):
        rest = rest.strip(" ,;")
        for key, pattern in _DOSE_CLAUSES:
            c = pattern.match(rest) if key in allowed else None
            if c is None:
                continue
            if key in spec:
                raise _FieldError("text", f"{key!r} given twice in {text!r}")
            value = c.group("v")
            if key == "once":
                spec["cycles"] = 1
            elif key == "cycles":
                spec[key] = int(value)
            elif key == "start":
                spec[key] = _num(float(value))
            else:
                spec[key] = value
            rest = rest[c.end() :]
            break
        else:
            raise _FieldError("text", f"cannot parse {rest!r} in {text!r}")


_RULE_SPLIT = re.compile(r"\s*[,;]?\s*(?:then\s+)?off\s+until\s+", re.IGNORECASE)
_STOP_OPS = r"<=|<|≤|\bbelow\b|\bunder\b|\bfalls\s+below\b"
_RESTART_OPS = r">=|>|≥|\babove\b|\bover\b|\bback\s+to\b|\breturns\s+to\b|\breaches\b"


def _rule(agent: str, text: str) -> ThresholdRule:
    """ThresholdRule from "on until PSA < 50% of baseline[, off until PSA >= 100% of baseline]"."""
    parts = _RULE_SPLIT.split(text.strip(), maxsplit=1)
    on = re.fullmatch(
        rf"on\s+until\s+(?P<m>.+?)\s*(?P<op>{_STOP_OPS})\s*(?P<v>.+)", parts[0], re.IGNORECASE
    )
    if not on:
        raise _FieldError(
            "rule",
            f"cannot parse {text!r} (expected e.g. "
            "'on until PSA < 50% of baseline, off until PSA >= 100% of "
            "baseline')",
        )
    marker = _marker(on.group("m"), text)
    stop, relative = _level(on.group("v"), marker, text)
    restart: float | None = None
    if len(parts) == 2:
        off = re.fullmatch(
            rf"(?P<m>.+?)\s*(?P<op>{_RESTART_OPS})\s*(?P<v>.+)", parts[1], re.IGNORECASE
        )
        if not off:
            raise _FieldError(
                "rule", f"cannot parse the restart condition {parts[1]!r} in {text!r}"
            )
        if _marker(off.group("m"), text) != marker:
            raise _FieldError("rule", f"stop and restart follow different markers in {text!r}")
        restart, relative_off = _level(off.group("v"), marker, text)
        if relative_off != relative:
            raise _FieldError("rule", f"mixes levels relative to baseline and absolute in {text!r}")
    try:
        return ThresholdRule(agent, marker, stop, restart, relative)
    except ScheduleError as exc:
        raise _FieldError("rule", f"{exc} in {text!r}") from None


def _marker(name: str, text: str) -> str:
    key = name.strip().lower()
    for kind, label in KIND_LABELS.items():
        if label.lower() == key:
            return kind
    try:
        return canonical_kind(key.replace(" ", "_"))
    except DataError as exc:
        raise _FieldError("rule", f"{exc} in {text!r}") from None


def _level(value: str, marker: str, text: str) -> tuple[float, str]:
    """(level, "baseline" or "absolute") from "50% of baseline", "baseline" or "4 ng/mL"."""
    v = value.strip().lower()
    if v == "baseline":
        return 1.0, "baseline"
    m = re.fullmatch(rf"({_NUM})\s*%\s*(?:of\s+)?(?:the\s+)?(?:baseline)?", v)
    if m:
        return float(m.group(1)) / 100, "baseline"
    m = re.fullmatch(rf"({_NUM})\s*(\S*)", v)
    if not m:
        raise _FieldError("rule", f"cannot read the level {value!r} in {text!r}")
    factor = 1.0
    if m.group(2):
        try:
            _, factor = to_canonical(marker, m.group(2))
        except DataError as exc:
            raise _FieldError("rule", f"{exc} in {text!r}") from None
    return float(m.group(1)) * factor, "absolute"
