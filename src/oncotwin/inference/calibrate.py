"""Calibration: NUTS (NumPyro) by default, MAP + Laplace as the fast path.

Compiled functions are cached per :class:`Spec` and padded shape, so calibrating the next
subject (or the next version of a twin) reuses them: "jit once per shape".
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .._jax import jax, jnp
from ..errors import CalibrationError, ModelError
from ..models import TumourModel, get_model
from ..observe import ErrorModel, get_error_model
from ..simulate import DEFAULT_SOLVER, SolverSettings
from .posterior import Diagnostics, Posterior
from .priors import Prior
from .problem import (
    Spec,
    SubjectArrays,
    SubjectData,
    bucket,
    log_posterior,
    make_spec,
    pointwise_loglik,
)
from .threads import map_in_threads

METHODS = ("nuts", "laplace")
MAP_STARTS = 4  # multi-start optimisation: prior mean and three prior draws at half spread
MAP_MAX_ITER = 300
LAPLACE_DOF = 4.0  # degrees of freedom of the Student-t importance proposal
LAPLACE_WIDEN = 2.0  # proposal scale relative to the Laplace (inverse-Hessian) scale


def _psis_resample(log_weights: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """Indices of a Pareto-smoothed importance resample (correcting the Gaussian towards the
    posterior) and the Pareto k that says how far to trust it (Yao et al. ICML 2018)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az

        lw, khat = az.psislw(np.asarray(log_weights, float))
    w = np.exp(lw - np.max(lw))
    idx = np.random.default_rng(seed).choice(len(w), size=len(w), p=w / w.sum())
    return idx, float(khat)


def _hessian(loss: Callable[[Any], Any], z: Any, *, exact: bool) -> Any:
    """Hessian of `loss` at `z`: exact for closed forms; central differences of the gradient
    for ODE models (diffrax's reverse-mode adjoint does not support forward-mode AD)."""
    if exact:
        return jax.hessian(loss)(z)
    h = 1e-4
    eye = jnp.eye(z.shape[0]) * h
    grad = jax.grad(loss)
    rows = jax.vmap(lambda e: (grad(z + e) - grad(z - e)) / (2 * h))(eye)
    return 0.5 * (rows + rows.T)


