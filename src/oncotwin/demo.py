"""`oncotwin demo`: the main job on shipped real data, end to end.

Ingests two shipped data sets into the database, builds a twin per patient (NUTS), forecasts
each under its current schedule and (for treated patients) stopping treatment, and writes a
cohort report linking patient pages, plus summary.json.

- vaghi2020-lung: untreated Lewis lung carcinoma volumes in mice (mm^3), Gompertz twins;
- sauer2023-xenografts: xenograft volumes (mm^3) before and after the start of treatment (or
  vehicle) at day 0, Claret tumour-growth-inhibition twins, forecast with treatment continued
  and stopped.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ConvergenceWarning
from .store import Store
from .workflow import build_cohort, ingest, write_patient_page


@dataclass(frozen=True)
class Cohort:
    """One data set of the demo and the model its twins use."""

    dataset: str
    model: str
    min_observations: int
    quick_patients: int


COHORTS = (
    Cohort("vaghi2020-lung", "gompertz", 6, 2),
    Cohort("sauer2023-xenografts", "claret", 6, 2),
)
SAMPLER = {"chains": 4, "warmup": 1000, "draws": 1000, "target_accept": 0.95}


def run_demo(
    out: Path,
    *,
    db: str | None = None,
    quick: bool = False,
    seed: int = 0,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> dict[str, Any]:
    """Run the main job; returns the summary written to ``out/summary.json``.

    Args:
        out: output folder (created).
        db: database URL; default a SQLite file ``out/demo.db``.
        quick: the first few patients of each data set (for CI).
        seed: random seed of calibrations and forecasts.
        progress: ``progress(label, total)`` returns a callback advanced per patient.
    """
    from .report import patient_filename, write_cohort_report

    out.mkdir(parents=True, exist_ok=True)
    (out / "patients").mkdir(exist_ok=True)
    sampler = SAMPLER
    entries, forecasts, subjects, summary = [], {}, {}, []
    with (
        warnings.catch_warnings(),
        Store(db or f"sqlite:///{(out / 'demo.db').resolve()}") as store,
    ):
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported in the pages and summary
        for cohort in COHORTS:
            ingest(store, cohort.dataset)
            rows = [r for r in store.patients() if r.source == f"dataset:{cohort.dataset}"]
            ids = [r.id for r in rows if r.n_observations >= cohort.min_observations]
            ids = ids[: cohort.quick_patients] if quick else ids
            tick = (
                progress(f"{cohort.dataset}: {cohort.model} twins", len(ids)) if progress else None
            )
            build_cohort(
                store, ids, model=cohort.model, method="nuts", seed=seed, progress=tick, **sampler
            )
            for pid in ids:
                link = f"patients/{patient_filename(pid)}"
                page = write_patient_page(
                    store, pid, out / link, link=link, seed=seed,
                    provenance={"data set": cohort.dataset, "database": store.url},
                )  # fmt: skip
                entries.append(page.entry)
                forecasts[pid] = next(iter(page.forecasts.values()))
                subjects[pid] = page.twin.subject
                summary.append(_summary(cohort, page.twin, page.record, page.forecasts, link))
    write_cohort_report(
        out / "report.html", entries, title="oncotwin demo: twins of shipped real cohorts",
        forecasts=forecasts, subjects=subjects,
        provenance={"oncotwin version": __version__, "seed": seed, "sampler": json.dumps(sampler),
                    "data sets": ", ".join(c.dataset for c in COHORTS)},
    )  # fmt: skip
    result = {"oncotwin_version": __version__, "seed": seed, "quick": quick, "patients": summary}
    (out / "summary.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _summary(
    cohort: Cohort, twin: Any, record: Any, forecasts: dict[str, Any], link: str
) -> dict[str, Any]:
    """One patient's entry of summary.json."""
    s = twin.subject
    at_horizon = {}
    for name, fc in forecasts.items():
        lo, hi = fc.interval(0.9)
        at_horizon[name] = {"time": float(fc.times[-1]), "median": float(fc.median[-1]),
                            "lo90": float(lo[-1]), "hi90": float(hi[-1])}  # fmt: skip
    return {
        "patient": s.id,
        "dataset": cohort.dataset,
        "model": record.model,
        "twin_version": record.version,
        "kind": s.kind,
        "unit": s.unit,
        "last_observation": {"time": s.last_time, "value": float(s.y[-1])},
        "forecast_at_horizon": at_horizon,
        "diagnostics": {
            "converged": record.converged,
            "problems": record.diagnostics.get("problems", []),
        },
        "report": link,
    }
