"""`oncotwin spatial ...`: calibrate and forecast image-guided (reaction-diffusion) twins.

Registered in :mod:`oncotwin.cli` as ``app.add_typer(spatial_app, name="spatial")``. JAX and the
science modules are imported inside the commands so that ``oncotwin --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .cli_common import JsonOption, console, emit, input_errors, progress_bars

spatial_app = typer.Typer(help="Image-guided spatial twins (reaction-diffusion on MRI grids).")

VisitsOption = Annotated[
    str | None,
    typer.Option(
        "--visits",
        help="Calibration visit indices, comma-separated (default: all but the last two).",
    ),
]
OutOption = Annotated[
    Path, typer.Option("--out", help="Output folder (posterior.json, report.html).")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the posterior draws.")]
DrawsOption = Annotated[int, typer.Option("--draws", help="Posterior draws for forecasts.")]
FixOption = Annotated[
    list[str] | None,
    typer.Option("--fix", help="Fix a parameter, NAME=VALUE (repeatable), e.g. k_chemo=0.01."),
]
FreeOption = Annotated[str, typer.Option("--free", help="Calibrated parameters, comma-separated.")]
CropOption = Annotated[
    float,
    typer.Option(
        "--crop-margin", help="Crop to the calibration ROIs plus this margin, mm (0: no crop)."
    ),
]
DetectionOption = Annotated[
    float, typer.Option("--detection", help="Cellularity level of the tumour ROI.")
]
ProliferationOption = Annotated[
    str,
    typer.Option(
        "--proliferation",
        help="scalar: one proliferation rate; field: a smooth map rho(x) = rho0 exp(f(x)) "
        "calibrated with a Gaussian smoothness prior (docs/spatial.md).",
    ),
]
FieldSdOption = Annotated[
    float, typer.Option("--field-sd", help="Prior sd of log rho(x)/rho0 (field mode).")
]
FieldRangeOption = Annotated[
    float, typer.Option("--field-range", help="Prior correlation range of the field, mm.")
]
FieldModesOption = Annotated[
    int, typer.Option("--field-modes", help="Smooth modes representing the field.")
]
MethodOption = Annotated[
    str,
    typer.Option(
        "--method",
        help="laplace: Gaussian at the joint mode (fast); nuts: NUTS draws of the parameters "
        "and the initial map, started from it (slower, better calibrated; docs/spatial.md).",
    ),
]


def _ints(text: str | None) -> list[int] | None:
    if text is None:
        return None
    from .errors import DataError

    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise DataError(f"--visits must be comma-separated integers, got {text!r}") from None


def _fixed(items: list[str] | None) -> dict[str, float]:
    from .errors import ModelError

    out = {}
    for item in items or []:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ModelError(f"--fix expects NAME=VALUE, got {item!r}") from None
    return out


def _run(manifest: Path, visits: str | None, free: str, fix: list[str] | None, detection: float,
         crop: float, seed: int, draws: int, plans: list[str] | None,
         days: list[float] | None, proliferation: str = "scalar",
         field: tuple[float, float, int] = (0.5, 30.0, 24),
         method: str = "laplace") -> tuple[Any, ...]:  # fmt: skip
    import warnings

    from .data.imaging import load_manifest
    from .errors import ConvergenceWarning
    from .inference import spatial as isp

    if method not in isp.METHODS:  # before any work
        from .errors import ModelError

        raise ModelError(f"unknown --method {method!r}; use {isp.METHODS_TEXT}")
    patient = load_manifest(manifest)
    setup = isp.prepare(
        patient, calibration_visits=_ints(visits), free=tuple(f.strip() for f in free.split(",")),
        fixed=_fixed(fix), detection=detection, crop_margin_mm=crop if crop > 0 else None,
        proliferation=proliferation,
        field_prior=isp.FieldPrior(sd=field[0], range_mm=field[1], modes=field[2]),
    )  # fmt: skip
    with progress_bars() as start, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        post = isp.calibrate(setup, n_draws=draws, seed=seed, progress=start, method=method)
        later = [k for k in range(len(patient.visits)) if k > setup.calib[-1]]
        map_days = sorted(
            {*(days or []), *(patient.visits[k].day for k in later)}
            | {patient.visits[setup.calib[-1]].day}
        )
        forecasts = {}
        for plan in plans or [patient.delivered]:
            forecasts[plan] = isp.forecast(post, map_days, plan=plan, progress=start)
    for w in caught:
        console(stderr=True).print(f"[bold red]warning:[/] {w.message}", highlight=False)
    comparison = isp.compare_visits(next(iter(forecasts.values())), post, later) if later else []
    return patient, post, forecasts, comparison


def _write(
    out: Path, post: Any, forecasts: dict[str, Any], comparison: list[dict[str, Any]]
) -> dict[str, Any]:
    from .report.spatial import write_spatial_report

    out.mkdir(parents=True, exist_ok=True)
    result = {
        "patient": post.setup.patient.patient,
        "calibration_visits": list(post.setup.calib),
        "seed": post.seed,
        "method": post.method,
        "converged": post.converged,
        "diagnostics": {k: v for k, v in post.diagnostics.items() if k != "hessian_eigenvalues"},
        "parameters": post.summary(),
        "proliferation": post.setup.proliferation,
        "fixed": dict(post.setup.fixed),
        "z_map": post.z_map.tolist(),
        "covariance": post.cov.tolist(),
        "forecasts": {
            name: {
                "days": fc.map_days,
                "total_cells": {
                    f"day {d:g}": dict(
                        zip(("median", "lower", "upper"), fc.total_at(d), strict=True)
                    )
                    for d in fc.map_days
                },
            }
            for name, fc in forecasts.items()
        },
        "comparison": comparison,
    }
    if post.setup.proliferation == "field":
        result["proliferation_field"] = _field_summary(post)
    (out / "posterior.json").write_text(json.dumps(result, indent=1, default=float))
    write_spatial_report(out / "report.html", post, forecasts, comparison)
    result["files"] = [str(out / "posterior.json"), str(out / "report.html")]
    return result


def _field_summary(post: Any) -> dict[str, Any]:
    """Prior of the proliferation field and its posterior over the first calibration ROI."""
    import numpy as np

    fp = post.setup.field_prior
    med, lo, hi = post.rho_field()
    pt = post.setup.patient
    roi = pt.visits[post.setup.calib[0]].roi & pt.mask
    return {
        "prior": {"sd": fp.sd, "range_mm": fp.range_mm, "modes": fp.modes},
        "unit": "1/day",
        "first_roi": {
            "voxels": int(roi.sum()),
            "median_min": float(np.min(med[roi])),
            "median_max": float(np.max(med[roi])),
            "median_of_medians": float(np.median(med[roi])),
            "median_interval_ratio": float(np.median(hi[roi] / lo[roi])),
        },
    }


def _print(result: dict[str, Any]) -> None:
    from rich.table import Table

    from .report.format import fmt_num

    c = console()
    t = Table(title=f"{result['patient']}: parameters (median, 90% interval)")
    for col in ("parameter", "unit", "median", "90% interval", "truth"):
        t.add_column(col)
    for r in result["parameters"]:
        t.add_row(r["parameter"], r["unit"], fmt_num(r["median"]),
                  f"{fmt_num(r['lower'])} – {fmt_num(r['upper'])}",
                  fmt_num(r["truth"]) if "truth" in r else "—")  # fmt: skip
    c.print(t)
    if "proliferation_field" in result:
        f = result["proliferation_field"]["first_roi"]
        c.print(f"proliferation field over the first ROI ({f['voxels']} voxels): median rate "
                f"{fmt_num(f['median_min'])} – {fmt_num(f['median_max'])} 1/day; typical 90% "
                f"interval upper/lower {f['median_interval_ratio']:.2f}")  # fmt: skip
    for name, fc in result["forecasts"].items():
        for day, q in fc["total_cells"].items():
            c.print(f"{name}: {day}: tumour cells median {fmt_num(q['median'])} "
                    f"(90% {fmt_num(q['lower'])} – {fmt_num(q['upper'])})")  # fmt: skip
    for r in result["comparison"]:
        c.print(f"visit {r['visit']} (day {r['day']:g}): Dice {r['dice']:.2f}, CCC {r['ccc']:.2f}")
    c.print(f"wrote {', '.join(result['files'])}")


@spatial_app.command("calibrate")
def calibrate_cmd(
    manifest: Annotated[Path, typer.Argument(help="Spatial manifest JSON (see docs/spatial.md).")],
    visits: VisitsOption = None,
    out: OutOption = Path("spatial-twin"),
    free: FreeOption = "D,rho,alpha",
    fix: FixOption = None,
    detection: DetectionOption = 0.1,
    crop_margin: CropOption = 30.0,
    seed: SeedOption = 0,
    draws: DrawsOption = 100,
    proliferation: ProliferationOption = "scalar",
    field_sd: FieldSdOption = 0.5,
    field_range: FieldRangeOption = 30.0,
    field_modes: FieldModesOption = 24,
    method: MethodOption = "laplace",
    as_json: JsonOption = False,
) -> None:
    """Calibrate a spatial twin on early visits (MAP + Laplace, or NUTS) and check it against
    later ones."""
    with input_errors():
        _, post, forecasts, comparison = _run(
            manifest, visits, free, fix, detection, crop_margin, seed, draws, None, None,
            proliferation, (field_sd, field_range, field_modes), method,
        )  # fmt: skip
        result = _write(out, post, forecasts, comparison)
    emit(result) if as_json else _print(result)


@spatial_app.command("forecast")
def forecast_cmd(
    manifest: Annotated[Path, typer.Argument(help="Spatial manifest JSON.")],
    plan: Annotated[
        list[str] | None,
        typer.Option("--plan", help="RT plan(s) to forecast (repeatable; default: delivered)."),
    ] = None,
    day: Annotated[
        list[float] | None,
        typer.Option("--day", help="Extra forecast day(s) since the first scan."),
    ] = None,
    visits: VisitsOption = None,
    out: OutOption = Path("spatial-forecast"),
    free: FreeOption = "D,rho,alpha",
    fix: FixOption = None,
    detection: DetectionOption = 0.1,
    crop_margin: CropOption = 30.0,
    seed: SeedOption = 0,
    draws: DrawsOption = 100,
    proliferation: ProliferationOption = "scalar",
    field_sd: FieldSdOption = 0.5,
    field_range: FieldRangeOption = 30.0,
    field_modes: FieldModesOption = 24,
    method: MethodOption = "laplace",
    as_json: JsonOption = False,
) -> None:
    """Forecast cellularity maps and total cells under one or more RT plans, with intervals."""
    with input_errors():
        _, post, forecasts, comparison = _run(
            manifest, visits, free, fix, detection, crop_margin, seed, draws, plan, day,
            proliferation, (field_sd, field_range, field_modes), method,
        )  # fmt: skip
        result = _write(out, post, forecasts, comparison)
    emit(result) if as_json else _print(result)
