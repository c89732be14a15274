"""The oncotwin store: patients, events, twin versions, forecasts and runs in one database.

:class:`Store` opens SQLite (default) or PostgreSQL by URL, brings the schema to the newest
Alembic revision, and offers one method per operation; each method is one transaction.

Concurrency: on SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (WAL journal,
30 s busy timeout), so writers from several processes queue instead of failing; on PostgreSQL
ingests and migrations take transaction-scoped advisory locks and ``save_twin`` retries when
another writer took the same version number first.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import random
import sqlite3
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, case, create_engine, event, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, defer, sessionmaker
from sqlalchemy.pool import StaticPool

from oncotwin.errors import DataError, NotFoundError, StoreError
from oncotwin.store.tables import (
    EVENT_COLUMNS,
    Event,
    Forecast,
    Ingest,
    Patient,
    Population,
    Run,
    Surprise,
    Twin,
)

__all__ = [
    "ForecastRecord",
    "IngestResult",
    "PatientRow",
    "PopulationRecord",
    "RunRecord",
    "Store",
    "SurpriseRecord",
    "TwinRecord",
    "head_revision",
]

_MIGRATIONS = Path(__file__).with_name("migrations")
_FLOAT_COLUMNS = ("time", "dv", "amt", "rate", "dur", "on", "lloq")
_INT_COLUMNS = ("evid", "mdv", "cmt", "cens")
_STR_COLUMNS = ("id", "kind", "unit", "agent")
_REQUIRED = ("id", "time", "evid")
_DEDUP_KEY = ("time", "evid", "kind", "agent", "dv", "amt")  # plus the patient id
_STR_DTYPE = "str" if int(pd.__version__.split(".")[0]) >= 3 else object
_WRITE = "oncotwin_write"  # execution option: SQLite write transactions BEGIN IMMEDIATE
_LOCK_MIGRATE = 0x6F6E636F7477696E  # PostgreSQL advisory lock keys
_LOCK_INGEST = _LOCK_MIGRATE + 1
_TWIN_RETRIES = 25
_CHUNK = 500  # ids per IN (...) clause, well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class IngestResult:
    """Outcome of :meth:`Store.ingest`.

    ``n_rows`` rows were offered, ``n_inserted`` written and ``n_skipped`` already stored
    (same patient, time, evid, kind, agent, dv, amt); ``new_patients`` lists the ids created.
    """

    ingest_id: int
    n_rows: int
    n_inserted: int
    n_skipped: int
    n_patients: int
    new_patients: list[str]
    data_version: str


@dataclass(frozen=True)
class PatientRow:
    """One line of the patient list: counts and time span (days) of the stored events."""

    id: str
    n_observations: int
    n_doses: int
    first_time: float | None
    last_time: float | None
    n_twins: int
    latest_twin_version: int | None
    source: str | None
    covariates: dict[str, Any]


@dataclass(frozen=True)
class TwinRecord:
    """One stored twin version; ``draws`` is None when loaded without draws.

    Records compare (and print) without their draws: two records of one row are equal.
    """

    id: int
    patient_id: str
    version: int
    model: str
    method: str
    created_at: datetime
    data_version: str
    data_as_of: datetime
    seed: int
    oncotwin_version: str
    draws: dict[str, np.ndarray] | None = field(compare=False, repr=False)
    summary: dict[str, Any]
    diagnostics: dict[str, Any]
    settings: dict[str, Any]
    converged: bool


@dataclass(frozen=True)
class PopulationRecord:
    """One stored version of a named population model (``draws`` as saved)."""

    id: int
    name: str
    version: int
    model: str
    created_at: datetime
    record: dict[str, Any]
    draws: dict[str, np.ndarray] = field(compare=False, repr=False)


@dataclass(frozen=True)
class SurpriseRecord:
    """A stored surprise of a twin version."""

    twin_id: int
    time: float
    observed: float
    lo: float
    hi: float
    level: float


@dataclass(frozen=True)
class ForecastRecord:
    """One stored forecast of a twin under a named schedule."""

    id: int
    twin_id: int
    created_at: datetime
    schedule_name: str
    schedule: dict[str, Any]
    payload: dict[str, Any]
    seed: int | None


@dataclass(frozen=True)
class RunRecord:
    """One job: ``status`` is "running", "done" or "failed"."""

    id: int
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None


@functools.cache
def head_revision() -> str:
    """The newest schema revision this version of oncotwin knows."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


