"""The generic background-job runner: progress over stages, results, failures as data, and
`oncotwin serve` handing the app to uvicorn on loopback without an access log."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from oncotwin.errors import DataError
from oncotwin.service.jobs import JobRunner
from oncotwin.store import Store
from oncotwin.store.security import Security


def test_runner_progress_result_and_failures(tmp_path) -> None:
    with Store(tmp_path / "j.db") as store:
        sec = Security(store)
        finished: list[tuple[int, str]] = []
        runner = JobRunner(sec, 1, on_finish=lambda j, s: finished.append((j, s)))
        seen: list[tuple[int, int]] = []

        def work(progress: Any) -> dict[str, Any]:
            step = progress("stage one", 2)
            step(1)
            step(1)
            step2 = progress("stage two", 3)
            step2(1)
            j = sec.jobs(kind="demo")[0]
            seen.append((j.done, j.total))
            return {"answer": 42}

        def bad_data(progress: Any) -> None:
            raise DataError("no usable observation", file="P7", column="dv")

        def crash(progress: Any) -> None:
            raise RuntimeError("patient P7 has 4321.5 mm3")  # must not leak into the job row

        ids = [runner.submit("demo", work, created_by="u", params={"x": 1}),
               runner.submit("demo.bad", bad_data, created_by="u"),
               runner.submit("demo.crash", crash, created_by="u")]  # fmt: skip
        for j in ids:
            runner.wait(j)
        runner.shutdown()
        ok, bad, crashed = (sec.job(j) for j in ids)
        assert seen == [(3, 5)]  # stages add up: 2 of 2, then 1 of 3
        assert (ok.status, ok.result, ok.done, ok.total, ok.label) == (
            "done", {"answer": 42}, 5, 5, "stage two")  # fmt: skip
        assert bad.status == "failed" and bad.error == "P7, column 'dv': no usable observation"
        assert crashed.status == "failed" and crashed.error == "RuntimeError"
        assert finished == [(ids[0], "done"), (ids[1], "failed"), (ids[2], "failed")]
        assert ok.started_at is not None and ok.finished_at is not None


def test_serve_runs_uvicorn_on_loopback(tmp_path, monkeypatch) -> None:
    import uvicorn

    from oncotwin.cli_service import serve

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    app = typer.Typer()
    app.command()(serve)
    r = CliRunner().invoke(app, ["--db", f"sqlite:///{tmp_path / 's.db'}", "--port", "8123"])
    assert r.exit_code == 0, r.output
    (call,) = calls
    assert (call["host"], call["port"], call["access_log"]) == ("127.0.0.1", 8123, False)
    assert call["app"].title == "oncotwin clinical service"
