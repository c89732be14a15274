"""The four modalities as optimisation problems: twin draws, schedule families, toxicity.

Each problem holds the posterior draws of one patient's twin (and of the parameters the data
cannot identify, from literature priors, said in :attr:`notes`), the standard of care, the
schedule families to search, the default constraints and a vectorised simulator. The search
(:func:`oncotwin.optimize.search.run`) is the same for all.

- :class:`RadiotherapyProblem`: fraction number and dose per fraction (uniform families at
  equal or lower normal-tissue BED, and per-fraction doses optimised by gradient through
  :mod:`oncotwin.optimize.rt_model`);
- :class:`ChemotherapyProblem`: dose per cycle (whole vials), cycle length and number of
  cycles, forecast by the twin's own drug-effect model; neutropenia from the Friberg model;
- :class:`RadiopharmaceuticalProblem`: activity per cycle, number of cycles and interval;
  organ absorbed dose and BED (Dale 1985) against the kidney and marrow limits;
- :class:`HormoneProblem`: continuous versus adaptive abiraterone with on/off thresholds
  (Zhang 2017 model).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtr

from .._jax import jax, jnp
from ..errors import ModelError
from ..radiotherapy import fractions
from ..schedule import Dose, Schedule, Switch
from . import rt_model as rtm
from .constraints import (
    AllowedDays,
    Constraint,
    MaxCumulative,
    MaxPerAdministration,
    MetricBound,
    WholeUnits,
    neutropenia,
    organ_limit,
)
from .objectives import Objective, Trajectories
from .recommendation import Candidate
from .risk import RiskMeasure
from .search import augmented_lagrangian

__all__ = [
    "ChemotherapyProblem",
    "HormoneProblem",
    "RTPrior",
    "RadiopharmaceuticalProblem",
    "RadiotherapyProblem",
    "growth_from_twin",
]

PEDICINI_2014 = (
    "Pedicini P et al. Clinical radiobiology of glioblastoma multiforme: estimation of tumor "
    "control probability from various radiotherapy fractionation schemes. Strahlenther Onkol "
    "2014;190:925-932 (alpha 0.12/Gy, alpha/beta 8 Gy, N 1e4 clonogens)"
)
BURMAN_1991 = (
    "Burman C et al. Fitting of normal tissue tolerance data to an analytic function. Int J "
    "Radiat Oncol Biol Phys 1991;21:123-135 (brain necrosis: TD50(1) 60 Gy, m 0.15, n 0.25)"
)
LAWRENCE_2010 = (
    "Lawrence YR et al. Radiation dose-volume effects in the brain. Int J Radiat Oncol Biol "
    "Phys 2010;76(3 Suppl):S20-S27 (QUANTEC; alpha/beta about 2 Gy for necrosis)"
)
NETTER_1 = (
    "Strosberg J et al. Phase 3 trial of 177Lu-Dotatate for midgut neuroendocrine tumors. "
    "N Engl J Med 2017;376:125-135 (7.4 GBq every 8 weeks, 4 cycles)"
)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


# --------------------------------------------------------------------------- twin -> growth


def growth_from_twin(
    twin: Any, start: float, n_draws: int, seed: int, spacing: float = 30.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-draw burden, growth rate and inverse capacity of an untreated twin from `start` on.

    The twin's own untreated forecast at ``start, start + s, start + 2 s`` is matched exactly by
    a logistic curve per draw (1/V is then linear in exp(-g t): the ratio of successive
    differences of 1/V gives exp(-g s) and the intercept 1/K). Draws that do not look logistic
    (not growing, or not slowing) get exponential growth at their mean rate over ``2 s``.

    Args:
        twin: a :class:`~oncotwin.twin.DigitalTwin`.
        start: plan start, days (absolute).
        n_draws: posterior draws. seed: seed of the draws (same seed, same draws).
        spacing: s, days.

    Returns:
        ``(v0, g, inv_capacity)``, each (n_draws,): data units, 1/day, 1/(data unit).
    """
    fc = twin.forecast([start, start + spacing, start + 2 * spacing], Schedule(), seed=seed,
                       n_draws=n_draws)  # fmt: skip
    v = np.asarray(fc.latent, float)
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ModelError("the twin's untreated forecast has non-positive or failed draws")
    w = 1.0 / v
    d1, d2 = w[:, 1] - w[:, 0], w[:, 2] - w[:, 1]
    r = np.divide(d2, d1, out=np.full_like(d1, np.nan), where=d1 != 0)
    logistic = (r > 0) & (r < 1) & (d1 < 0)
    g_log = -np.log(np.where(logistic, r, 0.5)) / spacing
    inv_k = np.where(logistic, (w[:, 1] - r * w[:, 0]) / np.where(logistic, 1 - r, 1.0), 0.0)
    g_exp = np.log(v[:, 2] / v[:, 0]) / (2 * spacing)
    g = np.where(logistic & (inv_k > 0), g_log, np.maximum(g_exp, 1e-4))
    inv_k = np.where(logistic & (inv_k > 0), inv_k, 0.0)
    return v[:, 0], g, inv_k


