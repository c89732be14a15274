"""The `oncotwin` command line. Thin: every command calls library functions.

JAX and the science modules are imported inside the commands, so `oncotwin --help` is fast.
Input errors exit with code 2 and a message naming file, row and column.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .cli_common import (
    DbOption,
    ErrorModelOption,
    JsonOption,
    console,
    emit,
    input_errors,
    open_store,
    progress_bars,
)
from .cli_optimize import optimize
from .cli_service import audit_app, serve, users_app
from .cli_spatial import spatial_app
from .cli_trial import trial_app

app = typer.Typer(
    help="oncotwin: digital twins of cancer patients — calibrate, forecast, report.",
    no_args_is_help=True,
    add_completion=False,
)


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
    console().print(table)
    modules = Table(title="treatment and toxicity modules (model cards in docs/treatments/)")
    for col in ("module", "what", "card"):
        modules.add_column(col, overflow="fold")
    for module, what, card in TREATMENT_MODULES:
        modules.add_row(module, what, card)
    console().print(modules)


# Modules of treatment effects and toxicity beyond the tumour-size model registry.
TREATMENT_MODULES = (
    ("oncotwin.radiotherapy", "LQ survival, BED/EQD2, TCP, gEUD and LKB NTCP, QUANTEC constraints", "docs/treatments/radiotherapy.md"),
    ("oncotwin.dosimetry", "radiopharmaceutical TAC fits, MIRD absorbed dose, BED, organ limits", "docs/treatments/radiopharmaceutical.md"),
    ("oncotwin.models.pk", "one-, two- and three-compartment PK closed forms", "docs/treatments/chemotherapy.md"),
    ("oncotwin.models.myelosuppression", "Friberg neutropenia model, nadir, CTCAE grade", "docs/treatments/chemotherapy.md"),
    ("oncotwin.models.hormone", "PSA under continuous, intermittent and adaptive hormone therapy", "docs/treatments/hormone.md"),
    ("oncotwin.models.immune", "Kuznetsov effector-tumour model, checkpoint response, RECIST", "docs/treatments/immunotherapy.md"),
)  # fmt: skip


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
    pool: Annotated[
        bool,
        typer.Option(
            help="Calibrate all subjects (and the reference cohort) jointly in one population "
            "model, so each borrows strength from the others."
        ),
    ] = False,
    covariate: Annotated[
        list[str] | None,
        typer.Option(
            help="With --reference or --pool: a column constant per subject that the "
            "population adjusts for (repeatable; categorical as indicators), besides the log "
            "of the first observed size."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    method: Annotated[
        str, typer.Option(help="Calibration: 'nuts' (default) or 'laplace' (fast).")
    ] = "nuts",
    error_model: ErrorModelOption = "proportional",
    time_unit: Annotated[str, typer.Option(help="Time unit of the input files.")] = "day",
) -> None:
    """Forecast target times for every subject of a history file (the forecasting contract)."""
    with input_errors():
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
        with progress_bars() as progress:
            result = run_predict(hist, tgt, model=model, level=level, reference=ref, pool=pool,
                                 covariates=covariate or (), seed=seed, method=method,
                                 error_model=error_model, progress=progress,
                                 targets_source=str(targets))  # fmt: skip
    table = result.table
    if time_unit != "day":
        from .units import time_factor

        table["time"] = table["time"] / time_factor(time_unit)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(out)  # atomic: a reader never sees half a file
    err = console(stderr=True)
    models_used = ", ".join(f"{k} {v:.2f}" for k, v in result.weights.items())
    err.print(
        f"{len(table)} forecasts for {table['id'].nunique()} subjects -> {out} (models: {models_used})"
    )
    for w in result.warnings:
        err.print(f"[bold yellow]warning:[/] {w}", highlight=False)


twin_app = typer.Typer(
    help="Create, inspect and list versions of patients' twins.", no_args_is_help=True
)
app.add_typer(twin_app, name="twin")


@app.command()
def ingest(
    source: Annotated[
        str,
        typer.Argument(
            help="Event-table file (CSV/NONMEM), FHIR R4 Bundle (.json) or a shipped data set name."
        ),
    ],
    db: DbOption = None,
    time_unit: Annotated[str, typer.Option(help="Time unit of the file.")] = "day",
    as_json: JsonOption = False,
) -> None:
    """Ingest events into the database in one transaction (a bad file changes nothing)."""
    with input_errors():
        from .workflow import ingest as run_ingest

        with open_store(db) as store:
            res = run_ingest(store, source, time_unit=time_unit)
    if as_json:
        emit(res.__dict__)
    else:
        console().print(
            f"ingested {res.n_inserted} rows ({res.n_skipped} already present) for {res.n_patients} patients "
            f"({len(res.new_patients)} new); data version {res.data_version}"
        )


@app.command()
def patients(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List the patients in the database."""
    with open_store(db) as store:
        rows = store.patients()
    if as_json:
        emit([r.__dict__ for r in rows])
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} patients")
    for col in ("id", "observations", "doses", "days", "twin versions", "source"):
        table.add_column(col)
    for r in rows:
        span = f"{r.first_time:g}–{r.last_time:g}" if r.first_time is not None else ""
        table.add_row(
            r.id, str(r.n_observations), str(r.n_doses), span, str(r.n_twins), r.source or ""
        )
    console().print(table)


