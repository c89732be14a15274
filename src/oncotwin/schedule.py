"""Treatment schedules: doses, infusions and on/off periods, and the exposure they produce.

A :class:`Schedule` is plain data (absolute times in days). Models see it only through
``exposure(t)``, a dimensionless drug effect-compartment amount (K-PD model: Jacqmin P et al.,
J Pharmacokinet Pharmacodyn 2007;34:57-85) plus on/off indicators:

    E(t) = sum over doses  (amt / reference[agent]) * g(t - t_dose)
         + sum over agents on_agent(t)

with ``g(s) = exp(-k s)`` for a bolus and the matching infusion profile for ``dur > 0``, where
``k = ln 2 / half_life[agent]`` (given, else KNOWN_HALF_LIVES, else 1 day).
``reference[agent]`` (default: the largest dose of that agent) is kept by the twin, so a
forecast under a doubled dose sees twice the exposure.
Dose times, infusion ends and switches are the jump times the ODE solver must stop at.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .errors import ScheduleError

DEFAULT_HALF_LIFE = 1.0  # days; effect-compartment half-life when an agent has none given
# Terminal elimination half-lives (days) used when a schedule gives none for these agents.
KNOWN_HALF_LIVES = {
    "pembrolizumab": 22.0,  # KEYTRUDA (pembrolizumab) prescribing information, section 12.3
    "docetaxel": 0.5,  # TAXOTERE prescribing information, 12.3: terminal half-life 11.1 h
}


@dataclass(frozen=True)
class Dose:
    """One administration: `amount` of `agent` at `time` (days), over `duration` days (0: bolus)."""

    time: float
    amount: float
    agent: str = "drug"
    duration: float = 0.0
    unit: str = "mg"


@dataclass(frozen=True)
class Switch:
    """Treatment `agent` turned on or off at `time` (days); holds until the next switch."""

    time: float
    agent: str
    on: bool


class ExposureArrays(NamedTuple):
    """A schedule as fixed-shape arrays (padding has zero amount / zero change), for jitted code."""

    dose_time: Any
    dose_amount: Any  # normalised by the agent's reference amount
    dose_duration: Any
    dose_rate_k: Any  # elimination rate of the effect compartment, 1/day
    switch_time: Any
    switch_delta: Any  # +1 switched on, -1 switched off, 0 padding
    dose_gy: Any  # absorbed dose of radiotherapy fractions (unit "Gy"), else 0


@dataclass(frozen=True)
class Schedule:
    """Doses and on/off switches of one subject.

    Attributes:
        doses: administrations, any order.
        switches: on/off switches, any order.
        half_life: effect-compartment half-life per agent, days (default 1 day).
    """

    doses: tuple[Dose, ...] = ()
    switches: tuple[Switch, ...] = ()
    half_life: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for d in self.doses:
            if not (math.isfinite(d.time) and math.isfinite(d.amount)) or d.amount < 0:
                raise ScheduleError(
                    f"invalid dose {d}: time and amount must be finite, amount >= 0"
                )
            if not d.duration >= 0:  # also rejects NaN, which would silently mean a bolus
                raise ScheduleError(f"invalid dose {d}: duration must be >= 0")
        for sw in self.switches:
            if not math.isfinite(sw.time):
                raise ScheduleError(f"invalid switch {sw}: time must be finite")
        for name, h in self.half_life.items():
            if not h > 0:
                raise ScheduleError(f"half-life of {name!r} must be positive, got {h}")
        object.__setattr__(self, "doses", tuple(sorted(self.doses, key=lambda d: d.time)))
        object.__setattr__(self, "switches", tuple(sorted(self.switches, key=lambda s: s.time)))

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_events(
        cls, events: pd.DataFrame, half_life: Mapping[str, float] | None = None
    ) -> Schedule:
        """Schedule from the treatment rows (evid 1 and 2) of a canonical event table."""
        doses = [
            Dose(
                float(r.time),
                float(r.amt),
                str(r.agent) or "drug",
                _duration(r),
                str(r.unit) or "mg",
            )
            for r in events[events["evid"] == 1].itertuples()
        ]
        switches = [
            Switch(float(r.time), str(r.agent), bool(r.on))
            for r in events[events["evid"] == 2].itertuples()
            if not pd.isna(r.on)
        ]
        return cls(tuple(doses), tuple(switches), dict(half_life or {}))

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Schedule:
        """Schedule from a regimen description (the YAML/JSON file format).

        Example::

            {"doses": [{"agent": "docetaxel", "amount": 75, "unit": "mg/m2",
                        "start": 0, "every": 21, "count": 6, "duration": 0.04}],
             "periods": [{"agent": "adt", "start": 0, "end": 90}],
             "half_life": {"docetaxel": 0.5}}
        """
        try:
            doses = []
            for d in spec.get("doses", []):
                count, every = int(d.get("count", 1)), float(d.get("every", 0.0))
                for i in range(count):
                    doses.append(
                        Dose(
                            float(d.get("start", d.get("time", 0.0))) + i * every,
                            float(d["amount"]),
                            str(d.get("agent", "drug")),
                            float(d.get("duration", 0.0)),
                            str(d.get("unit", "mg")),
                        )
                    )
            switches = []
            for p in spec.get("periods", []):
                switches.append(Switch(float(p["start"]), str(p["agent"]), True))
                if p.get("end") is not None:
                    switches.append(Switch(float(p["end"]), str(p["agent"]), False))
            half_life = {str(k): float(v) for k, v in spec.get("half_life", {}).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ScheduleError(f"invalid schedule description: {exc!r}") from exc
        return cls(tuple(doses), tuple(switches), half_life)

    @classmethod
    def from_file(cls, path: str | Path) -> Schedule:
        """Schedule from a YAML or JSON regimen file (see :meth:`from_dict`)."""
        text = Path(path).read_text()
        try:
            if str(path).endswith(".json"):
                spec = json.loads(text)
            else:
                import yaml

                spec = yaml.safe_load(text)
        except Exception as exc:
            raise ScheduleError(f"{path}: cannot parse schedule: {exc}") from exc
        if not isinstance(spec, Mapping):
            raise ScheduleError(f"{path}: a schedule file must hold a mapping")
        try:
            return cls.from_dict(spec)
        except ScheduleError as exc:
            raise ScheduleError(f"{path}: {exc}") from exc

    # ---- views --------------------------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        """True when there is no dose and no switch."""
        return not self.doses and not self.switches

    @property
    def agents(self) -> tuple[str, ...]:
        """Agents named by doses or switches, sorted."""
        return tuple(sorted({d.agent for d in self.doses} | {s.agent for s in self.switches}))

    def half_life_of(self, agent: str) -> float:
        """Effect-compartment half-life of `agent`, days (given, known, or the default)."""
        return self.half_life.get(agent, KNOWN_HALF_LIVES.get(agent.lower(), DEFAULT_HALF_LIFE))

    def reference_amounts(self) -> dict[str, float]:
        """Largest dose of each agent: the exposure unit of that agent."""
        ref: dict[str, float] = {}
        for d in self.doses:
            ref[d.agent] = max(ref.get(d.agent, 0.0), d.amount)
        return {k: (v if v > 0 else 1.0) for k, v in ref.items()}

    def is_on(self, agent: str, t: float) -> bool:
        """Whether `agent` is switched on at time `t` (days) by the on/off switches."""
        state = False
        for s in self.switches:
            if s.agent == agent and s.time <= t:
                state = s.on
        return state

    def until(self, t: float) -> Schedule:
        """The part of the schedule at or before time `t` (days)."""
        return Schedule(
            tuple(d for d in self.doses if d.time <= t),
            tuple(s for s in self.switches if s.time <= t),
            self.half_life,
        )

    def then(self, future: Schedule, t: float) -> Schedule:
        """This schedule up to `t`, followed by `future`'s events after `t` (a new plan)."""
        past = self.until(t)
        return Schedule(
            past.doses + tuple(d for d in future.doses if d.time > t),
            past.switches + tuple(s for s in future.switches if s.time > t),
            {**self.half_life, **future.half_life},
        )

    def jump_times(self) -> np.ndarray:
        """Times (days) where exposure is discontinuous: doses, infusion ends, switches."""
        times = [d.time for d in self.doses]
        times += [d.time + d.duration for d in self.doses if d.duration > 0]
        times += [s.time for s in self.switches]
        return np.unique(np.asarray(times, dtype=float))

    def periods(self) -> list[tuple[str, float, float]]:
        """(agent, start, end) of on periods and infusions; bolus doses give start == end."""
        out = [(d.agent, d.time, d.time + d.duration) for d in self.doses]
        state: dict[str, float] = {}
        for s in self.switches:
            if s.on and s.agent not in state:
                state[s.agent] = s.time
            elif not s.on and s.agent in state:
                out.append((s.agent, state.pop(s.agent), s.time))
        out += [(agent, start, math.inf) for agent, start in state.items()]
        return sorted(out, key=lambda p: p[1])

    def to_events(self, subject_id: str) -> pd.DataFrame:
        """Treatment rows of the canonical event table for `subject_id`."""
        rows = [
            {"id": subject_id, "time": d.time, "evid": 1, "amt": d.amount, "agent": d.agent,
             "dur": d.duration, "rate": d.amount / d.duration if d.duration > 0 else 0.0,
             "unit": d.unit, "on": np.nan}
            for d in self.doses
        ] + [
            {"id": subject_id, "time": s.time, "evid": 2, "amt": np.nan, "agent": s.agent,
             "dur": 0.0, "rate": 0.0, "unit": "", "on": 1.0 if s.on else 0.0}
            for s in self.switches
        ]  # fmt: skip
        return pd.DataFrame(
            rows, columns=["id", "time", "evid", "amt", "agent", "dur", "rate", "unit", "on"]
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (explicit doses and periods) that :meth:`from_dict` reads back."""
        return {
            "doses": [
                {
                    "time": d.time,
                    "amount": d.amount,
                    "agent": d.agent,
                    "duration": d.duration,
                    "unit": d.unit,
                }
                for d in self.doses
            ],
            "periods": [
                {"agent": a, "start": s, "end": None if math.isinf(e) else e}
                for a, s, e in self.periods()
                if any(sw.agent == a for sw in self.switches)
            ],
            "half_life": dict(self.half_life),
        }

    # ---- exposure -----------------------------------------------------------------------
    def arrays(
        self, reference: Mapping[str, float] | None = None, *, n_doses: int | None = None,
        n_switches: int | None = None,
    ) -> ExposureArrays:  # fmt: skip
        """Fixed-shape arrays for :func:`exposure_at`, padded to `n_doses` / `n_switches`.

        Args:
            reference: exposure unit (amount) per agent; default :meth:`reference_amounts`.
            n_doses, n_switches: pad to these lengths (so one compiled function serves many
                schedules); default: no padding beyond one slot.
        """
        ref = {**self.reference_amounts(), **(reference or {})}
        nd = max(n_doses or 0, len(self.doses), 1)
        ns = max(n_switches or 0, len(self.switches), 1)
        dose = np.zeros((5, nd))
        dose[3] = math.log(2.0) / DEFAULT_HALF_LIFE
        for i, d in enumerate(self.doses):
            k = math.log(2.0) / self.half_life_of(d.agent)
            gy = d.amount if d.unit == "Gy" else 0.0
            dose[:, i] = (d.time, d.amount / ref.get(d.agent, 1.0), d.duration, k, gy)
        sw = np.zeros((2, ns))
        last: dict[str, bool] = {}
        for i, s in enumerate(self.switches):
            before = last.get(s.agent, False)
            sw[:, i] = (s.time, float(s.on) - float(before))
            last[s.agent] = s.on
        return ExposureArrays(dose[0], dose[1], dose[2], dose[3], sw[0], sw[1], dose[4])

    def exposure(
        self, times: Iterable[float], reference: Mapping[str, float] | None = None
    ) -> np.ndarray:
        """Exposure E(t) at `times` (days), as a NumPy array (for plots and checks)."""
        import jax

        arrays = self.arrays(reference)
        t = np.asarray(list(times), dtype=float)
        return np.asarray(jax.vmap(lambda s: exposure_at(s, arrays))(t))


def _duration(row: Any) -> float:
    dur = float(getattr(row, "dur", 0.0) or 0.0)
    rate = float(getattr(row, "rate", 0.0) or 0.0)
    if (math.isnan(dur) or dur == 0.0) and rate > 0 and not math.isnan(rate):
        return float(row.amt) / rate
    return 0.0 if math.isnan(dur) else dur


def exposure_at(t: Any, arrays: ExposureArrays) -> Any:
    """Dimensionless exposure at time `t` (days) for a schedule given as arrays (jit-friendly)."""
    import jax.numpy as jnp

    dt = t - arrays.dose_time
    k, dur = arrays.dose_rate_k, arrays.dose_duration
    started = dt >= 0.0
    bolus = jnp.exp(-k * jnp.maximum(dt, 0.0))
    safe_dur = jnp.where(dur > 0.0, dur, 1.0)
    infusing = jnp.minimum(jnp.maximum(dt, 0.0), safe_dur)
    infusion = (
        (-jnp.expm1(-k * infusing)) / (k * safe_dur) * jnp.exp(-k * jnp.maximum(dt - safe_dur, 0.0))
    )
    per_dose = jnp.where(started, jnp.where(dur > 0.0, infusion, bolus), 0.0)
    switched = jnp.where(t >= arrays.switch_time, arrays.switch_delta, 0.0)
    return jnp.sum(arrays.dose_amount * per_dose) + jnp.sum(switched)


class ScheduleIntegrals:
    """What a model's closed form may ask of the schedule at times ``tau`` since ``t0``.

    Calling it gives :func:`integrated_exposure` with an exponential weight (``cum(decay)``);
    :attr:`fractions` gives the radiotherapy fractions, for models with an instantaneous kill.
    """

    def __init__(self, tau: Any, t0: Any, arrays: ExposureArrays) -> None:
        self.tau, self.t0, self.arrays = tau, t0, arrays

    def __call__(self, decay: Any = 0.0) -> Any:
        return integrated_exposure(self.tau, self.t0, self.arrays, decay)

    @property
    def fractions(self) -> tuple[Any, Any]:
        """(times since t0 in days, doses in Gy) of every dose slot; 0 Gy for other doses."""
        return self.arrays.dose_time - self.t0, self.arrays.dose_gy


def _integral_of_decay(rate: Any, length: Any) -> Any:
    """Integral of exp(-rate s) for s from 0 to `length` (>= 0), stable as rate -> 0."""
    import jax.numpy as jnp

    small = rate < 1e-10
    safe = jnp.where(small, 1.0, rate)
    return jnp.where(small, length, -jnp.expm1(-safe * length) / safe)


def integrated_exposure(tau: Any, t0: Any, arrays: ExposureArrays, decay: Any = 0.0) -> Any:
    """Weighted cumulative exposure, the integral of exp(-decay s) E(t0 + s) ds from 0 to `tau`.

    Closed form for the K-PD exposure of :func:`exposure_at` (boluses, infusions, switches).
    It turns models that are linear in the tumour state (Claret TGI, sensitive/resistant)
    into closed forms: e.g. V = V0 exp(kg tau - kd * integrated_exposure(tau, t0, arrays, lam)).

    Args:
        tau: times since t0, days (array, >= 0).
        t0: start of integration, days (absolute).
        arrays: the schedule.
        decay: rate of the exponential weight, 1/day (Claret's resistance rate lambda).
    """
    import jax.numpy as jnp

    t = jnp.asarray(tau)[..., None] + t0  # (..., n_events)
    k, dur, amt = arrays.dose_rate_k, arrays.dose_duration, arrays.dose_amount
    start, end = arrays.dose_time, arrays.dose_time + dur

    def decaying(level: Any, since: Any, rate: Any) -> Any:
        # integral of level * exp(-rate (s - since)) * exp(-decay (s - t0)) over s in
        # [max(t0, since), max(t, that)], for an amount that decays from `since` on.
        lo = jnp.maximum(t0, since)
        hi = jnp.maximum(t, lo)
        at_lo = jnp.exp(-decay * (lo - t0) - rate * (lo - since))
        return level * at_lo * _integral_of_decay(decay + rate, hi - lo)

    safe_dur = jnp.where(dur > 0, dur, 1.0)
    # Infusion phase: amount (amt/(dur k)) (1 - exp(-k (s - start))) on [start, end].
    lo = jnp.maximum(t0, start)
    hi = jnp.clip(t, lo, jnp.maximum(end, lo))
    plateau = amt / (safe_dur * k)
    flat = jnp.exp(-decay * (lo - t0)) * _integral_of_decay(decay, hi - lo)
    rising = jnp.exp(-decay * (lo - t0) - k * (lo - start)) * _integral_of_decay(decay + k, hi - lo)
    infusing = plateau * (flat - rising)
    # After the infusion ends (or from a bolus), the amount decays at rate k.
    level_at_end = jnp.where(dur > 0, plateau * (-jnp.expm1(-k * safe_dur)), amt)
    after = decaying(level_at_end, end, k)
    doses = jnp.where(dur > 0, infusing, 0.0) + after
    switches = decaying(arrays.switch_delta, arrays.switch_time, 0.0)
    return jnp.sum(doses, axis=-1) + jnp.sum(switches, axis=-1)
