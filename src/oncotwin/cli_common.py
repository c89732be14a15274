"""What every `oncotwin` command shares: consoles, progress bars, input-error exits, options.

Kept free of JAX and the science modules so that `oncotwin --help` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", envvar="ONCOTWIN_DB", help="Database URL or SQLite file (default: user data dir)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ErrorModelOption = Annotated[
    str,
    typer.Option(
        help="Residual error: 'proportional' (log-normal) or 'combined' (additive + "
        "proportional: small sizes measured with a larger relative error)."
    ),
]


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


@contextmanager
def input_errors() -> Iterator[None]:
    """Map oncotwin's input errors to exit code 2 with a one-line message."""
    from .errors import DataError, ModelError, NotFoundError, ScheduleError

    try:
        yield
    except (DataError, ModelError, NotFoundError, ScheduleError) as exc:
        console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


@contextmanager
def progress_bars() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Rich progress bars on stderr; yields ``start(label, total) -> advance(n)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console(stderr=True), transient=False,
    ) as bar:  # fmt: skip

        def start(label: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(label, total=total)
            return lambda n: bar.advance(task, n)

        yield start


def open_store(db: str | None) -> Any:
    from .store import Store

    return Store(db)


def emit(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))
