"""The CLI: the predict contract, input errors (exit 2, file/row/column), the store workflow, demo."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from oncotwin import datasets
from oncotwin.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def lung_split(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """History = first observations of 3 lung mice; targets = their last 2 observations."""
    folder = tmp_path_factory.mktemp("predict")
    ev = datasets.load("vaghi2020-lung").events
    ev = ev[ev["id"].isin(["lung-0", "lung-1", "lung-2"])]
    held = ev.groupby("id").tail(2)
    ev.drop(held.index).to_csv(folder / "H.csv", index=False)
    # Targets deliberately out of time order, to check the output keeps the input order.
    held[["id", "time"]].iloc[::-1].to_csv(folder / "T.csv", index=False)
    held.to_csv(folder / "truth.csv", index=False)
    return {
        "H": folder / "H.csv",
        "T": folder / "T.csv",
        "truth": folder / "truth.csv",
        "dir": folder,
    }


def test_help_is_fast_and_lists_commands() -> None:
    # JAX must not be imported by --help (lazy imports); run in a fresh interpreter.
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "oncotwin.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert time.perf_counter() - start < 30  # sanity bound only; the 1 s target is a benchmark
    for command in ("predict", "models", "ingest", "twin", "forecast", "report", "demo"):
        assert command in out.stdout
    probe = "import sys, oncotwin.cli; print('jax' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip()
        == "False"
    )


def test_models_json_lists_every_model_with_units() -> None:
    code, out = run("models", "--json")
    assert code == 0
    models = {m["name"]: m for m in json.loads(out)}
    assert {"exponential", "gompertz", "stein", "claret", "two_population"} <= set(models)
    assert all(p["unit"] for m in models.values() for p in m["params"])
    assert "Benzekry" in models["gompertz"]["citation"]
    assert "checkpoint_response" in models


def test_models_lists_treatment_modules_with_existing_cards() -> None:
    from importlib import import_module

    from oncotwin.cli import TREATMENT_MODULES

    code, out = run("models")
    assert code == 0 and "treatment and toxicity modules" in out
    root = Path(__file__).resolve().parents[1]
    for module, _, card in TREATMENT_MODULES:
        import_module(module)
        assert (root / card).exists(), card


def test_predict_contract(lung_split: dict[str, Path]) -> None:
    out = lung_split["dir"] / "P.csv"
    code, text = run("predict", "--history", str(lung_split["H"]), "--targets", str(lung_split["T"]),
                     "--out", str(out), "--model", "gompertz", "--method", "laplace", "--level", "0.8")  # fmt: skip
    assert code == 0, text
    pred = pd.read_csv(out)
    targets = pd.read_csv(lung_split["T"])
    assert list(pred.columns) == ["id", "time", "median", "lo", "hi"]
    pd.testing.assert_frame_equal(pred[["id", "time"]], targets)  # one row per target, same order
    assert np.all(pred["lo"] < pred["median"]) and np.all(pred["median"] < pred["hi"])
    truth = pd.read_csv(lung_split["truth"]).merge(pred, on=["id", "time"])
    # Growth forecasts 1-4 days ahead for these mice are within a factor 2 of what was observed.
    assert np.all(np.abs(np.log(truth["median"] / truth["dv"])) < np.log(2))


def test_predict_pool_fits_the_subjects_jointly(lung_split: dict[str, Path]) -> None:
    """--pool: one population fitted to the three histories; forecasts keep the contract and,
    for these mice 1-4 days ahead, stay within a factor 2 of what was observed."""
    out = lung_split["dir"] / "P-pool.csv"
    code, text = run("predict", "--history", str(lung_split["H"]), "--targets", str(lung_split["T"]),
                     "--out", str(out), "--model", "gompertz", "--pool")  # fmt: skip
    assert code == 0, text
    pred = pd.read_csv(out)
    pd.testing.assert_frame_equal(pred[["id", "time"]], pd.read_csv(lung_split["T"]))
    assert np.all(pred["lo"] < pred["median"]) and np.all(pred["median"] < pred["hi"])
    truth = pd.read_csv(lung_split["truth"]).merge(pred, on=["id", "time"])
    assert np.all(np.abs(np.log(truth["median"] / truth["dv"])) < np.log(2))


def test_predict_pool_with_too_few_subjects_exits_2(tmp_path: Path) -> None:
    (tmp_path / "H.csv").write_text("id,time,dv\na,0,10\na,1,11\na,2,12\n")
    (tmp_path / "T.csv").write_text("id,time\na,3\n")
    out = tmp_path / "P.csv"
    code, text = run("predict", "--history", str(tmp_path / "H.csv"), "--targets", str(tmp_path / "T.csv"),
                     "--out", str(out), "--model", "exponential", "--pool")  # fmt: skip
    assert code == 2 and "at least 3 subjects" in " ".join(text.split()) and not out.exists()


def test_predict_follows_planned_treatment(tmp_path: Path) -> None:
    """Treatment rows after the last observation are the plan: more drug, smaller tumour."""
    rows = [
        {"id": "p1", "time": t, "evid": 0, "dv": v}
        for t, v in [(0, 50.0), (7, 40.0), (14, 33.0), (21, 28.0)]
    ]
    doses = [
        {"id": "p1", "time": t, "evid": 1, "amt": 100.0, "agent": "drug"} for t in range(0, 22, 7)
    ]
    base = pd.DataFrame(rows + doses)
    planned = pd.DataFrame(
        [{"id": "p1", "time": t, "evid": 1, "amt": 100.0, "agent": "drug"} for t in (28, 35, 42)]
    )
    pd.concat([base, planned]).to_csv(tmp_path / "treated.csv", index=False)
    base.to_csv(tmp_path / "stopped.csv", index=False)
    pd.DataFrame({"id": ["p1"], "time": [49.0]}).to_csv(tmp_path / "T.csv", index=False)
    medians = {}
    for name in ("treated", "stopped"):
        code, text = run("predict", "--history", str(tmp_path / f"{name}.csv"), "--targets", str(tmp_path / "T.csv"),
                         "--out", str(tmp_path / f"{name}-P.csv"), "--model", "claret", "--method", "laplace")  # fmt: skip
        assert code == 0, text
        medians[name] = pd.read_csv(tmp_path / f"{name}-P.csv")["median"].iloc[0]
    assert medians["treated"] < medians["stopped"]


@pytest.mark.parametrize(
    ("history", "targets", "expect"),
    [
        ("id,time,dv\na,0,10\na,1,abc\n", "id,time\na,2\n", ["H.csv", "row 3", "'dv'"]),
        ("id,time,dv\na,0,10\na,1,11\n", "id,when\na,2\n", ["T.csv", "row 1", "'time'"]),
        (
            "id,time,dv\na,0,10\na,1,11\n",
            "id,time\na,2\nb,3\n",
            ["T.csv", "row 3", "'id'", "no history"],
        ),
        ("id,time,dv\na,0,10\na,1,11\n", "id,time\na,x\n", ["T.csv", "row 2", "'time'"]),
    ],
)
def test_predict_input_errors_exit_2_and_write_nothing(
    tmp_path: Path, history: str, targets: str, expect: list[str]
) -> None:
    (tmp_path / "H.csv").write_text(history)
    (tmp_path / "T.csv").write_text(targets)
    out = tmp_path / "P.csv"
    code, text = run("predict", "--history", str(tmp_path / "H.csv"), "--targets", str(tmp_path / "T.csv"),
                     "--out", str(out), "--model", "exponential", "--method", "laplace")  # fmt: skip
    assert code == 2
    flat = " ".join(text.split())
    for piece in expect:
        assert piece in flat
    assert not out.exists()


def test_store_workflow(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    code, text = run("ingest", "vaghi2020-lung", "--db", db, "--json")
    assert code == 0, text
    assert json.loads(text)["n_patients"] == 20
    code, text = run("patients", "--db", db, "--json")
    assert code == 0 and len(json.loads(text)) == 20
    for _ in range(2):  # recalibrating makes a new version; nothing is overwritten
        code, text = run("twin", "create", "lung-3", "--db", db, "--method", "laplace", "--json")
        assert code == 0, text
    code, text = run("twin", "history", "lung-3", "--db", db, "--json")
    versions = json.loads(text)
    assert [v["version"] for v in versions] == [1, 2]
    code, text = run("twin", "show", "lung-3", "--db", db, "--version", "1", "--json")
    shown = json.loads(text)
    assert shown["version"] == 1 and set(shown["parameters"]) == {"v0", "alpha", "beta", "sigma"}
    bundle = tmp_path / "forecast.json"
    code, text = run(
        "forecast", "lung-3", "--db", db, "--until", "30", "--json", "--fhir", str(bundle)
    )
    assert code == 0, text
    fc = json.loads(text)
    # The FHIR export carries the same forecast (a RiskAssessment + one Observation per time).
    from oncotwin.data.fhir_export import forecast_from_fhir

    exported = forecast_from_fhir(bundle.read_text())["frame"].set_index("time")
    shown = pd.DataFrame(fc["forecast"]).set_index("time")
    assert np.allclose(exported.loc[shown.index, "median"], shown["median"], rtol=1e-12)
    assert fc["twin_version"] == 2 and fc["unit"] == "mm3"
    last = fc["forecast"][-1]
    assert last["time"] == pytest.approx(30.0)
    assert last["lo_90"] < last["lo_50"] < last["median"] < last["hi_50"] < last["hi_90"]
    code, text = run("report", "lung-3", "--db", db, "--out", str(tmp_path / "lung-3.html"))
    assert code == 0, text
    assert "lung-3" in (tmp_path / "lung-3.html").read_text()
    code, text = run("twin", "show", "nobody", "--db", db)
    assert code == 2 and "nobody" in text


def test_population_fit_show_and_prior(tmp_path: Path, lung_split: dict[str, Path]) -> None:
    db = str(tmp_path / "pop.db")
    code, out = run("population", "fit", "--name", "lung", "--data", str(lung_split["H"]),
                    "--method", "svi", "--db", db, "--json")  # fmt: skip
    assert code == 0, out
    fitted = json.loads(out[out.index("{") :])
    assert fitted["version"] == 1 and fitted["subjects"] == ["lung-0", "lung-1", "lung-2"]
    assert set(fitted["summary"]) == {"v0", "alpha", "beta", "sigma"}
    page = tmp_path / "pop.html"
    code, out = run("population", "show", "lung", "--db", db, "--report", str(page))
    assert code == 0 and "population lung" in out and "between-patient" in out
    assert "Visual predictive check" in page.read_text() or "VPC" in page.read_text()
    code, out = run("twin", "create", "lung-1", "--prior", "lung", "--method", "laplace",
                    "--db", db, "--json")  # fmt: skip
    assert code == 0, out
    (twin,) = json.loads(out[out.index("[") :])
    assert twin["model"] == "gompertz"
    code, out = run("twin", "create", "lung-1", "--prior", "nope", "--db", db)
    assert code == 2 and "no population 'nope'" in out
    code, out = run("twin", "create", "lung-1", "--prior", "lung", "--error-model", "combined",
                    "--db", db)  # fmt: skip
    said = " ".join(out.split())
    assert code == 2 and "fitted with the proportional error model, not combined" in said, out


def test_population_fit_error_model(tmp_path: Path, lung_split: dict[str, Path]) -> None:
    """--error-model combined is fitted and stored with the population and reaches the twins
    calibrated with it as prior; an unknown one exits 2 before the data are ingested."""
    db = str(tmp_path / "bad.db")
    code, out = run("population", "fit", "--name", "lung", "--data", str(lung_split["H"]),
                    "--error-model", "additive", "--db", db)  # fmt: skip
    assert code == 2 and "unknown error model 'additive'" in " ".join(out.split()), out
    code, out = run("patients", "--db", db, "--json")
    assert code == 0 and json.loads(out) == [], out
    code, out = run("population", "fit", "--name", "lung", "--data", str(lung_split["H"]),
                    "--error-model", "combined", "--method", "svi", "--db", db, "--json")  # fmt: skip
    assert code == 0, out
    fitted = json.loads(out[out.index("{") :])
    assert fitted["error_model"] == "combined"
    assert set(fitted["summary"]) == {"v0", "alpha", "beta", "sigma", "sigma_add"}
    page = tmp_path / "combined.html"  # its report: predictive check and fit with this error
    code, out = run("population", "show", "lung", "--db", db, "--report", str(page))
    assert code == 0, out
    assert "sigma_add" in page.read_text() and "combined" in page.read_text()
    # a twin with this population as its prior, and one calibrated on its own, both combined
    for extra in (["--prior", "lung"], ["--error-model", "combined"]):
        code, out = run("twin", "create", "lung-1", *extra, "--method", "laplace", "--db", db,
                        "--json")  # fmt: skip
        assert code == 0, out
        (twin,) = json.loads(out[out.index("[") :])
        assert set(twin["parameters"]) == {"v0", "alpha", "beta", "sigma", "sigma_add"}
    # asking for the default error model explicitly is still asking: refused, nothing stored
    code, before = run("twin", "history", "lung-1", "--db", db, "--json")
    assert code == 0, before
    code, out = run("twin", "create", "lung-1", "--prior", "lung", "--error-model",
                    "proportional", "--method", "laplace", "--db", db)  # fmt: skip
    said = " ".join(out.split())
    assert code == 2 and "fitted with the combined error model, not proportional" in said, out
    assert run("twin", "history", "lung-1", "--db", db, "--json") == (0, before)


def test_twin_update_assimilates_new_data_and_records_surprises(tmp_path: Path) -> None:
    db = str(tmp_path / "u.db")
    ev = datasets.load("vaghi2020-lung").events
    ev = ev[ev["id"] == "lung-3"].reset_index(drop=True)
    ev.iloc[:9].to_csv(tmp_path / "first.csv", index=False)
    new = ev.iloc[9:10].copy()
    new.to_csv(tmp_path / "next.csv", index=False)
    outlier = new.assign(time=new["time"] + 1.0, dv=new["dv"] * 4.0)
    outlier.to_csv(tmp_path / "outlier.csv", index=False)
    assert run("ingest", str(tmp_path / "first.csv"), "--db", db)[0] == 0
    code, out = run("twin", "create", "lung-3", "--method", "nuts", "--db", db)
    assert code == 0, out
    code, out = run("twin", "update", "lung-3", str(tmp_path / "next.csv"), "--db", db, "--json")
    assert code == 0, out
    step = json.loads(out[out.index("{") :])
    assert step["version"] == 2 and step["update"] in ("reweighted", "recalibrated")
    assert step["surprises"] == []  # the mouse's real next volume is no surprise
    code, out = run("twin", "update", "lung-3", str(tmp_path / "outlier.csv"), "--db", db)
    assert code == 0, out
    assert "surprise at day" in out
    from oncotwin.store import Store

    with Store(db) as store:
        (surprise,) = store.surprises("lung-3")
        assert surprise.observed == pytest.approx(float(outlier["dv"].iloc[0]))
        assert surprise.observed > surprise.hi
        assert store.twin("lung-3").version == 3
    code, out = run("report", "lung-3", "--db", db, "--out", str(tmp_path / "r.html"))
    assert code == 0, out
    page = (tmp_path / "r.html").read_text()
    assert "Surprises" in page and "outside the previous forecast" in page


def test_ingest_bad_file_changes_nothing(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,time,dv\na,0,10\na,1,abc\n")
    code, text = run("ingest", str(bad), "--db", db)
    assert code == 2 and "row 3" in " ".join(text.split()), text  # the console wraps lines
    code, text = run("patients", "--db", db, "--json")
    assert json.loads(text) == []


def test_demo_quick_writes_report_and_summary(tmp_path: Path) -> None:
    code, text = run("demo", "--quick", "--out", str(tmp_path))
    assert code == 0, text
    summary = json.loads((tmp_path / "summary.json").read_text())
    patients = summary["patients"]
    assert {p["dataset"] for p in patients} == {"vaghi2020-lung", "sauer2023-xenografts"}
    for p in patients:
        assert {
            "patient",
            "model",
            "unit",
            "last_observation",
            "forecast_at_horizon",
            "diagnostics",
            "report",
        } <= set(p)
        for f in p["forecast_at_horizon"].values():
            assert (
                f["lo90"] <= f["median"] <= f["hi90"] and f["time"] > p["last_observation"]["time"]
            )
        assert isinstance(p["diagnostics"]["converged"], bool)
        assert (tmp_path / p["report"]).exists()
    html = (tmp_path / "report.html").read_text()
    assert all(p["report"] in html for p in patients)


def two_arm_cohort(path: Path, n: int, *, rate: float, effect: float, omega: float,
                   noise: float, times: np.ndarray, seed: int) -> None:  # fmt: skip
    """Write `n` patients growing exponentially from 100 mm3, arms A and B alternating, the
    growth rate ``rate * exp(effect * [arm B] + omega * N(0, 1))``, log-normal noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        arm = "AB"[i % 2]
        a = rate * np.exp(effect * (arm == "B") + omega * rng.standard_normal())
        y = 100.0 * np.exp(a * times + noise * rng.standard_normal(len(times)))
        rows += [{"id": f"p{i}", "time": t, "dv": v, "kind": "volume", "unit": "mm3", "arm": arm}
                 for t, v in zip(times, y, strict=True)]  # fmt: skip
    pd.DataFrame(rows).to_csv(path, index=False)


