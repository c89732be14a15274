"""Reaction-diffusion tumour models on image grids (Fisher-Kolmogorov with RT and chemotherapy).

The tumour is a normalised cell density ``u(x, t) = N(x, t) / theta`` (fraction of the voxel's
carrying capacity ``theta``) on the voxels of a 1D, 2D or 3D image, inside a tissue mask::

    du/dt = div(D w(x) grad u) + rho(x) g(u) - k_c E(t) u       (between treatments)
    u(x, t_f+) = u(x, t_f-) exp(-alpha d(x) - beta d(x)^2)      (each RT fraction, d = dose map)

with ``g(u) = u (1 - u)`` (logistic) or ``g(u) = -u ln u`` (Gompertz), ``w(x)`` the relative
diffusivity of the tissue (1 in white matter, smaller in grey matter; Swanson 2000),
``E(t)`` the dimensionless chemotherapy exposure and ``beta = alpha / (alpha/beta)``. The
proliferation rate ``rho`` is one number or a map on the grid (a spatially varying rate, e.g. a
calibrated proliferation field); every other parameter is a scalar.

Discretisation (why each choice):

- finite volumes on the voxel grid: the flux through the face between voxels ``i`` and ``j`` is
  ``D w_ij (u_j - u_i) / h`` with ``w_ij`` the harmonic mean of the two voxels' ``w`` (the
  standard choice for discontinuous coefficients), and zero when either voxel is outside the
  mask: zero flux at the mask boundary, and the scheme conserves cells exactly. Second order in
  space on smooth solutions;
- classical RK4 with a fixed step under ``lax.scan`` (fourth order in time). Explicit RK4 is
  stable for diffusion while ``dt * lambda_max <= 2.785`` with
  ``lambda_max = 4 D max(w) sum_a 1/h_a^2``; :func:`max_stable_diffusivity` gives the bound and
  :func:`check_stability` refuses unstable runs before they start;
- RT fractions are instantaneous LQ kills applied at the step boundary nearest the fraction
  time; chemotherapy exposure is replaced by its mean over each step (exact for the AUC that
  each step receives, so drugs with half-lives of hours can be given on a 0.5-day grid);
- only the state at requested save steps is kept (plus the total per step), so memory does not
  grow with the number of steps; reverse-mode gradients store one state per step, not the RK4
  stages: the step has a hand-written adjoint (:data:`_step_adjoint`, a ``jax.custom_vjp``) that
  recomputes the four stages and runs the discrete adjoint of RK4, whose stages are the same
  finite-volume stencil as the forward (the operator is symmetric). A gradient costs about 3
  forward solves, against about 5 for autodiff of a checkpointed step (``adjoint=False``).

Everything is JAX array operations: it runs on CPU and GPU and is differentiable in the
parameters (and the initial state).

Sources: Fisher RA, Ann Eugen 1937;7:355-369 (travelling wave speed ``2 sqrt(D rho)``);
Swanson KR, Alvord EC, Murray JD. Cell Prolif 2000;33:317-329 (grey/white matter diffusion);
Rockne R et al. Phys Med Biol 2010;55:3271-3285 (LQ radiotherapy in the reaction-diffusion
glioma model); Hormuth DA et al. Sci Rep 2021 and Cancer Res 2021;81:5331-5342 (image-driven
glioma models with RT); Stupp R et al. N Engl J Med 2005;352:987-996 (RT + temozolomide).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ModelError
from .base import ParamSpec

RK4_STABILITY = 2.785  # RK4's stability interval on the negative real axis is about [-2.785, 0]

HORMUTH = "Hormuth DA et al. Image-based personalization of computational models for predicting response of high-grade glioma to chemoradiation. Sci Rep 2021;11:8520"
ROCKNE = "Rockne R et al. Predicting the efficacy of radiotherapy in individual glioblastoma patients in vivo. Phys Med Biol 2010;55:3271-3285"
SWANSON = "Swanson KR, Alvord EC, Murray JD. A quantitative model for differential motility of gliomas in grey and white matter. Cell Prolif 2000;33:317-329"

INF = np.inf

#: Parameters of the spatial model (units: mm, days, Gy). Priors are log-normal, centred on
#: typical glioma values (Rockne 2010: D 0.003-0.3 mm^2/day, rho 0.003-0.1 1/day).
SPATIAL_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("D", "mm2/day", 0.0, INF, 0.05, 1.0, "diffusivity in white matter", ROCKNE),
    ParamSpec("rho", "1/day", 0.0, INF, 0.03, 1.0, "proliferation rate", ROCKNE),
    ParamSpec("alpha", "1/Gy", 0.0, INF, 0.03, 1.0, "LQ radiosensitivity", ROCKNE),
    ParamSpec("alpha_beta", "Gy", 0.0, INF, 10.0, 0.3, "LQ alpha/beta ratio", ROCKNE),
    ParamSpec("k_chemo", "1/day", 0.0, INF, 0.02, 1.0, "kill rate per unit exposure", HORMUTH),
)
PARAM_NAMES = tuple(p.name for p in SPATIAL_PARAMS)


def param_spec(name: str) -> ParamSpec:
    """The :class:`ParamSpec` of spatial-model parameter `name`."""
    for p in SPATIAL_PARAMS:
        if p.name == name:
            return p
    raise ModelError(f"spatial model has no parameter {name!r}; has {PARAM_NAMES}")


class Operator(NamedTuple):
    """The discrete diffusion operator of one grid: face conductances per axis.

    Attributes:
        conductance: per axis ``a``, ``w_face / h_a^2`` on the faces between neighbours along
            ``a`` (shape: grid shape with ``n_a + 1`` along ``a``, the outer two being the
            domain boundary), zero across the mask boundary, 1/mm^2. Multiply by ``D`` (mm^2/day) for rates in 1/day.
        mask: the tissue mask as 0/1 floats (grid shape).
        dose_map: relative dose per voxel (1 = prescribed fraction dose), grid shape.
    """

    conductance: tuple[Any, ...]
    mask: Any
    dose_map: Any


@dataclass(frozen=True)
class Forcing:
    """Treatment seen by each time step of a fixed-step run.

    Attributes:
        dt: step, days.
        rt_dose: prescribed fraction dose applied at the start of each step, Gy (0 if none),
            shape ``(n_steps,)``.
        exposure: mean chemotherapy exposure over each step (dimensionless), ``(n_steps,)``.
    """

    dt: float
    rt_dose: np.ndarray
    exposure: np.ndarray

    @property
    def n_steps(self) -> int:
        """Number of steps."""
        return int(self.rt_dose.shape[0])


def operator(
    mask: Any, spacing: Sequence[float], diffusivity: Any = None, dose_map: Any = None
) -> Operator:
    """Build the finite-volume diffusion operator of a masked grid.

    Args:
        mask: boolean tissue mask (1D, 2D or 3D array); cells cannot leave it.
        spacing: voxel size along each axis, mm.
        diffusivity: relative diffusivity per voxel (1 = white matter), dimensionless; default 1.
        dose_map: relative RT dose per voxel (1 = prescribed fraction dose); default 1 in mask.

    Returns:
        The :class:`Operator` (NumPy arrays built once, moved to JAX by the solver).

    Raises:
        ModelError: spacing does not match the grid, or negative/NaN diffusivities.
    """
    m = np.asarray(mask, dtype=bool)
    if len(spacing) != m.ndim or any(not (float(h) > 0) for h in spacing):
        raise ModelError(f"spacing {tuple(spacing)} must give {m.ndim} positive sizes (mm)")
    w = np.ones(m.shape) if diffusivity is None else np.asarray(diffusivity, dtype=float)
    if w.shape != m.shape:
        raise ModelError(f"diffusivity map shape {w.shape} differs from mask shape {m.shape}")
    if not np.all(np.isfinite(w[m])) or np.any(w[m] < 0):
        raise ModelError("diffusivity map must be finite and >= 0 inside the mask")
    w = np.where(m, w, 0.0)
    faces = []
    for axis, h in enumerate(spacing):
        # faces between neighbours along `axis`, plus the two domain-boundary faces (always 0)
        pad = [(0, 0)] * m.ndim
        pad[axis] = (1, 1)
        wp, mp = np.pad(w, pad), np.pad(m, pad)
        n = wp.shape[axis]
        a = np.take(wp, range(n - 1), axis=axis)
        b = np.take(wp, range(1, n), axis=axis)
        both = np.take(mp, range(n - 1), axis=axis) & np.take(mp, range(1, n), axis=axis)
        with np.errstate(invalid="ignore", divide="ignore"):
            harmonic = np.where(both & (a + b > 0), 2 * a * b / (a + b), 0.0)
        faces.append(harmonic / float(h) ** 2)
    dose = np.where(m, 1.0, 0.0) if dose_map is None else np.asarray(dose_map, dtype=float)
    if dose.shape != m.shape:
        raise ModelError(f"dose map shape {dose.shape} differs from mask shape {m.shape}")
    return Operator(tuple(faces), m.astype(float), np.where(m, dose, 0.0))


def max_stable_diffusivity(spacing: Sequence[float], dt: float, max_relative: float = 1.0) -> float:
    """Largest white-matter D (mm^2/day) for which explicit RK4 with step `dt` is stable.

    Uses the Gershgorin bound ``lambda_max <= 4 D max(w) sum_a 1/h_a^2`` of the discrete
    Laplacian and RK4's real stability limit 2.785.

    Args:
        spacing: voxel sizes, mm.
        dt: time step, days.
        max_relative: largest relative diffusivity in the map.
    """
    lam_per_d = 4.0 * max_relative * sum(1.0 / float(h) ** 2 for h in spacing)
    return RK4_STABILITY / (dt * lam_per_d)


def check_stability(op: Operator, D: float, dt: float) -> None:
    """Raise :class:`ModelError` if RK4 with step `dt` (days) is unstable for D (mm^2/day)."""
    lam = float(D) * float(np.max(_row_sums(op)))
    if lam > 0 and lam * dt > RK4_STABILITY:
        raise ModelError(
            f"RK4 step {dt} d is unstable for D = {D} mm^2/day on this grid "
            f"(dt * lambda_max = {lam * dt:.3g} > {RK4_STABILITY}); use a smaller step or "
            f"coarser voxels (D must stay below {RK4_STABILITY / (dt * lam / float(D)):.3g})"
        )


def _row_sums(op: Operator) -> np.ndarray:
    """Twice the diagonal of -L/D: the Gershgorin bound of its largest eigenvalue, 1/mm^2."""
    diag = np.zeros(np.shape(op.mask))
    for axis, c in enumerate(op.conductance):
        c = np.asarray(c)
        n = c.shape[axis]
        diag = diag + np.take(c, range(n - 1), axis=axis) + np.take(c, range(1, n), axis=axis)
    return 2.0 * diag


def laplacian(u: Any, conductance: Sequence[Any]) -> Any:
    """``div(w grad u)`` by finite volumes (zero flux across faces with zero conductance), 1/mm^2.

    Args:
        u: field on the grid.
        conductance: face conductances per axis (:attr:`Operator.conductance`, ``n_a + 1``
            faces along axis ``a``), 1/mm^2.
    """
    # One zero ghost layer, then only slices: XLA fuses this into a single stencil loop, where
    # diff/pad formulations fused badly inside RK4 on CPU (10x slower).
    up = jnp.pad(u, 1)
    out = jnp.zeros_like(u)
    nd = u.ndim
    for axis, c in enumerate(conductance):
        hi = [slice(1, -1)] * nd
        lo = [slice(1, -1)] * nd
        hi[axis] = slice(1, None)
        lo[axis] = slice(0, -1)
        flux = c * (up[tuple(hi)] - up[tuple(lo)])
        f1 = [slice(None)] * nd
        f0 = [slice(None)] * nd
        f1[axis] = slice(1, None)
        f0[axis] = slice(0, -1)
        out = out + flux[tuple(f1)] - flux[tuple(f0)]
    return out


def _growth(u: Any, kind: str) -> Any:
    if kind == "logistic":
        return u * (1.0 - u)
    if kind == "gompertz":
        safe = jnp.clip(u, 1e-300, None)  # -u ln u -> 0 as u -> 0; avoid log(0) and NaN grads
        return jnp.where(u > 0, -safe * jnp.log(safe), 0.0)
    raise ModelError(f"unknown proliferation {kind!r}; use 'logistic' or 'gompertz'")


def _rhs(u: Any, params: Mapping[str, Any], op: Operator, exposure: Any, growth: str) -> Any:
    diffusion = params["D"] * laplacian(u, op.conductance)
    reaction = params["rho"] * _growth(u, growth) - params["k_chemo"] * exposure * u
    # No mask multiply: u is 0 outside the mask and stays 0 there (no flux crosses the mask
    # boundary and every reaction term is proportional to u); saves one array read per stage.
    return diffusion + reaction


def _step(u: Any, forcing: Any, params: Mapping[str, Any], op: Operator, dt: float, growth: str):  # type: ignore[no-untyped-def]
    rt, exposure = forcing
    d = op.dose_map * rt
    beta = params["alpha"] / params["alpha_beta"]
    u = u * jnp.exp(-(params["alpha"] * d + beta * d * d))
    k1 = _rhs(u, params, op, exposure, growth)
    k2 = _rhs(u + 0.5 * dt * k1, params, op, exposure, growth)
    k3 = _rhs(u + 0.5 * dt * k2, params, op, exposure, growth)
    k4 = _rhs(u + dt * k3, params, op, exposure, growth)
    return u + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


# --------------------------------------------------------------------------- hand-written adjoint


@jax.tree_util.register_static
@dataclass(frozen=True)
class _Perturbed:
    """Which data inputs of a step are differentiated (static; decides what the backward pass
    computes, so calibration never pays for dose-map or conductance cotangents)."""

    rt: bool
    ex: bool
    cond: bool
    dose: bool


def _growth_slope(u: Any, kind: str) -> Any:
    """``g'(u)``, matching the derivative autodiff takes of :func:`_growth` (0 where it clips)."""
    if kind == "logistic":
        return 1.0 - 2.0 * u
    safe = jnp.clip(u, 1e-300, None)
    return jnp.where(u > 1e-300, -(jnp.log(safe) + 1.0), 0.0)


