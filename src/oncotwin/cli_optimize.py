"""`oncotwin optimize`: the best schedule for a stored twin, beside the standard of care."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli_common import DbOption, JsonOption, console, emit, input_errors, open_store, progress_bars

MODALITY_HELP = "radiotherapy, chemotherapy, radiopharmaceutical or hormone."


def optimize(
    patient: Annotated[str, typer.Argument(help="Patient id (its latest twin is used).")],
    modality: Annotated[str, typer.Option("--modality", "-m", help=MODALITY_HELP)],
    objective: Annotated[
        str | None,
        typer.Option(
            help="burden:DAYS, auc:DAYS, ttp, regrowth, tcp or resistance "
            "(default: regrowth for radiation, burden:180 for chemotherapy, resistance for "
            "hormone therapy)."
        ),
    ] = None,
    constraint: Annotated[
        list[str] | None,
        typer.Option(
            "--constraint",
            "-c",
            help="Extra constraint, repeatable: max-dose:X, cumulative:X, weekdays, rest:DAYS, "
            "whole:SIZE, oar-bed:GY, ntcp:ORGAN<=P, neutropenia:GRADE<=P, ORGAN-bed:GY@EPS, "
            "ORGAN-dose:GY@EPS.",
        ),
    ] = None,
    risk: Annotated[
        str, typer.Option(help="Risk measure over posterior draws: mean, quantile:A, cvar:A.")
    ] = "cvar:0.9",
    draws: Annotated[int, typer.Option(help="Posterior draws used for every schedule.")] = 200,
    top: Annotated[int, typer.Option(help="Number of best schedules shown.")] = 3,
    threshold: Annotated[
        float,
        typer.Option(help="Probability of beating the standard of care for a confident advice."),
    ] = 0.8,
    report: Annotated[
        Path | None,
        typer.Option(help="Also write an HTML page with the recommendation and Pareto plot."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the posterior draws.")] = 0,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Optimise a treatment schedule for a patient's twin, with its risk and the standard of care."""
    import warnings

    from .errors import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)  # shown in the recommendation instead
    if draws < 10:
        console(stderr=True).print("[bold red]error:[/] --draws must be at least 10")
        raise typer.Exit(2)
    with input_errors(), open_store(db) as store:
        from .optimize import optimize_twin
        from .workflow import load_twin

        twin, record = load_twin(store, patient)
        with progress_bars() as progress:
            rec = optimize_twin(
                twin, modality, objective=objective, risk=risk, constraints=constraint or [],
                n_draws=draws, seed=seed, top=top, threshold=threshold, progress=progress,
            )  # fmt: skip
        rec.provenance["twin_version"] = record.version
        if report is not None:
            from .report.recommendation import write_recommendation_report

            write_recommendation_report(report, rec)
    if as_json:
        emit(rec.to_dict())
        return
    _print(rec, record.version)
    if report is not None:
        console(stderr=True).print(f"report: {report.resolve()}")


def _print(rec: object, version: int) -> None:
    from rich.table import Table

    from .optimize import Recommendation

    assert isinstance(rec, Recommendation)
    con = console()
    if rec.warning:
        con.print(f"[bold red]WARNING: {rec.warning} - not for clinical decisions[/]")
    colour = "green" if rec.confident or rec.standard_is_best else "yellow"
    con.print(f"[bold]{rec.patient}[/] twin v{version} · {rec.modality} · optimising "
              f"{rec.objective.label} ({rec.risk.label}) over {rec.n_draws} draws, seed {rec.seed}")  # fmt: skip
    con.print(f"[{colour}]{rec.headline()}[/]", highlight=False)
    table = Table("schedule", f"{rec.risk.kind} value", "median (90% interval)",
                  rec.toxicity_label, "constraints")  # fmt: skip
    rows = [*rec.best] + ([] if any(r.candidate.standard for r in rec.best) else [rec.standard])
    for r in rows:
        lo, hi = r.interval()
        name = r.candidate.name + (" [standard of care]" if r.candidate.standard else "")
        ok = "all met" if r.feasible else "[red]" + ", ".join(
            c.name for c in r.checks if not c.met) + "[/]"  # fmt: skip
        table.add_row(name, f"{r.risk_value:.4g}", f"{r.median:.4g} ({lo:.4g}–{hi:.4g})",
                      f"{r.toxicity:.3g}", ok)  # fmt: skip
    con.print(table)
    for line in rec.lines()[1:]:
        con.print(line, highlight=False)
