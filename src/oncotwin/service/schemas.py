"""Request and response bodies of the service API (pydantic), kept apart from the store tables.

Every number a client sends must be finite; strings and lists have upper bounds, so a request
is validated at the edge and the inside trusts it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["clinician", "researcher", "admin"]
Scope = Literal["care", "research", "sharing"]
Name = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:@-]*$")
Label = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._/%^()-]*$")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Out(BaseModel):
    model_config = ConfigDict(allow_inf_nan=True)


# -- auth and users -----------------------------------------------------------------------


class TokenOut(_Out):
    """A short-lived access token (OAuth2 password flow)."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds until the token expires")
    role: Role
    name: str


class MeOut(_Out):
    """The user behind the request."""

    name: str
    role: Role
    teams: list[str]


class UserIn(_In):
    """A new user."""

    name: str = Name
    role: Role
    teams: list[str] = Field(default_factory=list, max_length=50)


class UserOut(_Out):
    """A user (never the token)."""

    name: str
    role: Role
    teams: list[str]
    active: bool
    created_at: datetime


class UserCreatedOut(_Out):
    """A new user and its API token; the token is shown only this once."""

    user: UserOut
    token: str


class ActiveIn(_In):
    """Enable or disable an account."""

    active: bool


class TeamIn(_In):
    """A new care team."""

    name: str = Name


class TeamOut(_Out):
    """A care team, its members and its patients."""

    name: str
    members: list[str]
    patients: list[str]


# -- patients and events --------------------------------------------------------------------


class PatientIn(_In):
    """A new patient in the care of `team` (events are posted separately)."""

    id: str = Name
    team: str = Field(min_length=1, max_length=128)
    covariates: dict[str, float | int | str | bool | None] = Field(
        default_factory=dict, max_length=50
    )


class PatientSummaryOut(_Out):
    """One line of the patient list."""

    id: str
    n_observations: int
    n_doses: int
    first_time: float | None = Field(description="days")
    last_time: float | None = Field(description="days")
    twin_version: int | None
    twin_model: str | None
    twin_converged: bool | None
    n_surprises: int
    teams: list[str]


class EventIn(_In):
    """One row of the canonical event table (see docs/data.md): units as there."""

    time: float = Field(ge=-1e6, le=1e6, description="days")
    evid: Literal[0, 1, 2] = 0
    dv: float | None = Field(default=None, description="observed value, canonical unit")
    mdv: Literal[0, 1] | None = None
    kind: str | None = Field(default=None, max_length=64)
    unit: str | None = Field(default=None, max_length=64)
    amt: float | None = Field(default=None, ge=0, description="dose amount in `unit`")
    agent: str | None = Field(default=None, max_length=128)
    cmt: int | None = Field(default=None, ge=0, le=1000)
    rate: float | None = Field(default=None, ge=0, description="amount/day")
    dur: float | None = Field(default=None, ge=0, description="days")
    on: float | None = Field(default=None, ge=0, le=1)
    lloq: float | None = Field(default=None, ge=0)
    cens: Literal[0, 1] | None = None


class EventsIn(_In):
    """Events of one patient to ingest in one transaction."""

    events: list[EventIn] = Field(min_length=1, max_length=10_000)


class IngestOut(_Out):
    """Outcome of an ingest: rows offered, written, and skipped as already stored."""

    ingest_id: int
    n_rows: int
    n_inserted: int
    n_skipped: int
    data_version: str


class ConsentIn(_In):
    """A consent decision for one scope (validity dates UTC; default from now, open)."""

    scope: Scope
    granted: bool
    valid_from: datetime | None = None
    valid_until: datetime | None = None


class ConsentOut(_Out):
    """A recorded consent decision; `holds` says whether it applies now."""

    scope: Scope
    granted: bool
    valid_from: datetime
    valid_until: datetime | None
    recorded_at: datetime
    recorded_by: str
    holds: bool


class TwinOut(_Out):
    """A stored twin version (without its posterior draws)."""

    id: int
    version: int
    model: str
    method: str
    created_at: datetime
    data_version: str
    data_as_of: datetime
    seed: int
    converged: bool
    oncotwin_version: str
    diagnostics: dict[str, Any]
    summary: dict[str, Any]


