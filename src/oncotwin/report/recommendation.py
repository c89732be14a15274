"""The recommendation section of the patient page, its Pareto plot and forecast comparison.

Shown in words first (the headline of :class:`~oncotwin.optimize.Recommendation`), then the
best schedules beside the standard of care with their forecast and constraint margins, then
the figures: efficacy against toxicity of every schedule considered (Pareto front), and the
forecast burden under the best schedule and the standard of care.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .format import pretty_unit
from .html import _badge, _e, _img, _now, _page, _table
from .plots import ALERT_COLOUR, SCHEDULE_COLOURS, _figure, use_log_scale

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..optimize import Recommendation

__all__ = [
    "pareto_figure",
    "recommendation_figure",
    "recommendation_report",
    "recommendation_section",
    "write_recommendation_report",
]


def _num(x: float) -> str:
    return f"{x:.3g}" if np.isfinite(x) else "n/a"


def pareto_figure(rec: Recommendation) -> Figure:
    """Risk-adjusted efficacy against toxicity of every schedule; the Pareto front joined."""
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    feas = [r for r in rec.results if r.feasible]
    bad = [r for r in rec.results if not r.feasible]
    if bad:
        ax.scatter([r.toxicity for r in bad], [r.risk_value for r in bad], marker="x",
                   color="#BBBBBB", s=18, label="violates a constraint", zorder=1)  # fmt: skip
    if feas:
        ax.scatter([r.toxicity for r in feas], [r.risk_value for r in feas], color="#7F7F7F",
                   s=14, label="meets every constraint", zorder=2)  # fmt: skip
    if rec.pareto:
        ax.plot([r.toxicity for r in rec.pareto], [r.risk_value for r in rec.pareto], "-o",
                color=SCHEDULE_COLOURS[0], ms=4, lw=1.5, label="Pareto front", zorder=3)  # fmt: skip
    soc = rec.standard
    ax.scatter([soc.toxicity], [soc.risk_value], marker="*", s=180, color=SCHEDULE_COLOURS[1],
               edgecolor="black", label="standard of care", zorder=5)  # fmt: skip
    if rec.best and not rec.best[0].candidate.standard:
        b = rec.best[0]
        ax.scatter([b.toxicity], [b.risk_value], marker="D", s=70, color=SCHEDULE_COLOURS[2],
                   edgecolor="black", label="recommended", zorder=6)  # fmt: skip
    ax.set_xlabel(rec.toxicity_label + " (lower is safer)")
    direction = "higher" if rec.objective.larger_is_better else "lower"
    ax.set_ylabel(f"{rec.objective.label}\n{rec.risk.spec()} ({direction} is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def recommendation_figure(rec: Recommendation) -> Figure | None:
    """Forecast burden (median, 90% band) under the best schedule and the standard of care;
    a log axis when the medians span more than two decades."""
    shown = [rec.standard] + ([rec.best[0]] if rec.best and not rec.best[0].candidate.standard
                              else [])  # fmt: skip
    if any(r.trajectories is None for r in shown):
        return None
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    medians = np.concatenate([np.nanmedian(r.trajectories.burden, axis=0) for r in shown
                              if r.trajectories is not None])  # fmt: skip
    for i, r in enumerate(shown):
        tr = r.trajectories
        assert tr is not None
        colour = SCHEDULE_COLOURS[1] if r.candidate.standard else SCHEDULE_COLOURS[2]
        lo, med, hi = np.nanquantile(tr.burden, [0.05, 0.5, 0.95], axis=0)
        label = ("standard of care: " if r.candidate.standard else "recommended: ") + (
            r.candidate.name
        )
        ax.fill_between(tr.times, lo, hi, color=colour, alpha=0.15, lw=0)
        ax.plot(tr.times, med, color=colour, lw=2, label=label, ls="-" if i else "--")
    if use_log_scale(medians):
        ax.set_yscale("log")
    ax.set_xlabel("day")
    unit = pretty_unit(rec.data_unit)
    ax.set_ylabel(f"tumour burden ({unit})" if unit else "tumour burden")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return fig


def _rows(rec: Recommendation) -> list[list[str]]:
    rows = []
    listed = [*rec.best]
    if not any(r.candidate.standard for r in listed):
        listed.append(rec.standard)
    for r in listed:
        lo, hi = r.interval()
        margins = "; ".join(c.text() for c in r.checks)
        role = "standard of care" if r.candidate.standard else "candidate"
        rows.append([
            _e(r.candidate.name), _e(role), _e(_num(r.risk_value)),
            _e(f"{_num(r.median)} ({_num(lo)} to {_num(hi)})"), _e(_num(r.toxicity)),
            _badge(r.feasible, "all met", "VIOLATED") + f'<span class="sub"> {_e(margins)}</span>',
        ])  # fmt: skip
    return rows


def recommendation_section(rec: Recommendation) -> str:
    """The ``<section id="recommendation">`` of a patient page."""
    confident = rec.confident or rec.standard_is_best
    verdict = (
        '<p class="big">' + _e(rec.headline()) + "</p>"
        if confident
        else f'<p class="big" style="color:{ALERT_COLOUR}">' + _e(rec.headline()) + "</p>"
    )
    parts = ['<section id="recommendation"><h2>Treatment recommendation</h2>', verdict]
    if rec.warning:
        parts.append(
            f'<p style="color:{ALERT_COLOUR}"><strong>Calibration did not converge:</strong> '
            f"{_e(rec.warning)}. Not for clinical decisions.</p>"
        )
    parts.append(
        f'<p class="sub">{_e(rec.modality.capitalize())}: optimising {_e(rec.objective.label)} '
        f"({_e(rec.risk.label)}) over {rec.n_draws} posterior draws (seed {rec.seed}); "
        f"{len(rec.results)} schedules compared on the same draws. A schedule is recommended "
        f"only if it beats the standard of care in at least {100 * rec.threshold:.0f}% of "
        "draws.</p>"
    )
    parts.append(
        _table(
            ["Schedule", "Role", f"{rec.risk.spec()} value", "Median (90% interval)",
             rec.toxicity_label, "Constraints and margins"],
            _rows(rec), caption=f"Best schedules and the standard of care ({rec.unit})",
            numeric=(2, 3, 4),
        )
    )  # fmt: skip
    fig = pareto_figure(rec)
    alt = (
        f"Scatter of {len(rec.results)} schedules: {rec.toxicity_label} on the x axis against "
        f"the {rec.risk.spec()} of {rec.objective.label} on the y axis, with the Pareto front, "
        "the standard of care (star) and the recommended schedule (diamond)."
    )
    parts.append(f"<figure>{_img(fig, alt)}<figcaption>Efficacy against toxicity of every "
                 "schedule considered; the line joins the schedules no other beats on both."
                 "</figcaption></figure>")  # fmt: skip
    fan = recommendation_figure(rec)
    if fan is not None:
        parts.append(
            f"<figure>{_img(fan, 'Forecast tumour burden under the recommended schedule and the standard of care, medians and 90% bands.')}"
            "<figcaption>Forecast burden: median and 90% band of the model value under each "
            "schedule.</figcaption></figure>"
        )
    if rec.notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in rec.notes)
        parts.append(f"<p>Assumptions behind this recommendation:</p><ul>{items}</ul>")
    parts.append("</section>")
    return "".join(parts)


def recommendation_report(rec: Recommendation, title: str | None = None) -> str:
    """A self-contained page with the recommendation section only."""
    title = title or f"Treatment recommendation — patient {rec.patient}"
    body = (
        f'<main><header><h1>{_e(title)}</h1><p class="sub">Generated {_e(_now())}</p></header>'
        f"{recommendation_section(rec)}<footer>A research tool; recommendations support, and do "
        "not replace, clinical judgement.</footer></main>"
    )
    return _page(title, body)


def write_recommendation_report(path: str | Path, rec: Recommendation, **kwargs: Any) -> Path:
    """Write :func:`recommendation_report` to `path` (UTF-8)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(recommendation_report(rec, **kwargs), encoding="utf-8")
    return out
