"""Trial analysis: Kaplan-Meier, log-rank, Cox hazard ratios, ORR differences, power by
simulation, and prognostic-score (PROCOVA-style) covariate adjustment.

The estimators are written here in vectorised NumPy because power and type-I error are
estimated over thousands of replicate trials; each is checked against lifelines on the same
data in the tests (``tests/trials/test_analysis.py``), and :func:`analyse_trial` can fit the
Cox models with lifelines itself (``backend="lifelines"``).

- Kaplan-Meier with the exponential Greenwood (log(-log)) confidence interval, as lifelines;
- log-rank test (Mantel-Haenszel variance with ties);
- Cox proportional hazards by Newton-Raphson on the Efron partial likelihood (lifelines'
  default ties method), Wald confidence intervals;
- ORR difference with the Newcombe hybrid-score interval (Newcombe RG. Stat Med
  1998;17:873-890, method 10);
- prognostic covariate adjustment: the twin's forecast under control enters as a covariate,
  ANCOVA for a continuous endpoint and Cox for time to event (Schuler A et al. Int J Biostat
  2022;18:329-356, PROCOVA; EMA qualification opinion 2022). The sample size an adjusted
  analysis needs for the same precision is n (1 - rho^2) for ANCOVA, rho the correlation of
  score and outcome; here it is measured as the ratio of the variances of the estimates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri
from scipy.stats import chi2
from scipy.stats import t as student_t

from ..errors import CalibrationError, DataError
from .design import TrialDesign
from .run import TrialResult

__all__ = [
    "CoxResult",
    "KaplanMeier",
    "TrialAnalysis",
    "analyse_trial",
    "cox_ph",
    "kaplan_meier",
    "logrank",
    "orr_difference",
    "power_curve",
    "prognostic_adjustment",
    "replicate_estimates",
    "sample_size_for_power",
]

Z975 = float(ndtri(0.975))


# ------------------------------------------------------------------------------- estimators


@dataclass(frozen=True)
class KaplanMeier:
    """Kaplan-Meier estimate at each distinct time (days) with a 95% interval."""

    times: np.ndarray
    survival: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray

    @property
    def median(self) -> float:
        """Smallest time with survival <= 0.5 (inf when not reached)."""
        hit = np.nonzero(self.survival <= 0.5)[0]
        return float(self.times[hit[0]]) if hit.size else float("inf")

    def at(self, t: float) -> float:
        """Survival probability at time `t` (days)."""
        i = np.searchsorted(self.times, t, side="right") - 1
        return 1.0 if i < 0 else float(self.survival[i])


def _check(time: Any, event: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(time, dtype=float).ravel()
    e = np.asarray(event).astype(bool).ravel()
    if t.shape != e.shape or t.size == 0:
        raise DataError(f"time and event must be non-empty and of one length: {t.shape}, {e.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise DataError("times must be finite and >= 0")
    return t, e


def kaplan_meier(time: Any, event: Any, *, level: float = 0.95) -> KaplanMeier:
    """Kaplan-Meier survival curve (Kaplan EL, Meier P. JASA 1958;53:457-481).

    Args:
        time: follow-up times, days.
        event: 1 for an event, 0 for censoring.
        level: confidence level of the exponential-Greenwood interval.
    """
    t, e = _check(time, event)
    uniq, inv = np.unique(t, return_inverse=True)
    d = np.bincount(inv, weights=e, minlength=uniq.size)
    c = np.bincount(inv, minlength=uniq.size)
    n = t.size - np.concatenate([[0], np.cumsum(c)[:-1]])
    s = np.cumprod(1.0 - d / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        gw = np.cumsum(np.where(n > d, d / (n * (n - d)), 0.0))
        z = float(ndtri(0.5 + level / 2))
        v = np.sqrt(gw) / np.abs(np.log(s))
        lls = np.log(-np.log(s))
        lo = np.exp(-np.exp(lls + z * v))
        hi = np.exp(-np.exp(lls - z * v))
    lo = np.where(np.isfinite(lo), lo, np.where(s > 0, 1.0, 0.0))
    hi = np.where(np.isfinite(hi), hi, np.where(s > 0, 1.0, 0.0))
    return KaplanMeier(uniq, s, lo, hi, n.astype(int), d.astype(int))


def logrank(time: Any, event: Any, group: Any) -> tuple[float, float]:
    """Two-sample log-rank test: (chi-square statistic, p-value).

    Args:
        time, event: as :func:`kaplan_meier`.
        group: 0/1 (or boolean) group membership.
    """
    t, e = _check(time, event)
    g = np.asarray(group).astype(bool).ravel()
    uniq, inv = np.unique(t, return_inverse=True)
    d = np.bincount(inv, weights=e, minlength=uniq.size)
    d1 = np.bincount(inv, weights=e & g, minlength=uniq.size)
    c = np.bincount(inv, minlength=uniq.size)
    c1 = np.bincount(inv, weights=g, minlength=uniq.size)
    n = t.size - np.concatenate([[0], np.cumsum(c)[:-1]])
    n1 = g.sum() - np.concatenate([[0], np.cumsum(c1)[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        exp1 = d * n1 / n
        var = np.where(n > 1, d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1), 0.0)
    v = float(np.sum(var))
    if not v > 0:
        return 0.0, 1.0
    stat = float((d1.sum() - exp1.sum()) ** 2 / v)
    return stat, float(chi2.sf(stat, 1))


@dataclass(frozen=True)
class CoxResult:
    """Cox model fit: coefficients (log hazard ratios), standard errors, 95% intervals."""

    coef: np.ndarray
    se: np.ndarray
    loglik: float
    converged: bool
    iterations: int

    @property
    def hr(self) -> np.ndarray:
        return np.exp(self.coef)

    @property
    def lower(self) -> np.ndarray:
        return np.exp(self.coef - Z975 * self.se)

    @property
    def upper(self) -> np.ndarray:
        return np.exp(self.coef + Z975 * self.se)

    @property
    def p(self) -> np.ndarray:
        """Two-sided Wald p-values."""
        return 2.0 * ndtr(-np.abs(self.coef / self.se))


def _efron(t: np.ndarray, e: np.ndarray, x: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:  # fmt: skip
    """Efron log partial likelihood, gradient and Hessian (data sorted by time)."""
    eta = x @ b
    w = np.exp(eta - eta.max())
    wx = w[:, None] * x
    wxx = wx[:, :, None] * x[:, None, :]
    s0 = np.cumsum(w[::-1])[::-1]
    s1 = np.cumsum(wx[::-1], axis=0)[::-1]
    s2 = np.cumsum(wxx[::-1], axis=0)[::-1]
    first = np.searchsorted(t, t, side="left")
    ev = np.nonzero(e)[0]
    te = t[ev]
    grp_start = np.searchsorted(te, te, side="left")
    grp_end = np.searchsorted(te, te, side="right")
    dcount = grp_end - grp_start
    rank = np.arange(ev.size) - grp_start
    a = rank / dcount
    # Sums over the tied events of each group (cumulative sums over the events in order).
    cw = np.concatenate([[0.0], np.cumsum(w[ev])])
    cwx = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(wx[ev], axis=0)])
    cwxx = np.concatenate([np.zeros((1, *wxx.shape[1:])), np.cumsum(wxx[ev], axis=0)])
    t0 = cw[grp_end] - cw[grp_start]
    t1 = cwx[grp_end] - cwx[grp_start]
    t2 = cwxx[grp_end] - cwxx[grp_start]
    r = first[ev]
    den = s0[r] - a * t0
    num1 = s1[r] - a[:, None] * t1
    num2 = s2[r] - a[:, None, None] * t2
    mean = num1 / den[:, None]
    ll = float(np.sum(eta[ev] - eta.max()) - np.sum(np.log(den)))
    grad = x[ev].sum(axis=0) - mean.sum(axis=0)
    hess = -(np.sum(num2 / den[:, None, None], axis=0) - np.einsum("ip,iq->pq", mean, mean))
    return ll, grad, hess


def cox_ph(time: Any, event: Any, covariates: Any, *, max_iter: int = 50, tol: float = 1e-10) -> CoxResult:  # fmt: skip
    """Cox proportional-hazards fit (Efron ties) by Newton-Raphson with step halving.

    Args:
        time, event: as :func:`kaplan_meier`.
        covariates: (n,) or (n, p) covariate values (e.g. arm indicator, prognostic score).

    Raises:
        DataError: mismatched shapes or no events.
        CalibrationError: the Hessian is singular (e.g. a covariate that is constant).
    """
    t, e = _check(time, event)
    x = np.asarray(covariates, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    if x.shape[0] != t.size or not np.all(np.isfinite(x)):
        raise DataError(f"covariates must be finite with {t.size} rows, got {x.shape}")
    if not e.any():
        raise DataError("no events: a Cox model cannot be fitted")
    order = np.argsort(t, kind="stable")
    t, e, x = t[order], e[order], x[order] - x.mean(axis=0)
    b = np.zeros(x.shape[1])
    ll, g, h = _efron(t, e, x, b)
    converged, iterations = False, 0
    for it in range(1, max_iter + 1):
        iterations = it
        try:
            step = np.linalg.solve(-h, g)
        except np.linalg.LinAlgError:
            raise CalibrationError("Cox model: singular information matrix") from None
        scale = 1.0
        while True:
            nb = b + scale * step
            nll, ng, nh = _efron(t, e, x, nb)
            if nll >= ll - 1e-12 or scale < 1e-6:
                break
            scale /= 2
        done = abs(nll - ll) < tol and np.max(np.abs(nb - b)) < 1e-7
        b, ll, g, h = nb, nll, ng, nh
        if done:
            converged = True
            break
    try:
        cov = np.linalg.inv(-h)
    except np.linalg.LinAlgError:
        raise CalibrationError("Cox model: singular information matrix") from None
    return CoxResult(b, np.sqrt(np.maximum(np.diag(cov), 0.0)), ll, converged, iterations)


def ols(y: Any, x: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Least squares with intercept: coefficients (intercept first), SEs, residual df."""
    y = np.asarray(y, float)
    X = np.column_stack([np.ones(y.size), np.asarray(x, float).reshape(y.size, -1)])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    df = y.size - X.shape[1]
    resid = y - X @ coef
    s2 = float(resid @ resid) / max(df, 1)
    cov = s2 * np.linalg.pinv(X.T @ X)
    return coef, np.sqrt(np.diag(cov)), df


