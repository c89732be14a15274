"""Forecast accuracy of `oncotwin predict` against a per-subject curve_fit baseline.

For each shipped Vaghi et al. 2020 volume data set (Lewis lung, LM2-4 breast), subjects with at
least 6 observations have their last 3 observations held out. Both methods see the same history
and forecast the held-out times. Reported: median absolute log error |log(median / observed)| and
coverage of the 90% interval, measured in one run, side by side.

Baseline: scipy.optimize.curve_fit of the Gompertz model (exponential if Gompertz fails) to
log-volumes, 90% interval from the fit's parameter covariance (2000 parameter draws) plus the
residual log-scale variance (t quantile).

Usage:
    python benchmarks/forecast.py [--method nuts|laplace] [--model auto|NAME] [--datasets lung,breast]
                                  [--reference]    # also run with a 2-fold reference cohort
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, stats

from oncotwin import datasets

HOLD_OUT = 3
MIN_OBS = 6


def split(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History rows and held-out rows (id, time, dv) of a data set."""
    ev = datasets.load(name).events
    obs = ev[(ev["evid"] == 0) & (ev["mdv"] == 0)].sort_values(["id", "time"])
    counts = obs.groupby("id").size()
    obs = obs[obs["id"].isin(counts[counts >= MIN_OBS].index)]
    held = obs.groupby("id").tail(HOLD_OUT)
    return obs.drop(held.index), held[["id", "time", "dv"]].reset_index(drop=True)


def run_predict(history: pd.DataFrame, targets: pd.DataFrame, args: argparse.Namespace,
                reference: pd.DataFrame | None = None) -> tuple[pd.DataFrame, float]:  # fmt: skip
    """Run the `oncotwin predict` CLI; returns its output table and wall time (s)."""
    with tempfile.TemporaryDirectory() as tmp:
        h, t, p = Path(tmp, "H.csv"), Path(tmp, "T.csv"), Path(tmp, "P.csv")
        history.to_csv(h, index=False)
        targets[["id", "time"]].to_csv(t, index=False)
        cmd = [sys.executable, "-m", "oncotwin.cli", "predict", "--history", str(h), "--targets", str(t),
               "--out", str(p), "--model", args.model, "--method", args.method, "--seed", "0"]  # fmt: skip
        if reference is not None:
            r = Path(tmp, "R.csv")
            reference.to_csv(r, index=False)
            cmd += ["--reference", str(r)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
        return pd.read_csv(p), time.perf_counter() - start


def gompertz(t: np.ndarray, logv0: float, alpha: float, beta: float) -> np.ndarray:
    return logv0 + alpha / beta * (1 - np.exp(-beta * t))


def exponential(t: np.ndarray, logv0: float, a: float) -> np.ndarray:
    return logv0 + a * t


def baseline(history: pd.DataFrame, targets: pd.DataFrame, level: float = 0.9) -> pd.DataFrame:
    """Per-subject least-squares fits on the log scale with covariance-based intervals."""
    rng = np.random.default_rng(0)
    rows = []
    for ident, tg in targets.groupby("id", sort=False):
        h = history[history["id"] == ident]
        t0 = h["time"].min()
        x, y = h["time"].to_numpy() - t0, np.log(h["dv"].to_numpy())
        fit = None
        for f, p0 in ((gompertz, [y[0], 0.3, 0.05]), (exponential, [y[0], 0.1])):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    popt, pcov = optimize.curve_fit(f, x, y, p0=p0, maxfev=20000)
                if np.all(np.isfinite(pcov)) and len(x) > len(popt):
                    fit = (f, popt, pcov)
                    break
            except (RuntimeError, ValueError):
                continue
        xt = tg["time"].to_numpy() - t0
        if fit is None:  # too few points for any fit: persistence forecast, no interval
            rows.append(pd.DataFrame({"id": ident, "time": tg["time"], "median": h["dv"].iloc[-1],
                                      "lo": np.nan, "hi": np.nan}))  # fmt: skip
            continue
        f, popt, pcov = fit
        dof = len(x) - len(popt)
        s2 = np.sum((y - f(x, *popt)) ** 2) / dof
        draws = rng.multivariate_normal(popt, pcov, size=2000)
        with np.errstate(over="ignore", invalid="ignore"):
            curves = np.array([f(xt, *d) for d in draws])
        sd = np.sqrt(np.nanvar(curves, axis=0) + s2)
        q = stats.t.ppf(0.5 + level / 2, dof)
        m = f(xt, *popt)
        rows.append(pd.DataFrame({"id": ident, "time": tg["time"], "median": np.exp(m),
                                  "lo": np.exp(m - q * sd), "hi": np.exp(m + q * sd)}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def score(pred: pd.DataFrame, truth: pd.DataFrame) -> tuple[float, float, float]:
    """Median |log error|, 90% coverage, median interval width ratio hi/lo."""
    merged = truth.merge(pred, on=["id", "time"], validate="one_to_one")
    err = np.abs(np.log(merged["median"] / merged["dv"]))
    covered = (merged["dv"] >= merged["lo"]) & (merged["dv"] <= merged["hi"])
    return (
        float(np.median(err)),
        float(np.mean(covered)),
        float(np.nanmedian(merged["hi"] / merged["lo"])),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", default="nuts")
    parser.add_argument("--model", default="auto")
    parser.add_argument("--datasets", default="lung,breast")
    parser.add_argument(
        "--reference", action="store_true", help="also run with a 2-fold reference cohort"
    )
    args = parser.parse_args()
    print(
        f"oncotwin predict --model {args.model} --method {args.method}; hold out last {HOLD_OUT} of >= {MIN_OBS}"
    )
    print(
        f"{'data set':<20}{'subjects':>9}{'method':>34}{'median |log err|':>18}{'90% coverage':>14}{'hi/lo':>8}{'time s':>8}"
    )
    for short in args.datasets.split(","):
        name = f"vaghi2020-{short}"
        history, truth = split(name)
        n = truth["id"].nunique()
        results = []
        start = time.perf_counter()
        results.append(
            ("curve_fit baseline", baseline(history, truth), time.perf_counter() - start)
        )
        pred, secs = run_predict(history, truth, args)
        results.append(("oncotwin predict", pred, secs))
        if args.reference:
            ids = sorted(truth["id"].unique())
            folds = [ids[0::2], ids[1::2]]
            full = datasets.load(name).events
            parts, total = [], 0.0
            for k in range(2):
                test, ref = folds[k], folds[1 - k]
                p, s = run_predict(history[history["id"].isin(test)], truth[truth["id"].isin(test)], args,
                                   reference=full[full["id"].isin(ref)])  # fmt: skip
                parts.append(p)
                total += s
            results.append(("oncotwin predict --reference", pd.concat(parts), total))
        for label, pred, secs in results:
            mae, cov, width = score(pred, truth)
            print(f"{name:<20}{n:>9}{label:>34}{mae:>18.3f}{cov:>14.2f}{width:>8.2f}{secs:>8.1f}")


if __name__ == "__main__":
    main()