class Store:
    """Persistent storage of patients, their events, twin versions, forecasts and runs.

    Args:
        url: SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://user@host/db``) or a
            plain file path (SQLite). Default: env ``ONCOTWIN_DB``, else a SQLite file in the
            user data directory (see :meth:`default_url`).
        clock: returns the current time (timezone-aware); for tests. Default: UTC now.

    Raises:
        StoreError: the database cannot be opened or migrated.

    Opening brings the schema to the newest revision (a no-op when it is already there).
    Naive datetimes passed in are taken to be UTC; every datetime returned is UTC-aware.
    """

    def __init__(
        self,
        url: str | os.PathLike[str] | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._url = _normalize_url(url if url is not None else self.default_url())
        self._clock = clock or (lambda: datetime.now(UTC))
        try:
            self._engine = _make_engine(self._url)
        except Exception as exc:
            raise StoreError(f"cannot open store {self!s}: {exc}") from exc
        self._dialect = self._engine.dialect.name
        self._read = sessionmaker(self._engine, expire_on_commit=False)
        self._write = sessionmaker(
            self._engine.execution_options(**{_WRITE: True}), expire_on_commit=False
        )
        try:
            self._upgrade()
        except BaseException:
            self._engine.dispose()
            raise

    def _now(self) -> datetime:
        return _utc(self._clock())

    # -- lifecycle -------------------------------------------------------------------------

    @staticmethod
    def default_url() -> str:
        """Env ``ONCOTWIN_DB``, else ``sqlite:///<user data dir>/oncotwin.db`` (dir created)."""
        env = os.environ.get("ONCOTWIN_DB")
        if env:
            return env
        import platformdirs

        folder = Path(platformdirs.user_data_dir("oncotwin"))
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'oncotwin.db'}"

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return make_url(self._url).render_as_string(hide_password=True)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tools; prefer the methods)."""
        return self._engine

    def close(self) -> None:
        """Release every connection."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def __str__(self) -> str:
        return self.url

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None: no schema)."""
        with self._engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def _upgrade(self) -> None:
        """``alembic upgrade head`` under a lock, so concurrent openers migrate once."""
        cfg = _alembic_config(self._url)
        try:
            if self.schema_revision() == head_revision():
                return
            for attempt in range(3):
                try:
                    with self._engine.execution_options(**{_WRITE: True}).begin() as conn:
                        if self._dialect == "postgresql":
                            conn.execute(
                                text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_MIGRATE}
                            )
                        cfg.attributes["connection"] = conn
                        command.upgrade(cfg, "head")
                    return
                except DBAPIError as exc:
                    # Another process created the tables between our check and our lock
                    # (possible only without the locks above, e.g. on other backends).
                    if "already exists" not in str(exc).lower() or attempt == 2:
                        raise
        except CommandError as exc:
            raise StoreError(
                f"cannot migrate store {self}: {exc} (is the database from a newer oncotwin?)"
            ) from exc
        except DBAPIError as exc:
            raise StoreError(f"cannot open store {self}: {exc.orig}") from exc

    @contextmanager
    def _tx(self, what: str, *, write: bool = False) -> Iterator[Session]:
        """One transaction; database refusals become :class:`StoreError`."""
        try:
            with (self._write if write else self._read)() as session, session.begin():
                yield session
        except DBAPIError as exc:
            raise StoreError(f"{what} failed in store {self}: {exc.orig}") from exc

    # -- events ----------------------------------------------------------------------------

    def ingest(self, data: Any, *, source: str | None = None) -> IngestResult:
        """Store an event table, atomically: on any failure nothing is written.

        Args:
            data: a canonical event table (DataFrame), or an object with ``.events``
                (DataFrame), ``.source`` and ``.version`` (e.g. ``PatientData``). Columns
                other than the canonical ones are covariates, constant per subject.
            source: where the rows came from (default: ``data.source``, else "<frame>").

        Returns:
            counts of rows and patients; rows already stored for the same patient (same
            time, evid, kind, agent, dv, amt) are skipped, so re-ingesting a file is a no-op.

        Raises:
            DataError: a required column (id, time, evid) is missing or holds non-numbers.
            StoreError: the database rejected a row (e.g. evid not in 0, 1, 2).
        """
        frame, source, version = _unpack(data, source)
        rows, covariates = _event_rows(frame, source)
        now = self._now()
        with self._tx("ingest", write=True) as s:
            if self._dialect == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_INGEST})
            ids = list(covariates)
            known = {p.id: p for chunk in _chunks(ids) for p in s.scalars(_patients_in(chunk))}
            new = [pid for pid in ids if pid not in known]
            for pid, p in known.items():
                merged = {**p.covariates, **covariates[pid]}
                if merged != p.covariates:
                    p.covariates = merged
            s.add_all(
                Patient(id=pid, created_at=now, source=source, covariates=covariates[pid])
                for pid in new
            )
            stored = Counter(_stored_keys(s, [pid for pid in ids if pid in known]))
            fresh = []
            for row in rows:
                key = _key(row)
                if stored[key] > 0:
                    stored[key] -= 1
                else:
                    fresh.append(row)
            ing = Ingest(
                source=source,
                created_at=now,
                n_rows=len(rows),
                n_skipped=len(rows) - len(fresh),
                n_patients=len(ids),
                data_version=version,
            )
            s.add(ing)
            s.flush()
            for row in fresh:
                row["ingest_id"], row["recorded_at"] = ing.id, now
            _insert_events(s, fresh)
            return IngestResult(
                ing.id, len(rows), len(fresh), len(rows) - len(fresh), len(ids), new, version
            )

    def events(self, patient_id: str, *, as_of: datetime | None = None) -> pd.DataFrame:
        """A patient's canonical event table, sorted by time, plus covariate columns.

        Args:
            patient_id: subject id.
            as_of: only rows recorded in the store at or before this time.

        Raises:
            NotFoundError: no such patient.
        """
        return self.events_all([patient_id], as_of=as_of)

    def events_all(
        self, ids: Iterable[str] | None = None, *, as_of: datetime | None = None
    ) -> pd.DataFrame:
        """Event tables of several patients (default: all), sorted by id then time.

        Raises:
            NotFoundError: one of ``ids`` is not stored.
        """
        as_of = None if as_of is None else _utc(as_of)
        with self._tx("read events") as s:
            if ids is None:
                patients = list(s.scalars(select(Patient).order_by(Patient.id)))
            else:
                wanted = list(dict.fromkeys(ids))
                found = {p.id: p for c in _chunks(wanted) for p in s.scalars(_patients_in(c))}
                missing = [pid for pid in wanted if pid not in found]
                if missing:
                    raise NotFoundError(
                        f"no patient {', '.join(map(repr, missing))} in store {self}"
                    )
                patients = [found[pid] for pid in wanted]
            cols = [getattr(Event, c) for c in EVENT_COLUMNS[1:]]
            rows: list[Any] = []
            for chunk in _chunks([p.id for p in patients]):
                q = select(Event.patient_id, *cols).where(Event.patient_id.in_(chunk))
                if as_of is not None:
                    q = q.where(Event.recorded_at <= as_of)
                rows += s.execute(q.order_by(Event.patient_id, Event.time, Event.id)).all()
        order = {p.id: i for i, p in enumerate(patients)}
        rows.sort(key=lambda r: order[r[0]])  # stable: keeps time order within a patient
        return _frame(rows, {p.id: p.covariates for p in patients})

    def patients(self) -> list[PatientRow]:
        """Every stored patient with event counts and twin versions, sorted by id."""
        ev = (
            select(
                Event.patient_id.label("pid"),
                func.sum(case((Event.evid == 0, 1), else_=0)).label("n_obs"),
                func.sum(case((Event.evid == 1, 1), else_=0)).label("n_doses"),
                func.min(Event.time).label("t0"),
                func.max(Event.time).label("t1"),
            )
            .group_by(Event.patient_id)
            .subquery()
        )
        tw = (
            select(
                Twin.patient_id.label("pid"),
                func.count().label("n"),
                func.max(Twin.version).label("latest"),
            )
            .group_by(Twin.patient_id)
            .subquery()
        )
        q = (
            select(Patient, ev.c.n_obs, ev.c.n_doses, ev.c.t0, ev.c.t1, tw.c.n, tw.c.latest)
            .outerjoin(ev, ev.c.pid == Patient.id)
            .outerjoin(tw, tw.c.pid == Patient.id)
            .order_by(Patient.id)
        )
        with self._tx("list patients") as s:
            return [
                PatientRow(
                    id=p.id,
                    n_observations=int(n_obs or 0),
                    n_doses=int(n_doses or 0),
                    first_time=t0,
                    last_time=t1,
                    n_twins=int(n or 0),
                    latest_twin_version=latest,
                    source=p.source,
                    covariates=dict(p.covariates),
                )
                for p, n_obs, n_doses, t0, t1, n, latest in s.execute(q)
            ]

    # -- twins -----------------------------------------------------------------------------

    def save_twin(
        self,
        patient_id: str,
        *,
        model: str,
        method: str,
        draws: Mapping[str, Any],
        summary: Mapping[str, Any],
        diagnostics: Mapping[str, Any],
        settings: Mapping[str, Any],
        converged: bool,
        data_version: str,
        data_as_of: datetime,
        seed: int,
        oncotwin_version: str,
    ) -> TwinRecord:
        """Store a new twin version (previous + 1); stored twins are never changed.

        Args:
            draws: posterior draws, name -> numeric array (stored as ``.npz``).
            summary, diagnostics, settings: JSON-able dicts (numpy values converted,
                NaN and infinities stored as null).
            data_as_of: events recorded up to this time were used.

        Raises:
            NotFoundError: no such patient.
            StoreError: the database refused the write.
        """
        blob = _encode_draws(draws)
        values = dict(
            patient_id=patient_id,
            model=str(model),
            method=str(method),
            data_version=str(data_version),
            data_as_of=_utc(data_as_of),
            seed=int(seed),
            oncotwin_version=str(oncotwin_version),
            draws=blob,
            summary=_jsonable(dict(summary)),
            diagnostics=_jsonable(dict(diagnostics)),
            settings=_jsonable(dict(settings)),
            converged=bool(converged),
        )
        for attempt in range(_TWIN_RETRIES):
            try:
                with self._tx("save twin", write=True) as s:
                    self._require_patient(s, patient_id)
                    latest = s.scalar(
                        select(func.max(Twin.version)).where(Twin.patient_id == patient_id)
                    )
                    twin = Twin(version=(latest or 0) + 1, created_at=self._now(), **values)
                    s.add(twin)
                    s.flush()
                    return _twin_record(twin, with_draws=True)
            except StoreError as exc:
                # Another writer took this version number first (PostgreSQL): try the next.
                if not isinstance(exc.__cause__, IntegrityError) or attempt == _TWIN_RETRIES - 1:
                    raise
                time.sleep(random.uniform(0.001, 0.02) * (attempt + 1))
        raise AssertionError("unreachable")

    def twin(
        self, patient_id: str, version: int | None = None, *, as_of: datetime | None = None
    ) -> TwinRecord:
        """A patient's twin: the latest version, a given one, or the latest created by as_of.

        Raises:
            NotFoundError: no such patient or no matching twin version.
        """
        as_of = None if as_of is None else _utc(as_of)
        with self._tx("read twin") as s:
            self._require_patient(s, patient_id)
            q = select(Twin).where(Twin.patient_id == patient_id)
            if version is not None:
                q = q.where(Twin.version == int(version))
            if as_of is not None:
                q = q.where(Twin.created_at <= as_of)
            twin = s.scalars(q.order_by(Twin.version.desc()).limit(1)).first()
            if twin is not None:
                return _twin_record(twin, with_draws=True)
            versions = list(s.scalars(select(Twin.version).where(Twin.patient_id == patient_id)))
        if not versions:
            raise NotFoundError(f"patient {patient_id!r} has no twin yet; calibrate one first")
        have = f"stored versions: {min(versions)}..{max(versions)}"
        if version is not None and version not in versions:
            raise NotFoundError(f"patient {patient_id!r} has no twin version {version} ({have})")
        when = as_of.isoformat() if as_of is not None else ""
        what = f"twin version {version}" if version is not None else "twin"
        raise NotFoundError(f"patient {patient_id!r} had no {what} yet at {when} ({have})")

    def twin_history(self, patient_id: str, *, with_draws: bool = False) -> list[TwinRecord]:
        """Every twin version of a patient, oldest first (draws None unless ``with_draws``).

        Raises:
            NotFoundError: no such patient.
        """
        with self._tx("read twins") as s:
            self._require_patient(s, patient_id)
            q = select(Twin).where(Twin.patient_id == patient_id).order_by(Twin.version)
            if not with_draws:
                q = q.options(defer(Twin.draws))
            return [_twin_record(t, with_draws=with_draws) for t in s.scalars(q)]

    # -- forecasts -------------------------------------------------------------------------

    # -- populations and surprises ------------------------------------------------------------

    def save_population(
        self, name: str, *, model: str, record: Mapping[str, Any], draws: Mapping[str, Any]
    ) -> PopulationRecord:
        """Store a new version of population `name` (previous + 1).

        Raises:
            StoreError: the database refused the write (e.g. a concurrent writer took the
                version number: call again).
        """
        with self._tx("save population", write=True) as s:
            latest = s.scalar(select(func.max(Population.version)).where(Population.name == name))
            row = Population(
                name=str(name), version=(latest or 0) + 1, model=str(model),
                created_at=self._now(), record=_jsonable(dict(record)),
                draws=_encode_draws(draws),
            )  # fmt: skip
            s.add(row)
            s.flush()
            return _population_record(row)

    def population(self, name: str, version: int | None = None) -> PopulationRecord:
        """The latest (or a given) version of population `name`.

        Raises:
            NotFoundError: no population of that name or version.
        """
        with self._tx("read population") as s:
            q = select(Population).where(Population.name == name)
            if version is not None:
                q = q.where(Population.version == int(version))
            row = s.scalars(q.order_by(Population.version.desc()).limit(1)).first()
            if row is not None:
                return _population_record(row)
            names = sorted(set(s.scalars(select(Population.name))))
        what = f"version {version} of population {name!r}" if version else f"population {name!r}"
        raise NotFoundError(f"no {what}; stored populations: {', '.join(names) or 'none'}")

    def populations(self) -> list[tuple[str, int, str, datetime]]:
        """(name, latest version, model, created_at) of every stored population."""
        with self._tx("list populations") as s:
            rows = s.execute(
                select(
                    Population.name, Population.version, Population.model, Population.created_at
                ).order_by(Population.name, Population.version)  # fmt: skip
            ).all()
        latest = {r[0]: (r[0], r[1], r[2], r[3]) for r in rows}
        return list(latest.values())

    def save_surprises(self, twin_id: int, surprises: Iterable[Mapping[str, float]]) -> int:
        """Record surprises (time, observed, lo, hi, level) of a twin version; returns the count."""
        rows = [dict(s) for s in surprises]
        with self._tx("save surprises", write=True) as s:
            self._require_twin(s, twin_id)
            now = self._now()
            for r in rows:
                s.add(Surprise(twin_id=twin_id, created_at=now, **{k: float(r[k]) for k in
                               ("time", "observed", "lo", "hi", "level")}))  # fmt: skip
        return len(rows)

    def surprises(self, patient_id: str) -> list[SurpriseRecord]:
        """Every surprise recorded for a patient's twins, oldest first."""
        with self._tx("read surprises") as s:
            self._require_patient(s, patient_id)
            q = (
                select(Surprise)
                .join(Twin, Twin.id == Surprise.twin_id)
                .where(Twin.patient_id == patient_id)
                .order_by(Surprise.id)
            )
            return [
                SurpriseRecord(r.twin_id, r.time, r.observed, r.lo, r.hi, r.level)
                for r in s.scalars(q)
            ]

    def save_forecast(
        self,
        twin_id: int,
        *,
        schedule_name: str,
        schedule: Mapping[str, Any],
        payload: Mapping[str, Any],
        seed: int | None = None,
    ) -> int:
        """Store a forecast of twin ``twin_id`` (a :attr:`TwinRecord.id`); returns its id.

        Raises:
            NotFoundError: no such twin.
        """
        with self._tx("save forecast", write=True) as s:
            self._require_twin(s, twin_id)
            f = Forecast(
                twin_id=int(twin_id),
                created_at=self._now(),
                schedule_name=str(schedule_name),
                schedule=_jsonable(dict(schedule)),
                payload=_jsonable(dict(payload)),
                seed=None if seed is None else int(seed),
            )
            s.add(f)
            s.flush()
            return f.id

    def forecasts(self, twin_id: int) -> list[ForecastRecord]:
        """The forecasts of one twin, oldest first.

        Raises:
            NotFoundError: no such twin.
        """
        with self._tx("read forecasts") as s:
            self._require_twin(s, twin_id)
            q = select(Forecast).where(Forecast.twin_id == int(twin_id)).order_by(Forecast.id)
            return [
                ForecastRecord(
                    f.id, f.twin_id, f.created_at, f.schedule_name, f.schedule, f.payload, f.seed
                )
                for f in s.scalars(q)
            ]

    # -- runs ------------------------------------------------------------------------------

    def start_run(self, kind: str, params: Mapping[str, Any] | None = None) -> int:
        """Record that a job (e.g. "demo", "calibrate") started; returns the run id."""
        with self._tx("start run", write=True) as s:
            run = Run(
                kind=str(kind),
                status="running",
                started_at=self._now(),
                params=_jsonable(dict(params or {})),
            )
            s.add(run)
            s.flush()
            return run.id

    def finish_run(
        self,
        run_id: int,
        *,
        result: Mapping[str, Any] | None = None,
        error: str | BaseException | None = None,
    ) -> None:
        """Mark a run "done" (with ``result``) or "failed" (with ``error``).

        Raises:
            NotFoundError: no such run.
            StoreError: the run already finished.
        """
        with self._tx("finish run", write=True) as s:
            run = s.get(Run, int(run_id))
            if run is None:
                raise NotFoundError(f"no run {run_id} in store {self}")
            if run.status != "running":
                raise StoreError(f"run {run_id} already finished ({run.status})")
            if isinstance(error, BaseException):
                error = f"{type(error).__name__}: {error}"
            run.status = "failed" if error is not None else "done"
            run.finished_at = self._now()
            run.result = None if result is None else _jsonable(dict(result))
            run.error = error

    def run(self, run_id: int) -> RunRecord:
        """One run. Raises NotFoundError when there is none with this id."""
        with self._tx("read run") as s:
            run = s.get(Run, int(run_id))
            if run is None:
                raise NotFoundError(f"no run {run_id} in store {self}")
            return _run_record(run)

    def runs(self, kind: str | None = None) -> list[RunRecord]:
        """Every run (or every run of one kind), oldest first."""
        q = select(Run).order_by(Run.id)
        if kind is not None:
            q = q.where(Run.kind == kind)
        with self._tx("read runs") as s:
            return [_run_record(r) for r in s.scalars(q)]

    # -- helpers ---------------------------------------------------------------------------

    def _require_patient(self, s: Session, patient_id: str) -> None:
        if s.scalar(select(Patient.id).where(Patient.id == patient_id)) is None:
            raise NotFoundError(f"no patient {patient_id!r} in store {self}")

    def _require_twin(self, s: Session, twin_id: int) -> None:
        if s.scalar(select(Twin.id).where(Twin.id == int(twin_id))) is None:
            raise NotFoundError(f"no twin with id {twin_id} in store {self}")


