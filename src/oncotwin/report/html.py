"""Building blocks of the HTML pages: page shell and CSS, tables, badges, inlined figures,
and the model-comparison section that both pages show.

Pages need no network: figures are inlined as base64 PNG, CSS is inline and there is no
JavaScript. Text is escaped with :func:`html.escape`; numbers go through
:mod:`oncotwin.report.format`. The pages themselves are in :mod:`.patient` and :mod:`.cohort`.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from .format import (
    MISSING,
    fmt_int,
    fmt_num,
    fmt_pct,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..inference.compare import ModelComparison
    from ..twin import DigitalTwin

__all__ = ["patient_filename"]

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
                "prefer one model (a forecast can mix them by their stacking weights)."
            )
    bad = [(str(r.model), int(r.n_bad_k)) for r in t.itertuples() if int(r.n_bad_k) > 0]
    for model, n in bad:
        out += (
            f" For {_model_title(model)} the estimate is unreliable at {n} "
            f"observation{'s' if n != 1 else ''} (Pareto k > 0.7)."
        )
    return out


def _twin_models(twin: DigitalTwin | None) -> str:
    if twin is None:
        return ""
    used = ", ".join(
        f"{_model_title(p.model)} ({fmt_pct(w)})"
        for p, w in zip(twin.posteriors, twin.weights, strict=True)
    )
    return f" The forecasts on this page use: {used}."


def _comparison_html(comparison: ModelComparison, twin: DigitalTwin | None = None) -> str:
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
        f"<p>{_e(_comparison_sentence(comparison))}{_e(_twin_models(twin))}</p>{table}"
        '<p class="sub">elpd_loo: how well each model predicts a left-out measurement (higher is '
        "better); SE: its standard error; p_loo: effective number of parameters.</p></section>"
    )
