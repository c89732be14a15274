"""The cohort page: every patient's forecast at a glance, linking to the patient pages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from .format import (
    MISSING,
    fmt_day,
    fmt_interval,
    fmt_level,
    fmt_num,
    fmt_pct,
    with_unit,
)
from .html import (
    HEADLINE_LEVEL,
    _badge,
    _comparison_html,
    _e,
    _img,
    _label,
    _now,
    _page,
    _safe_href,
    _table,
    _value,
    patient_filename,
)

if TYPE_CHECKING:
    from ..inference.compare import ModelComparison
    from ..inference.problem import SubjectData
    from ..twin import DigitalTwin, Forecast

__all__ = ["CohortEntry", "cohort_report", "write_cohort_report"]


@dataclass(frozen=True)
class CohortEntry:
    """One row of the cohort page.

    Attributes:
        patient: patient id.
        model: model name(s), e.g. "gompertz" or "gompertz 70% + logistic 30%".
        last_time, last_value: last observation, days and data units.
        horizon: forecast time, days.
        median, lo, hi: forecast median and interval bounds at `horizon`, data units.
        level: interval level (0-1).
        converged: whether every posterior behind the forecast passed its diagnostics.
        warning: the calibration warning, if any.
        link: href of the patient's page (relative to the cohort page).
        kind, unit: observed quantity and its unit.
        last_censored: the last observation was below the detection limit.
    """

    patient: str
    model: str
    last_time: float
    last_value: float
    horizon: float
    median: float
    lo: float
    hi: float
    level: float = HEADLINE_LEVEL
    converged: bool = True
    warning: str | None = None
    link: str | None = None
    kind: str = "volume"
    unit: str = "mm3"
    last_censored: bool = False

    @classmethod
    def from_forecast(
        cls,
        twin: DigitalTwin,
        forecast: Forecast,
        *,
        level: float = HEADLINE_LEVEL,
        link: str | None = None,
    ) -> CohortEntry:
        """The entry of `twin`'s patient, read at the last time of `forecast`."""
        s = twin.subject
        lo, hi = forecast.interval(level)
        models = forecast.provenance.get("models") or {
            p.model: float(w) for p, w in zip(twin.posteriors, twin.weights, strict=True)
        }
        model = (
            next(iter(models))
            if len(models) == 1
            else " + ".join(f"{m} {fmt_pct(w)}" for m, w in models.items())
        )
        warning = forecast.warning or twin.warning
        return cls(
            patient=s.id,
            model=model,
            last_time=s.last_time,
            last_value=float(s.y[-1]),
            horizon=float(forecast.times[-1]),
            median=float(forecast.median[-1]),
            lo=float(lo[-1]),
            hi=float(hi[-1]),
            level=level,
            converged=warning is None,
            warning=warning,
            link=link if link is not None else patient_filename(s.id),
            kind=s.kind,
            unit=s.unit,
            last_censored=bool(s.censored[-1]),
        )


_COHORT_CAPTION = (
    "Each panel: measurements (points; only the last one when the series was not given), "
    "median forecast (line) and 90% prediction interval (band); dashed line: last measurement. "
    "Each panel has its own scale. Red frame: calibration did not converge."
)


