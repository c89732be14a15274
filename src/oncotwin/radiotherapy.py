"""External-beam radiotherapy radiobiology: LQ survival, BED/EQD2, TCP, gEUD/LKB NTCP, schedules.

Pure functions of dose, so a twin can turn a fractionation plan into what it does to the tumour
(surviving fraction, tumour control probability, volume response) and to organs at risk
(normal-tissue complication probability, QUANTEC dose-volume constraints). Doses are in Gy and
times in days, as everywhere in oncotwin (:mod:`oncotwin.units`).

Models and sources:

- linear-quadratic (LQ) cell survival, ``SF = exp(-n (alpha d + beta d^2))``, and the
  biologically effective dose ``BED = D (1 + d / (alpha/beta))`` with the repopulation correction
  ``- ln 2 (T - Tk) / (alpha Tpot)`` for ``T > Tk``: Fowler JF. The linear-quadratic formula and
  progress in fractionated radiotherapy. Br J Radiol 1989;62:679-694; Dale RG. Br J Radiol
  1985;58:515-528. ``EQD2 = BED / (1 + 2 / (alpha/beta))``.
- Poisson tumour control probability ``TCP = exp(-N SF)`` and its population average over an
  inter-patient normal spread of ``alpha`` truncated at 0: Webb S, Nahum AE. Phys Med Biol
  1993;38:653-666.
- generalised equivalent uniform dose ``gEUD = (sum_i v_i D_i^a)^(1/a)`` (Niemierko A. Med Phys
  1997;24:103-110, generalised 1999) and the Lyman-Kutcher-Burman NTCP
  ``Phi((gEUD - TD50) / (m TD50))`` with ``a = 1/n`` (Lyman JT. Radiat Res Suppl 1985;8:S13-S19;
  Kutcher GJ, Burman C. Int J Radiat Oncol Biol Phys 1989;16:1623-1630).
- organ-at-risk dose-volume constraints from QUANTEC: Marks LB et al. Use of normal tissue
  complication probability models in the clinic. Int J Radiat Oncol Biol Phys 2010;76(3 Suppl):
  S10-S19, Table 1 (``tables/quantec.csv``; each row names its source page).
- tumour volume under fractionated irradiation: exponential growth with an instantaneous LQ
  kill at each fraction, written in JAX so that it is differentiable and vmappable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from importlib import resources
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import ndtr

from ._checks import checked_array as _check
from ._checks import scalar_or_array as _out
from ._jax import jnp
from .errors import ModelError

LN2 = math.log(2.0)
QUANTEC = (
    "Marks LB et al. Use of normal tissue complication probability models in the clinic. "
    "Int J Radiat Oncol Biol Phys 2010;76(3 Suppl):S10-S19, Table 1"
)

FloatOrArray = Any  # a float for scalar inputs, else a numpy array of the broadcast shape


# --------------------------------------------------------------------------- LQ, BED, EQD2


def lq_survival(
    dose_per_fraction: ArrayLike, alpha: ArrayLike, beta: ArrayLike, n: ArrayLike = 1
) -> FloatOrArray:
    """Linear-quadratic surviving fraction after `n` fractions of `dose_per_fraction`.

    ``SF = exp(-n (alpha d + beta d^2))`` (full repair between fractions, no repopulation).

    Args:
        dose_per_fraction: dose per fraction d, Gy.
        alpha: linear radiosensitivity, 1/Gy.
        beta: quadratic radiosensitivity, 1/Gy^2.
        n: number of fractions.

    Returns:
        Surviving fraction (broadcast over the inputs).
    """
    d = _check("dose_per_fraction", dose_per_fraction)
    a, b = _check("alpha", alpha), _check("beta", beta)
    k = _check("n", n)
    return _out(np.exp(-k * (a * d + b * d * d)))


def _repopulation(
    treatment_days: ArrayLike | None,
    kickoff_days: ArrayLike | None,
    potential_doubling_days: ArrayLike | None,
    alpha: ArrayLike | None,
    *,
    need_alpha: bool,
) -> np.ndarray:
    """Log cell gain by repopulation, ``ln 2 max(T - Tk, 0) / Tpot`` (0 without treatment_days)."""
    if treatment_days is None:
        given = {"kickoff_days": kickoff_days, "potential_doubling_days": potential_doubling_days}
        if need_alpha:
            given["alpha"] = alpha
        extra = [k for k, v in given.items() if v is not None]
        if extra:
            raise ModelError(f"{', '.join(extra)} given without treatment_days")
        return np.zeros(())
    missing = [] if potential_doubling_days is not None else ["potential_doubling_days"]
    if need_alpha and alpha is None:
        missing.append("alpha")
    if missing or potential_doubling_days is None:
        raise ModelError(f"the repopulation correction needs {' and '.join(missing)}")
    t = _check("treatment_days", treatment_days)
    tk = _check("kickoff_days", 0.0 if kickoff_days is None else kickoff_days)
    tpot = _check("potential_doubling_days", potential_doubling_days, positive=True)
    return LN2 * np.maximum(t - tk, 0.0) / tpot


def bed(
    total_dose: ArrayLike,
    dose_per_fraction: ArrayLike,
    alpha_beta: ArrayLike,
    *,
    treatment_days: ArrayLike | None = None,
    kickoff_days: ArrayLike | None = None,
    alpha: ArrayLike | None = None,
    potential_doubling_days: ArrayLike | None = None,
) -> FloatOrArray:
    """Biologically effective dose of a fractionated course (Fowler 1989).

    ``BED = D (1 + d / (alpha/beta)) - ln 2 max(T - Tk, 0) / (alpha Tpot)``; the repopulation
    term is applied only when `treatment_days` is given.

    Args:
        total_dose: total physical dose D, Gy.
        dose_per_fraction: dose per fraction d, Gy.
        alpha_beta: alpha/beta ratio of the tissue, Gy.
        treatment_days: overall treatment time T (first to last fraction), days.
        kickoff_days: time Tk after the start at which accelerated repopulation begins, days
            (default 0).
        alpha: linear radiosensitivity, 1/Gy (needed with treatment_days).
        potential_doubling_days: potential doubling time Tpot, days (needed with treatment_days).

    Returns:
        BED in Gy (may fall below zero when repopulation outweighs the dose).

    Raises:
        ModelError: a negative dose, a non-positive alpha/beta, or an incomplete repopulation
            specification.
    """
    big_d = _check("total_dose", total_dose)
    d = _check("dose_per_fraction", dose_per_fraction)
    ab = _check("alpha_beta", alpha_beta, positive=True)
    gain = _repopulation(
        treatment_days, kickoff_days, potential_doubling_days, alpha, need_alpha=True
    )
    value = big_d * (1.0 + d / ab)
    if treatment_days is not None and alpha is not None:  # _repopulation checked both are given
        value = value - gain / _check("alpha", alpha, positive=True)
    return _out(np.asarray(value))


def eqd2(
    total_dose: ArrayLike,
    dose_per_fraction: ArrayLike,
    alpha_beta: ArrayLike,
    **repopulation: ArrayLike | None,
) -> FloatOrArray:
    """Equivalent dose in 2-Gy fractions, ``EQD2 = BED / (1 + 2 / (alpha/beta))``, Gy.

    Takes the arguments of :func:`bed` (including its optional repopulation keywords).
    """
    ab = _check("alpha_beta", alpha_beta, positive=True)
    value = np.asarray(bed(total_dose, dose_per_fraction, alpha_beta, **repopulation))
    return _out(value / (1.0 + 2.0 / ab))


# --------------------------------------------------------------------------- TCP


def _log_kill(
    alpha: np.ndarray, beta: np.ndarray, d: np.ndarray, n: np.ndarray, gain: np.ndarray
) -> np.ndarray:
    # -ln SF = n (alpha d + beta d^2) - ln2 (T - Tk)/Tpot  (= alpha * BED)
    return n * (alpha * d + beta * d * d) - gain


def tcp_poisson(
    alpha: ArrayLike,
    beta: ArrayLike,
    dose_per_fraction: ArrayLike,
    n_fractions: ArrayLike,
    clonogens: ArrayLike,
    *,
    treatment_days: ArrayLike | None = None,
    kickoff_days: ArrayLike | None = None,
    potential_doubling_days: ArrayLike | None = None,
) -> FloatOrArray:
    """Poisson tumour control probability ``TCP = exp(-N SF)``.

    ``SF = exp(-alpha BED)`` is the LQ surviving fraction, with the repopulation gain
    ``ln 2 max(T - Tk, 0) / Tpot`` when `treatment_days` is given.

    Args:
        alpha: linear radiosensitivity, 1/Gy.
        beta: quadratic radiosensitivity, 1/Gy^2.
        dose_per_fraction: Gy.
        n_fractions: number of fractions.
        clonogens: number N of clonogenic cells before treatment.
        treatment_days, kickoff_days, potential_doubling_days: as in :func:`bed`.

    Returns:
        TCP in [0, 1].
    """
    a, b = _check("alpha", alpha), _check("beta", beta)
    d, n = _check("dose_per_fraction", dose_per_fraction), _check("n_fractions", n_fractions)
    log_n = np.log(_check("clonogens", clonogens, positive=True))
    gain = _repopulation(
        treatment_days, kickoff_days, potential_doubling_days, None, need_alpha=False
    )
    return _out(np.exp(-np.exp(log_n - _log_kill(a, b, d, n, gain))))


def tcp_population(
    alpha: ArrayLike,
    alpha_sd: ArrayLike,
    beta: ArrayLike,
    dose_per_fraction: ArrayLike,
    n_fractions: ArrayLike,
    clonogens: ArrayLike,
    *,
    fixed_alpha_beta: bool = False,
    treatment_days: ArrayLike | None = None,
    kickoff_days: ArrayLike | None = None,
    potential_doubling_days: ArrayLike | None = None,
    nodes: int = 200,
) -> FloatOrArray:
    """Population TCP: :func:`tcp_poisson` averaged over inter-patient spread of alpha.

    alpha is normal with mean `alpha` and standard deviation `alpha_sd`, truncated at 0
    (Webb & Nahum 1993). The average is a Gauss-Legendre quadrature with `nodes` points over
    ``[max(0, alpha - 8 sd), alpha + 8 sd]`` against the normal density, renormalised over that
    interval (which makes the truncation at 0 exact). ``alpha_sd = 0`` gives
    :func:`tcp_poisson` exactly.

    Args:
        alpha: population mean of alpha, 1/Gy.
        alpha_sd: inter-patient standard deviation of alpha, 1/Gy.
        beta: quadratic radiosensitivity, 1/Gy^2 (the same for every patient unless
            `fixed_alpha_beta`).
        dose_per_fraction, n_fractions, clonogens: as in :func:`tcp_poisson`.
        fixed_alpha_beta: if True, each patient's beta scales with their alpha so that
            alpha/beta stays at ``alpha / beta``; else beta is the same for everyone.
        treatment_days, kickoff_days, potential_doubling_days: as in :func:`bed`.
        nodes: number of quadrature nodes.

    Returns:
        The population-average TCP.
    """
    mean, sd = _check("alpha", alpha), _check("alpha_sd", alpha_sd)
    b = _check("beta", beta)
    d, n = _check("dose_per_fraction", dose_per_fraction), _check("n_fractions", n_fractions)
    log_n = np.log(_check("clonogens", clonogens, positive=True))
    if nodes < 2:
        raise ModelError(f"nodes must be >= 2, got {nodes}")
    gain = _repopulation(
        treatment_days, kickoff_days, potential_doubling_days, None, need_alpha=False
    )
    mean, sd, b, d, n, log_n, gain = np.broadcast_arrays(mean, sd, b, d, n, log_n, gain)
    if fixed_alpha_beta and np.any((mean <= 0) & (b > 0)):
        raise ModelError("fixed_alpha_beta needs alpha > 0 wherever beta > 0")

    x, w = np.polynomial.legendre.leggauss(nodes)
    spread = np.where(sd > 0, sd, 1.0)[..., None]
    lo = np.maximum(mean[..., None] - 8.0 * spread, 0.0)
    hi = mean[..., None] + 8.0 * spread
    a_k = lo + (hi - lo) * (x + 1.0) / 2.0
    weight = (hi - lo) * w * np.exp(-0.5 * ((a_k - mean[..., None]) / spread) ** 2)
    if fixed_alpha_beta:
        ratio = np.divide(b, mean, out=np.zeros_like(b), where=mean > 0)
        b_k = a_k * ratio[..., None]
    else:
        b_k = b[..., None]
    log_kill = _log_kill(a_k, b_k, d[..., None], n[..., None], gain[..., None])
    tcp_k = np.exp(-np.exp(log_n[..., None] - log_kill))
    population = np.sum(weight * tcp_k, axis=-1) / np.sum(weight, axis=-1)
    exact = np.exp(-np.exp(log_n - _log_kill(mean, b, d, n, gain)))
    return _out(np.where(sd > 0, population, exact))


# --------------------------------------------------------------------------- gEUD, NTCP


def differential_from_cumulative(
    doses: ArrayLike, cumulative_volumes: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Differential DVH from a cumulative one.

    ``cumulative_volumes[i]`` is the volume receiving at least ``doses[i]`` (so it does not
    increase). Bin i spans ``[doses[i], doses[i+1])``, holds ``V[i] - V[i+1]`` and is represented
    by its mid-dose; the last value, the volume receiving at least ``doses[-1]``, is put at
    ``doses[-1]``. Volume below ``doses[0]`` is not represented, so start the cumulative DVH at
    0 Gy (where it equals the whole organ volume).

    Args:
        doses: increasing dose levels, Gy.
        cumulative_volumes: volume (any unit, or a fraction) receiving >= each dose.

    Returns:
        (bin doses in Gy, bin volumes in the unit of `cumulative_volumes`).
    """
    d = _check("doses", doses)
    v = _check("cumulative_volumes", cumulative_volumes)
    if d.ndim != 1 or d.shape != v.shape or d.size < 1:
        raise ModelError(
            f"doses and cumulative_volumes must be 1-D of equal length, got {d.shape} and {v.shape}"
        )
    if np.any(np.diff(d) <= 0):
        raise ModelError("doses must be strictly increasing")
    if np.any(np.diff(v) > 0):
        raise ModelError("cumulative_volumes must not increase with dose")
    mids = np.append((d[:-1] + d[1:]) / 2.0, d[-1])
    return mids, np.append(v[:-1] - v[1:], v[-1])


