"""The population page: what a fitted population (mixed-effects) model says, and whether it
describes the cohort it was fitted to.

The page shows the typical parameter values and the between-subject spread
(:class:`~oncotwin.inference.population.Population`), a visual predictive check (VPC) and
goodness-of-fit (GOF) plots:

- VPC (Holford N. PAGE 2005;14:738; Bergstrand M, Hooker AC, Wallin JE, Karlsson MO. AAPS J
  2011;13:143-151): cohorts are simulated from the fitted population (new random effects for
  every subject, residual error added) at the subjects' own measurement times, and the
  percentiles of the observed data in time bins are compared with the spread of the same
  percentiles over the simulated cohorts. Sizes are taken relative to each subject's first
  measurement (the reference size of the model), for observed and simulated data alike, so
  subjects of different sizes and units pool. Censored values follow the same rule on both
  sides: left out of the percentiles, so the bias this leaves is shared by the simulations
  (censored data in VPCs: Bergstrand M, Karlsson MO. AAPS J 2009;11:371-380).
- GOF (Nguyen THT et al. CPT Pharmacometrics Syst Pharmacol 2017;6:87-109): measurements
  against individual predictions, and standardised individual residuals against time.

Figures are drawn here with the object API of matplotlib (Agg, no pyplot) through the helpers of
:mod:`.plots`; matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..inference.posterior import ESS_MIN_PER_CHAIN, RHAT_MAX
from ..units import KIND_LABELS
from .format import MISSING, fmt_int, fmt_interval, fmt_num, fmt_pct, pretty_unit
from .html import (
    _badge,
    _e,
    _img,
    _label,
    _model_attr,
    _model_title,
    _now,
    _page,
    _table,
    _value,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..inference.population import Population
    from ..inference.problem import SubjectData

__all__ = [
    "IndividualFit",
    "VPCBands",
    "individual_fit",
    "population_report",
    "vpc_bands",
    "write_population_report",
]

VPC_QUANTILES = (0.1, 0.5, 0.9)
VPC_LEVEL = 0.9
VPC_BINS = 7
RESIDUAL_LIMIT = 1.96  # 95% of standard Normal residuals lie within +-1.96
BAND_COLOUR = "#0072B2"  # Okabe-Ito blue: outer percentiles
MEDIAN_COLOUR = "#D55E00"  # Okabe-Ito vermillion: median
POINT_COLOUR = "#8C8C8C"


# ---- computations ----------------------------------------------------------------------------
@dataclass(frozen=True)
class VPCBands:
    """Per-bin observed percentiles and the simulated intervals of the same percentiles.

    All values are natural logs of the size relative to the subject's first (uncensored)
    measurement; times are days since that measurement. The reference measurement itself
    (0 by definition) is left out.

    Attributes:
        quantiles: the percentiles compared (0-1), e.g. (0.1, 0.5, 0.9).
        level: level of the simulated intervals (0-1).
        edges: bin edges, days, (n_bins + 1,).
        time: median time of the measurements in each bin, days, (n_bins,).
        n_obs: uncensored measurements per bin (those the percentiles use), (n_bins,).
        observed: observed percentiles, (n_bins, n_quantiles); NaN where a bin has none.
        simulated: lower bound, median and upper bound of each simulated percentile over the
            replicate cohorts, (n_bins, n_quantiles, 3).
        tau, value, censored: every measurement shown (time, log ratio, below the detection
            limit; censored ones are at the limit).
        n_sim: number of simulated cohorts.
        typical_covariates: True when the population has covariates but the subjects' were not
            given, so the simulations use the typical (centre) covariate values.
        prediction_corrected: True for a prediction-corrected VPC: observed and simulated
            values moved by the bin's median typical prediction minus their own.
    """

    quantiles: tuple[float, ...]
    level: float
    edges: np.ndarray
    time: np.ndarray
    n_obs: np.ndarray
    observed: np.ndarray
    simulated: np.ndarray
    tau: np.ndarray
    value: np.ndarray
    censored: np.ndarray
    n_sim: int
    typical_covariates: bool
    prediction_corrected: bool = False

    def outside(self) -> np.ndarray:
        """(n_bins, n_quantiles): the observed percentile lies outside its simulated interval
        (False where either is missing)."""
        lo, hi = self.simulated[..., 0], self.simulated[..., 2]
        with np.errstate(invalid="ignore"):
            return (self.observed < lo) | (self.observed > hi)


@dataclass(frozen=True)
class IndividualFit:
    """Each measurement of the fitted subjects against its individual prediction.

    The individual prediction is the model at the posterior median of the subject's
    unconstrained parameters (``Population.z_subjects``); residuals are standardised by the
    error model at the posterior median of its parameters: ``log(y / f) / sigma`` for the
    proportional model, ``(y - f) / sd`` for the combined one.

    Attributes:
        subject: subject id of each measurement.
        tau: days since the subject's first measurement.
        observed, predicted: measurement (the detection limit where censored) and prediction,
            units of the data.
        residual: standardised residual (an upper bound where censored).
        censored: below the detection limit.
        missing: ids of the subjects given that the population was not fitted to (left out).
    """

    subject: np.ndarray
    tau: np.ndarray
    observed: np.ndarray
    predicted: np.ndarray
    residual: np.ndarray
    censored: np.ndarray
    missing: tuple[str, ...]

    def fraction_within(self, limit: float = RESIDUAL_LIMIT) -> float:
        """Fraction of the uncensored, finite residuals within ``+-limit``."""
        r = self.residual[~self.censored]
        r = r[np.isfinite(r)]
        return float(np.mean(np.abs(r) <= limit)) if r.size else float("nan")


def _ref_index(s: SubjectData) -> int:
    """Index of the subject's reference measurement (first uncensored; `SubjectData.ref`)."""
    uncensored = np.flatnonzero(~np.asarray(s.censored, bool))
    return int(uncensored[0]) if uncensored.size else 0


