"""Persistent twins: ingest, calibrate and version, reload and forecast, against a Store.

The CLI (and later the service) call these functions; they hold no science of their own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .data import PatientData, read_events
from .data.datasets import DATASETS
from .data.datasets import load as load_dataset
from .errors import DataError, NotFoundError
from .inference.assimilate import Update
from .inference.calibrate import calibrate_subjects
from .inference.compare import compare
from .inference.covariates import covariate_levels, encode
from .inference.population import Population, fit_population, population_from_arrays
from .inference.posterior import Diagnostics, Posterior
from .inference.priors import Prior
from .inference.problem import SubjectData
from .models import get_model
from .observe import get_error_model
from .predict import candidates_for
from .regimen import ThresholdRule
from .rules import DEFAULT_CHECK_EVERY
from .schedule import Dose, Schedule, Switch
from .store import IngestResult, PopulationRecord, Store, TwinRecord
from .twin import DigitalTwin, Forecast

FORECAST_POINTS = 60


def load_source(
    source: str, *, time_unit: str = "day", origins: dict[str, Any] | None = None
) -> PatientData:
    """An event-table file, a FHIR Bundle JSON file, or a shipped data set by name.

    A ``.json`` file (or one whose content starts with "{") is read as a FHIR R4 Bundle
    (:func:`oncotwin.data.fhir.read_bundle`): `time_unit` does not apply (FHIR times are
    dates), and `origins` gives the day 0 (ISO date) of patients already stored (their
    ``time_origin`` covariate), so that new data line up with the old.
    """
    if source in DATASETS:
        return load_dataset(source)
    path = Path(source)
    if not path.exists():
        raise DataError(
            f"no such file, and not a shipped data set (known: {', '.join(DATASETS)})", file=source
        )
    from .data.fhir import is_bundle_file, read_bundle

    if is_bundle_file(path):
        return read_bundle(path, origins=origins)
    return read_events(path, time_unit=time_unit)


def ingest(store: Store, source: str, *, time_unit: str = "day") -> IngestResult:
    """Ingest an event-table file, a FHIR Bundle, or a shipped data set by name, in one transaction."""
    data = load_source(source, time_unit=time_unit, origins=stored_origins(store))
    return ingest_data(store, data, source)


def stored_origins(store: Store) -> dict[str, Any]:
    """Day 0 (ISO date) of each stored patient imported from FHIR, so new Bundles line up."""
    return {
        p.id: p.covariates["time_origin"]
        for p in store.patients()
        if p.covariates.get("time_origin")
    }


def ingest_data(store: Store, data: PatientData, source: str) -> IngestResult:
    """Ingest data already read from `source` (a file, or a data set name), in one transaction."""
    return store.ingest(data, source=f"dataset:{source}" if source in DATASETS else source)


def patient_data(store: Store, patient_id: str, as_of: datetime | None = None) -> PatientData:
    """A patient's events from the store, as PatientData (what was known at `as_of`)."""
    events = store.events(patient_id, as_of=as_of)
    return PatientData.from_frame(events, source=f"store:{patient_id}")


def fit_named_population(
    store: Store,
    name: str,
    patient_ids: Sequence[str],
    *,
    model: str = "gompertz",
    method: str = "nuts",
    seed: int = 0,
    covariates: Sequence[str] = (),
    **settings: Any,
) -> PopulationRecord:
    """Fit a population model to stored patients and save it as the next version of `name`.

    `covariates` are covariate columns of the patients' data (or ``log_baseline``), coded as
    :mod:`oncotwin.inference.covariates` says; the coding is kept with the population, so a new
    patient's prior uses the same.
    """
    datas, subjects = _stored_subjects(store, patient_ids, datetime.now(UTC))
    encoded, coding = None, {}
    if covariates:
        table = pd.concat([d.covariates() for d in datas])
        levels = covariate_levels(covariates, table)
        encoded = encode(covariates, table, subjects, levels)
        coding = {"covariate_columns": list(covariates), "covariate_levels": levels}
    pop = fit_population(model, subjects, method=method, seed=seed, covariates=encoded,
                         source=f"population {name}", **settings)  # fmt: skip
    pop = dataclasses.replace(pop, settings=pop.settings | coding)
    record = pop.record() | {"summary": pop.summary(), "correlation": pop.correlation().tolist()}
    return store.save_population(name, model=pop.model, record=record, draws=pop.arrays())


