"""Cycles of a 177Lu-like radiopharmaceutical: TAC fits, MIRD doses, BED, organ limits.

Run: python examples/radiopharmaceutical_course.py [--cycles 4] [--bootstrap 500] [--seed 0]

Every number here is illustrative (synthetic imaging data, S values and radiobiology chosen to
be plausible, not taken from a patient or a phantom); see docs/treatments/radiopharmaceutical.md
for the models and the sources of the organ limits.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from oncotwin import dosimetry as ds

HALF_LIFE = 6.65  # days; physical half-life of the (177Lu-like) radionuclide
SCAN_DAYS = np.array([4 / 24, 0.5, 1.0, 2.0, 3.0, 4.0, 7.0])  # imaging time points after injection
# Synthetic truth per source region (GBq and 1/day) for an injected 7.4 GBq
TRUTH = {
    "kidneys": ("uptake_washout", {"a1": 0.16, "lam_washout": 0.38, "lam_uptake": 6.0}),
    "tumour": ("uptake_washout", {"a1": 0.12, "lam_washout": 0.16, "lam_uptake": 2.0}),
    "remainder": ("mono", {"a0": 3.0, "lam": 0.35}),
}
# Illustrative S values, Gy/(GBq d): target -> {source: S}
S_VALUES = {
    "kidneys": {"kidneys": 9.0, "remainder": 0.004},
    "tumour": {"tumour": 55.0, "remainder": 0.004},
    "red_marrow": {"remainder": 0.03, "kidneys": 0.002},
}
RADIOBIOLOGY = {  # alpha/beta (Gy), repair half-time (days): illustrative
    "kidneys": (2.6, 2.8 / 24),
    "tumour": (10.0, 1.5 / 24),
    "red_marrow": (10.0, 1.0 / 24),
}


def synthetic_tac(source: str, rng: np.random.Generator) -> np.ndarray:
    model, p = TRUTH[source]
    if model == "mono":
        clean = p["a0"] * np.exp(-p["lam"] * SCAN_DAYS)
    else:
        rise = np.exp(-p["lam_uptake"] * SCAN_DAYS)
        clean = p["a1"] * (np.exp(-p["lam_washout"] * SCAN_DAYS) - rise)
    return clean * (1.0 + 0.06 * rng.standard_normal(SCAN_DAYS.size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=4, help="number of cycles (8 weeks apart)")
    parser.add_argument("--bootstrap", type=int, default=500, help="bootstrap draws per fit")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic noise")
    parser.add_argument("--risk-factors", action="store_true", help="kidney BED limit 28 Gy")
    parser.add_argument("--method", default=None, help="unused (every example accepts it)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    cycles = []
    for k in range(args.cycles):
        fits = {
            src: ds.fit_tac(
                SCAN_DAYS,
                synthetic_tac(src, rng),
                physical_half_life=HALF_LIFE,
                n_bootstrap=args.bootstrap,
                seed=args.seed + k,
            )
            for src in TRUTH
        }
        dose = ds.absorbed_dose({src: f.tia for src, f in fits.items()}, S_VALUES)
        cycle = {}
        for organ, gy in dose.items():
            ab, repair = RADIOBIOLOGY[organ]
            # self-irradiating regions take their own TAC's time course; marrow the remainder's
            shape = fits.get(organ, fits["remainder"])
            cycle[organ] = ds.OrganDose(gy, ds.bed_from_tac(gy, ab, repair, shape))
        cycles.append(cycle)
        kid = fits["kidneys"]
        print(
            f"cycle {k + 1} (day {56 * k}): kidney TAC {kid.model}, TIA {kid.tia:.3f} "
            f"± {kid.tia_sd:.3f} GBq d; doses "
            + ", ".join(f"{o} {c.dose:.2f} Gy (BED {c.bed:.2f})" for o, c in cycle.items())
        )

    total = ds.cumulative_organ_dose(cycles, kidney_risk_factors=args.risk_factors)
    for organ, row in total.iterrows():
        line = f"{organ}: {row['dose']:.1f} Gy absorbed, BED {row['bed']:.1f} Gy"
        if not math.isnan(row["limit"]):
            verdict = "within" if row["within_limit"] else "EXCEEDS"
            line += (
                f"; {verdict} the {row['limit_quantity'].upper()} limit {row['limit']:g} Gy "
                f"({100 * row['fraction_of_limit']:.0f}%)"
            )
        print(line)
    sf = ds.tumour_surviving_fraction(total.loc["tumour", "bed"], 0.03)
    print(f"tumour surviving fraction after {args.cycles} cycles (alpha 0.03/Gy): {sf:.2g}")
    print(f"(log10 cell kill {-math.log10(sf):.1f}; cycles every 56 days)")


if __name__ == "__main__":
    main()
