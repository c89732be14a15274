"""Objectives: pure functions of posterior-predictive trajectories, one value per draw.

A schedule's forecast is a set of trajectories (one per posterior draw) of the tumour burden
(volume, SLD, PSA, ...) on a time grid. An objective reduces each trajectory to one number;
a :class:`~oncotwin.optimize.risk.RiskMeasure` then reduces the draws to one number. Keeping
the two apart means every objective can be optimised for its mean, a quantile or its CVaR.

Objectives (``parse_objective`` names in brackets):

- burden at a horizon [``burden:H``], H days after the plan starts (smaller is better);
- local control at a horizon [``control:H``]: 1 when the burden H days after the start is
  below its value at the start, else 0 - with the "mean" risk measure, the probability of
  control (a progression-free rate at H);
- area under the burden curve [``auc:H``] from the plan start to H days (smaller is better);
- time to progression [``ttp``]: first time the burden is >= 20 % above its running nadir
  (RECIST 1.1 target-lesion rule, Eisenhauer EA et al. Eur J Cancer 2009;45:228-247; the
  absolute 5 mm rule is not applied to volumes), days from the plan start (larger is better);
- time to regrowth [``regrowth``]: first time the burden is back at its value at the plan
  start, days (larger is better) - the "time to progression" of radiotherapy twins that
  regrow from a deep nadir;
- probability of tumour control [``tcp``]: Poisson TCP ``exp(-N)`` of the surviving clonogens N
  (Webb S, Nahum AE. Phys Med Biol 1993;38:653-666), for models that track clonogens;
- time to resistance [``resistance``]: hormone therapy, first time resistant cells are half the
  tumour (Zhang J et al. Nat Commun 2017;8:1816).

Times read off the forecast grid that never happen within it are censored at the horizon (the
value is then "at least" that long; :attr:`Trajectories.horizon` says where). Models with a
closed form for them (the radiotherapy twin) give them exactly in
:attr:`Trajectories.extras` ("regrowth_time", "progression_time"), counted from the start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = [
    "OBJECTIVES",
    "Objective",
    "Trajectories",
    "auc",
    "burden_at",
    "parse_objective",
    "probability_of_control",
    "time_to_progression",
    "time_to_regrowth",
]


@dataclass(frozen=True)
class Trajectories:
    """Posterior-predictive trajectories of one schedule.

    Attributes:
        times: absolute times, days, sorted (n_times,).
        burden: latent tumour burden (no measurement noise), (n_draws, n_times), data units.
        start: time the plan starts (today), days; objectives count from here.
        extras: per-draw model quantities some objectives need: "surviving_clonogens"
            (n_draws,), "resistance_time" (days from start, n_draws).
    """

    times: np.ndarray
    burden: np.ndarray
    start: float
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def horizon(self) -> float:
        """Days from the plan start to the end of the forecast."""
        return float(self.times[-1] - self.start)


def burden_at(times: Any, burden: Any, t: float) -> np.ndarray:
    """Burden at time `t` (days, absolute) per draw, by linear interpolation.

    Args:
        times: (n_times,) sorted, days.
        burden: (n_draws, n_times).
        t: evaluation time, days, within the grid.
    """
    times = np.asarray(times, float)
    b = np.asarray(burden, float)
    if not times[0] - 1e-9 <= t <= times[-1] + 1e-9:
        raise ModelError(f"time {t} outside the forecast ({times[0]} to {times[-1]} days)")
    j = int(np.clip(np.searchsorted(times, t), 1, len(times) - 1))
    w = (t - times[j - 1]) / (times[j] - times[j - 1])
    return (1 - w) * b[:, j - 1] + w * b[:, j]


def auc(times: Any, burden: Any, t0: float, t1: float) -> np.ndarray:
    """Area under the burden curve from `t0` to `t1` (days), trapezoids; data unit x day."""
    times = np.asarray(times, float)
    b = np.asarray(burden, float)
    inside = (times > t0) & (times < t1)
    grid = np.concatenate([[t0], times[inside], [t1]])
    values = np.column_stack([burden_at(times, b, t0), b[:, inside], burden_at(times, b, t1)])
    return np.sum(np.diff(grid) * (values[:, 1:] + values[:, :-1]) / 2.0, axis=1)


def _first_crossing(times: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """First time each row of `gap` (>= 0 means reached) turns non-negative, interpolated.

    Rows that never reach it get +inf; a row already reached at the first time gets times[0].
    """
    reached = gap >= 0
    i = np.argmax(reached, axis=1)
    any_ = reached.any(axis=1)
    rows = np.arange(gap.shape[0])
    prev = np.maximum(i - 1, 0)
    g0, g1 = gap[rows, prev], gap[rows, i]
    with np.errstate(invalid="ignore", divide="ignore"):  # -inf gaps mark excluded times
        frac = np.where((i > 0) & (g1 != g0), -g0 / np.where(g1 != g0, g1 - g0, 1.0), 1.0)
    frac = np.where(np.isfinite(frac), frac, 1.0)
    t = np.where(i > 0, times[prev] + np.clip(frac, 0, 1) * (times[i] - times[prev]), times[0])
    return np.where(any_, t, np.inf)


def time_to_progression(
    times: Any, burden: Any, start: float, rise: float = 0.20, *, censor: bool = True
) -> np.ndarray:
    """Days from `start` until the burden is `rise` above its running nadir (RECIST-style).

    The nadir is the smallest burden from `start` up to each time (the value at `start`
    included), as RECIST 1.1 measures progression from the smallest sum on study.

    Args:
        times: (n_times,) days, sorted. burden: (n_draws, n_times).
        start: plan start, days. rise: relative increase over the nadir (0.2 = 20 %).
        censor: return the horizon instead of inf for draws that never progress.
    """
    times = np.asarray(times, float)
    b = np.asarray(burden, float)
    keep = times >= start - 1e-9
    t, b = times[keep], b[:, keep]
    nadir = np.minimum.accumulate(b, axis=1)
    out = _first_crossing(t, b - (1.0 + rise) * nadir) - start
    return np.where(np.isinf(out), t[-1] - start, out) if censor else out


def time_to_regrowth(
    times: Any, burden: Any, start: float, level: Any = None, *, censor: bool = True
) -> np.ndarray:
    """Days from `start` until the burden, after its nadir, is back at `level`.

    Args:
        times, burden, start: as in :func:`time_to_progression`.
        level: burden level per draw (default: each draw's burden at `start`).
        censor: return the horizon instead of inf for draws that never regrow.
    """
    times = np.asarray(times, float)
    b = np.asarray(burden, float)
    base = burden_at(times, b, start) if level is None else np.broadcast_to(level, b.shape[:1])
    keep = times >= start - 1e-9
    t, b = times[keep], b[:, keep]
    after_nadir = np.arange(t.size)[None, :] >= np.argmin(b, axis=1)[:, None]
    gap = np.where(after_nadir, b - np.asarray(base)[:, None], -np.inf)
    out = _first_crossing(t, gap) - start
    return np.where(np.isinf(out), t[-1] - start, out) if censor else out


def probability_of_control(surviving_clonogens: Any) -> np.ndarray:
    """Poisson tumour control probability ``exp(-N)`` of N surviving clonogens, per draw."""
    return np.exp(-np.asarray(surviving_clonogens, float))


@dataclass(frozen=True)
class Objective:
    """An outcome of a schedule to optimise.

    Attributes:
        name: short name ("ttp", "burden", ...), as in :func:`parse_objective`.
        label: words for reports ("time to progression").
        unit: unit of the value ("day", "data", "probability").
        larger_is_better: direction of the outcome.
        horizon: days from the plan start that the forecast must cover (None: the default).
        fn: ``Trajectories -> (n_draws,)`` outcome per draw.
    """

    name: str
    label: str
    unit: str
    larger_is_better: bool
    horizon: float | None
    fn: Callable[[Trajectories], np.ndarray] = field(repr=False, compare=False)

    def __call__(self, traj: Trajectories) -> np.ndarray:
        return np.asarray(self.fn(traj), float)

    def spec(self) -> str:
        """The text form :func:`parse_objective` reads back."""
        with_horizon = ("burden", "auc", "control")
        return f"{self.name}:{self.horizon:g}" if self.name in with_horizon else self.name


def _extra(name: str, what: str) -> Callable[[Trajectories], np.ndarray]:
    def fn(traj: Trajectories) -> np.ndarray:
        if name not in traj.extras:
            raise ModelError(f"the {what} objective needs a model that tracks {name}")
        return np.asarray(traj.extras[name], float)

    return fn


def _exact_or(traj: Trajectories, key: str, fn: Callable[..., np.ndarray]) -> np.ndarray:
    """A model's exact (closed-form) time when it gives one, else read off the grid."""
    if key in traj.extras:
        return np.asarray(traj.extras[key], float)
    return fn(traj.times, traj.burden, traj.start)


OBJECTIVES = ("burden", "auc", "control", "ttp", "regrowth", "tcp", "resistance")


def parse_objective(text: str, default_horizon: float = 180.0) -> Objective:
    """An objective from text: "burden:180", "auc:90", "ttp", "regrowth", "tcp", "resistance".

    Args:
        text: name, optionally ":H" with a horizon in days after the plan start.
        default_horizon: horizon when none is given, days.

    Raises:
        ModelError: unknown objective or a bad horizon.
    """
    name, _, h = text.strip().lower().partition(":")
    try:
        horizon = float(h) if h else None
    except ValueError:
        raise ModelError(f"horizon in objective {text!r} is not a number of days") from None
    if horizon is not None and not horizon > 0:
        raise ModelError(f"objective horizon must be > 0 days, got {horizon}")
    hz = horizon or default_horizon
    if name in ("burden", "size", "volume"):
        return Objective(
            "burden",
            f"tumour burden {hz:g} days after the start",
            "data",
            False,
            hz,
            lambda tr: burden_at(tr.times, tr.burden, tr.start + hz),
        )
    if name == "auc":
        return Objective(
            "auc",
            f"area under the burden curve over {hz:g} days",
            "data x day",
            False,
            hz,
            lambda tr: auc(tr.times, tr.burden, tr.start, tr.start + hz),
        )
    if name == "control":
        return Objective(
            "control",
            f"probability the tumour is smaller {hz:g} days after the start than at the start",
            "probability",
            True,
            hz,
            lambda tr: (
                burden_at(tr.times, tr.burden, tr.start + hz)
                < burden_at(tr.times, tr.burden, tr.start)
            ).astype(float),
        )
    if name in ("ttp", "progression"):
        return Objective(
            "ttp",
            "time to progression (+20% from nadir)",
            "day",
            True,
            horizon,
            lambda tr: _exact_or(tr, "progression_time", time_to_progression),
        )
    if name in ("regrowth", "ttr-baseline"):
        return Objective(
            "regrowth",
            "time until the tumour is back at today's size",
            "day",
            True,
            horizon,
            lambda tr: _exact_or(tr, "regrowth_time", time_to_regrowth),
        )
    if name in ("tcp", "control"):
        surviving = _extra("surviving_clonogens", "tumour control")
        return Objective(
            "tcp",
            "probability of tumour control",
            "probability",
            True,
            horizon,
            lambda tr: probability_of_control(surviving(tr)),
        )
    if name in ("resistance", "ttr"):
        return Objective(
            "resistance",
            "time to resistance (resistant cells > 50%)",
            "day",
            True,
            horizon,
            _extra("resistance_time", "time-to-resistance"),
        )
    raise ModelError(f"unknown objective {text!r}; known: {', '.join(OBJECTIVES)}")