@dataclass(frozen=True)
class RTPrior:
    """Literature prior for what tumour data before radiotherapy cannot identify.

    Log-normal: median and SD of the log. Defaults for high-grade glioma from Pedicini 2014
    (medians) with between-patient spreads that are this module's assumption.

    Attributes:
        alpha, alpha_sd: radiosensitivity of the burden, 1/Gy.
        alpha_beta, alpha_beta_sd: tumour alpha/beta, Gy.
        clonogens: clonogens at the start (for TCP).
    """

    alpha: float = 0.12
    alpha_sd: float = 0.3
    alpha_beta: float = 8.0
    alpha_beta_sd: float = 0.2
    clonogens: float = 1e4

    def draw(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, 7])
        a = self.alpha * np.exp(self.alpha_sd * rng.standard_normal(n))
        ab = self.alpha_beta * np.exp(self.alpha_beta_sd * rng.standard_normal(n))
        return a, ab


# --------------------------------------------------------------------------- radiotherapy


def _budget_dose(budget: float, n: int, alpha_beta: float, fraction: float) -> float:
    """Dose per fraction d with n fractions at OAR BED = budget: n f d (1 + f d/ab) = budget."""
    fd = 0.5 * alpha_beta * (-1.0 + math.sqrt(1.0 + 4.0 * budget / (n * alpha_beta)))
    return fd / fraction


@functools.lru_cache(maxsize=8)
def _rt_batch(n_times: int) -> Any:
    """Jitted: (candidates x draws) burden on a grid, closed-form regrowth and end clonogens."""

    def one(p: rtm.RTParams, times: Any, doses: Any, grid: Any) -> tuple[Any, Any, Any, Any]:
        burden = rtm.burden_course(p, times, doses, grid)
        _, w_last = rtm.surviving_fraction_course(p, times, doses)
        regrow = rtm.regrowth_time(p, times, doses)
        nadir_regrow = rtm.regrowth_time(p, times, doses, 1.2 / w_last)
        return burden, regrow, p.clonogens / (w_last * p.v0), nadir_regrow

    over_draws = jax.vmap(one, in_axes=(0, None, None, None))
    return jax.jit(jax.vmap(over_draws, in_axes=(None, 0, 0, None)))


