"""Speed of the population workflow (issue targets in brackets), warm unless said otherwise.

- population fit, vaghi2020-breast (66 subjects x ~9 observations), NUTS 4 chains x 500
  (+500 warm-up), median of seeds 0-2                                [<= 5 s]
- the same by SVI (3000 steps), warm and in a fresh process with an empty compile cache
                                                                     (fast alternative)
- one twin update (one new observation, SMC reweighting)            [<= 0.5 s]
- calibrating 1,000 subjects with a population prior, batched Laplace  [<= 60 s]
- `oncotwin predict` on the 66-subject breast file, end to end, cold process and cold JAX
  cache                                                              [<= 30 s]
  (also with --pool, and in a new process whose persistent compile cache a previous run filled)

With `--baseline-src DIR` (a checkout of an earlier version, e.g. made by
`git worktree add /tmp/oncotwin-base COMMIT`) the population NUTS fit, the cold SVI fit and
the cold NUTS `predict` also run with that version's `src/` first on the path, side by side in
the same run.

Usage: python benchmarks/population.py [--skip-nuts] [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from oncotwin import datasets
from oncotwin.errors import ConvergenceWarning
from oncotwin.inference.calibrate import calibrate_subjects, subjects_from
from oncotwin.inference.population import fit_population
from oncotwin.inference.problem import SubjectData
from oncotwin.twin import DigitalTwin

SRC = Path(__file__).resolve().parents[1] / "src"

# Population NUTS fits in a fresh process (so an earlier version can run it too): one
# compiling fit, then seeds 0-2 timed. Prints [[seconds, diagnostics ok], ...] and the module path.
FIT_SEEDS = """
import json, time, warnings
import oncotwin
from oncotwin import datasets
from oncotwin.errors import ConvergenceWarning
from oncotwin.inference.calibrate import subjects_from
from oncotwin.inference.population import fit_population
warnings.simplefilter("ignore", ConvergenceWarning)
breast = subjects_from(datasets.load("vaghi2020-breast"))
fit_population("gompertz", breast, method="nuts", seed=0)
out = []
for seed in (0, 1, 2):
    start = time.perf_counter()
    pop = fit_population("gompertz", breast, method="nuts", seed=seed)
    out.append([time.perf_counter() - start, bool(pop.diagnostics.ok)])
