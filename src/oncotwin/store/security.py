"""Users, care teams, patient assignments, consent and background jobs of the service.

Works on an open :class:`~oncotwin.store.Store` (same database, same transactions rules).
API tokens are never stored: only a salted scrypt hash of their secret part (RFC 7914;
parameters n=2^14, r=8, p=1 as recommended for interactive logins), compared in constant time.
A token reads ``otk_<token id>_<secret>``; the token id (not secret) finds the user row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from oncotwin.errors import DataError, NotFoundError, StoreError
from oncotwin.store.repository import Store, _jsonable, _utc
from oncotwin.store.tables import Consent, Job, Membership, Patient, PatientTeam, Team, User

ROLES = ("clinician", "researcher", "admin")
SCOPES = ("care", "research", "sharing")
JOB_STATUSES = ("queued", "running", "done", "failed")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_TOKEN_PREFIX = "otk"


@dataclass(frozen=True)
class UserRecord:
    """A service user: role, care teams (names) and whether the account is active."""

    id: int
    name: str
    role: str
    teams: tuple[str, ...]
    active: bool
    created_at: datetime
    token_id: str
    token_hash: str


@dataclass(frozen=True)
class ConsentRecord:
    """One consent decision: scope ("care", "research", "sharing"), granted, validity dates."""

    id: int
    patient_id: str
    scope: str
    granted: bool
    valid_from: datetime
    valid_until: datetime | None
    recorded_at: datetime
    recorded_by: str

    def holds(self, at: datetime) -> bool:
        """True when consent is granted and `at` lies in [valid_from, valid_until)."""
        at = _utc(at)
        return (
            self.granted
            and self.valid_from <= at
            and (self.valid_until is None or at < self.valid_until)
        )


@dataclass(frozen=True)
class JobRecord:
    """A background job: status "queued", "running", "done" or "failed", and its progress."""

    id: int
    kind: str
    status: str
    patient_id: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    label: str | None
    done: int
    total: int
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None


# -- tokens ----------------------------------------------------------------------------------


def new_token() -> tuple[str, str]:
    """A fresh API token and its token id: (``otk_<id>_<secret>``, id)."""
    token_id = secrets.token_hex(8)
    return f"{_TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}", token_id


def split_token(token: str) -> tuple[str, str] | None:
    """(token id, secret) of a well-formed token, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != _TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$<salt hex>$<hash hex>`` of a token secret (random 16-byte salt)."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    n, r, p = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    """True when `secret` hashes to `stored` (constant-time comparison)."""
    try:
        algo, n, r, p, salt, want = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(
            secret.encode(), salt=bytes.fromhex(salt), dklen=32, n=int(n), r=int(r), p=int(p)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), want)


# -- the repository --------------------------------------------------------------------------


class Security:
    """Users, teams, patient-team assignments, consent and jobs in a Store's database.

    Args:
        store: an open store (its schema includes revision 0003).
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    # users and teams ---------------------------------------------------------------------

    def add_user(self, name: str, role: str, teams: Iterable[str] = ()) -> tuple[UserRecord, str]:
        """Create a user with a new API token; returns (user, token). The token is shown once.

        Raises:
            DataError: unknown role or empty name.
            NotFoundError: a team does not exist.
            StoreError: the name is taken.
        """
        name = str(name).strip()
        if not name or len(name) > 128:
            raise DataError("a user name must have 1 to 128 characters", column="name")
        if role not in ROLES:
            raise DataError(f"unknown role {role!r}; roles: {', '.join(ROLES)}", column="role")
        token, token_id = new_token()
        try:
            with self.store._tx("add user", write=True) as s:
                if s.scalar(select(User.id).where(User.name == name)) is not None:
                    raise StoreError(f"a user named {name!r} already exists")
                team_ids = [self._team_id(s, t) for t in teams]
                u = User(
                    name=name, role=role, token_id=token_id,
                    token_hash=hash_secret(token.split("_", 2)[2]), active=True,
                    created_at=self.store._now(),
                )  # fmt: skip
                s.add(u)
                s.flush()
                s.add_all(Membership(user_id=u.id, team_id=t) for t in team_ids)
        except IntegrityError as exc:  # pragma: no cover - a concurrent insert of the name
            raise StoreError(f"a user named {name!r} already exists") from exc
        return self.user(name), token

    def rotate_token(self, name: str) -> str:
        """Replace a user's API token (the old one stops working); returns the new token."""
        token, token_id = new_token()
        with self.store._tx("rotate token", write=True) as s:
            u = self._user_row(s, name)
            u.token_id, u.token_hash = token_id, hash_secret(token.split("_", 2)[2])
        return token

    def set_active(self, name: str, active: bool) -> UserRecord:
        """Enable or disable a user's account (disabled users get 401 everywhere)."""
        with self.store._tx("update user", write=True) as s:
            self._user_row(s, name).active = bool(active)
        return self.user(name)

    def user(self, name: str) -> UserRecord:
        """A user by name. Raises NotFoundError."""
        with self.store._tx("read user") as s:
            return self._record(s, self._user_row(s, name))

    def user_by_id(self, user_id: int) -> UserRecord:
        """A user by id. Raises NotFoundError."""
        with self.store._tx("read user") as s:
            u = s.get(User, int(user_id))
            if u is None:
                raise NotFoundError(f"no user with id {user_id}")
            return self._record(s, u)

    def user_by_token_id(self, token_id: str) -> UserRecord | None:
        """The user holding the token with this id, or None."""
        with self.store._tx("read user") as s:
            u = s.scalars(select(User).where(User.token_id == token_id)).first()
            return None if u is None else self._record(s, u)

    def users(self) -> list[UserRecord]:
        """Every user, by name."""
        with self.store._tx("list users") as s:
            return [self._record(s, u) for u in s.scalars(select(User).order_by(User.name))]

    def add_team(self, name: str) -> str:
        """Create a care team (no-op when it exists); returns its name."""
        name = str(name).strip()
        if not name or len(name) > 128:
            raise DataError("a team name must have 1 to 128 characters", column="name")
        with self.store._tx("add team", write=True) as s:
            if s.scalar(select(Team.id).where(Team.name == name)) is None:
                s.add(Team(name=name, created_at=self.store._now()))
        return name

    def teams(self) -> list[dict[str, Any]]:
        """Every team with its members and patients."""
        with self.store._tx("list teams") as s:
            out = []
            for t in s.scalars(select(Team).order_by(Team.name)):
                members = s.scalars(
                    select(User.name).join(Membership, Membership.user_id == User.id)
                    .where(Membership.team_id == t.id).order_by(User.name)
                )  # fmt: skip
                patients = s.scalars(
                    select(PatientTeam.patient_id).where(PatientTeam.team_id == t.id)
                    .order_by(PatientTeam.patient_id)
                )  # fmt: skip
                out.append({"name": t.name, "members": list(members), "patients": list(patients)})
            return out

    def add_member(self, team: str, user: str) -> None:
        """Put a user in a team (no-op when already there)."""
        with self.store._tx("add member", write=True) as s:
            tid, uid = self._team_id(s, team), self._user_row(s, user).id
            if s.get(Membership, (uid, tid)) is None:
                s.add(Membership(user_id=uid, team_id=tid))

    def remove_member(self, team: str, user: str) -> None:
        """Take a user out of a team."""
        with self.store._tx("remove member", write=True) as s:
            tid, uid = self._team_id(s, team), self._user_row(s, user).id
            s.execute(
                delete(Membership).where(Membership.user_id == uid, Membership.team_id == tid)
            )

    # patients ----------------------------------------------------------------------------

    def create_patient(
        self, patient_id: str, team: str, covariates: Mapping[str, Any] | None = None
    ) -> None:
        """Register a patient (no events yet) in the care of `team`.

        Raises:
            DataError: empty or over-long id. StoreError: the patient exists already.
        """
        pid = str(patient_id)
        if not pid.strip() or len(pid) > 128:
            raise DataError("a patient id must have 1 to 128 characters", column="id")
        with self.store._tx("create patient", write=True) as s:
            tid = self._team_id(s, team)
            if s.get(Patient, pid) is not None:
                raise StoreError(f"patient {pid!r} exists already")
            s.add(Patient(id=pid, created_at=self.store._now(), source="service",
                          covariates=_jsonable(dict(covariates or {}))))  # fmt: skip
            s.flush()
            s.add(PatientTeam(patient_id=pid, team_id=tid))

    def assign_patient(self, patient_id: str, team: str) -> None:
        """Put a stored patient in the care of `team` (no-op when already there)."""
        with self.store._tx("assign patient", write=True) as s:
            self.store._require_patient(s, patient_id)
            tid = self._team_id(s, team)
            if s.get(PatientTeam, (patient_id, tid)) is None:
                s.add(PatientTeam(patient_id=patient_id, team_id=tid))

    def patient_teams(self, patient_id: str) -> list[str]:
        """Names of the teams caring for a patient (empty when none or no such patient)."""
        with self.store._tx("read patient teams") as s:
            q = (
                select(Team.name).join(PatientTeam, PatientTeam.team_id == Team.id)
                .where(PatientTeam.patient_id == patient_id).order_by(Team.name)
            )  # fmt: skip
            return list(s.scalars(q))

    def team_patients(self, teams: Iterable[str]) -> list[str]:
        """Ids of the patients in the care of any of `teams`, sorted."""
        names = list(teams)
        if not names:
            return []
        with self.store._tx("read team patients") as s:
            q = (
                select(PatientTeam.patient_id).join(Team, Team.id == PatientTeam.team_id)
                .where(Team.name.in_(names)).distinct()
            )  # fmt: skip
            return sorted(s.scalars(q))

    # consent -----------------------------------------------------------------------------

    def record_consent(
        self,
        patient_id: str,
        scope: str,
        granted: bool,
        *,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        recorded_by: str,
    ) -> ConsentRecord:
        """Record a consent decision (a new row; earlier decisions are kept).

        Args:
            scope: "care", "research" or "sharing".
            valid_from, valid_until: validity window, UTC (default: from now, open-ended).

        Raises:
            DataError: unknown scope, or valid_until not after valid_from.
            NotFoundError: no such patient.
        """
        if scope not in SCOPES:
            raise DataError(f"unknown consent scope {scope!r}; scopes: {', '.join(SCOPES)}",
                            column="scope")  # fmt: skip
        now = self.store._now()
        start = now if valid_from is None else _utc(valid_from)
        end = None if valid_until is None else _utc(valid_until)
        if end is not None and end <= start:
            raise DataError("valid_until must be after valid_from", column="valid_until")
        with self.store._tx("record consent", write=True) as s:
            self.store._require_patient(s, patient_id)
            c = Consent(patient_id=patient_id, scope=scope, granted=bool(granted),
                        valid_from=start, valid_until=end, recorded_at=now,
                        recorded_by=str(recorded_by))  # fmt: skip
            s.add(c)
            s.flush()
            return _consent(c)

    def consents(self, patient_id: str) -> list[ConsentRecord]:
        """Every consent decision of a patient, oldest first."""
        with self.store._tx("read consent") as s:
            self.store._require_patient(s, patient_id)
            q = select(Consent).where(Consent.patient_id == patient_id).order_by(Consent.id)
            return [_consent(c) for c in s.scalars(q)]

    def consenting(
        self, scope: str, patient_ids: Iterable[str] | None = None, *, at: datetime | None = None
    ) -> tuple[list[str], list[str]]:
        """(patients whose latest `scope` decision holds at `at`, the others), both sorted.

        Default: all stored patients, at the store's current time.
        """
        at = self.store._now() if at is None else _utc(at)
        with self.store._tx("read consent") as s:
            ids = list(s.scalars(select(Patient.id))) if patient_ids is None else list(patient_ids)
            q = select(Consent).where(Consent.scope == scope)
            if patient_ids is not None and len(ids) <= 500:  # a few patients: only their rows
                q = q.where(Consent.patient_id.in_(ids))
            latest: dict[str, Consent] = {}
            for c in s.scalars(q.order_by(Consent.id)):
                latest[c.patient_id] = c
            yes = sorted(p for p in ids if p in latest and _consent(latest[p]).holds(at))
        no = sorted(set(ids) - set(yes))
        return yes, no

    # jobs --------------------------------------------------------------------------------

    def create_job(
        self, kind: str, *, created_by: str, patient_id: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> int:  # fmt: skip
        """Record a queued job; returns its id."""
        with self.store._tx("create job", write=True) as s:
            j = Job(kind=str(kind), status="queued", patient_id=patient_id,
                    created_by=str(created_by), created_at=self.store._now(), done=0, total=0,
                    params=_jsonable(dict(params or {})))  # fmt: skip
            s.add(j)
            s.flush()
            return j.id

    def update_job(self, job_id: int, **values: Any) -> None:
        """Set fields of a job (status, label, done, total, result, error, timestamps)."""
        allowed = {"status", "label", "done", "total", "result", "error", "started_at",
                   "finished_at"}  # fmt: skip
        bad = set(values) - allowed
        if bad:
            raise StoreError(f"cannot set job field(s) {sorted(bad)}")
        if "status" in values and values["status"] not in JOB_STATUSES:
            raise StoreError(f"unknown job status {values['status']!r}")
        if values.get("result") is not None:
            values["result"] = _jsonable(dict(values["result"]))
        with self.store._tx("update job", write=True) as s:
            j = s.get(Job, int(job_id))
            if j is None:
                raise NotFoundError(f"no job {job_id}")
            for k, v in values.items():
                setattr(j, k, v)

    def job(self, job_id: int) -> JobRecord:
        """One job. Raises NotFoundError."""
        with self.store._tx("read job") as s:
            j = s.get(Job, int(job_id))
            if j is None:
                raise NotFoundError(f"no job {job_id}")
            return _job(j)

    def jobs(
        self, *, created_by: str | None = None, kind: str | None = None,
        patient_id: str | None = None,
    ) -> list[JobRecord]:  # fmt: skip
        """Jobs, newest first, filtered by creator, kind and patient."""
        q = select(Job).order_by(Job.id.desc())
        if created_by is not None:
            q = q.where(Job.created_by == created_by)
        if kind is not None:
            q = q.where(Job.kind == kind)
        if patient_id is not None:
            q = q.where(Job.patient_id == patient_id)
        with self.store._tx("read jobs") as s:
            return [_job(j) for j in s.scalars(q)]

    # helpers -----------------------------------------------------------------------------

    def _user_row(self, s: Any, name: str) -> User:
        u = s.scalars(select(User).where(User.name == name)).first()
        if u is None:
            raise NotFoundError(f"no user named {name!r}")
        return u

    def _team_id(self, s: Any, name: str) -> int:
        tid = s.scalar(select(Team.id).where(Team.name == name))
        if tid is None:
            raise NotFoundError(f"no team named {name!r}")
        return int(tid)

    def _record(self, s: Any, u: User) -> UserRecord:
        teams = s.scalars(
            select(Team.name).join(Membership, Membership.team_id == Team.id)
            .where(Membership.user_id == u.id).order_by(Team.name)
        )  # fmt: skip
        return UserRecord(u.id, u.name, u.role, tuple(teams), u.active, u.created_at,
                          u.token_id, u.token_hash)  # fmt: skip


def _consent(c: Consent) -> ConsentRecord:
    return ConsentRecord(c.id, c.patient_id, c.scope, c.granted, c.valid_from, c.valid_until,
                         c.recorded_at, c.recorded_by)  # fmt: skip


def _job(j: Job) -> JobRecord:
    return JobRecord(j.id, j.kind, j.status, j.patient_id, j.created_by, j.created_at,
                     j.started_at, j.finished_at, j.label, j.done, j.total, dict(j.params),
                     None if j.result is None else dict(j.result), j.error)  # fmt: skip