def _wilson(k: float, n: float) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + Z975**2 / n
    c = (p + Z975**2 / (2 * n)) / den
    h = Z975 * np.sqrt(p * (1 - p) / n + Z975**2 / (4 * n * n)) / den
    return c - h, c + h


def orr_difference(responders_a: Any, responders_b: Any) -> tuple[float, float, float]:
    """ORR(b) - ORR(a) with the Newcombe hybrid-score 95% interval: (difference, low, high)."""
    a = np.asarray(responders_a).astype(bool)
    b = np.asarray(responders_b).astype(bool)
    if a.size == 0 or b.size == 0:
        raise DataError("both groups need patients for an ORR difference")
    p1, p2 = a.mean(), b.mean()
    l1, u1 = _wilson(a.sum(), a.size)
    l2, u2 = _wilson(b.sum(), b.size)
    diff = p2 - p1
    lo = diff - np.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    hi = diff + np.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return float(diff), float(lo), float(hi)


# ---------------------------------------------------------------------------- one trial


@dataclass(frozen=True)
class TrialAnalysis:
    """Summary of one simulated trial (replicate): per arm and per comparison with control."""

    arms: pd.DataFrame
    comparisons: pd.DataFrame
    km: dict[str, dict[str, KaplanMeier]]
    replicate: int


