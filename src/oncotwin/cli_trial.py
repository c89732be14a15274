"""`oncotwin trial ...`: run virtual trials from a YAML design (in process or on Dask)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .cli_common import JsonOption, console, emit, input_errors, progress_bars

trial_app = typer.Typer(help="Virtual clinical trials: simulate designs, power and analyses.",
                        no_args_is_help=True)  # fmt: skip


@trial_app.callback()
def _group() -> None:
    """Virtual clinical trials (a command group, so `oncotwin trial run ...` reads naturally)."""


@trial_app.command("run")
def run_command(
    design: Annotated[
        Path, typer.Argument(help="Trial design (YAML).", exists=True, dir_okay=False)
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (created).")],
    n: Annotated[int, typer.Option("--n", min=2, help="Patients per trial.")] = 300,
    replicates: Annotated[int, typer.Option("--replicates", min=1, help="Replicate trials.")] = 1,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Random seed (default: the design's).")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Dask scheduler address (tcp://...).")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=0, help="Local Dask workers (0: in process).")
    ] = 0,
    chunk_size: Annotated[
        int | None, typer.Option("--chunk-size", min=1, help="Patients per task.")
    ] = None,
    power: Annotated[
        str | None, typer.Option("--power", help="Sizes for a power curve, e.g. 100,200,400.")
    ] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write report.html.")] = True,
    json_out: JsonOption = False,
) -> None:
    """Simulate a trial design: patients.parquet, replicates.parquet, summary.json, report.html."""
    import json

    import numpy as np

    from .trials.analysis import (
        analyse_trial,
        power_curve,
        prognostic_adjustment,
        rejection_rate,
        replicate_estimates,
        sample_size_for_power,
    )
    from .trials.design import load_design
    from .trials.run import run_trial

    with input_errors():
        d = load_design(design)
        sizes = _sizes(power)
    executor: Any = None
    if scheduler or workers:
        from .scale.dask import DaskExecutor

        executor = DaskExecutor(scheduler, n_workers=max(workers, 1))
    out.mkdir(parents=True, exist_ok=True)
    try:
        with progress_bars() as start:
            res = run_trial(d, n, replicates=replicates, seed=seed, chunk_size=chunk_size,
                            executor=executor, progress=start)  # fmt: skip
            analysis = analyse_trial(res)
            rep: dict[str, Any] = {}
            prog = None
            if replicates > 1 and len(d.arms) > 1:
                est = replicate_estimates(res)
                est.to_parquet(out / "replicates.parquet")
                r, se = rejection_rate(est, d.endpoints.alpha)
                rep = {"primary endpoint": d.endpoints.primary, "replicates": replicates,
                       "rejection rate": r, "rejection rate MC SE": se,
                       "mean estimate": float(np.nanmean(est["estimate"])),
                       "SD of estimate": float(np.nanstd(est["estimate"]))}  # fmt: skip
                prog = prognostic_adjustment(
                    res,
                    endpoint=d.endpoints.primary if d.endpoints.primary != "orr" else "pct_change",
                )
            curve = None
            if sizes:
                curve = power_curve(d, sizes, replicates=max(replicates, 2), seed=seed,
                                    executor=executor, progress=start)  # fmt: skip
                curve.to_parquet(out / "power.parquet")
    finally:
        if executor is not None:
            executor.close()
    res.patients.to_parquet(out / "patients.parquet")
    if res.visits is not None:
        import pandas as pd

        vis = pd.DataFrame(res.visits, columns=[f"day_{t:g}" for t in res.times])
        vis.insert(0, "replicate", res.patients["replicate"].to_numpy())
        vis.insert(1, "index", res.patients["index"].to_numpy())
        vis.to_parquet(out / "visits.parquet")
    summary = {
        "design": d.to_dict(), "provenance": res.provenance(),
        "arms": json.loads(analysis.arms.to_json(orient="records")),
        "comparisons": json.loads(analysis.comparisons.to_json(orient="records")),
        "replicates": rep,
        "prognostic": None if prog is None else {k: v for k, v in prog.items() if k not in ("unadjusted", "adjusted")},
        "power": None if curve is None else json.loads(curve.to_json(orient="records")),
        "n_for_80_percent_power": None if curve is None else sample_size_for_power(curve),
    }  # fmt: skip
    (out / "summary.json").write_text(
        json.dumps(summary, indent=2, default=_json), encoding="utf-8"
    )
    if report:
        from .report.trial import write_trial_report

        write_trial_report(
            out / "report.html", res, analysis, replicates=rep, prognostic=prog, power=curve
        )
    if json_out:
        emit(
            {"out": str(out), "provenance": res.provenance(), "comparisons": summary["comparisons"]}
        )
        return
    c = console()
    c.print(f"[bold]{d.name}[/]: {n} patients x {replicates} replicate(s), seed {res.plan.seed}, "
            f"{res.backend}, {res.elapsed:.1f} s; status {res.counts()}")  # fmt: skip
    for _, row in analysis.arms.iterrows():
        c.print(f"  {row['arm']}: n={row['n']}, ORR {row.get('orr', float('nan')):.1%}, median PFS "
                f"{row.get('median_pfs_days', float('nan')):.0f} day(s)")  # fmt: skip
    if rep:
        c.print(f"  rejection rate of the primary analysis: {rep['rejection rate']:.3f} "
                f"(MC SE {rep['rejection rate MC SE']:.3f})")  # fmt: skip
    c.print(f"  results in {out}")


def _sizes(text: str | None) -> list[int]:
    from .errors import DataError

    if not text:
        return []
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise DataError(f"--power must be comma-separated integers, got {text!r}") from None
    if any(s < 2 for s in sizes):
        raise DataError(f"--power sizes must be >= 2, got {text!r}")
    return sizes


def _json(x: Any) -> Any:
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
