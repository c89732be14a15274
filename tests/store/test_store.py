"""Tests of oncotwin.store on SQLite and PostgreSQL (see conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text

from oncotwin.errors import DataError, NotFoundError, StoreError
from oncotwin.store import Store, head_revision, repository
from oncotwin.store.tables import Base, Event, Forecast, Ingest, Patient, Run, Twin

SRC = Path(__file__).resolve().parents[2] / "src"
TABLES = {"patients", "events", "ingests", "twins", "forecasts", "runs", "populations", "surprises"}


def make_events(pid: str = "P1", n_obs: int = 4, *, t0: float = 0.0, **cov: Any) -> pd.DataFrame:
    """A canonical event table: one dose then ``n_obs`` volume observations (one LLOQ)."""
    n = n_obs + 1
    obs = np.arange(1, n)
    frame = pd.DataFrame(
        {
            "id": [pid] * n,
            "time": t0 + np.concatenate([[0.0], 7.0 * obs]),
            "evid": [1] + [0] * n_obs,
            "dv": np.concatenate([[np.nan], 100.0 + 10.0 * obs]),
            "mdv": [1] + [0] * n_obs,
            "kind": [None] + ["volume"] * n_obs,
            "unit": [None] + ["mm3"] * n_obs,
            "amt": [75.0] + [np.nan] * n_obs,
            "agent": ["cisplatin"] + [None] * n_obs,
            "cmt": [1] * n,
            "rate": [np.nan] * n,
            "dur": [0.5] + [np.nan] * n_obs,
            "on": [np.nan] * n,
            "lloq": [np.nan] + [5.0] * n_obs,
            "cens": [0] * (n - 1) + [1],
        }
    )
    frame = frame.astype({c: repository._STR_DTYPE for c in ("id", "kind", "unit", "agent")})
    for name, value in cov.items():
        frame[name] = value
    return frame


def twin_kwargs(seed: int = 0, **over: Any) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    kw: dict[str, Any] = dict(
        model="gompertz",
        method="nuts",
        draws={"rho": rng.normal(size=(2, 50)), "K": rng.normal(size=(2, 50, 3)).astype("f4")},
        summary={"rho": {"mean": 0.1, "q05": 0.05}, "names": ["rho", "K"]},
        diagnostics={"rhat": {"rho": 1.001}, "divergences": 0},
        settings={"priors": {"rho": ["lognormal", -2.0, 0.5]}, "chains": 2},
        converged=True,
        data_version="v1",
        data_as_of=datetime(2024, 1, 1, tzinfo=UTC),
        seed=seed,
        oncotwin_version="0.1.0",
    )
    kw.update(over)
    return kw


def counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            t.__tablename__: conn.scalar(select(func.count()).select_from(t))
            for t in (Patient, Event, Ingest, Twin, Forecast, Run)
        }


# -- round trips ---------------------------------------------------------------------------


def test_events_round_trip(store: Store) -> None:
    frame = pd.concat(
        [make_events("P1", arm="A", age=61), make_events("P2", 2, arm="B", age=70)],
        ignore_index=True,
    )
    res = store.ingest(frame, source="trial.csv")
    assert (res.n_rows, res.n_inserted, res.n_skipped, res.n_patients) == (8, 8, 0, 2)
    assert res.new_patients == ["P1", "P2"]
    pd.testing.assert_frame_equal(store.events_all(), frame)
    one = store.events("P2")
    pd.testing.assert_frame_equal(one, frame[frame["id"] == "P2"].reset_index(drop=True))
    pd.testing.assert_frame_equal(
        store.events_all(["P2", "P1"]).iloc[:3], one.iloc[:3], check_exact=True
    )


def test_patient_data_duck_type_and_covariate_update(store: Store) -> None:
    data = SimpleNamespace(events=make_events(arm="A"), source="site1.csv", version="abc123")
    res = store.ingest(data)
    assert res.data_version == "abc123"
    [row] = store.patients()
    assert (row.source, row.covariates) == ("site1.csv", {"arm": "A"})
    assert (row.n_observations, row.n_doses, row.first_time, row.last_time) == (4, 1, 0.0, 28.0)
    assert (row.n_twins, row.latest_twin_version) == (0, None)
    store.ingest(make_events(arm="B", age=50))
    assert store.patients()[0].covariates == {"arm": "B", "age": 50}


def test_reingest_is_idempotent(store: Store) -> None:
    frame = make_events()
    first = store.ingest(frame)
    again = store.ingest(frame)
    assert (again.n_inserted, again.n_skipped, again.new_patients) == (0, 5, [])
    assert again.data_version == first.data_version
    more = pd.concat([frame, make_events(n_obs=2, t0=100.0)], ignore_index=True)
    res = store.ingest(more)
    assert (res.n_inserted, res.n_skipped) == (3, 5)
    assert len(store.events("P1")) == 8
    assert counts(store)["ingests"] == 3


def test_twin_and_json_round_trip(store: Store) -> None:
    store.ingest(make_events())
    kw = twin_kwargs(summary={"a": np.float64(1.5), "b": [np.int64(2), None], "c": float("nan")})
    saved = store.save_twin("P1", **kw)
    got = store.twin("P1")
    assert got == saved
    assert set(got.draws) == {"rho", "K"}
    for name, value in kw["draws"].items():
        np.testing.assert_array_equal(got.draws[name], value)
        assert got.draws[name].dtype == value.dtype
    assert got.summary == {"a": 1.5, "b": [2, None], "c": None}  # NaN is stored as null
    assert got.diagnostics == kw["diagnostics"]
    assert got.settings == kw["settings"]
    assert (got.model, got.method, got.seed, got.converged) == ("gompertz", "nuts", 0, True)
    assert got.data_as_of == kw["data_as_of"] and got.created_at.tzinfo is not None
    fid = store.save_forecast(
        got.id, schedule_name="q3w", schedule={"doses": [0, 21]}, payload={"t": [1.0]}, seed=7
    )
    [fc] = store.forecasts(got.id)
    assert (fc.id, fc.schedule_name, fc.schedule, fc.payload, fc.seed) == (
        fid,
        "q3w",
        {"doses": [0, 21]},
        {"t": [1.0]},
        7,
    )


def test_draws_must_be_numeric(store: Store) -> None:
    store.ingest(make_events())
    with pytest.raises(StoreError, match="not a numeric array"):
        store.save_twin("P1", **twin_kwargs(draws={"x": np.array([{}], dtype=object)}))
    assert counts(store)["twins"] == 0


def test_runs(store: Store) -> None:
    a = store.start_run("demo", {"n": np.int64(3)})
    b = store.start_run("calibrate", {"patient": "P1"})
    assert store.run(a).status == "running"
    store.finish_run(a, result={"ok": True})
    store.finish_run(b, error=RuntimeError("sampler diverged"))
    assert [(r.kind, r.status) for r in store.runs()] == [
        ("demo", "done"),
        ("calibrate", "failed"),
    ]
    [r] = store.runs("calibrate")
    assert r.error == "RuntimeError: sampler diverged" and r.finished_at is not None
    assert store.run(a).params == {"n": 3} and store.run(a).result == {"ok": True}
    with pytest.raises(StoreError, match="already finished"):
        store.finish_run(a, result={})


# -- versions and as_of --------------------------------------------------------------------


def test_versions_and_as_of(store: Store, clock) -> None:
    store.ingest(make_events())
    after_first_ingest = clock.t
    store.ingest(make_events(n_obs=2, t0=50.0))
    saved = []
    marks = []
    for i in range(3):
        saved.append(store.save_twin("P1", **twin_kwargs(seed=i)))
        marks.append(clock.t)
    assert [t.version for t in saved] == [1, 2, 3]
    assert store.twin("P1").version == 3
    assert store.twin("P1", 2).seed == 1
    assert store.twin("P1", as_of=marks[0]).version == 1
    assert store.twin("P1", as_of=marks[1] + timedelta(milliseconds=500)).version == 2
    naive = marks[1].replace(tzinfo=None)  # naive datetimes are UTC
    assert store.twin("P1", as_of=naive).version == 2
    history = store.twin_history("P1")
    assert [t.version for t in history] == [1, 2, 3]
    assert all(t.draws is None for t in history)
    assert store.twin_history("P1", with_draws=True)[0].draws is not None
    assert store.patients()[0].latest_twin_version == 3
    assert len(store.events("P1", as_of=after_first_ingest)) == 5
    assert len(store.events("P1")) == 8
    assert len(store.events("P1", as_of=datetime(2000, 1, 1, tzinfo=UTC))) == 0


def test_not_found_messages(store: Store, clock) -> None:
    with pytest.raises(NotFoundError, match="no patient 'X'") as info:
        store.events("X")
    assert isinstance(info.value, KeyError) and isinstance(info.value, StoreError)
    assert str(info.value).startswith("no patient 'X' in store")
    with pytest.raises(NotFoundError, match="no patient 'X'"):
        store.events_all(["X"])
    with pytest.raises(NotFoundError, match="no patient 'X'"):
        store.twin("X")
    with pytest.raises(NotFoundError, match="no patient 'X'"):
        store.save_twin("X", **twin_kwargs())
    store.ingest(make_events())
    with pytest.raises(NotFoundError, match="'P1' has no twin yet; calibrate one first"):
        store.twin("P1")
    before = clock.t
    t = store.save_twin("P1", **twin_kwargs())
    with pytest.raises(NotFoundError, match=r"no twin version 4 \(stored versions: 1..1\)"):
        store.twin("P1", 4)
    with pytest.raises(NotFoundError, match=r"had no twin yet at 2024-01-01T00:00:0\d\+00:00"):
        store.twin("P1", as_of=before)
    with pytest.raises(NotFoundError, match="no twin with id 999"):
        store.save_forecast(999, schedule_name="x", schedule={}, payload={})
    with pytest.raises(NotFoundError, match="no twin with id 999"):
        store.forecasts(999)
    assert store.forecasts(t.id) == []
    with pytest.raises(NotFoundError, match="no run 42"):
        store.finish_run(42)
    with pytest.raises(NotFoundError, match="no run 42"):
        store.run(42)


# -- atomic ingest -------------------------------------------------------------------------


def _snapshot(store: Store) -> tuple[Any, ...]:
    return counts(store), store.patients(), store.events_all()


def test_ingest_rejected_by_database_changes_nothing(store: Store) -> None:
    store.ingest(make_events("P1", arm="A"))
    before = _snapshot(store)
    bad = pd.concat([make_events("P2"), make_events("P1", t0=100.0, arm="Z")], ignore_index=True)
    bad.loc[2, "evid"] = 7  # the 3rd row: violates the CHECK constraint evid IN (0, 1, 2)
    with pytest.raises(StoreError, match="ingest failed"):
        store.ingest(bad)
    after = _snapshot(store)
    assert after[:2] == before[:2]
    pd.testing.assert_frame_equal(after[2], before[2])


def test_ingest_missing_time_changes_nothing(store: Store) -> None:
    bad = make_events("P1")
    bad.loc[2, "time"] = np.nan  # NOT NULL
    with pytest.raises(StoreError):
        store.ingest(bad)
    assert set(counts(store).values()) == {0}


def test_ingest_failing_mid_insert_changes_nothing(store: Store, monkeypatch) -> None:
    store.ingest(make_events("P1"))
    before = _snapshot(store)
    real = repository._insert_events

    def two_then_fail(session, rows):
        real(session, rows[:2])
        raise RuntimeError("disk full")

    monkeypatch.setattr(repository, "_insert_events", two_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        store.ingest(pd.concat([make_events("P2"), make_events("P1", t0=99.0)]))
    monkeypatch.undo()
    after = _snapshot(store)
    assert after[:2] == before[:2]
    pd.testing.assert_frame_equal(after[2], before[2])


def test_ingest_bad_values_name_row_and_column(store: Store) -> None:
    frame = make_events().astype({"time": object})
    frame.loc[3, "time"] = "day 3"
    with pytest.raises(DataError, match=r"<frame>, row 5, column 'time': 'day 3' is not a number"):
        store.ingest(frame)
    with pytest.raises(DataError, match="missing required column"):
        store.ingest(make_events().drop(columns="evid"))
    frame = make_events()
    frame["cmt"] = 1.5
    with pytest.raises(DataError, match="column 'cmt': 1.5 is not an integer"):
        store.ingest(frame, source="x.csv")
    assert set(counts(store).values()) == {0}


# -- concurrency ---------------------------------------------------------------------------

WORKER = """
import sys, time, pathlib
import numpy as np, pandas as pd
from datetime import datetime, timezone
from oncotwin.store import Store