def _face_products(a: Any, b: Any, conductance: Sequence[Any]) -> tuple[Any, ...]:
    """Per axis, ``(a_j - a_i) (b_j - b_i)`` on the faces of :func:`laplacian` (zero ghosts)."""
    ap, bp = jnp.pad(a, 1), jnp.pad(b, 1)
    nd = a.ndim
    out = []
    for axis in range(len(conductance)):
        hi = [slice(1, -1)] * nd
        lo = [slice(1, -1)] * nd
        hi[axis] = slice(1, None)
        lo[axis] = slice(0, -1)
        out.append((ap[tuple(hi)] - ap[tuple(lo)]) * (bp[tuple(hi)] - bp[tuple(lo)]))
    return tuple(out)


def _step_plain(  # type: ignore[no-untyped-def]
    dt, growth, fixed, u, rt, ex, free, cond, dose
):
    params = {**dict(fixed), **free}
    return _step(u, (rt, ex), params, Operator(cond, None, dose), dt, growth)


_step_adjoint = jax.custom_vjp(_step_plain, nondiff_argnums=(0, 1, 2))
_step_adjoint.__doc__ = """One RK4 step (LQ kick first) whose reverse mode is hand-written.

Arguments: ``dt`` (days) and ``growth`` as in :func:`_step`; ``fixed``, the parameters given
as Python numbers (a tuple of ``(name, value)``, static: they stay literals, as in
:func:`_step`, so forward results are bit-identical); the state; this step's RT dose (Gy) and
mean exposure; ``free``, the other parameters as arrays (``rho`` a scalar or a map); the face
conductances and the dose map. Returns the state after the step, exactly as :func:`_step`.
The forward pass keeps only its inputs; the backward pass recomputes the four stages and runs
the discrete adjoint of RK4 (:func:`_step_bwd`): about one forward step plus one recomputation.
"""


