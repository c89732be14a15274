"""FHIR R4 interoperability: import a Bundle into the event table; export forecasts as FHIR.

Import (:func:`import_bundle`, :func:`read_bundle`) turns a FHIR Bundle of Patient, Condition,
Observation, MedicationAdministration and Procedure (radiotherapy course) resources into the
canonical event table (:class:`~oncotwin.data.PatientData`), following the mCODE profiles
where they exist (TumorSize, TumorMarkerTest, RadiotherapyCourseSummary). Observations are
recognised by the codes of ``fhir_codes.csv`` (LOINC, or oncotwin's local code system) and
their UCUM units are converted to oncotwin's canonical units. Times become days since each
patient's *time origin*: 00:00 UTC of the day of the patient's first treatment
(MedicationAdministration or radiotherapy course), or of the first observation when the Bundle
holds no treatment for that patient. The origin is kept as the covariate ``time_origin``
(ISO date). Anything invalid or unsupported raises :class:`FhirImportError`, whose
``outcome`` is a FHIR OperationOutcome naming each offending resource and field; nothing is
half-imported.

Export (:mod:`oncotwin.data.fhir_export`, its functions also reachable from here) writes
forecasts and recommendations as FHIR resources that validate with ``fhir.resources``.

Models come from ``fhir.resources.R4B``: fhir.resources 8 ships R5 at its top level and the R4
series (R4B, 4.3.0) under ``R4B``; every element used here is the same in R4 (4.0.1). See
docs/fhir.md.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import units
from ..errors import DataError
from .io import DOSE_UNITS, normalise
from .schema import DOSE, OBSERVATION, PatientData

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
LOCAL_KIND = "urn:oncotwin:observation-kind"
LOCAL_FORECAST = "urn:oncotwin:forecast"
LOCAL_MODEL = "urn:oncotwin:model"
EXT_PROVENANCE = "urn:oncotwin:fhir:provenance"
EXT_SCHEDULE = "urn:oncotwin:fhir:schedule"
EXT_CONSTRAINT = "urn:oncotwin:fhir:constraint"
EXT_INTERVAL = "urn:oncotwin:fhir:probability-interval"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
RT_COURSE_PROFILE = MCODE + "mcode-radiotherapy-course-summary"
RT_SESSIONS = MCODE + "mcode-radiotherapy-sessions"
RT_DOSE_TO_VOLUME = MCODE + "mcode-radiotherapy-dose-delivered-to-volume"
RT_COURSE_CODE = "1217123003"  # SNOMED CT: Radiotherapy course of treatment (regime/therapy)
RT_AGENT = "rt"
MAX_FRACTIONS = 100  # more in one course is a data error (hyperfractionation stays below 80)
CODES_FILE = Path(__file__).with_name("fhir_codes.csv")

# UCUM code (case-sensitive, as UCUM defines it) -> oncotwin's spelling of the unit
UCUM_UNITS: dict[str, str] = {
    "mm": "mm", "cm": "cm", "mm3": "mm3", "cm3": "cm3", "mL": "ml", "uL": "ul",
    "ng/mL": "ng/ml", "ug/L": "ug/l",
    "10*9/L": "10^9/l", "10*3/uL": "10^3/ul", "/uL": "cells/ul", "{cells}/uL": "cells/ul",
    "{copies}/mL": "copies/ml", "{photons}/s": "photons/s", "1": "1",
    "mg": "mg", "g": "g", "ug": "ug", "mg/m2": "mg/m2", "mg/kg": "mg/kg",
    "Gy": "gy", "cGy": "cgy", "GBq": "gbq", "MBq": "mbq",
}  # fmt: skip
# canonical oncotwin unit -> UCUM code, for export
CANONICAL_UCUM: dict[str, str] = {
    "mm3": "mm3", "mm": "mm", "10^9/l": "10*9/L", "ng/ml": "ng/mL", "copies/ml": "{copies}/mL",
    "photons/s": "{photons}/s", "1": "1",
}  # fmt: skip
RATE_TIME = {"h": 24.0, "min": 1440.0, "d": 1.0, "s": 86400.0}  # per-time unit -> per day
SKIPPED_STATUS = {
    "Observation": {"entered-in-error", "cancelled"},
    "MedicationAdministration": {"not-done", "entered-in-error"},
    "Procedure": {"not-done", "entered-in-error", "preparation"},
    "Condition": set(),
}
# resource types that carry no events: ignored (an "information" issue says so)
CONTEXT_TYPES = frozenset({
    "BodyStructure", "Encounter", "Location", "Medication", "Organization", "Practitioner",
    "PractitionerRole", "Provenance", "Specimen",
})  # fmt: skip


# -- the code table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    """One row of ``fhir_codes.csv``: an Observation code oncotwin imports.

    Attributes:
        system, code, display: the coding (LOINC, or oncotwin's local code system).
        kind: canonical observation kind (:data:`oncotwin.units.KINDS`).
        value: where the value is: "value" (Observation.valueQuantity) or
            "component CODE" (the valueQuantity of the component with LOINC code CODE).
        ucum: the usual UCUM unit (used on export).
        source: where the code and its use come from.
    """

    system: str
    code: str
    display: str
    kind: str
    value: str
    ucum: str
    source: str


@functools.cache
def codes() -> tuple[Code, ...]:
    """The Observation codes oncotwin imports, from ``fhir_codes.csv``."""
    with CODES_FILE.open(encoding="utf-8", newline="") as f:
        return tuple(Code(**row) for row in csv.DictReader(f))


def export_code(kind: str) -> Code:
    """The code oncotwin writes for an observed `kind` (first table row with a plain value).

    Raises:
        DataError: no code for this kind.
    """
    for c in codes():
        if c.kind == kind and c.value == "value":
            return c
    raise DataError(f"no FHIR code for observation kind {kind!r} in {CODES_FILE.name}")


# -- OperationOutcome ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome issue.

    Attributes:
        severity: "fatal", "error", "warning" or "information".
        code: FHIR issue type ("structure", "required", "value", "code-invalid",
            "not-supported", "not-found", "duplicate", "invalid", "informational").
        diagnostics: what is wrong, in words (names the resource).
        expression: FHIRPath of the offending element, e.g.
            ``Bundle.entry[3].resource.valueQuantity.code``; None for the file as a whole.
    """

    severity: str
    code: str
    diagnostics: str
    expression: str | None = None


def operation_outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    """A validated FHIR OperationOutcome (JSON dict) of `issues`."""
    from fhir.resources.R4B.operationoutcome import OperationOutcome

    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": i.severity,
                "code": i.code,
                "diagnostics": i.diagnostics,
                **({"expression": [i.expression]} if i.expression else {}),
            }
            for i in issues
        ]
        or [{"severity": "information", "code": "informational", "diagnostics": "no issues"}],
    }
    return _validated(OperationOutcome, body)


