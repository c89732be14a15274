"""The `oncotwin` command line. Thin: every command calls library functions.

JAX and the science modules are imported inside the commands, so `oncotwin --help` is fast.
Input errors exit with code 2 and a message naming file, row and column.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="oncotwin: digital twins of cancer patients — calibrate, forecast, report.",
    no_args_is_help=True,
    add_completion=False,
)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


@contextmanager
def _input_errors() -> Iterator[None]:
    """Map oncotwin's input errors to exit code 2 with a one-line message."""
    from .errors import DataError, ModelError, ScheduleError

    try:
        yield
    except (DataError, ModelError, ScheduleError) as exc:
        _console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


@contextmanager
def _progress() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Rich progress bars on stderr; yields ``start(label, total) -> advance(n)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=_console(stderr=True), transient=False,
    ) as bar:  # fmt: skip

        def start(label: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(label, total=total)
            return lambda n: bar.advance(task, n)

        yield start


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the model library: parameters, units, default priors and citations."""
    from .models import MODELS

    if as_json:
        out = [
            {
                "name": m.name, "title": m.title, "equation": m.equation, "description": m.description,
                "uses_exposure": m.uses_exposure, "closed_form": m.closed_form is not None,
                "citation": m.citation,
                "params": [
                    {"name": p.name, "unit": p.unit, "lower": p.lower, "upper": p.upper if p.upper != float("inf") else None,
                     "prior_median": p.prior_median, "prior_sd": p.prior_sd, "relative_to_size": p.scale == "size",
                     "description": p.description, "citation": p.citation}
                    for p in m.params
                ],
            }
            for m in MODELS.values()
        ]  # fmt: skip
        typer.echo(json.dumps(out, indent=2))
        return
    from rich.table import Table

    table = Table(title="oncotwin models", show_lines=True)
    for col in ("model", "equation", "parameters (unit)", "citation"):
        table.add_column(col, overflow="fold")
    for m in MODELS.values():
        params = ", ".join(f"{p.name} ({p.unit})" for p in m.params)
        table.add_row(f"[bold]{m.name}[/]\n{m.title}", m.equation, params, m.citation)
    _console().print(table)


@app.command()
def predict(
    history: Annotated[
        Path,
        typer.Option(
            "--history", help="Event table (CSV/NONMEM) with observations and treatments."
        ),
    ],
    targets: Annotated[
        Path, typer.Option("--targets", help="CSV with columns id,time (days) to forecast.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output CSV: id,time,median,lo,hi.")],
    model: Annotated[
        str, typer.Option(help="Model name, or 'auto' to compare and stack by PSIS-LOO.")
    ] = "auto",
    level: Annotated[float, typer.Option(help="Central prediction interval level.")] = 0.9,
    reference: Annotated[
        Path | None, typer.Option(help="Reference cohort with complete data, used only for priors.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    method: Annotated[
        str, typer.Option(help="Calibration: 'nuts' (default) or 'laplace' (fast).")
    ] = "nuts",
    time_unit: Annotated[str, typer.Option(help="Time unit of the input files.")] = "day",
) -> None:
    """Forecast target times for every subject of a history file (the forecasting contract)."""
    with _input_errors():
        import warnings

        from .data import read_events
        from .errors import ConvergenceWarning
        from .predict import predict as run_predict

        warnings.simplefilter("ignore", ConvergenceWarning)  # reported below, once per subject
        from .predict import read_targets

        hist = read_events(history, time_unit=time_unit)
        tgt = read_targets(targets)
        if time_unit != "day":
            from .units import time_factor

            tgt["time"] = tgt["time"] * time_factor(time_unit)
        ref = read_events(reference, time_unit=time_unit) if reference else None
        with _progress() as progress:
            result = run_predict(hist, tgt, model=model, level=level, reference=ref, seed=seed, method=method,
                                 progress=progress, targets_source=str(targets))  # fmt: skip
    table = result.table
    if time_unit != "day":
        from .units import time_factor

        table["time"] = table["time"] / time_factor(time_unit)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(out)  # atomic: a reader never sees half a file
    err = _console(stderr=True)
    models_used = ", ".join(f"{k} {v:.2f}" for k, v in result.weights.items())
    err.print(
        f"{len(table)} forecasts for {table['id'].nunique()} subjects -> {out} (models: {models_used})"
    )
    for w in result.warnings:
        err.print(f"[bold yellow]warning:[/] {w}", highlight=False)


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="oncotwin")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