def _simulate_batch(model: str, s: SubjectData, z: np.ndarray) -> np.ndarray:
    """Model values at the subject's measurement times for each row of `z` (k, d) -> (k, n).

    Rows whose parameters are non-finite or on a bound (an extreme random-effect draw) give NaN
    instead of stopping the whole batch.
    """
    from ..models import get_model
    from ..simulate import simulate

    m = get_model(model)
    params = {k: np.asarray(v, float) for k, v in m.constrain(z, s.ref).items()}
    ok = np.ones(len(z), bool)
    for p in m.params:
        v = params[p.name]
        ok &= np.isfinite(v) & (v > p.lower) & (v < p.upper)
    out = np.full((len(z), len(s.times)), np.nan)
    if not ok.any():
        return out
    first = int(np.argmax(ok))
    params = {k: np.where(ok, v, v[first]) for k, v in params.items()}
    traj = simulate(m, params, s.times, s.schedule, t0=s.t0)
    out[ok] = np.asarray(traj.values, float)[ok]
    return out


def _time_bins(tau: np.ndarray, n_bins: int) -> np.ndarray:
    """Quantile bin edges over `tau`, placed between distinct times (tied times share a bin).

    With at most `n_bins` distinct times each time is its own bin.
    """
    distinct = np.unique(tau)
    if distinct.size == 0:
        return np.array([0.0, 1.0])
    if distinct.size <= n_bins:
        inner = (distinct[1:] + distinct[:-1]) / 2
    else:
        cuts = np.quantile(tau, np.arange(1, n_bins) / n_bins)
        idx = np.clip(np.searchsorted(distinct, cuts, side="right"), 1, distinct.size - 1)
        inner = np.unique((distinct[idx - 1] + distinct[idx]) / 2)
    return np.concatenate([[distinct[0]], inner, [distinct[-1]]])


def _assign_bins(tau: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges[1:-1], tau, side="right")


