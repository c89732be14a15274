"""A conventionally fractionated course: BED/EQD2, tumour control, lung NTCP, QUANTEC check.

Run: python examples/radiotherapy_course.py [--dose 60] [--fractions 30] [--alpha-beta 10]

Radiobiological parameters below (alpha, clonogen number, growth rate, the lung DVH) are
illustrative, not patient data; the lung LKB parameters are the QUANTEC probit fit to mean lung
dose (TD50 31.4 Gy, m 0.45, n 1; see docs/treatments/radiotherapy.md).
"""

from __future__ import annotations

import argparse

import numpy as np

from oncotwin import radiotherapy as rt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dose", type=float, default=60.0, help="total dose, Gy")
    parser.add_argument("--fractions", type=int, default=30, help="number of fractions")
    parser.add_argument("--alpha-beta", type=float, default=10.0, help="tumour alpha/beta, Gy")
    parser.add_argument("--method", default=None, help="unused (every example accepts it)")
    args = parser.parse_args()

    plan = rt.fractions(args.dose, args.fractions)
    d = args.dose / args.fractions
    print(
        f"{args.dose:g} Gy in {args.fractions} fractions of {d:.2f} Gy, weekdays: "
        f"day {plan.times[0]:.0f} to day {plan.times[-1]:.0f}"
    )

    # Tumour: BED/EQD2, with repopulation after day 21 (Tpot 3 days), and TCP
    alpha, ab = 0.3, args.alpha_beta
    repop = {"kickoff_days": 21.0, "alpha": alpha, "potential_doubling_days": 3.0}
    bed_t = rt.bed(args.dose, d, ab)
    bed_r = rt.bed(args.dose, d, ab, treatment_days=plan.overall_days, **repop)
    print(
        f"tumour (alpha/beta {ab:g} Gy): BED {bed_t:.1f} Gy, EQD2 {rt.eqd2(args.dose, d, ab):.1f}"
        f" Gy; with repopulation BED {bed_r:.1f} Gy"
    )
    beta, clonogens = alpha / ab, 1e9
    tcp = rt.tcp_poisson(alpha, beta, d, args.fractions, clonogens)
    tcp_pop = rt.tcp_population(alpha, 0.07, beta, d, args.fractions, clonogens)
    print(f"TCP (alpha 0.3/Gy, 1e9 clonogens): individual {tcp:.2f}, population {tcp_pop:.2f}")
    print(
        f"late tissue (alpha/beta 3 Gy): BED {rt.bed(args.dose, d, 3.0):.1f} Gy, "
        f"EQD2 {rt.eqd2(args.dose, d, 3.0):.1f} Gy"
    )

    # Lung: a synthetic cumulative DVH scaled with the prescription
    levels = np.arange(0.0, args.dose + 5.0, 5.0)
    cumulative = 100.0 * np.exp(-levels / (0.25 * args.dose))  # % of lung receiving >= level
    doses, volumes = rt.differential_from_cumulative(levels, cumulative)
    mld = rt.geud(doses, volumes, 1.0)
    v20 = float(np.interp(20.0, levels, cumulative))
    ntcp = rt.lkb_ntcp((doses, volumes), 31.4, 0.45, 1.0)
    print(f"lung: mean dose {mld:.1f} Gy, V20 {v20:.0f}%, NTCP(pneumonitis) {ntcp:.2f}")
    checked = rt.check_constraints({"lung": {"V20": v20, "Dmean": mld}})
    for row in checked.itertuples():
        verdict = "met" if row.met else "VIOLATED"
        print(f"  QUANTEC {row.metric} {row.comparator} {row.limit:g} {row.unit}: {verdict}")

    # Tumour volume: exponential growth, LQ kill at each fraction. The volume responds far less
    # than clonogens do (dead cells are cleared slowly), hence a smaller effective alpha.
    alpha_v = 0.03
    days = np.array([0.0, 14.0, float(plan.times[-1]), 90.0])
    volume = np.asarray(
        rt.volume_after_fractions(
            30.0, 0.01, alpha_v, alpha_v / ab, plan.times, plan.doses, days - 1e-9
        )
    )
    cells = ", ".join(f"day {t:.0f}: {v:.1f}" for t, v in zip(days, volume, strict=True))
    print(f"tumour volume, cm3 (growth 1%/day, effective alpha {alpha_v}/Gy): {cells}")


if __name__ == "__main__":
    main()