class FhirImportError(DataError):
    """A Bundle that cannot be imported; nothing of it was imported.

    Attributes:
        outcome: FHIR OperationOutcome (JSON dict) with one issue per problem found; each
            names the entry (index, resource type and id) and the field (``expression``).
        issues: the same issues as :class:`Issue` objects.
    """

    def __init__(self, issues: Sequence[Issue], *, file: str | None = None) -> None:
        errors = [i for i in issues if i.severity in ("fatal", "error")] or list(issues)
        first = errors[0]
        more = f" (and {len(errors) - 1} more issue(s); see .outcome)" if len(errors) > 1 else ""
        super().__init__(first.diagnostics + more, file=file, column=first.expression)
        # what was merely ignored is not part of the refusal
        self.issues = [i for i in issues if i.severity != "information"]
        self.outcome = operation_outcome(self.issues)


# -- import -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleImport:
    """Result of :func:`import_bundle`.

    Attributes:
        data: the validated event table (one subject per Patient).
        origins: each patient's time origin (day 0), a date (00:00 UTC).
        outcome: FHIR OperationOutcome of what was skipped and why ("information" and
            "warning" issues; "no issues" when everything was imported).
        counts: number of imported resources per resource type.
    """

    data: PatientData
    origins: dict[str, date]
    outcome: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class _Row:
    """One event-table row in the making, with the entry it came from."""

    patient: str
    instant: datetime
    entry: int
    values: dict[str, Any]
    paths: dict[str, str]  # event column -> FHIRPath of the field it came from
    treatment: bool


