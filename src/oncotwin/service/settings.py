"""Settings of the clinical service (database, secrets, limits), from arguments or environment."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Settings:
    """What :func:`oncotwin.service.create_app` needs.

    Args:
        db_url: store URL (SQLite file or ``postgresql+psycopg://...``); default env
            ``ONCOTWIN_DB``, else the store's default file.
        secret_key: signs short-lived access tokens (bytes); env ``ONCOTWIN_SECRET_KEY``.
            Default: random per process (tokens then die with the process).
        pseudonym_key: keys research pseudonyms and date shifts; env
            ``ONCOTWIN_PSEUDONYM_KEY``. Keep it stable, or pseudonyms change. Default: random
            per process.
        access_token_ttl_s: lifetime of access tokens issued by ``/api/auth/token``, seconds.
        max_request_bytes: largest request body accepted, bytes (larger: 413).
        job_workers: background jobs (calibrations) run at the same time.
        max_shift_days: largest per-patient date shift of research exports, days.
        default_method: calibration method when a request names none ("nuts" or "laplace").
    """

    db_url: str | None = None
    secret_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    pseudonym_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    access_token_ttl_s: int = 900
    max_request_bytes: int = 2_000_000
    job_workers: int = 1
    max_shift_days: int = 365
    default_method: str = "nuts"

    @classmethod
    def from_env(cls, db_url: str | None = None) -> Settings:
        """Settings from ``ONCOTWIN_*`` environment variables (`db_url` wins over the env)."""
        kw: dict[str, object] = {"db_url": db_url or os.environ.get("ONCOTWIN_DB")}
        for name, env in (("secret_key", "ONCOTWIN_SECRET_KEY"),
                          ("pseudonym_key", "ONCOTWIN_PSEUDONYM_KEY")):  # fmt: skip
            if os.environ.get(env):
                kw[name] = os.environ[env].encode()
        for name, env in (("access_token_ttl_s", "ONCOTWIN_TOKEN_TTL_S"),
                          ("max_request_bytes", "ONCOTWIN_MAX_REQUEST_BYTES"),
                          ("job_workers", "ONCOTWIN_JOB_WORKERS")):  # fmt: skip
            if os.environ.get(env):
                kw[name] = int(os.environ[env])
        return cls(**kw)  # type: ignore[arg-type]