def vpc_bands(
    pop: Population,
    subjects: Sequence[SubjectData],
    *,
    n_sim: int = 200,
    n_bins: int = VPC_BINS,
    seed: int = 0,
    quantiles: Sequence[float] = VPC_QUANTILES,
    level: float = VPC_LEVEL,
    covariates: Mapping[str, Mapping[str, float]] | None = None,
    prediction_corrected: bool = False,
) -> VPCBands:
    """Visual predictive check: observed percentiles per time bin and the simulated intervals
    of the same percentiles (Bergstrand M et al. AAPS J 2011;13:143-151).

    Each of `n_sim` replicate cohorts uses one posterior draw of the population and new random
    effects for every subject, ``z = mu + beta^T x + diag(omega) L eta`` (``x`` the subject's
    standardised covariates from `covariates`; without them, their typical, centre values),
    simulated at the subject's measurement times under its schedule, with residual error from
    the error model. Observed and simulated values alike are taken as ``log(y / y_ref)`` with
    ``y_ref`` the value at the subject's reference measurement (its first uncensored one), which
    is left out. Observed censored values are left out of the percentiles, and so are simulated
    values below the subject's detection limit (the highest of its censored values).

    Prediction-corrected (Bergstrand et al. 2011, for log-scale data): each observed and
    simulated value ``Y`` of a bin becomes ``Y + PRED_bin - PRED``, with ``PRED`` the typical
    prediction for that measurement (posterior-median typical parameters with the subject's
    covariates, no random effects, on the same log-ratio scale) and ``PRED_bin`` its median
    over the bin. This removes the spread that comes from different times within a bin, from
    schedules and from covariates, so that the bins compare like with like.

    Args:
        pop: the fitted population.
        subjects: the cohort to check (usually the one it was fitted to).
        n_sim: number of simulated cohorts.
        n_bins: number of time bins (quantile bins over the measurement times; fewer when
            there are fewer distinct times).
        seed: random seed of the simulations.
        quantiles: percentiles compared (0-1).
        level: level of the simulated intervals (0-1).
        covariates: ``{subject id: {covariate: value}}`` coded as the population was fitted
            (:func:`oncotwin.workflow.population_covariates`).
        prediction_corrected: prediction-correct observed and simulated values (see above).

    Returns:
        The :class:`VPCBands`.

    Raises:
        ValueError: no subjects, or no measurement besides the reference ones.
    """
    import jax

    from ..observe import get_error_model

    if not subjects:
        raise ValueError("vpc_bands needs at least one subject")
    err = get_error_model(pop.error_model)
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    n_draws, d = pop.mu.shape
    draws = rng.choice(n_draws, size=n_sim, replace=n_sim > n_draws)
    mu, omega, chol, beta = pop.mu[draws], pop.omega[draws], pop.corr_chol[draws], pop.beta[draws]
    own = covariates if pop.covariates else None
    z_error = pop.z_error[draws]
    tau_parts, obs_parts, cens_parts, sim_parts, pred_parts = [], [], [], [], []
    mu_typical = np.median(pop.mu, axis=0)
    beta_typical = np.median(pop.beta, axis=0)  # (p, d)
    for i, s in enumerate(subjects):
        eta = rng.standard_normal((n_sim, d))
        # Without the subject's covariates, at their centre: the standardised x is 0.
        x = pop.standardise(own[s.id]) if own is not None else np.zeros(beta.shape[1])
        z = mu + np.einsum("p,spd->sd", x, beta) + np.einsum("sde,se->sd", chol, eta) * omega
        f = _simulate_batch(pop.model, s, z)
        theta = {
            p.name: np.asarray(p.constrain(z_error[:, j], s.ref), float)[:, None]
            for j, p in enumerate(err.params)
        }
        y_sim = np.asarray(err.sample(jax.random.fold_in(key, i), f, theta), float)
        cens = np.asarray(s.censored, bool)
        r = _ref_index(s)
        if cens.any():
            limit = float(np.max(s.y[cens]))
            y_sim = np.where(y_sim < limit, np.nan, y_sim)
        y_sim = np.where(y_sim > 0, y_sim, np.nan)  # a size of 0 has no place on a log axis
        with np.errstate(invalid="ignore", divide="ignore"):
            rel_sim = np.log(y_sim / y_sim[:, [r]])  # relative to its own reference value
            rel_obs = np.log(np.asarray(s.y, float) / s.ref)
        keep = np.arange(len(s.times)) != r
        if prediction_corrected:
            typical = _simulate_batch(pop.model, s, (mu_typical + x @ beta_typical)[None])[0]
            with np.errstate(invalid="ignore", divide="ignore"):
                pred_parts.append(np.log(typical / typical[r])[keep])
        tau_parts.append(np.asarray(s.times, float)[keep] - float(s.times[r]))
        obs_parts.append(rel_obs[keep])
        cens_parts.append(cens[keep])
        sim_parts.append(rel_sim[:, keep])
    tau = np.concatenate(tau_parts)
    value = np.concatenate(obs_parts)
    censored = np.concatenate(cens_parts)
    sim = np.concatenate(sim_parts, axis=1)
    if tau.size == 0:
        raise ValueError("vpc_bands needs measurements besides each subject's reference one")
    edges = _time_bins(tau, n_bins)
    which = _assign_bins(tau, edges)
    if prediction_corrected:
        pred = np.concatenate(pred_parts)
        shift = np.zeros_like(pred)
        for b in np.unique(which):
            in_bin = which == b
            shift[in_bin] = np.nanmedian(pred[in_bin]) - pred[in_bin]
        value = value + np.where(censored, 0.0, shift)  # censored ones stay at their limit
        sim = sim + shift
    nb, q = len(edges) - 1, np.asarray(quantiles, float)
    observed = np.full((nb, q.size), np.nan)
    simulated = np.full((nb, q.size, 3), np.nan)
    times = np.full(nb, np.nan)
    n_obs = np.zeros(nb, int)
    bounds = [(1 - level) / 2, 0.5, 1 - (1 - level) / 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, as wanted
        for b in range(nb):
            in_bin = which == b
            times[b] = np.median(tau[in_bin]) if in_bin.any() else np.nan
            use = in_bin & ~censored & np.isfinite(value)
            n_obs[b] = int(use.sum())
            if n_obs[b]:
                observed[b] = np.quantile(value[use], q)
            per_cohort = np.nanquantile(sim[:, in_bin], q, axis=1)  # (n_q, n_sim)
            simulated[b] = np.nanquantile(per_cohort, bounds, axis=1).T
    return VPCBands(
        quantiles=tuple(float(v) for v in q), level=float(level), edges=edges, time=times,
        n_obs=n_obs, observed=observed, simulated=simulated, tau=tau, value=value,
        censored=censored, n_sim=int(n_sim), typical_covariates=bool(pop.covariates) and own is None,
        prediction_corrected=prediction_corrected,
    )  # fmt: skip


def individual_fit(pop: Population, subjects: Sequence[SubjectData]) -> IndividualFit:
    """Measurements against individual predictions and standardised residuals, for the subjects
    of `subjects` that the population was fitted to (others are listed in ``missing``)."""
    from ..observe import get_error_model

    err = get_error_model(pop.error_model)
    index = {sid: i for i, sid in enumerate(pop.subjects)}
    z_err = np.median(pop.z_error, axis=0)
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("subject", "tau", "observed", "predicted", "residual", "censored")
    }
    missing = []
    for s in subjects:
        if s.id not in index:
            missing.append(s.id)
            continue
        z = np.median(pop.z_subjects[:, index[s.id], :], axis=0)
        f = _simulate_batch(pop.model, s, z[None, :])[0]
        theta = {p.name: float(p.constrain(z_err[j], s.ref)) for j, p in enumerate(err.params)}
        y = np.asarray(s.y, float)
        with np.errstate(invalid="ignore", divide="ignore"):
            if err.name == "proportional":
                resid = np.log(y / f) / theta["sigma"]
            else:
                sd = np.sqrt(theta["sigma_add"] ** 2 + (theta["sigma"] * f) ** 2)
                resid = (y - f) / sd
        parts["subject"].append(np.full(len(y), s.id, dtype=object))
        parts["tau"].append(np.asarray(s.times, float) - s.t0)
        parts["observed"].append(y)
        parts["predicted"].append(f)
        parts["residual"].append(resid)
        parts["censored"].append(np.asarray(s.censored, bool))
    arrays = {
        k: (np.concatenate(v) if v else np.zeros(0, bool if k == "censored" else float))
        for k, v in parts.items()
    }
    return IndividualFit(**arrays, missing=tuple(missing))


