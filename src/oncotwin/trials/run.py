"""Run a virtual trial: JAX-vectorised simulation in memory-bounded chunks.

Patients of all replicates are numbered ``g = replicate * n + index`` and simulated in chunks
of `chunk_size` consecutive numbers, each chunk one call of a function compiled once per plan
(tumour model, randomisation, measurement noise, dropout, RECIST, PFS, OS and toxicity all in
it). Every random number of a patient comes from its own key
(:func:`oncotwin.trials.cohort.patient_keys`), and every chunk has the same shape, so the
numbers do not depend on which worker runs a chunk or in what order: the in-process run and a
Dask run (:mod:`oncotwin.scale.dask`) give bit-identical results for the same seed.

A patient whose simulation fails (ODE solver failure, non-finite values) is kept with status
"failed" instead of aborting the trial; a patient for whom no eligible candidate was found has
status "ineligible". Both are excluded from the analyses, and counted in the result.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .._jax import jax, jnp
from ..errors import DataError
from ..models import get_model
from ..simulate import trajectory
from .cohort import CohortSource, make_sampler
from .design import TrialDesign
from .endpoints import (
    RESPONSES,
    best_overall_response,
    first_progression,
    ntcp_rate,
    progression_free_survival,
    recist_timepoints,
    survival_times,
)

__all__ = [
    "BLOCK",
    "DEFAULT_CHUNK",
    "STATUS",
    "Executor",
    "LocalExecutor",
    "TrialPlan",
    "TrialResult",
    "assemble",
    "make_plan",
    "run_chunk",
    "run_trial",
]

DEFAULT_CHUNK = 16_384
BLOCK = 1024  # patients per compiled call; chunks are whole numbers of blocks
STATUS = ("ok", "ineligible", "failed")
Progress = Callable[[str, int], Callable[[int], None]]


@dataclass(frozen=True)
class TrialPlan:
    """Everything a worker needs to simulate any chunk of a trial (picklable).

    Attributes:
        design: the trial design.
        source: where patients come from.
        n: patients per replicate; replicates: number of replicate trials.
        seed: the random seed; chunk_size: patients per task (whole blocks).
        keep_visits: return the measured SLD at every visit (for plots); off for huge runs.
        block: patients per compiled call (results depend on n, seed and the block, never on
            the chunk size or the executor).
    """

    design: TrialDesign
    source: CohortSource
    n: int
    replicates: int
    seed: int
    chunk_size: int
    keep_visits: bool = True
    key: str = field(default="", compare=False)
    block: int = BLOCK

    @property
    def total(self) -> int:
        return self.n * self.replicates

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.total / self.chunk_size)


def make_plan(
    design: TrialDesign, n: int, *, replicates: int = 1, seed: int | None = None,
    source: CohortSource | None = None, chunk_size: int | None = None, keep_visits: bool = True,
) -> TrialPlan:  # fmt: skip
    """Check the sizes and build a :class:`TrialPlan` (see :func:`run_trial` for arguments)."""
    if n < 1 or replicates < 1:
        raise DataError(f"n and replicates must be >= 1, got n={n}, replicates={replicates}")
    if n * replicates >= 2**31:
        raise DataError("n x replicates must stay below 2^31 patients")
    src = source or CohortSource.from_design(design)
    if src.model != design.model:
        raise DataError(f"the cohort is of model {src.model!r}, the design uses {design.model!r}")
    cs = chunk_size or min(DEFAULT_CHUNK, n * replicates)
    if cs < 1:
        raise DataError(f"chunk_size must be >= 1, got {cs}")
    # Small trials use a smaller block (a power of two >= 64) so they do not simulate 1024.
    block = min(BLOCK, max(64, 1 << max(n * replicates - 1, 1).bit_length()))
    cs = block * math.ceil(cs / block)
    seed = design.seed if seed is None else int(seed)
    if not 0 <= seed < 2**32:
        raise DataError(f"seed must be in [0, 2^32), got {seed}")
    h = hashlib.sha256(json.dumps(design.to_dict(), sort_keys=True, default=str).encode())
    # The cohort's values, n and seed are arguments of the compiled function, not constants:
    # only what changes the program (design, cohort shapes) selects a compilation.
    shapes = {k: v.shape for k, v in src.arrays(design.covariates).items()}
    h.update(repr((src.names, src.covariates, src.model, keep_visits, shapes)).encode())
    return TrialPlan(design, src, n, replicates, seed, cs, keep_visits, h.hexdigest(), block)


_KERNELS: dict[str, Callable[..., dict[str, Any]]] = {}


def _kernel(plan: TrialPlan) -> Callable[..., dict[str, Any]]:
    """The compiled chunk function of a plan (cached per plan content, also on workers)."""
    if plan.key not in _KERNELS:
        _KERNELS.clear()  # one plan at a time: compiled functions hold their constants
        _KERNELS[plan.key] = _build_kernel(plan)
    return _KERNELS[plan.key]


def _build_kernel(plan: TrialPlan) -> Callable[..., dict[str, Any]]:
    d, src = plan.design, plan.source
    m = get_model(d.model)
    ep = d.endpoints
    sampler = make_sampler(src.model, src.names, d.covariates, d.eligibility)
    times_np = d.visit_times
    times = jnp.asarray(times_np)
    grid = np.unique(np.concatenate([times_np, [ep.landmark]]))
    vis_idx = jnp.asarray(np.searchsorted(grid, times_np))
    land_idx = int(np.searchsorted(grid, ep.landmark))
    grid_j = jnp.asarray(grid)
    ref = d.reference_amounts()
    n_doses = max([len(a.schedule.doses) for a in d.arms] + [1])
    n_sw = max([len(a.schedule.switches) for a in d.arms] + [1])
    per_arm = [a.schedule.arrays(ref, n_doses=n_doses, n_switches=n_sw) for a in d.arms]
    stacked = jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *per_arm)
    cum = np.cumsum([a.ratio for a in d.arms])
    cumratio = jnp.asarray(cum / cum[-1])
    names = m.param_names
    mods = jnp.asarray([[a.modifiers.get(k, 1.0) for k in names] for a in d.arms])
    ntcp = jnp.asarray([ntcp_rate(**a.ntcp) if a.ntcp else 0.0 for a in d.arms])
    closed = m.closed_form is not None
    size = [p.name for p in m.params if p.scale == "size"]
    free = [m.spec(k) for k in src.names]
    cov_names = [c.name for c in d.covariates]
    link_idx = jnp.asarray([cov_names.index(k) for k in ep.survival.covariates], dtype=int)
    rate = d.dropout_per_year / 365.25
    vis = d.visits
    neut = _neutropenia_setup(d) if ep.neutropenia else None

    def one(g: Any, n_per: Any, seed: Any, src_arrays: Any) -> dict[str, Any]:
        r, i = g // n_per, g % n_per
        key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), r), i)
        k_pat, k_arm, k_noise, k_drop, k_os, k_twin, k_tox, k_neut = jax.random.split(key, 8)
        pat = sampler(k_pat, src_arrays)
        arm = jnp.minimum(jnp.searchsorted(cumratio, jax.random.uniform(k_arm), side="right"),
                          len(d.arms) - 1)  # fmt: skip
        base = pat["baseline"]
        raw = {**pat["params"], **{k: base for k in size}}
        params = {k: raw[k] * mods[arm, j] for j, k in enumerate(names)}
        arrays = jax.tree.map(lambda x: x[arm], stacked)
        vals, ok = trajectory(m, params, grid_j, 0.0, arrays, closed_form=closed)
        true = vals[vis_idx]
        e = jax.random.normal(k_noise, (2, times.shape[0] + 1))
        noisy = jnp.concatenate([true, vals[land_idx : land_idx + 1]])
        meas = jnp.maximum(noisy * (1.0 + vis.proportional * e[0]) + vis.additive * e[1], 0.0)
        meas = jnp.where(meas < ep.detection_limit, 0.0, meas)
        # The twin's forecast under control: the patient's parameters as a calibrated twin
        # would know them (log-scale error twin_error), from the measured baseline.
        z_twin = pat["z"] + d.twin_error * jax.random.normal(k_twin, pat["z"].shape)
        twin = {p.name: p.constrain(z_twin[j]) for j, p in enumerate(free)}
        twin = {**twin, **{k: jnp.maximum(meas[0], 1e-6) for k in size}}
        twin = {k: twin[k] * mods[0, j] for j, k in enumerate(names)}
        control = jax.tree.map(lambda x: x[0], stacked)
        tv, tok = trajectory(m, twin, jnp.asarray([0.0, ep.landmark]), 0.0, control,
                             closed_form=closed)  # fmt: skip
        out = {
            "replicate": r, "index": i, "arm": arm, "eligible": pat["eligible"],
            "ok": ok & jnp.all(jnp.isfinite(vals)), "baseline": base, "cov": pat["cov"],
            "params": jnp.stack([params[k] for k in names]), "meas": meas,
            "log_ratio": jnp.log(vals[land_idx] / base),
            "dropout": jnp.where(rate > 0, jax.random.exponential(k_drop) / max(rate, 1e-300),
                                 jnp.inf),
            "w_os": jax.random.normal(k_os), "tox_u": jax.random.uniform(k_tox),
            "twin_log_ratio": jnp.where(tok, jnp.log(tv[1] / tv[0]), jnp.nan),
        }  # fmt: skip
        if neut is not None:
            out["neutropenia"] = neut(k_neut, arm)
        return out

    def chunk(g: Any, n_per: Any, seed: Any, src_arrays: Any) -> dict[str, Any]:
        p = jax.vmap(one, in_axes=(0, None, None, None))(g, n_per, seed, src_arrays)
        ok = p["ok"] & p["eligible"]
        covs = p["cov"][:, link_idx] if len(ep.survival.covariates) else p["cov"][:, :0]
        lr = jnp.where(ok, p["log_ratio"], 0.0)
        death = survival_times(ep.survival, lr, p["baseline"], covs, p["w_os"])
        censor = jnp.minimum(p["dropout"], d.follow_up)
        end = jnp.minimum(death, censor)
        meas = p["meas"][:, :-1]
        observed = times[None, :] <= end[:, None]
        codes = recist_timepoints(meas, observed)
        bor = best_overall_response(times, codes, confirm=ep.confirm, sd_min_days=ep.sd_min_days)
        pfs_t, pfs_e = progression_free_survival(times, codes, observed, death, censor)
        first_pd = first_progression(codes)
        # Assessments stop at progression: later visits are not part of the record.
        shown = observed & (jnp.arange(times.shape[0])[None, :] <= first_pd[:, None])
        b0 = meas[:, :1]
        pct = jnp.where(b0 > 0, 100.0 * (meas / jnp.where(b0 > 0, b0, 1.0) - 1.0), jnp.nan)
        post = shown & (jnp.arange(times.shape[0])[None, :] > 0)
        best = jnp.where(post.any(axis=1), jnp.min(jnp.where(post, pct, jnp.inf), axis=1), jnp.nan)
        land_seen = ep.landmark <= jnp.minimum(end, jnp.where(first_pd < times.shape[0],
                                               times[jnp.minimum(first_pd, times.shape[0] - 1)],
                                               jnp.inf))  # fmt: skip
        pct_land = jnp.where(land_seen & (b0[:, 0] > 0),
                             100.0 * (p["meas"][:, -1] / jnp.where(b0[:, 0] > 0, b0[:, 0], 1.0) - 1.0),
                             jnp.nan)  # fmt: skip
        twin_lp = (ep.survival.intercept + ep.survival.log_ratio * p["twin_log_ratio"]
                   + ep.survival.log_baseline * jnp.log(jnp.maximum(b0[:, 0], 1e-6) / 100.0)
                   + (covs @ jnp.asarray(list(ep.survival.covariates.values()))
                      if len(ep.survival.covariates) else 0.0))  # fmt: skip
        status = jnp.where(~p["eligible"], 1, jnp.where(p["ok"], 0, 2))
        out = {
            "replicate": p["replicate"], "index": p["index"], "arm": p["arm"], "status": status,
            "baseline": b0[:, 0], "true_baseline": p["baseline"], "cov": p["cov"],
            "params": p["params"], "bor": jnp.where(ok, bor, 0),
            "responder": ok & (bor >= 3), "pfs_time": pfs_t, "pfs_event": pfs_e & ok,
            "os_time": end, "os_event": (death <= censor) & ok, "pct_change": pct_land,
            "best_pct_change": best, "score_pct": 100.0 * (jnp.exp(p["twin_log_ratio"]) - 1.0),
            "score_os": twin_lp, "ntcp_event": p["tox_u"] < ntcp[p["arm"]],
            "progressed": (first_pd < times.shape[0]) & ok,
        }  # fmt: skip
        if neut is not None:
            out["neutropenia_g3"] = p["neutropenia"] >= 3
        if plan.keep_visits:
            out["visits"] = jnp.where(shown, meas, jnp.nan)
        return out

    # One compiled shape (BLOCK patients) whatever the chunk size: no recompilation, and
    # vectorised maths that could round differently for other batch shapes never sees them.
    # The cohort arrays, trial size and seed are arguments, so one compilation serves every
    # size, seed and cohort of the same shape.
    return jax.jit(chunk)


def _neutropenia_setup(d: TrialDesign) -> Callable[[Any, Any], Any]:
    """Per-patient CTCAE grade of the lowest ANC (Friberg model, docetaxel PK), IIV on Circ0
    and the drug-effect slope (log-normal, SD `omega`)."""
    from ..models.myelosuppression import (
        DOCETAXEL_FRIBERG,
        DOCETAXEL_PK,
        neutropenia_grade,
        simulate_anc,
    )

    agent = d.endpoints.neutropenia["agent"] if d.endpoints.neutropenia else "docetaxel"
    omega = d.endpoints.neutropenia["omega"] if d.endpoints.neutropenia else 0.3
    doses = [[x for x in a.schedule.doses if x.agent == agent] for a in d.arms]
    k = max([len(x) for x in doses] + [1])
    dt = np.zeros((len(d.arms), k))
    amt = np.zeros_like(dt)
    dur = np.zeros_like(dt)
    for j, arm in enumerate(doses):
        for i, x in enumerate(arm):
            dt[j, i], amt[j, i], dur[j, i] = x.time, x.amount, x.duration
    last = max([x.time for arm in doses for x in arm] + [0.0]) + 21.0
    grid = jnp.linspace(0.0, last, int(last * 2) + 1)  # twice a day: the nadir to ~1 %
    dt_j, amt_j, dur_j = jnp.asarray(dt), jnp.asarray(amt), jnp.asarray(dur)

    def grade(key: Any, arm: Any) -> Any:
        e = omega * jax.random.normal(key, (2,))
        pd_ = DOCETAXEL_FRIBERG._replace(circ0=DOCETAXEL_FRIBERG.circ0 * jnp.exp(e[0]),
                                         slope=DOCETAXEL_FRIBERG.slope * jnp.exp(e[1]))  # fmt: skip
        # Grading needs ~1 % accuracy, not the 1e-8 default: looser tolerances, fewer steps.
        anc = simulate_anc(grid, dt_j[arm], amt_j[arm], DOCETAXEL_PK, pd_,
                           dose_durations=dur_j[arm], rtol=1e-6, atol=1e-8)  # fmt: skip
        return jnp.where(jnp.all(jnp.isfinite(anc)), neutropenia_grade(jnp.min(anc)), -1)

    return grade


def run_chunk(plan: TrialPlan, chunk: int) -> dict[str, np.ndarray]:
    """Simulate chunk number `chunk` of a plan (NumPy arrays, padding removed)."""
    start = chunk * plan.chunk_size
    fn = _kernel(plan)
    src = plan.source.arrays(plan.design.covariates)
    n, seed = jnp.int64(plan.n), jnp.uint32(plan.seed)
    parts = []
    for b in range(start, min(start + plan.chunk_size, plan.total), plan.block):
        g = jnp.arange(b, b + plan.block, dtype=jnp.int64)
        parts.append(jax.device_get(fn(g, n, seed, src)))
    keep = min(plan.chunk_size, plan.total - start)
    return {k: np.concatenate([np.asarray(p[k]) for p in parts])[:keep] for k in parts[0]}


class Executor(Protocol):
    """Runs the chunks of a plan and returns their results in chunk order."""

    def map_chunks(
        self, plan: TrialPlan, chunks: Sequence[int], advance: Callable[[int], None]
    ) -> list[dict[str, np.ndarray]]: ...


class LocalExecutor:
    """Chunks one after the other in this process."""

    name = "in-process"
    workers = 1

    def map_chunks(
        self, plan: TrialPlan, chunks: Sequence[int], advance: Callable[[int], None]
    ) -> list[dict[str, np.ndarray]]:
        out = []
        for c in chunks:
            out.append(run_chunk(plan, c))
            advance(1)
        return out


@dataclass(frozen=True)
class TrialResult:
    """A simulated trial (or replicates of it).

    Attributes:
        plan: what was run (design, cohort source, n, replicates, seed, chunk size).
        patients: one row per patient: replicate, index, arm (name), status ("ok",
            "ineligible", "failed"), baseline (measured SLD, mm), covariates, parameters, bor
            (RECIST best overall response), responder, pfs_time/pfs_event, os_time/os_event
            (days), pct_change (at the landmark), best_pct_change, score_pct/score_os (twin
            forecasts under control), toxicity flags.
        visits: (patients, visits) measured SLD at each assessment (NaN when not assessed),
            or None when not kept.
        times: the assessment days.
        elapsed: wall time, s; backend: executor description.
    """

    plan: TrialPlan
    patients: pd.DataFrame
    visits: np.ndarray | None
    times: np.ndarray
    elapsed: float
    backend: str

    @property
    def design(self) -> TrialDesign:
        return self.plan.design

    def counts(self) -> dict[str, int]:
        """Patients by status."""
        s = self.patients["status"].value_counts()
        return {k: int(s.get(k, 0)) for k in STATUS}

    def provenance(self) -> dict[str, Any]:
        """Seed, sizes, chunking, backend and versions (for results files and reports)."""
        from .. import __version__

        return {
            "seed": self.plan.seed, "n": self.plan.n, "replicates": self.plan.replicates,
            "chunk_size": self.plan.chunk_size, "backend": self.backend,
            "elapsed_s": round(self.elapsed, 3), "cohort": self.plan.source.label,
            "model": self.plan.design.model, "oncotwin": __version__, "jax": jax.__version__,
            "status": self.counts(), "design_key": self.plan.key,
        }  # fmt: skip


def run_trial(
    design: TrialDesign, n: int, *, replicates: int = 1, seed: int | None = None,
    source: CohortSource | None = None, chunk_size: int | None = None,
    keep_visits: bool | None = None, executor: Executor | None = None,
    progress: Progress | None = None,
) -> TrialResult:  # fmt: skip
    """Simulate `replicates` trials of `n` patients each.

    Args:
        design: the trial design.
        n: patients per trial (randomised across arms by the design's ratio).
        replicates: independent replicate trials (new patients each).
        seed: random seed (default: the design's); recorded in the result.
        source: cohort to draw from (default: the design's parameter distribution).
        chunk_size: patients per task, rounded up to whole blocks of :data:`BLOCK` patients
            (fewer for trials under 1024 patients; memory is bounded by the block:
            ~ BLOCK x visits x doses x 8 bytes per temporary
            for closed forms); results depend neither on it nor on the executor.
        keep_visits: keep every visit's SLD (default: only when n x replicates <= 200,000).
        executor: where chunks run (default in-process; see :mod:`oncotwin.scale.dask`).
        progress: ``start(label, total) -> advance(k)`` callback.

    Returns:
        A :class:`TrialResult`.
    """
    keep = keep_visits if keep_visits is not None else n * replicates <= 200_000
    plan = make_plan(design, n, replicates=replicates, seed=seed, source=source,
                     chunk_size=chunk_size, keep_visits=keep)  # fmt: skip
    ex = executor or LocalExecutor()
    advance = progress("simulating chunks", plan.n_chunks) if progress else (lambda k: None)
    t0 = time.perf_counter()
    parts = ex.map_chunks(plan, range(plan.n_chunks), advance)
    elapsed = time.perf_counter() - t0
    return assemble(plan, parts, elapsed, getattr(ex, "name", type(ex).__name__))


def assemble(
    plan: TrialPlan, parts: Iterable[dict[str, np.ndarray]], elapsed: float, backend: str
) -> TrialResult:
    """Concatenate chunk results into a :class:`TrialResult`."""
    parts = list(parts)
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    d = plan.design
    m = get_model(d.model)
    frame: dict[str, Any] = {
        "replicate": cat["replicate"].astype(np.int64), "index": cat["index"].astype(np.int64),
        "arm": pd.Categorical.from_codes(cat["arm"].astype(int), [a.name for a in d.arms]),
        "status": pd.Categorical.from_codes(cat["status"].astype(int), list(STATUS)),
        "baseline": cat["baseline"],
    }  # fmt: skip
    for j, c in enumerate(d.covariates):
        frame[c.name] = cat["cov"][:, j]
    for j, k in enumerate(m.param_names):
        frame[f"param_{k}"] = cat["params"][:, j]
    frame["bor"] = pd.Categorical.from_codes(cat["bor"].astype(int), list(RESPONSES))
    for k in ("responder", "pfs_time", "pfs_event", "os_time", "os_event", "progressed",
              "pct_change", "best_pct_change", "score_pct", "score_os", "ntcp_event"):  # fmt: skip
        frame[k] = cat[k]
    if "neutropenia_g3" in cat:
        frame["neutropenia_g3"] = cat["neutropenia_g3"]
    patients = pd.DataFrame(frame)
    return TrialResult(plan, patients, cat.get("visits"), d.visit_times, elapsed, backend)