def cohort_report(
    entries: Sequence[CohortEntry],
    *,
    title: str = "Cohort forecast report",
    links: Mapping[str, str] | None = None,
    comparison: ModelComparison | None = None,
    provenance: Mapping[str, Any] | None = None,
    forecasts: Mapping[str, Forecast] | None = None,
    subjects: Mapping[str, SubjectData] | None = None,
) -> str:
    """A cohort's page as self-contained HTML: counts, a table of patients linking to their
    pages, small multiples of their forecasts, the model comparison and provenance.

    Args:
        entries: one row per patient.
        title: page title.
        links: patient id -> href of the patient's page (overrides `entry.link`).
        comparison: cohort model comparison (optional).
        provenance: items shown in the provenance table.
        forecasts: patient id -> forecast, for the small-multiples figure (first 24 patients).
        subjects: patient id -> observations, drawn on the small multiples.
    """
    generated = _now()
    n = len(entries)
    failed = [en for en in entries if not en.converged]
    parts: list[str] = []
    if failed:
        ids = ", ".join(en.patient for en in failed)
        parts.append(
            '<div class="alarm" role="alert" id="calibration-warning">'
            f'<p class="big">⚠ Calibration did not converge for {len(failed)} of {n} patients: '
            f"{_e(ids)}.</p><p>Their forecasts must not be used for clinical decisions; they are "
            "marked in red below.</p></div>"
        )
    parts.append(f"<main><header><h1>{_e(title)}</h1>")
    parts.append(
        f'<p class="sub">Report generated {_e(generated)} · oncotwin {_e(__version__)}</p>'
    )
    parts.append("</header>")
    parts.append(
        '<section id="summary" aria-label="Summary"><div class="cards">'
        f'<div class="card"><span class="k">{n}</span>patients</div>'
        f'<div class="card ok"><span class="k">{n - len(failed)}</span>converged</div>'
        f'<div class="card{" bad" if failed else ""}"><span class="k">{len(failed)}</span>'
        "not converged</div></div></section>"
    )
    rows, classes = [], []
    for en in entries:
        href = (links or {}).get(en.patient, en.link)
        name = _e(en.patient)
        cell = f'<a href="{_safe_href(href)}">{name}</a>' if href else name
        last = (
            f"&lt; {_e(with_unit(fmt_num(en.last_value), en.unit))}"
            if en.last_censored
            else _e(with_unit(fmt_num(en.last_value), en.unit))
        )
        change = (
            f"{fmt_num(en.median / en.last_value, 2)}×"
            if en.last_value > 0 and not en.last_censored
            else MISSING
        )
        status = _badge(en.converged)
        if en.warning:
            status += f'<details><summary>why</summary><span class="sub">{_e(en.warning)}</span></details>'
        rows.append(
            [
                cell,
                _e(en.model),
                f"{last}<br><span class='sub'>{_e(fmt_day(en.last_time))}</span>",
                _e(fmt_day(en.horizon)),
                _e(with_unit(fmt_num(en.median), en.unit)),
                _e(f"{fmt_level(en.level)}: {fmt_interval(en.lo, en.hi)}"),
                _e(change),
                status,
            ]
        )
        classes.append("" if en.converged else "bad")
    parts.append('<section id="patients"><h2>Patients</h2>')
    parts.append(
        _table(
            [
                "Patient",
                "Model",
                "Last measurement",
                "Forecast at",
                "Median forecast",
                "Prediction interval",
                "Change vs last",
                "Calibration",
            ],
            rows,
            caption="One row per patient; follow the id to the patient's full report",
            numeric=(2, 3, 4, 5, 6),
            row_classes=classes,
        )
    )
    parts.append("</section>")
    if forecasts:
        from .plots import cohort_figure

        shown = list(forecasts)[:24]
        last_obs = {en.patient: (en.last_time, en.last_value) for en in entries}
        fig = cohort_figure(forecasts, subjects, last=last_obs)
        more = f" (first 24 of {len(forecasts)})" if len(forecasts) > 24 else ""
        alt = (
            f"Small multiples{more}: one mini fan chart per patient ({', '.join(shown)}), showing "
            "measurements, the median forecast and its 90% prediction interval. "
            + (f"Not converged: {', '.join(en.patient for en in failed)}." if failed else "")
        )
        parts.append(
            '<section id="overview"><h2>Forecasts at a glance</h2>'
            f"<figure>{_img(fig, alt, dpi=100)}<figcaption>"
            f"{_e(_COHORT_CAPTION + more)}"
            "</figcaption></figure></section>"
        )
    if comparison is not None:
        parts.append(_comparison_html(comparison))
    prov_rows = [["Report generated", _e(generated)], ["oncotwin version", _e(__version__)]]
    prov_rows += [[_e(_label(k)), _value(k, v)] for k, v in (provenance or {}).items()]
    parts.append(
        '<section id="provenance"><h2>Provenance</h2>'
        + _table(["Item", "Value"], prov_rows, caption="How this report was made")
        + "</section>"
    )
    parts.append(
        f"<footer>oncotwin {_e(__version__)} · a research tool; forecasts support, and do not "
        "replace, clinical judgement.</footer></main>"
    )
    return _page(title, "\n".join(parts))


def write_cohort_report(path: str | Path, entries: Sequence[CohortEntry], **kwargs: Any) -> Path:
    """Write :func:`cohort_report` to `path` (UTF-8); `kwargs` as for :func:`cohort_report`."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(cohort_report(entries, **kwargs), encoding="utf-8")
    return out
