"""Fixtures of the store tests: one fresh database per test, SQLite and (if set up) PostgreSQL.

PostgreSQL runs when ``ONCOTWIN_TEST_POSTGRES_URL`` points at a server (``.ci/postgres.sh``
starts one); each test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from oncotwin.store import Store

POSTGRES_URL = os.environ.get("ONCOTWIN_TEST_POSTGRES_URL")


class Clock:
    """A deterministic clock: each call returns the next second after 2024-01-01 UTC."""

    def __init__(self) -> None:
        self.t = datetime(2024, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(
                    POSTGRES_URL is None,
                    reason="set ONCOTWIN_TEST_POSTGRES_URL (e.g. `source .ci/postgres.sh`)",
                ),
            ],
        ),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """URL of an empty database of the parametrised backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'oncotwin.db'}"
        return
    assert POSTGRES_URL is not None
    # A schema per test (search_path set at connect) is ten times cheaper than a database.
    name = f"oncotwin_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={name}"})
        yield url.render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db_url: str, clock: Clock) -> Iterator[Store]:
    """An open store on a fresh database, with the deterministic clock."""
    with Store(db_url, clock=clock) as s:
        yield s
