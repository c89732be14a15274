"""Forecast accuracy of `oncotwin predict` against baselines, on shipped real data sets.

Data sets (--datasets, comma-separated): lung (vaghi2020-lung), breast (vaghi2020-breast),
breast-fluo (vaghi2020-breast-fluo, bioluminescence), colorectal (ffcd2000-colorectal, SLD under
chemotherapy). Only subjects with at least 6 observations take part.

Protocols (--protocol, comma-separated):
- last3: hold out each subject's last 3 observations (last 2 visits for colorectal) and
  forecast them from the rest.
- first3: forecast every later observation of each subject from its first 3 observations.

The history given to every method keeps all treatment rows (the planned schedule; none of
these four data sets has dose rows, colorectal carries its arm as a covariate) and, for
colorectal, the left-censored observations (cens 1; see the data set's PROVENANCE.md: SLD
back-transformed from a Box-Cox scale, censored at a detection limit). Errors are computed
only on uncensored held-out observations. The baselines fit only uncensored observations.

Methods, all on the same histories and targets, in one run:
- curve_fit baseline: scipy.optimize.curve_fit of the Gompertz model (exponential if Gompertz
  fails) to each subject's log-observations, 90% interval from the fit's parameter covariance
  (2000 parameter draws) plus the residual log-scale variance (t quantile).
- Vaghi population reduced Gompertz (with --reference): benchmarks/vaghi_population.py, a
  re-implementation of Vaghi et al., PLoS Comput Biol 2020 (population fit on the reference
  cohort, Bayesian MAP + Laplace for the individual); on the Vaghi sets it uses the known
  injection volume at day 0, as the published method did (marked "V(0) known").
- oncotwin predict, through the CLI; with --reference also `oncotwin predict --reference`;
  with --pool also `oncotwin predict --pool` (all subjects' histories fitted jointly in one
  population model) and, with both, `--reference --pool` (the reference cohort's complete data
  and the subjects' histories fitted jointly). With --error-model proportional,combined every
  oncotwin variant runs once per residual error model (rows marked --error-model combined).
  Reference cohorts are 2-fold: the subjects are split in two halves (alternate ids) and each
  half's complete data is the reference for the other half.

Reported per data set x protocol: subjects and points scored, median (with a 90% bootstrap
interval over subjects) and mean absolute log error |log(median / observed)|, coverage of the
90% interval, median interval width ratio hi/lo, wall time.

Usage:
    python benchmarks/forecast.py [--method nuts|laplace] [--model auto|NAME]
                                  [--datasets lung,breast,breast-fluo,colorectal]
                                  [--protocol last3,first3]
                                  [--reference]   # also the Vaghi baseline and predict --reference
                                  [--pool]        # also predict --pool (and --reference --pool)
                                  [--covariate arm]  # populations adjust for this column
                                  [--error-model proportional,combined] [--seed 0]
Defaults: --method nuts --model auto --datasets lung,breast --protocol last3.
Quick run: --method laplace --model gompertz --datasets lung --protocol last3,first3 --reference
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import vaghi_population  # benchmarks/vaghi_population.py (this folder is on sys.path)
from scipy import optimize, stats

from oncotwin import datasets

DATASETS = {
    "lung": "vaghi2020-lung",
    "breast": "vaghi2020-breast",
    "breast-fluo": "vaghi2020-breast-fluo",
    "colorectal": "ffcd2000-colorectal",
}
HOLD_OUT = {"ffcd2000-colorectal": 2}  # last3 protocol: observations held out (default 3)
FIRST = 3  # first3 protocol: observations kept
MIN_OBS = 6
BOOTSTRAP = 1000  # subject resamples for the interval of the median error


def observations(events: pd.DataFrame) -> pd.DataFrame:
    """Usable observation rows (censored ones included), sorted by id and time."""
    return events[(events["evid"] == 0) & (events["mdv"] == 0)].sort_values(["id", "time"])


def split(name: str, protocol: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History event rows (treatments kept) and held-out uncensored observations (id, time, dv)."""
    ev = datasets.load(name).events
    obs = observations(ev)
    counts = obs.groupby("id").size()
    keep = counts[counts >= MIN_OBS].index
    obs = obs[obs["id"].isin(keep)]
    if protocol == "last3":
        held = obs.groupby("id").tail(HOLD_OUT.get(name, 3))
    elif protocol == "first3":
        held = obs.drop(obs.groupby("id").head(FIRST).index)
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    history = ev[ev["id"].isin(keep)].drop(held.index)
    truth = held[held["cens"] == 0][["id", "time", "dv"]].reset_index(drop=True)
    return history, truth