class PatientOut(_Out):
    """A patient's data, consent, care teams and twin versions."""

    id: str
    covariates: dict[str, Any]
    teams: list[str]
    events: list[dict[str, Any]]
    consent: list[ConsentOut]
    twins: list[TwinOut]


# -- twins, jobs, forecasts -------------------------------------------------------------------


class TwinIn(_In):
    """Calibrate a new twin version on everything stored now."""

    model: str = Field(default="gompertz", min_length=1, max_length=64,
                       pattern=r"^[a-z][a-z0-9_]*$")  # fmt: skip
    method: Literal["nuts", "laplace"] | None = None
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    draws: int | None = Field(default=None, ge=10, le=4000)
    chains: int | None = Field(default=None, ge=1, le=8)
    warmup: int | None = Field(default=None, ge=10, le=4000)


class TwinUpdateIn(_In):
    """Assimilate the data stored since the latest twin version."""

    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class JobOut(_Out):
    """A background job and its progress (`done` of `total` steps)."""

    id: int
    kind: str
    status: Literal["queued", "running", "done", "failed"]
    patient_id: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    label: str | None
    done: int
    total: int
    progress: float = Field(description="0 to 1")
    result: dict[str, Any] | None
    error: str | None


class DoseIn(_In):
    """Repeated doses: `count` doses of `amount` every `every` days from `start`."""

    agent: str = Field(default="drug", min_length=1, max_length=64)
    amount: float = Field(gt=0, le=1e6)
    unit: str = Field(default="mg", min_length=1, max_length=32)
    start: float = Field(ge=-1e5, le=1e5, description="days")
    every: float = Field(default=0.0, ge=0, le=1e4, description="days")
    count: int = Field(default=1, ge=1, le=500)
    duration: float = Field(default=0.0, ge=0, le=365, description="days")


class PeriodIn(_In):
    """An agent switched on from `start` to `end` (days; open-ended when None)."""

    agent: str = Field(min_length=1, max_length=64)
    start: float = Field(ge=-1e5, le=1e5)
    end: float | None = Field(default=None, ge=-1e5, le=1e5)


class ScheduleIn(_In):
    """A treatment plan from the last observation on (same format as regimen files)."""

    doses: list[DoseIn] = Field(default_factory=list, max_length=100)
    periods: list[PeriodIn] = Field(default_factory=list, max_length=50)
    half_life: dict[str, float] = Field(default_factory=dict, max_length=20)


class NamedScheduleIn(_In):
    """A named alternative plan to forecast."""

    name: str = Label
    schedule: ScheduleIn
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class ForecastOut(_Out):
    """A stored forecast under one named schedule (values in `unit`, times in days)."""

    schedule_name: str
    created_at: datetime
    seed: int | None
    times: list[float]
    median: list[float | None]
    lo50: list[float | None]
    hi50: list[float | None]
    lo90: list[float | None]
    hi90: list[float | None]
    kind: str
    unit: str
    warning: str | None
    provenance: dict[str, Any]
    schedule: dict[str, Any]


class ObservationsOut(_Out):
    """The observations the twin was calibrated on."""

    times: list[float]
    values: list[float]
    censored: list[bool]


class ForecastsOut(_Out):
    """Forecasts of the latest twin version under each named schedule."""

    patient_id: str
    twin_version: int
    converged: bool
    warning: str | None
    last_observation: float
    kind: str
    unit: str
    observations: ObservationsOut
    forecasts: list[ForecastOut]
    treatment_effect: bool = Field(
        description="False when the twin's model has no treatment effect: every plan then "
        "forecasts the same course"
    )


class SurpriseOut(_Out):
    """An observation outside the previous twin version's predictive interval."""

    twin_version: int
    time: float
    observed: float
    lo: float
    hi: float
    level: float


class RecommendationOut(_Out):
    """The latest treatment recommendation, if an optimisation produced one."""

    available: bool
    message: str
    recommendation: dict[str, Any] | None = None
    job_id: int | None = Field(default=None, description="the optimisation job behind it")