def load_population(store: Store, name: str, version: int | None = None) -> Population:
    """A stored population model."""
    rec = store.population(name, version)
    pop = population_from_arrays(rec.record, rec.draws)
    return dataclasses.replace(pop, source=f"population {name} v{rec.version}")


def _stored_subjects(
    store: Store, patient_ids: Sequence[str], as_of: datetime | None = None
) -> tuple[list[PatientData], list[SubjectData]]:
    """The stored data of each patient (as known at `as_of`), and as a calibration subject."""
    datas = [patient_data(store, pid, as_of) for pid in patient_ids]
    subjects = [
        SubjectData.from_events(pid, d.events) for pid, d in zip(patient_ids, datas, strict=True)
    ]
    return datas, subjects


def population_subjects(store: Store, population: Population) -> list[SubjectData]:
    """The stored data of the subjects a population was fitted to (as the store has them now)."""
    return _stored_subjects(store, population.subjects)[1]


def population_covariates(
    store: Store, population: Population, patient_ids: Sequence[str]
) -> dict[str, dict[str, float]] | None:
    """Each stored patient's covariates coded as `population` was fitted (None, without reading
    anything, when the population has no covariates).

    Raises:
        DataError: a patient lacks a covariate, or has a level the population never saw.
    """
    columns = population.settings.get("covariate_columns", [])
    if not columns:
        return None
    datas, subjects = _stored_subjects(store, patient_ids)
    table = pd.concat([d.covariates() for d in datas])
    return encode(columns, table, subjects, population.settings.get("covariate_levels", {}))


def create_twin(
    store: Store,
    patient_id: str,
    *,
    model: str = "gompertz",
    method: str = "nuts",
    seed: int = 0,
    prior: Prior | None = None,
    error_model: str = "proportional",
    **calibration: Any,
) -> tuple[TwinRecord, Posterior]:
    """Calibrate a new twin version of `patient_id` on everything the store knows now.

    `model="auto"` screens the candidate models by PSIS-LOO on this patient (Laplace, with
    the same `error_model`) and calibrates the best with `method`. The record keeps draws,
    diagnostics, prior, settings and the data version; earlier versions are never changed.
    """
    as_of = datetime.now(UTC)
    data = patient_data(store, patient_id, as_of)
    subject = SubjectData.from_events(patient_id, data.events)
    comparison = None
    if model == "auto":
        candidates = candidates_for([subject])
        screened = {
            m: calibrate_subjects(
                m, [subject], method="laplace", seed=seed, error_model=error_model
            )
            for m in candidates
        }
        comparison = compare(screened)
        model = comparison.best
    post = calibrate_subjects(
        model, [subject], method=method, seed=seed, prior=prior, error_model=error_model,
        **calibration,
    )[0]  # fmt: skip
    record = _save(store, subject, data.version, post, as_of, comparison)
    return record, post


def posterior_from_record(record: TwinRecord) -> Posterior:
    """Rebuild a :class:`Posterior` from a stored twin version."""
    if record.draws is None:
        raise NotFoundError(f"twin {record.patient_id} v{record.version} was loaded without draws")
    s = record.settings
    names = tuple(s["names"])
    prior = Prior.from_dict(s["prior"], names)
    d = record.diagnostics

    def number(key: str) -> float:  # NaN is stored as null (JSON has no NaN)
        value = d.get(key)
        return float("nan") if value is None else float(value)

    diagnostics = Diagnostics(
        method=d["method"], rhat_max=number("rhat_max"), ess_bulk_min=number("ess_bulk_min"),
        ess_tail_min=number("ess_tail_min"), divergences=int(d.get("divergences") or 0),
        chains=int(d.get("chains") or 1), optimizer_converged=bool(d.get("optimizer_converged", True)),
        pareto_k=number("pareto_k"), ess_fraction=number("ess_fraction"),
        acceptance=number("acceptance"),
    )  # fmt: skip
    params = {k.split(":", 1)[1]: v for k, v in record.draws.items() if k.startswith("param:")}
    return Posterior(
        subject=record.patient_id, model=record.model, error_model=s["error_model"], names=names,
        z=record.draws["z"], params=params, log_lik=record.draws["log_lik"], t0=float(s["t0"]),
        ref=float(s["ref"]), diagnostics=diagnostics, prior=prior, method=record.method,
        seed=record.seed, settings=s,
    )  # fmt: skip


