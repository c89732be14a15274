"""Virtual-trial throughput, scale-out and power by simulation, with baselines in the same run.

Measured:
1. Throughput: N virtual patients (default 10^6) x 2 years of the Claret tumour-growth-inhibition
   model, docetaxel q3w (35 doses) in two arms, 6-weekly assessments (18), with everything a
   trial run does (sampling, noise, dropout, RECIST, PFS, OS link, twin forecast). Target:
   <= 60 s for 10^6 on the 2-core machine, peak memory <= 8 GiB (peak RSS of this process).
   Baseline: a straightforward per-patient loop of scipy.integrate.solve_ivp (RK45) on the same
   ODE and exposure, for a sample of patients, extrapolated to N (tumour sizes only: less work
   than the trial run).
2. Scale-out: the same trial on a Dask LocalCluster (2 worker processes) against in-process:
   identical results (exact comparison) and the overhead.
3. Power by simulation: R replicate trials (default 1000) of 300 patients, simulation and one
   Cox fit per replicate. Target: <= 5 min.

Usage: python benchmarks/trials.py [--n 1000000] [--baseline-sample 100] [--dask-n 200000]
                                   [--replicates 1000] [--skip-dask]
The figures depend on the load of the machine; say what ran beside it.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd
from scipy.integrate import solve_ivp

from oncotwin.trials import design_from_dict, run_trial
from oncotwin.trials.analysis import rejection_rate, replicate_estimates

DESIGN = {
    "name": "benchmark: docetaxel q3w for 2 years", "model": "claret", "seed": 1,
    "population": {"kg": {"median": 0.004, "omega": 0.5}, "kd": {"median": 0.3, "omega": 0.5},
                   "lam": {"median": 0.01, "omega": 0.5}},
    "baseline": {"median": 80, "omega": 0.5},
    "covariates": {"ecog": {"values": [0, 1], "probs": [0.5, 0.5]}},
    "eligibility": ["baseline >= 10"],
    "arms": [
        {"name": "75 mg/m2", "regimen": {"patient": {"bsa": 1.8},
                                         "items": ["docetaxel 75 mg/m2 q3w x 35 over 1 h"]}},
        {"name": "100 mg/m2", "regimen": {"patient": {"bsa": 1.8},
                                          "items": ["docetaxel 100 mg/m2 q3w x 35 over 1 h"]}},
    ],
    "visits": {"every": "6 weeks"}, "follow_up": "2 years", "dropout": {"per_year": 0.1},
    "endpoints": {"primary": "pfs", "survival": {"covariates": {"ecog": -0.3}}},
}  # fmt: skip


def peak_rss_gib() -> float:
    """Peak resident set size of this process so far, GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def baseline_solve_ivp(design, result, sample: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Seconds per patient of a solve_ivp loop, and its largest relative difference from the
    closed form used by the trial run (same patients, noise-free sizes)."""
    p = result.patients.iloc[:sample]
    times = design.visit_times
    ref = design.reference_amounts()
    per_arm = []
    for arm in design.arms:
        d = arm.schedule.doses
        per_arm.append((np.array([x.time for x in d]), np.array([x.amount / ref[x.agent] for x in d]),
                        np.array([x.duration for x in d]),
                        np.array([np.log(2) / arm.schedule.half_life_of(x.agent) for x in d])))  # fmt: skip
    names = [a.name for a in design.arms]

    def exposure(t: float, td, amt, dur, k) -> float:  # type: ignore[no-untyped-def]
        dt = t - td
        on = dt >= 0
        bolus = np.exp(-k * np.maximum(dt, 0))
        inf = (-np.expm1(-k * np.minimum(np.maximum(dt, 0), np.where(dur > 0, dur, 1.0)))
               / (k * np.where(dur > 0, dur, 1.0))
               * np.exp(-k * np.maximum(dt - np.where(dur > 0, dur, 1.0), 0)))  # fmt: skip
        return float(np.sum(amt * np.where(on, np.where(dur > 0, inf, bolus), 0.0)))

    worst = 0.0
    start = time.perf_counter()
    for _, row in p.iterrows():
        td, amt, dur, k = per_arm[names.index(row["arm"])]
        kg, kd, lam, v0 = row["param_kg"], row["param_kd"], row["param_lam"], row["param_v0"]

        def f(t, y, kg=kg, kd=kd, lam=lam, td=td, amt=amt, dur=dur, k=k):  # type: ignore[no-untyped-def]
            return (kg - kd * np.exp(-lam * t) * exposure(t, td, amt, dur, k)) * y

        sol = solve_ivp(f, (0.0, times[-1]), [v0], t_eval=times, rtol=1e-6, atol=1e-9,
                        max_step=0.25)  # fmt: skip
        from oncotwin.simulate import simulate  # closed form, for the accuracy check only

        cf = simulate(
            "claret",
            {"v0": v0, "kg": kg, "kd": kd, "lam": lam},
            times,
            design.arms[names.index(row["arm"])].schedule,
            reference=ref,
        ).values
        worst = max(worst, float(np.max(np.abs(sol.y[0] / cf - 1))))
    per = (time.perf_counter() - start) / len(p)
    return per, worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--baseline-sample", type=int, default=100)
    ap.add_argument("--dask-n", type=int, default=200_000)
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--skip-dask", action="store_true")
    args = ap.parse_args()
    design = design_from_dict(DESIGN)

    print("== 1. throughput ==")
    t = time.perf_counter()
    run_trial(design, 1024, keep_visits=False)
    print(f"compile + first 1024 patients: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    res = run_trial(design, args.n, keep_visits=False, chunk_size=65536)
    wall = time.perf_counter() - t
    print(f"{args.n} patients x {design.visit_times[-1]:.0f} days, {len(design.arms[0].schedule.doses)} "
          f"doses, {len(design.visit_times)} assessments: {wall:.1f} s "
          f"({args.n / wall:,.0f} patients/s); status {res.counts()}")  # fmt: skip
    print(f"peak RSS so far: {peak_rss_gib():.2f} GiB (target <= 8 GiB)")
    print(
        f"target <= 60 s for 10^6: {'met' if wall * 1e6 / args.n <= 60 else 'NOT met'} "
        f"(scaled to 10^6: {wall * 1e6 / args.n:.1f} s)"
    )
    per, worst = baseline_solve_ivp(design, res, args.baseline_sample)
    print(f"baseline solve_ivp loop: {per * 1e3:.1f} ms/patient over {args.baseline_sample} "
          f"patients -> {per * args.n:.0f} s extrapolated for {args.n} "
          f"(ratio {per * args.n / wall:.0f}x); max relative difference to the closed form "
          f"{worst:.1e}")  # fmt: skip

    if not args.skip_dask:
        print("== 2. Dask LocalCluster (2 worker processes) vs in-process ==")
        from oncotwin.scale.dask import DaskExecutor

        t = time.perf_counter()
        local = run_trial(design, args.dask_n, keep_visits=False, chunk_size=32768)
        t_local = time.perf_counter() - t
        t = time.perf_counter()
        with DaskExecutor(n_workers=2, processes=True) as ex:
            ex.start()
            t_start = time.perf_counter() - t
            t = time.perf_counter()
            remote = run_trial(
                design, args.dask_n, keep_visits=False, chunk_size=32768, executor=ex
            )
            t_first = time.perf_counter() - t
            t = time.perf_counter()
            remote = run_trial(
                design, args.dask_n, keep_visits=False, chunk_size=32768, executor=ex
            )
            t_warm = time.perf_counter() - t
        pd.testing.assert_frame_equal(local.patients, remote.patients, check_exact=True)
        print(f"{args.dask_n} patients: in-process {t_local:.1f} s; Dask cluster start "
              f"{t_start:.1f} s, first run (workers compile) {t_first:.1f} s, warm run "
              f"{t_warm:.1f} s; results identical (exact): yes")  # fmt: skip

    print("== 3. power by simulation ==")
    t = time.perf_counter()
    rep = run_trial(design, 300, replicates=args.replicates, keep_visits=False, chunk_size=65536)
    t_sim = time.perf_counter() - t
    t = time.perf_counter()
    est = replicate_estimates(rep)
    t_fit = time.perf_counter() - t
    pw, se = rejection_rate(est, 0.05)
    total = t_sim + t_fit
    print(f"{args.replicates} trials x 300 patients: simulation {t_sim:.1f} s + {args.replicates} "
          f"Cox fits {t_fit:.1f} s = {total:.1f} s (target <= 300 s for 1000); power (PFS, "
          f"alpha 0.05) {pw:.3f} +- {se:.3f} (MC SE)")  # fmt: skip
    print(f"peak RSS: {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
