"""Who may and who may not call every endpoint: 401 without credentials, 403 for the wrong role
or care team, and not 401/403 for the right user.

The table ACCESS lists every route of the app's OpenAPI schema with its rule; a route added
without a line here fails ``test_every_route_has_an_access_rule``.
"""

from __future__ import annotations

from typing import Any

import pytest
from svcworld import World, mini_bundle

from oncotwin.service.app import PUBLIC_ROUTES

USERS = ("admin", "clin_a", "clin_b", "res")
ROLE_OF = {"admin": "admin", "clin_a": "clinician", "clin_b": "clinician", "res": "researcher"}

# rule: "public", "any" (every role), a role name, "patient" (clinicians of the patient's team),
# "team" (clinicians; the body names a team or patients), "owner" (the job's creator or admin),
# "research" (researchers and admins).
ACCESS: dict[tuple[str, str], str] = {
    ("POST", "/api/auth/token"): "public",
    ("GET", "/api/health"): "public",
    ("GET", "/api/me"): "any",
    ("GET", "/api/patients"): "clinician",
    ("POST", "/api/patients"): "team",
    ("GET", "/api/patients/{patient_id}"): "patient",
    ("POST", "/api/patients/{patient_id}/events"): "patient",
    ("GET", "/api/patients/{patient_id}/twins"): "patient",
    ("GET", "/api/patients/{patient_id}/twin"): "patient",
    ("POST", "/api/patients/{patient_id}/twins"): "patient",
    ("POST", "/api/patients/{patient_id}/twins/update"): "patient",
    ("GET", "/api/patients/{patient_id}/forecasts"): "patient",
    ("POST", "/api/patients/{patient_id}/forecasts"): "patient",
    ("GET", "/api/patients/{patient_id}/surprises"): "patient",
    ("GET", "/api/patients/{patient_id}/recommendation"): "patient",
    ("POST", "/api/patients/{patient_id}/recommendations"): "patient",
    ("GET", "/api/patients/{patient_id}/report"): "patient",
    ("GET", "/api/patients/{patient_id}/consent"): "patient",
    ("POST", "/api/patients/{patient_id}/consent"): "patient",
    ("GET", "/api/patients/{patient_id}/audit"): "patient",
    ("GET", "/api/jobs"): "any",
    ("GET", "/api/jobs/{job_id}"): "owner",
    ("GET", "/api/research/patients"): "researcher",
    ("GET", "/api/research/export"): "researcher",
    ("GET", "/api/research/cohort"): "researcher",
    ("POST", "/api/research/synthetic"): "researcher",
    ("POST", "/api/research/trials"): "research",
    ("GET", "/api/admin/users"): "admin",
    ("POST", "/api/admin/users"): "admin",
    ("POST", "/api/admin/users/{name}/token"): "admin",
    ("PUT", "/api/admin/users/{name}/active"): "admin",
    ("GET", "/api/admin/teams"): "admin",
    ("POST", "/api/admin/teams"): "admin",
    ("PUT", "/api/admin/teams/{team}/members/{name}"): "admin",
    ("DELETE", "/api/admin/teams/{team}/members/{name}"): "admin",
    ("PUT", "/api/admin/teams/{team}/patients/{patient_id}"): "admin",
    ("GET", "/api/audit"): "admin",
    ("GET", "/api/audit/verify"): "admin",
    ("POST", "/fhir/Bundle"): "team",
    ("GET", "/fhir/Patient/{patient_id}/forecast"): "patient",
    ("GET", "/fhir/Patient/{patient_id}/recommendation"): "patient",
}

