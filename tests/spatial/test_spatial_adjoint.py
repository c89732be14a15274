"""The hand-written adjoint of the RK4 step (oncotwin.models.spatial._step_adjoint).

Reference: JAX reverse-mode autodiff of the plain step (:func:`oncotwin.models.spatial._step`),
which differentiates the same floating-point program mechanically; the discrete adjoint of an
explicit Runge-Kutta step is exact for the discrete scheme (Hager WW, Numer Math
2000;87:247-282; Sandu A, "On the properties of Runge-Kutta discrete adjoints", ICCS 2006), so
both must agree to rounding (rtol 1e-10). Forward-over-reverse products (the Laplace Hessian of
the calibration) are checked against central differences of the gradient (for Gompertz growth
autodiff's own second derivative of the clipped ``-u ln u`` is NaN where ``u = 0``, outside the
mask, so it cannot serve as the reference there).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import oncotwin._jax  # noqa: F401
from oncotwin._jax import jax, jnp
from oncotwin.models import spatial as sp

PARAMS = {"D": 0.3, "rho": 0.2, "alpha": 0.05, "alpha_beta": 8.0, "k_chemo": 0.3}


def assert_tree_close(got: Any, want: Any, rtol: float = 1e-10) -> None:
    """Leaf by leaf, relative to the largest entry of the reference leaf."""
    g_leaves, g_def = jax.tree.flatten(got)
    w_leaves, w_def = jax.tree.flatten(want)
    assert g_def == w_def
    for g, w in zip(g_leaves, w_leaves, strict=True):
        w = np.asarray(w)
        assert np.shape(g) == w.shape
        assert np.all(np.isfinite(w)) and np.max(np.abs(w)) > 0  # a test that can fail
        np.testing.assert_allclose(np.asarray(g), w, rtol=rtol, atol=rtol * np.max(np.abs(w)))


def grid(ndim: int, seed: int = 0) -> tuple[np.ndarray, sp.Operator, np.random.Generator]:
    """A small masked grid with a hole and a heterogeneous diffusivity and dose map."""
    rng = np.random.default_rng(seed)
    shape = {1: (11,), 2: (7, 6), 3: (5, 4, 6)}[ndim]
    mask = np.ones(shape, bool)
    mask[(2,) * ndim] = False  # a hole inside
    mask[(0,) * ndim] = False  # and a corner outside
    op = sp.operator(
        mask, (1.0, 1.5, 2.0)[:ndim], rng.uniform(0.3, 1.0, shape), rng.uniform(0.5, 1.2, shape)
    )
    u0 = np.where(mask, rng.uniform(0.05, 0.9, shape), 0.0)
    return u0, op, rng


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_step_vjp_equals_autodiff_for_every_input(ndim: int) -> None:
    # one step with an RT fraction and chemotherapy, logistic and Gompertz, rho a scalar and a
    # map; cotangents of the state, every parameter, the RT dose, the exposure, the
    # conductances and the dose map (eager: tiny arrays, no whole-program compilation)
    u0, op, rng = grid(ndim)
    rho_map = jnp.asarray(rng.uniform(0.1, 0.4, u0.shape))
    ct = jnp.asarray(rng.normal(size=u0.shape))
    dt = 0.25
    for growth in ("logistic", "gompertz"):
        for rho in (jnp.asarray(PARAMS["rho"]), rho_map):
            free = {k: jnp.asarray(v) for k, v in PARAMS.items()}
            free["rho"] = rho
            args = (jnp.asarray(u0), jnp.asarray(2.0), jnp.asarray(0.7), free,
                    tuple(jnp.asarray(c) for c in op.conductance), jnp.asarray(op.dose_map))  # fmt: skip

            def hand(*a: Any, growth: str = growth) -> Any:
                return sp._step_adjoint(dt, growth, (), *a)

            def plain(*a: Any, growth: str = growth) -> Any:
                return sp._step_plain(dt, growth, (), *a)

            out_h, vjp_h = jax.vjp(hand, *args)
            out_p, vjp_p = jax.vjp(plain, *args)
            np.testing.assert_array_equal(np.asarray(out_h), np.asarray(out_p))
            assert_tree_close(vjp_h(ct), vjp_p(ct))


def _loss(
    p: Any,
    u0: Any,
    op: sp.Operator,
    forcing: sp.Forcing,
    growth: str,
    saves: Any = (12,),
    **kw: Any,
) -> Any:
    maps, totals = sp.simulate(u0, p, op, forcing, saves, growth=growth, **kw)
    target = 0.5 * jnp.ones_like(maps)
    return jnp.sum((maps - target) ** 2) + 1e-3 * jnp.sum(totals**2)


def _forcing() -> sp.Forcing:
    # 12 steps of 0.25 d: RT fractions at steps 0 and 4 (2 and 3 Gy), chemotherapy from day 0.3
    return sp.make_forcing(12, 0.25, rt_days=[0.0, 1.0], rt_doses=[2.0, 3.0],
                           chemo_days=[0.3, 1.6], chemo_doses=[1.0, 2.0])  # fmt: skip


@pytest.mark.parametrize(("growth", "rho_kind"), [("logistic", "scalar"), ("gompertz", "map")])
def test_simulate_gradient_equals_autodiff(growth: str, rho_kind: str) -> None:
    # 12 RK4 steps with 2 RT fractions and chemo, 2 saved maps and the totals; gradient in every
    # parameter and the initial state against autodiff of the checkpointed plain step
    u0, op, rng = grid(2, seed=1)
    p = {k: jnp.asarray(v) for k, v in PARAMS.items()}
    if rho_kind == "map":
        p["rho"] = jnp.asarray(rng.uniform(0.1, 0.4, u0.shape))
    forcing = _forcing()

    def grad(adjoint: bool) -> Any:
        # two saved maps (cotangents enter between scans) in one case, the final map in the other
        saves = (5, 12) if rho_kind == "map" else (12,)
        f = jax.grad(lambda p, u: _loss(p, u, op, forcing, growth, saves, adjoint=adjoint), (0, 1))
        return jax.jit(f)(p, jnp.asarray(u0))

    assert_tree_close(grad(True), grad(False))


def test_3d_gradient_with_python_number_parameters_equals_autodiff() -> None:
    # parameters given as Python numbers stay static literals; only the array ones are
    # differentiated (here D and alpha), in 3D with a hole in the mask
    u0, op, _ = grid(3, seed=2)
    forcing = _forcing()

    def grad(adjoint: bool) -> Any:
        def loss(th: Any) -> Any:
            p = dict(PARAMS, D=th[0], alpha=th[1])
            return _loss(p, jnp.asarray(u0), op, forcing, "logistic", adjoint=adjoint)

        return jax.jit(jax.grad(loss))(jnp.asarray([PARAMS["D"], PARAMS["alpha"]]))

    assert_tree_close(grad(True), grad(False))


def test_gradient_in_dose_map_and_forcing_equals_autodiff() -> None:
    # the dose map, per-step RT doses and exposures and the face conductances are data in the
    # calibration, but a plan optimiser may differentiate them: the adjoint supports it
    u0, op, _ = grid(2, seed=3)
    forcing = _forcing()
    data = (jnp.asarray(op.dose_map), jnp.asarray(forcing.rt_dose),
            jnp.asarray(forcing.exposure), tuple(jnp.asarray(c) for c in op.conductance))  # fmt: skip

    def grad(adjoint: bool) -> Any:
        def loss(data: Any) -> Any:
            dose, rt, ex, cond = data
            op_d = sp.Operator(cond, jnp.asarray(op.mask), dose)
            f = sp.Forcing(forcing.dt, rt, ex)
            return _loss(dict(PARAMS), jnp.asarray(u0), op_d, f, "logistic", adjoint=adjoint)

        return jax.jit(jax.grad(loss))(data)

    assert_tree_close(grad(True), grad(False))


@pytest.mark.parametrize("growth", ["logistic", "gompertz"])
def test_forward_results_are_bit_identical(growth: str) -> None:
    # as the calibration calls it (jit, array parameters, rho a map) and eagerly with Python
    # numbers, against the plain step (checkpoint=False)
    u0, op, rng = grid(2, seed=4)
    forcing = _forcing()
    p_arr = {k: jnp.asarray(v) for k, v in PARAMS.items()}
    p_arr["rho"] = jnp.asarray(rng.uniform(0.1, 0.4, u0.shape))

    def run(p: Any, checkpoint: bool) -> Any:
        return sp.simulate(u0, p, op, forcing, [5, 12], growth=growth, checkpoint=checkpoint)

    jitted = jax.jit(run, static_argnames="checkpoint")
    for fn, p in ((jitted, p_arr), (run, dict(PARAMS))):
        hand, ref = fn(p, checkpoint=True), fn(p, checkpoint=False)
        np.testing.assert_array_equal(np.asarray(hand[0]), np.asarray(ref[0]))
        np.testing.assert_array_equal(np.asarray(hand[1]), np.asarray(ref[1]))


@pytest.mark.parametrize("growth", ["logistic", "gompertz"])
def test_hessian_vector_products_equal_differences_of_the_gradient(growth: str) -> None:
    # forward-over-reverse through the custom VJP (what the Laplace step of the calibration
    # does) against central differences of the (hand) gradient along v
    u0, op, _ = grid(2, seed=5)
    forcing = _forcing()

    def loss(th: Any) -> Any:
        p = dict(PARAMS, D=th[0], rho=th[1], alpha=th[2], k_chemo=th[3])
        return _loss(p, jnp.asarray(u0), op, forcing, growth)

    th = jnp.asarray([PARAMS[k] for k in ("D", "rho", "alpha", "k_chemo")])
    v = jnp.asarray([1.0, -0.5, 2.0, 0.3])
    g = jax.grad(loss)
    hvp = jax.jit(lambda th, v: jax.jvp(g, (th,), (v,))[1])(th, v)
    # step 1e-6: truncation ~1e-12 times the third derivative, rounding ~1e-10 relative
    gj, e = jax.jit(g), 1e-6
    ref = (gj(th + e * v) - gj(th - e * v)) / (2 * e)
    assert_tree_close(hvp, ref, rtol=1e-7)