def _step_fwd(dt, growth, fixed, u, rt, ex, free, cond, dose):  # type: ignore[no-untyped-def]
    flags = _Perturbed(rt.perturbed, ex.perturbed, any(c.perturbed for c in cond), dose.perturbed)
    uv, rtv, exv, dosev = u.value, rt.value, ex.value, dose.value
    free_v = {k: x.value for k, x in free.items()}
    cond_v = tuple(c.value for c in cond)
    out = _step_plain(dt, growth, fixed, uv, rtv, exv, free_v, cond_v, dosev)
    return out, (uv, rtv, exv, free_v, cond_v, dosev, flags)


def _step_bwd(dt, growth, fixed, res, g):  # type: ignore[no-untyped-def]
    """Discrete adjoint of the LQ kick + RK4 step.

    With ``v`` the state after the kick, stages ``y1 = v``, ``y2 = v + h/2 k1``,
    ``y3 = v + h/2 k2``, ``y4 = v + h k3``, ``k_i = f(y_i)`` and
    ``out = v + h/6 (k1 + 2 k2 + 2 k3 + k4)``, the cotangent ``lam`` of ``out`` gives (reverse
    order) ``kb4 = h/6 lam``, ``kb3 = h/3 lam + h J4^T kb4``, ``kb2 = h/3 lam + h/2 J3^T kb3``,
    ``kb1 = h/6 lam + h/2 J2^T kb2`` and ``vb = lam + sum_i J_i^T kb_i``, where
    ``J^T w = D L w + (rho g'(y) - k_c E) w`` (``L`` is symmetric: the face conductances are
    shared by both voxels of a face, so the adjoint is the forward stencil). Parameter
    cotangents are ``sum_i <kb_i, df/dtheta(y_i)>``, with ``<kb, L y> = <L kb, y>`` reusing the
    adjoint stencil; ``L``'s conductance cotangent is ``-D sum_i dy_i dkb_i`` per face.
    """
    u, rt, ex, free, cond, dose, flags = res
    if isinstance(g, jax.custom_derivatives.SymbolicZero):
        g = jnp.zeros(g.shape, g.dtype)
    params = {**dict(fixed), **free}
    D, rho, k_chemo = params["D"], params["rho"], params["k_chemo"]
    alpha, alpha_beta = params["alpha"], params["alpha_beta"]
    # recompute the kick and the stages as the forward pass did
    d = dose * rt
    beta = alpha / alpha_beta
    kick = jnp.exp(-(alpha * d + beta * d * d))
    v = u * kick
    op = Operator(cond, None, dose)
    y1 = v
    k1 = _rhs(y1, params, op, ex, growth)
    y2 = v + 0.5 * dt * k1
    k2 = _rhs(y2, params, op, ex, growth)
    y3 = v + 0.5 * dt * k2
    k3 = _rhs(y3, params, op, ex, growth)
    y4 = v + dt * k3
    decay = k_chemo * ex

    def adj(y: Any, w: Any) -> tuple[Any, Any]:  # (J(y)^T w, L w)
        lw = laplacian(w, cond)
        return D * lw + (rho * _growth_slope(y, growth) - decay) * w, lw

    kb4 = dt / 6.0 * g
    yb4, l4 = adj(y4, kb4)
    kb3 = dt / 3.0 * g + dt * yb4
    yb3, l3 = adj(y3, kb3)
    kb2 = dt / 3.0 * g + 0.5 * dt * yb3
    yb2, l2 = adj(y2, kb2)
    kb1 = dt / 6.0 * g + 0.5 * dt * yb2
    yb1, l1 = adj(y1, kb1)
    vb = g + yb1 + yb2 + yb3 + yb4
    ys, kbs = (y1, y2, y3, y4), (kb1, kb2, kb3, kb4)
    D_b = jnp.sum(l1 * y1 + l2 * y2 + l3 * y3 + l4 * y4)
    rho_field = sum(kb * _growth(y, growth) for kb, y in zip(kbs, ys, strict=True))
    rho_b = rho_field if jnp.ndim(rho) else jnp.sum(rho_field)
    ky = jnp.sum(kb1 * y1 + kb2 * y2 + kb3 * y3 + kb4 * y4)
    kc_b = -ex * ky
    ex_b = -k_chemo * ky if flags.ex else None
    if flags.cond:
        faces = [_face_products(y, kb, cond) for y, kb in zip(ys, kbs, strict=True)]
        cond_b = tuple(-D * sum(f[a] for f in faces) for a in range(len(cond)))
    else:
        cond_b = tuple(None for _ in cond)
    # LQ kick v = u exp(-(alpha d + beta d^2)), d = dose * rt
    s = vb * v
    u_b = vb * kick
    alpha_b = -jnp.sum(s * (d + d * d / alpha_beta))
    ab_b = jnp.sum(s * d * d) * alpha / (alpha_beta * alpha_beta)
    d_b = -s * (alpha + 2.0 * beta * d) if (flags.rt or flags.dose) else None
    rt_b = jnp.sum(d_b * dose) if flags.rt else None
    dose_b = d_b * rt if flags.dose else None
    grads = {"D": D_b, "rho": rho_b, "alpha": alpha_b, "alpha_beta": ab_b, "k_chemo": kc_b}
    free_b = {k: grads[k].astype(jnp.result_type(x)) for k, x in free.items()}
    return (u_b, rt_b, ex_b, free_b, cond_b, dose_b)