@functools.lru_cache(maxsize=64)
def _laplace_fn(spec: Spec, n_draws: int) -> Callable[..., Any]:
    """Jitted, vmappable MAP + Laplace for `spec`: (data, key) -> draws and diagnostics."""
    import optax
    import optax.tree_utils as otu

    def one(data: SubjectArrays, key: Any) -> dict[str, Any]:
        def loss(z: Any) -> Any:
            return -log_posterior(spec, z, data)

        opt = optax.lbfgs()
        value_and_grad = optax.value_and_grad_from_state(loss)

        def step(carry: Any) -> Any:
            z, state = carry
            value, grad = value_and_grad(z, state=state)
            updates, state = opt.update(grad, state, z, value=value, grad=grad, value_fn=loss)
            return optax.apply_updates(z, updates), state

        def not_done(carry: Any) -> Any:
            _, state = carry
            count = otu.tree_get(state, "count")
            grad = otu.tree_get(state, "grad")
            return (count == 0) | ((count < MAP_MAX_ITER) & (jnp.linalg.norm(grad) > 1e-6))

        def optimise(z0: Any) -> tuple[Any, Any, Any]:
            z, state = jax.lax.while_loop(not_done, step, (z0, opt.init(z0)))
            return z, loss(z), jnp.linalg.norm(otu.tree_get(state, "grad"))

        k_start, k_draw = jax.random.split(key)
        n = data.prior_loc.shape[0]
        jitter = 0.5 * jax.random.normal(k_start, (MAP_STARTS - 1, n)) @ data.prior_chol.T
        starts = jnp.concatenate([data.prior_loc[None], data.prior_loc + jitter])
        zs, losses, gnorms = jax.vmap(optimise)(starts)
        losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
        best = jnp.argmin(losses)
        z_map, grad_norm = zs[best], gnorms[best]
        # Laplace: Gaussian with the inverse Hessian. Eigenvalues are floored at the smallest
        # prior precision: a direction the data do not inform is never wider than the prior.
        evals, evecs = jnp.linalg.eigh(
            _hessian(loss, z_map, exact=spec.closed_form or spec.model.fixed_step)
        )
        evals = jnp.maximum(evals, 1.0 / jnp.max(jnp.sum(data.prior_chol**2, axis=1)))
        converged = jnp.isfinite(losses[best]) & (grad_norm < 1e-3 * (1.0 + jnp.abs(losses[best])))
        out = {"z_map": z_map, "cov": (evecs / evals) @ evecs.T, "converged": converged}
        if n_draws == 0:  # the start of NUTS: mode and covariance only (less to compile)
            return out
        # Proposal: multivariate Student-t (LAPLACE_DOF) around the mode, LAPLACE_WIDEN times the
        # Laplace scale. Its heavy tails cover the t-like, skewed marginals of small-sample posteriors, so the
        # Pareto-smoothed importance resampling below can move mass into the tails; a Gaussian
        # proposal cannot (it under-covered in simulation-based calibration).
        k_eps, k_chi = jax.random.split(k_draw)
        eps = jax.random.normal(k_eps, (n_draws, n))
        mix = jnp.sqrt(
            LAPLACE_DOF / (2.0 * jax.random.gamma(k_chi, LAPLACE_DOF / 2.0, (n_draws, 1)))
        )
        u = eps * mix
        draws = z_map + (LAPLACE_WIDEN * u / jnp.sqrt(evals)) @ evecs.T
        # log q up to a constant (importance weights are normalised).
        log_q = -0.5 * (LAPLACE_DOF + n) * jnp.log1p(jnp.sum(u**2, axis=1) / LAPLACE_DOF)
        log_p = jax.vmap(lambda z: log_posterior(spec, z, data))(draws)
        loglik = jax.vmap(lambda z: pointwise_loglik(spec, z, data))(draws)
        return out | {"z": draws, "log_weights": log_p - log_q, "log_lik": loglik}

    return jax.jit(jax.vmap(one))


@functools.lru_cache(maxsize=64)
def _nuts_fn(
    spec: Spec, chains: int, draws: int, warmup: int, target_accept: float
) -> Callable[..., Any]:
    """NumPyro's NUTS kernel (window adaptation, dense mass matrix) run under one jitted
    `lax.scan`, vmapped over chains. Compiled once per Spec and padded data shape and reused
    for every subject and twin version (`MCMC.run` would recompile its loop on every call)."""
    from numpyro.infer.hmc import hmc

    def potential_fn_gen(data: SubjectArrays) -> Callable[[Any], Any]:
        return lambda z: -log_posterior(spec, z, data)

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")

    def one_chain(z0: Any, key: Any, data: SubjectArrays, cov: Any) -> tuple[Any, Any]:
        # Dense mass matrix: growth parameters are strongly correlated (e.g. Gompertz alpha, beta).
        # It starts from the Laplace covariance instead of the identity, so the early warm-up
        # windows already move along the posterior's correlations (fewer, shorter trajectories).
        state = init_kernel(
            z0, num_warmup=warmup, dense_mass=True, target_accept_prob=target_accept,
            inverse_mass_matrix=cov, model_args=(data,), rng_key=key,
        )  # fmt: skip

        def step(state: Any, _: Any) -> tuple[Any, tuple[Any, Any]]:
            state = sample_kernel(state, model_args=(data,))
            return state, (state.z, state.diverging)

        _, (z, diverging) = jax.lax.scan(step, state, None, length=warmup + draws)
        return z[warmup:], diverging[warmup:]

    return jax.jit(jax.vmap(one_chain, in_axes=(0, 0, None, None)))