class _Bundle:
    """Converts one parsed Bundle; collects every issue before raising."""

    def __init__(self, source: str, skip_unsupported: bool) -> None:
        self.source, self.skip = source, skip_unsupported
        self.issues: list[Issue] = []
        self.rows: list[_Row] = []
        self.index: dict[str, tuple[int, Any]] = {}  # fullUrl / "Type/id" -> (entry, model)
        self.models: dict[int, Any] = {}  # entry -> validated resource
        self.patients: dict[str, tuple[int, Any]] = {}  # patient id -> (entry, model)
        self.conditions: dict[str, list[str]] = {}
        self.codes: dict[str, list[str]] = {}
        self.counts: dict[str, int] = {}

    # -- issues --
    def where(self, i: int, res: Any) -> str:
        rid = getattr(res, "id", None) if not isinstance(res, dict) else res.get("id")
        rtype = res.get("resourceType") if isinstance(res, dict) else res.get_resource_type()
        return f"entry {i} ({rtype}/{rid})" if rid else f"entry {i} ({rtype})"

    def error(self, code: str, i: int | None, res: Any, path: str | None, what: str) -> None:
        self.issue("error", code, i, res, path, what)

    def issue(
        self, severity: str, code: str, i: int | None, res: Any, path: str | None, what: str
    ) -> None:
        expr = f"Bundle.entry[{i}].resource" if i is not None else "Bundle"
        if path:
            expr += "." + path
        where = self.where(i, res) if i is not None and res is not None else "Bundle"
        self.issues.append(Issue(severity, code, f"{where}: {what}", expr))

    def unsupported(self, i: int, res: Any, path: str | None, what: str) -> None:
        """An unsupported resource: an error, or a warning and skipped with skip_unsupported."""
        if self.skip:
            self.issue("warning", "not-supported", i, res, path, what + " (skipped)")
        else:
            self.error("not-supported", i, res, path, what)

    @property
    def failed(self) -> bool:
        return any(i.severity in ("fatal", "error") for i in self.issues)

    # -- values --
    def instant(self, i: int, res: Any, path: str, value: Any) -> datetime | None:
        """A FHIR date/dateTime as a UTC datetime (a date is 00:00 UTC); None with an issue."""
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        self.error("value", i, res, path, f"date {value!r} is not precise to the day")
        return None

    def patient_of(self, i: int, res: Any, path: str, ref: Any) -> str | None:
        """The id of the Patient a Reference points to (must be in the Bundle)."""
        text = getattr(ref, "reference", None) if ref is not None else None
        if not text:
            self.error("required", i, res, path, "no reference to the Patient")
            return None
        target = self.resolve(text)
        if target is None or target[1].get_resource_type() != "Patient":
            self.error("not-found", i, res, path + ".reference",
                       f"{text!r} is not a Patient in this Bundle")  # fmt: skip
            return None
        return str(target[1].id)

    def resolve(self, ref: str) -> tuple[int, Any] | None:
        if ref in self.index:
            return self.index[ref]
        m = re.search(r"([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[^/]+)?$", ref)
        return self.index.get(f"{m.group(1)}/{m.group(2)}") if m else None

    def quantity_unit(self, i: int, res: Any, path: str, q: Any, accepted: Mapping[str, Any],
                      what: str) -> str | None:  # fmt: skip
        """oncotwin's spelling of a Quantity's unit if it is one of `accepted` (lower case)."""
        code, system, text = q.code, q.system, q.unit
        if code is not None and system in (None, UCUM):
            spelling = UCUM_UNITS.get(str(code))
            where = path + ".code"
        else:
            spelling = str(text).strip().lower().replace(" ", "") if text else None
            where = path + ".unit"
        if spelling is None and code is None and not text:
            self.error("required", i, res, path, f"{what}: the quantity has no unit")
            return None
        if spelling is None or spelling not in accepted:
            ucum = sorted(u for u, s in UCUM_UNITS.items() if s in accepted)
            self.error(
                "code-invalid", i, res, where,
                f"{what}: unit {code or text!r} cannot be converted; accepted UCUM codes: "
                + ", ".join(ucum),
            )  # fmt: skip
            return None
        return spelling

    def number(self, i: int, res: Any, path: str, value: Any) -> float | None:
        if value is None:
            self.error("required", i, res, path, "missing value")
            return None
        return float(value)

    # -- resources --
    def add(self, patient: str, instant: datetime, i: int, values: dict[str, Any],
            paths: dict[str, str], treatment: bool) -> None:  # fmt: skip
        self.rows.append(_Row(patient, instant, i, values, paths, treatment))

    def patient(self, i: int, res: Any) -> None:
        if not res.id:
            self.error("required", i, res, "id", "a Patient needs an id (the subject id)")
            return
        if res.id in self.patients:
            self.error("duplicate", i, res, "id",
                       f"Patient {res.id!r} appears twice (entry {self.patients[res.id][0]})")  # fmt: skip
            return
        self.patients[str(res.id)] = (i, res)

    def condition(self, i: int, res: Any) -> None:
        pid = self.patient_of(i, res, "subject", res.subject)
        if pid is None:
            return
        status = _codes(res.verificationStatus)
        if {"entered-in-error", "refuted"} & status:
            self.issue("information", "informational", i, res, "verificationStatus",
                       "condition refuted or entered in error: not used")  # fmt: skip
            return
        coding = res.code.coding[0] if res.code is not None and res.code.coding else None
        text = (res.code.text if res.code is not None else None) or (
            coding.display if coding is not None else None
        )
        if coding is None and not text:
            self.error("required", i, res, "code", "a Condition needs a code")
            return
        self.conditions.setdefault(pid, []).append(str(text or getattr(coding, "code", "")))
        if coding is not None and coding.code:
            self.codes.setdefault(pid, []).append(str(coding.code))
        self.counted("Condition")

    def counted(self, rtype: str) -> None:
        self.counts[rtype] = self.counts.get(rtype, 0) + 1

    def observation(self, i: int, res: Any) -> None:
        known = {(c.system, c.code): c for c in codes()}
        codings = res.code.coding or [] if res.code is not None else []
        match = next((known[(c.system, c.code)] for c in codings
                      if (c.system, c.code) in known), None)  # fmt: skip
        if match is None:
            given = ", ".join(f"{c.system}|{c.code}" for c in codings) or "none"
            self.unsupported(i, res, "code",
                             f"no Observation code oncotwin imports (given: {given}; "
                             f"see {CODES_FILE.name})")  # fmt: skip
            return
        if match.kind not in units.KINDS:
            self.unsupported(i, res, "code",
                             f"{match.system}|{match.code} ({match.display}) maps to kind "
                             f"{match.kind!r}, which oncotwin does not model yet")  # fmt: skip
            return
        pid = self.patient_of(i, res, "subject", res.subject)
        when, when_path = _effective(res)
        if when is None:
            self.error("required", i, res, "effective[x]", "missing effective time")
            return
        at = self.instant(i, res, when_path, when)
        if match.value == "value":
            q, q_path = res.valueQuantity, "valueQuantity"
            if q is None and _has_value(res):
                self.error("value", i, res, "value[x]", "the value must be a Quantity")
                return
        else:
            comp = match.value.split()[1]
            pos = next((k for k, c in enumerate(res.component or [])
                        if any(x.code == comp for x in c.code.coding or [])), None)  # fmt: skip
            if pos is None:
                self.error("required", i, res, "component",
                           f"no component {comp} (the {match.display} value, "
                           f"{match.source.split(';')[0]})")  # fmt: skip
                return
            q, q_path = res.component[pos].valueQuantity, f"component[{pos}].valueQuantity"
        if q is None:
            if res.dataAbsentReason is not None:
                self.issue("information", "informational", i, res, "dataAbsentReason",
                           "no value (data absent): not used")  # fmt: skip
                return
            self.error("required", i, res, q_path, "missing value")
            return
        unit = self.quantity_unit(i, res, q_path, q, units.KINDS[match.kind][1],
                                  f"{match.kind} ({match.display})")  # fmt: skip
        value = self.number(i, res, q_path + ".value", q.value)
        cens = 0
        if q.comparator in ("<", "<="):
            cens = 1  # below a limit: the value is the limit (docs/data.md, censoring)
        elif q.comparator is not None:
            self.error("not-supported", i, res, q_path + ".comparator",
                       f"comparator {q.comparator!r}: only '<' and '<=' (below a limit)")  # fmt: skip
        if pid is None or at is None or unit is None or value is None or self.failed:
            return
        self.add(pid, at, i, {
            "evid": OBSERVATION, "dv": value, "kind": match.kind, "unit": unit,
            "cens": cens, "lloq": value if cens else np.nan,
        }, {"time": when_path, "dv": q_path + ".value", "unit": q_path + ".code",
            "kind": "code", "lloq": q_path + ".value"}, treatment=False)  # fmt: skip
        self.counted("Observation")

    def medication(self, i: int, res: Any) -> None:
        pid = self.patient_of(i, res, "subject", res.subject)
        agent = self.agent(i, res)
        start, end, when_path = None, None, "effective[x]"
        if res.effectiveDateTime is not None:
            when_path = "effectiveDateTime"
            start = self.instant(i, res, when_path, res.effectiveDateTime)
        elif res.effectivePeriod is not None and res.effectivePeriod.start is not None:
            when_path = "effectivePeriod.start"
            start = self.instant(i, res, when_path, res.effectivePeriod.start)
            if res.effectivePeriod.end is not None:
                end = self.instant(i, res, "effectivePeriod.end", res.effectivePeriod.end)
        else:
            self.error("required", i, res, "effective[x]", "missing effective time")
        dosage = res.dosage
        if dosage is None or dosage.dose is None:
            self.error("required", i, res, "dosage.dose", "missing dose")
            return
        unit = self.quantity_unit(i, res, "dosage.dose", dosage.dose, DOSE_UNITS, "dose")
        amount = self.number(i, res, "dosage.dose.value", dosage.dose.value)
        dur = 0.0
        if start is not None and end is not None:
            dur = (end - start).total_seconds() / 86400.0
            if dur < 0:
                self.error(
                    "value", i, res, "effectivePeriod.end", "the period ends before it starts"
                )
        rate = np.nan
        if dosage.rateQuantity is not None:
            rate = self.rate(i, res, dosage.rateQuantity, unit)
        if None in (pid, agent, start, unit, amount) or self.failed:
            return
        assert start is not None
        self.add(str(pid), start, i, {
            "evid": DOSE, "amt": amount, "unit": unit, "agent": agent, "dur": dur, "rate": rate,
        }, {"time": when_path, "amt": "dosage.dose.value", "unit": "dosage.dose.code",
            "agent": "medication[x]", "dur": "effectivePeriod", "rate": "dosage.rateQuantity"},
            treatment=True)  # fmt: skip
        self.counted("MedicationAdministration")

    def agent(self, i: int, res: Any) -> str | None:
        concept, path = res.medicationCodeableConcept, "medicationCodeableConcept"
        if concept is None and res.medicationReference is not None:
            path = "medicationReference"
            target = self.resolve(str(res.medicationReference.reference or ""))
            if target is None or target[1].get_resource_type() != "Medication":
                self.error("not-found", i, res, path + ".reference",
                           f"{res.medicationReference.reference!r} is not a Medication in this "
                           "Bundle")  # fmt: skip
                return None
            concept = target[1].code
        name = None
        if concept is not None:
            coding = concept.coding[0] if concept.coding else None
            name = concept.text or (coding.display or coding.code if coding else None)
        if not name:
            self.error("required", i, res, path, "the medication has no name or code")
            return None
        return str(name).strip().lower()

    def rate(self, i: int, res: Any, q: Any, dose_unit: str | None) -> float:
        """Infusion rate in dose units per day, from a UCUM rate such as mg/h."""
        code = str(q.code or q.unit or "")
        amount, _, per = code.rpartition("/")
        ok = dose_unit is not None and UCUM_UNITS.get(amount) == dose_unit and per in RATE_TIME
        if not ok or q.value is None:
            self.error("code-invalid", i, res, "dosage.rateQuantity",
                       f"rate {q.value} {code!r}: expected the dose unit per h, min, s or d")  # fmt: skip
            return np.nan
        return float(q.value) * RATE_TIME[per]

    def procedure(self, i: int, res: Any) -> None:
        profiles = {str(p) for p in (res.meta.profile or [])} if res.meta is not None else set()
        is_rt = RT_COURSE_PROFILE in profiles or any(
            c.system == SNOMED and c.code == RT_COURSE_CODE
            for c in (res.code.coding or [] if res.code is not None else [])
        )
        if not is_rt:
            self.unsupported(i, res, "code",
                             "only radiotherapy courses are imported (mCODE "
                             f"RadiotherapyCourseSummary, SNOMED {RT_COURSE_CODE})")  # fmt: skip
            return
        pid = self.patient_of(i, res, "subject", res.subject)
        start = end = None
        when_path = "performed[x]"
        if res.performedPeriod is not None and res.performedPeriod.start is not None:
            when_path = "performedPeriod.start"
            start = self.instant(i, res, when_path, res.performedPeriod.start)
            if res.performedPeriod.end is not None:
                end = self.instant(i, res, "performedPeriod.end", res.performedPeriod.end)
        elif res.performedDateTime is not None:
            when_path = "performedDateTime"
            start = self.instant(i, res, when_path, res.performedDateTime)
        else:
            self.error("required", i, res, "performed[x]", "missing performed time")
        exts = [(k, e) for k, e in enumerate(res.extension or []) if e.url == RT_DOSE_TO_VOLUME]
        sessions = next((e.valueUnsignedInt for e in res.extension or [] if e.url == RT_SESSIONS),
                        None)  # fmt: skip
        if not exts:
            self.error("required", i, res, "extension",
                       f"no {RT_DOSE_TO_VOLUME} extension (the total dose delivered)")  # fmt: skip
            return
        if len(exts) > 1:
            self.error("not-supported", i, res, f"extension[{exts[1][0]}]",
                       "doses to several volumes: oncotwin models one tumour; send one course "
                       "per treated volume")  # fmt: skip
            return
        k, ext = exts[0]
        path = f"extension[{k}]"
        parts = {e.url: (j, e) for j, e in enumerate(ext.extension or [])}
        if (
            "totalDoseDelivered" not in parts
            or parts["totalDoseDelivered"][1].valueQuantity is None
        ):
            self.error("required", i, res, path, "no totalDoseDelivered (a Quantity in Gy or cGy)")
            return
        j, total_ext = parts["totalDoseDelivered"]
        q_path = f"{path}.extension[{j}].valueQuantity"
        q = total_ext.valueQuantity
        unit = self.quantity_unit(i, res, q_path, q, {"gy": 1, "cgy": 1}, "radiotherapy dose")
        total = self.number(i, res, q_path + ".value", q.value)
        fractions = parts["fractionsDelivered"][1].valueUnsignedInt if (
            "fractionsDelivered" in parts) else sessions  # fmt: skip
        if fractions is None:
            self.error("required", i, res, path,
                       "the number of fractions is missing (fractionsDelivered, or the "
                       f"{RT_SESSIONS} extension)")  # fmt: skip
            return
        if not 1 <= int(fractions) <= MAX_FRACTIONS:
            self.error("value", i, res, path,
                       f"{fractions} fractions: expected 1 to {MAX_FRACTIONS}")  # fmt: skip
            return
        if None in (pid, start, unit, total) or self.failed:
            return
        assert start is not None and total is not None
        n = int(fractions)
        for t in fraction_times(start, n, end):
            self.add(str(pid), t, i, {
                "evid": DOSE, "amt": total / n, "unit": unit, "agent": RT_AGENT, "dur": 0.0,
                "rate": np.nan,
            }, {"time": when_path, "amt": q_path + ".value", "unit": q_path + ".code"},
                treatment=True)  # fmt: skip
        self.counted("Procedure")