# -- engine and migrations -------------------------------------------------------------------


def _normalize_url(url: str | os.PathLike[str]) -> str:
    """A URL, or a file path taken as a SQLite database."""
    s = os.fspath(url)
    return s if "://" in s else f"sqlite:///{Path(s).expanduser().resolve()}"


def _make_engine(url: str) -> Engine:
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return create_engine(u, pool_pre_ping=True)
    db = u.database or ""
    if db in ("", ":memory:") or u.query.get("mode") == "memory":
        engine = create_engine(u, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, connect_args={"timeout": 30.0})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own implicit BEGIN handling is turned off: _sqlite_begin emits BEGIN, so
    # DDL is transactional and write transactions can take the write lock up front.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    try:
        cur.execute("PRAGMA busy_timeout = 30000")
        cur.execute("PRAGMA foreign_keys = ON")
        # WAL is a property of the file, set once. Switching needs an exclusive lock and
        # SQLite reports "database is locked" at once (no busy wait) while another process
        # opens the same new file, so retry for up to the busy timeout.
        deadline = time.monotonic() + 30.0
        while True:
            try:
                mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
                if mode.lower() not in ("wal", "memory"):
                    cur.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.005, 0.05))
    finally:
        cur.close()


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock now (waiting up to busy_timeout) instead of failing with
    # SQLITE_BUSY when a read transaction later tries to write after another process wrote.
    write = conn.get_execution_options().get(_WRITE)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# -- events <-> rows -------------------------------------------------------------------------


