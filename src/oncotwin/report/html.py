"""Self-contained HTML reports: one page per patient, one cohort page linking them.

Pages need no network: figures are inlined as base64 PNG, CSS is inline and there is no
JavaScript. Text is escaped with :func:`html.escape`; numbers go through
:mod:`oncotwin.report.format`.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
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

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..inference.compare import ModelComparison
    from ..inference.posterior import Posterior
    from ..inference.problem import SubjectData
    from ..schedule import Schedule
    from ..twin import DigitalTwin, Forecast

__all__ = [
    "CohortEntry",
    "cohort_report",
    "patient_filename",
    "patient_report",
    "write_cohort_report",
    "write_patient_report",
]

HEADLINE_LEVEL = 0.9

_CSS = """
:root { --ink:#1a1a1a; --muted:#4a4a4a; --line:#c8ced6; --head:#e6ecf3; --alert:#b00020;
        --ok:#1b5e20; --okbg:#e6f4ea; --badbg:#fde7ea; --link:#0b57a4; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       color: var(--ink); background: #fff; margin: 0; line-height: 1.45; font-size: 16px; }
main { max-width: 1180px; margin: 0 auto; padding: 0 24px 48px; }
h1 { font-size: 1.7rem; margin: 20px 0 4px; }
h2 { font-size: 1.3rem; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.08rem; margin: 20px 0 6px; }
a { color: var(--link); }
.sub { color: var(--muted); font-size: 0.92rem; }
.alarm { background: var(--alert); color: #fff; padding: 16px 24px; border-bottom: 6px solid #6d0014; }
.alarm .big { font-size: 1.35rem; font-weight: 800; margin: 0 0 6px; }
.alarm ul { margin: 6px 0; }
.alarm p { margin: 6px 0; }
.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 18px; margin: 10px 0; }
.meta dt { font-weight: 600; color: var(--muted); }
.meta dd { margin: 0; }
.headline { list-style: none; padding: 0; margin: 0; }
.headline li { border-left: 6px solid var(--c, #0072B2); background: #f5f7fa; padding: 10px 14px;
               margin: 8px 0; font-size: 1.12rem; }
.headline .num { font-weight: 700; font-size: 1.2rem; white-space: nowrap; }
.headline .sub { display: block; font-size: 0.95rem; margin-top: 2px; }
.badge { display: inline-block; border-radius: 4px; padding: 1px 8px; font-size: 0.85rem;
         font-weight: 700; white-space: nowrap; }
.badge.ok { background: var(--okbg); color: var(--ok); border: 1px solid var(--ok); }
.badge.bad { background: var(--alert); color: #fff; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.95rem; }
caption { text-align: left; font-weight: 600; padding: 4px 0; color: var(--muted); }
th, td { border: 1px solid var(--line); padding: 5px 10px; text-align: left; vertical-align: top; }
th { background: var(--head); }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.bad td { background: var(--badbg); }
tbody tr:nth-child(even):not(.bad) td { background: #fafbfc; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e6ea; }
figcaption { color: var(--muted); font-size: 0.92rem; margin-top: 4px; }
.diag { margin: 6px 0; }
.diag li { margin: 3px 0; }
.cards { display: flex; gap: 14px; flex-wrap: wrap; margin: 12px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 18px; min-width: 150px; }
.card .k { font-size: 2rem; font-weight: 800; display: block; }
.card.bad { border: 2px solid var(--alert); color: var(--alert); background: var(--badbg); }
.card.ok .k { color: var(--ok); }
nav.toc { font-size: 0.92rem; margin: 6px 0 0; }
nav.toc a { margin-right: 12px; }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 0.88rem; }
footer { color: var(--muted); font-size: 0.85rem; margin-top: 40px; border-top: 1px solid var(--line);
         padding-top: 8px; }
@media print { .alarm { -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
"""


# ---- small building blocks ---------------------------------------------------------------
def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="oncotwin {_e(__version__)}">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )


def _img(fig: Figure, alt: str, dpi: int = 110) -> str:
    from .plots import figure_png

    png = figure_png(fig, dpi=dpi)
    w, h = (round(v * dpi) for v in fig.get_size_inches())
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}" width="{w}" height="{h}">'


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    caption: str | None = None,
    numeric: Sequence[int] = (),
    row_classes: Sequence[str] | None = None,
) -> str:
    """A table; `rows` hold HTML already escaped; `numeric` columns are right-aligned."""
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = "".join(
            f'<td class="n">{c}</td>' if j in numeric else f"<td>{c}</td>"
            for j, c in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _badge(ok: bool, good: str = "converged", bad: str = "NOT CONVERGED") -> str:
    return (
        f'<span class="badge ok">✓ {good}</span>'
        if ok
        else f'<span class="badge bad">✗ {bad}</span>'
    )


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")  # noqa: UP017


def _safe_href(href: str) -> str:
    if re.match(r"^\s*(javascript|vbscript|data):", href, re.IGNORECASE):
        raise ValueError(f"refusing link {href!r}: only page addresses are allowed")
    return _e(href)


def _model_title(name: str) -> str:
    from ..errors import ModelError
    from ..models import get_model

    try:
        return get_model(name).title
    except ModelError:
        return name


def _model_attr(name: str, attr: str) -> str:
    from ..errors import ModelError
    from ..models import get_model

    try:
        return str(getattr(get_model(name), attr))
    except (ModelError, AttributeError):
        return ""


def _value(key: str, v: Any) -> str:
    """A record's value as table-cell HTML."""
    if v is None:
        return MISSING
    if isinstance(v, bool | np.bool_):
        if key in ("converged", "ok"):
            return _badge(bool(v), "yes", "NO")
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return _e(str(int(v)) if key in ("seed", "version") or "seed" in key else fmt_int(v))
    if isinstance(v, float | np.floating):
        return _e(fmt_num(v))
    if isinstance(v, datetime):
        return _e(v.strftime("%Y-%m-%d %H:%M"))
    if isinstance(v, date):
        return _e(v.isoformat())
    if isinstance(v, Mapping | list | tuple):
        return f"<code>{_e(json.dumps(v, default=str, ensure_ascii=False))}</code>"
    return _e(v)


def _label(key: str) -> str:
    text = str(key).replace("_", " ")
    return text[:1].upper() + text[1:]


def _records_table(
    records: Sequence[Mapping[str, Any]], preferred: Sequence[str], caption: str
) -> str:
    cols = [c for c in preferred if any(c in r for r in records)]
    for r in records:
        cols += [k for k in r if k not in cols]
    rows = [[_value(c, r.get(c)) for c in cols] for r in records]
    classes = ["bad" if r.get("converged") is False else "" for r in records]
    return _table([_label(c) for c in cols], rows, caption=caption, row_classes=classes)


def patient_filename(patient_id: str) -> str:
    """A safe file name for a patient's page: "patient-<id>.html"."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(patient_id)).strip("._") or "patient"
    return f"patient-{slug}.html"


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
    toc = " ".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("headline", "Forecast"),
            ("figure", "Figure"),
            ("parameters", "Parameters"),
            ("diagnostics", "Calibration checks"),
            ("comparison", "Model comparison"),
            ("history", "History"),
            ("provenance", "Provenance"),
        )
    )
    return (
        f"<header><h1>{_e(title)}</h1>"
        f'<dl class="meta">{meta}</dl><nav class="toc" aria-label="Sections">{toc}</nav></header>'
    )


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


def _comparison_sentence(comparison: ModelComparison) -> str:
    t = comparison.table.reset_index(drop=True)
    best = str(t["model"].iloc[0])
    out = (
        f"Preferred model: {_model_title(best)} (highest expected log predictive density, "
        f"elpd_loo {fmt_num(t['elpd_loo'].iloc[0])})."
    )
    if len(t) > 1:
        second = str(t["model"].iloc[1])
        diff = abs(float(t["elpd_diff"].iloc[1]))
        se = float(t["se"].iloc[1])
        if diff > 2 * se:
            out += (
                f" Its lead over {_model_title(second)} ({fmt_num(diff)}) is more than twice the "
                f"standard error (2 × {fmt_num(se)} = {fmt_num(2 * se)}): a meaningful difference."
            )
        else:
            out += (
                f" Its lead over {_model_title(second)} ({fmt_num(diff)}) is less than twice the "
                f"standard error (2 × {fmt_num(se)} = {fmt_num(2 * se)}): the data do not clearly "
                "prefer one model, so forecasts mix them by their stacking weights."
            )
    bad = [(str(r.model), int(r.n_bad_k)) for r in t.itertuples() if int(r.n_bad_k) > 0]
    for model, n in bad:
        out += (
            f" For {_model_title(model)} the estimate is unreliable at {n} "
            f"observation{'s' if n != 1 else ''} (Pareto k > 0.7)."
        )
    return out


def _comparison_html(comparison: ModelComparison) -> str:
    t = comparison.table.reset_index(drop=True)
    rows = [
        [
            _e(f"{_model_title(str(r.model))} ({r.model})"),
            _e(fmt_num(r.elpd_loo)),
            _e(fmt_num(r.se)),
            _e(fmt_num(r.elpd_diff) if float(r.elpd_diff) != 0 else "0"),
            _e(fmt_num(r.p_loo)),
            _e(fmt_pct(r.weight)),
            _e(fmt_int(r.n_bad_k)),
        ]
        for r in t.itertuples()
    ]
    table = _table(
        [
            "Model",
            "elpd_loo",
            "SE",
            "elpd difference",
            "p_loo",
            "Stacking weight",
            "Pareto k > 0.7",
        ],
        rows,
        caption="Leave-one-out cross-validation (PSIS-LOO), best model first",
        numeric=(1, 2, 3, 4, 5, 6),
    )
    return (
        '<section id="comparison"><h2>Model comparison</h2>'
        f"<p>{_e(_comparison_sentence(comparison))}</p>{table}"
        '<p class="sub">elpd_loo: how well each model predicts a left-out measurement (higher is '
        "better); SE: its standard error; p_loo: effective number of parameters.</p></section>"
    )


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


def patient_report(
    twin: DigitalTwin,
    forecasts: Mapping[str, Forecast],
    *,
    comparison: ModelComparison | None = None,
    title: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
    surprises: Sequence[Mapping[str, Any]] | None = None,
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

    Returns:
        The HTML text. A red banner opens the page when any posterior or forecast failed its
        diagnostics.
    """
    title = title or f"Digital twin report — patient {twin.subject.id}"
    generated = _now()
    problems = _problems(twin, forecasts)
    body = [
        _alarm(problems),
        "<main>",
        _header(twin, forecasts, title, provenance, generated),
        _headline(twin, forecasts, HEADLINE_LEVEL) if forecasts else "",
        _figure_section(twin, forecasts, bool(problems)),
        _parameters_section(twin),
        _diagnostics_section(twin),
        _comparison_html(comparison) if comparison is not None else "",
        _history_section(history, surprises),
        _provenance_section(twin, forecasts, provenance, generated),
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


# ---- cohort page ---------------------------------------------------------------------------
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
        fig = cohort_figure(forecasts, subjects)
        more = f" (first 24 of {len(forecasts)})" if len(forecasts) > 24 else ""
        alt = (
            f"Small multiples{more}: one mini fan chart per patient ({', '.join(shown)}), showing "
            "measurements, the median forecast and its 90% prediction interval. "
            + (f"Not converged: {', '.join(en.patient for en in failed)}." if failed else "")
        )
        parts.append(
            '<section id="overview"><h2>Forecasts at a glance</h2>'
            f"<figure>{_img(fig, alt, dpi=100)}<figcaption>"
            f"{_e('Each panel: measurements (points), median forecast (line) and 90% prediction interval (band); dashed line: last measurement. Each panel has its own scale. Red frame: calibration did not converge.' + more)}"
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
