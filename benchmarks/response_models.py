"""Calibration and forecast cost of the response models (radiotherapy, immunotherapy, hormone
therapy, neutropenia), each on one synthetic patient, with the closed-form Gompertz twin on the
same number of observations as the baseline in the same run.

Measured per model: MAP + Laplace (4000 draws) cold (compile included) and warm; NUTS with
4 chains x `--draws` (+ as many warm-up) warm; a 100-time forecast warm; for zhang_psa also a
forecast under the adaptive threshold rule (28-day visits over 3 years). Prints a Markdown table.

Usage: python benchmarks/response_models.py [--draws 500] [--skip-nuts]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from oncotwin.errors import ConvergenceWarning
from oncotwin.inference.calibrate import calibrate_subjects
from oncotwin.inference.problem import SubjectData
from oncotwin.regimen import ThresholdRule
from oncotwin.schedule import Dose, Schedule, Switch
from oncotwin.simulate import simulate
from oncotwin.twin import DigitalTwin

RT = Schedule(tuple(Dose(float(7 * w + d), 2.0, "radiotherapy", 0.0, "Gy") for w in range(6)
                    for d in range(5)))  # fmt: skip
CASES = {
    # model: (true parameters, schedule, observation times, kind)
    "gompertz": ({"v0": 50.0, "alpha": 0.1, "beta": 0.02}, Schedule(), np.arange(0.0, 85.0, 7.0),
                 "volume"),
    "lq_regrowth": ({"v0": 50.0, "lam": 0.015, "alpha": 0.12, "kc": 0.04}, RT,
                    np.arange(0.0, 85.0, 7.0), "volume"),
    "kuznetsov_immune": ({"v0": 30.0, "cells": 150.0, "effectors": 0.8, "growth": 1.636,
                          "potency": 2.0},
                         Schedule(tuple(Dose(21.0 * k, 200.0, "pembrolizumab") for k in range(4))),
                         np.arange(0.0, 85.0, 7.0), "sld"),
    "zhang_psa": ({"v0": 18.0, "burden": 0.5, "resist": 5e-3, "r_scale": 1.3},
                  Schedule(switches=(Switch(0.0, "abiraterone", True),)),
                  np.arange(0.0, 85.0, 7.0), "psa"),
    "friberg_anc": ({"v0": 5.0, "mtt": 4.5, "gamma": 0.2, "slope": 3.0},
                    Schedule(tuple(Dose(21.0 * k, 135.0, "docetaxel", 1 / 24) for k in range(4))),
                    np.arange(0.0, 85.0, 7.0), "anc"),
}  # fmt: skip


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=500, help="NUTS draws (and warm-up) per chain")
    parser.add_argument("--skip-nuts", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    print("| model | Laplace cold (s) | Laplace warm (s) | NUTS 4 x", args.draws,
          "warm (s) | NUTS converged | forecast warm (s) | rule forecast warm (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, (truth, schedule, times, kind) in CASES.items():
        values = simulate(name, truth, times, schedule).values
        y = values * np.exp(0.05 * np.random.default_rng(0).standard_normal(len(times)))
        sub = SubjectData("b", times, y, np.zeros(len(times), bool), schedule, kind, "u")

        def laplace():  # type: ignore[no-untyped-def]
            return calibrate_subjects(name, [sub], method="laplace", seed=0)[0]  # noqa: B023

        post, cold = timed(laplace)
        _, warm = timed(laplace)
        nuts, converged = "-", "-"
        if not args.skip_nuts:

            def run_nuts():  # type: ignore[no-untyped-def]
                return calibrate_subjects(name, [sub], method="nuts", seed=0,  # noqa: B023
                                          draws=args.draws, warmup=args.draws)[0]  # fmt: skip

            timed(run_nuts)
            post_nuts, t_nuts = timed(run_nuts)
            nuts, converged = f"{t_nuts:.1f}", "yes" if post_nuts.converged else "no"
        twin = DigitalTwin(sub, [post])
        future = np.linspace(times[-1], times[-1] + 3 * 365.0, 100)
        twin.forecast(future, seed=0)
        _, t_fc = timed(lambda: twin.forecast(future, seed=0))  # noqa: B023
        rule = "-"
        if name == "zhang_psa":
            adaptive = (ThresholdRule("abiraterone", "psa", 0.5, 1.0, "baseline"),)
            twin.forecast(future, rules=adaptive, seed=0)
            _, t_rule = timed(lambda: twin.forecast(future, rules=adaptive, seed=0))  # noqa: B023
            rule = f"{t_rule:.2f}"
        print(f"| {name} | {cold:.1f} | {warm:.2f} | {nuts} | {converged} | {t_fc:.2f} | {rule} |")


if __name__ == "__main__":
    main()