def run_predict(history: pd.DataFrame, targets: pd.DataFrame, args: argparse.Namespace,
                reference: pd.DataFrame | None = None, pool: bool = False,
                error_model: str = "proportional") -> pd.DataFrame:  # fmt: skip
    """Run the `oncotwin predict` CLI; returns its output table."""
    with tempfile.TemporaryDirectory() as tmp:
        h, t, p = Path(tmp, "H.csv"), Path(tmp, "T.csv"), Path(tmp, "P.csv")
        history.to_csv(h, index=False)
        targets[["id", "time"]].to_csv(t, index=False)
        cmd = [sys.executable, "-m", "oncotwin.cli", "predict", "--history", str(h), "--targets", str(t),
               "--out", str(p), "--model", args.model, "--method", args.method, "--seed", str(args.seed),
               "--error-model", error_model]  # fmt: skip
        if reference is not None:
            r = Path(tmp, "R.csv")
            reference.to_csv(r, index=False)
            cmd += ["--reference", str(r)]
        if pool:
            cmd += ["--pool"]
        if reference is not None or pool:
            cmd += [arg for c in args.covariate for arg in ("--covariate", c)]
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
        return pd.read_csv(p, dtype={"id": str})  # ids such as "14" stay strings


def gompertz(t: np.ndarray, logv0: float, alpha: float, beta: float) -> np.ndarray:
    return logv0 + alpha / beta * (1 - np.exp(-beta * t))


def exponential(t: np.ndarray, logv0: float, a: float) -> np.ndarray:
    return logv0 + a * t


def baseline(history: pd.DataFrame, targets: pd.DataFrame, level: float = 0.9) -> pd.DataFrame:
    """Per-subject least-squares fits on the log scale with covariance-based intervals."""
    obs = observations(history)
    obs = obs[obs["cens"] == 0]
    with warnings.catch_warnings(), np.errstate(all="ignore"):  # wild extrapolations overflow
        warnings.simplefilter("ignore")
        return pd.concat([_baseline_subject(obs[obs["id"] == ident], tg, level)
                          for ident, tg in targets.groupby("id", sort=False)], ignore_index=True)  # fmt: skip


def _baseline_subject(h: pd.DataFrame, tg: pd.DataFrame, level: float) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    t0 = h["time"].min()
    x, y = h["time"].to_numpy() - t0, np.log(h["dv"].to_numpy())
    xt = tg["time"].to_numpy() - t0
    for f, p0 in ((gompertz, [y[0], 0.3, 0.05]), (exponential, [y[0], 0.1])):
        try:
            popt, pcov = optimize.curve_fit(f, x, y, p0=p0, maxfev=20000)
        except (RuntimeError, ValueError, TypeError):
            continue
        if np.all(np.isfinite(pcov)) and len(x) > len(popt):
            dof = len(x) - len(popt)
            s2 = np.sum((y - f(x, *popt)) ** 2) / dof
            draws = rng.multivariate_normal(popt, pcov, size=2000)
            sd = np.sqrt(np.nanvar([f(xt, *d) for d in draws], axis=0) + s2)
            q = stats.t.ppf(0.5 + level / 2, dof)
            m = f(xt, *popt)
            return pd.DataFrame({"id": tg["id"], "time": tg["time"], "median": np.exp(m),
                                 "lo": np.exp(m - q * sd), "hi": np.exp(m + q * sd)})  # fmt: skip
    # too few points for any fit: persistence forecast, no interval
    return pd.DataFrame({"id": tg["id"], "time": tg["time"], "median": h["dv"].iloc[-1],
                         "lo": np.nan, "hi": np.nan})  # fmt: skip


