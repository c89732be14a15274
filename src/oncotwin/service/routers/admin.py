"""Administration: users, care teams, patient assignments, and the audit log."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query

from ...store.security import UserRecord
from ..auth import Ctx, allow
from ..schemas import (
    ActiveIn,
    AuditOut,
    TeamIn,
    TeamOut,
    UserCreatedOut,
    UserIn,
    UserOut,
    VerifyOut,
)
from .common import audit_out

router = APIRouter(prefix="/api", tags=["admin"])
admin = allow("admin")
NamePath = Path(min_length=1, max_length=128)


def _user(u: UserRecord) -> UserOut:
    return UserOut.model_validate(
        {"name": u.name, "role": u.role, "teams": list(u.teams), "active": u.active,
         "created_at": u.created_at}
    )  # fmt: skip


@router.get("/admin/users", response_model=list[UserOut], summary="Users")
def list_users(ctx: Ctx = Depends(admin)) -> list[UserOut]:
    """Every user (tokens are never shown)."""
    ctx.record("admin")
    return [_user(u) for u in ctx.svc.security.users()]


@router.post("/admin/users", status_code=201, response_model=UserCreatedOut, summary="Add a user")
def add_user(body: UserIn, ctx: Ctx = Depends(admin)) -> UserCreatedOut:
    """Create a user; the answer holds the API token, shown only this once."""
    user, token = ctx.svc.security.add_user(body.name, body.role, body.teams)
    ctx.record("admin", detail={"user": user.name, "role": user.role, "created": True})
    return UserCreatedOut(user=_user(user), token=token)


@router.post("/admin/users/{name}/token", response_model=UserCreatedOut, summary="New token")
def rotate(name: str = NamePath, ctx: Ctx = Depends(admin)) -> UserCreatedOut:
    """Replace a user's API token (the old one and its access tokens stop working)."""
    token = ctx.svc.security.rotate_token(name)
    ctx.record("admin", detail={"user": name, "token_rotated": True})
    return UserCreatedOut(user=_user(ctx.svc.security.user(name)), token=token)


@router.put("/admin/users/{name}/active", response_model=UserOut, summary="Enable or disable")
def set_active(body: ActiveIn, name: str = NamePath, ctx: Ctx = Depends(admin)) -> UserOut:
    """Enable or disable an account."""
    user = ctx.svc.security.set_active(name, body.active)
    ctx.record("admin", detail={"user": name, "active": body.active})
    return _user(user)


@router.get("/admin/teams", response_model=list[TeamOut], summary="Care teams")
def list_teams(ctx: Ctx = Depends(admin)) -> list[TeamOut]:
    """Every care team with its members and patients."""
    ctx.record("admin")
    return [TeamOut(**t) for t in ctx.svc.security.teams()]


@router.post("/admin/teams", status_code=201, response_model=TeamOut, summary="Add a team")
def add_team(body: TeamIn, ctx: Ctx = Depends(admin)) -> TeamOut:
    """Create a care team (no-op when it exists)."""
    name = ctx.svc.security.add_team(body.name)
    ctx.record("admin", detail={"team": name})
    return next(TeamOut(**t) for t in ctx.svc.security.teams() if t["name"] == name)


@router.put("/admin/teams/{team}/members/{name}", status_code=204, summary="Add a member")
def add_member(team: str = NamePath, name: str = NamePath, ctx: Ctx = Depends(admin)) -> None:
    """Put a user in a care team."""
    ctx.svc.security.add_member(team, name)
    ctx.record("admin", detail={"team": team, "member_added": name})


@router.delete("/admin/teams/{team}/members/{name}", status_code=204, summary="Remove a member")
def remove_member(team: str = NamePath, name: str = NamePath, ctx: Ctx = Depends(admin)) -> None:
    """Take a user out of a care team."""
    ctx.svc.security.remove_member(team, name)
    ctx.record("admin", detail={"team": team, "member_removed": name})


@router.put("/admin/teams/{team}/patients/{patient_id}", status_code=204,
            summary="Assign a patient")  # fmt: skip
def assign(team: str = NamePath, patient_id: str = NamePath, ctx: Ctx = Depends(admin)) -> None:
    """Put a stored patient in the care of a team."""
    ctx.svc.security.assign_patient(patient_id, team)
    ctx.record("admin", patient_id=patient_id, detail={"team": team})


@router.get("/audit", response_model=list[AuditOut], summary="Audit log")
def audit_log(
    ctx: Ctx = Depends(admin),
    patient_id: str | None = Query(None, max_length=128),
    actor: str | None = Query(None, max_length=128),
    limit: int = Query(500, ge=1, le=10_000),
) -> list[AuditOut]:
    """Audit entries, newest first, optionally of one patient or one user."""
    out = ctx.svc.audit.entries(patient_id=patient_id, actor=actor, limit=limit,
                                newest_first=True)  # fmt: skip
    ctx.record("admin", detail={"n_entries": len(out)})
    return [audit_out(e) for e in out]


@router.get("/audit/verify", response_model=VerifyOut, summary="Verify the audit chain")
def audit_verify(
    ctx: Ctx = Depends(admin), expect_head: str | None = Query(None, max_length=64)
) -> VerifyOut:
    """Recompute the hash chain; list every edited, inserted or deleted entry."""
    v = ctx.svc.audit.verify(expect_head)
    ctx.record("admin", detail={"audit_ok": v.ok, "n_entries": v.n_entries})
    return VerifyOut(ok=v.ok, n_entries=v.n_entries, head=v.head, problems=v.problems)