_step_adjoint.defvjp(_step_fwd, _step_bwd, symbolic_zeros=True)


def simulate(
    u0: Any,
    params: Mapping[str, Any],
    op: Operator,
    forcing: Forcing,
    save_steps: Sequence[int],
    *,
    growth: str = "logistic",
    checkpoint: bool = True,
    adjoint: bool = True,
) -> tuple[Any, Any]:
    """Run the model with fixed RK4 steps; traceable (jit/grad/vmap it from outside).

    Args:
        u0: initial normalised cell density on the grid (fraction of carrying capacity).
        params: ``D`` (mm^2/day), ``rho`` (1/day), ``alpha`` (1/Gy), ``alpha_beta`` (Gy),
            ``k_chemo`` (1/day per unit exposure); scalars or JAX scalars, except ``rho``,
            which may also be a map of the grid's shape (a spatially varying proliferation
            rate, 1/day per voxel; its values outside the mask do not matter).
        op: the grid's :class:`Operator`.
        forcing: per-step RT dose and chemotherapy exposure (:func:`forcing`).
        save_steps: step indices (0..n_steps, increasing) whose state to return; step ``k``
            is time ``k * dt`` after the start (before any RT fraction scheduled at that step).
        growth: "logistic" or "gompertz".
        checkpoint: recompute each step in the backward pass (one stored state per step).
        adjoint: with `checkpoint`, reverse mode uses the hand-written adjoint of the RK4
            step (:data:`_step_adjoint`; about 3x the forward cost) instead of autodiff of a
            checkpointed step. Same forward results either way; forward-over-reverse (Hessian-
            vector products) works, plain forward mode (``jax.jvp`` of this function) needs
            ``adjoint=False`` or ``checkpoint=False``.

    Returns:
        ``(maps, totals)``: states at `save_steps` (shape ``(len(save_steps),) + grid``) and
        the sum of ``u`` over the grid after each step (``(n_steps,)``, voxel units).

    Raises:
        ModelError: `save_steps` out of order or range, or a ``rho`` map of the wrong shape.
    """
    rho_shape = tuple(jnp.shape(params["rho"]))
    if rho_shape and rho_shape != tuple(jnp.shape(u0)):
        # a (n,) rho would otherwise broadcast silently along the last axis of the grid
        raise ModelError(
            f"rho map shape {rho_shape} differs from the grid shape {tuple(jnp.shape(u0))}"
        )
    saves = [int(s) for s in save_steps]
    if any(b < a for a, b in zip(saves, saves[1:], strict=False)) or (
        saves and (saves[0] < 0 or saves[-1] > forcing.n_steps)
    ):
        raise ModelError(f"save_steps {saves} must increase within 0..{forcing.n_steps}")
    dt = float(forcing.dt)
    rt = jnp.asarray(forcing.rt_dose, dtype=jnp.float64)
    ex = jnp.asarray(forcing.exposure, dtype=jnp.float64)
    op = Operator(
        tuple(jnp.asarray(c) for c in op.conductance),
        jnp.asarray(op.mask),
        jnp.asarray(op.dose_map),
    )

    def body(u: Any, f: Any) -> tuple[Any, Any]:
        new = _step(u, f, params, op, dt, growth)
        return new, jnp.sum(new)

    if checkpoint and adjoint:
        # Python numbers stay static literals (bit-identical to the plain step); the rest are
        # the arrays the custom VJP differentiates
        fixed = tuple((k, params[k]) for k in PARAM_NAMES if isinstance(params[k], (int, float)))
        free = {k: jnp.asarray(params[k]) for k in PARAM_NAMES if k not in dict(fixed)}

        def body(u: Any, f: Any) -> tuple[Any, Any]:  # noqa: F811  (hand-written adjoint)
            new = _step_adjoint(dt, growth, fixed, u, f[0], f[1], free, op.conductance,
                                op.dose_map)  # fmt: skip
            return new, jnp.sum(new)

    elif checkpoint:
        body = jax.checkpoint(body)  # type: ignore[assignment]
    u = jnp.asarray(u0, dtype=jnp.float64) * op.mask  # the model lives inside the mask
    maps: list[Any] = []
    totals: list[Any] = []
    start = 0
    for stop in [*saves, forcing.n_steps]:
        if stop > start:
            u, tot = jax.lax.scan(body, u, (rt[start:stop], ex[start:stop]))
            totals.append(tot)
            start = stop
        if len(maps) < len(saves):
            maps.append(u)
    total = jnp.concatenate(totals) if totals else jnp.zeros((0,))
    stacked = jnp.stack(maps) if maps else jnp.zeros((0, *jnp.shape(u)))
    return stacked, total