def _unpack(data: Any, source: str | None) -> tuple[pd.DataFrame, str, str]:
    """(frame, source, data version) from a DataFrame or a PatientData-like object."""
    if isinstance(data, pd.DataFrame):
        frame, version = data, None
    elif isinstance(getattr(data, "events", None), pd.DataFrame):
        frame, version = data.events, getattr(data, "version", None)
        source = source if source is not None else getattr(data, "source", None)
    else:
        raise TypeError(
            f"ingest expects a DataFrame or an object with .events, got {type(data).__name__}"
        )
    if not version:
        h = hashlib.sha256(",".join(map(str, frame.columns)).encode())
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        version = f"sha256:{h.hexdigest()[:16]}"
    return frame, str(source) if source is not None else "<frame>", str(version)


def _event_rows(
    frame: pd.DataFrame, source: str
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Rows for the events table and covariates per patient (first non-missing value)."""
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(f"missing required column(s) {', '.join(missing)}", file=source)
    frame = frame.reset_index(drop=True)
    n = len(frame)
    raw_ids = _strings(frame["id"])
    bad = [i for i, v in enumerate(raw_ids) if v is None]
    if bad:
        raise DataError("missing subject id", file=source, row=bad[0] + 2, column="id")
    ids = [v for v in raw_ids if v is not None]
    cols: dict[str, list[Any]] = {"patient_id": ids}
    for name in EVENT_COLUMNS[1:]:
        if name not in frame.columns:
            cols[name] = [None] * n
        elif name in _STR_COLUMNS:
            cols[name] = _strings(frame[name])
        else:
            cols[name] = _numbers(frame[name], source, integer=name in _INT_COLUMNS)
    rows = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
    extra = [c for c in frame.columns if c not in EVENT_COLUMNS]
    covariates: dict[str, dict[str, Any]] = {pid: {} for pid in dict.fromkeys(ids)}
    if extra:
        first = frame[extra].groupby(pd.Series(ids, index=frame.index), sort=False).first()
        for c in extra:  # column by column: a row would upcast ints to floats
            for pid, value in first[c].items():
                covariates[str(pid)][str(c)] = _jsonable(value)
    return rows, covariates


def _strings(col: pd.Series) -> list[str | None]:
    return [None if _missing(v) else str(v) for v in col.tolist()]


def _numbers(col: pd.Series, source: str, *, integer: bool) -> list[Any]:
    num = pd.to_numeric(col, errors="coerce")
    bad = num.isna() & col.notna()
    if integer:
        bad |= num.notna() & (num != num.round())
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        value = col.iloc[i]
        value = value.item() if isinstance(value, np.generic) else value
        kind = "an integer" if integer else "a number"
        raise DataError(f"{value!r} is not {kind}", file=source, row=i + 2, column=str(col.name))
    values = num.astype("float64").tolist()
    if integer:
        return [None if math.isnan(v) else int(v) for v in values]
    return [None if math.isnan(v) else v for v in values]


def _key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row["patient_id"], *(row[c] for c in _DEDUP_KEY))


def _stored_keys(s: Session, ids: list[str]) -> Iterator[tuple[Any, ...]]:
    cols = [getattr(Event, c) for c in _DEDUP_KEY]
    for chunk in _chunks(ids):
        yield from (
            tuple(r)
            for r in s.execute(select(Event.patient_id, *cols).where(Event.patient_id.in_(chunk)))
        )


def _insert_events(s: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        s.execute(insert(Event), rows)


def _patients_in(ids: list[str]) -> Any:
    return select(Patient).where(Patient.id.in_(ids))


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _frame(rows: list[Any], covariates: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Canonical event table from (patient_id, time, evid, ...) rows."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(EVENT_COLUMNS)
    data: dict[str, Any] = {}
    for name, values in zip(EVENT_COLUMNS, columns, strict=True):
        if name in _STR_COLUMNS:
            data[name] = pd.Series(values, dtype=_STR_DTYPE)
        elif name in _INT_COLUMNS and None not in values:
            data[name] = pd.Series(values, dtype="int64")
        else:
            data[name] = pd.Series([np.nan if v is None else v for v in values], dtype="float64")
    frame = pd.DataFrame(data)
    names = list(dict.fromkeys(k for cov in covariates.values() for k in cov))
    for name in names:
        cov = [covariates[pid].get(name) for pid in data["id"]]
        frame[name] = pd.Series(cov, dtype=None if cov else object)
    return frame


# -- values ----------------------------------------------------------------------------------


def _utc(t: datetime) -> datetime:
    """Timezone-aware UTC; naive datetimes are taken to be UTC already."""
    if not isinstance(t, datetime):
        raise TypeError(f"expected a datetime, got {type(t).__name__}")
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _jsonable(v: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays converted, NaN/inf/NA -> None."""
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset | np.ndarray | pd.Series):
        return [_jsonable(x) for x in (v.tolist() if hasattr(v, "tolist") else v)]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool | int | str) or v is None:
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, datetime | date):
        return None if _missing(v) else v.isoformat()
    if isinstance(v, Path):
        return str(v)
    if _missing(v):
        return None
    raise StoreError(f"cannot store a {type(v).__name__} as JSON: {v!r}")


