"""Speed of the population workflow (issue targets in brackets), warm unless said otherwise.

- population fit, vaghi2020-breast (66 subjects x ~9 observations), NUTS 4 chains x 500
  (+500 warm-up)                                                     [<= 5 s]
- the same by SVI (3000 steps)                                       (fast alternative)
- one twin update (one new observation, SMC reweighting)            [<= 0.5 s]
- calibrating 1,000 subjects with a population prior, batched Laplace  [<= 60 s]
- `oncotwin predict` on the 66-subject breast file, end to end, cold process and cold JAX
  cache                                                              [<= 30 s]
  (also with --pool, and in a new process whose persistent compile cache a previous run filled)

Usage: python benchmarks/population.py [--skip-nuts]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from oncotwin import datasets
from oncotwin.errors import ConvergenceWarning
from oncotwin.inference import population
from oncotwin.inference.calibrate import calibrate_subjects, subjects_from
from oncotwin.inference.population import fit_population
from oncotwin.inference.problem import SubjectData
from oncotwin.twin import DigitalTwin


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-nuts", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    breast = subjects_from(datasets.load("vaghi2020-breast"))
    rows = []

    def fit(method: str, seed: int = 0, first_metric: bool = True):  # type: ignore[no-untyped-def]
        # first_metric=False: the sampler's identity starting metric (the baseline, before the
        # metric was scaled from the individual fits), by emptying the guess it is built from
        guess = population._posterior_sd_guess
        if not first_metric:
            population._posterior_sd_guess = lambda *args: {}
        try:
            return fit_population("gompertz", breast, method=method, seed=seed)
        finally:
            population._posterior_sd_guess = guess

    if not args.skip_nuts:
        fit("nuts"), fit("nuts", first_metric=False)  # compile both
        times: dict[bool, list[float]] = {True: [], False: []}
        ok: dict[bool, int] = {True: 0, False: 0}
        for seed in (0, 1, 2):
            for first_metric in (True, False):  # interleaved: the machine's load hits both
                pop, secs = timed(lambda s=seed, f=first_metric: fit("nuts", s, f))
                times[first_metric].append(secs)
                ok[first_metric] += pop.diagnostics.ok
        for first_metric, label in ((True, ""), (False, ", identity first metric (before)")):
            rows.append((f"population fit, 66 subjects, NUTS 4x500{label}, median of seeds 0-2",
                         float(np.median(times[first_metric])), 5.0))  # fmt: skip
            rows.append((f"  (diagnostics ok in {ok[first_metric]} of 3 seeds; each: "
                         + ", ".join(f"{t:.1f}" for t in times[first_metric]) + ")",
                         float("nan"), None))  # fmt: skip
    fit("svi")
    pop, secs = timed(lambda: fit("svi"))
    rows.append(("population fit, 66 subjects, SVI 3000 steps (warm)", secs, None))

    # one twin update: lung-3 with its last observation arriving
    lung = subjects_from(datasets.load("vaghi2020-lung"), ids=["lung-3"])[0]
    old = SubjectData(lung.id, lung.times[:-1], lung.y[:-1], lung.censored[:-1], lung.schedule,
                      lung.kind, lung.unit)  # fmt: skip
    post = calibrate_subjects("gompertz", [old], method="nuts", seed=0)[0]
    twin = DigitalTwin(old, [post])
    twin.update(lung, seed=0)  # compile
    (_, update), secs = timed(lambda: twin.update(lung, seed=1))
    rows.append((f"one twin update ({update.how}, warm)", secs, 0.5))

    # 1,000 subjects with a population prior: the breast cohort repeated with jittered values
    rng = np.random.default_rng(0)
    many = [
        SubjectData(
            f"{s.id}-{k}",
            s.times,
            s.y * np.exp(0.05 * rng.standard_normal(len(s.y))),
            s.censored,
            s.schedule,
            s.kind,
            s.unit,
        )  # fmt: skip
        for k in range(16)
        for s in breast
    ][:1000]
    prior = pop.prior()
    calibrate_subjects("gompertz", many[:64], method="laplace", prior=prior)  # compile
    _, secs = timed(lambda: calibrate_subjects("gompertz", many, method="laplace", prior=prior))
    rows.append(("1,000 subjects with a population prior, Laplace (warm)", secs, 60.0))

    # predict end to end, cold: a fresh process with an empty JAX cache
    ev = datasets.load("vaghi2020-breast").events
    obs = ev[(ev["evid"] == 0)].sort_values(["id", "time"])
    held = obs.groupby("id").tail(1)
    with tempfile.TemporaryDirectory() as tmp:
        h, t, o = Path(tmp, "H.csv"), Path(tmp, "T.csv"), Path(tmp, "P.csv")
        ev.drop(held.index).to_csv(h, index=False)
        held[["id", "time"]].to_csv(t, index=False)
        cold = {**os.environ, "ONCOTWIN_JAX_CACHE": ""}
        cached = {**os.environ, "ONCOTWIN_JAX_CACHE": str(Path(tmp, "jax-cache"))}
        runs = [
            ("laplace", [], cold, "cold"),
            ("nuts", [], cold, "cold"),
            ("nuts", ["--pool"], cold, "--pool, cold"),
            ("nuts", [], cached, None),  # fills the persistent compile cache
            ("nuts", [], cached, "new process, compile cache filled by a previous run"),
        ]
        for method, extra, env, label in runs:
            cmd = [sys.executable, "-m", "oncotwin.cli", "predict", "--history", str(h),
                   "--targets", str(t), "--out", str(o), "--model", "gompertz", "--method", method,
                   *extra]  # fmt: skip
            _, secs = timed(lambda cmd=cmd, env=env: subprocess.run(cmd, check=True, env=env,
                                                                    capture_output=True))  # fmt: skip
            if label:
                rows.append((f"oncotwin predict, 66 subjects, {method} ({label})", secs, 30.0))
            pd.read_csv(o)  # the output exists and parses

    print(f"{'measurement':<62}{'seconds':>10}{'target':>9}")
    for label, secs, target in rows:
        shown = "" if np.isnan(secs) else f"{secs:10.2f}"
        print(f"{label:<62}{shown:>10}{'' if target is None else f'{target:9.1f}'}")


if __name__ == "__main__":
    main()
