"""A neutropenia twin: calibrate the Friberg model on cycle-1 neutrophil counts, forecast cycle 2.

Run: python examples/neutropenia_twin.py [--method laplace|nuts] [--dose 75] [--seed 0]

A virtual patient whose marrow is more sensitive than Friberg's typical docetaxel patient
(MTT 100 h, slope 1.4x) receives docetaxel every 3 weeks. Blood counts are drawn six times in
cycle 1 (10 % measurement noise). The `friberg_anc` twin (the registry model; docs/models.md)
is calibrated on them with its default priors (Friberg's docetaxel estimates) and forecasts the
cycle-2 nadir at the planned dose and at a 20 % reduced dose, with 90 % intervals and the
probability of grade 3 or 4 neutropenia (ANC < 1.0 x10^9/L, CTCAE v5.0). Not patient data.
"""

from __future__ import annotations

import argparse

import numpy as np

from oncotwin.inference.calibrate import calibrate_subjects
from oncotwin.inference.problem import SubjectData
from oncotwin.models.myelosuppression import CTCAE_BOUNDS, neutropenia_grade
from oncotwin.schedule import Dose, Schedule
from oncotwin.simulate import simulate
from oncotwin.twin import DigitalTwin

TRUTH = {"v0": 4.6, "mtt": 100.0 / 24.0, "gamma": 0.17, "slope": 3.0}
SAMPLES = np.array([0.0, 3.0, 7.0, 10.0, 14.0, 20.0])  # days of cycle 1 with a blood count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="nuts", help="'nuts' or 'laplace'")
    parser.add_argument("--dose", type=float, default=75.0, help="docetaxel, mg/m2 (BSA 1.8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    dose = args.dose * 1.8
    cycle1 = Schedule((Dose(0.0, dose, "docetaxel", 1 / 24),))
    anc = simulate("friberg_anc", TRUTH, SAMPLES, cycle1).values
    rng = np.random.default_rng(args.seed)
    observed = anc * np.exp(0.1 * rng.standard_normal(len(SAMPLES)))
    patient = SubjectData("virtual-1", SAMPLES, observed, np.zeros(len(SAMPLES), bool), cycle1,
                          "anc", "10^9/l")  # fmt: skip
    (post,) = calibrate_subjects("friberg_anc", [patient], method=args.method, seed=args.seed)
    twin = DigitalTwin(patient, [post])
    print(f"cycle 1: docetaxel {dose:.0f} mg; ANC on days {SAMPLES.astype(int).tolist()}: "
          f"{np.round(observed, 2).tolist()} x10^9/L")  # fmt: skip
    for name, p in post.summary().items():
        print(f"  {name}: median {p['median']:.3g} (90% interval {p['lo']:.3g} - {p['hi']:.3g})"
              + (f", truth {TRUTH[name]:.3g}" if name in TRUTH else ""))  # fmt: skip
    days = np.arange(21.0, 42.01, 0.25)
    print("cycle 2 (day 21) forecast:")
    for label, amount in (("planned dose", dose), ("20% reduced dose", 0.8 * dose)):
        plan = Schedule((Dose(21.0, amount, "docetaxel", 1 / 24),))
        fc = twin.forecast(days, plan, seed=args.seed)
        nadirs = fc.latent.min(axis=1)
        lo, med, hi = np.quantile(nadirs, [0.05, 0.5, 0.95])
        day = days[np.argmin(np.median(fc.latent, axis=0))]
        true = simulate("friberg_anc", TRUTH, days, cycle1.then(plan, 20.0)).values
        p3 = float(np.mean(neutropenia_grade(nadirs) >= 3))
        print(f"  {label} ({amount:.0f} mg): nadir median {med:.2f} x10^9/L (90% interval "
              f"{lo:.2f} - {hi:.2f}) around day {day:.1f}; P(grade >= 3, ANC < "
              f"{CTCAE_BOUNDS[1]:g}) = {p3:.2f}; true nadir {true.min():.2f}")  # fmt: skip
    if twin.warning:
        print(f"WARNING: {twin.warning}")


if __name__ == "__main__":
    main()