def _encode_draws(draws: Mapping[str, Any]) -> bytes:
    """An ``.npz`` archive (uncompressed: posterior draws barely compress)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, value in draws.items():
            a = np.asarray(value)
            if a.dtype.hasobject:
                raise StoreError(f"draws[{name!r}] is not a numeric array (dtype {a.dtype})")
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a, allow_pickle=False)
    return buf.getvalue()


def _population_record(row: Population) -> PopulationRecord:
    return PopulationRecord(
        row.id, row.name, row.version, row.model, row.created_at, dict(row.record),
        _decode_draws(row.draws),
    )  # fmt: skip


def _decode_draws(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _twin_record(t: Twin, *, with_draws: bool) -> TwinRecord:
    return TwinRecord(
        id=t.id,
        patient_id=t.patient_id,
        version=t.version,
        model=t.model,
        method=t.method,
        created_at=t.created_at,
        data_version=t.data_version,
        data_as_of=t.data_as_of,
        seed=t.seed,
        oncotwin_version=t.oncotwin_version,
        draws=_decode_draws(t.draws) if with_draws else None,
        summary=t.summary,
        diagnostics=t.diagnostics,
        settings=t.settings,
        converged=t.converged,
    )


def _run_record(r: Run) -> RunRecord:
    return RunRecord(
        r.id, r.kind, r.status, r.started_at, r.finished_at, r.params, r.result, r.error
    )