def geud(doses: ArrayLike, volumes: ArrayLike, a: ArrayLike) -> FloatOrArray:
    """Generalised equivalent uniform dose ``(sum_i v_i D_i^a)^(1/a)`` of a differential DVH.

    Volumes are normalised to sum to 1. ``a = 1`` gives the mean dose, large positive `a` tends
    to the maximum dose (serial organs), negative `a` to the minimum (tumours); ``a = 0`` is the
    limit, the geometric mean ``exp(sum_i v_i ln D_i)``.

    Args:
        doses: bin doses D_i, Gy.
        volumes: bin volumes v_i (any unit; normalised here).
        a: volume-effect exponent (scalar or array: the result has its shape).

    Returns:
        gEUD in Gy.
    """
    d, v = _check("doses", doses), _check("volumes", volumes)
    if d.ndim != 1 or d.shape != v.shape or d.size < 1:
        raise ModelError(
            f"doses and volumes must be 1-D of equal length, got {d.shape} and {v.shape}"
        )
    if v.sum() <= 0:
        raise ModelError("volumes must not all be zero")
    a_arr = np.asarray(a, dtype=float)
    if not np.all(np.isfinite(a_arr)):
        raise ModelError(f"a must be finite, got {a!r}")
    keep = v > 0
    d, w = d[keep], v[keep] / v.sum()
    out = np.empty(a_arr.shape)
    for idx, ai in np.ndenumerate(a_arr):
        if ai == 0.0 or (ai < 0.0 and d.min() == 0.0):
            # the geometric mean, and any a < 0 with an unirradiated bin, is 0 when a dose is 0
            out[idx] = 0.0 if d.min() == 0.0 else math.exp(float(np.sum(w * np.log(d))))
        else:
            # scale by the dose that keeps every (D_i/ref)^a <= 1, so a large |a| cannot overflow
            ref = d.max() if ai > 0 else d.min()
            out[idx] = 0.0 if ref == 0.0 else ref * float(np.sum(w * (d / ref) ** ai)) ** (1 / ai)
    return _out(out)