def _exact_where_valid(
    grid: np.ndarray, burden: np.ndarray, v_last: np.ndarray, regrow: np.ndarray,
    progress: np.ndarray,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Closed-form times where their premise holds, else read off the grid.

    The closed forms regrow from the burden after the last fraction; they are the event times
    when that burden is the course's nadir (below the start for regrowth). Draws whose tumour
    was never brought below its start size, or reached its nadir before the last fraction,
    take the grid-based definitions (:mod:`oncotwin.optimize.objectives`).
    """
    from .objectives import time_to_progression, time_to_regrowth

    nadir = np.min(burden, axis=1)
    at_nadir = v_last <= nadir * (1 + 1e-9)
    below = v_last < burden[:, 0]
    return {
        "regrowth_time": np.where(at_nadir & below, regrow,
                                  time_to_regrowth(grid, burden, 0.0)),
        "progression_time": np.where(at_nadir, progress,
                                     time_to_progression(grid, burden, 0.0)),
    }  # fmt: skip


@dataclass
class RadiotherapyProblem:
    """External-beam fractionation for one patient's twin.

    Attributes:
        params: per-draw :class:`~oncotwin.optimize.rt_model.RTParams` (stacked).
        patient: subject id. unit: the burden's unit.
        start: day of the first possible fraction (absolute days); start_weekday: its weekday
            (0 = Monday); weekdays: treat Monday to Friday only (else every day).
        standard_dose, standard_fractions: the standard of care (60 Gy in 30 for HGG).
        fraction_range: numbers of fractions searched (inclusive).
        dose_levels: fractions of the toxicity budget searched (Pareto front of efficacy
            against normal-tissue BED).
        total_doses: if given, search these total doses (Gy) split equally over each number
            of fractions instead of the budget levels (rounded down to the dose step).
        budget: normal-tissue BED limit, Gy (default: that of the standard of care).
        oar, oar_alpha_beta, oar_fraction: the organ at risk, its alpha/beta (Gy) and the
            fraction of the prescribed dose it receives.
        ntcp_td50, ntcp_m: LKB parameters of the organ (EQD2 as uniform dose).
        max_dose_per_fraction, dose_step: Gy.
        fixed_total: with gradient refinement, hold the total dose at this value (Gy).
        gradient_fractions: fraction numbers refined by gradient (default: the standard's).
    """

    params: rtm.RTParams
    patient: str = "patient"
    unit: str = ""
    start: float = 0.0
    start_weekday: int = 0
    weekdays: bool = True
    standard_dose: float = 60.0
    standard_fractions: int = 30
    fraction_range: tuple[int, int] = (15, 45)
    dose_levels: tuple[float, ...] = (0.7, 0.8, 0.9, 1.0)
    total_doses: tuple[float, ...] = ()
    budget: float | None = None
    oar: str = "brain"
    oar_alpha_beta: float = 2.0
    oar_fraction: float = 1.0
    ntcp_td50: float = 60.0 * 3.0**0.25  # 1/3 of the brain (Burman 1991, n = 0.25)
    ntcp_m: float = 0.15
    max_dose_per_fraction: float = 5.0
    dose_step: float = 0.05
    fixed_total: float | None = None
    gradient_fractions: tuple[int, ...] | None = None
    grid_points: int = 241
    seed: int = 0
    warning: str | None = None
    notes: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    modality: str = "radiotherapy"
    toxicity_label: str = "normal-tissue BED (Gy)"

    def __post_init__(self) -> None:
        self.params = rtm.stack_params(self.params)
        lo, hi = self.fraction_range
        if not 1 <= lo <= hi:
            raise ModelError(f"fraction_range must be 1 <= lo <= hi, got {self.fraction_range}")

    @property
    def n_draws(self) -> int:
        return int(self.params.v0.shape[0])

    @property
    def standard_bed(self) -> float:
        d = self.oar_fraction * self.standard_dose / self.standard_fractions
        return float(self.standard_fractions * d * (1 + d / self.oar_alpha_beta))

    @property
    def limit(self) -> float:
        return self.standard_bed if self.budget is None else float(self.budget)

    def _candidate(self, doses: Sequence[float], times: Sequence[float] | None, family: str,
                   standard: bool = False) -> Candidate:  # fmt: skip
        doses = [float(d) for d in doses]
        slots = (
            [float(t) for t in times] if times is not None
            else fractions(sum(doses), len(doses), self.start, self.weekdays,
                           self.start_weekday).times.tolist()
        )  # fmt: skip
        keep = [(t, d) for t, d in zip(slots, doses, strict=True) if d > 0]
        total = sum(d for _, d in keep)
        uniform = len({round(d, 6) for _, d in keep}) == 1
        if uniform:
            name = f"{_fmt(total)} Gy in {len(keep)} fractions of {_fmt(keep[0][1])} Gy"
        else:
            lo, hi = min(d for _, d in keep), max(d for _, d in keep)
            name = (
                f"{_fmt(total)} Gy in {len(keep)} fractions of {_fmt(lo)}-{_fmt(hi)} Gy "
                f"(first week {_fmt(sum(d for t, d in keep if t < self.start + 7))} Gy)"
            )
        sched = Schedule(tuple(Dose(float(t), d, "radiotherapy", 0.0, "Gy") for t, d in keep))
        params = {"n_fractions": float(len(keep)), "total_dose": total,
                  "dose_per_fraction": total / len(keep)}  # fmt: skip
        return Candidate(name, family, params, sched, standard)

    def standard_of_care(self) -> Candidate:
        n = self.standard_fractions
        return self._candidate([self.standard_dose / n] * n, None, "standard of care", True)

    def family(self) -> list[Candidate]:
        out = []
        lo, hi = self.fraction_range
        if self.total_doses:
            for n in range(lo, hi + 1):
                for total in self.total_doses:
                    d = math.floor(total / n / self.dose_step + 1e-9) * self.dose_step
                    if 0 < d <= self.max_dose_per_fraction:
                        out.append(
                            self._candidate([round(d, 10)] * n, None, "total dose x fractions")
                        )
            return out
        for n in range(lo, hi + 1):
            for level in self.dose_levels:
                d = _budget_dose(level * self.limit, n, self.oar_alpha_beta, self.oar_fraction)
                d = min(d, self.max_dose_per_fraction)
                d = math.floor(d / self.dose_step + 1e-9) * self.dose_step
                if d > 0:
                    out.append(self._candidate([round(d, 10)] * n, None, "uniform fractionation"))
        return out

    def default_constraints(self) -> list[Constraint]:
        days: list[Constraint] = [AllowedDays(self.start_weekday)] if self.weekdays else []
        return [
            *days,
            MetricBound("oar_bed", self.limit + 1e-9, None,
                        f"{self.oar} BED (alpha/beta {self.oar_alpha_beta:g} Gy)", "Gy"),
            MaxPerAdministration(self.max_dose_per_fraction, "Gy", "radiotherapy",
                                 "dose per fraction"),
            WholeUnits(self.dose_step, "Gy", "radiotherapy", "dose per fraction in steps"),
        ]  # fmt: skip

    def default_horizon(self, objective: Objective) -> float:
        return 720.0

    def _arrays(self, candidates: Sequence[Candidate]) -> tuple[np.ndarray, np.ndarray]:
        # Padded to a multiple of 16 fractions and 16 candidates, so that one compiled
        # function serves every chunk (padding: no dose, no time step).
        n = -(-max(len(c.schedule.doses) for c in candidates) // 16) * 16
        rows = -(-len(candidates) // 16) * 16
        times = np.zeros((rows, n))
        doses = np.zeros((rows, n))
        for i, c in enumerate(candidates):
            t = [d.time - self.start for d in c.schedule.doses]
            times[i, : len(t)] = t
            times[i, len(t) :] = t[-1] if t else 0.0
            doses[i, : len(t)] = [d.amount for d in c.schedule.doses]
        return times, doses

    def simulate(
        self, candidates: Sequence[Candidate], horizon: float
    ) -> list[tuple[Trajectories, dict[str, Any], float]]:
        times, doses = self._arrays(candidates)
        grid = np.linspace(0.0, horizon, self.grid_points)
        burden, regrow, clon, nadir_regrow = (np.asarray(x) for x in _rt_batch(grid.size)(
            self.params, jnp.asarray(times), jnp.asarray(doses), jnp.asarray(grid)
        ))  # fmt: skip
        ab, f = self.oar_alpha_beta, self.oar_fraction
        out = []
        for i in range(len(candidates)):
            d = f * doses[i][doses[i] > 0]
            bed = float(np.sum(d * (1 + d / ab)))
            eqd2 = bed / (1 + 2 / ab)
            ntcp = float(ndtr((eqd2 - self.ntcp_td50) / (self.ntcp_m * self.ntcp_td50)))
            traj = Trajectories(
                grid + self.start, burden[i], self.start,
                {"surviving_clonogens": clon[i],
                 **_exact_where_valid(grid, burden[i], clon[i] / self.params.clonogens
                                      * np.asarray(self.params.v0), regrow[i],
                                      nadir_regrow[i])},
            )  # fmt: skip
            metrics = {"oar_bed": bed, f"ntcp:{self.oar}": ntcp, "total_dose": float(d.sum() / f)}
            out.append((traj, metrics, bed))
        return out

    # ---- gradient-based refinement ----------------------------------------------------
    def refine(
        self, objective: Objective, risk: RiskMeasure, constraints: Sequence[Constraint]
    ) -> list[Candidate]:
        """Per-fraction doses optimised by gradient (augmented Lagrangian, L-BFGS), then
        rounded down to the dose step and repaired to meet every bound exactly, for each number
        of fractions in `gradient_fractions` (default: the standard's)."""
        if objective.name not in _SMOOTH:
            return []
        fns = _rt_refine_functions(objective.name, objective.horizon or 180.0, risk,
                                   objective.larger_is_better)  # fmt: skip
        bed_limit = min([c.limit for c in constraints if isinstance(c, MetricBound)
                         and c.metric == "oar_bed"] or [self.limit])  # fmt: skip
        d_max = min([c.limit for c in constraints if isinstance(c, MaxPerAdministration)]
                    + [self.max_dose_per_fraction])  # fmt: skip
        total_cap = min([c.limit for c in constraints if isinstance(c, MaxCumulative)] or [1e9])
        ntcp_limit = min([c.limit for c in constraints if isinstance(c, MetricBound)
                          and c.metric == f"ntcp:{self.oar}"] or [1.0])  # fmt: skip
        out = []
        for n in self.gradient_fractions or (self.standard_fractions,):
            times = fractions(1.0, n, 0.0, self.weekdays, self.start_weekday).times
            args = {
                "params": self.params, "times": jnp.asarray(times), "bed_limit": bed_limit,
                "total_cap": total_cap, "ntcp_limit": ntcp_limit, "ab": self.oar_alpha_beta,
                "f": self.oar_fraction, "td50": self.ntcp_td50, "m": self.ntcp_m,
                "total": float(self.fixed_total or 0.0),
            }  # fmt: skip
            eq = fns[2] if self.fixed_total is not None else None
            d0 = min(_budget_dose(bed_limit, n, self.oar_alpha_beta, self.oar_fraction), d_max)
            if self.fixed_total is not None:
                d0 = min(d0, self.fixed_total / n)
            res = augmented_lagrangian(fns[0], np.full(n, 0.95 * d0), np.zeros(n),
                                       np.full(n, d_max), ineq=fns[1], eq=eq, args=args,
                                       steps=60, outer=10)  # fmt: skip
            x = np.floor(np.maximum(res.x, 0.0) / self.dose_step + 1e-9) * self.dose_step

            def feasible(v: np.ndarray, args: dict[str, Any] = args) -> bool:
                g = np.asarray(fns[1](jnp.asarray(v), args))
                return bool(np.all(g <= 1e-9)) and bool(np.all(v <= d_max + 1e-9))

            # The solver meets the constraints only to its tolerance: take steps off the
            # largest fractions until every bound holds exactly.
            while not feasible(x) and x.sum() > 0:
                j = int(np.argmax(x))
                x[j] = max(0.0, x[j] - self.dose_step)
            # A fixed total is restored by adding steps to the smallest fractions while the
            # bounds allow (rounding down lost at most one step per fraction).
            if self.fixed_total is not None:
                for j in np.argsort(x):
                    while x.sum() < self.fixed_total - 1e-9:
                        trial = x.copy()
                        trial[j] += self.dose_step
                        if not feasible(trial):
                            break
                        x = trial
            x = np.round(x, 10)
            if x.sum() > 0:
                out.append(self._candidate(x, list(times + self.start), "gradient-optimised"))
        return out


_SMOOTH = ("regrowth", "ttp", "tcp", "burden")


@functools.lru_cache(maxsize=32)
def _rt_refine_functions(name: str, horizon: float, risk: RiskMeasure,
                         larger_is_better: bool) -> tuple[Any, Any, Any]:  # fmt: skip
    """Loss, inequality and equality functions of per-fraction doses (module-level and cached,
    so the compiled solver is reused for every patient)."""
    sign = -1.0 if larger_is_better else 1.0

    def outcome(pp: rtm.RTParams, times: Any, doses: Any) -> Any:
        if name == "regrowth":
            return rtm.regrowth_time(pp, times, doses)
        _, w_last = rtm.surviving_fraction_course(pp, times, doses)
        if name == "ttp":
            return rtm.regrowth_time(pp, times, doses, 1.2 / w_last)
        if name == "tcp":
            return jnp.exp(-pp.clonogens / (w_last * pp.v0))
        return rtm.burden_course(pp, times, doses, jnp.asarray([horizon]))[0]

    def loss(x: Any, a: dict[str, Any]) -> Any:
        values = jax.vmap(lambda pp: outcome(pp, a["times"], x))(a["params"])
        return risk.of_loss(sign * values)

    def ineq(x: Any, a: dict[str, Any]) -> Any:
        return jnp.stack([
            rtm.oar_bed(x, a["ab"], a["f"]) - a["bed_limit"],
            jnp.sum(x) - a["total_cap"],
            rtm.oar_ntcp(x, a["ab"], a["td50"], a["m"], a["f"]) - a["ntcp_limit"],
        ])  # fmt: skip

    def eq(x: Any, a: dict[str, Any]) -> Any:
        return jnp.atleast_1d(jnp.sum(x) - a["total"])

    return loss, ineq, eq


# --------------------------------------------------------------------------- chemotherapy

# Log-normal between-patient SDs on the Friberg parameters: this module's assumption
# (order of magnitude of published population fits; not taken from one paper).
FRIBERG_IIV = {"circ0": 0.3, "mtt": 0.15, "slope": 0.4}


@functools.lru_cache(maxsize=16)
def _anc_batch(n_doses: int, n_times: int) -> Any:
    from ..models import myelosuppression as ms

    def one(circ0: Any, mtt: Any, slope: Any, times: Any, dt: Any, amt: Any, dur: Any,
            base: ms.FribergParams, pk: ms.PKParams) -> Any:  # fmt: skip
        pd = base._replace(circ0=circ0, mtt=mtt, slope=slope)
        anc, _ = ms.solve_anc(times, dt, amt, dur, pk, pd, jnp.asarray(times[0]),
                               rtol=1e-6, atol=1e-8, max_steps=16_384)  # fmt: skip
        return anc

    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None, None, None, None, None, None)))