def _twin_summary(record: Any) -> dict[str, Any]:
    return {
        "patient": record.patient_id, "version": record.version, "model": record.model, "method": record.method,
        "created_at": record.created_at, "data_version": record.data_version, "data_as_of": record.data_as_of,
        "converged": record.converged, "seed": record.seed, "oncotwin_version": record.oncotwin_version,
        "parameters": record.summary, "diagnostics": record.diagnostics,
    }  # fmt: skip


def _print_twin(record: Any) -> None:
    from rich.table import Table

    con = console()
    status = "[green]converged[/]" if record.converged else "[bold red]NOT CONVERGED[/]"
    con.print(
        f"[bold]{record.patient_id}[/] twin v{record.version}: {record.model} ({record.method}), {status}"
    )
    for problem in record.diagnostics.get("problems", []):
        con.print(f"  [red]- {problem}[/]")
    table = Table("parameter", "median", "90% interval")
    for name, s in record.summary.items():
        table.add_row(name, f"{s['median']:.4g}", f"{s['lo']:.4g} – {s['hi']:.4g}")
    con.print(table)
    con.print(
        f"data version {record.data_version} as of {record.data_as_of:%Y-%m-%d %H:%M} UTC; seed {record.seed}"
    )


@twin_app.command("create")
def twin_create(
    patient: Annotated[list[str], typer.Argument(help="Patient id(s); 'all' for every patient.")],
    db: DbOption = None,
    model: Annotated[
        str, typer.Option(help="Model name, or 'auto' (PSIS-LOO per patient).")
    ] = "gompertz",
    method: Annotated[str, typer.Option(help="'nuts' (default) or 'laplace'.")] = "nuts",
    prior: Annotated[
        str | None,
        typer.Option(
            help="Name of a stored population whose predictive is the prior (sets the model "
            "and the error model, which --error-model may only repeat)."
        ),
    ] = None,
    error_model: Annotated[
        str | None,
        typer.Option(
            help="Residual error: 'proportional' (log-normal; the default without --prior) or "
            "'combined' (additive + proportional). With --prior: the population's."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Calibrate a new twin version for each patient on all data known now."""
    import warnings

    from .errors import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)  # shown in the summary instead
    with input_errors(), open_store(db) as store:
        from .errors import ModelError
        from .observe import get_error_model
        from .workflow import (
            build_cohort,
            create_twin,
            load_population,
            population_covariates,
        )

        ids = [r.id for r in store.patients()] if patient == ["all"] else patient
        extra: dict[str, Any] = {"error_model": get_error_model(error_model or "proportional").name}
        if prior is not None:
            pop = load_population(store, prior)
            if error_model not in (None, pop.error_model):
                raise ModelError(
                    f"population {prior!r} was fitted with the {pop.error_model} error model, "
                    f"not {error_model}"
                )
            covs = population_covariates(store, pop, ids)
            # with covariates each patient gets its own prior, coded as the population was fit
            priors = (pop.prior(seed=seed) if covs is None else
                      [pop.prior(covs[pid], seed=seed) for pid in ids])  # fmt: skip
            model, extra = pop.model, {"prior": priors, "error_model": pop.error_model}
        with progress_bars() as progress:
            if model == "auto":
                tick = progress("calibrating", len(ids))
                records = []
                for pid in ids:
                    records.append(
                        create_twin(store, pid, model="auto", method=method, seed=seed, **extra)[0]
                    )
                    tick(1)
            else:
                done = build_cohort(store, ids, model=model, method=method, seed=seed,
                                    progress=progress("calibrating", len(ids)), **extra)  # fmt: skip
                records = [r for r, _ in done]
    if as_json:
        emit([_twin_summary(r) for r in records])
    else:
        for r in records:
            _print_twin(r)


@twin_app.command("update")
def twin_update(
    patient: str,
    source: Annotated[
        str | None,
        typer.Argument(help="Event file with the new rows (default: what the store has)."),
    ] = None,
    db: DbOption = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    time_unit: Annotated[str, typer.Option(help="Time unit of the file.")] = "day",
    as_json: JsonOption = False,
) -> None:
    """Assimilate new data into the latest twin (reweighting when sound) and store the next version."""
    import warnings

    from .errors import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)  # shown in the summary instead
    with input_errors(), open_store(db) as store:
        from .workflow import update_twin

        record, update = update_twin(store, patient, source, seed=seed, time_unit=time_unit)
    surprises = [x.__dict__ for x in update.surprises]
    if as_json:
        emit(_twin_summary(record) | {"update": update.how, "reason": update.reason,
                                       "surprises": surprises})  # fmt: skip
        return
    _print_twin(record)
    how = update.how + (f" ({update.reason})" if update.reason else "")
    con = console()
    con.print(f"update: {how}")
    for x in update.surprises:
        con.print(
            f"[bold yellow]surprise[/] at day {x.time:g}: observed {x.observed:.4g}, outside the "
            f"previous version's {x.level:.0%} interval {x.lo:.4g}–{x.hi:.4g}; the model may be "
            "wrong for this patient (resistance, pseudoprogression?)"
        )


population_app = typer.Typer(
    help="Fit and inspect population (mixed-effects) models: priors for new patients.",
    no_args_is_help=True,
)
app.add_typer(population_app, name="population")


@population_app.command("fit")
def population_fit(
    name: Annotated[str, typer.Option("--name", help="Name to store the population under.")],
    data: Annotated[
        str | None,
        typer.Option(
            help="Event file or shipped data set to ingest first (default: the store's patients)."
        ),
    ] = None,
    db: DbOption = None,
    model: Annotated[str, typer.Option(help="Structural model.")] = "gompertz",
    method: Annotated[
        str, typer.Option(help="'nuts' (default) or 'svi' (large cohorts).")
    ] = "nuts",
    covariate: Annotated[
        list[str] | None,
        typer.Option(
            help="Covariate (fixed effect on every parameter), repeatable: a column constant "
            "per patient (numeric as is; categorical as indicators against its first level) "
            "or log_baseline (log of the first observed size)."
        ),
    ] = None,
    error_model: ErrorModelOption = "proportional",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Fit a population model to a cohort and store it as the next version of NAME."""
    import warnings

    from .errors import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)  # shown in the summary instead
    with input_errors(), open_store(db) as store:
        from .models import get_model
        from .observe import get_error_model
        from .workflow import fit_named_population, ingest_data, load_source

        get_model(model)  # bad names fail before any ingest
        get_error_model(error_model)
        if data is not None:
            source = load_source(data)
            ingest_data(store, source, data)
            ids = list(source.ids)
        else:
            ids = [r.id for r in store.patients()]
        console(stderr=True).print(f"fitting {model} to {len(ids)} patients ({method}) ...")
        rec = fit_named_population(store, name, ids, model=model, method=method, seed=seed,
                                   covariates=covariate or (), error_model=error_model)  # fmt: skip
    _show_population(rec, as_json)


@population_app.command("show")
def population_show(
    name: str,
    db: DbOption = None,
    version: Annotated[int | None, typer.Option(help="Version (default latest).")] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Also write an HTML report (VPC and goodness of fit) to this file."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Typical values, between-patient spread and diagnostics of a stored population."""
    with input_errors(), open_store(db) as store:
        rec = store.population(name, version)
        if report is not None:
            from .report import write_population_report
            from .workflow import load_population, population_covariates, population_subjects

            pop = load_population(store, name, rec.version)
            subjects = population_subjects(store, pop)
            covs = population_covariates(store, pop, pop.subjects)
            write_population_report(report, pop, subjects, covariates=covs)
    _show_population(rec, as_json)
    if report is not None:
        console(stderr=True).print(f"report: {report.resolve()}")


def _show_population(rec: Any, as_json: bool) -> None:
    r = rec.record
    if as_json:
        emit({"name": rec.name, "version": rec.version, "created_at": rec.created_at, **r})
        return
    from rich.table import Table

    con = console()
    ok = not r["diagnostics"].get("problems")
    status = "[green]converged[/]" if ok else "[bold red]NOT CONVERGED[/]"
    con.print(
        f"[bold]population {rec.name}[/] v{rec.version}: {r['model']} on {len(r['subjects'])} "
        f"patients ({r['method']}), {status}"
    )
    for problem in r["diagnostics"].get("problems", []):
        con.print(f"  [red]- {problem}[/]")
    table = Table("parameter", "typical value (90% CI)", "between-patient SD, log scale (90% CI)")
    for pname, s in r["summary"].items():
        t = s["typical"]
        om = s.get("omega")
        spread = f"{om[0]:.3g} ({om[1]:.3g}–{om[2]:.3g})" if om else "shared"
        if s.get("pooled") is False:
            spread = "not pooled (each patient's own)"
        unit = s.get("unit", "")
        table.add_row(pname, f"{t[0]:.4g} ({t[1]:.4g}–{t[2]:.4g}) {unit}", spread)
    con.print(table)
    if r.get("covariates"):
        con.print(
            "typical values are at the cohort's mean covariates. Covariate effects on the "
            "unconstrained scale (log; logit for bounded parameters), median (90% CI):"
        )
    for pname, s in r["summary"].items():
        for cov, e in s.get("effects", {}).items():
            con.print(f"  {cov} on {pname}: {e[0]:+.3g} ({e[1]:+.3g} to {e[2]:+.3g}) per unit")
    names = list(r["names"][: len(r["correlation"])])  # model parameters, in order
    pooled = [i for i, n in enumerate(names) if "omega" in r["summary"][n]]
    corr = r["correlation"]
    if len(pooled) < 2:
        return
    con.print("random-effect correlation: " + "; ".join(
        f"{names[i]}-{names[j]} {corr[i][j]:+.2f}" for i in pooled for j in pooled if j < i
    ))  # fmt: skip


@twin_app.command("show")
def twin_show(
    patient: str,
    db: DbOption = None,
    version: Annotated[int | None, typer.Option(help="Twin version (default latest).")] = None,
    as_of: Annotated[
        str | None, typer.Option(help="Latest version created at or before this ISO date/time.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a twin version: model, parameter posteriors, diagnostics, provenance."""
    from datetime import datetime

    with input_errors(), open_store(db) as store:
        when = datetime.fromisoformat(as_of) if as_of else None
        record = store.twin(patient, version, as_of=when)
    emit(_twin_summary(record)) if as_json else _print_twin(record)


@twin_app.command("history")
def twin_history(patient: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List every version of a patient's twin."""
    with input_errors(), open_store(db) as store:
        records = store.twin_history(patient)
    if as_json:
        emit([_twin_summary(r) for r in records])
        return
    from rich.table import Table

    table = Table("version", "created (UTC)", "model", "method", "data version", "converged")
    for r in records:
        table.add_row(str(r.version), f"{r.created_at:%Y-%m-%d %H:%M:%S}", r.model, r.method, r.data_version,
                      "yes" if r.converged else "[red]NO[/]")  # fmt: skip
    console().print(table)


@app.command()
def forecast(
    patient: str,
    db: DbOption = None,
    schedule: Annotated[
        Path | None, typer.Option(help="Treatment plan (YAML/JSON) from the last observation on.")
    ] = None,
    regimen: Annotated[
        Path | None,
        typer.Option(
            help="Regimen file (YAML/JSON, docs/regimens.md) from the last observation on; its "
            "threshold rule (e.g. 'abiraterone on until PSA < 50% of baseline') is applied to "
            "every draw."
        ),
    ] = None,
    check_every: Annotated[
        float, typer.Option(help="Days between the visits at which a regimen's rule is checked.")
    ] = 28.0,
    until: Annotated[
        float | None,
        typer.Option(help="Forecast horizon, days (default: past the last observation)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    fhir: Annotated[
        Path | None,
        typer.Option("--fhir", help="Also write the forecast as a FHIR R4 Bundle (JSON)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Forecast a patient's latest twin under the recorded schedule or a new one (with 50%/90% intervals)."""
    with input_errors(), open_store(db) as store:
        from .schedule import Schedule
        from .workflow import Scenario, forecast_and_save, horizon, load_twin

        if schedule and regimen:
            from .errors import DataError

            raise DataError("give --schedule or --regimen, not both")
        twin, record = load_twin(store, patient)
        end = until if until is not None else horizon(twin)
        if regimen:
            from .regimen import load_regimen

            plan = load_regimen(regimen)
            scenario = Scenario(str(regimen), plan.schedule(), plan.rules, check_every)
        elif schedule:
            scenario = Scenario(str(schedule), Schedule.from_file(schedule))
        else:
            scenario = Scenario("recorded", None)
        fc = forecast_and_save(store, twin, record, scenario, end, seed=seed)
        if fhir is not None:
            from .data.fhir import time_origin
            from .data.fhir_export import forecast_to_fhir

            origin = time_origin(store.events(patient))
            bundle = forecast_to_fhir(fc, origin=origin, schedule_name=scenario.name)
            fhir.write_text(json.dumps(bundle, indent=1), encoding="utf-8")
    table = fc.to_frame()
    table = table[table["time"] >= twin.subject.last_time]
    rule = None
    if fc.on_treatment is not None and fc.decision_times is not None:
        rule = {"rule": fc.provenance["rule"], "decision_times": fc.decision_times.tolist(),
                "on_treatment_share": fc.on_treatment.mean(axis=0).tolist()}  # fmt: skip
    if as_json:
        emit({"patient": patient, "twin_version": record.version, "schedule": scenario.name, "unit": fc.unit,
               "warning": fc.warning, "forecast": table.to_dict(orient="records"), "rule": rule})  # fmt: skip
        return
    from rich.table import Table

    con = console()
    if fc.warning:
        con.print(f"[bold red]WARNING: {fc.warning}[/]", highlight=False)
    out = Table("day", f"median ({fc.unit})", "50% interval", "90% interval",
                title=f"{patient} twin v{record.version}: {scenario.name}")  # fmt: skip
    for r in table.iloc[:: max(1, len(table) // 12)].itertuples():
        out.add_row(
            f"{r.time:.1f}",
            f"{r.median:.4g}",
            f"{r.lo_50:.4g} – {r.hi_50:.4g}",
            f"{r.lo_90:.4g} – {r.hi_90:.4g}",
        )
    con.print(out)
    if rule is not None:
        share = rule["on_treatment_share"]
        con.print(f"Rule: {rule['rule']}. Share of draws on treatment at the visits: "
                  f"{min(share):.0%} to {max(share):.0%} (mean {sum(share) / len(share):.0%}).")  # fmt: skip


@app.command()
def report(
    patient: Annotated[str | None, typer.Argument(help="Patient id (omit with --cohort).")] = None,
    cohort: Annotated[
        bool, typer.Option("--cohort", help="One page per patient with a twin, plus a cohort page.")
    ] = False,
    out: Annotated[Path, typer.Option(help="Output file (patient) or folder (cohort).")] = Path(
        "oncotwin-report"
    ),
    db: DbOption = None,
    seed: Annotated[int, typer.Option(help="Random seed of the forecasts.")] = 0,
) -> None:
    """Write self-contained HTML reports from the latest twins (forecasts under each scenario)."""
    if (patient is None) == (not cohort):
        console(stderr=True).print("[bold red]error:[/] give a patient id or --cohort (not both)")
        raise typer.Exit(2)
    with input_errors(), open_store(db) as store:
        from .report import patient_filename, write_cohort_report
        from .workflow import write_patient_page

        ids = [r.id for r in store.patients() if r.n_twins] if cohort else [str(patient)]
        folder = out if cohort else out.parent
        entries, forecasts, subjects = [], {}, {}
        for pid in ids:
            if cohort:
                path = folder / patient_filename(pid)
            else:
                path = out if out.suffix == ".html" else out.with_suffix(".html")
            page = write_patient_page(store, pid, path, link=patient_filename(pid), seed=seed)
            entries.append(page.entry)
            forecasts[pid], subjects[pid] = next(iter(page.forecasts.values())), page.twin.subject
        if cohort:
            path = folder / "report.html"
            write_cohort_report(path, entries, forecasts=forecasts, subjects=subjects)
    console().print(f"report written: {path}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("oncotwin-demo"),
    quick: Annotated[
        bool, typer.Option("--quick", help="The first few patients of each data set (CI).")
    ] = False,
    db: Annotated[
        str | None, typer.Option("--db", help="Database URL (default: OUT/demo.db).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """The main job: ingest shipped real data, build twins, forecast, write report.html and summary.json."""
    import time

    from .demo import run_demo

    start = time.perf_counter()
    with progress_bars() as progress:
        result = run_demo(out, db=db, quick=quick, seed=seed, progress=progress)
    from rich.table import Table

    table = Table(
        "patient", "model", "last obs", "forecast at horizon (90% interval)", "calibration"
    )
    for p in result["patients"]:
        name, f = next(iter(p["forecast_at_horizon"].items()))
        last = p["last_observation"]
        ok = "ok" if p["diagnostics"]["converged"] else "[bold red]NOT CONVERGED[/]"
        table.add_row(p["patient"], p["model"], f"day {last['time']:g}: {last['value']:.4g} {p['unit']}",
                      f"day {f['time']:.0f}: {f['median']:.4g} ({f['lo90']:.4g}–{f['hi90']:.4g}) [{name}]", ok)  # fmt: skip
    con = console()
    con.print(table)
    con.print(
        f"report: {(out / 'report.html').resolve()}\nsummary: {(out / 'summary.json').resolve()}"
    )
    con.print(f"done in {time.perf_counter() - start:.0f} s")


app.command()(optimize)
app.command()(serve)
app.add_typer(audit_app, name="audit")
app.add_typer(users_app, name="users")
app.add_typer(trial_app, name="trial")
app.add_typer(spatial_app, name="spatial")


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="oncotwin")


if __name__ == "__main__":  # pragma: no cover
    main()