def lkb_ntcp(
    geud_or_dvh: ArrayLike | tuple[ArrayLike, ArrayLike],
    td50: ArrayLike,
    m: ArrayLike,
    n: float | None = None,
) -> FloatOrArray:
    """Lyman-Kutcher-Burman normal tissue complication probability.

    ``NTCP = Phi((gEUD - TD50) / (m TD50))`` with Phi the standard normal CDF and
    ``gEUD`` computed with ``a = 1/n`` when a DVH is given.

    Args:
        geud_or_dvh: a gEUD in Gy (scalar or array), or a differential DVH
            ``(doses, volumes)``.
        td50: uniform whole-organ dose giving 50% complication probability, Gy.
        m: slope parameter (dimensionless).
        n: volume parameter (needed with a DVH).

    Returns:
        NTCP in [0, 1].
    """
    if isinstance(geud_or_dvh, tuple):
        if len(geud_or_dvh) != 2:
            raise ModelError("a DVH must be given as (doses, volumes)")
        if n is None or not n > 0 or not math.isfinite(n):
            raise ModelError(f"n must be finite and > 0 with a DVH, got {n!r}")
        g = np.asarray(geud(geud_or_dvh[0], geud_or_dvh[1], 1.0 / n))
    else:
        g = _check("geud", geud_or_dvh)
    t = _check("td50", td50, positive=True)
    s = _check("m", m, positive=True)
    return _out(np.asarray(ndtr((g - t) / (s * t))))