# --------------------------------------------------------------------------- treatment forcing


def make_forcing(
    n_steps: int,
    dt: float,
    *,
    rt_days: Sequence[float] = (),
    rt_doses: Sequence[float] | float = 2.0,
    chemo_days: Sequence[float] = (),
    chemo_doses: Sequence[float] | float = 1.0,
    chemo_half_life: float = 1.8 / 24.0,
) -> Forcing:
    """Per-step RT dose and mean chemotherapy exposure of a fixed-step run starting at day 0.

    Chemotherapy exposure is a one-compartment bolus model normalised so that each dose's
    exposure integrates to its relative dose: ``E(t) = sum_i r_i k exp(-k (t - t_i))`` for
    ``t > t_i`` with ``k = ln 2 / half_life``; a relative dose of 1 given once a day gives a mean
    exposure of 1. The mean over each step is integrated exactly.

    Args:
        n_steps: number of steps.
        dt: step, days.
        rt_days: fraction times, days (rounded to the nearest step boundary).
        rt_doses: prescribed dose per fraction, Gy (one value or one per fraction).
        chemo_days: drug administration times, days.
        chemo_doses: relative dose of each administration (1 = reference dose, e.g. temozolomide
            75 mg/m^2), dimensionless.
        chemo_half_life: elimination half-life, days (temozolomide: about 1.8 h; Baker SD et al.
            Clin Cancer Res 1999;5:309-317).

    Raises:
        ModelError: negative doses, times outside the run, or a non-positive step/half-life.
    """
    if not dt > 0 or n_steps < 1 or not chemo_half_life > 0:
        raise ModelError("dt, n_steps and chemo_half_life must be positive")
    rt = np.zeros(n_steps)
    doses = np.broadcast_to(np.asarray(rt_doses, dtype=float), (len(rt_days),))
    for t, d in zip(rt_days, doses, strict=True):
        k = round(float(t) / dt)
        if not 0 <= k < n_steps or d < 0:
            raise ModelError(f"RT fraction at day {t} ({d} Gy) is outside the run or negative")
        rt[k] += d
    ex = np.zeros(n_steps)
    cd = np.broadcast_to(np.asarray(chemo_doses, dtype=float), (len(chemo_days),))
    ke = np.log(2.0) / chemo_half_life
    edges = np.arange(n_steps + 1) * dt
    for t, r in zip(chemo_days, cd, strict=True):
        if r < 0 or not 0 <= t < n_steps * dt:
            raise ModelError(f"chemotherapy dose at day {t} (relative {r}) is invalid")
        # cumulative delivered fraction 1 - exp(-k (s - t)) at each step edge
        cum = np.where(edges > t, -np.expm1(-ke * np.clip(edges - t, 0, None)), 0.0)
        ex += r * np.diff(cum) / dt
    return Forcing(float(dt), rt, ex)


