"""Speed of single-subject calibration and of CLI start-up, with baselines in the same run.

Measured (warm: after one call that compiles; median of repeats):
- MAP + Laplace (1 subject, Gompertz, 4000 draws)            target <= 50 ms
- NUTS, 4 chains x 1000 draws (+1000 warm-up), same subject    target <= 3 s
- baseline: scipy.optimize.curve_fit of the same model (point estimate only)
- `oncotwin --help` in a fresh interpreter                     target <= 1 s
- baseline: `python -c "import typer"`

Usage: python benchmarks/speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
from scipy import optimize

from oncotwin import datasets
from oncotwin.errors import ConvergenceWarning
from oncotwin.inference.calibrate import calibrate_subjects, subjects_from


def timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Median wall time of `fn()` over `repeats` calls, seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    data = datasets.load("vaghi2020-lung")
    subject = subjects_from(data, ids=["lung-3"])
    s = subject[0]

    def laplace() -> None:
        calibrate_subjects("gompertz", subject, method="laplace", seed=1)

    def nuts() -> None:
        calibrate_subjects("gompertz", subject, method="nuts", seed=1)

    def curve_fit() -> None:
        def f(t: np.ndarray, lv0: float, a: float, b: float) -> np.ndarray:
            return lv0 + a / b * (1 - np.exp(-b * t))

        optimize.curve_fit(
            f, s.times - s.t0, np.log(s.y), p0=[np.log(s.y[0]), 0.3, 0.05], maxfev=20000
        )

    def cli(code: str) -> float:
        return timed(
            lambda: subprocess.run([sys.executable, "-c", code], check=True, capture_output=True),
            args.repeats,
        )

    laplace(), nuts()  # compile
    rows = [
        ("MAP + Laplace, 1 subject (warm)", timed(laplace, args.repeats), 0.05),
        ("NUTS 4 x 1000, 1 subject (warm)", timed(nuts, args.repeats), 3.0),
        ("baseline: scipy curve_fit, 1 subject", timed(curve_fit, args.repeats), None),
        (
            "oncotwin --help (fresh process)",
            cli("from oncotwin.cli import app; app(['--help'])"),
            1.0,
        ),
        ("baseline: python -c 'import typer'", cli("import typer"), None),
    ]
    print(f"{'measurement':<42}{'median s':>10}{'target s':>10}{'met':>6}")
    for name, secs, target in rows:
        met = "" if target is None else ("yes" if secs <= target else "NO")
        print(f"{name:<42}{secs:>10.4f}{'' if target is None else f'{target:.2f}':>10}{met:>6}")


if __name__ == "__main__":
    main()