def test_population_covariate_effect_is_recovered_and_used_in_priors(tmp_path: Path) -> None:
    """A synthetic cohort whose arm B grows exp(0.5) times faster (log-normal between-patient
    SD 0.2, 10% noise): the stored population's arm effect covers 0.5 and excludes 0, a new
    patient's prior follows its arm, and a patient without an arm is refused."""
    two_arm_cohort(tmp_path / "cohort.csv", 20, rate=0.1, effect=0.5, omega=0.2, noise=0.1,
                   times=np.arange(0.0, 15.0, 2.0), seed=3)  # fmt: skip
    new = [{"id": pid, "time": t, "dv": 100.0 * np.exp(0.12 * t), "kind": "volume",
            "unit": "mm3", "arm": arm} for pid, arm in (("new-a", "A"), ("new-b", "B"))
           for t in (0.0, 2.0)]  # fmt: skip
    pd.DataFrame(new).to_csv(tmp_path / "new.csv", index=False)
    db = str(tmp_path / "cov.db")
    code, out = run("population", "fit", "--name", "arms", "--data", str(tmp_path / "cohort.csv"),
                    "--model", "exponential", "--covariate", "arm", "--db", db, "--json")  # fmt: skip
    assert code == 0, out
    fitted = json.loads(out[out.index("{") :])
    assert fitted["covariates"] == ["arm=B"] and not fitted["diagnostics"]["problems"]
    effect = fitted["summary"]["a"]["effects"]["arm=B"]  # median, 5%, 95% on log a
    assert effect[1] < 0.5 < effect[2] and effect[1] > 0.2, effect
    code, out = run("population", "show", "arms", "--db", db, "--report", str(tmp_path / "p.html"))
    assert code == 0 and re.search(r"arm=B on a: \+0\.[4-8]\d* \(\+0\.", out), out
    html = (tmp_path / "p.html").read_text()
    assert "typical (average) covariate values" not in html
    # the report's effect row is the growth rate's (not the unpooled v0's, which has none)
    row = re.search(r"<td>arm=B</td><td><code>(\w+)</code></td><td class=\"n\">([\d.]+)</td>", html)
    assert row and row[1] == "a" and float(row[2]) == pytest.approx(effect[0], abs=0.01), row

    code, out = run("ingest", str(tmp_path / "new.csv"), "--db", db)
    assert code == 0, out
    code, out = run("twin", "create", "new-a", "new-b", "--prior", "arms", "--method", "laplace",
                    "--db", db, "--json")  # fmt: skip
    assert code == 0, out
    from oncotwin.store import Store

    with Store(f"sqlite:///{db}") as store:
        priors = {pid: store.twin(pid).settings["prior"] for pid in ("new-a", "new-b")}
    assert "population arms" in priors["new-a"]["source"]
    # prior location of log a: [loc, scale] on the unconstrained scale
    shift = (
        priors["new-b"]["unconstrained_normal"]["a"][0]
        - priors["new-a"]["unconstrained_normal"]["a"][0]
    )
    assert shift == pytest.approx(effect[0], abs=0.05)

    pd.DataFrame([{**new[0], "id": "new-c", "arm": None}]).to_csv(tmp_path / "c.csv", index=False)
    run("ingest", str(tmp_path / "c.csv"), "--db", db)
    code, out = run("twin", "create", "new-c", "--prior", "arms", "--db", db)
    said = " ".join(out.split())  # the console wraps long lines
    assert code == 2 and "patient 'new-c' has no value for covariate 'arm'" in said, out