def _evaluable(result: TrialResult, replicate: int | None) -> pd.DataFrame:
    p = result.patients
    if replicate is not None:
        p = p[p["replicate"] == replicate]
    return p[p["status"] == "ok"]


def analyse_trial(result: TrialResult, *, replicate: int = 0, backend: str = "numpy") -> TrialAnalysis:  # fmt: skip
    """Per-arm summaries and each arm against the first (control): HRs for PFS and OS with
    95% CIs and log-rank p, ORR difference, mean % change at the landmark, toxicity rates.

    Args:
        result: a simulated trial.
        replicate: which replicate to analyse.
        backend: "numpy" (this module's estimators) or "lifelines" (CoxPHFitter).
    """
    p = _evaluable(result, replicate)
    names = [a.name for a in result.design.arms]
    rows, comps = [], []
    km: dict[str, dict[str, KaplanMeier]] = {"pfs": {}, "os": {}}
    for name in names:
        q = p[p["arm"] == name]
        row: dict[str, Any] = {"arm": name, "n": len(q)}
        if len(q):
            for ep in ("pfs", "os"):
                km[ep][name] = kaplan_meier(q[f"{ep}_time"], q[f"{ep}_event"])
                row[f"median_{ep}_days"] = km[ep][name].median
            row["orr"] = float(q["responder"].mean())
            row["orr_ci"] = _wilson(float(q["responder"].sum()), len(q))
            row["mean_pct_change"] = (
                float(np.nanmean(q["pct_change"]))
                if q["pct_change"].notna().any()
                else float("nan")
            )
            row["ntcp_rate"] = float(q["ntcp_event"].mean())
            if "neutropenia_g3" in q:
                row["neutropenia_g3_rate"] = float(q["neutropenia_g3"].mean())
            for r in ("CR", "PR", "SD", "PD", "NE"):
                row[f"bor_{r}"] = int((q["bor"] == r).sum())
        rows.append(row)
    ctrl = p[p["arm"] == names[0]]
    for name in names[1:]:
        q = p[p["arm"] == name]
        both = pd.concat([ctrl, q])
        g = (both["arm"] == name).to_numpy().astype(float)
        comp: dict[str, Any] = {"arm": name, "versus": names[0]}
        for ep in ("pfs", "os"):
            t, e = both[f"{ep}_time"].to_numpy(), both[f"{ep}_event"].to_numpy()
            if e.any() and 0 < g.sum() < g.size:
                fit = _cox(t, e, g, backend)
                comp.update({f"hr_{ep}": fit[0], f"hr_{ep}_low": fit[1], f"hr_{ep}_high": fit[2],
                             f"p_{ep}": fit[3], f"logrank_p_{ep}": logrank(t, e, g)[1]})  # fmt: skip
        if len(ctrl) and len(q):
            d, lo, hi = orr_difference(ctrl["responder"], q["responder"])
            comp.update({"orr_diff": d, "orr_diff_low": lo, "orr_diff_high": hi})
        comps.append(comp)
    return TrialAnalysis(pd.DataFrame(rows), pd.DataFrame(comps), km, replicate)


