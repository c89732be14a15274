"""Report of a spatial twin: slices with forecast overlays, uncertainty maps, cell-count fans.

A self-contained HTML page (figures inlined as PNG, no JavaScript), in the style of the patient
report (:mod:`.html`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .format import fmt_num
from .html import _badge, _e, _img, _now, _page, _table
from .plots import SCHEDULE_COLOURS, _figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..inference.spatial import SpatialForecast, SpatialPosterior


def _slice_index(volume: np.ndarray) -> int:
    """Axial slice (last axis) with the most tumour."""
    return int(np.argmax(volume.reshape(-1, volume.shape[-1]).sum(axis=0)))


def _plane(a: np.ndarray, k: int | None) -> np.ndarray:
    return a if a.ndim == 2 or k is None else a[..., k]


def slices_figure(post: SpatialPosterior, fc: SpatialForecast) -> Figure:
    """For each forecast day: observed cellularity, forecast median (observed ROI contour) and
    the width of the 90% interval, on the axial slice with the most tumour."""
    pt = post.setup.patient
    n = len(fc.map_days)
    fig = _figure(9.0, 2.6 * n)
    axes = fig.subplots(n, 3, squeeze=False)
    k = _slice_index(fc.median_map[-1]) if fc.median_map.ndim == 4 else None
    by_day = {v.day: v for v in pt.visits}
    for i, day in enumerate(fc.map_days):
        v = by_day.get(day)
        mask = _plane(pt.mask, k)
        panels = [
            (None if v is None else _plane(v.cellularity, k), "observed", "viridis", (0, 1)),
            (_plane(fc.median_map[i], k), "forecast median", "viridis", (0, 1)),
            (
                _plane(fc.upper_map[i] - fc.lower_map[i], k),
                "90% interval width",
                "magma",
                (0, None),
            ),
        ]
        for j, (img, title, cmap, (lo, hi)) in enumerate(panels):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if img is None:
                ax.text(0.5, 0.5, "no image", ha="center", va="center", transform=ax.transAxes)
            else:
                shown = np.ma.masked_where(~mask, img).T
                im = ax.imshow(
                    shown, origin="lower", cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest"
                )
                fig.colorbar(im, ax=ax, shrink=0.8)
                if v is not None and j > 0 and _plane(v.roi, k).any():
                    ax.contour(
                        _plane(v.roi, k).T.astype(float),
                        levels=[0.5],
                        colors="white",
                        linewidths=0.8,
                    )
            ax.set_title(f"day {day:g}: {title}", fontsize=9)
    return fig


def field_figure(post: SpatialPosterior) -> Figure:
    """Calibrated proliferation field: posterior median of rho(x) and the ratio of its 90%
    interval's bounds (upper / lower), on the axial slice with the most tumour at the first
    calibration visit, with that visit's ROI contour."""
    pt = post.setup.patient
    med, lo, hi = post.rho_field()
    first = pt.visits[post.setup.calib[0]]
    k = _slice_index(first.roi) if first.roi.ndim == 3 else None
    mask = _plane(pt.mask, k)
    fig = _figure(7.5, 3.0)
    axes = fig.subplots(1, 2)
    from matplotlib.colors import LogNorm

    # log colours for the ratio: near 1 in the tumour, up to the prior's ~5-15 far from it
    panels = [
        (med, "rho median, 1/day", "viridis", None),
        (hi / lo, "90% interval upper/lower", "magma", LogNorm()),
    ]
    for ax, (img, title, cmap, norm) in zip(axes, panels, strict=True):
        ax.set_xticks([])
        ax.set_yticks([])
        shown = np.ma.masked_where(~mask, _plane(np.nan_to_num(img, nan=1.0), k)).T
        im = ax.imshow(shown, origin="lower", cmap=cmap, norm=norm, interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.8)
        if _plane(first.roi, k).any():
            ax.contour(
                _plane(first.roi, k).T.astype(float), levels=[0.5], colors="white", linewidths=0.8
            )
        ax.set_title(title, fontsize=9)
    return fig


def totals_figure(post: SpatialPosterior, forecasts: Mapping[str, SpatialForecast]) -> Figure:
    """Total tumour cells over time: median and 90% band per plan, observed ROI counts."""
    pt = post.setup.patient
    fig = _figure(7.5, 3.6)
    ax = fig.subplots()
    for i, (name, fc) in enumerate(forecasts.items()):
        c = SCHEDULE_COLOURS[i % len(SCHEDULE_COLOURS)]
        ax.fill_between(fc.days, fc.total_cells[0], fc.total_cells[2], color=c, alpha=0.2, lw=0)
        ax.plot(fc.days, fc.total_cells[1], color=c, label=f"{name} (median, 90% band)")
    obs = [(v.day, pt.cell_count(v.cellularity)) for v in pt.visits]
    calib = set(post.setup.calib)
    for k, (d, n) in enumerate(obs):
        ax.scatter([d], [n], color="#111111", marker="o" if k in calib else "s",
                   facecolors="#111111" if k in calib else "none", zorder=5)  # fmt: skip
    truth = pt.truth.get("total_cells")
    if truth:
        ax.scatter(
            [v.day for v in pt.visits],
            truth,
            marker="x",
            color="#B00020",
            label="true total",
            zorder=6,
        )
    ax.set_xlabel("Day since first scan")
    ax.set_ylabel("Tumour cells")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return fig


