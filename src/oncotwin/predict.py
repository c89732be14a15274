"""The forecasting contract: history + target times -> median and interval per target row.

This is what `oncotwin predict` runs, and what benchmarks and external evaluation call:
calibrate every subject of the history (optionally with a prior learnt from a reference
cohort), choose or stack models by PSIS-LOO when asked, and forecast each target time under
each subject's recorded schedule (treatment rows after the last observation are the plan).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import PatientData
from .errors import ConvergenceWarning, DataError, ModelError
from .inference.calibrate import calibrate_subjects, subjects_from
from .inference.compare import GROWTH_CANDIDATES, TREATMENT_CANDIDATES, ModelComparison, compare
from .inference.covariates import LOG_BASELINE, covariate_levels, encode
from .inference.population import MIN_SUBJECTS, fit_population, subject_posteriors
from .inference.posterior import Posterior
from .inference.priors import Prior
from .inference.problem import SubjectData
from .models import get_model
from .observe import get_error_model
from .twin import DigitalTwin, stacked_twins

# Population fits behind --reference: enough draws for the predictive mean and covariance.
POPULATION_SAMPLER: dict[str, Any] = {"chains": 4, "draws": 250, "warmup": 250}
AUTO_SELECTION_METHOD = "laplace"  # candidates are screened with the fast path, see predict()
MIN_WEIGHT = 0.05  # models below this stacking weight are dropped from the stack


def read_targets(path: str | Path) -> pd.DataFrame:
    """Read a targets file: CSV with columns `id` and `time` (days), case-insensitive.

    Raises:
        DataError: missing file or column, empty file, non-numeric or missing time (names the
            file, row and column).
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError("file not found", file=str(path)) from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read CSV: {exc}", file=str(path)) from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    for col in ("id", "time"):
        if col not in raw.columns:
            raise DataError("missing required column", file=str(path), row=1, column=col)
    if raw.empty:
        raise DataError("no target rows", file=str(path))
    times = pd.to_numeric(raw["time"].str.strip(), errors="coerce")
    for i, (ident, t, text) in enumerate(zip(raw["id"], times, raw["time"], strict=True)):
        if not str(ident).strip():
            raise DataError("empty subject id", file=str(path), row=i + 2, column="id")
        if not np.isfinite(t):
            raise DataError(
                f"time {text!r} is not a number", file=str(path), row=i + 2, column="time"
            )
    return pd.DataFrame({"id": raw["id"].str.strip(), "time": times.astype(float)})


@dataclass
class PredictResult:
    """What :func:`predict` produced: the table, the twins, and how models were chosen."""

    table: pd.DataFrame
    twins: dict[str, DigitalTwin]
    weights: dict[str, float]
    comparison: ModelComparison | None = None
    warnings: list[str] = field(default_factory=list)


def population_priors(
    model: str,
    reference: Sequence[SubjectData],
    subjects: Sequence[SubjectData],
    seed: int,
    covariates: Mapping[str, Mapping[str, float]],
    error_model: str = "proportional",
) -> list[Prior]:
    """Each subject's prior from a population model fitted to the reference cohort.

    `covariates`: the coded covariates of every subject, and of each reference subject under
    ``reference:ID`` (:func:`cohort_covariates`).
    """
    ref_cov = {s.id: covariates[f"reference:{s.id}"] for s in reference}
    with warnings.catch_warnings():
        # a population that fails its diagnostics is still the best prior there is; the
        # failure is written into each prior's source
        warnings.simplefilter("ignore", ConvergenceWarning)
        pop = fit_population(model, reference, covariates=ref_cov, seed=seed,
                             error_model=error_model, source="reference population",
                             **POPULATION_SAMPLER)  # fmt: skip
    priors = [pop.prior(covariates[s.id], seed=seed) for s in subjects]
    if not pop.diagnostics.ok:
        note = " (population fit not converged)"
        priors = [dataclasses.replace(p, source=p.source + note) for p in priors]
    return priors