@functools.lru_cache(maxsize=64)
def _loglik_fn(spec: Spec) -> Callable[..., Any]:
    return jax.jit(jax.vmap(lambda z, data: pointwise_loglik(spec, z, data), in_axes=(0, None)))


def _stack(arrays: Sequence[SubjectArrays]) -> SubjectArrays:
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *arrays)


def _posterior(
    subject: SubjectData, spec: Spec, z: np.ndarray, log_lik: np.ndarray, diagnostics: Diagnostics,
    prior: Prior, method: str, seed: int, settings: dict[str, Any],
) -> Posterior:  # fmt: skip
    theta, err = spec.constrain(jnp.asarray(z), subject.ref)
    params = {k: np.asarray(v) for k, v in {**theta, **err}.items()}
    post = Posterior(
        subject=subject.id, model=spec.model.name, error_model=spec.error.name, names=spec.names,
        z=np.asarray(z), params=params, log_lik=np.asarray(log_lik)[..., : len(subject.times)],
        t0=subject.t0, ref=subject.ref, diagnostics=diagnostics, prior=prior, method=method,
        seed=seed, settings=settings,
    )  # fmt: skip
    post.warn()
    return post


def calibrate_subjects(
    model: str | TumourModel,
    subjects: Sequence[SubjectData],
    *,
    method: str = "nuts",
    error_model: str | ErrorModel = "proportional",
    prior: Prior | Sequence[Prior] | None = None,
    seed: int = 0,
    chains: int = 4,
    draws: int = 1000,
    warmup: int = 500,
    target_accept: float = 0.9,
    solver: SolverSettings = DEFAULT_SOLVER,
    progress: Callable[[int], None] | None = None,
) -> list[Posterior]:
    """Calibrate `model` to each subject independently.

    Args:
        model: model or registry name.
        subjects: prepared subjects (see :class:`SubjectData`).
        method: "nuts" (NumPyro NUTS, the default) or "laplace" (MAP + Laplace, fast).
        error_model: "proportional" or "combined".
        prior: prior on the unconstrained parameters, or one per subject (e.g. a population
            prior given each subject's covariates); default the models' declared priors.
        seed: random seed; subject i uses ``fold_in(seed, i)``, so results do not depend on
            which other subjects are calibrated alongside.
        chains, draws, warmup: NUTS settings (Laplace draws ``chains * draws`` in one chain).
        target_accept: NUTS target acceptance probability.
        solver: ODE settings for models without a usable closed form.
        progress: called with the number of subjects just finished.

    Returns:
        One :class:`Posterior` per subject, in order. Posteriors that fail their diagnostics
        carry a warning (and a :class:`ConvergenceWarning` is emitted).

    Raises:
        ModelError: unknown model, error model or method.
        CalibrationError: a subject's likelihood is not finite anywhere reachable.
    """
    if method not in METHODS:
        raise ModelError(f"unknown calibration method {method!r}; use one of {METHODS}")
    m, err = get_model(model), get_error_model(error_model)
    if prior is None or isinstance(prior, Prior):
        priors = [prior or Prior.default(m, err)] * len(subjects)
    else:
        priors = list(prior)
        if len(priors) != len(subjects):
            raise ModelError(f"{len(priors)} priors for {len(subjects)} subjects")
    for p in priors:
        if p.names != m.param_names + err.param_names:
            raise ModelError(
                f"prior is for {p.names}, model needs {m.param_names + err.param_names}"
            )
    if method == "nuts":
        settings = {"method": method, "chains": chains, "draws": draws, "warmup": warmup,
                    "target_accept": target_accept, "dense_mass": True}  # fmt: skip
    else:
        settings = {"method": method, "draws": chains * draws, "proposal": f"Student-t({LAPLACE_DOF:g})",
                    "proposal_scale": LAPLACE_WIDEN, "map_starts": MAP_STARTS}  # fmt: skip
    settings |= {"error_model": err.name, "rtol": solver.rtol, "atol": solver.atol}
    n_laplace = chains * draws if method == "laplace" else 0
    groups = _groups(m, err, subjects, solver)
    if method == "nuts":
        compiling = _compile_nuts_in_background(
            groups, subjects, priors, chains, draws, warmup, target_accept
        )
    fits = _laplace_all(m, err, subjects, priors, seed, solver, n_laplace, groups)
    if method == "laplace":
        out = []
        for subject, prior, (spec, _, _, res) in zip(subjects, priors, fits, strict=True):
            idx, khat = _psis_resample(res["log_weights"], seed)
            diag = Diagnostics(
                "laplace", chains=1, optimizer_converged=bool(res["converged"]), pareto_k=khat
            )
            z, ll = res["z"][idx][None], res["log_lik"][idx][None]
            out.append(_posterior(subject, spec, z, ll, diag, prior, method, seed, settings))
            if progress:
                progress(1)
        return out

    def one(i: int) -> Posterior:
        spec, arrays, key, res = fits[i]
        return _nuts(subjects[i], spec, arrays, res["z_map"], res["cov"], key, priors[i], seed,
                     settings, chains, draws, warmup, target_accept)  # fmt: skip

    compiling.join()
    out = []
    for post in map_in_threads(one, range(len(subjects))):  # subjects in parallel
        out.append(post)
        if progress:
            progress(1)
    return out


