"""Continuous versus adaptive abiraterone in the Zhang 2017 prostate-cancer model.

Adaptive therapy (Zhang J et al. Nat Commun 2017;8:1816): treatment on until PSA falls below
50 % of its pre-treatment value, off until PSA is back at that value. The model has
androgen-dependent (T+), testosterone-producing (TP) and resistant (T-) cells competing
(Lotka-Volterra); see docs/treatments/hormone.md. This script compares, for the published
example patient, continuous therapy, adaptive therapy and a fixed intermittent schedule:
time to resistant takeover (T- > 50 % of cells), time to PSA progression (PSA above a factor
of baseline; a model proxy), number of treatment cycles and cumulative time on drug.

Run: python examples/adaptive_therapy_psa.py [--years 11] [--baseline-psa 20] [--tminus 1]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from oncotwin.models import hormone as h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--years", type=float, default=11.0, help="horizon, years (default 11)")
    parser.add_argument(
        "--baseline-psa",
        type=float,
        default=20.0,
        help="pre-treatment PSA, ng/mL: sets the PSA produced per cell (default 20)",
    )
    parser.add_argument(
        "--tminus", type=float, default=1.0, help="resistant T- cells at the start (default 1)"
    )
    parser.add_argument("--stop-below", type=float, default=0.5, help="adaptive: stop below")
    parser.add_argument("--restart-above", type=float, default=1.0, help="adaptive: restart at")
    parser.add_argument(
        "--progression-factor",
        type=float,
        default=1.25,
        help="PSA progression when PSA >= this x baseline (default 1.25)",
    )
    parser.add_argument("--on-days", type=float, default=180.0, help="intermittent: days on")
    parser.add_argument("--off-days", type=float, default=180.0, help="intermittent: days off")
    parser.add_argument(
        "--method", default=None, help="unused (accepted so all examples run alike)"
    )
    args = parser.parse_args()

    # Express PSA in ng/mL: choose the PSA made per cell so the start matches --baseline-psa.
    params = h.zhang_params()
    burden_psa = float(h.initial_state(params, tminus=args.tminus)[3])  # at c = 1
    params = params._replace(c_psa=params.c_psa * args.baseline_psa / burden_psa)
    y0 = h.initial_state(params, tminus=args.tminus)
    days = args.years * 365.25
    ts = np.linspace(0.0, days, int(days // 10) + 1)  # save every ~10 days

    rule = h.AdaptiveRule(stop_below=args.stop_below, restart_above=args.restart_above)
    runs = {
        "continuous": h.simulate_continuous(params, y0, ts),
        "adaptive": h.simulate_adaptive(params, y0, ts, rule),
        f"intermittent {args.on_days:g}/{args.off_days:g} d": h.simulate_intermittent(
            params, y0, ts, args.on_days, args.off_days
        ),
    }

    def when(t: float) -> str:
        return f"day {t:6.0f}" if math.isfinite(t) else f"> day {days:.0f}"

    print(f"Zhang 2017 model, published example patient; horizon {days:.0f} days")
    print(
        f"baseline PSA {float(y0[3]):.1f} ng/mL; adaptive: off below {args.stop_below:.0%}, "
        f"on again at {args.restart_above:.0%} of baseline; progression: PSA >= "
        f"{args.progression_factor:.0%} of baseline"
    )
    header = f"{'schedule':24s} {'T- > 50 %':>12s} {'PSA progression':>16s} {'cycles':>7s}"
    print(header + f" {'drug on':>13s}")
    for name, res in runs.items():
        if not bool(res.ok):
            print(f"{name:24s} simulation failed")
            continue
        t_res = float(h.time_to_resistance(res))
        t_psa = float(h.time_to_psa_progression(res, args.progression_factor))
        on = float(h.drug_on_time(res))
        print(
            f"{name:24s} {when(t_res):>12s} {when(t_psa):>16s} {int(h.n_cycles(res)):7d}"
            f" {on:6.0f} d ({on / days:4.0%})"
        )

    adaptive = runs["adaptive"]
    k = int(adaptive.n_switches)
    marks = ", ".join(
        f"{t:.0f} {'on' if on else 'off'}"
        for t, on in zip(
            np.asarray(adaptive.switch_times)[:k], np.asarray(adaptive.switch_on)[:k], strict=True
        )
    )
    print(f"adaptive switches (day, state): {marks}")
    schedule = h.to_schedule(adaptive, agent="abiraterone")
    print(f"as a schedule: {len(schedule.switches)} on/off records for agent 'abiraterone'")


if __name__ == "__main__":
    main()
