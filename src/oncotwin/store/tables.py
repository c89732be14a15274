"""SQLAlchemy 2 typed ORM tables of the oncotwin store.

The schema is created and changed only by the Alembic migrations in ``store/migrations``;
``tests/store`` checks that the migrated database matches these declarations.

Portable types only: JSON columns (``sqlalchemy.JSON``), posterior draws as ``LargeBinary``
holding an ``.npz`` archive, timestamps timezone-aware UTC (stored naive-UTC on SQLite).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "EVENT_COLUMNS",
    "Base",
    "Event",
    "Forecast",
    "Ingest",
    "Patient",
    "Population",
    "Run",
    "Surprise",
    "Twin",
    "UTCDateTime",
]

#: Columns of the canonical event table, in order (``id`` is the subject id).
EVENT_COLUMNS: tuple[str, ...] = (
    "id",
    "time",
    "evid",
    "dv",
    "mdv",
    "kind",
    "unit",
    "amt",
    "agent",
    "cmt",
    "rate",
    "dur",
    "on",
    "lloq",
    "cens",
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias), never a BIGINT one.
_BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    Naive datetimes given to the database are taken to be UTC. SQLite has no time zones, so
    values are stored there as naive UTC (ISO text, which sorts and compares correctly).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base holding the store's metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Patient(Base):
    """A subject; ``id`` is the subject id of the event table."""

    __tablename__ = "patients"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime]
    source: Mapped[str | None] = mapped_column(Text)
    covariates: Mapped[dict[str, Any]]


class Ingest(Base):
    """One call of ``Store.ingest``: where the rows came from and how many were kept."""

    __tablename__ = "ingests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    n_rows: Mapped[int]
    n_skipped: Mapped[int]
    n_patients: Mapped[int]
    data_version: Mapped[str] = mapped_column(String(128))


class Event(Base):
    """One row of the canonical event table (observation, dose or switch)."""

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint("evid IN (0, 1, 2)", name="evid"),
        Index(None, "patient_id", "time"),
        Index(None, "ingest_id"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    ingest_id: Mapped[int] = mapped_column(ForeignKey("ingests.id"))
    time: Mapped[float] = mapped_column(Double)
    evid: Mapped[int] = mapped_column(SmallInteger)
    dv: Mapped[float | None] = mapped_column(Double)
    mdv: Mapped[int | None] = mapped_column(SmallInteger)
    kind: Mapped[str | None] = mapped_column(String(64))
    unit: Mapped[str | None] = mapped_column(String(64))
    amt: Mapped[float | None] = mapped_column(Double)
    agent: Mapped[str | None] = mapped_column(String(128))
    cmt: Mapped[int | None] = mapped_column(Integer)
    rate: Mapped[float | None] = mapped_column(Double)
    dur: Mapped[float | None] = mapped_column(Double)
    on: Mapped[float | None] = mapped_column(Double)
    lloq: Mapped[float | None] = mapped_column(Double)
    cens: Mapped[int | None] = mapped_column(SmallInteger)
    recorded_at: Mapped[datetime] = mapped_column(index=True)


class Twin(Base):
    """One calibrated version of a patient's twin; rows are never updated or deleted."""

    __tablename__ = "twins"
    __table_args__ = (UniqueConstraint("patient_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    version: Mapped[int]
    model: Mapped[str] = mapped_column(String(128))
    method: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    data_version: Mapped[str] = mapped_column(String(128))
    data_as_of: Mapped[datetime]
    seed: Mapped[int] = mapped_column(BigInteger)
    oncotwin_version: Mapped[str] = mapped_column(String(64))
    draws: Mapped[bytes] = mapped_column(LargeBinary)
    summary: Mapped[dict[str, Any]]
    diagnostics: Mapped[dict[str, Any]]
    settings: Mapped[dict[str, Any]]
    converged: Mapped[bool] = mapped_column(Boolean)


class Surprise(Base):
    """A new observation outside the previous twin version's 95% predictive interval."""

    __tablename__ = "surprises"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    twin_id: Mapped[int] = mapped_column(ForeignKey("twins.id"), index=True)
    created_at: Mapped[datetime]
    time: Mapped[float] = mapped_column(Double)
    observed: Mapped[float] = mapped_column(Double)
    lo: Mapped[float] = mapped_column(Double)
    hi: Mapped[float] = mapped_column(Double)
    level: Mapped[float] = mapped_column(Double)


class Population(Base):
    """One fitted version of a named population model; rows are never updated or deleted."""

    __tablename__ = "populations"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int]
    model: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    record: Mapped[dict[str, Any]]
    draws: Mapped[bytes] = mapped_column(LargeBinary)


class Forecast(Base):
    """A forecast of one twin under one treatment schedule."""

    __tablename__ = "forecasts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    twin_id: Mapped[int] = mapped_column(ForeignKey("twins.id"), index=True)
    created_at: Mapped[datetime]
    schedule_name: Mapped[str] = mapped_column(String(255))
    schedule: Mapped[dict[str, Any]]
    payload: Mapped[dict[str, Any]]
    seed: Mapped[int | None] = mapped_column(BigInteger)


class Run(Base):
    """A long-running job (demo, calibration, trial) and its outcome."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'done', 'failed')", name="status"),
        Index(None, "kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    params: Mapped[dict[str, Any]]
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)


# -- service: users, care teams, consent, audit, jobs (migration 0003) ------------------------


class User(Base):
    """A person or system using the service; the API token is stored only as a salted hash."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('clinician', 'researcher', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_id: Mapped[str] = mapped_column(String(32), unique=True)
    token_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]


class Team(Base):
    """A care team: clinicians see only the patients assigned to their teams."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime]


class Membership(Base):
    """A user belongs to a team."""

    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), primary_key=True)


class PatientTeam(Base):
    """A patient is cared for by a team."""

    __tablename__ = "patient_teams"

    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), primary_key=True)


class Consent(Base):
    """One consent decision of a patient for a scope; the latest row of a scope holds.

    Rows are never updated: a withdrawal is a new row with ``granted`` false.
    """

    __tablename__ = "consents"
    __table_args__ = (
        CheckConstraint("scope IN ('care', 'research', 'sharing')", name="scope"),
        Index(None, "patient_id", "scope"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    scope: Mapped[str] = mapped_column(String(16))
    granted: Mapped[bool] = mapped_column(Boolean)
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime | None]
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[str] = mapped_column(String(128))


class AuditEntry(Base):
    """One entry of the append-only, hash-chained audit log.

    ``hash`` = sha256(``prev_hash`` + canonical JSON of the entry's content); ``seq`` counts
    from 1 without gaps, so an edited, inserted or deleted entry breaks the chain.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(String(255))
    patient_id: Mapped[str | None] = mapped_column(String(128), index=True)
    purpose: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The newest audit entry's sequence number and hash (a deleted last entry shows here)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class Job(Base):
    """A background job of the service (twin creation, update, ...) with its progress."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status"),
        Index(None, "kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    patient_id: Mapped[str | None] = mapped_column(String(128))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    label: Mapped[str | None] = mapped_column(Text)
    done: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]]
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