# ---- figures ---------------------------------------------------------------------------------
def _ordinal(q: float) -> str:
    """0.1 -> "10th", 0.5 -> "median"."""
    p = round(100 * q)
    if p == 50:
        return "median"
    suffix = "th" if 10 <= p % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(p % 10, "th")
    return f"{p}{suffix}"


def _outer_words(quantiles: Sequence[float]) -> str:
    """The percentiles other than the median in words: "10th and 90th percentiles"."""
    outer = [_ordinal(q) for q in quantiles if abs(q - 0.5) > 1e-9]
    return f"{' and '.join(outer)} percentile{'s' if len(outer) > 1 else ''}"


def _kind_label(subjects: Sequence[SubjectData]) -> str:
    kinds = {s.kind for s in subjects}
    label = KIND_LABELS.get(next(iter(kinds)), next(iter(kinds))) if len(kinds) == 1 else "size"
    return label[:1].upper() + label[1:]


def _data_unit(subjects: Sequence[SubjectData]) -> str:
    units = {s.unit for s in subjects}
    return (
        (pretty_unit(next(iter(units))) or "arbitrary units") if len(units) == 1 else "data units"
    )


def _legend_below(fig: Figure, axes: Sequence[Axes], ncols: int = 3) -> None:
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    fig.legend(
        list(seen.values()), list(seen), loc="outside lower center", ncols=ncols, frameon=False,
        fontsize=9,
    )  # fmt: skip


def _log_ticks(ax: Axes, which: str = "y") -> None:
    """Readable ticks on a log axis: 1, 2, 5 per decade over up to three decades."""
    from matplotlib.ticker import LogLocator, NullFormatter

    from .plots import _tick_formatter

    lo, hi = ax.get_ylim() if which == "y" else ax.get_xlim()
    axis = ax.yaxis if which == "y" else ax.xaxis
    if lo > 0 and hi / lo < 1e3:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(_tick_formatter())
    axis.set_minor_formatter(NullFormatter())


def vpc_figure(bands: VPCBands, kind_label: str = "Tumour size") -> Figure:
    """The VPC: light points (measurements), observed percentiles (lines) and the simulated
    intervals of the same percentiles (shaded), sizes relative to the first measurement on a
    log axis. Bin edges are ticks along the top (gid "vpc-bin")."""
    from .plots import ALERT_COLOUR, OBSERVED_COLOUR, _figure

    fig = _figure(9.5, 5.6)
    ax = fig.subplots()
    with np.errstate(over="ignore"):
        ratio = np.exp(bands.value)
        obs_q, sim_q = np.exp(bands.observed), np.exp(bands.simulated)
    ok = ~bands.censored & np.isfinite(ratio)
    ax.scatter(
        bands.tau[ok], ratio[ok], s=11, color=POINT_COLOUR, alpha=0.45, lw=0, zorder=2,
        label="measurements",
    )  # fmt: skip
    cens = bands.censored & np.isfinite(ratio)
    if cens.any():
        ax.scatter(
            bands.tau[cens], ratio[cens], s=22, marker="v", facecolors="white",
            edgecolors=POINT_COLOUR, linewidths=1.0, zorder=2,
            label="below detection limit (at the limit; not in the percentiles)",
        )  # fmt: skip
    pct = int(round(100 * bands.level))
    outer_labelled = False
    for k, q in enumerate(bands.quantiles):
        median = abs(q - 0.5) < 1e-9
        colour = MEDIAN_COLOUR if median else BAND_COLOUR
        if median:
            band_label, line_label = f"simulated {pct}% interval of the median", "observed median"
        elif not outer_labelled:
            outer = _outer_words(bands.quantiles)
            band_label = f"simulated {pct}% intervals of the {outer}"
            line_label = f"observed {outer}"
            outer_labelled = True
        else:
            band_label = line_label = ""
        ax.fill_between(
            bands.time, sim_q[:, k, 0], sim_q[:, k, 2], color=colour, alpha=0.22, lw=0, zorder=1,
            label=band_label or None,
        )  # fmt: skip
        ax.plot(
            bands.time, obs_q[:, k], color=OBSERVED_COLOUR if median else colour,
            ls="-" if median else "--", lw=2.0 if median else 1.5, marker="o", ms=4, zorder=4,
            label=line_label or None,
        )  # fmt: skip
    out = bands.outside()
    if out.any():
        rows, cols = np.nonzero(out)
        ax.scatter(
            bands.time[rows], obs_q[rows, cols], s=110, facecolors="none", edgecolors=ALERT_COLOUR,
            linewidths=2.0, zorder=5, label=f"observed percentile outside its {pct}% interval",
        )  # fmt: skip
    ticks = ax.vlines(
        bands.edges, 0.96, 1.0, transform=ax.get_xaxis_transform(), colors="#555555", lw=1.2,
        zorder=3,
    )  # fmt: skip
    ticks.set_gid("vpc-bin")
    ax.axhline(1.0, color="#999999", lw=0.8, zorder=0)
    ax.set_yscale("log")
    _log_ticks(ax, "y")
    ax.grid(True, color="#dddddd", lw=0.6, zorder=0)
    ax.set_axisbelow(True)
    ax.set_xlabel("Time since first measurement (days)")
    ax.set_ylabel(f"{kind_label} relative to first measurement (ratio, log scale)")
    _legend_below(fig, [ax], ncols=2)
    return fig


