"""Docetaxel every 3 weeks: neutrophil nadir, its day and CTCAE grade in each cycle.

Run: python examples/chemotherapy_neutropenia.py [--dose 75] [--bsa 1.8] [--cycles 4]

The typical patient of Friberg et al. (J Clin Oncol 2002;20:4713-4721): docetaxel PK of
Bruno et al. 1996 (three compartments) driving the Friberg myelosuppression model with the
published docetaxel estimates (see docs/treatments/chemotherapy.md). Not patient data.
"""

from __future__ import annotations

import argparse

import numpy as np

from oncotwin.models import myelosuppression as ms
from oncotwin.models.pk import auc_infinity, hours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dose", type=float, default=75.0, help="docetaxel dose, mg/m2")
    parser.add_argument("--bsa", type=float, default=1.8, help="body surface area, m2")
    parser.add_argument("--cycles", type=int, default=4, help="number of cycles")
    parser.add_argument("--interval", type=float, default=21.0, help="cycle length, days")
    parser.add_argument("--infusion", type=float, default=1.0, help="infusion duration, hours")
    parser.add_argument(
        "--emax", action="store_true", help="use the Emax drug effect instead of the linear one"
    )
    parser.add_argument("--method", default=None, help="unused (every example accepts it)")
    args = parser.parse_args()
    if args.cycles < 1:
        parser.error("--cycles must be >= 1")

    dose_mg = args.dose * args.bsa
    starts = np.arange(args.cycles) * args.interval
    amounts = np.full(args.cycles, dose_mg)
    durations = np.full(args.cycles, hours(args.infusion))
    pd = ms.DOCETAXEL_FRIBERG_EMAX if args.emax else ms.DOCETAXEL_FRIBERG
    pk = ms.DOCETAXEL_PK

    nd = ms.nadir(starts, amounts, pk, pd, dose_durations=durations)
    # ANC on the day each next cycle is due (and at the end of the last one)
    due = ms.simulate_anc(starts + args.interval, starts, amounts, pk, pd, dose_durations=durations)
    grades = np.asarray(ms.neutropenia_grade(nd.anc))

    auc = float(auc_infinity(dose_mg, pk.cl)) * 24.0  # mg.h/L
    print(
        f"docetaxel {args.dose:g} mg/m2 x {args.bsa:g} m2 = {dose_mg:.0f} mg as a "
        f"{args.infusion:g}-h infusion every {args.interval:g} days, {args.cycles} cycle(s) "
        f"(AUC {auc:.2f} mg.h/L per dose; {'Emax' if args.emax else 'linear'} drug effect)"
    )
    print(f"baseline ANC {float(pd.circ0):.2f} x10^9/L; CTCAE v5.0 grades with LLN 2.0 x10^9/L")
    print("cycle  start day  nadir ANC (x10^9/L)  nadir on day  CTCAE grade  ANC when next due")
    for c in range(args.cycles):
        print(
            f"{c + 1:5d}  {starts[c]:9.0f}  {float(nd.anc[c]):19.2f}  "
            f"{float(nd.day[c]):12.1f}  {int(grades[c]):11d}  {float(due[c]):17.2f}"
        )
    print(
        "nadir day counts days after the dose (the dose day is day 0); a next cycle normally "
        "needs ANC >= 1.5 x10^9/L."
    )


if __name__ == "__main__":
    main()