def _cox(t: np.ndarray, e: np.ndarray, g: np.ndarray, backend: str) -> tuple[float, float, float, float]:  # fmt: skip
    if backend == "lifelines":
        from lifelines import CoxPHFitter

        df = pd.DataFrame({"t": t, "e": e.astype(int), "g": g})
        f = CoxPHFitter().fit(df, "t", "e")
        s = f.summary.loc["g"]
        return (float(s["exp(coef)"]), float(s["exp(coef) lower 95%"]),
                float(s["exp(coef) upper 95%"]), float(s["p"]))  # fmt: skip
    if backend != "numpy":
        raise DataError(f"unknown analysis backend {backend!r}; use 'numpy' or 'lifelines'")
    r = cox_ph(t, e, g)
    return float(r.hr[0]), float(r.lower[0]), float(r.upper[0]), float(r.p[0])


# ------------------------------------------------------------------- replicates and power


def replicate_estimates(result: TrialResult, *, arm: int = 1, endpoint: str | None = None) -> pd.DataFrame:  # fmt: skip
    """One row per replicate: the primary endpoint's estimate of `arm` against control.

    Columns: estimate (log HR for pfs/os, ORR or mean difference otherwise), se, low, high,
    p (two-sided), n.
    """
    d = result.design
    endpoint = endpoint or d.endpoints.primary
    names = [a.name for a in d.arms]
    if not 0 < arm < len(names):
        raise DataError(f"arm must index an experimental arm (1..{len(names) - 1}), got {arm}")
    p = result.patients
    p = p[(p["status"] == "ok") & p["arm"].isin([names[0], names[arm]])]
    rows = []
    for r, q in p.groupby("replicate", sort=True):
        g = (q["arm"] == names[arm]).to_numpy().astype(float)
        rows.append({"replicate": r, "n": len(q), **_estimate(q, g, endpoint)})
    return pd.DataFrame(rows)


