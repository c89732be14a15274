"""Sequential data assimilation: update a twin's posterior when new observations arrive.

A twin calibrated on observations ``y_1..n`` holds draws ``z_i`` from ``p(z | y_1..n)``. Given
new observations ``y_n+1..m`` of the same subject, one step of a sequential Monte Carlo (SMC)
sampler (Chopin N, Biometrika 2002;89:539-552; Del Moral P, Doucet A, Jasra A, JRSS B
2006;68:411-436) turns them into draws from ``p(z | y_1..m)`` without recalibrating:

1. Reweight. Observations are conditionally independent given ``z``, so the incremental
   importance weight of draw ``i`` is ``w_i ∝ p(y_1..m | z_i) / p(y_1..n | z_i)``, the likelihood
   of the new observations alone (both evaluated with the same model, reference size and the
   new schedule, which equals the old one up to the last old observation).
2. Check. The weights are Pareto-smoothed (Vehtari A et al., JMLR 2024;25:1-58). When the
   Pareto k is at most 0.7 and the effective sample size ``1 / sum(w^2)`` is at least
   `min_ess_fraction` of the draws, the old draws cover the new posterior well enough.
3. Resample (systematic resampling; Douc R, Cappe O, ISPA 2005) and rejuvenate: every particle
   takes `rejuvenation_steps` random-walk Metropolis-Hastings moves that leave the new posterior
   invariant, with proposal covariance ``(2.38^2 / d) Cov(particles)`` (Roberts GO, Rosenthal JS,
   Statistical Science 2001;16:351-367). This replaces the duplicates resampling creates.
4. Otherwise (the weights collapse: the new data moved the posterior far from the old one) the
   subject is recalibrated from scratch, as are cases where the old posterior cannot be
   reweighted: it failed its diagnostics, the schedule changed before the last old
   observation, or the subject's reference size or exposure units changed.

Surprises: before assimilating, each new observation is compared with the old twin's central
95% posterior-predictive interval (measurement noise included) under the new schedule; those
outside it are reported, since they are what a clinician would want flagged (a tumour growing
faster, or shrinking more, than the twin expected).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._jax import jax, jnp
from ..errors import DataError, ModelError
from ..models import get_model
from ..observe import get_error_model
from ..simulate import DEFAULT_SOLVER, SolverSettings
from .calibrate import METHODS, _loglik_fn, _posterior, calibrate_subjects
from .posterior import KHAT_MAX, Diagnostics, Posterior
from .problem import Spec, SubjectArrays, SubjectData, log_posterior, make_spec

if TYPE_CHECKING:
    from ..twin import DigitalTwin

SURPRISE_LEVEL = 0.95
MIN_SURPRISE_DRAWS = 4000  # predictive draws behind a 95% interval: its bounds to ~1% of the spread
RW_SCALE = 2.38  # Roberts & Rosenthal 2001: optimal random-walk scale is 2.38 / sqrt(d)


@dataclass(frozen=True)
class Surprise:
    """A new observation outside the previous twin's central predictive interval.

    Attributes:
        time: observation time, days.
        observed: observed value (the detection limit when `censored`).
        lo, hi: the interval the previous twin predicted for a new measurement at `time`.
        level: the interval's level (0.95).
        tail_probability: predictive probability of a measurement at least as extreme on the
            observed side: P(Y <= y) below the interval, P(Y >= y) above it (censored:
            P(Y <= detection limit)).
        censored: the observation was below the detection limit.
    """

    time: float
    observed: float
    lo: float
    hi: float
    level: float
    tail_probability: float
    censored: bool = False


@dataclass(frozen=True)
class Update:
    """The result of assimilating new observations into a posterior.

    Attributes:
        posterior: the posterior given all observations (old and new).
        how: "reweighted" (SMC step), "recalibrated" (full calibration on all data) or
            "unchanged" (no new observation and no change to the past schedule).
        surprises: new observations outside the previous twin's 95% predictive interval.
        ess_fraction: effective sample size of the incremental weights / number of draws
            (NaN when they were not computed).
        pareto_k: Pareto k of the incremental weights (NaN when not computed).
        reason: why the subject was recalibrated ("" otherwise).
    """

    posterior: Posterior
    how: str
    surprises: list[Surprise]
    ess_fraction: float
    pareto_k: float
    reason: str = ""


# ---- checks -------------------------------------------------------------------------------


def _check_extends(old: SubjectData, new: SubjectData) -> None:
    """Raise DataError unless `new` is `old` with observations appended (same subject)."""
    for what in ("id", "kind", "unit"):
        if getattr(new, what) != getattr(old, what):
            raise DataError(
                f"subject {old.id!r}: new data have {what} {getattr(new, what)!r}, "
                f"old data {getattr(old, what)!r}"
            )
    n = len(old.times)
    if len(new.times) < n:
        raise DataError(
            f"subject {old.id!r}: new data have {len(new.times)} observations, fewer than the "
            f"{n} already assimilated"
        )
    same = (
        np.isclose(new.times[:n], old.times, rtol=1e-12, atol=0.0)
        & np.isclose(new.y[:n], old.y, rtol=1e-12, atol=0.0)
        & (new.censored[:n] == old.censored)
    )
    if not same.all():
        i = int(np.argmin(same))
        raise DataError(
            f"subject {old.id!r}: new data do not extend the old ones: observation row {i} "
            f"differs (old: time {old.times[i]:g}, value {old.y[i]:g}, censored "
            f"{bool(old.censored[i])}; new: time {new.times[i]:g}, value {new.y[i]:g}, censored "
            f"{bool(new.censored[i])})"
        )
    added = new.times[n:]
    if added.size and (added[0] < old.last_time or np.any(np.diff(added) < 0)):
        raise DataError(
            f"subject {old.id!r}: new observations must follow the old ones in time (last old "
            f"observation at day {old.last_time:g}, new at {np.round(added, 6).tolist()})"
        )


def _why_not_reweight(
    posterior: Posterior, old: SubjectData, new: SubjectData, *, check_diagnostics: bool = True
) -> str:
    """Why the old posterior cannot be reweighted to the new data ("" when it can)."""
    t = old.last_time
    before_old, before_new = old.schedule.until(t), new.schedule.until(t)
    agents = set(before_old.agents) | set(before_new.agents)
    if (
        before_old.doses != before_new.doses
        or before_old.switches != before_new.switches
        or any(old.schedule.half_life_of(a) != new.schedule.half_life_of(a) for a in agents)
    ):
        return f"the treatment schedule up to day {t:g} changed, so the old posterior is void"
    if new.ref != old.ref:
        return f"the reference size changed ({old.ref:g} -> {new.ref:g})"
    if new.schedule.reference_amounts() != old.schedule.reference_amounts():
        # The twin measures exposure in units of the largest dose; a larger new dose changes
        # the unit, and with it the meaning of the drug-effect parameters.
        return "a new dose larger than any before changed the exposure unit"
    if check_diagnostics and not posterior.converged:
        return "the previous posterior failed its diagnostics: " + "; ".join(
            posterior.diagnostics.problems()
        )
    return ""


# ---- surprises ----------------------------------------------------------------------------


def surprises(
    twin: DigitalTwin, new: SubjectData, *, level: float = SURPRISE_LEVEL, seed: int = 0
) -> list[Surprise]:
    """New observations of `new` that fall outside `twin`'s central predictive interval.

    Args:
        twin: the twin before the update (its subject holds the old observations).
        new: the subject's data with the new observations appended.
        level: interval level (default 95%).
        seed: random seed of the predictive draws.

    Returns:
        One :class:`Surprise` per new observation outside the interval, in time order. A
        censored observation (below the detection limit) is a surprise when the limit lies
        below the interval: the tumour is then certainly smaller than the twin expected.
    """
    _check_extends(twin.subject, new)
    n = len(twin.subject.times)
    t_new, y_new, cens = new.times[n:], new.y[n:], new.censored[n:]
    if not t_new.size:
        return []
    n_draws = max(MIN_SURPRISE_DRAWS, max(p.n_draws for p in twin.posteriors))
    # The new schedule after the last old observation (the recorded past is kept by forecast),
    # with the old twin's exposure units.
    fc = twin.forecast(t_new, new.schedule, seed=seed, n_draws=n_draws)
    order = np.argsort(t_new, kind="stable")  # forecast sorts its times
    draws = np.empty_like(fc.draws)
    draws[:, order] = fc.draws
    lo, hi = fc.interval(level)
    lo_, hi_ = np.empty_like(lo), np.empty_like(hi)
    lo_[order], hi_[order] = lo, hi
    out = []
    for j, (t, y, c) in enumerate(zip(t_new, y_new, cens, strict=True)):
        d = draws[:, j][np.isfinite(draws[:, j])]
        below = float(np.mean(d <= y)) if d.size else float("nan")
        above = float(np.mean(d >= y)) if d.size else float("nan")
        if c:
            hit, tail = bool(y < lo_[j]), below
        else:
            hit, tail = bool(y < lo_[j] or y > hi_[j]), min(below, above)
        if hit:
            out.append(
                Surprise(float(t), float(y), float(lo_[j]), float(hi_[j]), level, tail, bool(c))
            )
    return out


# ---- the SMC step -------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _rejuvenate_fn(spec: Spec, steps: int) -> Callable[..., Any]:
    """Jitted random-walk Metropolis-Hastings for all particles at once (vmapped), targeting
    the posterior of `data`: (z (n, d), chol (d, d), keys (n, 2), data) -> (z, accepted).
    Compiled once per Spec and step count; jax.jit caches each padded data shape."""

    def target(z: Any, data: SubjectArrays) -> Any:
        lp = log_posterior(spec, z, data)
        return jnp.where(jnp.isnan(lp), -jnp.inf, lp)

    def one(z: Any, key: Any, chol: Any, data: SubjectArrays) -> tuple[Any, Any]:
        def step(carry: Any, k: Any) -> tuple[Any, None]:
            z, lp, accepted = carry
            k_prop, k_acc = jax.random.split(k)
            prop = z + chol @ jax.random.normal(k_prop, z.shape)
            lp_prop = target(prop, data)
            # -inf - -inf is NaN, and NaN comparisons are False: such a proposal is rejected.
            accept = jnp.log(jax.random.uniform(k_acc)) < lp_prop - lp
            z = jnp.where(accept, prop, z)
            return (z, jnp.where(accept, lp_prop, lp), accepted + accept), None

        init = (z, target(z, data), jnp.zeros((), jnp.int32))
        (z, _, accepted), _ = jax.lax.scan(step, init, jax.random.split(key, steps))
        return z, accepted

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None)))


def _smoothed_weights(log_weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed normalised importance weights and their Pareto k (Vehtari et al. 2024)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az

        lw, khat = az.psislw(np.asarray(log_weights, float))
    w = np.exp(lw - np.max(lw))
    return w / w.sum(), float(khat)


def _systematic_resample(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Systematic resampling indices (lower variance than multinomial; Douc & Cappe 2005)."""
    n = len(w)
    cdf = np.cumsum(w)
    cdf[-1] = 1.0
    return np.searchsorted(cdf, (rng.uniform() + np.arange(n)) / n)


