"""FFCD 2000-05 as a virtual trial: two chemotherapy arms calibrated to the real arms.

The shipped data set ``ffcd2000-colorectal`` holds sums of target-lesion diameters (SLD) of 150
patients of the FFCD 2000-05 trial (Ducreux M et al. Lancet Oncol 2011;12:1032-1044), in the
sequential arm S (LV5FU2 first) and the combination arm C (FOLFOX first). For each arm:

1. draw a wide "plausible" virtual population of the Claret tumour-growth-inhibition model
   under a two-weekly regimen and simulate it as a single-arm trial (8-weekly assessments with
   measurement noise, RECIST 1.1, PFS);
2. select virtual patients whose baseline SLD and SLD ratio at the first assessment (day 56 in
   the simulation, median day 61 in the data) follow the real arm's (Allen, Rieger & Musante,
   CPT Pharmacometrics Syst Pharmacol 2016;5:140-146);
3. compare the selected virtual arm with the real one on what was NOT used for selection: the
   SLD ratio at the next assessment windows and the RECIST best overall response (ORR).

Caveats (docs/data.md): the data have no dosing times, so the regimens are the protocol's
first-line regimens written out (illustrative doses and effect-compartment half-lives of one
day); the SLD unit is not stated in the source and its values (median 10.7, steps of 0.1) read
as centimetres, so they are multiplied by 10 here. Run: python examples/virtual_trial_ffcd.py
[--figure docs/trials_ffcd.png] [--n 6000].
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from oncotwin.data.datasets import load
from oncotwin.trials import design_from_dict, match_observables, run_trial
from oncotwin.trials.analysis import cox_ph, kaplan_meier, orr_difference
from oncotwin.trials.endpoints import RESPONSES, best_overall_response, recist_timepoints

CM_TO_MM = 10.0
FIRST = (30.0, 100.0)  # window of the first assessment, days (selection)
LATER = [(100.0, 200.0), (200.0, 300.0)]  # validation windows, days
REGIMENS = {
    "S": ["fluorouracil 2800 mg/m2 q2w x 26 over 46 h"],
    "C": ["fluorouracil 2800 mg/m2 q2w x 26 over 46 h", "oxaliplatin 85 mg/m2 q2w x 26 over 2 h"],
}


def design(arm: str) -> dict:
    return {
        "name": f"FFCD 2000-05 arm {arm} (plausible population)", "model": "claret", "seed": 7,
        "population": {"kg": {"median": 0.003, "omega": 1.0}, "kd": {"median": 0.03, "omega": 1.0},
                       "lam": {"median": 0.004, "omega": 1.0}},
        "baseline": {"median": 110.0, "omega": 0.7},
        "arms": [{"name": arm, "regimen": {"patient": {"bsa": 1.8}, "items": REGIMENS[arm],
                                           "half_life": {"fluorouracil": 1, "oxaliplatin": 1}}}],
        "visits": {"every": "8 weeks", "noise": {"proportional": 0.05, "additive": 1.0}},
        "follow_up": "2 years", "dropout": {"per_year": 0.1},
        "endpoints": {"landmark": "8 weeks", "recist": {"sd_min_days": 42}},
    }  # fmt: skip


def observed() -> pd.DataFrame:
    """One row per real patient: arm, baseline, ratio per window, BOR (RECIST 1.1)."""
    obs = load("ffcd2000-colorectal").observations().sort_values(["id", "time"])
    obs["sld"] = np.where(obs["cens"] == 1, 0.0, obs["dv"] * CM_TO_MM)
    rows, v = [], 18
    sld = np.zeros((obs["id"].nunique(), v))
    seen = np.zeros_like(sld, bool)
    times = np.zeros_like(sld)
    for k, (pid, g) in enumerate(obs.groupby("id", sort=False)):
        t, y = g["time"].to_numpy(), g["sld"].to_numpy()
        row = {"id": pid, "arm": g["arm"].iloc[0], "baseline": y[0]}
        for lo, hi in [FIRST, *LATER]:
            m = (t >= lo) & (t < hi)
            row[f"ratio_{lo:g}_{hi:g}"] = y[m][0] / y[0] if m.any() and y[0] > 0 else np.nan
        rows.append(row)
        sld[k, : len(y)], seen[k, : len(y)] = y, True
        times[k, : len(y)] = t
        times[k, len(y) :] = t[-1] + 1e4 * np.arange(1, v - len(y) + 1)  # padding never seen
    frame = pd.DataFrame(rows)
    # RECIST on each patient's own assessment days (no confirmation), as in the simulation.
    bor = [int(best_overall_response(times[k], recist_timepoints(sld[k : k + 1], seen[k : k + 1]),
                                     sd_min_days=42.0)[0]) for k in range(len(frame))]  # fmt: skip
    frame["bor"] = [RESPONSES[b] for b in bor]
    return frame


def simulated(arm: str, n: int) -> tuple[pd.DataFrame, float]:
    res = run_trial(design_from_dict(design(arm)), n, keep_visits=True)
    p = res.patients.copy()
    vis = res.visits
    for lo, hi in [FIRST, *LATER]:
        cols = np.nonzero((res.times >= lo) & (res.times < hi))[0]
        p[f"ratio_{lo:g}_{hi:g}"] = vis[:, cols[0]] / vis[:, 0] if cols.size else np.nan
    return p[p["status"] == "ok"].reset_index(drop=True), res.elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="laplace", help="accepted for the example runner")
    ap.add_argument("--n", type=int, default=6000, help="plausible virtual patients per arm")
    ap.add_argument("--figure", default=None, help="write a comparison figure (PNG) here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    real = observed()
    first = f"ratio_{FIRST[0]:g}_{FIRST[1]:g}"
    selected = {}
    print(f"FFCD 2000-05: {len(real)} real patients; {args.n} plausible virtual patients per arm")
    for arm in ("S", "C"):
        sim, _ = simulated(arm, args.n)
        tgt = real[(real["arm"] == arm) & (real[first] > 0) & np.isfinite(real[first])]
        ok = np.isfinite(sim[first]) & (sim[first] > 0) & (sim["baseline"] > 0)
        cand = sim[ok].reset_index(drop=True)
        obs_p = np.column_stack([np.log(cand["baseline"]), np.log(cand[first])])
        obs_t = np.column_stack([np.log(tgt["baseline"]), np.log(tgt[first])])
        m = match_observables(obs_p, obs_t, seed=1)
        selected[arm] = cand[m.selected].reset_index(drop=True)
        print(f"arm {arm}: selected {m.selected.sum()} of {len(cand)} plausible patients "
              f"(acceptance {m.acceptance_rate:.1%}); KS p baseline {m.ks_pvalues[0]:.2f}, "
              f"ratio at first assessment {m.ks_pvalues[1]:.2f}")  # fmt: skip
    print("\nSLD ratio to baseline, median [IQR], real vs virtual (windows in days):")
    for col in [first] + [f"ratio_{lo:g}_{hi:g}" for lo, hi in LATER]:
        for arm in ("S", "C"):
            r = real.loc[real["arm"] == arm, col].dropna()
            s = selected[arm][col].dropna()
            tag = "selection" if col == first else "validation"
            print(f"  {col:<14} arm {arm}: real median {r.median():.2f} "
                  f"[{r.quantile(0.25):.2f}-{r.quantile(0.75):.2f}] (n={len(r)}) | virtual median "
                  f"{s.median():.2f} [{s.quantile(0.25):.2f}-{s.quantile(0.75):.2f}]  ({tag})")  # fmt: skip
    print("\nRECIST 1.1 best overall response (validation), real vs virtual:")
    for arm in ("S", "C"):
        r, s = real[real["arm"] == arm], selected[arm]
        dist = lambda b: ", ".join(f"{k} {np.mean(b == k):.0%}" for k in ("CR", "PR", "SD", "PD"))  # noqa: E731
        print(f"  arm {arm}: real ORR {np.mean(r['bor'].isin(['CR', 'PR'])):.0%} ({dist(r['bor'])}) | "
              f"virtual ORR {np.mean(s['responder']):.0%} ({dist(s['bor'].astype(str))})")  # fmt: skip
    d_real = orr_difference(real.loc[real.arm == "S", "bor"].isin(["CR", "PR"]),
                            real.loc[real.arm == "C", "bor"].isin(["CR", "PR"]))  # fmt: skip
    d_sim = orr_difference(selected["S"]["responder"], selected["C"]["responder"])
    print(f"  ORR difference C - S: real {d_real[0]:+.0%} (95% CI {d_real[1]:+.0%} to {d_real[2]:+.0%})"
          f" | virtual {d_sim[0]:+.0%} ({d_sim[1]:+.0%} to {d_sim[2]:+.0%})")  # fmt: skip
    both = pd.concat([selected["S"].assign(g=0.0), selected["C"].assign(g=1.0)])
    hr = cox_ph(both["pfs_time"], both["pfs_event"], both["g"])
    for arm in ("S", "C"):
        km = kaplan_meier(selected[arm]["pfs_time"], selected[arm]["pfs_event"])
        print(f"  virtual arm {arm}: median PFS (tumour-size progression) {km.median:.0f} days")
    print(
        f"  virtual PFS hazard ratio C vs S: {hr.hr[0]:.2f} (95% CI {hr.lower[0]:.2f}-{hr.upper[0]:.2f})"
    )
    if args.figure:
        figure(real, selected, args.figure)
        print(f"figure written to {args.figure}")
    print(f"done in {time.perf_counter() - t0:.1f} s")


def figure(real: pd.DataFrame, selected: dict[str, pd.DataFrame], path: str) -> None:
    from matplotlib.figure import Figure

    cols = [f"ratio_{FIRST[0]:g}_{FIRST[1]:g}"] + [f"ratio_{lo:g}_{hi:g}" for lo, hi in LATER]
    titles = [
        "first assessment (selected on)",
        "days 100-200 (validation)",
        "days 200-300 (validation)",
    ]
    fig = Figure(figsize=(11, 6.2), layout="constrained")
    axes = fig.subplots(2, 3, sharey=True)
    bins = np.linspace(-1.5, 1.0, 26)
    for i, arm in enumerate(("S", "C")):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            r = np.log(real.loc[real["arm"] == arm, col].dropna().clip(lower=0.05))
            s = np.log(selected[arm][col].dropna().clip(lower=0.05))
            ax.hist(s, bins=bins, density=True, color="#0072B2", alpha=0.45, label="virtual")
            ax.hist(r, bins=bins, density=True, histtype="step", color="#111111", lw=1.6,
                    label=f"real (n={len(r)})")  # fmt: skip
            ax.axvline(np.log(0.7), color="#555", ls=":", lw=0.8)
            ax.set_title(f"arm {arm}: {titles[j]}", fontsize=9)
            ax.legend(fontsize=7)
            if i == 1:
                ax.set_xlabel("log(SLD / baseline SLD)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