@dataclass
class ChemotherapyProblem:
    """Dose, cycle length and number of cycles of one drug, forecast by the twin.

    The tumour response comes from the twin's own model (it must use the drug exposure, e.g.
    claret or two_population); neutropenia from the Friberg model with the given PK/PD and
    log-normal between-patient variability (:data:`FRIBERG_IIV`) drawn per posterior draw.

    Attributes:
        twin: the patient's twin. agent: the drug.
        start: first possible dose day (absolute). standard: the standard-of-care schedule.
        dose_factors: doses searched, as multiples of the standard dose (rounded to vials).
        cycle_lengths, n_cycles: searched, days and counts.
        vial: vial size in the dose unit (whole vials).
        mg_per_unit: mg of drug per unit of the schedule's amounts (for the PK model).
        pk, pd: the Friberg model's PK and PD parameters (default docetaxel, Friberg 2002).
        infusion_days: infusion duration, days.
    """

    twin: Any
    agent: str
    start: float
    standard: Schedule
    n_draws: int = 200
    seed: int = 0
    dose_factors: tuple[float, ...] = (0.6, 0.8, 1.0, 1.2)
    cycle_lengths: tuple[float, ...] = (14.0, 21.0, 28.0)
    n_cycles: tuple[int, ...] = (4, 6, 8)
    vial: float = 20.0
    mg_per_unit: float = 1.0
    pk: Any = None
    pd: Any = None
    infusion_days: float = 1.0 / 24.0
    modality: str = "chemotherapy"
    toxicity_label: str = "P(grade >= 3 neutropenia)"
    provenance: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from ..models import get_model
        from ..models import myelosuppression as ms

        for post in self.twin.posteriors:
            if not get_model(post.model).uses_exposure:
                raise ModelError(
                    f"the twin's model {post.model!r} has no drug effect, so it cannot compare "
                    "chemotherapy schedules; recalibrate with a treatment model (claret, "
                    "two_population)"
                )
        doses = [d for d in self.standard.doses if d.agent == self.agent]
        if not doses:
            raise ModelError(f"the standard-of-care schedule has no dose of {self.agent!r}")
        self.pk = self.pk or ms.DOCETAXEL_PK
        self.pd = self.pd or ms.DOCETAXEL_FRIBERG
        rng = np.random.default_rng([self.seed, 11])
        z = rng.standard_normal((3, self.n_draws))
        base = self.pd
        self._iiv = (
            float(base.circ0) * np.exp(FRIBERG_IIV["circ0"] * z[0]),
            float(base.mtt) * np.exp(FRIBERG_IIV["mtt"] * z[1]),
            float(base.slope) * np.exp(FRIBERG_IIV["slope"] * z[2]),
        )
        self.notes = (
            *self.notes,
            "neutropenia from the Friberg 2002 model (docetaxel PK/PD unless given) with "
            "assumed between-patient variability, not from this patient's blood counts",
        )

    @property
    def patient(self) -> str:
        return str(self.twin.subject.id)

    @property
    def unit(self) -> str:
        return str(self.twin.subject.unit)

    @property
    def warning(self) -> str | None:
        return self.twin.warning  # type: ignore[no-any-return]

    def _plan(self, amount: float, every: float, cycles: int, family: str,
              standard: bool = False) -> Candidate:  # fmt: skip
        doses = tuple(
            Dose(self.start + k * every, amount, self.agent, self.infusion_days,
                 self.standard.doses[0].unit)
            for k in range(cycles)
        )  # fmt: skip
        name = f"{self.agent} {_fmt(amount)} every {every:g} days x {cycles}"
        return Candidate(name, family, {"dose": amount, "cycle_days": every, "cycles": cycles},
                         Schedule(doses, half_life=self.standard.half_life), standard)  # fmt: skip

    def _standard_parts(self) -> tuple[float, float, int]:
        doses = [d for d in self.standard.doses if d.agent == self.agent]
        gaps = np.diff([d.time for d in doses])
        every = float(np.median(gaps)) if gaps.size else 21.0
        return float(doses[0].amount), every, len(doses)

    def standard_of_care(self) -> Candidate:
        amount, every, cycles = self._standard_parts()
        return self._plan(amount, every, cycles, "standard of care", True)

    def family(self) -> list[Candidate]:
        amount, _, _ = self._standard_parts()
        out = []
        for f in self.dose_factors:
            a = max(self.vial, round(f * amount / self.vial) * self.vial)
            for every in self.cycle_lengths:
                for cycles in self.n_cycles:
                    out.append(self._plan(a, every, cycles, "dose x cycle length x cycles"))
        return out

    def refine(self, objective: Objective, risk: RiskMeasure,
               constraints: Sequence[Constraint]) -> list[Candidate]:  # fmt: skip
        return []

    def default_constraints(self) -> list[Constraint]:
        return [neutropenia(4, 0.1), WholeUnits(self.vial, self.standard.doses[0].unit,
                                                self.agent, "whole vials")]  # fmt: skip

    def default_horizon(self, objective: Objective) -> float:
        return 240.0

    def simulate(
        self, candidates: Sequence[Candidate], horizon: float
    ) -> list[tuple[Trajectories, dict[str, Any], float]]:
        from ..models.myelosuppression import CTCAE_BOUNDS, CTCAE_LLN

        grid = np.linspace(self.start, self.start + horizon, 121)
        out = []
        for c in candidates:
            fc = self.twin.forecast(grid, c.schedule, seed=self.seed, n_draws=self.n_draws)
            doses = [d for d in c.schedule.doses if d.agent == self.agent]
            t_end = doses[-1].time + max(c.params.get("cycle_days", 21.0), 21.0)
            times = np.linspace(self.start, t_end, int(4 * (t_end - self.start)) + 1)
            n = 1 << max(0, math.ceil(math.log2(len(doses))))
            dt = np.full(n, self.start)
            amt = np.zeros(n)
            dur = np.zeros(n)
            dt[: len(doses)] = [d.time for d in doses]
            amt[: len(doses)] = [d.amount * self.mg_per_unit for d in doses]
            dur[: len(doses)] = [d.duration for d in doses]
            anc = np.asarray(_anc_batch(n, times.size)(
                *(jnp.asarray(x) for x in self._iiv), jnp.asarray(times), jnp.asarray(dt),
                jnp.asarray(amt), jnp.asarray(dur), self.pd, self.pk,
            ))  # fmt: skip
            low = np.nanmin(anc, axis=1)
            grade = (low < CTCAE_LLN).astype(float) + sum(
                (low < b).astype(float) for b in CTCAE_BOUNDS
            )
            grade = np.where(np.isfinite(low), grade, 4.0)  # a failed solve counts as grade 4
            traj = Trajectories(fc.times, np.asarray(fc.latent), self.start)
            metrics = {"neutropenia_grade": grade, "nadir_anc": low,
                       "cumulative_dose": sum(d.amount for d in doses)}  # fmt: skip
            out.append((traj, metrics, float(np.mean(grade >= 3))))
        return out