def fraction_times(start: datetime, n: int, end: datetime | None = None) -> list[datetime]:
    """When the `n` fractions of a radiotherapy course were given.

    The first at `start`, then one per weekday (Monday to Friday: conventional fractionation)
    at the same time of day. When the course's `end` is known and that schedule does not end
    on the same day, the fractions are spread evenly from `start` to `end` instead (e.g. two
    or three fractions a week, or a course with breaks).

    Args:
        start: first fraction (UTC).
        n: number of fractions (>= 1).
        end: last day of the course (UTC), if known.
    """
    days, t = [start], start + timedelta(days=1)
    while len(days) < n:
        if t.weekday() < 5:
            days.append(t)
        t += timedelta(days=1)
    if end is None or n == 1 or days[-1].date() == end.date():
        return days
    step = (end - start) / (n - 1)
    return [start + k * step for k in range(n)]


def _codes(concept: Any) -> set[str]:
    return {str(c.code) for c in (concept.coding or [])} if concept is not None else set()


def _effective(res: Any) -> tuple[Any, str]:
    for name in ("effectiveDateTime", "effectiveInstant"):
        if getattr(res, name, None) is not None:
            return getattr(res, name), name
    if res.effectivePeriod is not None and res.effectivePeriod.start is not None:
        return res.effectivePeriod.start, "effectivePeriod.start"
    return None, "effective[x]"