def two_fold(history: pd.DataFrame, truth: pd.DataFrame, full: pd.DataFrame,
             forecast: Callable[..., pd.DataFrame]) -> pd.DataFrame:  # fmt: skip
    """forecast(history, targets, reference events) per half of the subjects, concatenated.

    The subjects are split in two halves (alternate ids); each half's complete data is the
    reference cohort of the other half.
    """
    ids = sorted(truth["id"].unique())
    folds = [ids[0::2], ids[1::2]]
    parts = []
    for k in range(2):
        test, ref = folds[k], folds[1 - k]
        parts.append(forecast(history[history["id"].isin(test)], truth[truth["id"].isin(test)],
                              full[full["id"].isin(ref)]))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def score(pred: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Subjects, points, median and mean |log error|, 90% coverage, median hi/lo."""
    # times went through CSV files and parsers: match them to the microday, not the last bit
    merged = truth.assign(time=truth["time"].round(6)).merge(
        pred.assign(time=pred["time"].round(6)), on=["id", "time"], validate="one_to_one"
    )
    assert len(merged) == len(truth), "a forecast is missing"
    with np.errstate(divide="ignore"):  # a forecast of 0 (overflowed fit) scores inf
        err = np.abs(np.log(merged["median"] / merged["dv"]))
    covered = (merged["dv"] >= merged["lo"]) & (merged["dv"] <= merged["hi"])
    # 90% bootstrap interval of the median error, resampling subjects (their points together)
    by_subject = [e.to_numpy() for _, e in err.groupby(merged["id"])]
    rng = np.random.default_rng(0)
    boot = [np.median(np.concatenate([by_subject[i] for i in
                                      rng.integers(len(by_subject), size=len(by_subject))]))
            for _ in range(BOOTSTRAP)]  # fmt: skip
    return {
        "subjects": merged["id"].nunique(),
        "points": len(merged),
        "median": float(np.median(err)),
        "median_ci": (float(np.quantile(boot, 0.05)), float(np.quantile(boot, 0.95))),
        "mean": float(np.mean(err)),
        "coverage": float(np.mean(covered)),
        "width": float(np.nanmedian(merged["hi"] / merged["lo"])),
    }


def timed(fn: Callable[[], pd.DataFrame]) -> tuple[pd.DataFrame, float]:
    start = time.perf_counter()
    return fn(), time.perf_counter() - start


def oncotwin_methods(history: pd.DataFrame, truth: pd.DataFrame, full: pd.DataFrame,
                     args: argparse.Namespace, em: str, suffix: str) -> dict[str, Callable]:  # fmt: skip
    """The `oncotwin predict` variants asked for, with error model `em`, by label."""

    def run(pool: bool) -> Callable[..., pd.DataFrame]:
        return lambda h, t, r: run_predict(h, t, args, reference=r, pool=pool, error_model=em)

    methods = {f"oncotwin predict{suffix}": lambda: run(False)(history, truth, None)}
    if args.pool:
        methods[f"oncotwin predict --pool{suffix}"] = lambda: run(True)(history, truth, None)
    if args.reference:
        methods[f"oncotwin predict --reference{suffix}"] = lambda: two_fold(
            history, truth, full, run(False)
        )
    if args.reference and args.pool:
        methods[f"oncotwin predict --reference --pool{suffix}"] = lambda: two_fold(
            history, truth, full, run(True)
        )
    return methods


def run_methods(name: str, protocol: str, args: argparse.Namespace) -> tuple[pd.DataFrame, list]:
    """Truth and [(label, predictions, seconds)] of every method on one data set x protocol."""
    history, truth = split(name, protocol)
    full = datasets.load(name).events
    injection = vaghi_population.INJECTION.get(name)

    def vaghi(h: pd.DataFrame, t: pd.DataFrame, r: pd.DataFrame) -> pd.DataFrame:
        return vaghi_population.forecast(observations(h), t, observations(r), injection)

    methods = {"curve_fit baseline": lambda: baseline(history, truth)}
    if args.reference:
        label = "Vaghi pop. reduced Gompertz" + (", V(0) known" if injection else "")
        methods[label] = lambda: two_fold(history, truth, full, vaghi)
    for em in args.error_model.split(","):
        suffix = "" if em == "proportional" else f" --error-model {em}"
        methods |= oncotwin_methods(history, truth, full, args, em, suffix)
    return truth, [(label, *timed(fn)) for label, fn in methods.items()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", default="nuts")
    parser.add_argument("--model", default="auto")
    parser.add_argument("--datasets", default="lung,breast", help=",".join(DATASETS))
    parser.add_argument("--protocol", default="last3", help="last3, first3 or last3,first3")
    parser.add_argument(
        "--reference", action="store_true", help="also run with a 2-fold reference cohort"
    )
    parser.add_argument(
        "--pool", action="store_true", help="also run `oncotwin predict --pool` (joint population)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of oncotwin predict")
    parser.add_argument(
        "--error-model", default="proportional",
        help="residual error model(s) of oncotwin predict, comma-separated: each adds its rows",
    )  # fmt: skip
    parser.add_argument(
        "--covariate", action="append", default=[],
        help="covariate column for the populations of --reference and --pool (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    print(f"oncotwin predict --model {args.model} --method {args.method}; "
          f"subjects with >= {MIN_OBS} observations")  # fmt: skip
    for short in args.datasets.split(","):
        name = DATASETS[short]
        for protocol in args.protocol.split(","):
            truth, results = run_methods(name, protocol, args)
            what = (f"last {HOLD_OUT.get(name, 3)} held out" if protocol == "last3"
                    else f"all after the first {FIRST} held out")  # fmt: skip
            print(f"\n{name}, protocol {protocol} ({what})")
            print(f"{'method':<60}{'subjects':>9}{'points':>8}{'median |log err| (90% CI)':>27}"
                  f"{'mean |log err|':>16}{'90% cov':>9}{'hi/lo':>9}{'time s':>8}")  # fmt: skip
            for label, pred, secs in results:
                s = score(pred, truth)
                lo, hi = s["median_ci"]
                median = f"{s['median']:.3f} ({lo:.3f}-{hi:.3f})"
                print(f"{label:<60}{s['subjects']:>9}{s['points']:>8}{median:>27}"
                      f"{s['mean']:>16.3f}{s['coverage']:>9.2f}{s['width']:>9.3g}{secs:>8.1f}")  # fmt: skip
            sys.stdout.flush()


if __name__ == "__main__":
    main()
