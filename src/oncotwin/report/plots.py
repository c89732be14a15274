"""Figures of the reports. matplotlib is imported lazily, and only its object API is used
(``matplotlib.figure.Figure`` rendered by Agg), so no global pyplot state and no GUI backend.

Every function returns a :class:`matplotlib.figure.Figure`; :func:`figure_png` renders one.
Treatment shading carries a gid (``"treatment:<agent>"`` for on-periods and infusions,
``"dose:<agent>"`` for bolus ticks) so that tests and tools can find it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..units import KIND_LABELS
from .format import fmt_day, fmt_num, pretty_unit

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..inference.posterior import Posterior
    from ..inference.problem import SubjectData
    from ..schedule import Schedule
    from ..twin import Forecast

# Okabe-Ito palette: distinguishable with the common colour-vision deficiencies.
SCHEDULE_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
AGENT_COLOURS = ("#7F7F7F", "#E69F00", "#CC79A7", "#56B4E9", "#009E73", "#F0E442")
OBSERVED_COLOUR = "#111111"
ALERT_COLOUR = "#B00020"
LOG_DECADES = 2.0  # switch to a log axis when the data span more than this many decades

__all__ = [
    "cohort_figure",
    "figure_png",
    "forecast_figure",
    "posterior_figure",
    "quantity_label",
    "use_log_scale",
]


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def quantity_label(kind: str, unit: str, *, log: bool = False) -> str:
    """Axis label of an observed quantity: "Tumour volume (mm³)", "… (mm³, log scale)"."""
    label = KIND_LABELS.get(kind, kind)
    label = label[:1].upper() + label[1:]
    parts = [p for p in (pretty_unit(unit), "log scale" if log else "") if p]
    return f"{label} ({', '.join(parts)})" if parts else label


def use_log_scale(values: Sequence[float] | np.ndarray) -> bool:
    """True when the positive finite `values` span more than two decades."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    return bool(v.size and np.log10(v.max() / v.min()) > LOG_DECADES)


def _agent_colours(schedules: Sequence[Schedule]) -> dict[str, str]:
    agents = sorted({a for s in schedules for a in s.agents})
    return {a: AGENT_COLOURS[i % len(AGENT_COLOURS)] for i, a in enumerate(agents)}


def _draw_treatment(
    ax: Axes, schedule: Schedule, xlim: tuple[float, float], colours: Mapping[str, str]
) -> None:
    """On-periods and infusions as shaded spans; bolus doses as ticks along the bottom."""
    lo, hi = xlim
    short = 0.004 * (hi - lo)  # narrower than this would be invisible: draw it as a tick
    ticks: dict[str, list[float]] = {}
    labelled: set[str] = set()
    for agent, start, end in schedule.periods():
        if start > hi or end < lo:
            continue
        colour = colours.get(agent, AGENT_COLOURS[0])
        if end - start <= short:
            ticks.setdefault(agent, []).append(start)
            continue
        label = f"{agent}: on" if agent not in labelled else None
        labelled.add(agent)
        span = ax.axvspan(
            max(start, lo), min(end, hi), color=colour, alpha=0.16, lw=0, zorder=0, label=label
        )
        span.set_gid(f"treatment:{agent}")
    for agent, times in ticks.items():
        lines = ax.vlines(
            times,
            0,
            0.07,
            transform=ax.get_xaxis_transform(),
            colors=colours.get(agent, AGENT_COLOURS[0]),
            lw=2.0,
            zorder=3,
            label=f"{agent}: dose",
        )
        lines.set_gid(f"dose:{agent}")


def _draw_observed(ax: Axes, subject: SubjectData, *, size: float = 28) -> None:
    t, y, cens = subject.times, subject.y, np.asarray(subject.censored, bool)
    if np.any(~cens):
        ax.scatter(t[~cens], y[~cens], s=size, color=OBSERVED_COLOUR, zorder=5, label="observed")
    if np.any(cens):
        ax.scatter(
            t[cens],
            y[cens],
            s=size * 1.8,
            marker="v",
            facecolors="white",  # open, and visible on top of the forecast band
            zorder=6,
            edgecolors=OBSERVED_COLOUR,
            linewidths=1.4,
            label="below detection limit (drawn at the limit)",
        )


