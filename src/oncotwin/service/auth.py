"""Authentication (API tokens, short-lived access tokens) and authorisation (roles, care teams).

Two kinds of bearer token are accepted in ``Authorization: Bearer <token>``:

* **API tokens** ``otk_<id>_<secret>``, issued once per user by an admin (stored as scrypt
  hashes; see :mod:`oncotwin.store.security`).
* **Access tokens** ``ots.<payload>.<signature>`` from ``POST /api/auth/token`` (OAuth2
  password flow: user name, and the API token as password), valid ``access_token_ttl_s``
  seconds and signed with HMAC-SHA256 under the service's secret key. Rotating a user's API
  token or disabling the account revokes them.

Roles: a **clinician** sees identified data of the patients in the care of their teams; a
**researcher** sees pseudonymised data of patients who consented to research use; an
**admin** manages users and teams and reads the audit log. Every decision is audited.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import OAuth2PasswordBearer

from ..store import Store
from ..store.audit import AuditLog
from ..store.security import Security, UserRecord, split_token, verify_secret
from .settings import Settings

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)
DEFAULT_PURPOSE = {"clinician": "care", "researcher": "research", "admin": "administration"}
_ACCESS_PREFIX = "ots"


@dataclass
class ServiceState:
    """Everything a request handler needs, held by the app (``app.state.svc``)."""

    settings: Settings
    store: Store
    security: Security
    audit: AuditLog
    jobs: Any  # JobRunner (jobs.py imports this module)
    verified: dict[str, str] = field(default_factory=dict)  # sha256(token) -> token_hash
    locks: dict[str, threading.Lock] = field(default_factory=dict)
    twin_info: dict[int, dict[str, Any]] = field(default_factory=dict)  # by twin row id
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def lock(self, key: str) -> threading.Lock:
        """A lock per key (e.g. a patient id), so one computation runs at a time per key."""
        with self._guard:
            return self.locks.setdefault(key, threading.Lock())


@dataclass(frozen=True)
class Principal:
    """The authenticated user of a request."""

    user_id: int
    name: str
    role: str
    teams: tuple[str, ...]


class Ctx:
    """A request's user, purpose and patient, with the service; records audit entries."""

    def __init__(
        self, svc: ServiceState, principal: Principal, request: Request,
        patient_id: str | None = None,
    ) -> None:  # fmt: skip
        self.svc, self.principal, self.patient_id = svc, principal, patient_id
        route = request.scope.get("route")
        path = getattr(route, "path", None) or request.url.path
        self.resource = f"{request.method} {path}"
        purpose = request.headers.get("x-purpose", "").strip()[:64]
        self.purpose = purpose or DEFAULT_PURPOSE[principal.role]

    def record(
        self, action: str, *, patient_id: str | None = None, detail: Mapping[str, Any] | None = None,
        outcome: str = "ok",
    ) -> None:  # fmt: skip
        """Append an audit entry for this request (`patient_id` defaults to the route's)."""
        self.svc.audit.append(
            actor=self.principal.name, role=self.principal.role, action=action,
            resource=self.resource, patient_id=patient_id or self.patient_id,
            purpose=self.purpose, outcome=outcome, detail=detail,
        )  # fmt: skip


def state(request: Request) -> ServiceState:
    """The service state of the app serving `request`."""
    svc: ServiceState = request.app.state.svc
    return svc


# -- tokens -----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_access_token(
    secret: bytes, user: UserRecord, ttl_s: int, now: float | None = None
) -> str:
    """A signed access token for `user`, valid `ttl_s` seconds from `now` (epoch seconds)."""
    exp = int((time.time() if now is None else now) + ttl_s)
    payload = _b64(json.dumps({"sub": user.id, "tid": user.token_id, "exp": exp},
                              separators=(",", ":")).encode())  # fmt: skip
    sig = _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())
    return f"{_ACCESS_PREFIX}.{payload}.{sig}"


def read_access_token(secret: bytes, token: str, now: float | None = None) -> dict[str, Any] | None:
    """The claims of a valid, unexpired access token, else None."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _ACCESS_PREFIX:
        return None
    want = _b64(hmac.new(secret, parts[1].encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(want, parts[2]):
        return None
    try:
        claims = json.loads(_unb64(parts[1]))
        if not isinstance(claims, dict) or int(claims["exp"]) <= (now or time.time()):
            return None
        return claims
    except (ValueError, KeyError, TypeError):
        return None


def check_api_token(svc: ServiceState, token: str) -> UserRecord | None:
    """The active user holding API token `token`, else None (scrypt, cached per token)."""
    parts = split_token(token)
    if parts is None:
        return None
    user = svc.security.user_by_token_id(parts[0])
    if user is None or not user.active:
        return None
    key = hashlib.sha256(token.encode()).hexdigest()
    cached = svc.verified.get(key)
    if cached is not None and hmac.compare_digest(cached, user.token_hash):
        return user
    if not verify_secret(parts[1], user.token_hash):
        return None
    if len(svc.verified) > 10_000:
        svc.verified.clear()
    svc.verified[key] = user.token_hash
    return user


def _unauthorised(detail: str = "missing or invalid credentials") -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def authenticate(request: Request, token: str | None = Depends(oauth2_scheme)) -> Principal:
    """The user behind the bearer token; 401 when there is none or it is not valid."""
    if not token:
        raise _unauthorised()
    svc = state(request)
    user: UserRecord | None = None
    if token.startswith(_ACCESS_PREFIX + "."):
        claims = read_access_token(svc.settings.secret_key, token)
        if claims is not None:
            try:
                user = svc.security.user_by_id(int(claims["sub"]))
            except (KeyError, ValueError, LookupError):
                user = None
            if user is not None and (not user.active or user.token_id != claims.get("tid")):
                user = None
    else:
        user = check_api_token(svc, token)
    if user is None:
        raise _unauthorised()
    return Principal(user.id, user.name, user.role, user.teams)


def allow(*roles: str) -> Callable[..., Ctx]:
    """Dependency: the request's context when the user has one of `roles`, else 403."""

    def dependency(request: Request, principal: Principal = Depends(authenticate)) -> Ctx:
        ctx = Ctx(state(request), principal, request)
        if principal.role not in roles:
            ctx.record("access", outcome="denied", detail={"needs": list(roles)})
            raise HTTPException(403, f"this needs the role {' or '.join(roles)}")
        return ctx

    dependency.__name__ = f"allow_{'_'.join(roles)}"
    return dependency


def patient_access(
    request: Request,
    patient_id: str = Path(min_length=1, max_length=128),
    principal: Principal = Depends(authenticate),
) -> Ctx:
    """Dependency: a clinician of a care team of the patient; 403 otherwise.

    The answer is the same whether or not the patient exists, so ids cannot be probed.
    """
    svc = state(request)
    ctx = Ctx(svc, principal, request, patient_id)
    if principal.role != "clinician":
        ctx.record("access", outcome="denied", detail={"needs": ["clinician"]})
        raise HTTPException(403, "identified patient data is for clinicians of the care team")
    if not set(svc.security.patient_teams(patient_id)) & set(principal.teams):
        ctx.record("access", outcome="denied", detail={"reason": "not in a care team"})
        raise HTTPException(403, "this patient is not in the care of your teams")
    return ctx