def _has_value(res: Any) -> bool:
    return any(
        getattr(res, f, None) is not None for f in type(res).model_fields if f.startswith("value")
    )


def _loc(loc: Sequence[Any]) -> str:
    """FHIRPath of a pydantic error location: ('component', 0, 'code') -> component[0].code."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part).removesuffix("__ext")
    return out


def _parse(bundle: Any, source: str) -> dict[str, Any]:
    """The Bundle as a JSON dict, from a dict, JSON text/bytes or a path."""
    if isinstance(bundle, Mapping):
        return dict(bundle)
    if isinstance(bundle, os.PathLike) or (isinstance(bundle, str) and not bundle.lstrip()
                                           .startswith("{")):  # fmt: skip
        try:
            text = Path(bundle).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise FhirImportError(
                [Issue("fatal", "exception", f"cannot read the file: {e}")], file=source
            ) from None
    else:
        text = bundle.decode("utf-8-sig") if isinstance(bundle, bytes) else str(bundle)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise FhirImportError(
            [Issue("fatal", "structure",
                   f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})")],
            file=source,
        ) from None  # fmt: skip
    if not isinstance(obj, dict):
        raise FhirImportError(
            [Issue("fatal", "structure", "not a FHIR resource (a JSON object is expected)")],
            file=source,
        )
    return obj


def import_bundle(
    bundle: Any,
    *,
    source: str | None = None,
    origins: Mapping[str, date | str] | None = None,
    skip_unsupported: bool = False,
) -> BundleImport:
    """Import a FHIR R4 Bundle (collection, transaction, searchset, ...) as an event table.

    Patients become subjects (their resource id is the subject id, with covariates ``sex``,
    ``age`` (whole years at the time origin), ``condition``, ``condition_code`` and
    ``time_origin``); Observations with a code of ``fhir_codes.csv`` become observations in
    canonical units (a ``<`` comparator marks a value below a limit: left-censored);
    MedicationAdministrations become doses (amount and unit from ``dosage.dose``, infusion
    duration from ``effectivePeriod`` or rate from ``dosage.rateQuantity``, agent from the
    medication's text/display, lower case); radiotherapy courses (mCODE
    RadiotherapyCourseSummary) become one dose per fraction of agent ``"rt"`` in Gy (see
    :func:`fraction_times`). Conditions become covariates. BodyStructure, Encounter,
    Medication, Organization, Practitioner and similar context resources are ignored.

    Args:
        bundle: a Bundle as a dict, JSON text or bytes, or a path to a JSON file.
        source: name used in messages and kept as ``data.source`` (default: the path, or
            "<bundle>").
        origins: day 0 of some patients (date or ISO date), e.g. the stored ``time_origin``
            when a Bundle adds data to a patient already imported; others follow the rule
            (day of the first treatment, else of the first observation).
        skip_unsupported: skip resources oncotwin cannot use (unknown Observation codes,
            non-radiotherapy Procedures, other resource types) with a warning instead of
            rejecting the Bundle. Invalid resources are always rejected.

    Returns:
        :class:`BundleImport`: the data, each patient's origin, and an OperationOutcome of
        what was skipped.

    Raises:
        FhirImportError: the Bundle is not valid JSON, not a Bundle, or has invalid or
            unsupported resources; its ``outcome`` lists every problem, each naming the entry
            (index, resource type and id) and the field. Nothing is imported.
    """
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    if source is None:
        source = str(bundle) if isinstance(bundle, (str, os.PathLike)) and not str(
            bundle).lstrip().startswith("{") else "<bundle>"  # fmt: skip
    raw = _parse(bundle, source)
    if raw.get("resourceType") != "Bundle":
        rtype = raw.get("resourceType")
        raise FhirImportError(
            [Issue("fatal", "invalid",
                   f"expected a Bundle, got {'a ' + str(rtype) if rtype else 'no resourceType'}",
                   "resourceType")],
            file=source,
        )  # fmt: skip
    conv = _Bundle(source, skip_unsupported)
    Bundle = get_fhir_model_class("Bundle")
    entries = raw.get("entry") or []
    try:
        Bundle.model_validate({**raw, "entry": []})
    except ValidationError as e:
        for err in e.errors():
            expr = "Bundle." + _loc(err["loc"]) if err["loc"] else "Bundle"
            conv.issues.append(Issue("error", _pydantic_code(err), f"Bundle: {err['msg']}", expr))
    if not isinstance(entries, list):
        conv.error("structure", None, None, "entry", "entry must be a list")
        entries = []
    models: list[tuple[int, Any]] = []
    for i, entry in enumerate(entries):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict):
            conv.issues.append(Issue("error", "required", f"entry {i}: no resource",
                                     f"Bundle.entry[{i}].resource"))  # fmt: skip
            continue
        rtype = res.get("resourceType")
        try:
            cls = get_fhir_model_class(str(rtype))
        except (ValueError, KeyError):
            conv.error("invalid", i, res, "resourceType", f"unknown resource type {rtype!r}")
            continue
        try:
            parsed = cls.model_validate(res)
        except ValidationError as e:
            for err in e.errors():
                conv.error(_pydantic_code(err), i, res, _loc(err["loc"]), err["msg"])
            continue
        model: Any = parsed
        models.append((i, model))
        conv.models[i] = model
        keys = [f"{rtype}/{model.id}"] if getattr(model, "id", None) else []
        if isinstance(entry.get("fullUrl"), str):
            keys.append(entry["fullUrl"])
        for key in keys:
            conv.index.setdefault(key, (i, model))
    for i, model in models:
        if model.get_resource_type() == "Patient":
            conv.patient(i, model)
    for i, model in models:
        rtype = model.get_resource_type()
        status = getattr(model, "status", None)
        if rtype in SKIPPED_STATUS and status in SKIPPED_STATUS[rtype]:
            conv.issue("information", "informational", i, model, "status",
                       f"status {status}: not imported")  # fmt: skip
        elif rtype == "Patient":
            continue
        elif rtype == "Condition":
            conv.condition(i, model)
        elif rtype == "Observation":
            conv.observation(i, model)
        elif rtype == "MedicationAdministration":
            conv.medication(i, model)
        elif rtype == "Procedure":
            conv.procedure(i, model)
        elif rtype in CONTEXT_TYPES:
            conv.issue("information", "informational", i, model, None,
                       f"{rtype}: context only, no events of its own")  # fmt: skip
        else:
            conv.unsupported(i, model, None, f"resource type {rtype} is not imported")
    if not conv.patients and not conv.failed:
        conv.error("required", None, None, "entry", "the Bundle has no Patient")
    seen = {r.patient for r in conv.rows if r.values["evid"] == OBSERVATION}
    for pid, (i, res) in conv.patients.items():
        if pid not in seen and not conv.failed:
            conv.unsupported(i, res, None, f"Patient {pid!r} has no Observation oncotwin can use")
    if conv.failed:
        raise FhirImportError(conv.issues, file=source)
    keep = [pid for pid in conv.patients if pid in seen]
    origin = _origins(conv, keep, origins, source)
    frame = _frame(conv, keep, origin)
    lines = pd.RangeIndex(2, len(frame) + 2).to_numpy()
    try:
        events = normalise(frame.drop(columns=["_entry"]), lines, source=source)
    except DataError as e:
        raise _mapped(e, conv, frame, source) from None
    counts = {"Patient": len(keep), **conv.counts}
    return BundleImport(
        PatientData._trusted(events, source), origin, operation_outcome(conv.issues), counts
    )


def _pydantic_code(err: Mapping[str, Any]) -> str:
    kind = str(err.get("type", ""))
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "structure"
    return "value"


def _origins(
    conv: _Bundle, ids: list[str], given: Mapping[str, date | str] | None, source: str
) -> dict[str, date]:
    """Day 0 of each patient: given, else the day of the first treatment, else observation."""
    out: dict[str, date] = {}
    for pid in ids:
        if given is not None and pid in given:
            g = given[pid]
            try:
                out[pid] = g if isinstance(g, date) else date.fromisoformat(str(g)[:10])
            except ValueError:
                raise DataError(
                    f"origin of {pid!r} is not an ISO date: {g!r}", file=source
                ) from None
            continue
        rows = [r for r in conv.rows if r.patient == pid]
        treated = [r.instant for r in rows if r.treatment]
        out[pid] = min(treated or [r.instant for r in rows]).date()
    return out


def _frame(conv: _Bundle, ids: list[str], origin: Mapping[str, date]) -> pd.DataFrame:
    """The raw event table (one row per event, bundle order) with covariates and entry index."""
    records = []
    for r in conv.rows:
        if r.patient not in origin:
            continue
        o = datetime.combine(origin[r.patient], datetime.min.time(), tzinfo=UTC)
        records.append({
            "id": r.patient, "time": (r.instant - o).total_seconds() / 86400.0,
            "evid": r.values["evid"], "dv": r.values.get("dv", np.nan),
            "kind": r.values.get("kind", ""), "unit": r.values["unit"],
            "amt": r.values.get("amt", np.nan), "agent": r.values.get("agent", ""),
            "rate": r.values.get("rate", np.nan), "dur": r.values.get("dur", np.nan),
            "lloq": r.values.get("lloq", np.nan), "cens": r.values.get("cens", 0),
            "_entry": r.entry,
        })  # fmt: skip
    frame = pd.DataFrame.from_records(records)
    covs = {pid: _covariates(conv, pid, origin[pid]) for pid in ids}
    for name in ("sex", "age", "condition", "condition_code", "time_origin"):
        values = [covs[pid][name] for pid in frame["id"]]
        if any(v is not None for v in values):  # an empty column would blank a stored value
            frame[name] = pd.Series(values, dtype=object)
    return frame


def _covariates(conv: _Bundle, pid: str, origin: date) -> dict[str, Any]:
    _, p = conv.patients[pid]
    age = None
    if isinstance(p.birthDate, date):
        b = p.birthDate
        age = str(origin.year - b.year - ((origin.month, origin.day) < (b.month, b.day)))
    return {
        "sex": p.gender,
        "age": age,
        "condition": "; ".join(conv.conditions.get(pid, [])) or None,
        "condition_code": "; ".join(conv.codes.get(pid, [])) or None,
        "time_origin": origin.isoformat(),
    }


def _mapped(e: DataError, conv: _Bundle, frame: pd.DataFrame, source: str) -> FhirImportError:
    """The event-table check's error, told as an issue on the entry and field it came from."""
    pos = (e.row - 2) if e.row is not None and e.row >= 2 else None
    if pos is None or pos >= len(frame):
        return FhirImportError([Issue("error", "invalid", e.reason, "Bundle")], file=source)
    i = int(frame["_entry"].iloc[pos])
    row = next(r for r in conv.rows if r.entry == i)
    col = (e.column or "").lower()
    path = row.paths.get(col)
    code = "duplicate" if e.reason.startswith("duplicated") else "value"
    conv.issues = []
    conv.error(code, i, conv.models[i], path, e.reason)
    return FhirImportError(conv.issues, file=source)


