"""Treatment optimisation under uncertainty (issue 6): Chaudhuri-style radiotherapy experiment,
chemotherapy under a neutropenia chance constraint, adaptive hormone therapy, and speed.

1. Speed: one patient's radiotherapy optimisation over 500 posterior draws (124 uniform
   schedules at 4 levels of the normal-tissue BED budget, 15-45 fractions, plus a
   gradient-optimised per-fraction plan), cold (compilation included) and warm.
   Target: <= 30 s on 2 cores.
2. Radiotherapy for high-grade-glioma-like twins (Chaudhuri A et al. Front Artif Intell
   2023;6:1222612: in 100 virtual patients, personalised regimens gave a median +6 days to
   progression at the standard total dose, or a median -16.7 % (10 Gy) dose at the standard's
   tumour control, against 60 Gy in 30 fractions). Virtual patients: logistic growth with the
   doubling time of untreated glioblastoma (median 21.1 days: Ellingson BM et al. Cancer
   2016;122:1718-1727), LQ radiosensitivity alpha 0.12/Gy and alpha/beta 8 Gy (Pedicini P et
   al. Strahlenther Onkol 2014;190:925-932), 1e4 clonogens (ibid.); between-patient spreads,
   the capacity and each twin's posterior spread are this benchmark's assumptions (printed).
   Toxicity budget: the normal-brain BED of 60 Gy/30 (alpha/beta 2 Gy: 120 Gy; Lawrence YR
   et al. Int J Radiat Oncol Biol Phys 2010;76:S20-S27). Progression here: the tumour back at
   its size at the start of radiotherapy. Risk measure: CVaR 0.9 over posterior draws.
   Arm A (equal total dose): 60 Gy in 30-45 uniform fractions and gradient-optimised
   non-uniform 60 Gy plans. Arm B (equal tumour control): the smallest total dose (40-70 Gy,
   15-40 fractions) whose CVaR time to progression is at least the standard's. Arm C: the
   same with tumour control read as the probability (over posterior draws) that the tumour is
   smaller 180 days after the start than at the start.
   Each recommendation is made on the twin's posterior and also scored on the virtual
   patient's true parameters ("realised").
3. Chemotherapy: docetaxel twins (claret model, Laplace-calibrated on synthetic tumour sizes
   under 4 cycles) choosing dose, cycle length and cycle number for the next course, with
   P(grade >= 4 neutropenia) <= 0.3 (Friberg 2002 docetaxel model, assumed between-patient
   variability), against 135 mg (75 mg/m2 x 1.8 m2) every 21 days x 6.
4. Adaptive hormone therapy (Zhang 2017 model): time to resistance under the best adaptive
   thresholds and under continuous abiraterone.

Usage: python benchmarks/optimize.py [--patients 100] [--draws 100] [--quick]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from oncotwin.errors import ConvergenceWarning
from oncotwin.optimize import parse_objective, parse_risk, run
from oncotwin.optimize.modalities import (
    ChemotherapyProblem,
    HormoneProblem,
    RadiotherapyProblem,
)
from oncotwin.optimize.rt_model import RTParams, doubling_rate

RISK = parse_risk("cvar:0.9")
TTP = parse_objective("regrowth")
CONTROL = parse_objective("control:180")

# Virtual high-grade glioma population (medians cited in the module docstring).
POP = {
    "doubling_days": 21.1,
    "g_sd": 0.5,  # Ellingson 2016 median; spread assumed
    "alpha": 0.12,
    "alpha_sd": 0.3,  # Pedicini 2014 median; spread assumed
    "alpha_beta": 8.0,
    "alpha_beta_sd": 0.2,  # Pedicini 2014
    "v0": 30_000.0,
    "v0_sd": 0.5,  # mm3 at the start of RT (assumed)
    "fill": (0.1, 0.5),  # v0 / capacity, uniform (assumed)
    "clonogens": 1e4,  # Pedicini 2014
}
# Posterior spread of a twin calibrated on pre-treatment MRI (log-scale SDs, assumed):
# growth is seen in the data, radiosensitivity is not (prior spread).
POSTERIOR_SD = {"g": 0.15, "alpha": 0.3, "alpha_beta": 0.2, "capacity": 0.1}


def population(n: int, rng: np.random.Generator) -> pd.DataFrame:
    g = doubling_rate(POP["doubling_days"]) * np.exp(POP["g_sd"] * rng.standard_normal(n))
    v0 = POP["v0"] * np.exp(POP["v0_sd"] * rng.standard_normal(n))
    return pd.DataFrame({
        "v0": v0, "g": g, "capacity": v0 / rng.uniform(*POP["fill"], n),
        "alpha": POP["alpha"] * np.exp(POP["alpha_sd"] * rng.standard_normal(n)),
        "alpha_beta": POP["alpha_beta"] * np.exp(POP["alpha_beta_sd"] * rng.standard_normal(n)),
    })  # fmt: skip


def twin_draws(truth: pd.Series, n: int, rng: np.random.Generator) -> RTParams:
    def around(x: float, sd: float) -> np.ndarray:
        return x * np.exp(sd * rng.standard_normal(n))

    cap = around(truth.capacity, POSTERIOR_SD["capacity"])
    return RTParams(np.full(n, truth.v0), around(truth.g, POSTERIOR_SD["g"]), 1.0 / cap,
                    around(truth.alpha, POSTERIOR_SD["alpha"]),
                    around(truth.alpha_beta, POSTERIOR_SD["alpha_beta"]),
                    np.full(n, POP["clonogens"]))  # fmt: skip


def truth_params(truth: pd.Series) -> RTParams:
    return RTParams(np.array([truth.v0]), np.array([truth.g]), np.array([1 / truth.capacity]),
                    np.array([truth.alpha]), np.array([truth.alpha_beta]),
                    np.array([POP["clonogens"]]))  # fmt: skip


def realised(truth: pd.Series, candidates: list) -> np.ndarray:
    prob = RadiotherapyProblem(truth_params(truth), grid_points=8)
    return np.array([tr.extras["regrowth_time"][0] for tr, _, _ in prob.simulate(candidates, 10)])


def speed(draws: int) -> None:
    rng = np.random.default_rng(1)
    truth = population(1, rng).iloc[0]
    prob = RadiotherapyProblem(twin_draws(truth, draws, rng))
    times = []
    for _ in range(2):
        start = time.perf_counter()
        rec = run(prob, TTP, RISK)
        times.append(time.perf_counter() - start)
    print(f"\n## 1. Speed: one patient's radiotherapy optimisation, {draws} posterior draws")
    print(f"{len(rec.results)} schedules (incl. standard of care and 1 gradient-optimised plan)")
    print(f"cold (first call, compilation included): {times[0]:6.1f} s   [target <= 30 s]")
    print(f"warm (second call):                      {times[1]:6.1f} s   [target <= 30 s]")
    print(f"recommended: {rec.best[0].candidate.name}")


def radiotherapy(n_patients: int, draws: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pop = population(n_patients, rng)
    rows = []
    start = time.perf_counter()
    for i, truth in pop.iterrows():
        params = twin_draws(truth, draws, rng)
        # Arm A: 60 Gy, equal or lower normal-tissue BED, uniform 30-45 fractions and
        # gradient-optimised non-uniform plans
        a = RadiotherapyProblem(params, total_doses=(60.0,), fraction_range=(30, 45),
                                fixed_total=60.0, gradient_fractions=(33, 36, 40),
                                grid_points=8, patient=str(i))  # fmt: skip
        rec = run(a, TTP, RISK)
        best = rec.best[0]
        soc = rec.standard
        gain_pred = float(np.median(best.outcome - soc.outcome))
        true_best, true_soc = realised(truth, [best.candidate, soc.candidate])
        # Arm B: smallest total dose reaching the standard's CVaR time to progression
        b = RadiotherapyProblem(params, total_doses=tuple(np.arange(40.0, 71.0, 2.0)),
                                fraction_range=(15, 40), grid_points=8, patient=str(i))  # fmt: skip
        rec_b = run(b, TTP, RISK, refine=False)
        target = rec_b.standard.risk_value
        ok = [r for r in rec_b.results if r.feasible and r.risk_value >= target - 1e-9]
        low = min(ok, key=lambda r: (r.candidate.params["total_dose"], -r.risk_value))
        true_low = realised(truth, [low.candidate])[0]
        # Arm C: as B, tumour control = P(smaller at day 180 than at the start), posterior mean
        rec_c = run(b, CONTROL, parse_risk("mean"), refine=False)
        ok_c = [r for r in rec_c.results
                if r.feasible and r.risk_value >= rec_c.standard.risk_value - 1e-9]  # fmt: skip
        low_c = min(ok_c, key=lambda r: (r.candidate.params["total_dose"], -r.risk_value))
        rows.append({
            "best_a": best.candidate.name, "family_a": best.candidate.family,
            "gain_pred": gain_pred, "gain_true": true_best - true_soc,
            "p_better": rec.comparison.probability_better if rec.comparison else 0.5,
            "confident": rec.confident, "soc_ttp_true": true_soc,
            "dose_b": low.candidate.params["total_dose"],
            "n_b": low.candidate.params["n_fractions"],
            "control_kept_true": true_low >= true_soc - 1e-9,
            "dose_c": low_c.candidate.params["total_dose"], "p_control": rec_c.standard.risk_value,
        })  # fmt: skip
    df = pd.DataFrame(rows)
    saving = 100 * (60 - df.dose_b) / 60
    print(f"\n## 2. Radiotherapy, {n_patients} virtual high-grade glioma twins x {draws} draws "
          f"(seed {seed}; {time.perf_counter() - start:.0f} s)")  # fmt: skip
    print(f"population: doubling time median {POP['doubling_days']} d (log-SD {POP['g_sd']}), "
          f"alpha median {POP['alpha']}/Gy (log-SD {POP['alpha_sd']}), alpha/beta "
          f"{POP['alpha_beta']} Gy, v0/capacity U{POP['fill']}; twin posterior log-SDs "
          f"{POSTERIOR_SD}")  # fmt: skip
    print(f"standard of care 60 Gy/30: realised time to progression median "
          f"{df.soc_ttp_true.median():.0f} days (IQR {df.soc_ttp_true.quantile(.25):.0f}-"
          f"{df.soc_ttp_true.quantile(.75):.0f})")  # fmt: skip
    print("| measure | oncotwin (median, IQR) | Chaudhuri et al. 2023 |")
    print("|---|---|---|")
    print(f"| change in time to progression at 60 Gy, predicted by the twin | "
          f"{df.gain_pred.median():+.1f} days ({df.gain_pred.quantile(.25):+.1f} to "
          f"{df.gain_pred.quantile(.75):+.1f}) | +6 days |")  # fmt: skip
    print(
        f"| same, realised on the virtual patient | {df.gain_true.median():+.1f} days "
        f"({df.gain_true.quantile(0.25):+.1f} to {df.gain_true.quantile(0.75):+.1f}) | - |"
    )
    print(f"| dose saving at the standard's tumour control (CVaR 0.9 of time to progression) | "
          f"{saving.median():.1f}% ({saving.quantile(.25):.1f} to {saving.quantile(.75):.1f}) | "
          f"16.7% (10 Gy) |")  # fmt: skip
    saving_c = 100 * (60 - df.dose_c) / 60
    print(f"| dose saving at the standard's probability of control at day 180 (posterior mean) | "
          f"{saving_c.median():.1f}% ({saving_c.quantile(.25):.1f} to "
          f"{saving_c.quantile(.75):.1f}) | 16.7% (10 Gy) |")  # fmt: skip
    print(
        f"arm C: standard's P(control at day 180) median {df.p_control.median():.2f}; dose "
        f"reduced for {np.mean(df.dose_c < 60):.0%}"
    )
    print(f"arm A: non-standard schedule chosen for {np.mean(df.best_a != '60 Gy in 30 fractions of 2 Gy'):.0%} "
          f"of patients, gradient-optimised plan for {np.mean(df.family_a == 'gradient-optimised'):.0%}; "
          f"confident (P(better) >= 0.8) for {df.confident.mean():.0%}")  # fmt: skip
    print(f"arm B: dose reduced for {np.mean(df.dose_b < 60):.0%}, increased for "
          f"{np.mean(df.dose_b > 60):.0%}; realised control kept (time to progression >= "
          f"standard's) in {df.control_kept_true.mean():.0%}; median fractions "
          f"{df.n_b.median():.0f}")  # fmt: skip


def chemo_twins(n: int, seed: int) -> list:
    from oncotwin.data import PatientData
    from oncotwin.simulate import simulate
    from oncotwin.twin import DigitalTwin

    rng = np.random.default_rng(seed)
    twins = []
    obs_t = np.arange(0.0, 85.0, 7.0)
    doses = [0.0, 21.0, 42.0, 63.0]
    from oncotwin.schedule import Dose, Schedule

    sched = Schedule(tuple(Dose(t, 135.0, "docetaxel", 1 / 24) for t in doses))
    for i in range(n):
        p = {"v0": 5000 * np.exp(0.3 * rng.standard_normal()),
             "kg": 0.01 * np.exp(0.3 * rng.standard_normal()),
             "kd": 0.4 * np.exp(0.3 * rng.standard_normal()),
             "lam": 0.01 * np.exp(0.3 * rng.standard_normal())}  # fmt: skip
        v = simulate("claret", p, obs_t, sched).values * np.exp(
            0.1 * rng.standard_normal(obs_t.size)
        )
        rows = [
            {"id": f"c{i}", "time": t, "evid": 0, "dv": y} for t, y in zip(obs_t, v, strict=True)
        ]
        rows += [{"id": f"c{i}", "time": t, "evid": 1, "amt": 135.0, "agent": "docetaxel",
                  "dur": 1 / 24} for t in doses]  # fmt: skip
        data = PatientData.from_frame(pd.DataFrame(rows))
        twins.append(DigitalTwin.calibrate(data, f"c{i}", "claret", method="laplace", seed=seed))
    return twins


def chemotherapy(n: int, draws: int, seed: int) -> None:
    from oncotwin.optimize import neutropenia
    from oncotwin.schedule import Dose, Schedule

    start = time.perf_counter()
    rows = []
    for twin in chemo_twins(n, seed):
        day = twin.subject.last_time + 1
        soc = Schedule(tuple(Dose(day + 21 * k, 135.0, "docetaxel", 1 / 24) for k in range(6)))
        prob = ChemotherapyProblem(twin, "docetaxel", day, soc, n_draws=draws, seed=seed,
                                   dose_factors=(0.6, 0.8, 1.0, 1.2), cycle_lengths=(21.0, 28.0),
                                   n_cycles=(4, 6))  # fmt: skip
        obj = parse_objective("burden:180")
        rec = run(prob, obj, RISK, [neutropenia(4, 0.3)], use_defaults=False)
        g4 = {r.candidate.name: next(c for c in r.checks if "neutropenia" in c.name)
              for r in rec.results}  # fmt: skip
        best = rec.best[0] if rec.best else None
        rows.append({
            "soc_feasible": rec.standard.feasible,
            "soc_p4": 1 - g4[rec.standard.candidate.name].probability,
            "best_p4": np.nan if best is None else 1 - g4[best.candidate.name].probability,
            "change": np.nan if best is None else 100 * (best.median / rec.standard.median - 1),
            "best": None if best is None else best.candidate.name,
            "confident": rec.confident,
        })  # fmt: skip
    df = pd.DataFrame(rows)
    print(f"\n## 3. Chemotherapy (docetaxel, claret twins), {n} patients x {draws} draws "
          f"({time.perf_counter() - start:.0f} s)")  # fmt: skip
    print("constraint: P(grade >= 4 neutropenia) <= 0.3 over posterior draws (chance constraint)")
    print(f"standard 135 mg q21d x 6: P(grade 4) median {df.soc_p4.median():.2f}; meets the "
          f"constraint for {df.soc_feasible.mean():.0%} of patients")  # fmt: skip
    print(f"best schedule: P(grade 4) median {df.best_p4.median():.2f}; change in median "
          f"burden at day 180 vs standard: median {df.change.median():+.1f}% "
          f"(IQR {df.change.quantile(.25):+.1f} to {df.change.quantile(.75):+.1f}); "
          f"confident for {df.confident.mean():.0%}")  # fmt: skip
    print("most frequent best:", df.best.value_counts().head(3).to_dict())


def hormone(n: int, draws: int, seed: int) -> None:
    start = time.perf_counter()
    rows = []
    for i in range(n):
        prob = HormoneProblem(n_draws=draws, seed=seed + i)
        rec = run(prob, parse_objective("resistance"), RISK)
        zhang = next(r for r in rec.results if r.candidate.params.get("stop_below") == 0.5
                     and r.candidate.params.get("restart_above") == 1.0)  # fmt: skip
        rows.append({"continuous": rec.standard.median, "best": rec.best[0].median,
                     "zhang": zhang.median, "name": rec.best[0].candidate.name,
                     "on": rec.best[0].toxicity})  # fmt: skip
    df = pd.DataFrame(rows)
    print(f"\n## 4. Adaptive abiraterone (Zhang 2017 model), {n} virtual patients x {draws} "
          f"draws ({time.perf_counter() - start:.0f} s)")  # fmt: skip
    print("| schedule | time to resistance, median over patients (days) |")
    print("|---|---|")
    print(f"| continuous (standard) | {df.continuous.median():.0f} |")
    print(f"| adaptive 50%/100% (Zhang 2017 rule) | {df.zhang.median():.0f} |")
    print(
        f"| best adaptive thresholds per patient | {df.best.median():.0f} "
        f"(time on drug {df.on.median():.0%}) |"
    )
    print(
        "published (Zhang 2017 pilot, different endpoint): median time to PSA progression "
        ">= 27 months adaptive vs 16.5 months in a contemporaneous standard-of-care cohort"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="10 patients, 32 draws")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    n, draws = (10, 32) if args.quick else (args.patients, args.draws)
    speed(500)
    radiotherapy(n, draws, args.seed)
    chemotherapy(max(4, n // 10), min(draws, 64), args.seed)
    hormone(max(4, n // 10), min(draws, 16), args.seed)


if __name__ == "__main__":
    main()