Modality = Literal["radiotherapy", "chemotherapy", "radiopharmaceutical", "hormone"]
#: Text of an objective, risk measure or constraint as the CLI takes it ("burden:180",
#: "cvar:0.9", "ntcp:brain<=0.05", "kidneys-bed:40@0.05"); parsed by oncotwin.optimize.
Spec = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:<=@+ -]*$")
]


class RecommendationIn(_In):
    """Optimise a schedule for the patient's latest twin (a background job).

    `objective`, `risk` and `constraints` are written as for ``oncotwin optimize``; see
    docs/optimize.md.
    """

    modality: Modality
    objective: Spec | None = Field(
        default=None, description="burden:DAYS, auc:DAYS, control:DAYS, ttp, regrowth, tcp or "
        "resistance (default: regrowth for radiation, burden:180 for chemotherapy, resistance "
        "for hormone therapy)",
    )  # fmt: skip
    constraints: list[Spec] = Field(
        default_factory=list, max_length=20, description="extra constraints on top of the "
        "modality's defaults: max-dose:X, cumulative:X, weekdays, rest:DAYS, whole:SIZE, "
        "oar-bed:GY, ntcp:ORGAN<=P, neutropenia:GRADE<=P, ORGAN-bed:GY@EPS, ORGAN-dose:GY@EPS",
    )  # fmt: skip
    risk: Spec = Field(default="cvar:0.9", description="mean, quantile:A or cvar:A over draws")
    draws: int = Field(default=200, ge=10, le=1000, description="posterior draws")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    top: int = Field(default=3, ge=1, le=10, description="best schedules returned")
    threshold: float = Field(
        default=0.8, ge=0.5, le=0.99,
        description="probability of beating the standard of care for a confident advice",
    )  # fmt: skip


# -- audit ------------------------------------------------------------------------------------


class AuditOut(_Out):
    """One audit entry."""

    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    resource: str
    patient_id: str | None
    purpose: str
    outcome: str
    detail: dict[str, Any]
    hash: str


class VerifyOut(_Out):
    """Result of verifying the audit chain."""

    ok: bool
    n_entries: int
    head: str
    problems: list[str]


# -- research ----------------------------------------------------------------------------------


class ResearchPatientOut(_Out):
    """A consenting patient, pseudonymised, with counts."""

    pseudonym: str
    n_observations: int
    n_doses: int
    twin_model: str | None


class ResearchPatientsOut(_Out):
    """Consenting patients; `n_excluded` did not consent to research use."""

    patients: list[ResearchPatientOut]
    n_included: int
    n_excluded: int


class ResearchExportOut(_Out):
    """A pseudonymised, date-shifted event table of consenting patients."""

    events: list[dict[str, Any]]
    n_included: int
    n_excluded: int
    dropped_columns: list[str]
    max_shift_days: int


class CohortOut(_Out):
    """Cohort summary of consenting patients."""

    n_included: int
    n_excluded: int
    n_with_twin: int
    n_converged: int
    models: dict[str, int]
    n_surprises: int


class SyntheticIn(_In):
    """Draw a synthetic cohort from a stored population model."""

    population: str = Field(min_length=1, max_length=128)
    version: int | None = Field(default=None, ge=1, le=10**6)
    n: int = Field(default=20, ge=1, le=1000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    times: list[Annotated[float, Field(ge=0, le=3650)]] = Field(
        default_factory=lambda: [0.0, 7.0, 14.0, 21.0, 28.0],
        min_length=1,
        max_length=100,
        description="observation times, days",
    )
    min_distance: float = Field(default=0.1, ge=0, le=10)


class TrialIn(_In):
    """Simulate a virtual trial (a background job): the design as in a YAML design file."""

    design: dict[str, Any] = Field(
        description="the trial design, same fields as the YAML files of docs/trials.md "
        "(regimens inline: naming a regimen file is refused)",
    )  # fmt: skip
    n: int = Field(default=200, ge=2, le=2000, description="patients per trial")
    replicates: int = Field(default=1, ge=1, le=50, description="replicate trials")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1,
                             description="random seed (default: the design's)")  # fmt: skip


class SyntheticOut(_Out):
    """A synthetic cohort (no real rows) and its check against the real patients."""

    events: list[dict[str, Any]]
    params: list[dict[str, Any]]
    seed: int
    check: dict[str, Any]
    population: str
    version: int