# Subjects (indices) by the compiled function they need: Spec and padded (obs, doses, switches).
Groups = dict[tuple[Spec, tuple[int, int, int]], list[int]]


def _groups(
    m: TumourModel, err: ErrorModel, subjects: Sequence[SubjectData], solver: SolverSettings
) -> Groups:
    """Subjects (indices) by the compiled function they need: Spec and padded data shape."""
    groups: Groups = {}
    for i, s in enumerate(subjects):
        spec = make_spec(m, err, s.schedule, solver, censoring=bool(s.censored.any()))
        shape = (
            bucket(len(s.times)),
            bucket(len(s.schedule.doses), 1),
            bucket(len(s.schedule.switches), 1),
        )
        groups.setdefault((spec, shape), []).append(i)
    return groups


def _compile_nuts_in_background(
    groups: Groups, subjects: Sequence[SubjectData],
    priors: Sequence[Prior], chains: int, draws: int, warmup: int, target_accept: float,
) -> threading.Thread:  # fmt: skip
    """Compile the sampler for every group on another thread while the MAP fits that start it
    run: a cold start spends about as long compiling each as the other (4.8 and 6.5 s)."""

    def compile_all() -> None:
        keys = jax.random.split(jax.random.PRNGKey(0), chains)  # only their shape matters
        for (spec, shape), idx in groups.items():
            data = jax.tree.map(jnp.asarray, subjects[idx[0]].arrays(priors[idx[0]], None, *shape))
            n = len(priors[idx[0]].names)
            run: Any = _nuts_fn(spec, chains, draws, warmup, target_accept)  # jitted: has .lower
            try:
                run.lower(jnp.zeros((chains, n)), keys, data, jnp.eye(n)).compile()
            except Exception:  # noqa: BLE001 (the sampler's own call raises it where it belongs)
                return

    thread = threading.Thread(target=compile_all, name="compile-nuts", daemon=True)
    thread.start()
    return thread


