"""FHIR R4 export: forecasts and recommendations as FHIR resources that fhir.resources validates.

:func:`forecast_to_fhir` writes a :class:`oncotwin.twin.Forecast` as a Bundle of one
RiskAssessment and one Observation per forecast time; :func:`recommendation_to_fhir` writes a
treatment recommendation as a RiskAssessment. The matching ``*_from_fhir`` functions validate
a resource and read its numbers back. This module only needs what a forecast *has* (see
:class:`ForecastLike`), so it does not import the twin layer. See docs/fhir.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .. import units
from ..errors import DataError
from .fhir import (
    CANONICAL_UCUM,
    DATA_ABSENT,
    EXT_CONSTRAINT,
    EXT_INTERVAL,
    EXT_PROVENANCE,
    EXT_SCHEDULE,
    LOCAL_FORECAST,
    LOCAL_MODEL,
    UCUM,
    FhirImportError,
    Issue,
    _loc,
    _parse,
    _pydantic_code,
    _validated,
    codes,
    export_code,
)


class ForecastLike(Protocol):
    """What :func:`forecast_to_fhir` needs of a :class:`oncotwin.twin.Forecast`."""

    # Read-only (properties), as on the frozen Forecast dataclass.
    @property
    def subject(self) -> str: ...
    @property
    def times(self) -> np.ndarray: ...
    @property
    def kind(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def warning(self) -> str | None: ...
    @property
    def provenance(self) -> dict[str, Any]: ...
    @property
    def median(self) -> np.ndarray: ...

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]: ...


def _quantity(value: float, unit: str) -> dict[str, Any]:
    ucum = CANONICAL_UCUM.get(unit, unit)
    return {"value": float(value), "unit": unit, "system": UCUM, "code": ucum}


def _valued(value: float, unit: str) -> dict[str, Any]:
    """valueQuantity, or a data-absent reason for NaN (FHIR decimals cannot be NaN)."""
    if math.isfinite(value):
        return {"valueQuantity": _quantity(value, unit)}
    return {"dataAbsentReason": {"coding": [{"system": DATA_ABSENT, "code": "not-a-number"}]}}


def _method(provenance: Mapping[str, Any]) -> dict[str, Any]:
    models = provenance.get("models") or {}
    names = list(models) if isinstance(models, Mapping) else [str(models)]
    how = provenance.get("method", "?")
    text = (
        " + ".join(f"{m} ({float(w):.0%})" for m, w in models.items())
        if isinstance(models, Mapping) and len(models) > 1
        else (names[0] if names else "model")
    )
    return {
        "coding": [{"system": LOCAL_MODEL, "code": m, "display": f"oncotwin model {m}"}
                   for m in names],
        "text": f"{text}, {how} calibration (oncotwin {provenance.get('oncotwin_version', '?')})",
    }  # fmt: skip


def _json_ext(url: str, value: Any) -> dict[str, Any]:
    return {"url": url, "valueString": json.dumps(value, sort_keys=True, default=_plain)}


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _uuid(*parts: Any) -> str:
    return "urn:uuid:" + str(
        uuid.uuid5(uuid.NAMESPACE_URL, "oncotwin:" + "|".join(map(str, parts)))
    )


def _datetime(origin: date | None, days: float) -> str | None:
    if origin is None:
        return None
    t = datetime.combine(origin, datetime.min.time(), tzinfo=UTC) + timedelta(days=float(days))
    return t.isoformat().replace("+00:00", "Z")


def forecast_to_fhir(
    forecast: ForecastLike,
    *,
    origin: date | str | None = None,
    levels: Sequence[float] = (0.5, 0.9),
    schedule_name: str | None = None,
    patient_reference: str | None = None,
) -> dict[str, Any]:
    """A forecast as a FHIR Bundle (type "collection") that validates with fhir.resources.

    The Bundle holds one RiskAssessment (the model as ``method``, status "preliminary" when
    the calibration did not converge, the provenance and schedule as extensions, the warning
    as a note, ``basis`` pointing at the forecast Observations) and one Observation per
    forecast time: code of the observed kind (``fhir_codes.csv``), category "forecast" of
    oncotwin's code system, status "preliminary" (a prediction, not a measurement), the
    predictive median as ``valueQuantity``, and components for the time (days since the
    origin) and each interval's bounds (``lower-90``, ``upper-90``, ...).

    Args:
        forecast: a :class:`oncotwin.twin.Forecast`.
        origin: the patient's day 0 (the ``time_origin`` covariate); when given each
            Observation also has an ``effectiveDateTime``.
        levels: central prediction-interval levels (0-1).
        schedule_name: name of the treatment plan the forecast assumes.
        patient_reference: reference of the subject (default ``Patient/<subject id>``).

    Returns:
        the Bundle as a JSON dict.
    """
    from fhir.resources.R4B.bundle import Bundle

    day0 = date.fromisoformat(str(origin)[:10]) if origin is not None else None
    subject = {"reference": patient_reference or f"Patient/{forecast.subject}"}
    kind_code = export_code(forecast.kind)
    method = _method(forecast.provenance)
    median = np.asarray(forecast.median, float)
    bounds = {lv: tuple(np.asarray(b, float) for b in forecast.interval(lv)) for lv in levels}
    # fullUrls from the content: the same forecast gives the same Bundle, another one new urls
    content = hashlib.sha256(np.asarray(forecast.times, float).tobytes() + median.tobytes())
    for lo, hi in bounds.values():
        content.update(lo.tobytes() + hi.tobytes())
    key = (forecast.subject, schedule_name, content.hexdigest(),
           json.dumps(forecast.provenance, sort_keys=True, default=_plain))  # fmt: skip
    obs_urls, entries = [], []
    for k, t in enumerate(np.asarray(forecast.times, float)):
        url = _uuid(*key, k, repr(float(t)))
        components = [{
            "code": {"coding": [{"system": LOCAL_FORECAST, "code": "time",
                                 "display": "days since the time origin"}]},
            "valueQuantity": {"value": float(t), "unit": "d", "system": UCUM, "code": "d"},
        }]  # fmt: skip
        for lv, (lo, hi) in bounds.items():
            pct = round(lv * 100)
            for side, arr in (("lower", lo), ("upper", hi)):
                components.append({
                    "code": {"coding": [{"system": LOCAL_FORECAST, "code": f"{side}-{pct}",
                                         "display": f"{side} bound of the {pct}% prediction "
                                                    "interval"}]},
                    **_valued(float(arr[k]), forecast.unit),
                })  # fmt: skip
        effective = _datetime(day0, float(t))
        obs = {
            "resourceType": "Observation",
            "status": "preliminary",
            "category": [{"coding": [{"system": LOCAL_FORECAST, "code": "forecast",
                                      "display": "model forecast (not a measurement)"}]}],
            "code": {"coding": [{"system": kind_code.system, "code": kind_code.code,
                                 "display": kind_code.display}],
                     "text": f"forecast of {units.KIND_LABELS.get(forecast.kind, forecast.kind)}"},
            "subject": subject,
            **({"effectiveDateTime": effective} if effective else {}),
            **_valued(float(median[k]), forecast.unit),
            "method": method,
            "component": components,
        }  # fmt: skip
        obs_urls.append(url)
        entries.append({"fullUrl": url, "resource": obs})
    converged = bool(forecast.provenance.get("converged", forecast.warning is None))
    notes = [{"text": f"WARNING: {forecast.warning}"}] if forecast.warning else []
    last = len(median) - 1
    lv_max = max(levels) if levels else None
    summary = f"median {median[last]:.4g} {forecast.unit} at day {float(forecast.times[last]):g}"
    if lv_max is not None:
        lo, hi = bounds[lv_max]
        summary += f" ({round(lv_max * 100)}% interval {lo[last]:.4g} to {hi[last]:.4g})"
    schedule = getattr(forecast, "schedule", None)
    risk = {
        "resourceType": "RiskAssessment",
        "extension": [
            _json_ext(EXT_PROVENANCE, forecast.provenance),
            *([_json_ext(EXT_SCHEDULE, {"name": schedule_name, **schedule.to_dict()})]
              if schedule is not None and hasattr(schedule, "to_dict") else []),
        ],
        "status": "final" if converged else "preliminary",
        "code": {"coding": [{"system": LOCAL_FORECAST, "code": "tumour-forecast",
                             "display": "posterior-predictive forecast"}],
                 "text": f"forecast under {schedule_name or 'the recorded schedule'}"},
        "subject": subject,
        "method": method,
        "basis": [{"reference": u} for u in obs_urls],
        "prediction": [{
            "outcome": {"text": f"{units.KIND_LABELS.get(forecast.kind, forecast.kind)}: "
                                + summary},
            **({"whenPeriod": {"end": _datetime(day0, float(forecast.times[last]))}}
               if day0 else {}),
        }],
        "note": notes,
    }  # fmt: skip
    if not notes:
        del risk["note"]
    entries.insert(0, {"fullUrl": _uuid(*key, "risk"), "resource": risk})
    return _validated(Bundle, {"resourceType": "Bundle", "type": "collection", "entry": entries})


def forecast_from_fhir(bundle: Mapping[str, Any] | str) -> dict[str, Any]:
    """The numbers of a :func:`forecast_to_fhir` Bundle (dict or JSON text), validated first.

    Returns:
        {"subject", "kind", "unit", "frame" (DataFrame: time, median, lo_50, hi_50, ...),
        "provenance", "warning", "status", "method"}.

    Raises:
        FhirImportError: not a valid forecast Bundle.
    """
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    raw = _parse(bundle, "<forecast bundle>")
    try:
        b: Any = Bundle.model_validate(raw)
    except ValidationError as e:
        issues = [Issue("error", _pydantic_code(x), x["msg"], "Bundle." + _loc(x["loc"]))
                  for x in e.errors()]  # fmt: skip
        raise FhirImportError(issues, file="<forecast bundle>") from None
    risk = next((e.resource for e in b.entry or []
                 if e.resource.get_resource_type() == "RiskAssessment"), None)  # fmt: skip
    if risk is None:
        raise FhirImportError([Issue("error", "required", "no RiskAssessment", "Bundle.entry")])
    by_url = {e.fullUrl: e.resource for e in b.entry or []}
    kinds = {(c.system, c.code): c.kind for c in codes()}
    rows, kind, unit = [], None, None
    for ref in risk.basis or []:
        obs = by_url[ref.reference]
        coding = obs.code.coding[0]
        kind = kinds.get((coding.system, coding.code), kind)
        comps = {c.code.coding[0].code: c for c in obs.component or []}
        row = {"time": float(comps["time"].valueQuantity.value),
               "median": _number(obs.valueQuantity)}  # fmt: skip
        for name, c in comps.items():
            if name != "time":
                side, pct = name.split("-")
                row[f"{'lo' if side == 'lower' else 'hi'}_{pct}"] = _number(c.valueQuantity)
        if obs.valueQuantity is not None:
            unit = obs.valueQuantity.unit
        rows.append(row)
    ext = {e.url: e.valueString for e in risk.extension or []}
    note = next((n.text for n in risk.note or [] if n.text.startswith("WARNING: ")), None)
    return {
        "subject": str(risk.subject.reference).removeprefix("Patient/"),
        "kind": kind,
        "unit": unit,
        "frame": pd.DataFrame(rows),
        "provenance": json.loads(ext[EXT_PROVENANCE]) if EXT_PROVENANCE in ext else {},
        "schedule": json.loads(ext[EXT_SCHEDULE]) if EXT_SCHEDULE in ext else None,
        "warning": note.removeprefix("WARNING: ") if note else None,
        "status": risk.status,
        "method": [c.code for c in risk.method.coding or []] if risk.method else [],
    }


def _number(q: Any) -> float:
    return float(q.value) if q is not None and q.value is not None else float("nan")


def recommendation_to_fhir(
    recommendation: Any,
    *,
    origin: date | str | None = None,
    patient_reference: str | None = None,
) -> dict[str, Any]:
    """A treatment recommendation as a FHIR RiskAssessment that validates with fhir.resources.

    Args:
        recommendation: a mapping (or dataclass) with ``patient`` (subject id),
            ``schedule_name`` (the recommended plan), optionally ``schedule`` (a schedule
            dict), ``risks`` (list of {``outcome``: text, ``probability``: 0-1, optional
            ``lo``/``hi``: its credible interval, ``when``: days since the origin}),
            ``constraints`` (list of {``name``, ``value``, ``limit``, ``margin``, ``unit``}),
            ``provenance`` (model(s), method, seeds, data version, ...), ``warning``.
        origin: the patient's day 0 (``time_origin``); turns ``when`` into a date.
        patient_reference: reference of the subject (default ``Patient/<patient>``).

    Returns:
        the RiskAssessment as a JSON dict: ``mitigation`` names the recommended schedule,
        one ``prediction`` per risk (``probabilityDecimal``, interval as an extension),
        constraint margins as extensions, provenance as an extension, the model as
        ``method``, status "preliminary" with a warning note when the calibration behind it
        did not converge.

    Raises:
        DataError: a probability outside [0, 1] or a missing field.
    """
    from fhir.resources.R4B.riskassessment import RiskAssessment

    rec: dict[str, Any]
    if dataclasses.is_dataclass(recommendation) and not isinstance(recommendation, type):
        rec = dataclasses.asdict(recommendation)
    else:
        rec = dict(recommendation)
    day0 = date.fromisoformat(str(origin)[:10]) if origin is not None else None
    try:
        patient = str(rec["patient"])
        name = str(rec["schedule_name"])
    except KeyError as e:
        raise DataError(f"recommendation has no {e.args[0]!r}") from None
    provenance = dict(rec.get("provenance") or {})
    predictions = []
    for k, r in enumerate(rec.get("risks") or []):
        p = float(r["probability"])
        if not 0.0 <= p <= 1.0:
            raise DataError(f"risks[{k}]: probability {p} is outside [0, 1]")
        pred: dict[str, Any] = {"outcome": {"text": str(r["outcome"])}, "probabilityDecimal": p}
        if r.get("lo") is not None and r.get("hi") is not None:
            pred["extension"] = [{"url": EXT_INTERVAL, "valueRange": {
                "low": {"value": float(r["lo"])}, "high": {"value": float(r["hi"])}}}]  # fmt: skip
            pred["rationale"] = (f"probability {p:.3g}, credible interval "
                                 f"{float(r['lo']):.3g} to {float(r['hi']):.3g}")  # fmt: skip
        if r.get("when") is not None:
            when = float(r["when"])
            pred["whenRange"] = {"high": {"value": when, "unit": "d", "system": UCUM, "code": "d"}}
            if day0 is not None:
                pred["whenPeriod"] = {"end": _datetime(day0, when)}
                del pred["whenRange"]
                pred.setdefault("extension", []).append(
                    {"url": EXT_INTERVAL + "-when", "valueDecimal": when}
                )
        predictions.append(pred)
    constraints = [{
        "url": EXT_CONSTRAINT,
        "extension": [{"url": "name", "valueString": str(c["name"])}]
        + [{"url": key, "valueDecimal": float(c[key])} for key in ("value", "limit", "margin")
           if c.get(key) is not None and math.isfinite(float(c[key]))]
        + ([{"url": "unit", "valueString": str(c["unit"])}] if c.get("unit") else []),
    } for c in rec.get("constraints") or []]  # fmt: skip
    warning = rec.get("warning")
    converged = bool(provenance.get("converged", warning is None)) and not warning
    body = {
        "resourceType": "RiskAssessment",
        "extension": [
            _json_ext(EXT_PROVENANCE, provenance),
            *([_json_ext(EXT_SCHEDULE, {"name": name, **dict(rec["schedule"])})]
              if rec.get("schedule") else []),
            *constraints,
        ],
        "status": "final" if converged else "preliminary",
        "code": {"coding": [{"system": LOCAL_FORECAST, "code": "treatment-recommendation",
                             "display": "model-based treatment recommendation"}]},
        "subject": {"reference": patient_reference or f"Patient/{patient}"},
        "method": _method(provenance),
        "prediction": predictions,
        "mitigation": f"recommended schedule: {name}",
        **({"note": [{"text": f"WARNING: {warning}"}]} if warning else {}),
    }  # fmt: skip
    if not predictions:
        del body["prediction"]
    return _validated(RiskAssessment, body)


def recommendation_from_fhir(resource: Mapping[str, Any] | str) -> dict[str, Any]:
    """The numbers of a :func:`recommendation_to_fhir` RiskAssessment (validated first)."""
    from fhir.resources.R4B.riskassessment import RiskAssessment

    ra: Any = RiskAssessment.model_validate(_parse(resource, "<recommendation>"))
    risks = []
    for p in ra.prediction or []:
        exts = {e.url: e for e in p.extension or []}
        r: dict[str, Any] = {"outcome": p.outcome.text, "probability": float(p.probabilityDecimal)}
        if EXT_INTERVAL in exts:
            rng = exts[EXT_INTERVAL].valueRange
            r["lo"], r["hi"] = float(rng.low.value), float(rng.high.value)
        if EXT_INTERVAL + "-when" in exts:
            r["when"] = float(exts[EXT_INTERVAL + "-when"].valueDecimal)
        elif p.whenRange is not None:
            r["when"] = float(p.whenRange.high.value)
        risks.append(r)
    constraints, ext = [], {}
    for e in ra.extension or []:
        if e.url == EXT_CONSTRAINT:
            c: dict[str, Any] = {}
            for x in e.extension or []:
                c[x.url] = x.valueString if x.valueString is not None else float(x.valueDecimal)
            constraints.append(c)
        else:
            ext[e.url] = e.valueString
    schedule = json.loads(ext[EXT_SCHEDULE]) if EXT_SCHEDULE in ext else None
    note = next((n.text for n in ra.note or [] if n.text.startswith("WARNING: ")), None)
    return {
        "patient": str(ra.subject.reference).removeprefix("Patient/"),
        "schedule_name": str(ra.mitigation).removeprefix("recommended schedule: "),
        "schedule": {k: v for k, v in schedule.items() if k != "name"} if schedule else None,
        "risks": risks,
        "constraints": constraints,
        "provenance": json.loads(ext[EXT_PROVENANCE]) if EXT_PROVENANCE in ext else {},
        "warning": note.removeprefix("WARNING: ") if note else None,
        "status": ra.status,
    }


__all__ = [
    "ForecastLike",
    "forecast_from_fhir",
    "forecast_to_fhir",
    "recommendation_from_fhir",
    "recommendation_to_fhir",
]