def _estimate(q: pd.DataFrame, g: np.ndarray, endpoint: str, score: str | None = None) -> dict[str, float]:  # fmt: skip
    nan = {"estimate": np.nan, "se": np.nan, "low": np.nan, "high": np.nan, "p": np.nan}
    if not 0 < g.sum() < g.size:
        return nan
    if endpoint in ("pfs", "os"):
        t, e = q[f"{endpoint}_time"].to_numpy(), q[f"{endpoint}_event"].to_numpy()
        if not e.any():
            return nan
        x = g if score is None else np.column_stack([g, q[score].to_numpy()])
        try:
            r = cox_ph(t, e, x)
        except CalibrationError:
            return nan
        b, se = float(r.coef[0]), float(r.se[0])
        return {"estimate": b, "se": se, "low": b - Z975 * se, "high": b + Z975 * se,
                "p": float(2 * ndtr(-abs(b / se)))}  # fmt: skip
    if endpoint == "orr":
        d, lo, hi = orr_difference(q["responder"][g == 0], q["responder"][g == 1])
        se = (hi - lo) / (2 * Z975)
        return {"estimate": d, "se": se, "low": lo, "high": hi,
                "p": float(2 * ndtr(-abs(d / se))) if se > 0 else 1.0}  # fmt: skip
    y = q[endpoint].to_numpy(dtype=float)
    keep = np.isfinite(y)
    x = g if score is None else np.column_stack([g, q[score].to_numpy(dtype=float)])
    keep &= np.all(np.isfinite(x.reshape(len(y), -1)), axis=1)
    if keep.sum() < 4 or not 0 < g[keep].sum() < keep.sum():
        return nan
    coef, se_all, df = ols(y[keep], x[keep] if x.ndim == 1 else x[keep])
    b, se = float(coef[1]), float(se_all[1])
    tq = float(student_t.ppf(0.975, df))
    return {"estimate": b, "se": se, "low": b - tq * se, "high": b + tq * se,
            "p": float(2 * student_t.sf(abs(b / se), df))}  # fmt: skip


def rejection_rate(estimates: pd.DataFrame, alpha: float) -> tuple[float, float]:
    """Fraction of replicates with p < alpha and its Monte Carlo standard error."""
    p = estimates["p"].to_numpy()
    p = p[np.isfinite(p)]
    if p.size == 0:
        return float("nan"), float("nan")
    r = float(np.mean(p < alpha))
    return r, float(np.sqrt(r * (1 - r) / p.size))


def power_curve(
    design: TrialDesign, sizes: Sequence[int], *, replicates: int = 200, seed: int | None = None,
    arm: int = 1, run: Callable[..., TrialResult] | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None, **run_kwargs: Any,
) -> pd.DataFrame:  # fmt: skip
    """Power of the primary analysis by repeated simulation of the whole trial.

    Args:
        design: the design (its primary endpoint and alpha are used).
        sizes: total patients per trial to try.
        replicates: simulated trials per size.
        seed: random seed (default the design's); each size uses it, so curves are smooth.
        arm: experimental arm compared with the control (arm 0).
        run: trial runner (default :func:`oncotwin.trials.run.run_trial`), e.g. with a Dask
            executor bound in.
        progress: progress callback; run_kwargs: passed to the runner.

    Returns:
        One row per size: n, power, mc_se (Monte Carlo standard error), replicates, mean
        estimate.
    """
    from .run import run_trial

    runner = run or run_trial
    rows = []
    advance = progress("power curve", len(sizes)) if progress else (lambda k: None)
    for n in sizes:
        res = runner(design, int(n), replicates=replicates, seed=seed, keep_visits=False,
                     **run_kwargs)  # fmt: skip
        est = replicate_estimates(res, arm=arm)
        pw, se = rejection_rate(est, design.endpoints.alpha)
        rows.append({"n": int(n), "power": pw, "mc_se": se, "replicates": replicates,
                     "mean_estimate": float(np.nanmean(est["estimate"]))})  # fmt: skip
        advance(1)
    return pd.DataFrame(rows)


def sample_size_for_power(curve: pd.DataFrame, target: float = 0.8) -> float:
    """Smallest n reaching `target` power, interpolated linearly on the curve (NaN if none)."""
    n, pw = curve["n"].to_numpy(float), curve["power"].to_numpy(float)
    above = np.nonzero(pw >= target)[0]
    if above.size == 0:
        return float("nan")
    i = above[0]
    if i == 0:
        return float(n[0])
    return float(n[i - 1] + (target - pw[i - 1]) * (n[i] - n[i - 1]) / (pw[i] - pw[i - 1]))


