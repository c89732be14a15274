"""`oncotwin spatial` commands (CliRunner on spatial_app) and the spatial report."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from oncotwin.cli_spatial import spatial_app


def test_calibrate_and_forecast_commands(noisy_manifest: Path, tmp_path: Path) -> None:
    manifest = noisy_manifest
    runner = CliRunner()
    res = runner.invoke(spatial_app, ["forecast", str(manifest), "--visits", "0,1,2", "--plan", "standard",
                                      "--plan", "hypofractionated", "--fix", "k_chemo=0.01", "--draws", "20",
                                      "--detection", "0.05", "--crop-margin", "0", "--out", str(tmp_path / "out"), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{") :])
    assert set(out["forecasts"]) == {"standard", "hypofractionated"}
    q = out["forecasts"]["standard"]["total_cells"]["day 161"]
    assert q["lower"] <= q["median"] <= q["upper"]
    assert out["comparison"][0]["visit"] == 3 and out["seed"] == 0
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<script" not in html and "data:image/png;base64" in html and "Dice" in html
    # bad input: a missing manifest is a clean exit 2 with the file named
    bad = runner.invoke(spatial_app, ["calibrate", str(tmp_path / "missing.json")])
    assert bad.exit_code == 2 and "manifest not found" in bad.output