def load_twin(
    store: Store, patient_id: str, version: int | None = None, *, as_of: datetime | None = None
) -> tuple[DigitalTwin, TwinRecord]:
    """The stored twin (latest, a version, or the latest at `as_of`) with the data it was built on."""
    record = store.twin(patient_id, version, as_of=as_of)
    data = patient_data(store, patient_id, record.data_as_of)
    subject = SubjectData.from_events(patient_id, data.events, record.settings.get("kind"))
    (
        get_model(record.model),
        get_error_model(record.settings["error_model"]),
    )  # fail early if unknown
    return DigitalTwin(
        subject, [posterior_from_record(record)], data_version=record.data_version
    ), record


def update_twin(
    store: Store, patient_id: str, source: str | None = None, *, seed: int = 0,
    time_unit: str = "day",
) -> tuple[TwinRecord, Update]:  # fmt: skip
    """Assimilate new data into a patient's latest twin and store the next version.

    `source` (an event file) is ingested first (one transaction; a bad file changes nothing).
    The previous version's posterior is reweighted and rejuvenated (sequential Monte Carlo)
    when that is sound, else recalibrated; new observations outside the previous version's
    95% predictive interval are stored as surprises of the new version.
    """
    if source is not None:
        data = load_source(source, time_unit=time_unit, origins=stored_origins(store))
        if patient_id not in data.ids:
            raise DataError(f"the file has no rows for patient {patient_id!r}", file=source)
        ingest_data(store, data, source)
    twin, _ = load_twin(store, patient_id)
    as_of = datetime.now(UTC)
    data = patient_data(store, patient_id, as_of)
    new = SubjectData.from_events(patient_id, data.events, twin.subject.kind)
    updated, update = twin.update(new, seed=seed)
    record = _save(store, new, data.version, updated.posteriors[0], as_of)
    store.save_surprises(record.id, [
        {"time": x.time, "observed": x.observed, "lo": x.lo, "hi": x.hi, "level": x.level}
        for x in update.surprises
    ])  # fmt: skip
    return record, update


def continue_schedule(schedule: Schedule, until: float) -> Schedule:
    """The recorded schedule with each dosed agent continued at its last interval until `until`."""
    extra = []
    for agent in {d.agent for d in schedule.doses}:
        doses = [d for d in schedule.doses if d.agent == agent]
        if len(doses) < 2:
            continue
        last, interval = doses[-1], doses[-1].time - doses[-2].time
        if interval <= 0:
            continue
        n = int(math.floor((until - last.time) / interval))
        extra += [
            Dose(last.time + (i + 1) * interval, last.amount, agent, last.duration, last.unit)
            for i in range(n)
        ]
    return Schedule(schedule.doses + tuple(extra), schedule.switches, schedule.half_life)


def horizon(twin: DigitalTwin) -> float:
    """Default forecast horizon: a quarter of the follow-up (14 to 90 days) past the last observation."""
    s = twin.subject
    return s.last_time + min(max(14.0, 0.25 * (s.last_time - s.t0)), 90.0)


def forecast_grid(twin: DigitalTwin, until: float) -> np.ndarray:
    """Times from the first observation to `until`, FORECAST_POINTS points plus the observation times."""
    grid = np.linspace(twin.subject.t0, until, FORECAST_POINTS)
    return np.unique(np.concatenate([grid, twin.subject.times]))


@dataclass(frozen=True)
class Scenario:
    """A named treatment plan from the last observation on (None: the recorded plan), with
    the regimen's threshold rules applied at visits every `check_every` days (oncotwin.rules)."""

    name: str
    schedule: Schedule | None
    rules: tuple[ThresholdRule, ...] = ()
    check_every: float = DEFAULT_CHECK_EVERY


def scenarios(twin: DigitalTwin, until: float, extra: Sequence[Scenario] = ()) -> list[Scenario]:
    """The recorded plan and, for treated patients, "continue" and "stop treatment" alternatives."""
    recorded = twin.subject.schedule
    if recorded.is_empty:
        return [Scenario("no treatment", None), *extra]
    # Stopping: no further doses, and every agent that is on is switched off just after today
    # (a switch at exactly the last observation would count as history).
    today = twin.subject.last_time + 1e-6
    stop = tuple(
        Switch(today, agent, False) for agent in recorded.agents if recorded.is_on(agent, today)
    )
    return [
        Scenario("continue current schedule", continue_schedule(recorded, until)),
        Scenario("stop treatment", Schedule(switches=stop, half_life=recorded.half_life)),
        *extra,
    ]


