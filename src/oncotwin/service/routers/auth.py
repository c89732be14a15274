"""Log in (OAuth2 password flow: user name and API token) and ask who you are."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordRequestForm

from ..auth import Principal, authenticate, check_api_token, issue_access_token, state
from ..schemas import MeOut, TokenOut

router = APIRouter(prefix="/api", tags=["auth"])


@router.post("/auth/token", response_model=TokenOut, summary="Exchange an API token")
def token(request: Request, form: OAuth2PasswordRequestForm = Depends()) -> TokenOut:
    """A short-lived access token for the user `username` whose API token is `password`."""
    svc = state(request)
    user = check_api_token(svc, form.password)
    if user is None or user.name != form.username:
        raise HTTPException(401, "unknown user or wrong token",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    ttl = svc.settings.access_token_ttl_s
    svc.audit.append(actor=user.name, role=user.role, action="login", resource="POST /api/auth/token",
                     purpose="authentication", detail={"expires_in": ttl})  # fmt: skip
    token = issue_access_token(svc.settings.secret_key, user, ttl)
    return TokenOut.model_validate(
        {"access_token": token, "expires_in": ttl, "role": user.role, "name": user.name}
    )


@router.get("/me", response_model=MeOut, summary="The current user")
def me(principal: Principal = Depends(authenticate)) -> MeOut:
    """Name, role and care teams of the user behind the token."""
    return MeOut.model_validate(
        {"name": principal.name, "role": principal.role, "teams": list(principal.teams)}
    )