def gof_figure(fit: IndividualFit, unit: str = "", error_model: str = "proportional") -> Figure:
    """Goodness of fit: measurements against individual predictions (log-log, identity line),
    and standardised residuals against time with lines at +-1.96."""
    from .plots import OBSERVED_COLOUR, _figure

    fig = _figure(11.5, 5.0)
    ax1, ax2 = fig.subplots(1, 2)
    cens = fit.censored
    pos = (fit.observed > 0) & (fit.predicted > 0) & np.isfinite(fit.predicted)
    ok, low = pos & ~cens, pos & cens
    ax1.scatter(
        fit.predicted[ok], fit.observed[ok], s=16, color=OBSERVED_COLOUR, alpha=0.7, lw=0,
        zorder=3, label="measurement",
    )  # fmt: skip
    ax2.scatter(
        fit.tau[ok], fit.residual[ok], s=16, color=OBSERVED_COLOUR, alpha=0.7, lw=0, zorder=3
    )
    if low.any():
        kw: dict[str, Any] = {
            "s": 30, "marker": "v", "facecolors": "white", "edgecolors": OBSERVED_COLOUR,
            "linewidths": 1.2, "zorder": 4,
        }  # fmt: skip
        ax1.scatter(
            fit.predicted[low],
            fit.observed[low],
            label="below detection limit (at the limit)",
            **kw,
        )
        ax2.scatter(fit.tau[low], fit.residual[low], **kw)
    if pos.any():
        lo = float(min(fit.predicted[pos].min(), fit.observed[pos].min())) / 1.3
        hi = float(max(fit.predicted[pos].max(), fit.observed[pos].max())) * 1.3
        ax1.plot([lo, hi], [lo, hi], color="#555555", ls="--", lw=1.2, zorder=2, label="identity")
        ax1.set_xlim(lo, hi)
        ax1.set_ylim(lo, hi)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    _log_ticks(ax1, "x")
    _log_ticks(ax1, "y")
    u = f"{unit}, log scale" if unit else "log scale"
    ax1.set_xlabel(f"Individual prediction ({u})")
    ax1.set_ylabel(f"Measurement ({u})")
    ax1.set_title("Measurements against individual predictions", loc="left", fontsize=11)
    ax2.axhline(0.0, color="#555555", lw=1.0, zorder=1)
    for sign in (-1, 1):
        ax2.axhline(
            sign * RESIDUAL_LIMIT, color=MEDIAN_COLOUR, ls="--", lw=1.2, zorder=1,
            label=f"±{RESIDUAL_LIMIT} (95% of residuals expected inside)" if sign > 0 else None,
        )  # fmt: skip
    finite = fit.residual[np.isfinite(fit.residual)]
    top = max(3.0, float(np.max(np.abs(finite))) * 1.1 if finite.size else 3.0)
    ax2.set_ylim(-top, top)
    ax2.set_xlabel("Time since first measurement (days)")
    what = (
        "log(measured / predicted) / σ"
        if error_model == "proportional"
        else "(measured − predicted) / SD"
    )
    ax2.set_ylabel(f"Standardised residual, {what} (no unit)")
    ax2.set_title("Residuals against time", loc="left", fontsize=11)
    for ax in (ax1, ax2):
        ax.grid(True, color="#dddddd", lw=0.6, zorder=0)
        ax.set_axisbelow(True)
    _legend_below(fig, [ax1, ax2], ncols=4)
    return fig


# ---- page ------------------------------------------------------------------------------------
_SECTIONS = (
    ("reading", "How to read"),
    ("parameters", "Parameters"),
    ("vpc", "Predictive check"),
    ("gof", "Goodness of fit"),
    ("provenance", "Provenance"),
)


def _fit_words(pop: Population) -> tuple[bool, str, list[str]]:
    """(ok, what was done and found in plain words, problems)."""
    d = pop.diagnostics
    st = pop.settings
    problems = d.problems()
    if d.method == "nuts":
        done = (
            "Full Bayesian sampling (NUTS, non-centred random effects): "
            f"{d.chains} chains × {fmt_int(st.get('draws'))} draws after "
            f"{fmt_int(st.get('warmup'))} warm-up steps."
        )
        if problems:
            return False, done, problems
        div = "no divergent transitions" if not d.divergences else f"{d.divergences} divergences"
        found = (
            f"The chains agreed (R-hat {d.rhat_max:.3f} ≤ {RHAT_MAX}); "
            f"{fmt_int(d.ess_bulk_min)} effective draws (tails: {fmt_int(d.ess_tail_min)}; at "
            f"least {fmt_int(ESS_MIN_PER_CHAIN * d.chains)} needed); {div}."
        )
        return True, f"{done} {found}", []
    if d.method == "svi":
        done = (
            "Variational approximation (SVI with a correlated Normal approximation of the "
            f"posterior, {fmt_int(st.get('steps'))} optimisation steps, "
            f"{fmt_int(st.get('draws', pop.mu.shape[0]))} draws): fast, but it can understate "
            "the uncertainty of the population parameters."
        )
        if problems:
            return False, done, problems
        return True, f"{done} The optimisation settled (its objective stopped changing).", []
    done = f"Method {d.method}: {fmt_int(pop.mu.shape[0])} draws."
    return not problems, done, problems