url, k, go = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
pathlib.Path(f"{go}.ready{k}").touch()
while not go.exists():
    time.sleep(0.001)
with Store(url) as store:  # both processes migrate the empty database at once
    for j in range(10):
        rows = pd.DataFrame(
            {"id": "P1", "time": 1000.0 * k + 20 * j + np.arange(20.0), "evid": 0, "dv": 1.0}
        )
        store.ingest(rows, source=f"proc{k}")
        store.save_twin(
            "P1", model="m", method="map", draws={"x": np.full(3, k)}, summary={}, diagnostics={},
            settings={}, converged=True, data_version=str(j),
            data_as_of=datetime.now(timezone.utc), seed=j, oncotwin_version="test",
        )
"""


def test_concurrent_writers(db_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, db_url, str(k), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for k in (1, 2)
    ]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.ready{k}").exists() for k in (1, 2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [
            p.communicate()[0] for p in procs
        ]
        time.sleep(0.005)
    go.touch()
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0, out.decode()
    with Store(db_url) as store:
        events = store.events("P1")
        assert len(events) == 400
        assert sorted(events["time"]) == sorted(1000.0 * k + t for k in (1, 2) for t in range(200))
        history = store.twin_history("P1")
        assert sorted(t.version for t in history) == list(range(1, 21))
        assert sum(t.seed for t in history) == 2 * sum(range(10))


# -- migrations and connection settings ----------------------------------------------------


def test_migrations_on_empty_database(db_url: str, monkeypatch) -> None:
    with Store(db_url) as store:
        assert store.schema_revision() == head_revision() == "0003"
        assert TABLES | {"alembic_version"} <= set(inspect(store.engine).get_table_names())
        with store.engine.connect() as conn:  # the migrated schema is what tables.py declares
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        store.ingest(make_events())

    def fail(*args: Any, **kw: Any) -> None:
        raise AssertionError("re-opening an up-to-date store must not migrate")

    monkeypatch.setattr(repository.command, "upgrade", fail)
    with Store(db_url) as store:
        assert store.schema_revision() == head_revision()
        assert len(store.events("P1")) == 5


def test_newer_schema_is_refused(db_url: str) -> None:
    with Store(db_url) as store, store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="cannot migrate store"):
        Store(db_url)


def test_sqlite_settings(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    assert store.url == f"sqlite:///{tmp_path / 'a.db'}"


def test_default_url(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ONCOTWIN_DB", "sqlite:///" + str(tmp_path / "env.db"))
    assert Store.default_url().endswith("env.db")
    monkeypatch.delenv("ONCOTWIN_DB")
    import platformdirs

    monkeypatch.setattr(platformdirs, "user_data_dir", lambda app: str(tmp_path / "data" / app))
    url = Store.default_url()
    assert url == f"sqlite:///{tmp_path / 'data' / 'oncotwin' / 'oncotwin.db'}"
    assert (tmp_path / "data" / "oncotwin").is_dir()
    with Store() as store:
        assert store.url == url and store.patients() == []


def test_in_memory_sqlite() -> None:
    with Store("sqlite://") as store:
        store.ingest(make_events())
        assert len(store.events("P1")) == 5


# -- populations and surprises ---------------------------------------------------------------


def test_population_versions_round_trip(store: Store) -> None:
    draws = {"mu": np.arange(6.0).reshape(2, 3), "beta": np.zeros((2, 0, 3))}
    first = store.save_population("lung", model="gompertz", record={"a": 1}, draws=draws)
    second = store.save_population("lung", model="gompertz", record={"a": 2}, draws=draws)
    assert (first.version, second.version) == (1, 2)
    latest = store.population("lung")
    assert latest.version == 2 and latest.record == {"a": 2}
    np.testing.assert_array_equal(latest.draws["mu"], draws["mu"])
    assert latest.draws["beta"].shape == (2, 0, 3)
    assert store.population("lung", 1).record == {"a": 1}
    assert [p[:3] for p in store.populations()] == [("lung", 2, "gompertz")]
    with pytest.raises(NotFoundError, match="stored populations: lung"):
        store.population("breast")
    with pytest.raises(NotFoundError, match="version 7"):
        store.population("lung", 7)


def test_surprises_belong_to_a_twin(store: Store) -> None:
    store.ingest(make_events())
    twin = store.save_twin("P1", **twin_kwargs())
    row = {"time": 3.0, "observed": 9.0, "lo": 1.0, "hi": 2.0, "level": 0.95}
    assert store.save_surprises(twin.id, [row]) == 1
    (got,) = store.surprises("P1")
    assert (got.twin_id, got.time, got.observed, got.hi, got.level) == (
        twin.id,
        3.0,
        9.0,
        2.0,
        0.95,
    )
    with pytest.raises(NotFoundError):
        store.save_surprises(twin.id + 100, [row])
    assert store.surprises("P1") == [got]  # the failed write changed nothing