def pooled_posteriors(
    model: str,
    reference: Sequence[SubjectData],
    subjects: Sequence[SubjectData],
    seed: int,
    covariates: Mapping[str, Mapping[str, float]],
    error_model: str = "proportional",
) -> list[Posterior]:
    """Each subject's posterior from one population model fitted jointly to the reference
    cohort's data and every subject's history (see :func:`subject_posteriors`); `covariates`
    as for :func:`population_priors`."""
    # Reference subjects are renamed so that an id in both files names two subjects.
    cohort = [dataclasses.replace(s, id=f"reference:{s.id}") for s in reference]
    cohort += subjects
    cohort_cov = {s.id: covariates[s.id] for s in cohort}
    with warnings.catch_warnings():
        # each posterior repeats a failed diagnosis of its own draws in its forecasts
        warnings.simplefilter("ignore", ConvergenceWarning)
        pop = fit_population(model, cohort, covariates=cohort_cov, seed=seed,
                             error_model=error_model, source="pooled population",
                             **POPULATION_SAMPLER)  # fmt: skip
        return subject_posteriors(pop, subjects, cohort_cov, seed=seed)


def cohort_covariates(
    columns: Sequence[str],
    history: PatientData,
    subjects: Sequence[SubjectData],
    reference: PatientData | None,
    ref_subjects: Sequence[SubjectData],
    pool: bool,
) -> dict[str, dict[str, float]]:
    """Coded covariates of the subjects and (as ``reference:ID``) the reference subjects:
    ``log_baseline`` always, plus `columns` of the data (:mod:`oncotwin.inference.covariates`),
    with the categorical levels of the cohort the population is fitted to.

    Raises:
        DataError: a missing value, or a subject's level the fitted cohort does not have.
    """
    columns = [c for c in columns if c != LOG_BASELINE]
    own = history.covariates()
    ref = reference.covariates() if reference is not None else None
    fitted = ([own] if pool else []) + ([ref] if ref is not None else [])
    levels = covariate_levels(columns, pd.concat(fitted)) if columns else {}
    wanted = [LOG_BASELINE, *columns]
    out = encode(wanted, own, subjects, levels)
    if ref is not None:
        coded = encode(wanted, ref, ref_subjects, levels)
        out |= {f"reference:{k}": v for k, v in coded.items()}
    return out


def candidates_for(subjects: Sequence[SubjectData]) -> tuple[str, ...]:
    """Candidate models for `model="auto"`: growth models, or treatment models if treated."""
    treated = any(not s.schedule.is_empty for s in subjects)
    return TREATMENT_CANDIDATES if treated else GROWTH_CANDIDATES


