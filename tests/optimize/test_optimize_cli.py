"""`oncotwin optimize` on a small stored twin (Laplace calibration, as tests/test_cli.py does)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from oncotwin.cli import app as main_app
from oncotwin.cli_optimize import optimize

app = typer.Typer()
app.command()(optimize)


@app.callback()
def _root() -> None:
    """Keep `optimize` as a named sub-command, as it is in the main CLI."""


runner = CliRunner()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("optimize") / "o.db"
    url = f"sqlite:///{path}"
    assert runner.invoke(main_app, ["ingest", "vaghi2020-lung", "--db", url]).exit_code == 0
    out = runner.invoke(main_app, ["twin", "create", "lung-3", "--db", url, "--method", "laplace"])
    assert out.exit_code == 0, out.output
    return url


def test_optimize_radiotherapy_json_and_report(db: str, tmp_path: Path) -> None:
    page = tmp_path / "rec.html"
    res = runner.invoke(app, ["optimize", "lung-3", "--modality", "radiotherapy", "--db", db,
                              "--draws", "16", "--constraint", "max-dose:3",
                              "--risk", "cvar:0.8", "--report", str(page), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{") :])
    assert out["patient"] == "lung-3" and out["modality"] == "radiotherapy"
    assert out["standard_of_care"]["name"] == "60 Gy in 30 fractions of 2 Gy"
    assert out["n_draws"] == 16 and out["seed"] == 0
    assert "max-dose:3" in out["provenance"]["constraints"]
    for best in out["best"]:
        assert best["feasible"] and best["params"]["dose_per_fraction"] <= 3 + 1e-9
        assert best["lo90"] <= best["median"] <= best["hi90"]
    assert out["headline"]
    html = page.read_text()
    assert "Treatment recommendation" in html and "Pareto" in html


def test_optimize_words_for_a_clinician(db: str) -> None:
    res = runner.invoke(app, ["optimize", "lung-3", "-m", "radiotherapy", "--db", db,
                              "--draws", "16"])  # fmt: skip
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "standard of care" in text and "90% interval" in text
    assert "radiosensitivity not identified by the data" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "chemotherapy"], "no recorded chemotherapy dose"),
        (["-m", "surgery"], "unknown modality"),
        (["-m", "radiotherapy", "-c", "ntcp:brain"], "ntcp:ORGAN<=P"),
        (["-m", "radiotherapy", "--objective", "cure"], "unknown objective"),
    ],
)
def test_optimize_input_errors_exit_2(db: str, args: list[str], message: str) -> None:
    res = runner.invoke(app, ["optimize", "lung-3", "--db", db, "--draws", "16", *args])
    assert res.exit_code == 2
    assert message in " ".join(res.output.split())


def test_patient_report_shows_the_recommendation(db: str, tmp_path: Path) -> None:
    from oncotwin.optimize import optimize_twin
    from oncotwin.report import write_patient_report
    from oncotwin.store import Store
    from oncotwin.workflow import load_twin

    with Store(db) as store:
        twin, _ = load_twin(store, "lung-3")
    rec = optimize_twin(twin, "radiotherapy", n_draws=16)
    fc = twin.forecast([twin.subject.t0, twin.subject.last_time + 10])
    html = write_patient_report(tmp_path / "p.html", twin, {"recorded": fc},
                                recommendation=rec).read_text()  # fmt: skip
    assert '<section id="recommendation">' in html and 'href="#recommendation"' in html
