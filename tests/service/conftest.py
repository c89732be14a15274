"""Fixtures of the service tests: the world of svcworld.py on SQLite and PostgreSQL.

PostgreSQL runs when ``ONCOTWIN_TEST_POSTGRES_URL`` points at a server (as in
tests/store/conftest.py); each world gets its own schema, dropped at the end of the session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from svcworld import BACKENDS, POSTGRES_URL, World, build_world


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[Any]:
    """Make PostgreSQL schemas on demand; all dropped at the end of the session."""
    made: list[str] = []
    admin = create_engine(POSTGRES_URL) if POSTGRES_URL else None

    def make() -> str:
        assert admin is not None and POSTGRES_URL is not None
        name = f"oncotwin_svc_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
            conn.commit()
        made.append(name)
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={name}"})
        return url.render_as_string(hide_password=False)

    yield make
    if admin is not None:
        with admin.connect() as conn:
            for name in made:
                conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
            conn.commit()
        admin.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory, pg_schema_url) -> Iterator[World]:
    """The populated service of svcworld.py, once per test module and backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('svc') / 'oncotwin.db'}"
    else:
        url = pg_schema_url()
    w = build_world(url)
    with w.client:
        yield w
    w.svc.store.close()


@pytest.fixture(scope="module")
def sqlite_world(tmp_path_factory) -> Iterator[World]:
    """The populated service on SQLite only (browser, schemathesis), one per test module: the
    fuzzer may withdraw a patient's consent, which the browser test, run after it (as the
    parallel workers may), found refusing its forecast."""
    w = build_world(f"sqlite:///{tmp_path_factory.mktemp('svc') / 'oncotwin.db'}")
    with w.client:
        yield w
    w.svc.store.close()
