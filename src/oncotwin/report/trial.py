"""The virtual-trial page: arms, effect estimates with intervals, Kaplan-Meier curves,
waterfall and spider plots, replicate summaries, prognostic adjustment and a power curve.

Self-contained HTML like the other pages (:mod:`.html`): figures inlined as PNG, no network,
no JavaScript. Figures use the object API of matplotlib (Agg) and the Okabe-Ito palette.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from .format import MISSING, fmt_int, fmt_num, fmt_pct
from .html import _e, _img, _now, _page, _table
from .plots import SCHEDULE_COLOURS, _figure

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from ..trials.analysis import TrialAnalysis
    from ..trials.run import TrialResult

__all__ = [
    "km_figure",
    "power_figure",
    "spider_figure",
    "trial_report",
    "waterfall_figure",
    "write_trial_report",
]


def km_figure(analysis: TrialAnalysis) -> Figure:
    """Kaplan-Meier curves of PFS and OS by arm, with 95% pointwise intervals."""
    fig = _figure(10, 3.8)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, ep, title in zip(
        axes, ("pfs", "os"), ("Progression-free survival", "Overall survival"), strict=True
    ):
        for i, (arm, km) in enumerate(analysis.km[ep].items()):
            c = SCHEDULE_COLOURS[i % len(SCHEDULE_COLOURS)]
            t = np.concatenate([[0.0], km.times]) / 30.4375
            ax.step(t, np.concatenate([[1.0], km.survival]), where="post", color=c,
                    label=f"{arm} (median {fmt_num(km.median / 30.4375)} mo)", gid=f"km:{ep}:{arm}")  # fmt: skip
            ax.fill_between(t, np.concatenate([[1.0], km.lower]), np.concatenate([[1.0], km.upper]),
                            step="post", color=c, alpha=0.18, linewidth=0)  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("Months since randomisation")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    axes[0].set_ylabel("Probability")
    return fig


def waterfall_figure(result: TrialResult, *, replicate: int = 0, max_patients: int = 400) -> Figure:
    """Best % change of the sum of diameters from baseline, one bar per patient, by arm."""
    p = result.patients
    p = p[(p["replicate"] == replicate) & (p["status"] == "ok")].dropna(subset=["best_pct_change"])
    if len(p) > max_patients:
        p = p.iloc[np.linspace(0, len(p) - 1, max_patients).astype(int)]
    p = p.sort_values("best_pct_change", ascending=False)
    fig = _figure(10, 3.6)
    ax = fig.subplots()
    names = [a.name for a in result.design.arms]
    colours = [SCHEDULE_COLOURS[names.index(a) % len(SCHEDULE_COLOURS)] for a in p["arm"]]
    ax.bar(np.arange(len(p)), np.clip(p["best_pct_change"], -100, 150), color=colours, width=1.0)
    ax.axhline(20, color="#555", ls="--", lw=0.8)
    ax.axhline(-30, color="#555", ls=":", lw=0.8)
    ax.text(len(p) - 0.5, 21, "+20 % (PD)", ha="right", va="bottom", fontsize=8)
    ax.text(len(p) - 0.5, -31, "−30 % (PR)", ha="right", va="top", fontsize=8)
    for i, n in enumerate(names):
        ax.bar([], [], color=SCHEDULE_COLOURS[i % len(SCHEDULE_COLOURS)], label=n)
    ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1.0, 0.9))
    ax.set_xticks([])
    ax.set_ylabel("Best change from baseline (%)")
    ax.set_xlabel(f"Patients ({len(p)} shown)")
    return fig


def spider_figure(result: TrialResult, *, replicate: int = 0, per_arm: int = 25) -> Figure:
    """% change of the sum of diameters over time for a sample of patients of each arm."""
    names = [a.name for a in result.design.arms]
    fig = _figure(10, 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(names), sharey=True))
    p = result.patients.reset_index(drop=True)
    for i, (ax, name) in enumerate(zip(axes, names, strict=True)):
        rows = np.nonzero(
            ((p["replicate"] == replicate) & (p["status"] == "ok") & (p["arm"] == name)).to_numpy()
        )[0][:per_arm]
        c = SCHEDULE_COLOURS[i % len(SCHEDULE_COLOURS)]
        if result.visits is not None:
            for r in rows:
                v = result.visits[r]
                ok = np.isfinite(v)
                if v[0] > 0 and ok.sum() > 1:
                    ax.plot(
                        result.times[ok] / 7, 100 * (v[ok] / v[0] - 1), color=c, lw=0.8, alpha=0.7
                    )
        ax.axhline(20, color="#555", ls="--", lw=0.8)
        ax.axhline(-30, color="#555", ls=":", lw=0.8)
        ax.set_title(name)
        ax.set_xlabel("Weeks")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Change from baseline (%)")
    return fig


def power_figure(curve: pd.DataFrame, target: float = 0.8) -> Figure:
    """Power against total sample size with Monte Carlo error bars (±2 SE)."""
    fig = _figure(6, 3.6)
    ax = fig.subplots()
    ax.errorbar(
        curve["n"],
        curve["power"],
        yerr=2 * curve["mc_se"],
        marker="o",
        color=SCHEDULE_COLOURS[0],
        capsize=3,
    )
    ax.axhline(target, color="#555", ls="--", lw=0.8)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Patients per trial")
    ax.set_ylabel("Power")
    ax.grid(alpha=0.3)
    return fig


def _pct(x: Any) -> str:
    return fmt_pct(x) if x is not None and np.isfinite(x) else MISSING


def _days_mo(x: Any) -> str:
    if x is None or not np.isfinite(x):
        return "not reached"
    return f"{fmt_num(x / 30.4375)} mo"


def trial_report(
    result: TrialResult, analysis: TrialAnalysis, *, replicates: Mapping[str, Any] | None = None,
    prognostic: Mapping[str, Any] | None = None, power: pd.DataFrame | None = None,
    title: str | None = None,
) -> str:  # fmt: skip
    """The trial page as self-contained HTML.

    Args:
        result: the simulated trial.
        analysis: :func:`oncotwin.trials.analysis.analyse_trial` of one replicate.
        replicates: summary over replicates (rejection rate, CI coverage), optional.
        prognostic: :func:`~oncotwin.trials.analysis.prognostic_adjustment` output, optional.
        power: :func:`~oncotwin.trials.analysis.power_curve` output, optional.
        title: page title (default: the design's name).
    """
    d = result.design
    title = title or f"Virtual trial: {d.name}"
    counts = result.counts()
    parts = []
    if counts["failed"]:
        parts.append(
            '<div class="alarm" role="alert"><p class="big">⚠ The simulation failed for '
            f"{counts['failed']} virtual patients.</p><p>They are excluded from every analysis "
            "below; check the model parameters.</p></div>"
        )
    parts.append(f"<main><header><h1>{_e(title)}</h1>")
    parts.append(f'<p class="sub">Generated {_e(_now())} · oncotwin {_e(__version__)} · '
                 f"seed {result.plan.seed} · model {_e(d.model)} · cohort {_e(result.plan.source.label)}</p></header>")  # fmt: skip
    parts.append('<section id="summary"><div class="cards">'
                 f'<div class="card"><span class="k">{fmt_int(result.plan.n)}</span>patients per trial</div>'
                 f'<div class="card"><span class="k">{fmt_int(result.plan.replicates)}</span>replicate trials</div>'
                 f'<div class="card"><span class="k">{fmt_int(counts["ineligible"])}</span>ineligible</div>'
                 f'<div class="card"><span class="k">{fmt_int(counts["failed"])}</span>failed</div>'
                 "</div></section>")  # fmt: skip
    rows = []
    for _, a in analysis.arms.iterrows():
        lo, hi = a.get("orr_ci", (np.nan, np.nan))
        rows.append([_e(a["arm"]), fmt_int(a["n"]), f"{_pct(a.get('orr'))} ({_pct(lo)}–{_pct(hi)})",
                     _e(_days_mo(a.get("median_pfs_days"))), _e(_days_mo(a.get("median_os_days"))),
                     _e(fmt_num(a.get("mean_pct_change"))), _pct(a.get("ntcp_rate")),
                     _pct(a.get("neutropenia_g3_rate")) if "neutropenia_g3_rate" in a else MISSING])  # fmt: skip
    parts.append('<section id="arms"><h2>Arms</h2>' + _table(
        ["Arm", "Patients", "ORR (95% CI)", "Median PFS", "Median OS",
         f"Mean % change at day {fmt_num(d.endpoints.landmark)}", "NTCP events", "Neutropenia ≥ G3"],
        rows, caption=f"Replicate {analysis.replicate}; RECIST 1.1 best overall response "
        f"({'confirmed' if d.endpoints.confirm else 'unconfirmed'})", numeric=(1, 2, 3, 4, 5, 6, 7)))  # fmt: skip
    if len(analysis.comparisons):
        rows = []
        for _, c in analysis.comparisons.iterrows():
            rows.append(
                [
                    _e(f"{c['arm']} vs {c['versus']}"),
                    _e(
                        f"{fmt_num(c.get('hr_pfs'))} ({fmt_num(c.get('hr_pfs_low'))}–{fmt_num(c.get('hr_pfs_high'))})"
                    ),
                    _e(fmt_num(c.get("logrank_p_pfs"))),
                    _e(
                        f"{fmt_num(c.get('hr_os'))} ({fmt_num(c.get('hr_os_low'))}–{fmt_num(c.get('hr_os_high'))})"
                    ),
                    _e(fmt_num(c.get("logrank_p_os"))),
                    _e(
                        f"{_pct(c.get('orr_diff'))} ({_pct(c.get('orr_diff_low'))} to {_pct(c.get('orr_diff_high'))})"
                    ),
                ]
            )
        parts.append('<section id="effects"><h2>Treatment effects</h2>' + _table(
            ["Comparison", "HR PFS (95% CI)", "Log-rank p (PFS)", "HR OS (95% CI)", "Log-rank p (OS)", "ORR difference (95% CI)"],
            rows, caption="Cox proportional hazards (Efron ties), Wald intervals; ORR by Newcombe's hybrid score interval",
            numeric=(1, 2, 3, 4, 5)) + "</section>")  # fmt: skip
    figs = [
        (
            "km",
            "Kaplan–Meier curves",
            km_figure(analysis),
            "Kaplan–Meier estimates by arm with 95% pointwise intervals (exponential Greenwood).",
        )
    ]
    figs.append(
        (
            "waterfall",
            "Waterfall plot",
            waterfall_figure(result, replicate=analysis.replicate),
            "Best change of the sum of diameters from baseline before progression, one bar per patient.",
        )
    )
    if result.visits is not None:
        figs.append(
            (
                "spider",
                "Spider plot",
                spider_figure(result, replicate=analysis.replicate),
                "Change from baseline over time until progression, up to 25 patients per arm.",
            )
        )
    for sid, head, fig, cap in figs:
        parts.append(f'<section id="{sid}"><h2>{_e(head)}</h2><figure>{_img(fig, cap)}'
                     f"<figcaption>{_e(cap)}</figcaption></figure></section>")  # fmt: skip
    if replicates:
        rows = [
            [_e(k.replace("_", " ")), _e(fmt_num(v) if isinstance(v, float) else str(v))]
            for k, v in replicates.items()
        ]
        parts.append(
            '<section id="replicates"><h2>Over replicate trials</h2>'
            + _table(
                ["Quantity", "Value"],
                rows,
                caption="Primary endpoint over replicates; Monte Carlo SE in brackets where given",
            )
            + "</section>"
        )
    if prognostic:
        ru, su = prognostic["rejection_unadjusted"]
        ra, sa = prognostic["rejection_adjusted"]
        rows = [["Endpoint", _e(prognostic["endpoint"])], ["Prognostic score", _e(prognostic["score"])],
                ["Correlation of score and outcome (control)", _e(fmt_num(prognostic["score_outcome_correlation"]))],
                ["Variance of the estimate, unadjusted", _e(fmt_num(prognostic["variance_unadjusted"]))],
                ["Variance of the estimate, adjusted", _e(fmt_num(prognostic["variance_adjusted"]))],
                ["Variance reduction", _pct(prognostic["variance_reduction"])],
                ["Sample size saved at equal precision", _pct(prognostic["sample_size_saved"])],
                ["Rejection rate unadjusted (MC SE)", _e(f"{_pct(ru)} ({_pct(su)})")],
                ["Rejection rate adjusted (MC SE)", _e(f"{_pct(ra)} ({_pct(sa)})")]]  # fmt: skip
        parts.append('<section id="prognostic"><h2>Prognostic-score adjustment (twin forecast under control)</h2>'
                     + _table(["Quantity", "Value"], rows) + "</section>")  # fmt: skip
    if power is not None and len(power):
        rows = [[fmt_int(r["n"]), f"{_pct(r['power'])} ± {_pct(2 * r['mc_se'])}", fmt_int(r["replicates"])]
                for _, r in power.iterrows()]  # fmt: skip
        cap = "Power of the primary analysis by simulation; bars ±2 Monte Carlo SE"
        parts.append(
            f'<section id="power"><h2>Power</h2><figure>{_img(power_figure(power), cap)}'
            f"<figcaption>{_e(cap)}</figcaption></figure>"
            + _table(["Patients", "Power", "Replicates"], rows, numeric=(0, 1, 2))
            + "</section>"
        )
    prov = json.dumps({**result.provenance(), "design": d.to_dict()}, indent=1, default=str)
    parts.append(
        f'<section id="provenance"><h2>Provenance</h2><details><summary>Design and run settings</summary><pre>{_e(prov)}</pre></details></section>'
    )
    parts.append("<footer>oncotwin · virtual patients are simulated from model assumptions; "
                 "they support, and do not replace, a real trial.</footer></main>")  # fmt: skip
    return _page(title, "\n".join(parts))


def write_trial_report(
    path: str | Path, result: TrialResult, analysis: TrialAnalysis, **kwargs: Any
) -> Path:
    """Write :func:`trial_report` to `path` (UTF-8)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(trial_report(result, analysis, **kwargs), encoding="utf-8")
    return out