def _laplace_all(
    m: TumourModel, err: ErrorModel, subjects: Sequence[SubjectData], priors: Sequence[Prior], seed: int,
    solver: SolverSettings, n_draws: int, groups: Groups | None = None,
) -> list[tuple[Spec, SubjectArrays, Any, dict[str, np.ndarray]]]:  # fmt: skip
    """MAP + Laplace for every subject, vmapped over subjects that share a compiled function
    (`groups`, from :func:`_groups` unless the caller has them already).

    Returns (spec, arrays, key, result) per subject, in order.
    """
    if groups is None:
        groups = _groups(m, err, subjects, solver)
    base_key = jax.random.PRNGKey(seed)
    keys = [jax.random.fold_in(base_key, i) for i in range(len(subjects))]
    out: list[Any] = [None] * len(subjects)
    for (spec, shape), idx in groups.items():
        arrays = [subjects[i].arrays(priors[i], None, *shape) for i in idx]
        # Pad the batch to a power of two (repeating the first subject): few compiled shapes.
        pad = [0] * (bucket(len(idx), 1) - len(idx))
        batch = _stack(arrays + [arrays[p] for p in pad])
        batch_keys = jnp.stack([keys[i] for i in idx] + [keys[idx[p]] for p in pad])
        res = jax.device_get(_laplace_fn(spec, n_draws)(batch, batch_keys))
        for j, i in enumerate(idx):
            out[i] = (spec, arrays[j], keys[i], {k: np.asarray(v[j]) for k, v in res.items()})
    return out


def _nuts(
    subject: SubjectData, spec: Spec, arrays: SubjectArrays, z_map: np.ndarray, cov: np.ndarray, key: Any,
    prior: Prior, seed: int, settings: dict[str, Any], chains: int, draws: int, warmup: int,
    target_accept: float,
) -> Posterior:  # fmt: skip
    if not np.all(np.isfinite(z_map)):
        raise CalibrationError(
            f"subject {subject.id}: no finite starting point for {spec.model.name}"
        )
    k_init, k_run = jax.random.split(key)
    init = z_map + 0.1 * np.asarray(prior.scale) * np.asarray(
        jax.random.normal(k_init, (chains, len(z_map)))
    )
    data = jax.tree.map(jnp.asarray, arrays)
    run = _nuts_fn(spec, chains, draws, warmup, target_accept)
    if not np.all(np.isfinite(cov)):
        cov = np.diag(np.asarray(prior.scale) ** 2)
    keys = jax.random.split(k_run, chains)
    z, diverging = jax.device_get(run(jnp.asarray(init), keys, data, jnp.asarray(cov)))
    z = np.asarray(z)
    ll = np.asarray(_loglik_fn(spec)(jnp.asarray(z.reshape(-1, z.shape[-1])), data))
    ll = ll.reshape(chains, draws, -1)
    diag = Diagnostics.from_chains(z, int(np.sum(diverging)))
    return _posterior(subject, spec, z, ll, diag, prior, "nuts", seed, settings)


def calibrate(
    model: str | TumourModel,
    data: Any,
    *,
    subject: str | None = None,
    kind: str | None = None,
    **kwargs: Any,
) -> Posterior:
    """Calibrate `model` to one subject of `data` (a :class:`~oncotwin.data.PatientData`).

    Args:
        model: model or registry name.
        data: patient data; must hold one subject unless `subject` is given.
        subject: which subject.
        kind: which observed quantity (default: the subject's most frequent one).
        **kwargs: see :func:`calibrate_subjects` (method, prior, seed, chains, draws, ...).

    Returns:
        The subject's :class:`Posterior`.
    """
    ids = list(data.ids)
    if subject is None:
        if len(ids) != 1:
            raise ModelError(f"data holds {len(ids)} subjects; say which with subject=")
        subject = ids[0]
    sd = SubjectData.from_events(subject, data.subject(subject).events, kind)
    return calibrate_subjects(model, [sd], **kwargs)[0]


def subjects_from(
    data: Any, kind: str | None = None, ids: Iterable[str] | None = None
) -> list[SubjectData]:
    """Prepared :class:`SubjectData` for each subject of `data` (all, or `ids`)."""
    return [SubjectData.from_events(i, data.subject(i).events, kind) for i in (ids or data.ids)]
