"""A treated patient's twin: forecast under continued pembrolizumab versus stopping it.

Run: python examples/treatment_scenarios.py [--patient INS-A-010] [--method nuts|laplace]
"""

from __future__ import annotations

import argparse

import numpy as np

from oncotwin import DigitalTwin, Schedule, datasets
from oncotwin.workflow import continue_schedule


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patient", default="INS-A-010")
    parser.add_argument("--method", default="nuts")
    args = parser.parse_args()

    data = datasets.load("inspire-pembrolizumab")
    twin = DigitalTwin.calibrate(
        data, args.patient, model="claret", method=args.method, target_accept=0.95
    )
    last = twin.subject.last_time
    times = np.array([last + 42.0, last + 84.0, last + 126.0])
    plans = {
        "continue q3w": continue_schedule(twin.subject.schedule, times[-1]),
        "stop now": Schedule(),
    }
    print(f"{args.patient}: last measurement {twin.subject.y[-1]:.1f} mm at day {last:.0f}")
    for name, plan in plans.items():
        fc = twin.forecast(times, plan)
        lo, hi = fc.interval(0.9)
        cells = ", ".join(
            f"day {t:.0f}: {m:.1f} ({a:.1f}–{b:.1f})"
            for t, m, a, b in zip(times, fc.median, lo, hi, strict=True)
        )
        print(f"  {name:13s} {cells}")
    if twin.warning:
        print("WARNING:", twin.warning)


if __name__ == "__main__":
    main()