# --------------------------------------------------------------------------- schedules


class FractionSchedule(NamedTuple):
    """Fraction times (days) and doses (Gy) of a course."""

    times: np.ndarray
    doses: np.ndarray

    @property
    def total_dose(self) -> float:
        """Total dose, Gy."""
        return float(self.doses.sum())

    @property
    def overall_days(self) -> float:
        """Overall treatment time, first to last fraction, days."""
        return float(self.times[-1] - self.times[0]) if self.times.size else 0.0


def fractions(
    total_dose: float,
    n_fractions: int,
    start_day: float = 0.0,
    weekdays: bool = True,
    start_weekday: int = 0,
) -> FractionSchedule:
    """Equal fractions, one a day, skipping weekends when `weekdays` (e.g. 60 Gy in 30).

    Args:
        total_dose: Gy, split equally.
        n_fractions: number of fractions.
        start_day: time of the first possible treatment day, days.
        weekdays: deliver Monday to Friday only (else every day).
        start_weekday: weekday of `start_day`, 0 = Monday ... 6 = Sunday; a course starting
            on a weekend begins the next Monday.

    Returns:
        A :class:`FractionSchedule`: 60 Gy in 30 fractions from a Monday gives days
        0-4, 7-11, ..., 35-39 at 2 Gy each.
    """
    if not (math.isfinite(total_dose) and total_dose > 0):
        raise ModelError(f"total_dose must be finite and > 0, got {total_dose!r}")
    if int(n_fractions) != n_fractions or n_fractions < 1:
        raise ModelError(f"n_fractions must be a positive integer, got {n_fractions!r}")
    if not math.isfinite(start_day):
        raise ModelError(f"start_day must be finite, got {start_day!r}")
    if start_weekday not in range(7):
        raise ModelError(f"start_weekday must be 0 (Monday) to 6 (Sunday), got {start_weekday!r}")
    offsets: list[int] = []
    day = 0
    while len(offsets) < n_fractions:
        if not weekdays or (start_weekday + day) % 7 < 5:
            offsets.append(day)
        day += 1
    times = start_day + np.asarray(offsets, dtype=float)
    return FractionSchedule(times, np.full(int(n_fractions), total_dose / n_fractions))


