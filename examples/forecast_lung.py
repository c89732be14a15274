"""Calibrate a twin of one mouse's Lewis lung tumour and forecast it, from Python.

Run: python examples/forecast_lung.py [--subject lung-3] [--method nuts|laplace]
"""

from __future__ import annotations

import argparse

from oncotwin import DigitalTwin, datasets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subject", default="lung-3")
    parser.add_argument("--method", default="nuts")
    args = parser.parse_args()

    data = datasets.load("vaghi2020-lung")
    # Calibrate on what was known by day 14, then forecast the rest.
    known = data.subject(args.subject).truncate(14.0)
    twin = DigitalTwin.calibrate(known, args.subject, model="gompertz", method=args.method)
    print(
        f"{args.subject}: {twin.posterior.model}, diagnostics: {twin.posterior.diagnostics.problems() or 'ok'}"
    )
    for name, s in twin.posterior.summary().items():
        print(f"  {name:6s} median {s['median']:.4g}  90% CrI {s['lo']:.4g} – {s['hi']:.4g}")
    later = data.observations(args.subject)
    later = later[later["time"] > 14.0]
    fc = twin.forecast(later["time"].to_numpy())
    table = fc.to_frame().assign(observed=later["dv"].to_numpy())
    print(table.round(1).to_string(index=False))
    if fc.warning:
        print("WARNING:", fc.warning)


if __name__ == "__main__":
    main()
