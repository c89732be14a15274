"""Store additions of the service (migration 0003): schema matches the tables, users' tokens
are salted scrypt hashes (RFC 7914), consent decisions with validity windows, jobs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from svcworld import BACKENDS

from oncotwin.errors import DataError, NotFoundError, StoreError
from oncotwin.store import Store, head_revision
from oncotwin.store.security import Security, hash_secret, split_token, verify_secret
from oncotwin.store.tables import Base


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path, pg_schema_url) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else pg_schema_url()
    with Store(url) as s:
        yield s


def test_migrated_schema_matches_tables(store: Store) -> None:
    assert store.schema_revision() == head_revision() == "0003"
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_scrypt_hash_matches_the_standard_function() -> None:
    salt = bytes(range(16))
    stored = hash_secret("s3cret", salt)
    want = hashlib.scrypt(b"s3cret", salt=salt, n=2**14, r=8, p=1, dklen=32).hex()
    assert stored == f"scrypt$16384$8$1${salt.hex()}${want}"
    assert verify_secret("s3cret", stored) and not verify_secret("s3cret ", stored)
    assert not verify_secret("s3cret", "md5$x") and not verify_secret("s3cret", "garbage")
    assert split_token("otk_abc_def_ghi") == ("abc", "def_ghi") and split_token("otk__x") is None


def test_users_teams_and_assignments(store: Store) -> None:
    sec = Security(store)
    sec.add_team("a")
    user, token = sec.add_user("u1", "clinician", ["a"])
    assert user.teams == ("a",) and user.active
    tid, secret = split_token(token) or ("", "")
    assert sec.user_by_token_id(tid) == user and verify_secret(secret, user.token_hash)
    with pytest.raises(StoreError, match="already exists"):
        sec.add_user("u1", "admin")
    with pytest.raises(DataError, match="unknown role"):
        sec.add_user("u2", "nurse")
    with pytest.raises(NotFoundError, match="no team named 'b'"):
        sec.add_user("u3", "clinician", ["b"])
    assert [u.name for u in sec.users()] == ["u1"]  # nothing half-made
    sec.create_patient("P1", "a")
    store.ingest(pd.DataFrame({"id": ["P2"], "time": [0.0], "evid": [0], "dv": [1.0]}))
    sec.assign_patient("P2", "a")
    assert sec.team_patients(["a"]) == ["P1", "P2"] and sec.patient_teams("P2") == ["a"]
    with pytest.raises(StoreError, match="exists already"):
        sec.create_patient("P2", "a")


def test_consent_latest_decision_and_validity_window(store: Store) -> None:
    sec = Security(store)
    sec.add_team("a")
    for pid in ("P1", "P2", "P3"):
        sec.create_patient(pid, "a")
    now = datetime.now(UTC)
    sec.record_consent("P1", "research", True, recorded_by="x")
    sec.record_consent("P2", "research", True, recorded_by="x")
    sec.record_consent("P2", "research", False, recorded_by="x")  # withdrawn: latest holds
    sec.record_consent("P3", "research", True, valid_from=now - timedelta(days=10),
                       valid_until=now - timedelta(days=1), recorded_by="x")  # fmt: skip
    assert sec.consenting("research") == (["P1"], ["P2", "P3"])
    assert sec.consenting("research", at=now - timedelta(days=5))[0] == ["P3"]
    assert sec.consenting("care") == ([], ["P1", "P2", "P3"])
    assert [c.granted for c in sec.consents("P2")] == [True, False]
    with pytest.raises(DataError, match="unknown consent scope"):
        sec.record_consent("P1", "marketing", True, recorded_by="x")
    with pytest.raises(NotFoundError):
        sec.record_consent("P9", "care", True, recorded_by="x")


def test_jobs(store: Store) -> None:
    sec = Security(store)
    j = sec.create_job("twin.create", created_by="u", patient_id="P1", params={"seed": 1})
    sec.update_job(j, status="running", total=3, done=1, label="x")
    rec = sec.job(j)
    assert (rec.status, rec.done, rec.total, rec.params) == ("running", 1, 3, {"seed": 1})
    with pytest.raises(StoreError, match="unknown job status"):
        sec.update_job(j, status="lost")
    assert [x.id for x in sec.jobs(created_by="u", kind="twin.create")] == [j]