def _alarm(problems: Sequence[str]) -> str:
    if not problems:
        return ""
    items = "".join(f"<li>{_e(p)}</li>" for p in problems)
    return (
        '<div class="alarm" role="alert" id="calibration-warning">'
        '<p class="big">⚠ THE POPULATION FIT DID NOT CONVERGE — its typical values, spreads '
        "and the priors it gives new patients must not be used.</p>"
        "<p>The statistical fit failed its checks, so the numbers and figures below may be wrong. "
        "They are shown for audit only.</p>"
        f"<p>What went wrong:</p><ul>{items}</ul>"
        "<p>What to do: refit with more warm-up and draws (or NUTS instead of SVI) and check the "
        "data for errors.</p></div>"
    )


def _header(
    pop: Population, subjects: Sequence[SubjectData], title: str, generated: str, fit_ok: bool,
    fit_words: str,
) -> str:  # fmt: skip
    n_obs = sum(len(s.times) for s in subjects)
    n_cens = int(sum(int(np.sum(s.censored)) for s in subjects))
    eq = _model_attr(pop.model, "equation")
    model = f"{_model_title(pop.model)} ({pop.model})" + (f": {eq}" if eq else "")
    data = (
        f"{len(pop.subjects)} subjects fitted; {len(subjects)} shown with {n_obs} measurements "
        f"of {_kind_label(subjects).lower()} ({_data_unit(subjects)})"
        + (f", {n_cens} below the detection limit" if n_cens else "")
    )
    covs = ", ".join(pop.covariates) if pop.covariates else "none"
    rows = [
        ("Model", _e(model)),
        ("Error model", _e(pop.error_model)),
        ("Subjects", _e(data)),
        ("Covariates", _e(covs)),
        ("Fitted by", _e(pop.method.upper())),
        ("Fit checks", f"{_badge(fit_ok)} {_e(fit_words)}"),
        ("Source", _e(pop.source)),
        ("Report generated", _e(generated)),
    ]
    meta = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<header><h1>{_e(title)}</h1><dl class="meta">{meta}</dl></header>'


def _toc(sections: Sequence[str]) -> str:
    present = [
        (a, t) for a, t in _SECTIONS if any(f'<section id="{a}"' in part for part in sections)
    ]
    links = " ".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in present)
    return f'<nav class="toc" aria-label="Sections">{links}</nav>'


def _reading_section() -> str:
    return (
        '<section id="reading"><h2>How to read this page</h2>'
        "<p>A population model describes a whole cohort: a <strong>typical value</strong> of each "
        "parameter (the value of a typical patient) and a <strong>between-subject SD</strong> "
        "(how much patients differ from it, on the log scale: an SD of 0.3 means values typically "
        "differ by a factor of about 1.35). The <strong>predictive check</strong> asks whether "
        "cohorts simulated from the model look like the real one: the observed lines should run "
        "inside the shaded bands of the same colour, without a trend to one side. The "
        "<strong>goodness-of-fit</strong> plots ask whether each patient's fitted curve passes "
        "through that patient's measurements: points near the identity line, residuals scattered "
        "evenly around zero, about 95% of them between the dashed lines. A few points outside "
        "are expected by chance; a pattern (a run of points on one side, a trend in time) "
        "means the model misses something.</p></section>"
    )


def _parameters_section(pop: Population) -> str:
    from ..models import get_model
    from ..observe import get_error_model

    m, err = get_model(pop.model), get_error_model(pop.error_model)
    summary = pop.summary()
    rows = []
    for p in m.params + err.params:
        q = summary[p.name]
        typical = q["typical"]
        if p.scale == "size":
            unit = "× reference size (the subject's first measurement)"
        else:
            unit = pretty_unit(p.unit) or "dimensionless"
        if "omega" in q:
            om = q["omega"]
            scale = "logit" if p.logistic else "log"
            spread = f"{fmt_num(om[0])} ({fmt_interval(om[1], om[2])}) on the {scale} scale"
            if not p.logistic:
                spread += f"; typical factor ×{fmt_num(np.exp(om[0]), 3)}"
        elif q.get("pooled") is False:
            spread = "not pooled: each patient's own, with its default prior"
        else:
            spread = "shared by the cohort"
        rows.append(
            [
                f"<code>{_e(p.name)}</code>", _e(p.description), _e(unit), _e(fmt_num(typical[0])),
                _e(fmt_interval(typical[1], typical[2])), _e(spread),
            ]
        )  # fmt: skip
    parts = ['<section id="parameters"><h2>Population parameters</h2>']
    parts.append(
        '<p class="sub">Posterior medians and 90% credible intervals. Typical value: the '
        "parameter of a typical patient (at the cohort's average covariates). Between-subject SD: "
        "the spread of the parameter across patients, on the scale the model works on.</p>"
    )
    parts.append(
        _table(
            ["Parameter", "Meaning", "Unit", "Typical value (median)", "90% credible interval",
             "Between-subject SD (90% interval)"],
            rows,
            caption=f"Typical values and between-subject spread of the {m.title} model",
            numeric=(3, 4),
        )
    )  # fmt: skip
    pooled = [i for i, n in enumerate(m.param_names) if n not in pop.unpooled]
    names = [m.param_names[i] for i in pooled]
    if len(names) > 1:
        corr = pop.correlation()
        crow = [
            [f"<code>{_e(m.param_names[i])}</code>"] + [_e(fmt_num(corr[i, j], 2)) for j in pooled]
            for i in pooled
        ]
        parts.append(
            _table(
                ["", *names],
                crow,
                caption="Correlation of the random effects (posterior mean)",
                numeric=tuple(range(1, len(names) + 1)),
            )
        )
        parts.append(
            '<p class="sub">A correlation near +1 (or −1) means patients with a high value of '
            "one parameter tend to have a high (or low) value of the other; near 0, no link.</p>"
        )
    if pop.covariates:
        brow = [
            [_e(cov), f"<code>{_e(name)}</code>", _e(fmt_num(e[0])), _e(fmt_interval(e[1], e[2]))]
            for name in names
            for cov, e in summary[name]["effects"].items()
        ]
        parts.append(
            _table(
                ["Covariate", "Parameter", "Effect (median)", "90% credible interval"],
                brow,
                caption="Covariate effects: change of the parameter on its log scale (logit for "
                "bounded parameters) per unit of the covariate; for an indicator such as arm=S, "
                "that level against the reference level",
                numeric=(2, 3),
            )
        )
    parts.append("</section>")
    return "".join(parts)