def _proposal_chol(z: np.ndarray) -> np.ndarray:
    """Cholesky factor of (2.38^2/d) Cov(z), eigenvalues floored so it always exists."""
    d = z.shape[1]
    cov = np.atleast_2d(np.cov(z, rowvar=False))
    evals, evecs = np.linalg.eigh(0.5 * (cov + cov.T))
    evals = np.maximum(evals, 1e-10 * max(float(evals.max()), 1e-12))
    cov = (evecs * evals) @ evecs.T
    return np.asarray(np.linalg.cholesky(RW_SCALE**2 / d * cov))


def _solver(posterior: Posterior) -> SolverSettings:
    s = posterior.settings
    return SolverSettings(
        rtol=float(s.get("rtol", DEFAULT_SOLVER.rtol)),
        atol=float(s.get("atol", DEFAULT_SOLVER.atol)),
    )


def _base_method(posterior: Posterior) -> str:
    """The calibration method behind a posterior (an SMC posterior remembers its origin)."""
    method = str(posterior.settings.get("calibration_method", posterior.method))
    return method if method in METHODS else "nuts"


def _recalibrate(
    posterior: Posterior, new: SubjectData, method: str | None, seed: int
) -> Posterior:
    """Full calibration on `new` with the settings the old posterior was obtained with."""
    base = _base_method(posterior)
    method = method or base
    s = posterior.settings
    chains, draws = int(posterior.z.shape[0]), int(posterior.z.shape[1])
    kwargs: dict[str, Any] = {}
    if method == "nuts":
        kwargs = {"chains": chains, "draws": draws}
        if base == "nuts":
            kwargs |= {k: s[k] for k in ("chains", "draws", "warmup", "target_accept") if k in s}
    else:  # Laplace draws chains * draws in one chain
        kwargs = {"chains": 1, "draws": int(s["draws"]) if base == "laplace" and "draws" in s
                  else chains * draws}  # fmt: skip
    return calibrate_subjects(
        posterior.model, [new], method=method, error_model=posterior.error_model,
        prior=posterior.prior, seed=seed, solver=_solver(posterior), **kwargs,
    )[0]  # fmt: skip


