"""Trial endpoints from simulated tumour sizes: RECIST 1.1, PFS, OS through a tumour-size link,
and toxicity rates.

All functions work on whole cohorts at once (arrays with one row per patient and one column per
scheduled assessment) and are jittable, so :mod:`oncotwin.trials.run` evaluates them inside the
same compiled chunk as the tumour model.

RECIST 1.1 target-lesion categories (Eisenhauer EA et al. Eur J Cancer 2009;45:228-247), the
thresholds of :func:`oncotwin.models.immune.classify_recist`:

- CR: disappearance of all target lesions (measured SLD 0; sizes below the detection limit are
  recorded as 0);
- PD: SLD >= 1.2 x the nadir (the smallest SLD on study before this assessment, baseline
  included) and at least 5 mm above it;
- PR: SLD <= 0.7 x baseline (and not PD);
- SD: neither.

Best overall response (BOR) is the best timepoint response recorded before progression. SD
counts only when met at least `sd_min_days` after baseline; when `confirm` is set, a PR or CR
counts only if a later assessment at least 28 days after it (and before progression) shows at
least the same response (RECIST 1.1 section 4.3). New lesions and non-target lesions are not
simulated. Progression-free survival (PFS) is the date of the first PD assessment or death,
censored at the last assessment otherwise (FDA guidance on cancer trial endpoints, 2018).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from .._jax import jax, jnp
from ..models.immune import RECIST_11
from .design import SurvivalLink

__all__ = [
    "CR",
    "NE",
    "PD",
    "PR",
    "RECIST_11",
    "RESPONSES",
    "SD",
    "best_overall_response",
    "first_progression",
    "ntcp_rate",
    "progression_free_survival",
    "recist_timepoints",
    "survival_times",
]

NE, PD, SD, PR, CR = 0, 1, 2, 3, 4  # ordered by how good the response is
RESPONSES = ("NE", "PD", "SD", "PR", "CR")
CONFIRM_DAYS = 28.0
RESPONSE_DROP, PROGRESSION_RISE, PROGRESSION_MM = 0.30, 0.20, 5.0


@partial(jax.jit, static_argnames=("response_drop", "progression_rise", "progression_mm"))
def recist_timepoints(
    sld: Any, observed: Any, *, response_drop: float = RESPONSE_DROP,
    progression_rise: float = PROGRESSION_RISE, progression_mm: float = PROGRESSION_MM,
) -> Any:  # fmt: skip
    """RECIST 1.1 target-lesion response at each assessment.

    Args:
        sld: (n, V) measured sum of longest diameters, mm; column 0 is the baseline.
        observed: (n, V) whether each assessment took place (later ones are missing after
            dropout or death).
        response_drop, progression_rise, progression_mm: RECIST 1.1 thresholds.

    Returns:
        (n, V) integer codes: NE (baseline, or not observed), PD, SD, PR, CR.
    """
    sld = jnp.asarray(sld, dtype=float)
    observed = jnp.asarray(observed, dtype=bool)
    base = sld[:, :1]
    seen = jnp.where(observed, sld, jnp.inf)
    nadir = jnp.minimum(jnp.minimum.accumulate(seen, axis=1), base)
    prior = jnp.concatenate([base, nadir[:, :-1]], axis=1)
    pd = (sld >= (1.0 + progression_rise) * prior) & (sld - prior >= progression_mm)
    code = jnp.where(pd, PD, jnp.where(sld <= 0.0, CR, jnp.where(
        sld <= (1.0 - response_drop) * base, PR, SD)))  # fmt: skip
    code = jnp.where(observed, code, NE)
    return code.at[:, 0].set(NE)


@jax.jit
def first_progression(codes: Any) -> Any:
    """Index of the first PD assessment per patient, or V (the number of columns) if none."""
    codes = jnp.asarray(codes)
    is_pd = codes == PD
    v = codes.shape[1]
    return jnp.where(is_pd.any(axis=1), jnp.argmax(is_pd, axis=1), v)


@partial(jax.jit, static_argnames=("confirm", "sd_min_days", "confirm_days"))
def best_overall_response(
    times: Any, codes: Any, *, confirm: bool = False, sd_min_days: float = 42.0,
    confirm_days: float = CONFIRM_DAYS,
) -> Any:  # fmt: skip
    """Best overall response per patient (codes NE, PD, SD, PR, CR).

    Args:
        times: (V,) assessment days (day 0 = baseline), shared by all patients.
        codes: (n, V) timepoint responses from :func:`recist_timepoints`.
        confirm: require confirmation of PR/CR by a later assessment >= `confirm_days` later.
        sd_min_days: minimum time from baseline for SD to count, days.
    """
    times = jnp.asarray(times, dtype=float)
    codes = jnp.asarray(codes)
    v = codes.shape[1]
    before = jnp.arange(v)[None, :] < first_progression(codes)[:, None]
    good = jnp.where(before, codes, NE)
    if confirm:
        # Best response at any assessment >= confirm_days later (before progression): a suffix
        # maximum read at the first column far enough ahead (the grid is shared).
        suffix = jnp.flip(jnp.maximum.accumulate(jnp.flip(good, axis=1), axis=1), axis=1)
        suffix = jnp.concatenate([suffix, jnp.full((codes.shape[0], 1), NE)], axis=1)
        ahead = jnp.searchsorted(times, times + confirm_days - 1e-9, side="left")
        later = suffix[:, ahead]
        responded = good >= PR
        good = jnp.where(responded, jnp.where(later >= PR, jnp.minimum(good, later), SD), good)
    sd_ok = times[None, :] >= sd_min_days - 1e-9
    good = jnp.where((good == SD) & ~sd_ok, NE, good)
    best = jnp.max(good, axis=1)
    progressed = first_progression(codes) < v
    return jnp.where((best == NE) & progressed, PD, best)


@jax.jit
def progression_free_survival(
    times: Any, codes: Any, observed: Any, death: Any, censor: Any
) -> tuple[Any, Any]:
    """PFS time (days) and event flag: first PD assessment or death, whichever first.

    Args:
        times: (V,) assessment days.
        codes: (n, V) timepoint responses.
        observed: (n, V) assessments that took place.
        death: (n,) time of death, days.
        censor: (n,) end of follow-up of each patient (dropout or study end), days.

    Returns:
        ``(time, event)``; without an event, time is the last assessment (censored).
    """
    times = jnp.asarray(times, dtype=float)
    idx = first_progression(codes)
    v = times.shape[0]
    t_pd = jnp.where(idx < v, times[jnp.minimum(idx, v - 1)], jnp.inf)
    dead = death <= censor
    t_event = jnp.minimum(t_pd, jnp.where(dead, death, jnp.inf))
    last = jnp.max(jnp.where(observed, times[None, :], 0.0), axis=1)
    event = jnp.isfinite(t_event)
    return jnp.where(event, t_event, last), event


def survival_times(
    link: SurvivalLink, log_ratio: Any, baseline_mm: Any, covariates: Any, w: Any
) -> Any:
    """Death times (days) from the tumour-size -> survival link (accelerated failure time).

    ``log T = intercept + log_ratio * log(ratio) + log_baseline * log(baseline / 100 mm)
    + sum_c beta_c x_c + sigma * e`` with ``e`` from `w`: a standard Normal draw for the
    log-normal model, transformed to a standard minimum-extreme-value draw for the Weibull.

    Args:
        link: the survival model.
        log_ratio: (n,) log of SLD(landmark)/SLD(0) (model values, no measurement error).
        baseline_mm: (n,) baseline SLD, mm.
        covariates: (n, c) values of the covariates named in ``link.covariates`` (that order).
        w: (n,) standard Normal draws.
    """
    coef = jnp.asarray(list(link.covariates.values()) or [0.0])
    x = covariates if len(link.covariates) else jnp.zeros((jnp.shape(w)[0], 1))
    lp = (link.intercept + link.log_ratio * log_ratio
          + link.log_baseline * jnp.log(baseline_mm / 100.0) + x @ coef)  # fmt: skip
    if link.distribution == "weibull":
        from jax.scipy.special import ndtr

        # Normal -> uniform -> log of a unit exponential: a minimum-extreme-value variate.
        e = jnp.log(-jnp.log1p(-jnp.clip(ndtr(w), 1e-300, 1.0 - 1e-16)))
    else:
        e = w
    return jnp.exp(lp + link.sigma * e)


def ntcp_rate(geud: float, td50: float, m: float) -> float:
    """Probability of the complication per patient (Lyman-Kutcher-Burman, via
    :func:`oncotwin.radiotherapy.lkb_ntcp`) for an organ gEUD (Gy), TD50 (Gy) and slope m."""
    from ..radiotherapy import lkb_ntcp

    return float(np.asarray(lkb_ntcp(geud, td50, m)))