def _vpc_section(bands: VPCBands, subjects: Sequence[SubjectData]) -> str:
    pct = int(round(100 * bands.level))
    out = bands.outside()
    shown = int(np.sum(np.isfinite(bands.observed) & np.isfinite(bands.simulated[..., 0])))
    n_out = int(out.sum())
    verdict = (
        f"{n_out} of {shown} observed percentiles (median, {_outer_words(bands.quantiles)}; "
        f"in {len(bands.time)} time bins) lie "
        f"outside their simulated {pct}% interval; about {100 - pct}% would by chance alone"
        + (" (circled in red in the figure)." if n_out else ".")
    )
    kind = _kind_label(subjects)
    alt = (
        f"Visual predictive check: {kind.lower()} relative to each subject's first measurement "
        "(log scale) against days since that measurement; observed percentiles as lines over "
        f"shaded simulated {pct}% intervals in {len(bands.time)} time bins. {verdict}"
    )
    caption = (
        f"Grey dots: measurements, as a ratio to the subject's first measurement (that "
        "reference measurement is 1 by definition and not shown), so subjects of different "
        "sizes can be compared. Black line: observed median; dashed blue lines: observed "
        f"{_outer_words(bands.quantiles)} in each "
        f"time bin (bin edges: ticks along the top). Shaded: where {pct}% of the same percentiles "
        f"fall in {bands.n_sim} cohorts simulated from the fitted population at the same "
        "measurement times (a posterior draw, new random effects for every subject, measurement "
        "error added); orange for the median, blue for the outer percentiles. If the model "
        "describes the cohort, each line stays inside the band of its colour."
    )
    if bands.censored.any():
        caption += (
            " Open triangles: measurements below the detection limit, drawn at the limit and "
            "left out of the percentiles; simulated values below a subject's limit are left out "
            "the same way."
        )
    if bands.typical_covariates:
        caption += (
            " The simulations use the typical (average) covariate values for every subject, "
            "as the subjects' own covariates were not given."
        )
    if bands.prediction_corrected:
        caption += (
            " Prediction-corrected: every value, observed and simulated, is moved by the "
            "typical prediction of its time bin minus the typical prediction for its own time, "
            "schedule and covariates, so that a bin's measurements compare like with like."
        )
    how = "with" if bands.prediction_corrected else "without"
    fig = vpc_figure(bands, kind)
    return (
        '<section id="vpc"><h2>Visual predictive check</h2>'
        f"<p>{_e(verdict)}</p>"
        f"<figure>{_img(fig, alt, dpi=100)}<figcaption>{_e(caption)}</figcaption></figure>"
        '<p class="sub">Method: Bergstrand M, Hooker AC, Wallin JE, Karlsson MO. Prediction-'
        "corrected visual predictive checks for diagnosing nonlinear mixed-effects models. AAPS J "
        f"2011;13:143-151 (shown here {how} prediction correction).</p></section>"
    )


def _gof_section(fit: IndividualFit, pop: Population, subjects: Sequence[SubjectData]) -> str:
    if fit.observed.size == 0:
        return (
            '<section id="gof"><h2>Goodness of fit</h2><p>None of the subjects shown was in the '
            "fitted cohort, so there are no individual predictions to compare with.</p></section>"
        )
    within = fit.fraction_within()
    verdict = (
        f"{fmt_pct(within)} of the standardised residuals lie within ±{RESIDUAL_LIMIT} "
        "(about 95% expected when the model and its error model fit)."
    )
    if fit.missing:
        verdict += f" Not in the fitted cohort, so not shown: {', '.join(fit.missing)}."
    unit = _data_unit(subjects)
    alt = (
        f"Goodness-of-fit plots. Left: measurements against individual predictions ({unit}, "
        "log-log) with the identity line. Right: standardised residuals against days since the "
        f"first measurement, with lines at ±{RESIDUAL_LIMIT}. {verdict}"
    )
    resid = (
        "log(measured / predicted) divided by the fitted residual SD σ"
        if pop.error_model == "proportional"
        else "(measured − predicted) divided by the fitted residual SD at that value"
    )
    caption = (
        "Individual prediction: the model curve of that subject at the posterior median of its "
        "parameters, at the time of the measurement. Left: points should scatter around the "
        "dashed identity line, without bending away from it at low or high values. Right: the "
        f"standardised residual is {resid}; residuals should scatter evenly around zero with no "
        f"trend in time, about 95% between the dashed lines at ±{RESIDUAL_LIMIT}. "
        "Each subject's first measurement fixes its reference size, so its residual is usually "
        "near zero."
    )
    if fit.censored.any():
        caption += (
            " Open triangles: measurements below the detection limit, drawn at the limit (the "
            "true value, and residual, is lower); they are not counted in the percentage above."
        )
    fig = gof_figure(fit, _data_unit(subjects), pop.error_model)
    return (
        '<section id="gof"><h2>Goodness of fit</h2>'
        f"<p>{_e(verdict)}</p>"
        f"<figure>{_img(fig, alt, dpi=100)}<figcaption>{_e(caption)}</figcaption></figure>"
        "</section>"
    )