# Requests that would succeed for the right user (cheap ones: no calibration is started).
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/patients"): {"id": "NEW-1", "team": "oncology-a"},
    ("POST", "/api/patients/{patient_id}/events"): {
        "events": [{"time": 30.0, "dv": 900.0, "kind": "volume", "unit": "mm3"}]
    },
    ("POST", "/api/patients/{patient_id}/twins"): {"method": "laplace", "model": "no_such"},
    ("POST", "/api/patients/{patient_id}/twins/update"): {"seed": 0},
    ("POST", "/api/patients/{patient_id}/forecasts"): {
        "name": "weekly",
        "schedule": {"doses": [{"amount": 75, "start": 22, "every": 7, "count": 2}]},
    },  # fmt: skip
    ("POST", "/api/patients/{patient_id}/consent"): {"scope": "sharing", "granted": True},
    ("POST", "/api/research/synthetic"): {"population": "none-stored", "n": 2},
    # Rejected by the checks that run before a job is queued (422): nothing is computed.
    ("POST", "/api/patients/{patient_id}/recommendations"): {
        "modality": "radiotherapy",
        "objective": "no_such",
    },
    ("POST", "/api/research/trials"): {"design": {"arms": []}},
    ("POST", "/api/admin/users"): {"name": "spare2", "role": "researcher"},
    ("PUT", "/api/admin/users/{name}/active"): {"active": True},
    ("POST", "/api/admin/teams"): {"name": "team-x"},
}
SKIP_POSITIVE = {
    # Positive cases that start real work or need state are tested in test_api.py.
    ("POST", "/api/patients/{patient_id}/twins/update"),
    ("POST", "/api/patients/{patient_id}/forecasts"),
    ("GET", "/api/patients/{patient_id}/report"),
}


def routes(world: World) -> list[tuple[str, str]]:
    schema = world.client.get("/openapi.json").json()
    return sorted((m.upper(), p) for p, ops in schema["paths"].items() for m in ops)


def _job(world: World) -> int:
    return world.svc.jobs.submit("test.noop", lambda progress: {"ok": True}, created_by="clin_a")


def call(world: World, method: str, path: str, user: str | None, *, patient: str = "P1",
         body: Any = None, token: str | None = None) -> Any:  # fmt: skip
    """Call a route template with its placeholders filled for `patient` (FHIR: team checks)."""
    url = path.format(patient_id=patient, job_id=world.job_id, name="spare", team="oncology-b")
    headers = world.auth(user) if token is None else {"Authorization": f"Bearer {token}"}
    kw: dict[str, Any] = {"headers": headers}
    if (method, path) == ("POST", "/api/auth/token"):
        kw["data"] = {"username": "clin_a", "password": world.tokens["clin_a"]}
    elif (method, path) == ("POST", "/fhir/Bundle"):
        kw["json"] = body if body is not None else mini_bundle("FHIR-1")
        kw["params"] = {"team": "oncology-a"}
    elif method in ("POST", "PUT"):
        kw["json"] = body if body is not None else BODIES.get((method, path), {})
    return world.client.request(method, url, **kw)


@pytest.fixture(scope="module")
def secured(world: World) -> World:
    """The world with a throwaway user and a job of clin_a's to address."""
    world.svc.security.add_user("spare", "researcher")
    world.job_id = _job(world)  # type: ignore[attr-defined]
    world.svc.jobs.wait(world.job_id)  # type: ignore[attr-defined]
    return world


def test_every_route_has_an_access_rule(secured: World) -> None:
    assert set(routes(secured)) == set(ACCESS)
    public = {k for k, v in ACCESS.items() if v == "public"}
    assert public == {r for r in PUBLIC_ROUTES if r in ACCESS}


# Public routes are covered by test_public_routes.
@pytest.mark.parametrize("route", sorted(k for k, v in ACCESS.items() if v != "public"))
def test_unauthenticated_is_401(secured: World, route: tuple[str, str]) -> None:
    method, path = route
    for token in (None, secured.tokens["clin_a"] + "x"):
        r = call(secured, method, path, None, token=token)
        assert r.status_code == 401, (route, token, r.text)
        assert r.headers.get("www-authenticate") == "Bearer"


def test_forged_tokens_are_401(secured: World) -> None:
    from oncotwin.service.auth import issue_access_token

    user = secured.svc.security.user("clin_a")
    forged = [
        "otk_0000_forged", "ots.e30.forged", "ots.x.y.z", "Basic abc", "",
        issue_access_token(b"not-the-server-key", user, 900),  # signed with another key
        issue_access_token(secured.svc.settings.secret_key, user, -5),  # expired
    ]  # fmt: skip
    for token in forged:
        r = call(secured, "GET", "/api/patients/{patient_id}", None, token=token)
        assert r.status_code == 401, (token, r.text)
    good = issue_access_token(secured.svc.settings.secret_key, user, 900)
    assert call(secured, "GET", "/api/patients/{patient_id}", None, token=good).status_code == 200