def predict(
    history: Any,
    targets: pd.DataFrame,
    *,
    model: str = "auto",
    level: float = 0.9,
    reference: Any | None = None,
    pool: bool = False,
    covariates: Sequence[str] = (),
    seed: int = 0,
    method: str = "nuts",
    error_model: str = "proportional",
    candidates: Sequence[str] | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    targets_source: str = "targets",
    **calibration: Any,
) -> PredictResult:
    """Forecast each target row from each subject's history.

    Args:
        history: PatientData with the subjects' observations and treatment rows.
        targets: DataFrame with `id` and `time` (days).
        model: a model name, or "auto" to compare candidates by PSIS-LOO and stack them.
        level: central prediction interval level, in (0, 1).
        reference: optional PatientData of a reference cohort, used only to build priors.
        pool: calibrate all subjects jointly, with the reference cohort if given, in one
            population (mixed-effects) model fitted by NUTS, so that each subject borrows
            strength from the others (`method` then does not apply).
        covariates: covariate columns of the data (constant per subject) that the population
            behind `reference` or `pool` adjusts for, besides ``log_baseline`` (always used);
            categorical ones are coded as indicators (:mod:`oncotwin.inference.covariates`).
        seed: random seed (calibration and forecast draws).
        method: "nuts" or "laplace" for the final calibration. With "auto", candidates are
            screened by Laplace (PSIS-LOO on importance-resampled Laplace draws) and the
            models kept in the stack are recalibrated with `method`.
        error_model: residual error model of every calibration and population
            (:mod:`oncotwin.observe`): "proportional" (log-normal) or "combined" (additive +
            proportional: small sizes are measured with a larger relative error).
        candidates: models to compare for "auto" (default: :func:`candidates_for`).
        progress: ``progress(label, total)`` returns a callback advanced once per subject.
        targets_source: name of the targets file, for error messages.
        **calibration: passed to :func:`calibrate_subjects` (chains, draws, warmup, ...).

    Returns:
        :class:`PredictResult`; `table` has one row per target row: id, time, median, lo, hi.

    Raises:
        DataError: a target subject has no history.
        ModelError: unknown model or error model, bad level, too few subjects to pool, or
            covariates without a population (neither `reference` nor `pool`).
    """
    if not 0 < level < 1:
        raise ModelError(f"level must be in (0, 1), got {level}")
    get_error_model(error_model)  # an unknown name fails before any fit
    known = set(history.ids)
    for i, ident in enumerate(targets["id"]):
        if ident not in known:
            raise DataError(
                f"subject {ident!r} has no history", file=targets_source, row=i + 2, column="id"
            )
    ids = list(dict.fromkeys(targets["id"]))
    subjects = subjects_from(history, ids=ids)
    ref_subjects = subjects_from(reference) if reference is not None else None
    if pool and len(subjects) + len(ref_subjects or []) < MIN_SUBJECTS:
        raise ModelError(
            f"pooling needs at least {MIN_SUBJECTS} subjects across the history and the "
            f"reference cohort, got {len(subjects) + len(ref_subjects or [])}"
        )

    if covariates and reference is None and not pool:
        raise ModelError("covariates adjust a population: give a reference cohort or pool")
    coded = (
        cohort_covariates(covariates, history, subjects, reference, ref_subjects or [], pool)
        if reference is not None or pool
        else {}
    )
    priors: dict[str, list[Prior]] = {}
    pooled: dict[str, list[Posterior]] = {}

    def fit(name: str, how: str) -> list[Posterior]:
        if pool:
            if name not in pooled:
                tick = progress(f"{name} (pooled population)", 1) if progress else None
                pooled[name] = pooled_posteriors(
                    name, ref_subjects or [], subjects, seed, coded, error_model
                )
                if tick:
                    tick(1)
            return pooled[name]
        if ref_subjects and name not in priors:
            priors[name] = population_priors(name, ref_subjects, subjects, seed, coded, error_model)
        prior = priors.get(name)
        tick = progress(f"{name} ({how})", len(subjects)) if progress else None
        return calibrate_subjects(
            name, subjects, method=how, error_model=error_model, prior=prior, seed=seed,
            progress=tick, **calibration,
        )  # fmt: skip

    comparison = None
    if model == "auto":
        names = list(candidates or candidates_for(subjects))
        for n in names:
            get_model(n)
        screened = {n: fit(n, AUTO_SELECTION_METHOD) for n in names}
        comparison = compare(screened)
        kept = {n: w for n, w in comparison.weights.items() if w >= MIN_WEIGHT} or {
            comparison.best: 1.0
        }
        total = sum(kept.values())
        weights = {n: w / total for n, w in kept.items()}
        posteriors = {
            n: (screened[n] if method == AUTO_SELECTION_METHOD else fit(n, method)) for n in weights
        }
        twins = stacked_twins(subjects, posteriors, weights, history.version)
    else:
        get_model(model)
        weights = {model: 1.0}
        posts = fit(model, method)
        twins = [
            DigitalTwin(s, [p], data_version=history.version)
            for s, p in zip(subjects, posts, strict=True)
        ]

    rows = []
    warnings = []
    by_id = {t.subject.id: t for t in twins}
    for ident, group in targets.groupby("id", sort=False):
        fc = by_id[ident].forecast(group["time"].to_numpy(float), seed=seed)
        lo, hi = fc.interval(level)
        order = np.argsort(np.argsort(group["time"].to_numpy(float), kind="stable"), kind="stable")
        rows.append(
            pd.DataFrame(
                {
                    "id": ident,
                    "time": group["time"].to_numpy(float),
                    "median": fc.median[order],
                    "lo": lo[order],
                    "hi": hi[order],
                },
                index=group.index,
            )  # fmt: skip
        )
        if fc.warning:
            warnings.append(fc.warning)
    table = pd.concat(rows).loc[targets.index].reset_index(drop=True)
    return PredictResult(table, by_id, weights, comparison, warnings)