def _draw_fan(
    ax: Axes, forecast: Forecast, colour: str, levels: Sequence[float], *, lw: float = 2.0
) -> None:
    alphas = {0: 0.38, 1: 0.18, 2: 0.09}
    for i, level in enumerate(sorted(levels)):
        lo, hi = forecast.interval(level)
        ax.fill_between(
            forecast.times,
            lo,
            hi,
            color=colour,
            alpha=alphas.get(i, 0.08),
            lw=0,
            zorder=1,
            label=f"{round(100 * level)}% prediction interval",
        )
    ax.plot(forecast.times, forecast.median, color=colour, lw=lw, zorder=4, label="median forecast")


def _mark_today(ax: Axes, today: float, *, text: bool = True) -> None:
    ax.axvline(today, color="#333333", ls="--", lw=1.2, zorder=4)
    if text:
        ax.annotate(
            f"last observation\n({fmt_day(today)})",
            xy=(today, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(-4, -4),
            textcoords="offset points",
            ha="right",
            va="top",
            fontsize=8.5,
            color="#333333",
        )


def _fan_values(forecasts: Sequence[Forecast], subject: SubjectData | None) -> np.ndarray:
    parts = [f.median for f in forecasts]
    if subject is not None:
        parts.append(np.asarray(subject.y)[~np.asarray(subject.censored, bool)])
    return np.concatenate([np.asarray(p, float).ravel() for p in parts])


def forecast_figure(
    forecasts: Mapping[str, Forecast],
    subject: SubjectData | None = None,
    *,
    levels: Sequence[float] = (0.5, 0.9),
    log: bool | None = None,
    warning: str | None = None,
) -> Figure:
    """Fan chart: one panel per schedule, sharing axes.

    Args:
        forecasts: schedule name -> forecast (same subject).
        subject: the subject's observations (points; censored values as open triangles at the
            detection limit) and last observation time ("today").
        levels: prediction-interval levels of the bands (0-1).
        log: log y axis; default: when the data and medians span more than two decades.
        warning: when set (a calibration did not converge), every panel says so in red.

    Returns:
        The figure; treatment spans carry gid "treatment:<agent>", dose ticks "dose:<agent>".
    """
    names = list(forecasts)
    fcs = [forecasts[n] for n in names]
    if not fcs:
        raise ValueError("forecast_figure needs at least one forecast")
    n = len(fcs)
    # Up to three schedules stack vertically on one time axis, wide enough to read on a
    # screen at a tumour board; more go two to a row.
    ncols = 1 if n <= 3 else 2
    nrows = math.ceil(n / ncols)
    width = 10.0 if ncols == 1 else 6.2 * ncols
    fig = _figure(width, (4.6 if n == 1 else 3.3) * nrows + 0.8)
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    log = use_log_scale(_fan_values(fcs, subject)) if log is None else log
    t_all = np.concatenate([f.times for f in fcs] + ([subject.times] if subject else []))
    pad = 0.01 * (t_all.max() - t_all.min() or 1.0)
    xlim = (float(t_all.min() - pad), float(t_all.max() + pad))
    colours = _agent_colours([f.schedule for f in fcs])
    kind, unit = fcs[0].kind, fcs[0].unit
    for i, (name, fc, ax) in enumerate(zip(names, fcs, axes, strict=False)):
        colour = SCHEDULE_COLOURS[i % len(SCHEDULE_COLOURS)]
        _draw_treatment(ax, fc.schedule, xlim, colours)
        _draw_fan(ax, fc, colour, levels)
        if subject is not None:
            _draw_observed(ax, subject)
            _mark_today(ax, subject.last_time)
        ax.set_title(name, loc="left", fontsize=12, fontweight="bold", color=colour)
        if warning:
            ax.text(
                0.5,
                0.5,
                "CALIBRATION DID NOT CONVERGE\nnot for clinical decisions",
                transform=ax.transAxes,
                ha="center",
                va="center",
                fontsize=13,
                fontweight="bold",
                color=ALERT_COLOUR,
                alpha=0.55,
                zorder=6,
            )
            for spine in ax.spines.values():
                spine.set_edgecolor(ALERT_COLOUR)
                spine.set_linewidth(2)
        ax.set_xlim(*xlim)
        ax.grid(True, color="#dddddd", lw=0.6, zorder=0)
        ax.set_axisbelow(True)
        if i % ncols == 0:
            ax.set_ylabel(quantity_label(kind, unit, log=log))
        if i // ncols == nrows - 1 or i + ncols >= n:
            ax.set_xlabel("Time (days)")
            ax.xaxis.set_tick_params(labelbottom=True)
    if log:
        axes[0].set_yscale("log")
    else:
        axes[0].set_ylim(bottom=0)
    axes[0].yaxis.set_major_formatter(_tick_formatter())
    _figure_legend(fig, list(axes[:n]))
    return fig


def _figure_legend(fig: Figure, axes: Sequence[Axes]) -> None:
    """One legend under the panels; the first panel's fan stands for every panel's."""
    seen: dict[str, Any] = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        for h, lab in zip(handles, labels, strict=True):
            seen.setdefault(lab, h)
    from matplotlib.lines import Line2D

    seen["last observation (today)"] = Line2D([], [], color="#333333", ls="--", lw=1.2)
    order = ["median forecast"] + [k for k in seen if "interval" in k]
    order += [k for k in seen if k.startswith("observed") or k.startswith("below")]
    order += ["last observation (today)"]
    order += [k for k in seen if k not in order]
    labels = [k for k in order if k in seen]
    fig.legend(
        [seen[k] for k in labels],
        labels,
        loc="outside lower center",
        ncols=min(4, len(labels)),
        frameon=False,
        fontsize=9,
    )


def posterior_figure(posterior: Posterior, *, data_unit: str | None = None) -> Figure:
    """Small histograms of the posterior draws of each parameter, with the median and 90%
    credible interval marked and the prior (light grey outline) for comparison."""
    from matplotlib.ticker import MaxNLocator

    specs = _param_specs(posterior)
    names = [n for n in posterior.names if n in posterior.params] or list(posterior.params)
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = _figure(2.6 * ncols, 2.1 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes, names, strict=False):
        d = np.asarray(posterior.params[name], float).ravel()
        d = d[np.isfinite(d)]
        if d.size == 0:
            ax.set_title(name)
            continue
        q05, q50, q95 = np.quantile(d, [0.05, 0.5, 0.95])
        lo, hi = np.quantile(d, [0.002, 0.998])
        span = hi - lo or abs(q50) or 1.0
        rng_x = (lo - 0.15 * span, hi + 0.15 * span)
        ax.hist(d, bins=40, range=rng_x, density=True, color="#0072B2", alpha=0.75)
        ax.axvspan(q05, q95, color="#0072B2", alpha=0.10, lw=0)
        ax.axvline(q50, color="#111111", lw=1.3)
        grid = np.linspace(*rng_x, 200)
        prior = _prior_density(posterior, name, grid)
        if prior is not None:
            ax.plot(grid, prior, color="#777777", lw=1.2)
        spec = specs.get(name)
        unit = pretty_unit(spec.unit, data_unit) if spec is not None else ""
        ax.set_title(name, fontsize=10, loc="left")
        ax.set_xlabel(unit or "dimensionless", fontsize=8)
        ax.set_yticks([])
        ax.tick_params(labelsize=8)
        ax.set_xlim(*rng_x)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.xaxis.set_major_formatter(_tick_formatter())
    fig.suptitle(
        "Posterior draws (blue bars), 90% credible interval (shaded), median (black line), prior (grey curve)",
        fontsize=9,
    )
    return fig


def _param_specs(posterior: Posterior) -> dict[str, Any]:
    from ..errors import ModelError
    from ..models import get_model
    from ..observe import get_error_model

    specs: dict[str, Any] = {}
    try:
        specs.update({p.name: p for p in get_model(posterior.model).params})
    except ModelError:
        pass
    try:
        specs.update({p.name: p for p in get_error_model(posterior.error_model).params})
    except ModelError:
        pass
    return specs


def _prior_density(posterior: Posterior, name: str, grid: np.ndarray) -> np.ndarray | None:
    """Prior density of one parameter on its natural scale at `grid` (None if unavailable).

    The prior is Normal on the unconstrained value z(x); its density in x is
    N(z(x)) |dz/dx| (change of variables), evaluated numerically."""
    prior = posterior.prior
    spec = _param_specs(posterior).get(name)
    if spec is None or name not in prior.names:
        return None
    i = list(prior.names).index(name)
    with np.errstate(all="ignore"):
        z = np.asarray(spec.unconstrain(grid, posterior.ref), float)
        dz = np.abs(np.gradient(z, grid))
        pdf = np.exp(-0.5 * ((z - prior.loc[i]) / prior.scale[i]) ** 2) / (
            prior.scale[i] * math.sqrt(2 * math.pi)
        )
        out = pdf * dz
    out[~np.isfinite(out)] = np.nan
    return out


def cohort_figure(
    forecasts: Mapping[str, Forecast],
    subjects: Mapping[str, SubjectData] | None = None,
    *,
    last: Mapping[str, tuple[float, float]] | None = None,
    level: float = 0.9,
    max_panels: int = 24,
) -> Figure:
    """Small multiples: one mini fan chart per patient (at most `max_panels`), each on its own
    y scale; panels of patients whose calibration did not converge are framed in red.

    Args:
        forecasts: patient id -> forecast.
        subjects: patient id -> observations (all points drawn).
        last: patient id -> (time in days, value) of the last observation, drawn for patients
            without `subjects`.
        level: interval level of the band (0-1).
        max_panels: at most this many patients are drawn.
    """
    ids = list(forecasts)[:max_panels]
    if not ids:
        raise ValueError("cohort_figure needs at least one forecast")
    ncols = min(4, len(ids))
    nrows = math.ceil(len(ids) / ncols)
    fig = _figure(2.9 * ncols, 2.3 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(ids) :]:
        ax.set_visible(False)
    for ax, pid in zip(axes, ids, strict=False):
        fc = forecasts[pid]
        subject = (subjects or {}).get(pid)
        _draw_fan(ax, fc, SCHEDULE_COLOURS[0], (level,), lw=1.5)
        if subject is not None:
            _draw_observed(ax, subject, size=10)
            _mark_today(ax, subject.last_time, text=False)
        elif last and pid in last:
            t_last, y_last = last[pid]
            ax.scatter([t_last], [y_last], s=12, color=OBSERVED_COLOUR, zorder=5)
            _mark_today(ax, t_last, text=False)
        log = use_log_scale(_fan_values([fc], subject))
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        title = pid + (" (log)" if log else "")
        bad = bool(fc.warning)
        ax.set_title(
            title + ("  NOT CONVERGED" if bad else ""),
            fontsize=9,
            loc="left",
            color=ALERT_COLOUR if bad else "#111111",
            fontweight="bold" if bad else "normal",
        )
        if bad:
            for spine in ax.spines.values():
                spine.set_edgecolor(ALERT_COLOUR)
                spine.set_linewidth(2)
        ax.tick_params(labelsize=7)
        ax.yaxis.set_major_formatter(_tick_formatter())
    fc0 = forecasts[ids[0]]
    fig.supxlabel("Time (days)", fontsize=9)
    fig.supylabel(quantity_label(fc0.kind, fc0.unit), fontsize=9)
    return fig


def _tick_formatter() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: fmt_num(v, 3, trim=True))
