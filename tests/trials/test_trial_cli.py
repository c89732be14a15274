"""`oncotwin trial run`: results files, the report, and input errors."""

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from oncotwin.cli_trial import trial_app

NULL = Path(__file__).with_name("null_design.yaml")


def test_trial_run_writes_results_and_report(tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(trial_app, ["run", str(NULL), "--n", "100", "--replicates", "12",
                                       "--out", str(out), "--seed", "5", "--power", "100,200"])  # fmt: skip
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["provenance"]["seed"] == 5 and summary["provenance"]["replicates"] == 12
    assert {a["arm"] for a in summary["arms"]} == {"A", "B"}
    assert len(summary["power"]) == 2 and summary["replicates"]["replicates"] == 12
    patients = pd.read_parquet(out / "patients.parquet")
    assert len(patients) == 1200 and set(patients["status"]) <= {"ok", "ineligible", "failed"}
    assert len(pd.read_parquet(out / "replicates.parquet")) == 12
    html = (out / "report.html").read_text()
    for section in ('id="km"', 'id="waterfall"', 'id="spider"', 'id="power"', 'id="prognostic"'):
        assert section in html
    assert "http://" not in html.replace("http://www.w3.org", "")  # self-contained
    # Same seed, same numbers.
    r2 = CliRunner().invoke(trial_app, ["run", str(NULL), "--n", "100", "--replicates", "12",
                                        "--out", str(tmp_path / "again"), "--seed", "5", "--no-report"])  # fmt: skip
    assert r2.exit_code == 0
    pd.testing.assert_frame_equal(
        patients, pd.read_parquet(tmp_path / "again" / "patients.parquet")
    )


def test_bad_design_exits_2_naming_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(NULL.read_text().replace("ratio: 1, regimen", "ratio: -1, regimen", 1))
    r = CliRunner().invoke(trial_app, ["run", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "arms[1].ratio" in r.output