def test_predict_reference_population_adjusts_for_a_covariate(tmp_path: Path) -> None:
    """Two subjects with the same history, one per arm, forecast with priors from a reference
    cohort whose arm B grows exp(0.7) times faster: with --covariate arm, B's forecast is the
    larger, and without it the two are the same (to Monte Carlo error)."""
    two_arm_cohort(tmp_path / "ref.csv", 10, rate=0.08, effect=0.7, omega=0.15, noise=0.05,
                   times=np.arange(0.0, 15.0, 3.0), seed=5)  # fmt: skip
    hist = [{"id": pid, "time": t, "dv": v, "kind": "volume", "unit": "mm3", "arm": arm}
            for pid, arm in (("x", "A"), ("y", "B")) for t, v in ((0.0, 100.0), (3.0, 140.0))]  # fmt: skip
    pd.DataFrame(hist).to_csv(tmp_path / "hist.csv", index=False)
    pd.DataFrame({"id": ["x", "y"], "time": [20.0, 20.0]}).to_csv(tmp_path / "t.csv", index=False)
    common = ["predict", "--history", str(tmp_path / "hist.csv"), "--targets",
              str(tmp_path / "t.csv"), "--model", "exponential", "--method", "laplace"]  # fmt: skip
    code, out = run(*common, "--out", str(tmp_path / "adj.csv"), "--reference",
                    str(tmp_path / "ref.csv"), "--covariate", "arm")  # fmt: skip
    assert code == 0, out
    adj = pd.read_csv(tmp_path / "adj.csv").set_index("id")
    code, out = run(*common, "--out", str(tmp_path / "plain.csv"), "--reference",
                    str(tmp_path / "ref.csv"))  # fmt: skip
    assert code == 0, out
    plain = pd.read_csv(tmp_path / "plain.csv").set_index("id")
    # the same but for Monte Carlo error (each subject has its own forecast draws)
    assert plain.loc["x", "median"] == pytest.approx(plain.loc["y", "median"], rel=0.01)
    assert adj.loc["y", "median"] > 1.1 * adj.loc["x", "median"]

    code, out = run(*common, "--out", str(tmp_path / "no.csv"), "--covariate", "arm")
    assert code == 2 and "give a reference cohort or pool" in out, out
    pd.DataFrame([{**hist[0], "arm": "C"}]).to_csv(tmp_path / "c.csv", index=False)
    pd.DataFrame({"id": ["x"], "time": [20.0]}).to_csv(tmp_path / "tc.csv", index=False)
    code, out = run("predict", "--history", str(tmp_path / "c.csv"), "--targets",
                    str(tmp_path / "tc.csv"), "--out", str(tmp_path / "no.csv"), "--reference",
                    str(tmp_path / "ref.csv"), "--covariate", "arm")  # fmt: skip
    said = " ".join(out.split())  # the console wraps long lines
    assert code == 2 and "arm = 'C' is not one of the population's levels ['A', 'B']" in said, out
    assert not (tmp_path / "no.csv").exists()


