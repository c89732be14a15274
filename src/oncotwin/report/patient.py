"""The patient page: what a tumour board needs about one patient's twin, on one page."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..inference.posterior import ESS_MIN_PER_CHAIN, KHAT_MAX, RHAT_MAX
from ..units import KIND_LABELS
from .format import (
    MISSING,
    fmt_change,
    fmt_day,
    fmt_days,
    fmt_int,
    fmt_interval,
    fmt_level,
    fmt_num,
    fmt_pct,
    pretty_unit,
    with_unit,
)
from .html import (
    HEADLINE_LEVEL,
    _badge,
    _comparison_html,
    _e,
    _img,
    _label,
    _model_attr,
    _model_title,
    _now,
    _page,
    _records_table,
    _table,
    _value,
)

if TYPE_CHECKING:
    from ..inference.compare import ModelComparison
    from ..inference.posterior import Posterior
    from ..optimize import Recommendation
    from ..schedule import Schedule
    from ..twin import DigitalTwin, Forecast

__all__ = ["patient_report", "write_patient_report"]


# ---- what a schedule is, in words ----------------------------------------------------------
def _doses_in_words(doses: Sequence[Any]) -> list[str]:
    groups: dict[tuple[str, float, str, float], list[float]] = {}
    for d in doses:
        groups.setdefault((d.agent, d.amount, d.unit, d.duration), []).append(d.time)
    out = []
    for (agent, amount, unit, duration), times in groups.items():
        how = f"{agent} {fmt_num(amount, 4, trim=True)} {pretty_unit(unit)}".rstrip()
        if duration > 0:
            how += (
                f" over {fmt_days(duration)}"
                if duration >= 1
                else f" over {fmt_num(duration * 24)} h"
            )
        gaps = np.diff(times)
        if len(times) == 1:
            when = f"on {fmt_day(times[0])}"
        elif len(times) > 4 and np.allclose(gaps, gaps[0]):
            when = (
                f"× {len(times)}, every {fmt_days(gaps[0])} from {fmt_day(times[0])} "
                f"to {fmt_day(times[-1])}"
            )
        else:
            days = ", ".join(fmt_day(t).removeprefix("day ") for t in times)
            when = f"× {len(times)} on days {days}"
        out.append(f"{how} {when}")
    return out


def _periods_in_words(schedule: Schedule, after: float | None = None) -> list[str]:
    out = []
    for agent, start, end in schedule.periods():
        if end <= start:  # boluses are described with the doses
            continue
        if any(d.agent == agent and d.time == start and d.duration > 0 for d in schedule.doses):
            continue  # an infusion, described with the doses
        if after is not None and end <= after:
            continue
        if math.isinf(end):
            out.append(f"{agent} on from {fmt_day(start)} (no planned end)")
        else:
            out.append(f"{agent} on from {fmt_day(start)} to {fmt_day(end)}")
    return out


def _treatment_so_far(schedule: Schedule, today: float) -> str:
    past = schedule.until(today)
    parts = _doses_in_words(past.doses) + [
        p.replace("(no planned end)", "(ongoing)") for p in _periods_in_words(past)
    ]
    return "; ".join(parts) if parts else "none recorded"


def _plan_after(schedule: Schedule, today: float) -> str:
    doses = [d for d in schedule.doses if d.time > today]
    parts = _doses_in_words(doses) + _periods_in_words(schedule, after=today)
    return "; ".join(parts) if parts else "no further treatment"


# ---- patient page --------------------------------------------------------------------------
def _problems(twin: DigitalTwin, forecasts: Mapping[str, Forecast]) -> list[str]:
    out = []
    for p in twin.posteriors:
        for problem in p.diagnostics.problems():
            out.append(f"{_model_title(p.model)} model: {problem}")
    known = {p.warning for p in twin.posteriors if p.warning} | {twin.warning}
    for name, f in forecasts.items():
        if f.warning and f.warning not in known:
            out.append(f"forecast “{name}”: {f.warning}")
            known.add(f.warning)
    return out


def _alarm(problems: Sequence[str]) -> str:
    if not problems:
        return ""
    items = "".join(f"<li>{_e(p)}</li>" for p in problems)
    return (
        '<div class="alarm" role="alert" id="calibration-warning">'
        '<p class="big">⚠ CALIBRATION DID NOT CONVERGE — this forecast must not be used for '
        "clinical decisions.</p>"
        "<p>The statistical fit of the model to this patient's data failed its checks, so the "
        "forecasts and intervals below may be wrong. They are shown for audit only.</p>"
        f"<p>What went wrong:</p><ul>{items}</ul>"
        "<p>What to do: recalibrate (more warm-up and draws, or the full sampler instead of the "
        "fast approximation) and check the data for errors.</p></div>"
    )


def _headline(twin: DigitalTwin, forecasts: Mapping[str, Forecast], level: float) -> str:
    from .plots import SCHEDULE_COLOURS

    s = twin.subject
    label = KIND_LABELS.get(s.kind, s.kind)
    last_t, last_y = s.last_time, float(s.y[-1])
    last_cens = bool(s.censored[-1])
    now = (
        f"below the detection limit (&lt; {_e(with_unit(fmt_num(last_y), s.unit))}) at {fmt_day(last_t)}"
        if last_cens
        else f"{_e(with_unit(fmt_num(last_y), s.unit))} at {fmt_day(last_t)}"
    )
    items = []
    for i, (name, f) in enumerate(forecasts.items()):
        t = float(f.times[-1])
        med = float(f.median[-1])
        lo, hi = (float(v[-1]) for v in f.interval(level))
        extra = []
        if t > last_t:
            extra.append(f"{fmt_days(t - last_t)} after the last measurement")
        if not last_cens and last_y > 0 and math.isfinite(med):
            extra.append(f"{fmt_change(med / last_y)} the last measurement")
            lat = np.asarray(f.latent[:, -1], float)
            lat = lat[np.isfinite(lat)]
            if lat.size:
                extra.append(
                    f"chance the {label} is higher than at the last measurement: "
                    f"{fmt_pct(np.mean(lat > last_y), estimate=True)}"
                )
        extra.append(f"plan after {fmt_day(last_t)}: {_plan_after(f.schedule, last_t)}")
        warn = (
            " " + _badge(False, bad="UNRELIABLE: calibration did not converge") if f.warning else ""
        )
        colour = SCHEDULE_COLOURS[i % len(SCHEDULE_COLOURS)]
        items.append(
            f'<li style="--c:{colour}">Forecast at {fmt_day(t)} (<strong>{_e(name)}</strong>): '
            f'<span class="num">{_e(with_unit(fmt_num(med), f.unit))}</span> '
            f"({fmt_level(level)} interval {_e(fmt_interval(lo, hi))}); currently {now}.{warn}"
            f'<span class="sub">{_e("; ".join(extra))}.</span></li>'
        )
    return (
        '<section id="headline"><h2>Forecast in brief</h2>'
        f'<ul class="headline">{"".join(items)}</ul>'
        '<p class="sub">Values are medians of the forecast; intervals are prediction intervals '
        "for a new measurement (they include measurement error). "
        f"Treatment so far: {_e(_treatment_so_far(s.schedule, last_t))}.</p></section>"
    )


def _header(
    twin: DigitalTwin,
    forecasts: Mapping[str, Forecast],
    title: str,
    provenance: Mapping[str, Any] | None,
    generated: str,
) -> str:
    s = twin.subject
    label = KIND_LABELS.get(s.kind, s.kind)
    n_cens = int(np.sum(s.censored))
    obs = (
        f"{label[:1].upper() + label[1:]}, in {pretty_unit(s.unit) or 'arbitrary units'} — "
        f"{len(s.times)} measurements from {fmt_day(s.times[0])} to {fmt_day(s.last_time)}"
        + (f", {n_cens} below the detection limit" if n_cens else "")
    )
    models = "; ".join(
        f"{_model_title(p.model)} ({p.model}), weight {fmt_pct(w)}"
        for p, w in zip(twin.posteriors, twin.weights, strict=True)
    )
    rows = [
        ("Patient", _e(s.id)),
        ("Observed quantity", _e(obs)),
        ("Model" if len(twin.posteriors) == 1 else "Models", _e(models)),
        ("Schedules compared", _e(", ".join(forecasts)) if forecasts else MISSING),
        ("Data version", _e(twin.data_version or MISSING)),
    ]
    for key in ("twin_version", "version"):
        if provenance and key in provenance:
            rows.append(("Twin version", _value(key, provenance[key])))
            break
    rows.append(("Report generated", _e(generated)))
    meta = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<header><h1>{_e(title)}</h1><dl class="meta">{meta}</dl></header>'


_SECTIONS = (
    ("headline", "Forecast"),
    ("recommendation", "Recommendation"),
    ("figure", "Figure"),
    ("parameters", "Parameters"),
    ("diagnostics", "Calibration checks"),
    ("comparison", "Model comparison"),
    ("history", "History"),
    ("provenance", "Provenance"),
)


def _toc(sections: Sequence[str]) -> str:
    """Links to the sections present in `sections` (HTML fragments)."""
    present = [
        (a, t) for a, t in _SECTIONS if any(f'<section id="{a}"' in part for part in sections)
    ]
    links = " ".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in present)
    return f'<nav class="toc" aria-label="Sections">{links}</nav>'


def _figure_section(twin: DigitalTwin, forecasts: Mapping[str, Forecast], warned: bool) -> str:
    from .plots import forecast_figure, use_log_scale

    if not forecasts:
        return '<section id="figure"><h2>Forecast figure</h2><p>No forecast given.</p></section>'
    s = twin.subject
    fcs = list(forecasts.values())
    fig = forecast_figure(forecasts, s, warning="not converged" if warned else None)
    values = np.concatenate(
        [np.asarray(f.median, float) for f in fcs] + [np.asarray(s.y)[~np.asarray(s.censored)]]
    )
    log = use_log_scale(values)
    label = KIND_LABELS.get(s.kind, s.kind)
    summary = "; ".join(
        f"{name}: median {with_unit(fmt_num(f.median[-1]), f.unit)} at {fmt_day(f.times[-1])}"
        for name, f in forecasts.items()
    )
    alt = (
        f"Fan chart of {label} ({pretty_unit(s.unit)}) against time in days, one panel per "
        f"schedule ({', '.join(forecasts)}). Observed measurements up to {fmt_day(s.last_time)}, "
        f"forecast to {fmt_day(max(f.times[-1] for f in fcs))}. {summary}."
        + (" Not converged: not for clinical decisions." if warned else "")
    )
    caption = (
        "Points: measurements (open triangles: below the detection limit, drawn at the limit). "
        "Line: median forecast; dark band: 50% and light band: 90% prediction interval. "
        "Dashed line: last observation (today). Shaded spans: treatment on; ticks at the bottom: "
        "doses. Left of the dashed line the band is the model fitted to the data; right of it, the "
        "forecast."
        + (
            " The y axis is logarithmic because the values span more than two decades."
            if log
            else ""
        )
    )
    return (
        '<section id="figure"><h2>Forecast figure</h2>'
        f"<figure>{_img(fig, alt)}<figcaption>{_e(caption)}</figcaption></figure></section>"
    )


def _parameters_section(twin: DigitalTwin, level: float = 0.9) -> str:
    from .plots import _param_specs, posterior_figure

    parts = ['<section id="parameters"><h2>Model parameters</h2>']
    parts.append(
        f'<p class="sub">Posterior medians and {fmt_level(level)} credible intervals: the '
        "parameter values that fit this patient, and how sure we are of them.</p>"
    )
    for post, w in zip(twin.posteriors, twin.weights, strict=True):
        specs = _param_specs(post)
        summary = post.summary(level)
        eq = _model_attr(post.model, "equation")
        head = f"{_model_title(post.model)} model" + (
            f" (weight {fmt_pct(w)})" if len(twin.posteriors) > 1 else ""
        )
        parts.append(f"<h3>{_e(head)}</h3>")
        if eq:
            parts.append(f"<p>Equation: <code>{_e(eq)}</code></p>")
        rows = []
        for name in [n for n in post.names if n in summary] or list(summary):
            spec = specs.get(name)
            unit = pretty_unit(spec.unit, twin.subject.unit) if spec else ""
            desc = spec.description if spec else ""
            q = summary[name]
            rows.append(
                [
                    f"<code>{_e(name)}</code>",
                    _e(desc),
                    _e(unit or "dimensionless"),
                    _e(fmt_num(q["median"])),
                    _e(fmt_interval(q["lo"], q["hi"])),
                ]
            )
        parts.append(
            _table(
                ["Parameter", "Meaning", "Unit", "Median", f"{fmt_level(level)} credible interval"],
                rows,
                caption=f"Parameters of the {_model_title(post.model)} model",
                numeric=(3, 4),
            )
        )
        alt = (
            f"Histograms of the posterior draws of the {len(rows)} parameters of the "
            f"{_model_title(post.model)} model, with medians and 90% credible intervals marked "
            "and the prior drawn as a grey curve."
        )
        parts.append(
            f"<figure>{_img(posterior_figure(post, data_unit=twin.subject.unit), alt, dpi=100)}</figure>"
        )
    parts.append("</section>")
    return "".join(parts)


def _diagnostics_words(post: Posterior) -> tuple[bool, str, list[str]]:
    """(ok, what was done and found in plain words, problems)."""
    d = post.diagnostics
    problems = d.problems()
    if d.method == "nuts":
        done = (
            f"Full Bayesian sampling (NUTS): {d.chains} chains × "
            f"{fmt_int(post.settings.get('draws', post.n_draws // max(d.chains, 1)))} draws after "
            f"{fmt_int(post.settings.get('warmup'))} warm-up steps."
        )
        if not problems:
            div = (
                "no divergent transitions"
                if not d.divergences
                else f"{d.divergences} divergent transitions"
            )
            found = (
                f"{d.chains} chains agreed (R-hat {d.rhat_max:.3f} ≤ {RHAT_MAX}); "
                f"{fmt_int(d.ess_bulk_min)} effective draws (tails: {fmt_int(d.ess_tail_min)}; "
                f"at least {fmt_int(ESS_MIN_PER_CHAIN * d.chains)} needed); {div}."
            )
            return True, f"{done} {found}", []
        return False, done, problems
    done = (
        "Fast approximation (most probable values plus a Gaussian around them, corrected by "
        f"importance resampling): {fmt_int(post.n_draws)} draws."
    )
    if not problems:
        found = (
            "The optimiser converged to a mode; Pareto k "
            f"{d.pareto_k:.2f} ≤ {KHAT_MAX}, so the Gaussian approximation is adequate."
        )
        return True, f"{done} {found}", []
    return False, done, problems


def _diagnostics_section(twin: DigitalTwin) -> str:
    parts = ['<section id="diagnostics"><h2>Calibration checks</h2>']
    for post in twin.posteriors:
        ok, words, problems = _diagnostics_words(post)
        parts.append(
            f'<div class="diag"><h3>{_e(_model_title(post.model))} model {_badge(ok)}</h3>'
            f"<p>{_e(words)}</p>"
        )
        if problems:
            items = "".join(f"<li>✗ {_e(p)}</li>" for p in problems)
            parts.append(f"<p><strong>Problems:</strong></p><ul>{items}</ul>")
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _history_section(
    history: Sequence[Mapping[str, Any]] | None, surprises: Sequence[Mapping[str, Any]] | None
) -> str:
    if history is None and surprises is None:
        return ""
    parts = ['<section id="history"><h2>History of this twin</h2>']
    if history is not None:
        if history:
            parts.append(
                _records_table(
                    history,
                    ("version", "created", "model", "data_version", "converged"),
                    "Versions of the twin, oldest first",
                )
            )
        else:
            parts.append("<p>No earlier versions.</p>")
    if surprises is not None:
        parts.append("<h3>Surprises</h3>")
        if surprises:
            parts.append(
                "<p>Measurements that fell outside the previous forecast's 95% interval: the "
                "tumour behaved differently from what the twin expected.</p>"
            )
            parts.append(
                _records_table(
                    surprises,
                    ("time", "observed", "median", "lo", "hi", "version"),
                    "Observations outside the previous forecast's 95% interval",
                )
            )
        else:
            parts.append(
                "<p>None: every new measurement fell inside the previous forecast's 95% interval.</p>"
            )
    parts.append("</section>")
    return "".join(parts)


def _settings_words(settings: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in settings.items()) or MISSING


def _provenance_section(
    twin: DigitalTwin,
    forecasts: Mapping[str, Forecast],
    provenance: Mapping[str, Any] | None,
    generated: str,
) -> str:
    rows: list[tuple[str, str]] = [("Report generated", _e(generated))]
    fprov = next(iter(forecasts.values())).provenance if forecasts else {}
    rows.append(("oncotwin version", _e(fprov.get("oncotwin_version", __version__))))
    rows.append(("Data version", _e(twin.data_version or fprov.get("data_version") or MISSING)))
    for post in twin.posteriors:
        m = post.model
        cite = _model_attr(m, "citation")
        rows.append(
            (
                f"Model {m}",
                _e(f"{_model_title(m)}, as implemented in oncotwin {__version__}")
                + (f"<br><span class='sub'>{_e(cite)}</span>" if cite else ""),
            )
        )
        rows.append(
            (
                f"Calibration ({m})",
                _e(
                    f"method {post.method}; error model {post.error_model}; prior "
                    f"{post.prior.source}; seed {post.seed}"
                ),
            )
        )
        rows.append((f"Sampler settings ({m})", _e(_settings_words(post.settings))))
        rows.append((f"Diagnostics ({m})", _value("diagnostics", post.diagnostics.to_dict())))
    for name, f in forecasts.items():
        p = f.provenance
        rows.append(
            (
                f"Forecast “{name}”",
                _e(
                    f"seed {p.get('forecast_seed', MISSING)}; {fmt_int(f.draws.shape[0])} draws; "
                    f"{len(f.times)} times from {fmt_day(f.times[0])} to {fmt_day(f.times[-1])}; "
                    f"models {json.dumps(p.get('models', {}))}"
                ),
            )
        )
    for key, v in (provenance or {}).items():
        rows.append((_label(key), _value(key, v)))
    table = _table(
        ["Item", "Value"], [[_e(k), v] for k, v in rows], caption="How this report was made"
    )
    return f'<section id="provenance"><h2>Provenance</h2>{table}</section>'


def _recommendation_html(recommendation: Recommendation | None) -> str:
    if recommendation is None:
        return ""
    from .recommendation import recommendation_section

    return recommendation_section(recommendation)


def patient_report(
    twin: DigitalTwin,
    forecasts: Mapping[str, Forecast],
    *,
    comparison: ModelComparison | None = None,
    title: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
    surprises: Sequence[Mapping[str, Any]] | None = None,
    recommendation: Recommendation | None = None,
) -> str:
    """One patient's report as a self-contained HTML page.

    Args:
        twin: the patient's digital twin.
        forecasts: schedule name ("current schedule", "stop treatment", ...) -> forecast.
        comparison: model comparison to show (optional).
        title: page title; default "Digital twin report — patient <id>".
        provenance: extra provenance items (shown as given; "twin_version" also in the header).
        history: versions of the twin (mappings with version, created, model, data_version,
            converged, ...).
        surprises: observations outside the previous forecast's 95% interval (mappings with
            time, observed, median, lo, hi, ...); an empty list says there were none.
        recommendation: a treatment recommendation to show after the forecast (optional; see
            :func:`oncotwin.optimize.optimize_twin`).

    Returns:
        The HTML text. A red banner opens the page when any posterior or forecast failed its
        diagnostics.
    """
    title = title or f"Digital twin report — patient {twin.subject.id}"
    generated = _now()
    problems = _problems(twin, forecasts)
    sections = [
        _headline(twin, forecasts, HEADLINE_LEVEL) if forecasts else "",
        _recommendation_html(recommendation),
        _figure_section(twin, forecasts, bool(problems)),
        _parameters_section(twin),
        _diagnostics_section(twin),
        _comparison_html(comparison, twin) if comparison is not None else "",
        _history_section(history, surprises),
        _provenance_section(twin, forecasts, provenance, generated),
    ]
    body = [
        _alarm(problems),
        "<main>",
        _header(twin, forecasts, title, provenance, generated),
        _toc(sections),
        *sections,
        f"<footer>oncotwin {_e(__version__)} · a research tool; forecasts support, and do not "
        "replace, clinical judgement.</footer>",
        "</main>",
    ]
    return _page(title, "\n".join(b for b in body if b))


def write_patient_report(
    path: str | Path,
    twin: DigitalTwin,
    forecasts: Mapping[str, Forecast],
    **kwargs: Any,
) -> Path:
    """Write :func:`patient_report` to `path` (UTF-8); `kwargs` as for :func:`patient_report`."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(patient_report(twin, forecasts, **kwargs), encoding="utf-8")
    return out