def assimilate(
    posterior: Posterior,
    old: SubjectData,
    new: SubjectData,
    *,
    seed: int = 0,
    min_ess_fraction: float = 0.5,
    rejuvenation_steps: int = 20,
    fallback_method: str | None = None,
) -> Update:
    """Update `posterior` (calibrated on `old`) with the observations `new` adds.

    Args:
        posterior: the subject's posterior given `old` (any method, or a previous update).
        old: the data `posterior` was calibrated on.
        new: the same subject's data with observations appended (the old ones unchanged);
            its schedule may add treatment after the last old observation.
        seed: random seed (resampling, rejuvenation moves, fallback calibration, surprises).
        min_ess_fraction: the smallest effective sample size of the incremental weights, as a
            fraction of the draws, that reweighting accepts.
        rejuvenation_steps: Metropolis-Hastings moves per particle after resampling.
        fallback_method: calibration method when recalibrating (default: the method that
            produced the original posterior, with its settings).

    Returns:
        An :class:`Update`: the new posterior (same (chains, draws) shape when reweighted),
        how it was obtained, and the surprising new observations.

    Raises:
        DataError: `new` is not `old` with observations appended (names the first differing
            row), or belongs to another subject or observed quantity; `posterior` is of
            another subject.
        ModelError: `min_ess_fraction` not in (0, 1], or `rejuvenation_steps` < 1.
    """
    if not 0 < min_ess_fraction <= 1:
        raise ModelError(f"min_ess_fraction must be in (0, 1], got {min_ess_fraction}")
    if rejuvenation_steps < 1:
        raise ModelError(f"rejuvenation_steps must be >= 1, got {rejuvenation_steps}")
    if posterior.subject != old.id:
        raise DataError(f"posterior is of subject {posterior.subject!r}, old data of {old.id!r}")
    _check_extends(old, new)
    from ..twin import DigitalTwin  # the twin module imports this one lazily, not at load

    found = surprises(DigitalTwin(old, [posterior]), new, seed=seed)
    n_old, n_new = len(old.times), len(new.times)
    # Without new observations a posterior that failed its diagnostics is kept as it is.
    reason = _why_not_reweight(posterior, old, new, check_diagnostics=n_new > n_old)
    if not reason and n_new == n_old:
        return Update(posterior, "unchanged", found, 1.0, float("nan"))

    def recalibrated(why: str, ess: float = float("nan"), khat: float = float("nan")) -> Update:
        post = _recalibrate(posterior, new, fallback_method, seed)
        return Update(post, "recalibrated", found, ess, khat, why)

    if reason:
        return recalibrated(reason)
    model, err = get_model(posterior.model), get_error_model(posterior.error_model)
    spec = make_spec(model, err, new.schedule, _solver(posterior))
    # The old subject's exposure units (equal to the new ones here; see _why_not_reweight).
    data = jax.tree.map(jnp.asarray, new.arrays(posterior.prior, old.schedule.reference_amounts()))
    z = posterior.flat_z()
    ll = np.asarray(_loglik_fn(spec)(jnp.asarray(z), data))
    # Likelihood of all data over that of the old data: the new rows (same solve, same ref).
    log_w = ll[:, n_old:n_new].sum(axis=1)
    log_w = np.where(np.isnan(log_w), -np.inf, log_w)
    if not np.any(np.isfinite(log_w)):
        return recalibrated("the new data have zero likelihood under every posterior draw")
    w, khat = _smoothed_weights(log_w)
    ess = float(1.0 / np.sum(w**2) / len(w))
    if not (khat <= KHAT_MAX and ess >= min_ess_fraction):
        return recalibrated(
            f"the importance weights collapsed (Pareto k {khat:.2f}, ESS {100 * ess:.0f}% of "
            f"the draws; reweighting needs k <= {KHAT_MAX} and >= {100 * min_ess_fraction:.0f}%)",
            ess,
            khat,
        )
    rng = np.random.default_rng([seed, n_new])
    # Shuffle after systematic resampling: its sorted indices would put duplicates in one chain.
    particles = z[rng.permutation(_systematic_resample(w, rng))]
    # fold_in: successive updates with the same seed still draw fresh moves.
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), n_new), len(particles))
    moved, accepted = _rejuvenate_fn(spec, int(rejuvenation_steps))(
        jnp.asarray(particles), keys, jnp.asarray(_proposal_chol(particles)), data
    )
    particles = np.asarray(moved)
    acceptance = float(np.mean(np.asarray(accepted)) / rejuvenation_steps)
    ll = np.asarray(_loglik_fn(spec)(jnp.asarray(particles), data))
    chains, draws, d = posterior.z.shape
    diagnostics = Diagnostics(
        "smc", chains=chains, pareto_k=khat, ess_fraction=ess, acceptance=acceptance
    )
    settings = {
        **posterior.settings,
        "method": "smc",
        "calibration_method": _base_method(posterior),
        "smc_rejuvenation_steps": int(rejuvenation_steps),
        "smc_min_ess_fraction": float(min_ess_fraction),
        "smc_proposal": f"random-walk Metropolis-Hastings, ({RW_SCALE}^2/d) x particle covariance",
    }
    post = _posterior(
        new, spec, particles.reshape(chains, draws, d), ll.reshape(chains, draws, -1),
        diagnostics, posterior.prior, "smc", seed, settings,
    )  # fmt: skip
    return Update(post, "reweighted", found, ess, khat)


def update_twin(
    twin: DigitalTwin, new: SubjectData, *, seed: int = 0, data_version: str | None = None,
    **kwargs: Any,
) -> tuple[DigitalTwin, Update]:  # fmt: skip
    """The twin given `new` (see :meth:`DigitalTwin.update`)."""
    from ..twin import DigitalTwin

    updates = [assimilate(p, twin.subject, new, seed=seed, **kwargs) for p in twin.posteriors]
    updated = DigitalTwin(new, [u.posterior for u in updates], twin.weights, data_version)
    heaviest = updates[int(np.argmax(twin.weights))]
    if len(updates) > 1:
        # Surprises against what the twin itself predicted: the stacked mixture.
        heaviest = dataclasses.replace(heaviest, surprises=surprises(twin, new, seed=seed))
    return updated, heaviest