# --------------------------------------------------------------------------- QUANTEC constraints


def load_constraints() -> pd.DataFrame:
    """The QUANTEC organ-at-risk constraints (Marks et al. 2010, Table 1).

    Returns:
        One row per constraint: organ, volume, endpoint, metric ("Dmax", "Dmean", "V20" = %
        (or cm3) of the organ receiving >= 20 Gy, "D100" = minimum dose to the whole organ),
        comparator ("<" or "<="), limit, unit, rate (complication rate when the constraint
        holds), fractionation, notes, source.
    """
    path = resources.files("oncotwin") / "tables" / "quantec.csv"
    with path.open("r", encoding="utf-8") as f:
        table = pd.read_csv(f, keep_default_na=False)
    table["limit"] = table["limit"].astype(float)
    return table


def check_constraints(
    organ_doses: Mapping[str, Mapping[str, float]], constraints: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Which constraints the given organ dose metrics meet.

    Args:
        organ_doses: organ -> {metric: value}, e.g. ``{"lung": {"V20": 28.0, "Dmean": 16.5},
            "spinal_cord": {"Dmax": 44.0}}`` (values in the unit of the constraint: Gy, % or
            cm3; metric names are case-insensitive).
        constraints: a table like :func:`load_constraints` (default: QUANTEC).

    Returns:
        One row per constraint of a given organ and metric: organ, metric, value, comparator,
        limit, unit, met (bool), endpoint, rate, source.

    Raises:
        ModelError: an organ, or an organ's metric, that no constraint mentions.
    """
    table = load_constraints() if constraints is None else constraints
    organs = set(table["organ"])
    rows = []
    for organ, metrics in organ_doses.items():
        if organ not in organs:
            known_organs = ", ".join(sorted(organs))
            raise ModelError(f"no constraint for organ {organ!r}; known: {known_organs}")
        mine = table[table["organ"] == organ]
        known = {str(x).lower() for x in mine["metric"]}
        for metric, value in metrics.items():
            if metric.lower() not in known:
                raise ModelError(
                    f"no constraint on {metric!r} for {organ}; known: {', '.join(sorted(known))}"
                )
            if not math.isfinite(value):
                raise ModelError(f"{organ} {metric} must be finite, got {value!r}")
            for _, c in mine[mine["metric"].str.lower() == metric.lower()].iterrows():
                met = value < c["limit"] if c["comparator"] == "<" else value <= c["limit"]
                rows.append(
                    {
                        "organ": organ,
                        "metric": c["metric"],
                        "value": float(value),
                        "comparator": c["comparator"],
                        "limit": float(c["limit"]),
                        "unit": c["unit"],
                        "met": bool(met),
                        "endpoint": c["endpoint"],
                        "rate": c["rate"],
                        "source": c["source"],
                    }
                )
    columns = ["organ", "metric", "value", "comparator", "limit", "unit", "met", "endpoint"]
    return pd.DataFrame(rows, columns=[*columns, "rate", "source"])


# --------------------------------------------------------------------------- tumour volume


def volume_after_fractions(
    v0: Any,
    growth_rate: Any,
    alpha: Any,
    beta: Any,
    fraction_times: Any,
    fraction_doses: Any,
    t: Any,
) -> Any:
    """Tumour volume under exponential growth with an instantaneous LQ kill at each fraction.

    ``V(t) = v0 exp(g t) prod_{t_i <= t} exp(-(alpha d_i + beta d_i^2))``: a fraction at
    ``t_i`` has acted at ``t = t_i``. Written in ``jax.numpy`` so that it is differentiable in
    every argument but the times and works under ``jax.jit`` and ``jax.vmap`` (no value checks).

    Args:
        v0: volume at t = 0 (any unit; the result has the same).
        growth_rate: exponential growth rate g, 1/day.
        alpha: 1/Gy.
        beta: 1/Gy^2.
        fraction_times: fraction times t_i, days (1-D).
        fraction_doses: fraction doses d_i, Gy (same shape as fraction_times).
        t: time(s) at which to evaluate, days (any shape; the result has it).

    Returns:
        V(t), a JAX array.
    """
    ft, fd = jnp.asarray(fraction_times), jnp.asarray(fraction_doses)
    if ft.shape != fd.shape or ft.ndim != 1:
        raise ModelError(
            "fraction_times and fraction_doses must be 1-D of equal length, "
            f"got {ft.shape} and {fd.shape}"
        )
    tt = jnp.asarray(t)
    log_sf = -(alpha * fd + beta * fd * fd)
    delivered = tt[..., None] >= ft
    return v0 * jnp.exp(growth_rate * tt + jnp.sum(jnp.where(delivered, log_sf, 0.0), axis=-1))


__all__ = [
    "QUANTEC",
    "FractionSchedule",
    "bed",
    "check_constraints",
    "differential_from_cumulative",
    "eqd2",
    "fractions",
    "geud",
    "lkb_ntcp",
    "load_constraints",
    "lq_survival",
    "tcp_poisson",
    "tcp_population",
    "volume_after_fractions",
]