def prognostic_adjustment(
    result: TrialResult, *, endpoint: str = "pct_change", arm: int = 1
) -> dict[str, Any]:
    """Unadjusted vs prognostic-score-adjusted analysis over the replicates of a trial.

    The score is each patient's twin forecast under control (``score_pct`` for the % change at
    the landmark, ANCOVA; ``score_os`` — the forecast log survival time — for pfs/os, Cox).

    Returns:
        A dict with per-replicate estimates (``unadjusted``, ``adjusted``), their rejection
        rates with Monte Carlo SEs, the mean variance of the estimate under each analysis,
        ``variance_reduction`` = 1 - var(adjusted)/var(unadjusted) (from the mean squared
        standard errors; ``empirical_variance_reduction`` from the spread of the estimates
        across replicates), and ``sample_size_saved``, the fraction of patients the adjusted
        analysis saves at equal precision: the variance reduction for ANCOVA, and
        1 - 1/efficiency for Cox, where efficiency is the squared ratio of the mean
        z-statistics (NaN when the replicates show no effect, e.g. under the null); with the
        correlation of score and outcome in the control arm.
    """
    d = result.design
    names = [a.name for a in d.arms]
    score = "score_pct" if endpoint not in ("pfs", "os") else "score_os"
    p = result.patients
    p = p[(p["status"] == "ok") & p["arm"].isin([names[0], names[arm]])]
    un, ad = [], []
    for _, q in p.groupby("replicate", sort=True):
        g = (q["arm"] == names[arm]).to_numpy().astype(float)
        un.append(_estimate(q, g, endpoint))
        ad.append(_estimate(q, g, endpoint, score))
    un_df, ad_df = pd.DataFrame(un), pd.DataFrame(ad)
    v_un, v_ad = float(np.nanmean(un_df["se"] ** 2)), float(np.nanmean(ad_df["se"] ** 2))
    e_un, e_ad = float(np.nanvar(un_df["estimate"])), float(np.nanvar(ad_df["estimate"]))
    ctrl = p[p["arm"] == names[0]]
    y = ctrl[endpoint if endpoint not in ("pfs", "os") else f"{endpoint}_time"].to_numpy(float)
    s = ctrl[score].to_numpy(float)
    ok = np.isfinite(y) & np.isfinite(s)
    if endpoint in ("pfs", "os"):
        y = np.log(np.maximum(y, 1e-9))
    rho = float(np.corrcoef(y[ok], s[ok])[0, 1]) if ok.sum() > 2 else float("nan")
    alpha = d.endpoints.alpha
    # Efficiency as the ratio of the squared mean z-statistics (the non-centrality that sets
    # power). For Cox models this is the meaningful gain: adjustment makes the log HR larger
    # (non-collapsibility) rather than its SE smaller (Robinson LD, Jewell NP. Int Stat Rev
    # 1991;59:227-240). Undefined when the unadjusted effect is indistinguishable from 0.
    z_un = (un_df["estimate"] / un_df["se"]).to_numpy(float)
    z_ad = (ad_df["estimate"] / ad_df["se"]).to_numpy(float)
    mz_un, mz_ad = float(np.nanmean(z_un)), float(np.nanmean(z_ad))
    visible = abs(mz_un) > 3 * float(np.nanstd(z_un)) / np.sqrt(max(np.isfinite(z_un).sum(), 1))
    efficiency = (mz_ad / mz_un) ** 2 if visible else float("nan")
    saved = 1.0 - v_ad / v_un if endpoint not in ("pfs", "os") else 1.0 - 1.0 / efficiency
    return {
        "endpoint": endpoint, "score": score, "replicates": len(un_df),
        "mean_z_unadjusted": mz_un, "mean_z_adjusted": mz_ad, "efficiency": efficiency,
        "unadjusted": un_df, "adjusted": ad_df,
        "rejection_unadjusted": rejection_rate(un_df, alpha),
        "rejection_adjusted": rejection_rate(ad_df, alpha),
        "variance_unadjusted": v_un, "variance_adjusted": v_ad,
        "variance_reduction": 1.0 - v_ad / v_un,
        "empirical_variance_reduction": 1.0 - e_ad / e_un,
        "sample_size_saved": saved,
        "score_outcome_correlation": rho,
    }  # fmt: skip
