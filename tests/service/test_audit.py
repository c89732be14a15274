"""The hash-chained audit log: appends link up, and `oncotwin audit verify` detects an edited,
a deleted (middle or last) and an inserted entry, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from svcworld import BACKENDS
from typer.testing import CliRunner

from oncotwin.cli_service import audit_app, users_app
from oncotwin.store import Store
from oncotwin.store.audit import GENESIS, AuditLog, chain_hash

runner = CliRunner()


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path, pg_schema_url) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'audit.db'}" if request.param == "sqlite" else pg_schema_url()


def _fill(url: str, n: int = 5) -> AuditLog:
    store = Store(url)
    log = AuditLog(store)
    for i in range(n):
        log.append(actor="clin_a", role="clinician", action="read", resource="GET /x",
                   patient_id=f"P{i % 2}", purpose="care", detail={"i": i})  # fmt: skip
    return log


def _verify(url: str) -> tuple[int, str]:
    r = runner.invoke(audit_app, ["verify", "--db", url])
    return r.exit_code, r.output + (r.stderr if r.stderr_bytes else "")


def test_chain_is_sha256_of_previous_hash_and_canonical_json(url: str) -> None:
    log = _fill(url, 2)
    first, second = log.entries()
    canonical = json.dumps(first.content(), sort_keys=True, separators=(",", ":"))
    assert first.prev_hash == GENESIS
    assert first.hash == hashlib.sha256((GENESIS + canonical).encode()).hexdigest()
    assert second.prev_hash == first.hash == chain_hash(GENESIS, first.content())
    r = runner.invoke(audit_app, ["verify", "--db", url, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"ok": True, "n_entries": 2, "head": second.hash,
                                    "problems": []}  # fmt: skip
    log.store.close()


@pytest.mark.parametrize("attack", ["edit", "delete_middle", "delete_last", "insert", "reorder"])
def test_tampering_is_detected(url: str, attack: str) -> None:
    log = _fill(url)
    head = log.entries()[-1].hash
    with log.store.engine.begin() as conn:
        if attack == "edit":  # someone hides who read P1's record
            conn.execute(text("UPDATE audit_log SET actor = 'nobody' WHERE seq = 3"))
        elif attack == "delete_middle":
            conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
        elif attack == "delete_last":
            conn.execute(text("DELETE FROM audit_log WHERE seq = 5"))
        elif attack == "insert":  # a forged entry with a correct-looking own hash
            conn.execute(text("UPDATE audit_log SET seq = seq + 100 WHERE seq >= 4"))
            conn.execute(text("UPDATE audit_log SET seq = seq - 99 WHERE seq >= 100"))
            row = dict(conn.execute(text("SELECT * FROM audit_log WHERE seq = 3")).mappings().one())
            row.update(seq=4, actor="forger", id=None)
            if not isinstance(row["detail"], str):  # PostgreSQL returns JSON decoded
                row["detail"] = json.dumps(row["detail"])
            cols = [k for k in row if k != "id"]
            conn.execute(text(f"INSERT INTO audit_log ({', '.join(cols)}) VALUES "
                              f"({', '.join(':' + c for c in cols)})"), row)  # fmt: skip
        else:  # swap the details of two entries
            conn.execute(text("UPDATE audit_log SET detail = '{\"i\": 9}' WHERE seq = 1"))
            conn.execute(text("UPDATE audit_log SET detail = '{\"i\": 0}' WHERE seq = 5"))
    v = log.verify()
    assert not v.ok and v.problems
    code, out = _verify(url)
    assert code == 1 and "TAMPERED" in out
    if attack == "edit":
        assert v.problems == ["entry seq 3: content does not match its hash (edited)"]
    if attack == "delete_last":
        assert "last entries deleted" in v.problems[0]
        assert log.verify(expect_head=head).problems[-1] == (
            "the expected head hash is not in the chain")  # fmt: skip
    log.store.close()


def test_users_cli_prints_token_once_and_stores_only_a_hash(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    r = runner.invoke(users_app, ["add", "dr_who", "--role", "clinician", "--team", "onc-a",
                                  "--db", url, "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["teams"] == ["onc-a"] and out["token"].startswith("otk_")
    with Store(url) as store, store.engine.connect() as conn:
        stored = conn.execute(text("SELECT token_hash FROM users")).scalar_one()
    secret = out["token"].split("_", 2)[2]
    assert secret not in stored and stored.startswith("scrypt$16384$8$1$")
    bad = runner.invoke(users_app, ["add", "x", "--role", "surgeon", "--db", url])
    assert bad.exit_code == 2 and "unknown role" in bad.output
    taken = runner.invoke(users_app, ["add", "dr_who", "--role", "admin", "--db", url])
    assert taken.exit_code == 2 and "already exists" in taken.output
    listed = runner.invoke(users_app, ["list", "--db", url, "--json"])
    assert json.loads(listed.output)[0]["name"] == "dr_who"