print(json.dumps({"fits": out, "module": oncotwin.__file__}))
"""

# A population SVI fit in a fresh process with an empty compile cache (everything compiled,
# nothing cached): prints the seconds of the fit (imports excluded) and the module path.
SVI_COLD = """
import json, time, warnings
import oncotwin
from oncotwin import datasets
from oncotwin.errors import ConvergenceWarning
from oncotwin.inference.calibrate import subjects_from
from oncotwin.inference.population import fit_population
warnings.simplefilter("ignore", ConvergenceWarning)
breast = subjects_from(datasets.load("vaghi2020-breast"))
start = time.perf_counter()
fit_population("gompertz", breast, method="svi")
print(json.dumps({"seconds": time.perf_counter() - start, "module": oncotwin.__file__}))
"""


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def with_src(src: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that imports oncotwin from `src` (ahead of the installed package)."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_snippet(code: str, src: Path, env: dict[str, str] | None = None) -> dict:
    """Run `code` (one of the snippets above) in a fresh process importing oncotwin from `src`;
    returns the JSON object it prints last, after checking which oncotwin it imported."""
    done = subprocess.run([sys.executable, "-c", code], env=with_src(src, env), check=True,
                          capture_output=True, text=True)  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["module"]).is_relative_to(src), result["module"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-nuts", action="store_true")
    parser.add_argument("--baseline-src", type=Path, help="checkout of an earlier version")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    breast = subjects_from(datasets.load("vaghi2020-breast"))
    versions = [("", SRC)]
    if args.baseline_src:
        versions.append((" [baseline]", args.baseline_src.resolve() / "src"))
    rows = []

    if not args.skip_nuts:
        for tag, src in versions:
            result = run_snippet(FIT_SEEDS, src)
            secs = [t for t, _ in result["fits"]]
            ok = sum(o for _, o in result["fits"])
            rows.append((f"population fit, 66 subjects, NUTS 4x500, median of seeds 0-2{tag}",
                         float(np.median(secs)), 5.0))  # fmt: skip
            rows.append((f"  (diagnostics ok in {ok} of 3 seeds; each: "
                         + ", ".join(f"{t:.1f}" for t in secs) + ")", float("nan"), None))  # fmt: skip
    for tag, src in versions:
        result = run_snippet(SVI_COLD, src, {**os.environ, "ONCOTWIN_JAX_CACHE": ""})
        rows.append((f"population fit, 66 subjects, SVI 3000 steps (cold){tag}",
                     result["seconds"], None))  # fmt: skip
    fit_population("gompertz", breast, method="svi")  # compile
    pop, secs = timed(lambda: fit_population("gompertz", breast, method="svi"))
    rows.append(("population fit, 66 subjects, SVI 3000 steps (warm)", secs, None))

    # one twin update: lung-3 with its last observation arriving
    lung = subjects_from(datasets.load("vaghi2020-lung"), ids=["lung-3"])[0]
    old = SubjectData(lung.id, lung.times[:-1], lung.y[:-1], lung.censored[:-1], lung.schedule,
                      lung.kind, lung.unit)  # fmt: skip
    post = calibrate_subjects("gompertz", [old], method="nuts", seed=0)[0]
    twin = DigitalTwin(old, [post])
    twin.update(lung, seed=0)  # compile
    (_, update), secs = timed(lambda: twin.update(lung, seed=1))
    rows.append((f"one twin update ({update.how}, warm)", secs, 0.5))

    # 1,000 subjects with a population prior: the breast cohort repeated with jittered values
    rng = np.random.default_rng(0)
    many = [
        SubjectData(
            f"{s.id}-{k}",
            s.times,
            s.y * np.exp(0.05 * rng.standard_normal(len(s.y))),
            s.censored,
            s.schedule,
            s.kind,
            s.unit,
        )  # fmt: skip
        for k in range(16)
        for s in breast
    ][:1000]
    prior = pop.prior()
    calibrate_subjects("gompertz", many, method="laplace", prior=prior)  # compile this batch shape
    _, secs = timed(lambda: calibrate_subjects("gompertz", many, method="laplace", prior=prior))
    rows.append(("1,000 subjects with a population prior, Laplace (warm)", secs, 60.0))

    # predict end to end, cold: a fresh process with an empty JAX cache
    ev = datasets.load("vaghi2020-breast").events
    obs = ev[(ev["evid"] == 0)].sort_values(["id", "time"])
    held = obs.groupby("id").tail(1)
    with tempfile.TemporaryDirectory() as tmp:
        h, t, o = Path(tmp, "H.csv"), Path(tmp, "T.csv"), Path(tmp, "P.csv")
        ev.drop(held.index).to_csv(h, index=False)
        held[["id", "time"]].to_csv(t, index=False)
        cold = {**os.environ, "ONCOTWIN_JAX_CACHE": ""}
        cached = {**os.environ, "ONCOTWIN_JAX_CACHE": str(Path(tmp, "jax-cache"))}
        runs = [
            ("laplace", [], cold, SRC, "cold"),
            *[("nuts", [], cold, src, f"cold{tag}") for tag, src in versions],
            *[("nuts", ["--pool"], cold, src, f"--pool, cold{tag}") for tag, src in versions],
            ("nuts", [], cached, SRC, None),  # fills the persistent compile cache
            ("nuts", [], cached, SRC, "new process, compile cache filled by a previous run"),
        ]
        for method, extra, env, src, label in runs:
            cmd = [sys.executable, "-m", "oncotwin.cli", "predict", "--history", str(h),
                   "--targets", str(t), "--out", str(o), "--model", "gompertz", "--method", method,
                   *extra]  # fmt: skip
            _, secs = timed(lambda cmd=cmd, env=with_src(src, env): subprocess.run(
                cmd, check=True, env=env, capture_output=True))  # fmt: skip
            if label:
                rows.append((f"oncotwin predict, 66 subjects, {method} ({label})", secs, 30.0))
            pd.read_csv(o)  # the output exists and parses

    print(f"{'measurement':<62}{'seconds':>10}{'target':>9}")
    for label, secs, target in rows:
        shown = "" if np.isnan(secs) else f"{secs:10.2f}"
        print(f"{label:<62}{shown:>10}{'' if target is None else f'{target:9.1f}'}")


if __name__ == "__main__":
    main()