def _provenance_section(
    pop: Population, generated: str, vpc: Mapping[str, Any], provenance: Mapping[str, Any] | None
) -> str:
    cite = _model_attr(pop.model, "citation")
    shown = ", ".join(pop.subjects[:40]) + (
        f" … ({len(pop.subjects)} in all)" if len(pop.subjects) > 40 else ""
    )
    rows: list[tuple[str, str]] = [
        ("Report generated", _e(generated)),
        ("oncotwin version", _e(__version__)),
        ("Source", _e(pop.source)),
        (
            f"Model {pop.model}",
            _e(f"{_model_title(pop.model)}, as implemented in oncotwin {__version__}")
            + (f"<br><span class='sub'>{_e(cite)}</span>" if cite else ""),
        ),
        ("Error model", _e(pop.error_model)),
        ("Method", _e(pop.method)),
        ("Fit settings", _value("settings", pop.settings)),
        ("Diagnostics", _value("diagnostics", pop.diagnostics.to_dict())),
        ("Posterior draws", _e(fmt_int(pop.mu.shape[0]))),
        ("Fitted subjects", _e(shown or MISSING)),
        ("Predictive check", _value("vpc", dict(vpc))),
    ]
    rows += [(_label(k), _value(k, v)) for k, v in (provenance or {}).items()]
    table = _table(
        ["Item", "Value"], [[_e(k), v] for k, v in rows], caption="How this report was made"
    )
    return f'<section id="provenance"><h2>Provenance</h2>{table}</section>'


def population_report(
    pop: Population,
    subjects: Sequence[SubjectData],
    *,
    title: str | None = None,
    seed: int = 0,
    n_sim: int = 200,
    n_bins: int = VPC_BINS,
    provenance: Mapping[str, Any] | None = None,
    covariates: Mapping[str, Mapping[str, float]] | None = None,
    prediction_corrected: bool = True,
) -> str:
    """A fitted population model's page as self-contained HTML: header with the fit checks
    (a red banner when they failed), parameter tables, a visual predictive check, goodness-of-fit
    plots and provenance.

    Args:
        pop: the fitted population.
        subjects: the cohort's data (usually the subjects it was fitted to).
        title: page title; default "Population model report — <model title>".
        seed: random seed of the predictive-check simulations.
        n_sim: number of simulated cohorts in the predictive check.
        n_bins: number of time bins of the predictive check.
        provenance: extra items for the provenance table.
        covariates: the subjects' covariates for the predictive check, coded as the population
            was fitted (default: typical values).
        prediction_corrected: show the prediction-corrected VPC (default), which compares like
            with like when measurement times, schedules or covariates differ within a bin.

    Returns:
        The HTML text. A red banner opens the page when the fit failed its diagnostics.

    Raises:
        ValueError: no subjects, or none with a measurement besides its reference one.
    """
    title = title or f"Population model report — {_model_title(pop.model)}"
    generated = _now()
    ok, words, problems = _fit_words(pop)
    bands = vpc_bands(pop, subjects, n_sim=n_sim, n_bins=n_bins, seed=seed, covariates=covariates,
                      prediction_corrected=prediction_corrected)  # fmt: skip
    fit = individual_fit(pop, subjects)
    vpc_settings = {
        "simulated cohorts": n_sim, "seed": seed, "time bins": len(bands.time),
        "prediction-corrected": prediction_corrected,
        "percentiles": list(bands.quantiles), "interval": bands.level,
    }  # fmt: skip
    sections = [
        _reading_section(),
        _parameters_section(pop),
        _vpc_section(bands, subjects),
        _gof_section(fit, pop, subjects),
        _provenance_section(pop, generated, vpc_settings, provenance),
    ]
    body = [
        _alarm(problems),
        "<main>",
        _header(pop, subjects, title, generated, ok, words),
        _toc(sections),
        *sections,
        f"<footer>oncotwin {_e(__version__)} · a research tool; population estimates support, "
        "and do not replace, clinical judgement.</footer>",
        "</main>",
    ]
    return _page(title, "\n".join(b for b in body if b))


def write_population_report(
    path: str | Path, pop: Population, subjects: Sequence[SubjectData], **kwargs: Any
) -> Path:
    """Write :func:`population_report` to `path` (UTF-8); `kwargs` as for
    :func:`population_report`."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(population_report(pop, subjects, **kwargs), encoding="utf-8")
    return out