def forecast_and_save(
    store: Store,
    twin: DigitalTwin,
    record: TwinRecord,
    scenario: Scenario,
    until: float,
    *,
    seed: int = 0,
) -> Forecast:
    """Forecast under `scenario` and store it with the twin version."""
    fc = twin.forecast(
        forecast_grid(twin, until), scenario.schedule, rules=scenario.rules,
        check_every=scenario.check_every, seed=seed,
    )  # fmt: skip
    lo50, hi50 = fc.interval(0.5)
    lo90, hi90 = fc.interval(0.9)
    payload = {
        "times": fc.times.tolist(), "median": fc.median.tolist(), "lo50": lo50.tolist(), "hi50": hi50.tolist(),
        "lo90": lo90.tolist(), "hi90": hi90.tolist(), "kind": fc.kind, "unit": fc.unit, "warning": fc.warning,
        "provenance": fc.provenance,
    }  # fmt: skip
    if fc.on_treatment is not None and fc.decision_times is not None:
        payload["decision_times"] = fc.decision_times.tolist()
        payload["on_treatment_share"] = fc.on_treatment.mean(axis=0).tolist()
    store.save_forecast(record.id, schedule_name=scenario.name, schedule=fc.schedule.to_dict(), payload=payload,
                        seed=seed)  # fmt: skip
    return fc


def build_cohort(
    store: Store,
    patient_ids: Sequence[str],
    *,
    model: str,
    method: str = "nuts",
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    **calibration: Any,
) -> list[tuple[TwinRecord, Posterior]]:
    """Create a twin version for each patient (one calibration call: compiled once, vmapped MAP)."""
    as_of = datetime.now(UTC)
    datas, subjects = _stored_subjects(store, patient_ids, as_of)
    posts = calibrate_subjects(
        model, subjects, method=method, seed=seed, progress=progress, **calibration
    )
    return [
        (_save(store, subject, data.version, post, as_of), post)
        for data, subject, post in zip(datas, subjects, posts, strict=True)
    ]


def _save(
    store: Store, subject: SubjectData, data_version: str, post: Posterior, as_of: datetime,
    comparison: Any = None,
) -> TwinRecord:  # fmt: skip
    """Store a calibrated posterior as the next twin version of its patient."""
    settings = {
        **post.settings,
        "names": list(post.names),
        "error_model": post.error_model,
        "prior": post.prior.to_dict(),
        "t0": post.t0,
        "ref": post.ref,
        "kind": subject.kind,
        "unit": subject.unit,
        "comparison": comparison.table.to_dict(orient="records") if comparison else None,
    }
    draws = {
        "z": post.z,
        "log_lik": post.log_lik,
        **{f"param:{k}": v for k, v in post.params.items()},
    }
    return store.save_twin(
        subject.id, model=post.model, method=post.method, draws=draws, summary=post.summary(),
        diagnostics=post.diagnostics.to_dict(), settings=settings, converged=post.converged,
        data_version=data_version, data_as_of=as_of, seed=post.seed, oncotwin_version=__version__,
    )  # fmt: skip


@dataclass(frozen=True)
class PatientPage:
    """A patient's report page as written: the twin, its record, forecasts and cohort row."""

    twin: DigitalTwin
    record: TwinRecord
    forecasts: dict[str, Forecast]
    entry: Any  # report.CohortEntry


def write_patient_page(
    store: Store,
    patient_id: str,
    path: Path,
    *,
    link: str,
    seed: int = 0,
    provenance: dict[str, Any] | None = None,
) -> PatientPage:
    """Forecast the latest twin under each scenario (stored) and write its HTML page to `path`.

    Args:
        link: href of the page as seen from the cohort page.
    """
    from .report import CohortEntry, write_patient_report

    twin, record = load_twin(store, patient_id)
    until = horizon(twin)
    forecasts = {
        sc.name: forecast_and_save(store, twin, record, sc, until, seed=seed)
        for sc in scenarios(twin, until)
    }
    versions = store.twin_history(patient_id)
    history = [
        {"version": r.version, "created": r.created_at, "model": r.model, "data version": r.data_version,
         "converged": r.converged}
        for r in versions
    ]  # fmt: skip
    version_of = {r.id: r.version for r in versions}
    surprises = [
        {"time": x.time, "observed": x.observed, "lo": x.lo, "hi": x.hi, "version": version_of[x.twin_id]}
        for x in store.surprises(patient_id)
    ]  # fmt: skip
    provenance = {"twin version": record.version, **(provenance or {})}
    write_patient_report(path, twin, forecasts, history=history, surprises=surprises,
                         provenance=provenance)  # fmt: skip
    entry = CohortEntry.from_forecast(twin, next(iter(forecasts.values())), link=link)
    return PatientPage(twin, record, forecasts, entry)