def read_bundle(path: str | os.PathLike[str], **kwargs: Any) -> PatientData:
    """The event table of a FHIR Bundle JSON file (see :func:`import_bundle` for `kwargs`).

    Raises:
        FhirImportError: the file cannot be imported (nothing is).
    """
    return import_bundle(Path(path), source=str(path), **kwargs).data


def time_origin(events: pd.DataFrame) -> date | None:
    """Day 0 of a subject imported from FHIR: its ``time_origin`` covariate, or None.

    Args:
        events: the subject's event table (e.g. ``Store.events(patient_id)``).
    """
    if "time_origin" not in events.columns:
        return None
    values = events["time_origin"].dropna().astype(str)
    return date.fromisoformat(values.iloc[0][:10]) if len(values) else None


def is_bundle_file(path: str | os.PathLike[str]) -> bool:
    """True for a JSON file (by extension, or content starting with "{"): read it as FHIR."""
    p = Path(path)
    if p.suffix.lower() == ".json":
        return True
    try:
        with p.open("rb") as f:
            head = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return False
    return head.startswith(b"{")


def _validated(cls: Any, body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` checked by its fhir.resources model, back as a JSON dict."""
    return json.loads(cls.model_validate(body).model_dump_json())


_EXPORTS = ("forecast_from_fhir", "forecast_to_fhir", "recommendation_from_fhir",
            "recommendation_to_fhir")  # fmt: skip


def __getattr__(name: str) -> Any:
    """The export functions live in :mod:`oncotwin.data.fhir_export`; reachable from here too."""
    if name in _EXPORTS:
        from . import fhir_export

        return getattr(fhir_export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BundleImport",
    "Code",
    "FhirImportError",
    "Issue",
    "codes",
    "export_code",
    "fraction_times",
    "import_bundle",
    "is_bundle_file",
    "operation_outcome",
    "read_bundle",
    "time_origin",
]