def stupp_schedule(
    start_day: float,
    *,
    fractions: int = 30,
    dose_per_fraction: float = 2.0,
    adjuvant_cycles: int = 6,
    adjuvant_relative_dose: float = 2.0,
) -> dict[str, list[float]]:
    """Days and doses of RT + temozolomide as in Stupp et al. 2005 (NEJM 352:987-996).

    Fractions Monday-Friday from `start_day` (a Monday); temozolomide daily (relative dose 1,
    i.e. 75 mg/m^2) from the first to the last RT day; after a 4-week break, adjuvant cycles of
    5 days every 28 days at `adjuvant_relative_dose` (2 = 150 mg/m^2).

    Args:
        start_day: day of the first fraction, days.
        fractions: number of fractions.
        dose_per_fraction: Gy.
        adjuvant_cycles: number of 28-day adjuvant cycles.
        adjuvant_relative_dose: adjuvant daily dose relative to 75 mg/m^2.

    Returns:
        ``{"rt_days", "rt_doses", "chemo_days", "chemo_doses"}`` for :func:`make_forcing`.
    """
    rt_days: list[float] = []
    day = float(start_day)
    while len(rt_days) < fractions:
        if int(day - start_day) % 7 < 5:
            rt_days.append(day)
        day += 1.0
    last = rt_days[-1] if rt_days else float(start_day)
    chemo_days = [float(d) for d in np.arange(start_day, last + 1.0, 1.0)]
    chemo_doses = [1.0] * len(chemo_days)
    adj_start = last + 28.0 + 1.0
    for c in range(adjuvant_cycles):
        for k in range(5):
            chemo_days.append(adj_start + 28.0 * c + k)
            chemo_doses.append(float(adjuvant_relative_dose))
    return {
        "rt_days": rt_days,
        "rt_doses": [float(dose_per_fraction)] * len(rt_days),
        "chemo_days": chemo_days,
        "chemo_doses": chemo_doses,
    }


def front_position(u: Any, spacing: float, level: float = 0.5) -> float:
    """Position (mm) where a monotone decreasing 1D profile crosses `level`, by interpolation.

    Positions are voxel centres ``(i + 0.5) * spacing``.
    """
    v = np.asarray(u, dtype=float)
    above = np.nonzero(v >= level)[0]
    if above.size == 0 or above[-1] + 1 >= v.size:
        raise ModelError("profile does not cross the level inside the domain")
    i = int(above[-1])
    frac = (v[i] - level) / (v[i] - v[i + 1])
    return (i + 0.5 + frac) * spacing
