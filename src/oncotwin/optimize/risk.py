"""Risk measures over posterior draws: mean, quantile, CVaR (superquantile), chance constraints.

A twin gives a *distribution* of outcomes for every schedule (one value per posterior draw).
A risk measure turns it into one number to rank schedules by. Conventions:

- every measure is applied to a **loss** (larger is worse). For an outcome where larger is
  better (time to progression, tumour control) the loss is its negative, so "CVaR 0.9 of time to
  progression" is the mean of the worst 10 % of draws, i.e. a cautious, risk-averse summary;
- ``cvar(x, a)`` is the superquantile of Rockafellar RT, Uryasev S. Optimization of conditional
  value-at-risk. J Risk 2000;2:21-41, and Rockafellar RT, Royset JO. Superquantiles and their
  applications to risk, random variables, and regression. INFORMS Tutorials 2013:
  ``CVaR_a(X) = min_t { t + E[(X - t)+] / (1 - a) }``, attained at ``t = VaR_a(X)``
  (the a-quantile). On a sample it is evaluated exactly for the empirical distribution, so it is
  the mean of the upper (1 - a) tail with the boundary draw weighted fractionally;
- a chance constraint ``P(g(X) <= 0) >= 1 - eps`` is met when the fraction of draws meeting it
  is at least ``1 - eps``.

The functions take NumPy or JAX arrays; :func:`cvar` and :func:`quantile` work on JAX tracers
(sorting is differentiable almost everywhere), so they can sit inside a gradient-based search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = [
    "RiskMeasure",
    "chance",
    "cvar",
    "expectation",
    "parse_risk",
    "quantile",
]


def _xp(x: Any) -> Any:
    """numpy for concrete arrays, jax.numpy for tracers and JAX arrays."""
    if isinstance(x, np.ndarray | float | int | list | tuple):
        return np
    import jax.numpy as jnp

    return jnp


def expectation(x: Any, axis: int = -1) -> Any:
    """Mean over draws (last axis by default)."""
    return _xp(x).mean(x, axis=axis)


def quantile(x: Any, level: float, axis: int = -1) -> Any:
    """Value-at-risk: the `level` quantile (0-1) over draws, linear interpolation."""
    if not 0.0 <= level <= 1.0:
        raise ModelError(f"quantile level must be in [0, 1], got {level}")
    return _xp(x).quantile(x, level, axis=axis)


def cvar(x: Any, level: float, axis: int = -1) -> Any:
    """Superquantile / conditional value-at-risk of a loss at `level` (0 <= level < 1).

    Exact for the empirical distribution of the draws: with n sorted draws and
    ``k = n (1 - level)`` draws' worth of tail, the mean of the largest ``floor(k)`` draws plus
    the next one weighted by ``k - floor(k)``. ``level = 0`` gives the mean; as level -> 1 it
    tends to the maximum.

    Args:
        x: losses, draws along `axis`.
        level: confidence level a (e.g. 0.9: the mean of the worst 10 %).
        axis: the axis of draws.

    Returns:
        CVaR along `axis`.
    """
    if not 0.0 <= level < 1.0:
        raise ModelError(f"CVaR level must be in [0, 1), got {level}")
    xp = _xp(x)
    s = xp.flip(xp.sort(xp.moveaxis(xp.asarray(x), axis, -1), axis=-1), axis=-1)  # descending
    n = s.shape[-1]
    tail = n * (1.0 - level)
    whole = math.floor(tail + 1e-12)
    w = np.zeros(n)
    w[:whole] = 1.0
    if whole < n:
        w[whole] = tail - whole
    return xp.sum(s * xp.asarray(w / tail), axis=-1)


def chance(met: Any, axis: int = -1) -> Any:
    """Fraction of draws for which a constraint is met (`met`: booleans or 0/1)."""
    xp = _xp(met)
    return xp.mean(xp.asarray(met, dtype=float), axis=axis)


@dataclass(frozen=True)
class RiskMeasure:
    """How to summarise a distribution of outcomes over posterior draws.

    Attributes:
        kind: "mean", "quantile" (value-at-risk), "cvar" (superquantile) or "worst".
        level: quantile/CVaR level a in [0, 1) (ignored for "mean" and "worst").
    """

    kind: str = "cvar"
    level: float = 0.9

    def __post_init__(self) -> None:
        if self.kind not in ("mean", "quantile", "cvar", "worst"):
            raise ModelError(
                f"unknown risk measure {self.kind!r}; use mean, quantile:A, cvar:A or worst"
            )
        if self.kind in ("quantile", "cvar") and not 0.0 <= self.level < 1.0:
            raise ModelError(f"risk level must be in [0, 1), got {self.level}")

    def of_loss(self, loss: Any, axis: int = -1) -> Any:
        """The measure of a loss (larger is worse)."""
        xp = _xp(loss)
        if self.kind == "mean":
            return expectation(loss, axis)
        if self.kind == "quantile":
            return quantile(loss, self.level, axis)
        if self.kind == "worst":
            return xp.max(loss, axis=axis)
        return cvar(loss, self.level, axis)

    def of_outcome(self, outcome: Any, larger_is_better: bool, axis: int = -1) -> Any:
        """The risk-adjusted value of an outcome, in the outcome's own direction and unit.

        For an outcome where larger is better this is ``-measure(-outcome)``: e.g. CVaR 0.9 of
        time to progression is the mean of the 10 % shortest times.
        """
        if larger_is_better:
            return -self.of_loss(-outcome, axis)
        return self.of_loss(outcome, axis)

    @property
    def label(self) -> str:
        """Human-readable name, e.g. "CVaR 90% (mean of the worst 10% of draws)"."""
        if self.kind == "mean":
            return "posterior mean"
        if self.kind == "worst":
            return "worst draw"
        pct = f"{100 * self.level:g}%"
        tail = f"{100 * (1 - self.level):g}%"
        if self.kind == "quantile":
            return f"{pct} value-at-risk (worse than this in {tail} of draws)"
        return f"CVaR {pct} (mean of the worst {tail} of draws)"

    def spec(self) -> str:
        """The text form :func:`parse_risk` reads back."""
        return self.kind if self.kind in ("mean", "worst") else f"{self.kind}:{self.level:g}"


def parse_risk(text: str) -> RiskMeasure:
    """A risk measure from text: "mean", "worst", "quantile:0.9" or "cvar:0.9".

    Raises:
        ModelError: an unknown measure or a level outside [0, 1).
    """
    kind, _, level = text.strip().lower().partition(":")
    if kind in ("mean", "expectation", "expected"):
        return RiskMeasure("mean", 0.0)
    if kind in ("worst", "max"):
        return RiskMeasure("worst", 0.0)
    if kind in ("var", "quantile"):
        kind = "quantile"
    if kind in ("cvar", "superquantile"):
        kind = "cvar"
    try:
        value = float(level) if level else 0.9
    except ValueError:
        raise ModelError(f"risk level in {text!r} is not a number") from None
    return RiskMeasure(kind, value)