def spatial_report(
    post: SpatialPosterior,
    forecasts: Mapping[str, SpatialForecast],
    comparison: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The HTML page of a spatial twin.

    Args:
        post: the calibration.
        forecasts: forecasts by plan name (the first is shown slice by slice).
        comparison: rows from :func:`oncotwin.inference.spatial.compare_visits`.
    """
    pt = post.setup.patient
    body = [f"<main><h1>Spatial twin: {_e(pt.patient)}</h1>"]
    body.append(
        f'<p class="sub">Generated {_e(_now())}; calibrated on visits '
        f"{_e(', '.join(str(k) for k in post.setup.calib))}; seed {post.seed}; "
        f"{_badge(post.converged)}</p>"
    )
    if not post.converged:
        body.append('<div class="alarm"><p class="big">Calibration did not converge: the '
                    "intervals below are unreliable.</p></div>")  # fmt: skip
    rows = []
    for r in post.summary():
        rows.append([_e(r["parameter"]), _e(r["unit"]), fmt_num(r["median"]),
                     f"{fmt_num(r['lower'])} – {fmt_num(r['upper'])}",
                     fmt_num(r["truth"]) if "truth" in r else "—"])  # fmt: skip
    how = "Laplace posterior" if post.method == "laplace" else "NUTS posterior draws"
    body.append(f"<h2>Parameters ({how}, 90% intervals)</h2>")
    body.append(
        _table(["parameter", "unit", "median", "90% interval", "truth"], rows, numeric=(2, 3, 4))
    )
    if post.setup.proliferation == "field":
        fp = post.setup.field_prior
        med, lo, hi = post.rho_field()
        roi = pt.visits[post.setup.calib[0]].roi & pt.mask
        body.append("<h2>Proliferation field</h2><figure>")
        body.append(_img(field_figure(post), "proliferation rate map with interval ratio"))
        body.append(
            f"<figcaption>rho(x) = rho0 exp(f(x)), f a smooth Gaussian field (prior sd "
            f"{fmt_num(fp.sd)} on the log scale, range {fmt_num(fp.range_mm)} mm, "
            f"{fp.modes} modes); Laplace posterior. In the first ROI the median rate spans "
            f"{fmt_num(float(np.min(med[roi])))} – {fmt_num(float(np.max(med[roi])))} 1/day. "
            "Where there is no tumour the field stays at its prior (wide intervals); white "
            "contour: first calibration ROI. The parameter table's rho is rho0, the geometric "
            "mean of rho(x) over the mask.</figcaption></figure>"
        )
    body.append("<h2>Total tumour cells</h2><figure>")
    body.append(_img(totals_figure(post, forecasts), "total tumour cells per plan with 90% bands"))
    body.append("<figcaption>Filled circles: calibration visits; open squares: later visits "
                "(observed cells inside the ROI); crosses: truth (synthetic patients).</figcaption></figure>")  # fmt: skip
    if comparison:
        crow = []
        for c in comparison:
            r = dict(c)
            inside = (
                r["total_lower"] <= r.get("true_total", r["observed_roi_cells"]) <= r["total_upper"]
            )
            crow.append([str(r["visit"]), fmt_num(r["day"]), fmt_num(r["total_median"]),
                         f"{fmt_num(r['total_lower'])} – {fmt_num(r['total_upper'])}",
                         fmt_num(r["observed_roi_cells"]), fmt_num(r["predicted_roi_cells"]),
                         fmt_num(r.get("true_total", float("nan"))),
                         f"{r['dice']:.2f}", f"{r['ccc']:.2f}", "yes" if inside else "no"])  # fmt: skip
        body.append("<h2>Forecast against later visits</h2>")
        body.append(_table(
            ["visit", "day", "total (median)", "90% interval", "observed in ROI", "predicted in ROI",
             "true total", "Dice", "CCC", "truth in interval"], crow, numeric=(1, 2, 3, 4, 5, 6, 7, 8),
        ))  # fmt: skip
    first = next(iter(forecasts.values()))
    body.append(f"<h2>Slices: plan {_e(first.plan)}</h2><figure>")
    body.append(_img(slices_figure(post, first), "observed and forecast cellularity slices"))
    body.append("<figcaption>Normalised cellularity N/θ; white contour: observed tumour ROI; "
                "right: width of the 90% interval per voxel.</figcaption></figure>")  # fmt: skip
    body.append(f"<footer>oncotwin spatial twin · {_e(post.diagnostics.get('optimizer', ''))} · "
                f"{post.diagnostics.get('iterations')} iterations</footer></main>")  # fmt: skip
    return _page(f"Spatial twin {pt.patient}", "\n".join(body))


def write_spatial_report(path: str | Path, post: SpatialPosterior, forecasts: Mapping[str, SpatialForecast],
                         comparison: Sequence[Mapping[str, Any]] = ()) -> Path:  # fmt: skip
    """Write :func:`spatial_report` to `path`; returns the path."""
    p = Path(path)
    p.write_text(spatial_report(post, forecasts, comparison), encoding="utf-8")
    return p