# --------------------------------------------------------------------------- radiopharmaceutical


@functools.lru_cache(maxsize=4)
def _rpt_batch(n_times: int) -> Any:
    """Jitted over draws: burden, regrowth time and clonogens left after the last cycle."""

    def one(pp: rtm.RTParams, s: Any, times: Any, activity: Any, grid: Any) -> Any:
        d = activity * s  # tumour absorbed dose of each administration, Gy
        _, w_last = rtm.surviving_fraction_course(pp, times, d)
        return (rtm.burden_course(pp, times, d, grid), rtm.regrowth_time(pp, times, d),
                pp.clonogens / (w_last * pp.v0))  # fmt: skip

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None)))


@dataclass
class RadiopharmaceuticalProblem:
    """Activity per cycle, number of cycles and interval of a radiopharmaceutical.

    Tumour response as in the radiotherapy twin with one instantaneous LQ kill per
    administration whose BED accounts for protracted delivery (Dale 1985:
    ``BED = D (1 + G D / (alpha/beta))``, ``G = lam / (lam + mu)``), which is the LQ kill with an
    effective alpha/beta of ``(alpha/beta) / G``. Organ doses per GBq vary between draws
    (log-normal, `dose_sd`), so organ limits are chance constraints.

    Attributes:
        params: per-draw RT-twin parameters (growth and radiosensitivity).
        tumour_gy_per_gbq, kidney_gy_per_gbq, marrow_gy_per_gbq: absorbed dose per activity,
            Gy/GBq (defaults are illustrative: pass the patient's dosimetry).
        dose_sd: log-normal SD of the per-GBq doses between draws.
        effective_half_life: days. repair_half_time: days. kidney_alpha_beta, tumour uses
            params.alpha_beta. Standard: 7.4 GBq every 56 days x 4 (NETTER-1).
    """

    params: rtm.RTParams
    patient: str = "patient"
    unit: str = ""
    start: float = 0.0
    agent: str = "177Lu"
    tumour_gy_per_gbq: float = 3.0
    kidney_gy_per_gbq: float = 0.6
    marrow_gy_per_gbq: float = 0.04
    dose_sd: float = 0.25
    effective_half_life: float = 3.0
    repair_half_time: float = 1.5 / 24.0
    kidney_alpha_beta: float = 2.6
    kidney_repair_half_time: float = 2.8 / 24.0
    standard_activity: float = 7.4
    standard_cycles: int = 4
    standard_interval: float = 56.0
    activities: tuple[float, ...] = (3.7, 5.55, 7.4, 9.25, 11.1)
    cycles: tuple[int, ...] = (2, 3, 4, 5, 6)
    intervals: tuple[float, ...] = (42.0, 56.0)
    kidney_risk_factors: bool = False
    seed: int = 0
    warning: str | None = None
    notes: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    modality: str = "radiopharmaceutical"
    toxicity_label: str = "median cumulative kidney BED (Gy)"
    grid_points: int = 241

    def __post_init__(self) -> None:
        self.params = rtm.stack_params(self.params)
        rng = np.random.default_rng([self.seed, 13])
        z = rng.standard_normal((3, self.n_draws))
        self._s = (
            self.tumour_gy_per_gbq * np.exp(self.dose_sd * z[0]),
            self.kidney_gy_per_gbq * np.exp(self.dose_sd * z[1]),
            self.marrow_gy_per_gbq * np.exp(self.dose_sd * z[2]),
        )

    @property
    def n_draws(self) -> int:
        return int(self.params.v0.shape[0])

    def _g(self, repair: float) -> float:
        lam, mu = math.log(2) / self.effective_half_life, math.log(2) / repair
        return lam / (lam + mu)

    def _plan(self, activity: float, n: int, every: float, family: str,
              standard: bool = False) -> Candidate:  # fmt: skip
        doses = tuple(Dose(self.start + k * every, activity, self.agent, 0.0, "GBq")
                      for k in range(n))  # fmt: skip
        name = f"{self.agent} {_fmt(activity)} GBq every {every:g} days x {n}"
        return Candidate(name, family, {"activity": activity, "cycles": n, "interval": every},
                         Schedule(doses), standard)  # fmt: skip

    def standard_of_care(self) -> Candidate:
        return self._plan(self.standard_activity, self.standard_cycles, self.standard_interval,
                          "standard of care", True)  # fmt: skip

    def family(self) -> list[Candidate]:
        return [self._plan(a, n, e, "activity x cycles x interval")
                for a in self.activities for n in self.cycles for e in self.intervals]  # fmt: skip

    def refine(self, objective: Objective, risk: RiskMeasure,
               constraints: Sequence[Constraint]) -> list[Candidate]:  # fmt: skip
        return []

    def default_constraints(self) -> list[Constraint]:
        return [
            organ_limit("kidneys", "bed", 28.0 if self.kidney_risk_factors else 40.0, 0.05),
            organ_limit("red_marrow", "dose", 2.0, 0.05),
        ]

    def default_horizon(self, objective: Objective) -> float:
        return 720.0

    def simulate(
        self, candidates: Sequence[Candidate], horizon: float
    ) -> list[tuple[Trajectories, dict[str, Any], float]]:
        g_t = self._g(self.repair_half_time)
        g_k = self._g(self.kidney_repair_half_time)
        p = self.params._replace(alpha_beta=self.params.alpha_beta / g_t)
        grid = np.linspace(0.0, horizon, self.grid_points)
        s_t, s_k, s_m = self._s

        run = _rpt_batch(grid.size)
        out = []
        for c in candidates:
            times = np.asarray([d.time - self.start for d in c.schedule.doses])
            act = np.asarray([d.amount for d in c.schedule.doses])
            burden, regrow, clon = run(p, jnp.asarray(s_t), jnp.asarray(times),
                                       jnp.asarray(act), jnp.asarray(grid))  # fmt: skip
            kid = s_k[:, None] * act[None, :]
            kidney_bed = np.sum(kid * (1 + g_k * kid / self.kidney_alpha_beta), axis=1)
            marrow = s_m * act.sum()
            traj = Trajectories(grid + self.start, np.asarray(burden), self.start,
                                {"surviving_clonogens": np.asarray(clon),
                                 "regrowth_time": np.asarray(regrow)})  # fmt: skip
            metrics = {"bed:kidneys": kidney_bed, "dose:kidneys": s_k * act.sum(),
                       "dose:red_marrow": marrow, "total_activity": float(act.sum())}  # fmt: skip
            out.append((traj, metrics, float(np.median(kidney_bed))))
        return out


