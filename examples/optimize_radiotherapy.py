"""Optimise radiotherapy fractionation for a calibrated twin, beside 60 Gy in 30 fractions.

Run: python examples/optimize_radiotherapy.py [--method laplace] [--draws 100] [--patient lung-3]

A twin of one mouse of the shipped Vaghi 2020 lung data set gives the growth; radiosensitivity
comes from a literature prior (glioblastoma values of Pedicini 2014), so this shows the
mechanics, not advice for that tumour. See docs/optimize.md.
"""

from __future__ import annotations

import argparse
import warnings

from oncotwin import datasets
from oncotwin.errors import ConvergenceWarning
from oncotwin.optimize import optimize_twin
from oncotwin.twin import DigitalTwin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="laplace", help="calibration: laplace or nuts")
    parser.add_argument("--draws", type=int, default=100, help="posterior draws")
    parser.add_argument("--patient", default="lung-3")
    parser.add_argument("--risk", default="cvar:0.9")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)  # repeated in the recommendation

    data = datasets.load("vaghi2020-lung")
    twin = DigitalTwin.calibrate(data, args.patient, "gompertz", method=args.method, seed=0)
    for objective in ("regrowth", "control:60"):
        risk = args.risk if objective == "regrowth" else "mean"
        rec = optimize_twin(twin, "radiotherapy", objective=objective, risk=risk,
                            constraints=["ntcp:brain<=0.1"], n_draws=args.draws, seed=0)  # fmt: skip
        print(f"--- objective {objective}, risk {risk}, {rec.n_draws} draws, seed {rec.seed}")
        print("\n".join(rec.lines()))
        print("best schedules (risk value, median and 90% interval):")
        for r in rec.best:
            lo, hi = r.interval()
            print(f"  {r.candidate.name}: {r.risk_value:.3g}; median {r.median:.3g} "
                  f"({lo:.3g} to {hi:.3g})")  # fmt: skip
        print(
            f"Pareto front ({rec.toxicity_label}): "
            + "; ".join(f"{r.candidate.name} [{r.toxicity:.0f}]" for r in rec.pareto[:6])
        )


if __name__ == "__main__":
    main()