def _allowed(rule: str, user: str) -> bool:
    role = ROLE_OF[user]
    return rule in ("public", "any") or rule == role or (
        rule in ("patient", "team") and role == "clinician") or rule == "owner" or (
        rule == "research" and role in ("researcher", "admin"))  # fmt: skip


@pytest.mark.parametrize("route", sorted(ACCESS))
def test_wrong_role_is_403(secured: World, route: tuple[str, str]) -> None:
    rule = ACCESS[route]
    for user in USERS:
        if _allowed(rule, user):
            continue
        r = call(secured, *route, user)
        assert r.status_code == 403, (route, user, r.text)


@pytest.mark.parametrize("route", sorted(k for k, v in ACCESS.items() if v in ("patient", "team",
                                                                               "owner")))  # fmt: skip
def test_wrong_team_is_403(secured: World, route: tuple[str, str]) -> None:
    method, path = route
    rule = ACCESS[route]
    if rule == "patient":  # clin_b's team does not care for P1; clin_a's not for P3
        assert call(secured, method, path, "clin_b", patient="P1").status_code == 403
        assert call(secured, method, path, "clin_a", patient="P3").status_code == 403
        # an unknown patient gets the same answer: ids cannot be probed
        assert call(secured, method, path, "clin_a", patient="NOBODY").status_code == 403
    elif route == ("POST", "/api/patients"):
        r = call(secured, method, path, "clin_a", body={"id": "X-9", "team": "oncology-b"})
        assert r.status_code == 403, r.text
    elif route == ("POST", "/fhir/Bundle"):
        r = call(secured, method, path, "clin_a", body=mini_bundle("P3"))
        assert r.status_code == 403, r.text
        assert "P3" not in secured.svc.security.team_patients(["oncology-a"])
    else:  # the job was started by clin_a
        assert call(secured, method, path, "clin_b").status_code == 403
        assert call(secured, method, path, "res").status_code == 403
        assert call(secured, method, path, "admin").status_code == 200


# Routes that start real work are let in by test_api.py.
@pytest.mark.parametrize("route", sorted(set(ACCESS) - set(SKIP_POSITIVE)))
def test_right_user_is_let_in(secured: World, route: tuple[str, str]) -> None:
    rule = ACCESS[route]
    for user in USERS:
        if rule != "public" and not _allowed(rule, user):
            continue
        if rule in ("patient", "team") and user != "clin_a":
            continue
        if rule == "owner" and user not in ("clin_a", "admin"):
            continue
        r = call(secured, *route, None if rule == "public" else user)
        assert r.status_code not in (401, 403), (route, user, r.text)
        assert r.status_code < 500, (route, user, r.text)


def test_denials_are_audited(secured: World) -> None:
    before = secured.svc.audit.entries(actor="clin_b")
    call(secured, "GET", "/api/patients/{patient_id}", "clin_b", patient="P1")
    new = secured.svc.audit.entries(actor="clin_b")[len(before) :]
    assert [(e.outcome, e.patient_id) for e in new] == [("denied", "P1")]


def test_disabled_user_and_rotated_token_are_401(secured: World) -> None:
    sec = secured.svc.security
    _, token = sec.add_user("temp", "researcher")
    c = secured.client
    r = c.post("/api/auth/token", data={"username": "temp", "password": token})
    access = r.json()["access_token"]
    for t in (token, access):
        assert c.get("/api/me", headers={"Authorization": f"Bearer {t}"}).status_code == 200
    sec.set_active("temp", False)
    for t in (token, access):
        assert c.get("/api/me", headers={"Authorization": f"Bearer {t}"}).status_code == 401
    sec.set_active("temp", True)
    new = sec.rotate_token("temp")
    for t in (token, access):  # the old API token and its access tokens are revoked
        assert c.get("/api/me", headers={"Authorization": f"Bearer {t}"}).status_code == 401
    assert c.get("/api/me", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    wrong = c.post("/api/auth/token", data={"username": "clin_a", "password": new})
    assert wrong.status_code == 401  # someone else's token