# --------------------------------------------------------------------------- hormone


@functools.lru_cache(maxsize=4)
def _hormone_batch(max_switches: int) -> Any:
    from ..models import hormone as h

    def one(params: Any, y0: Any, ts: Any, levels: Any) -> Any:
        # Tolerances looser than the module's 1e-8: ranking schedules by time to resistance
        # needs days, not the accuracy of one published trajectory, and this is much faster.
        return h.simulate_segments(params, y0, ts, levels, jnp.full(max_switches - 1, jnp.inf),
                           jnp.asarray(True), max_switches=max_switches,
                           solver=h.HormoneSolver(rtol=1e-6, atol=1e-6, root_tol=1e-8))  # fmt: skip

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None, 0)))


@dataclass
class HormoneProblem:
    """Continuous versus adaptive abiraterone (Zhang 2017 model) for one patient.

    Draws: growth rates log-normal around the published example patient (`r_sd`), resistant
    cells at the start log-normal (median `tminus`, `tminus_sd`); PSA scaled to `baseline_psa`.

    Attributes:
        stop_levels, restart_levels: adaptive thresholds searched (fractions of baseline PSA).
    """

    patient: str = "patient"
    start: float = 0.0
    baseline_psa: float = 20.0
    n_draws: int = 64
    seed: int = 0
    r_sd: float = 0.15
    tminus: float = 1.0
    tminus_sd: float = 1.0
    stop_levels: tuple[float, ...] = (0.3, 0.5, 0.7)
    restart_levels: tuple[float, ...] = (0.8, 1.0)
    unit: str = "ng/mL"
    warning: str | None = None
    notes: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    modality: str = "hormone"
    toxicity_label: str = "fraction of time on abiraterone"
    max_switches: int = 64

    def __post_init__(self) -> None:
        from ..models import hormone as h

        rng = np.random.default_rng([self.seed, 17])
        base = h.zhang_params()
        r = np.asarray(base.r)[None, :] * np.exp(self.r_sd * rng.standard_normal((self.n_draws, 3)))
        tminus = self.tminus * np.exp(self.tminus_sd * rng.standard_normal(self.n_draws))
        fields = {k: np.broadcast_to(np.asarray(v), (self.n_draws, *np.shape(v)))
                  for k, v in base._asdict().items()}  # fmt: skip
        fields["r"] = r
        params = h.ZhangParams(**{k: jnp.asarray(np.array(v)) for k, v in fields.items()})
        # the start of h.initial_state (40 % of the untreated equilibrium), per draw
        eq = np.asarray(h.pretreatment_equilibrium(params))
        cells = np.column_stack([0.4 * eq[:, 0], 0.4 * eq[:, 1], tminus])
        psa = float(base.c_psa) * cells.sum(axis=1) / float(base.sigma)
        y0 = np.column_stack([cells, psa])
        scale = self.baseline_psa / y0[:, 3]
        params = params._replace(c_psa=params.c_psa * jnp.asarray(scale))
        y0[:, 3] = self.baseline_psa
        self._params, self._y0 = params, y0
        self.notes = (
            *self.notes,
            "hormone-therapy response from the Zhang 2017 model (published example patient, "
            "with assumed spread of growth rates and resistant cells), PSA scaled to baseline",
        )

    def _plan(self, stop: float | None, restart: float | None) -> Candidate:
        if stop is None:
            sched = Schedule(switches=(Switch(self.start, "abiraterone", True),))
            return Candidate("continuous abiraterone", "standard of care", {}, sched, True)
        name = (f"adaptive abiraterone: off below {100 * stop:.0f}% of baseline PSA, on again "
                f"at {100 * (restart or 1.0):.0f}%")  # fmt: skip
        sched = Schedule(switches=(Switch(self.start, "abiraterone", True),))
        return Candidate(name, "adaptive thresholds",
                         {"stop_below": stop, "restart_above": float(restart or 1.0)}, sched)  # fmt: skip

    def standard_of_care(self) -> Candidate:
        return self._plan(None, None)

    def family(self) -> list[Candidate]:
        return [self._plan(s, r) for s in self.stop_levels for r in self.restart_levels if r > s]

    def refine(self, objective: Objective, risk: RiskMeasure,
               constraints: Sequence[Constraint]) -> list[Candidate]:  # fmt: skip
        return []

    def default_constraints(self) -> list[Constraint]:
        return []

    def default_horizon(self, objective: Objective) -> float:
        return 4000.0

    def simulate(
        self, candidates: Sequence[Candidate], horizon: float
    ) -> list[tuple[Trajectories, dict[str, Any], float]]:
        from ..models import hormone as h

        ts = np.linspace(0.0, horizon, 401)
        out = []
        for c in candidates:
            stop = c.params.get("stop_below", -np.inf)
            restart = c.params.get("restart_above", np.inf)
            levels = np.tile([stop * self.baseline_psa, restart * self.baseline_psa],
                             (self.n_draws, 1))  # fmt: skip
            res = _hormone_batch(self.max_switches)(
                self._params, jnp.asarray(self._y0), jnp.asarray(ts), jnp.asarray(levels)
            )
            ttr = np.asarray(jax.vmap(h.time_to_resistance)(res))
            ttr = np.where(np.isfinite(ttr), ttr, horizon)
            on = np.asarray(jax.vmap(h.drug_on_time)(res)) / horizon
            psa = np.where(np.asarray(res.ok)[:, None], np.asarray(res.psa), np.nan)
            traj = Trajectories(ts + self.start, psa, self.start, {"resistance_time": ttr})
            out.append((traj, {"drug_on_fraction": on}, float(np.mean(on))))
        return out