def test_predict_error_model_reaches_every_calibration_and_the_population(
    lung_split: dict[str, Path], tmp_path: Path
) -> None:
    """--error-model combined: the subjects' posteriors and the reference population behind
    their priors both use the additive + proportional error; the forecasts keep the contract.
    An unknown error model exits 2 before any fit and writes nothing."""
    from oncotwin.data import read_events
    from oncotwin.predict import predict, read_targets

    ev = datasets.load("vaghi2020-lung").events
    ev[ev["id"].isin(["lung-3", "lung-4", "lung-5", "lung-6"])].to_csv(
        tmp_path / "ref.csv", index=False
    )
    result = predict(read_events(lung_split["H"]), read_targets(lung_split["T"]),
                     model="gompertz", method="laplace", error_model="combined",
                     reference=read_events(tmp_path / "ref.csv"))  # fmt: skip
    for twin in result.twins.values():
        post = twin.posterior
        assert post.error_model == "combined" and post.names[-2:] == ("sigma", "sigma_add")
        assert post.prior.source.startswith("reference population")
    table = result.table
    assert np.all(table["lo"] < table["median"]) and np.all(table["median"] < table["hi"])

    out = tmp_path / "P.csv"
    code, text = run("predict", "--history", str(lung_split["H"]), "--targets", str(lung_split["T"]),
                     "--out", str(out), "--model", "gompertz", "--error-model", "additive")  # fmt: skip
    assert code == 2 and "additive" in text and not out.exists(), text
