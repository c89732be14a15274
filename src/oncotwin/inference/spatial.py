"""Calibration of spatial (reaction-diffusion) twins from imaging visits, with uncertainty.

Gradient-based MAP through the solver (L-BFGS from optax, gradients by reverse-mode through the
checkpointed RK4 scan), then a Laplace approximation: a Gaussian on the unconstrained (log)
parameters with covariance the inverse Hessian of the negative log posterior (``jax.hessian``;
the scalar parameters are few, so the full Hessian is cheap). Draws from it give forecasts of
cellularity maps and total tumour cell count with intervals, under the delivered plan or any
other plan.

Statistical model. The first calibration visit gives the initial state, but not exactly:

- inside its ROI the true initial map is latent, ``u0 = obs0 + sigma * eta`` with ``eta ~
  N(0, 1)`` per voxel: with a flat prior on ``u0`` and ``obs0 ~ Normal(u0, sigma^2)`` this
  non-centred form is exactly the joint posterior (the first image's likelihood and the
  Jacobian of ``u0 -> eta`` cancel to ``N(eta; 0, 1)``). Taking ``obs0`` as exact instead
  (``initial_state="observed"``) lets the model explain the first image's noise as extra
  diffusion, an errors-in-variables bias (D 1.2-1.6x too high on the phantoms);
- the invisible infiltrative tail outside the first ROI is ``c exp(-d / l)`` with ``d`` the
  distance to the ROI and ``l = tail_ratio * sqrt(D / rho)``; ``sqrt(D / rho)`` is the decay
  length of a Fisher-Kolmogorov front (Swanson KR et al. Br J Cancer 2008;98:113-119;
  Konukoglu E et al. IEEE Trans Med Imaging 2010;29:77-95), and ``tail_ratio`` (log-normal,
  median 1, log-sd 0.5) is calibrated because a real front is not exactly exponential (with it
  fixed at 1, D came out 30% high even from noise-free images);

and for each later visit ``k``:

- inside the tumour ROI: ``obs = u_model + e``, ``e ~ Normal(0, sigma^2)`` per voxel;
- inside the tissue mask but outside the ROI the image only says the cellularity was below the
  segmentation level ``c``: a censored term ``P(u_model + e < c) = Phi((c - u_model)/sigma)``
  (the standard treatment of values below a detection limit; Beal SL. J Pharmacokinet
  Pharmacodyn 2001;28:481-504, method M3);
- priors: log-normal on each free parameter (:data:`oncotwin.models.spatial.SPATIAL_PARAMS`)
  and on ``sigma`` (median 0.05, log-sd 1).

The MAP is joint over parameters and latent offsets (L-BFGS in two stages: parameters alone,
then all, with the parameters whitened by the first stage's Hessian). The Laplace posterior of
the parameters is the Gaussian whose precision is the Schur complement of the latent block
(Hessian-vector products and conjugate gradients; the latent block is never formed). Forecast
draws move the initial map with each parameter draw (its conditional mean under that Gaussian).

With ``method="nuts"`` the Laplace fit only starts and whitens a NUTS run (Hoffman MD, Gelman
A. J Mach Learn Res 2014;15:1593-1623; NumPyro's kernel) over the parameters and the latent
offsets together. The Gaussian sits at the joint mode, and with hundreds of latent voxels the
joint mode is not the marginal one: it leaves out ``0.5 log det`` of the latent block, which
depends on D, and on the 2D phantoms put D about 2 posterior sd low on some seeds
(``benchmarks/spatial_coverage_diagnosis.py``). NUTS samples the marginal itself; forecasts
use each draw's own latent map. On those phantoms the marginal lies above the truth in D
instead (docs/spatial.md, Limits): what remains is the model's (tail, flat prior on the
latent map, segmentation likelihood), not the approximation's.

Spatially varying proliferation (``prepare(..., proliferation="field")``): ``log rho(x) =
log rho0 + f(x)`` with ``f`` a Gaussian random field on the tissue mask whose precision is
``tau (kappa^2 I + L)^2`` (``L`` the mask's graph Laplacian with zero-flux boundaries): the GMRF
of the SPDE ``(kappa^2 - Laplacian) f = W`` with Matern smoothness 1 in 2D (1/2 in 3D) and range
``sqrt(8 nu) / kappa`` (Lindgren F, Rue H, Lindstrom J. J R Stat Soc B 2011;73:423-498). ``f`` is
represented by its truncated Karhunen-Loeve expansion (the leading eigenvectors of ``L``, without
the constant ones): ``f = sum_k a_k sqrt(lambda_k) phi_k``, ``a_k ~ N(0, 1)``, as in Marzouk YM,
Najm HN. J Comput Phys 2009;228:1862-1902; ``tau`` is set so that the field's prior sd, averaged
over the mask, is the requested one (the scaling of Sorbye SH, Rue H. Spat Stat 2014;8:39-51).
The coefficients ``a_k`` join the scalar parameters in every step below (MAP, Schur complement,
draws), so the Laplace posterior covers the field; its Hessian is ``K x K`` in the modes, never
one of the full field. Without the constant modes ``f`` averages to zero over the mask, so
``rho0`` is the geometric mean of ``rho(x)`` over the mask.

Agreement with later visits: Dice of the predicted ROI (median cellularity above ``c``) with the
observed ROI, Lin's concordance correlation coefficient of voxel cellularity (Lin LI. Biometrics
1989;45:255-268), and whether the observed total cell count lies in the forecast interval.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

import numpy as np

from .._jax import jax, jnp
from ..data.imaging import SpatialPatient
from ..errors import CalibrationError, ConvergenceWarning, DataError, ModelError
from ..models import spatial as sp

Progress = Callable[[str, int], Callable[[int], None]]
SIGMA_PRIOR = (0.05, 1.0)  # median, log-sd of the noise sd (cellularity units)
# ratio of the invisible tail's decay length to sqrt(D/rho): median 1 (the Fisher front's
# exponential decay), log-sd 0.5 (the developed front's decay is (1 + d/l) exp(-d/l), heavier)
TAIL_PRIOR = (1.0, 0.5)
DEFAULT_FREE = ("D", "rho", "alpha")
METHODS = ("laplace", "nuts")  # calibrate(method=...)
METHODS_TEXT = " or ".join(map(repr, METHODS))  # for error messages: 'laplace' or 'nuts'
LEVEL = 0.9
PROLIFERATION = ("scalar", "field")
DENSE_EIGEN_MAX = 1500  # masks up to this many voxels: dense eigendecomposition of L


@dataclass(frozen=True)
class FieldPrior:
    """Smoothness prior of the log-proliferation field ``f`` (``rho(x) = rho0 exp(f(x))``).

    Attributes:
        sd: prior sd of ``f`` (natural-log scale, dimensionless), averaged over the mask: 0.5
            lets the rate vary by a factor ``exp(1.645 * 0.5) = 2.3`` either way at 90%.
        range_mm: correlation range, mm: the distance at which the Matern correlation falls to
            about 0.13 (Lindgren 2011's ``sqrt(8 nu) / kappa``).
        modes: number of Karhunen-Loeve modes kept (the smoothest ones).
    """

    sd: float = 0.5
    range_mm: float = 30.0
    modes: int = 24

    def check(self) -> None:
        """Raise :class:`ModelError` for a non-positive sd or range or fewer than one mode."""
        if not (self.sd > 0 and self.range_mm > 0 and self.modes >= 1):
            raise ModelError(f"field prior needs sd > 0, range_mm > 0 and modes >= 1, got {self}")


def _no_progress(label: str, total: int) -> Callable[[int], None]:
    return lambda n: None


@dataclass(frozen=True)
class Setup:
    """A calibration problem: the grid, forcing and observations in one place (no JAX state).

    Attributes:
        patient: the (cropped) patient.
        calib: indices of the visits used for calibration (the first is the initial condition).
        free: names of the calibrated parameters.
        fixed: values of the others.
        growth: "logistic" or "gompertz".
        dt: solver step, days.
        detection: segmentation level of the ROI (normalised cellularity).
        box: crop box into the original images.
        ic_smoothing: sd of the Gaussian smoothing of the initial map, voxels (0: none).
        initial_state: "latent" (the first map's true cellularity inside its ROI is unknown,
            observed with the same noise as the later maps, and estimated with the
            parameters) or "observed" (the first map is taken as exact).
        proliferation: "scalar" (one rate) or "field" (``rho(x) = rho0 exp(f(x))`` with a
            smooth Gaussian ``f``; see the module docstring).
        field_prior: the prior of ``f`` (used when ``proliferation == "field"``).
    """

    patient: SpatialPatient
    calib: tuple[int, ...]
    free: tuple[str, ...]
    fixed: Mapping[str, float]
    growth: str
    dt: float
    detection: float
    box: tuple[slice, ...]
    ic_smoothing: float = 0.0
    initial_state: str = "latent"
    proliferation: str = "scalar"
    field_prior: FieldPrior = field(default_factory=FieldPrior)

    @property
    def t0(self) -> float:
        """Day of the initial-condition visit."""
        return self.patient.visits[self.calib[0]].day


def _distance_to_roi(roi: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    from scipy.ndimage import distance_transform_edt

    if not roi.any():
        return np.full(roi.shape, np.inf)
    return np.asarray(distance_transform_edt(~roi, sampling=spacing))


def _denoise(cell: np.ndarray, roi: np.ndarray, width_vox: float) -> np.ndarray:
    """Gaussian smoothing (sd `width_vox` voxels) of a cellularity map restricted to its ROI.

    Noise in the initial map is otherwise explained by the model as extra diffusion (the
    diffusion smooths it away), which biases D upwards (an errors-in-variables bias).
    Normalised convolution keeps the ROI's edge values unbiased.
    """
    base = np.where(roi, cell, 0.0)
    if width_vox <= 0:
        return base
    from scipy.ndimage import gaussian_filter

    num = gaussian_filter(base, width_vox, mode="constant")
    den = gaussian_filter(roi.astype(float), width_vox, mode="constant")
    return np.where(roi, num / np.maximum(den, 1e-12), 0.0)


def plan_forcing(
    patient: SpatialPatient, plan: str, t0: float, t_end: float, dt: float, *,
    rt_days: Sequence[float] | None = None, chemo_days: Sequence[float] | None = None,
    chemo_doses: Sequence[float] | None = None,
) -> sp.Forcing:  # fmt: skip
    """Forcing of a run from day `t0` to `t_end` under RT plan `plan` (days since visit 0).

    Args:
        patient: the patient (plans and chemotherapy).
        plan: RT plan name.
        t0, t_end: start and end, days since the first visit.
        dt: step, days.
        rt_days, chemo_days, chemo_doses: override the plan's fraction days or the chemotherapy.

    Raises:
        ModelError: unknown plan.
    """
    if plan not in patient.plans:
        raise ModelError(f"unknown RT plan {plan!r}; patient has {sorted(patient.plans)}")
    p = patient.plans[plan]
    n = max(int(round((t_end - t0) / dt)), 1)
    end = t0 + n * dt
    fr = [
        d - t0 for d in (p.days if rt_days is None else rt_days) if t0 - dt / 2 <= d < end - dt / 2
    ]
    cd = patient.chemo_days if chemo_days is None else tuple(chemo_days)
    cdo = patient.chemo_doses if chemo_doses is None else tuple(chemo_doses)
    keep = [(d - t0, r) for d, r in zip(cd, cdo, strict=True) if t0 <= d < end]
    return sp.make_forcing(
        n, dt, rt_days=fr, rt_doses=p.dose_per_fraction,
        chemo_days=[k[0] for k in keep], chemo_doses=[k[1] for k in keep],
        chemo_half_life=patient.chemo_half_life,
    )  # fmt: skip


def field_basis(
    mask: Any, spacing: Sequence[float], prior: FieldPrior
) -> tuple[np.ndarray, np.ndarray]:
    """Truncated Karhunen-Loeve basis of the log-proliferation field's GMRF prior on a mask.

    The prior precision is ``tau (kappa^2 I + L)^2`` with ``L`` the graph Laplacian of the mask
    (neighbours along each axis, weight ``1/h_a^2``, zero flux at the mask boundary, 1/mm^2) and
    ``kappa = sqrt(8 nu) / range`` (``nu = 2 - d/2``; Lindgren, Rue & Lindstrom 2011). Its
    covariance has the eigenvectors ``phi_k`` of ``L`` and eigenvalues proportional to
    ``(kappa^2 + mu_k)^-2``: the smoothest modes carry most of the variance, so the leading
    ``prior.modes`` of them (the constant modes, one per connected component, left out) give
    ``f = sum_k a_k b_k`` with ``a_k ~ N(0, 1)`` and ``b_k = sqrt(lambda_k) phi_k``. ``tau`` is
    chosen so that the mean over the mask of the truncated field's prior variance is
    ``prior.sd^2`` (Sorbye & Rue 2014).

    Args:
        mask: boolean tissue mask (grid shape).
        spacing: voxel sizes, mm.
        prior: the :class:`FieldPrior`.

    Returns:
        ``(basis, mu)``: the scaled modes ``b_k`` as maps, shape ``(modes,) + grid`` (0 outside
        the mask; dimensionless, log scale), and the Laplacian eigenvalues ``mu_k``, 1/mm^2.

    Raises:
        ModelError: a bad prior, or a mask with fewer voxels than modes + components.
    """
    from scipy.sparse import coo_matrix, diags
    from scipy.sparse.csgraph import connected_components

    prior.check()
    m = np.asarray(mask, dtype=bool)
    idx = np.flatnonzero(m)
    n_vox = int(idx.size)
    pos = np.full(m.shape, -1, dtype=np.int64)
    pos.flat[idx] = np.arange(n_vox)
    rows, cols, vals = [], [], []
    for axis, h in enumerate(spacing):
        lo = [slice(None)] * m.ndim
        hi = [slice(None)] * m.ndim
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        both = m[tuple(lo)] & m[tuple(hi)]
        i, j = pos[tuple(lo)][both], pos[tuple(hi)][both]
        rows += [i, j]
        cols += [j, i]
        vals.append(np.full(2 * i.size, 1.0 / float(h) ** 2))
    w = coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_vox, n_vox)
    ).tocsr()
    lap = (diags(np.asarray(w.sum(axis=1)).ravel()) - w).tocsc()
    n_comp = int(connected_components(w, directed=False)[0])
    k = prior.modes + n_comp
    if k >= n_vox:
        raise ModelError(
            f"proliferation field: {prior.modes} modes need more than {k} mask voxels "
            f"(the mask has {n_vox} in {n_comp} connected parts)"
        )
    nu = 2.0 - m.ndim / 2.0
    kappa2 = 8.0 * nu / prior.range_mm**2
    if n_vox <= DENSE_EIGEN_MAX:
        mu, vec = np.linalg.eigh(lap.toarray())
        mu, vec = mu[:k], vec[:, :k]
    else:
        from scipy.sparse.linalg import eigsh

        # shift-invert about -kappa^2 (L + kappa^2 I is positive definite); fixed start vector
        # so that the same mask gives the same modes
        mu, vec = eigsh(lap, k=k, sigma=-kappa2, which="LM", v0=np.linspace(1.0, 2.0, n_vox))
        order = np.argsort(mu)
        mu, vec = mu[order], vec[:, order]
    mu, vec = mu[n_comp:], vec[:, n_comp:]  # drop the constants (zero eigenvalues)
    # deterministic signs: the largest-magnitude entry of each mode is positive
    sign = np.sign(vec[np.argmax(np.abs(vec), axis=0), np.arange(vec.shape[1])])
    vec = vec * np.where(sign == 0, 1.0, sign)
    lam = 1.0 / (kappa2 + mu) ** 2
    lam = lam * prior.sd**2 * n_vox / lam.sum()  # mean prior variance over the mask = sd^2
    basis = np.zeros((prior.modes, *m.shape))
    basis.reshape(prior.modes, -1)[:, idx] = (vec * np.sqrt(lam)).T
    return basis, mu


@lru_cache(maxsize=8)
def _basis_by_key(
    key: bytes, shape: tuple[int, ...], spacing: tuple[float, ...], prior: FieldPrior
) -> np.ndarray:
    return field_basis(np.frombuffer(key, dtype=bool).reshape(shape), spacing, prior)[0]


def _cached_basis(mask: Any, spacing: Sequence[float], prior: FieldPrior) -> np.ndarray:
    """:func:`field_basis` maps, computed once per mask (calibration and forecasts share it)."""
    m = np.ascontiguousarray(mask, dtype=bool)
    return _basis_by_key(m.tobytes(), m.shape, tuple(float(h) for h in spacing), prior)


def _smooth_cap(v: Any, cap: float) -> Any:
    # identity to 1e-6 relative below cap/4, never above cap, so line searches cannot step into
    # a blow-up
    return v / (1.0 + (v / cap) ** 8) ** 0.125


class _Problem:
    """JAX side of a :class:`Setup`: initial state, objective, predictions.

    Arrays travel as arguments (``self.data``), not as constants baked into the compiled code:
    compilation is faster, and the persistent compile cache serves every patient and plan of
    the same grid shape and number of steps.
    """

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        pt = setup.patient
        first = pt.visits[setup.calib[0]]
        dist = _distance_to_roi(first.roi, pt.spacing)
        plan = pt.plans[pt.delivered] if pt.plans else None
        self.op = sp.operator(
            pt.mask, pt.spacing, pt.diffusivity, None if plan is None else plan.dose_map
        )
        last = pt.visits[setup.calib[-1]].day
        self.forcing = (
            plan_forcing(pt, pt.delivered, setup.t0, last, setup.dt)
            if plan is not None
            else sp.make_forcing(max(int(round((last - setup.t0) / setup.dt)), 1), setup.dt)
        )
        self.saves = [int(round((pt.visits[k].day - setup.t0) / setup.dt)) for k in setup.calib[1:]]
        obs = np.stack([pt.visits[k].cellularity for k in setup.calib[1:]])
        rois = np.stack([pt.visits[k].roi for k in setup.calib[1:]])
        self.specs = [sp.param_spec(n) for n in setup.free]
        prior_mu = [math.log(s.prior_median) for s in self.specs] + [
            math.log(SIGMA_PRIOR[0]), math.log(TAIL_PRIOR[0])
        ]  # fmt: skip
        prior_sd = [s.prior_sd for s in self.specs] + [SIGMA_PRIOR[1], TAIL_PRIOR[1]]
        self.i_sigma, self.i_tail = len(self.specs), len(self.specs) + 1
        # proliferation field: standardised KL coefficients after the scalars, prior N(0, 1)
        self.i_field = len(self.specs) + 2
        self.n_field = setup.field_prior.modes if setup.proliferation == "field" else 0
        prior_mu += [0.0] * self.n_field
        prior_sd += [1.0] * self.n_field
        self.n = len(self.specs) + 2 + self.n_field
        # latent initial state: one standardised offset per voxel of the first ROI
        self.latent_idx = (
            np.flatnonzero(first.roi & pt.mask) if setup.initial_state == "latent" else
            np.zeros(0, dtype=np.int64)
        )  # fmt: skip
        self.n_latent = int(self.latent_idx.size)
        self.data: dict[str, Any] = {
            "cond": tuple(jnp.asarray(c) for c in self.op.conductance),
            "mask": jnp.asarray(self.op.mask),
            "dose": jnp.asarray(self.op.dose_map),
            "rt": jnp.asarray(self.forcing.rt_dose),
            "ex": jnp.asarray(self.forcing.exposure),
            "u_obs0": jnp.asarray(_denoise(first.cellularity, first.roi, setup.ic_smoothing)),
            "roi0": jnp.asarray(first.roi),
            # finite everywhere (gradients through exp(-d/l) must not meet inf * 0)
            "dist": jnp.asarray(np.where(np.isfinite(dist), dist, 0.0)),
            "tail_zone": jnp.asarray(pt.mask & ~first.roi & np.isfinite(dist)),
            "obs": jnp.asarray(obs),
            "in_roi": jnp.asarray(rois & pt.mask),
            "censored": jnp.asarray(~rois & pt.mask),
            "prior_mu": jnp.asarray(prior_mu),
            "prior_sd": jnp.asarray(prior_sd),
            "detection": jnp.asarray(float(setup.detection)),
            "latent_idx": jnp.asarray(self.latent_idx),
        }
        if self.n_field:
            # only in field mode: the scalar problem keeps its exact compiled signature
            self.data["field"] = jnp.asarray(_cached_basis(pt.mask, pt.spacing, setup.field_prior))
        self.prior_mu = np.asarray(prior_mu)
        self.prior_sd = np.asarray(prior_sd)
        dt = setup.dt
        lam = float(np.max(sp._row_sums(self.op))) if pt.mask.any() else 0.0
        self.caps = {
            "D": 0.9 * sp.RK4_STABILITY / (dt * lam) if lam > 0 else None,
            "rho": 1.0 / dt,
            # daily doses give step-mean exposures up to ~2x the relative dose
            "k_chemo": 0.5 / dt,
        }

    def params(self, z: Any) -> dict[str, Any]:
        out: dict[str, Any] = {k: v for k, v in self.setup.fixed.items()}
        for i, name in enumerate(self.setup.free):
            v = jnp.exp(z[i])
            cap = self.caps.get(name)
            if cap is not None:
                # smooth cap: never above the RK4 stability limit (see _smooth_cap)
                v = _smooth_cap(v, cap)
            out[name] = v
        return out

    def log_field(self, z: Any, data: Mapping[str, Any]) -> Any:
        """``f(x)`` on the grid (natural log of ``rho(x) / rho0``); zeros in scalar mode."""
        if not self.n_field:
            return jnp.zeros(data["mask"].shape)
        coef = z[self.i_field : self.i_field + self.n_field]
        return jnp.tensordot(coef, data["field"], axes=1)

    def rates(self, z: Any, data: Mapping[str, Any]) -> dict[str, Any]:
        """Model parameters for `z`, with ``rho`` a map in field mode (capped like the scalar)."""
        p = self.params(z)
        if self.n_field:
            rho_map = p["rho"] * jnp.exp(self.log_field(z, data))
            p["rho"] = _smooth_cap(rho_map, 1.0 / self.setup.dt)  # as caps["rho"]
        return p

    def tail(self, z: Any, data: Mapping[str, Any]) -> Any:
        """The invisible tail outside the first ROI, ``c exp(-d / l)`` (module docstring)."""
        p = self.params(z)  # in field mode the tail's length uses the reference rate rho0
        ell = jnp.exp(z[self.i_tail]) * jnp.sqrt(p["D"] / p["rho"])
        return data["detection"] * jnp.exp(-data["dist"] / ell)

    def initial(self, z: Any, data: Mapping[str, Any]) -> Any:
        """Initial state for the full unconstrained vector `z` (parameters, log sigma, latent)."""
        u0 = data["u_obs0"]
        if self.n_latent:
            # non-centred: u0 = observed + sigma * eta, eta ~ N(0, 1) a priori; this is the
            # flat-prior posterior of the true map given the first image (the change of
            # variables absorbs the first image's likelihood and its Jacobian, see module doc)
            sigma = jnp.exp(z[self.i_sigma])
            flat = u0.reshape(-1).at[data["latent_idx"]].add(sigma * z[self.n :])
            u0 = flat.reshape(u0.shape)
        return jnp.where(data["roi0"], u0, jnp.where(data["tail_zone"], self.tail(z, data), 0.0))

    def run(
        self, z: Any, data: Mapping[str, Any], saves: Sequence[int], checkpoint: bool = True
    ) -> tuple[Any, Any]:
        p = self.rates(z, data)
        op = sp.Operator(data["cond"], data["mask"], data["dose"])
        forcing = sp.Forcing(self.setup.dt, data["rt"], data["ex"])
        return sp.simulate(
            self.initial(z, data),
            p,
            op,
            forcing,
            saves,
            growth=self.setup.growth,
            checkpoint=checkpoint,
        )

    def neg_log_post(self, z: Any, data: Mapping[str, Any]) -> Any:
        maps, _ = self.run(z, data, self.saves)
        sigma = jnp.exp(z[self.i_sigma])
        r = (data["obs"] - maps) / sigma
        gauss = jnp.sum(jnp.where(data["in_roi"], -0.5 * r * r - jnp.log(sigma), 0.0))
        below = jax.scipy.special.log_ndtr((data["detection"] - maps) / sigma)
        cens = jnp.sum(jnp.where(data["censored"], below, 0.0))
        prior = -0.5 * jnp.sum(((z[: self.n] - data["prior_mu"]) / data["prior_sd"]) ** 2)
        latent = -0.5 * jnp.sum(z[self.n :] ** 2)
        return -(gauss + cens + prior + latent)


@dataclass
class SpatialPosterior:
    """Posterior of a spatial twin: Laplace, or NUTS draws started from it.

    Attributes:
        setup: the calibration problem.
        names: parameter names (free model parameters, then "sigma" and "tail_ratio", the
            invisible tail's decay length over sqrt(D/rho)). In field mode "rho" is ``rho0``,
            the geometric mean of ``rho(x)`` over the mask.
        z_map: MAP on the unconstrained (log) scale; in field mode followed by the
            proliferation field's standardised mode coefficients.
        cov: Laplace covariance on that scale (inverse Hessian), all of ``z_map``.
        draws: constrained draws of the named parameters, shape ``(n_draws, len(names))``.
            With NUTS the chains are interleaved (draw ``i`` comes from chain ``i % chains``),
            so that any leading block mixes all chains.
        seed: seed of the draws.
        converged: whether L-BFGS met its gradient tolerance and the Hessian was positive
            definite (with NUTS: and the chains passed their diagnostics).
        diagnostics: iterations, final gradient norm, objective, Hessian eigenvalues.
        latent_map: MAP of the standardised latent offsets of the initial map (one per voxel of
            the first ROI; empty when the first map is taken as exact).
        latent_gain: ``K`` with ``E[eta | z] = latent_map - K (z - z_map)`` under the Laplace
            Gaussian, ``(n_latent, n_params)``; forecasts move the initial map with each draw.
        field_draws: the field's mode coefficients of each draw, ``(n_draws, modes)`` (zero
            columns in scalar mode); drawn jointly with ``draws``.
        method: "laplace" (intervals from ``z_map`` and ``cov``) or "nuts" (quantiles of the
            draws).
        latent_draws: with NUTS, the latent offsets of each draw, ``(n_draws, n_latent)``,
            sampled jointly with the parameters (forecasts use them instead of the Laplace
            conditional mean).
    """

    setup: Setup
    names: tuple[str, ...]
    z_map: np.ndarray
    cov: np.ndarray
    draws: np.ndarray
    seed: int
    converged: bool
    diagnostics: dict[str, Any] = field(default_factory=dict)
    latent_map: np.ndarray = field(default_factory=lambda: np.zeros(0))
    latent_gain: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    field_draws: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    method: str = "laplace"
    latent_draws: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def unconstrained_draws(self) -> np.ndarray:
        """Draws on the unconstrained scale of ``z_map`` (log parameters, field coefficients)."""
        zs = np.log(self.draws)
        if self.field_draws.size:
            zs = np.concatenate([zs, self.field_draws], axis=1)
        return zs

    def full(self, zs: np.ndarray) -> np.ndarray:
        """Full unconstrained vectors (parameters, log sigma, log tail ratio, field modes,
        latent) for draws `zs` (unconstrained scale, as :meth:`unconstrained_draws`).

        The latent offsets are their conditional mean given each draw (Laplace Gaussian).
        """
        zs = np.atleast_2d(zs)
        if self.latent_map.size == 0:
            return zs
        eta = self.latent_map[None, :] - (zs - self.z_map[None, :]) @ self.latent_gain.T
        return np.concatenate([zs, eta], axis=1)

    def draw_vectors(self, n_draws: int | None = None) -> np.ndarray:
        """Full unconstrained vectors of the first `n_draws` draws (default all): with NUTS
        their sampled latent offsets, with Laplace the conditional mean (:meth:`full`)."""
        zs = self.unconstrained_draws()[: n_draws or len(self.draws)]
        if self.latent_draws.size:
            return np.concatenate([zs, self.latent_draws[: len(zs)]], axis=1)
        return self.full(zs)

    @property
    def map(self) -> dict[str, float]:
        """MAP estimate of each parameter (model units)."""
        named = self.z_map[: len(self.names)]
        return {n: float(math.exp(v)) for n, v in zip(self.names, named, strict=True)}

    def rho_field(self, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posterior median and central `level` interval of the proliferation rate per voxel.

        Under the Laplace Gaussian, ``log rho(x) = log rho0 + sum_k a_k b_k(x)`` is Gaussian
        (linear in the unconstrained parameters), so its quantiles are exact under that
        approximation (the smooth cap at ``1/dt`` is ignored: it acts only above rates of
        ``1/(4 dt)`` per day). In scalar mode the maps are constant in the mask.

        Args:
            level: interval level (0.9: 5% and 95% quantiles).

        Returns:
            ``(median, lower, upper)`` maps, 1/day, NaN outside the mask.
        """
        from scipy.stats import norm

        pt = self.setup.patient
        inside = np.asarray(pt.mask, dtype=bool)
        n = self.z_map.size
        n_field = n - len(self.names)
        # gradient of log rho(x) w.r.t. the unconstrained vector, one row per mask voxel
        grad = np.zeros((int(inside.sum()), n))
        if "rho" in self.names:
            grad[:, self.names.index("rho")] = 1.0
            log_rho0 = self.z_map[self.names.index("rho")]
        else:
            log_rho0 = math.log(self.setup.fixed["rho"])
        if n_field:
            basis = _cached_basis(pt.mask, pt.spacing, self.setup.field_prior)
            grad[:, len(self.names) :] = basis.reshape(n_field, -1)[:, inside.ravel()].T
        if self.method == "nuts":  # quantiles of log rho(x) over the draws
            log_rho = self.unconstrained_draws() @ grad.T
            if "rho" not in self.names:
                log_rho = log_rho + log_rho0
            bounds = np.quantile(log_rho, [0.5, 0.5 - level / 2, 0.5 + level / 2], axis=0)
        else:
            mean = log_rho0 + grad[:, len(self.names) :] @ self.z_map[len(self.names) :]
            sd = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", grad, self.cov, grad), 0.0))
            q = norm.ppf(0.5 + level / 2)
            bounds = np.stack([mean, mean - q * sd, mean + q * sd])
        out = []
        for v in bounds:
            m = np.full(inside.shape, np.nan)
            m[inside] = np.exp(v)
            out.append(m)
        return out[0], out[1], out[2]

    def median(self, name: str) -> float:
        """Posterior median of parameter `name` (Laplace: the MAP, the log-normal's median)."""
        if self.method == "nuts":
            return float(np.median(self.draws[:, self.names.index(name)]))
        return self.map[name]

    def interval(self, name: str, level: float = LEVEL) -> tuple[float, float]:
        """Central posterior interval of parameter `name` (Laplace: log-normal marginal;
        NUTS: quantiles of the draws)."""
        from scipy.stats import norm

        i = self.names.index(name)
        if self.method == "nuts":
            lo, hi = np.quantile(self.draws[:, i], [0.5 - level / 2, 0.5 + level / 2])
            return float(lo), float(hi)
        q = norm.ppf(0.5 + level / 2)
        s = math.sqrt(self.cov[i, i])
        return math.exp(self.z_map[i] - q * s), math.exp(self.z_map[i] + q * s)

    def summary(self, level: float = LEVEL) -> list[dict[str, Any]]:
        """One row per parameter: median, interval bounds, unit, truth if known."""
        truth = self.setup.patient.truth.get("params", {})
        units = {p.name: p.unit for p in sp.SPATIAL_PARAMS} | {"sigma": "1", "tail_ratio": "1"}
        rows = []
        for n in self.names:
            lo, hi = self.interval(n, level)
            row = {
                "parameter": n,
                "unit": units[n],
                "median": self.median(n),
                "lower": lo,
                "upper": hi,
            }
            # with a true rate map, the reference rate is not the mask mean that rho0 estimates
            if n in truth and not (n == "rho" and "rho_map" in self.setup.patient.truth):
                row["truth"] = float(truth[n])
            rows.append(row)
        return rows


def prepare(
    patient: SpatialPatient,
    *,
    calibration_visits: Sequence[int] | None = None,
    free: Sequence[str] = DEFAULT_FREE,
    fixed: Mapping[str, float] | None = None,
    growth: str = "logistic",
    dt: float = 0.5,
    detection: float = 0.1,
    crop_margin_mm: float | None = 30.0,
    ic_smoothing: float = 0.0,
    initial_state: str = "latent",
    proliferation: str = "scalar",
    field_prior: FieldPrior | None = None,
) -> Setup:
    """Check and assemble a calibration problem.

    Args:
        patient: the patient (from :func:`oncotwin.data.imaging.load_manifest`).
        calibration_visits: indices of the visits to calibrate on (default: all but the last
            two; at least two: the first is the initial condition).
        free: parameters to calibrate (names in :data:`SPATIAL_PARAMS`).
        fixed: values of the other parameters (default: prior medians).
        growth: "logistic" or "gompertz".
        dt: solver step, days.
        detection: cellularity level of the tumour segmentation.
        crop_margin_mm: crop to the calibration ROIs plus this margin (None: whole image).
        ic_smoothing: sd (voxels) of the Gaussian smoothing of the initial cellularity map.
        initial_state: "latent" (default: the first map inside its ROI is estimated with the
            parameters, observed with noise sigma) or "observed" (taken as exact; biases D
            upwards with noisy images, see docs/spatial.md).
        proliferation: "scalar" (default: one rate ``rho``) or "field" (``rho(x) = rho0
            exp(f(x))`` with a smooth Gaussian field ``f`` on the (cropped) mask, calibrated
            with the parameters; ``rho0`` is the "rho" parameter, free or fixed).
        field_prior: prior of ``f`` in field mode (default :class:`FieldPrior()`: sd 0.5,
            range 30 mm, 24 modes).

    Raises:
        DataError: fewer than two calibration visits, or an empty first ROI.
        ModelError: unknown parameter names, an unknown proliferation mode, a bad field
            prior, or unstable step at the prior's upper range.
    """
    if initial_state not in ("latent", "observed"):
        raise ModelError(f"initial_state must be 'latent' or 'observed', got {initial_state!r}")
    if proliferation not in PROLIFERATION:
        raise ModelError(f"proliferation must be one of {PROLIFERATION}, got {proliferation!r}")
    fprior = FieldPrior() if field_prior is None else field_prior
    fprior.check()
    nv = len(patient.visits)
    calib = (
        tuple(range(max(nv - 2, 2))) if calibration_visits is None else tuple(calibration_visits)
    )
    if len(calib) < 2 or any(not 0 <= k < nv for k in calib) or sorted(set(calib)) != list(calib):
        raise DataError(f"calibration visits {list(calib)} must be >= 2 increasing indices < {nv}",
                        file=patient.source, column="visits")  # fmt: skip
    if not patient.visits[calib[0]].roi.any():
        raise DataError(
            f"visit {calib[0]} has an empty tumour ROI", file=patient.source, column="visits"
        )
    for name in free:
        sp.param_spec(name)
    fix = {p.name: p.prior_median for p in sp.SPATIAL_PARAMS if p.name not in free}
    for k, v in (fixed or {}).items():
        if k in free:
            raise ModelError(f"parameter {k!r} is both free and fixed")
        sp.param_spec(k)
        fix[k] = float(v)
    box: tuple[slice, ...] = tuple(slice(0, n) for n in patient.mask.shape)
    if crop_margin_mm is not None:
        union = np.zeros(patient.mask.shape, dtype=bool)
        for idx in calib:
            union |= patient.visits[idx].roi
        from ..data.imaging import crop_affine, crop_box

        box = crop_box(union, patient.spacing, crop_margin_mm, within=patient.mask)
        patient = _cropped(patient, box, crop_affine(patient.affine, box))
    if proliferation == "field":
        # fail here, not in calibrate, if the (cropped) mask cannot hold the modes; the basis
        # is cached for calibrate and forecast
        _cached_basis(patient.mask, patient.spacing, fprior)
    return Setup(
        patient, calib, tuple(free), fix, growth, dt, detection, box, float(ic_smoothing),
        initial_state, proliferation, fprior,
    )  # fmt: skip


def _cropped(pt: SpatialPatient, box: tuple[slice, ...], affine: np.ndarray) -> SpatialPatient:
    from ..data.imaging import RTPlan, Visit

    visits = tuple(Visit(v.day, v.cellularity[box], v.roi[box]) for v in pt.visits)
    plans = {
        k: RTPlan(p.name, p.dose_map[box], p.days, p.dose_per_fraction) for k, p in pt.plans.items()
    }
    return SpatialPatient(
        pt.patient, affine, pt.mask[box], pt.diffusivity[box], visits, plans, pt.delivered,
        pt.chemo_days, pt.chemo_doses, pt.chemo_half_life, pt.carrying_capacity, pt.truth, pt.source,
    )  # fmt: skip


def _hvp_batch(prob: _Problem) -> Callable[[Any, Any, Any], Any]:
    """Jitted ``(V, z, data) -> `` Hessian-vector products of the objective at `z` with the
    rows of ``V`` (``(prob.n, n_all)``, forward-over-reverse).

    One compiled function serves the Hessian rows of the parameters (``V`` = unit vectors) and
    every conjugate-gradient iteration over the latent block (``V`` = zero parameter parts):
    both use ``prob.n`` vectors, so XLA compiles the expensive second-order pass once, not
    twice (it was 15 s and 17 s, cold, on a small 2D grid).
    """
    grad = jax.grad(prob.neg_log_post)

    def hvps(vs: Any, z: Any, data: Any) -> Any:
        def hvp(v: Any) -> Any:
            return jax.jvp(lambda x: grad(x, data), (z,), (v,))[1]

        return jax.vmap(hvp)(vs)

    return jax.jit(hvps)


def _hvp_rows(
    prob: _Problem, hvps: Callable[[Any, Any, Any], Any]
) -> Callable[[Any, Any], np.ndarray]:
    """``(z, data) -> `` the first ``prob.n`` rows of the Hessian of the objective."""

    def rows(z: Any, data: Any) -> np.ndarray:
        return np.asarray(hvps(jnp.eye(prob.n, z.shape[0]), z, data))

    return rows


def _marginal_hessian(
    prob: _Problem, z: Any, data: Mapping[str, Any], hvps: Callable[[Any, Any, Any], Any]
) -> tuple[Any, Any, float, int]:
    """Hessian of the negative log posterior marginal over the latent initial map (Laplace).

    With ``H = [[A, B], [B^T, C]]`` (parameters first, latent offsets last) the Gaussian
    marginal of the parameters has precision ``A - B C^{-1} B^T`` (Schur complement). ``A`` and
    ``B`` come from ``n`` Hessian-vector products; ``C^{-1} B^T`` from conjugate gradients with
    Hessian-vector products (``C`` is the identity plus the data's curvature, well conditioned),
    so the latent block is never formed.

    Returns:
        ``(precision, gain, residual, iterations)``: the ``n x n`` marginal precision,
        ``K = C^{-1} B^T``, the largest relative CG residual and the CG iterations (0 and 0
        without latent offsets).
    """
    n, m = prob.n, prob.n_latent
    rows = _hvp_rows(prob, hvps)(z, data)  # (n, n + m)
    a = 0.5 * (rows[:, :n] + rows[:, :n].T)
    if m == 0:
        return a, np.zeros((0, n)), 0.0, 0
    b = rows[:, n:]

    def latent_block(p: np.ndarray) -> np.ndarray:  # C P for the n columns of P, (m, n)
        vs = np.concatenate([np.zeros((n, n)), p.T], axis=1)
        return np.asarray(hvps(jnp.asarray(vs), z, data))[:, n:].T

    gain, res, its = _conjugate_gradients(latent_block, b.T)
    schur = a - b @ gain
    return 0.5 * (schur + schur.T), gain, res, its


def _conjugate_gradients(
    matvec: Callable[[np.ndarray], np.ndarray], rhs: np.ndarray, max_iter: int = 100
) -> tuple[np.ndarray, float, int]:
    """Solve ``C X = rhs`` column by column by conjugate gradients (``C`` symmetric positive
    definite, given by `matvec` on all columns at once); stop when every column's squared
    residual is below 1e-12 of its right-hand side's (relative residual 1e-6) or after
    `max_iter` iterations.

    Returns:
        ``(X, residual, iterations)``: the solution, the largest relative residual (the CG
        recursion's; an extra product would cost one more iteration) and the iterations.
    """
    x = np.zeros_like(rhs)
    r = rhs.copy()
    p = r.copy()
    rr = np.sum(r * r, axis=0)
    tol = 1e-12 * np.sum(rhs * rhs, axis=0)
    k = 0
    while k < max_iter and np.any(rr > tol):
        q = matvec(p)
        pq = np.sum(p * q, axis=0)
        # a column already solved exactly (zero residual) stays put instead of turning NaN
        alpha = np.divide(rr, pq, out=np.zeros_like(rr), where=pq != 0)
        x = x + alpha * p
        r = r - alpha * q
        rr_new = np.sum(r * r, axis=0)
        p = r + np.divide(rr_new, rr, out=np.zeros_like(rr), where=rr != 0) * p
        rr = rr_new
        k += 1
    norm = np.linalg.norm(rhs, axis=0)
    rel = np.divide(np.linalg.norm(r, axis=0), norm, out=np.zeros_like(norm), where=norm > 0)
    return x, float(np.max(rel, initial=0.0)), k


def calibrate(
    setup: Setup,
    *,
    n_draws: int = 200,
    seed: int = 0,
    max_iter: int | None = None,
    gtol: float = 1e-3,
    progress: Progress | None = None,
    method: str = "laplace",
    chains: int = 2,
    warmup: int = 300,
) -> SpatialPosterior:
    """MAP by L-BFGS through the solver, then a Laplace posterior, optionally refined by NUTS.

    Args:
        setup: from :func:`prepare`.
        n_draws: posterior draws to keep (with NUTS: all chains together).
        seed: seed of the draws.
        max_iter: L-BFGS iterations at most, both stages together (default 100; 300 with a
            proliferation field, whose modes add as many unknowns).
        gtol: stop when the gradient's max-norm (unconstrained scale) falls below this.
        progress: ``start(label, total) -> advance(n)`` callback.
        method: "laplace" (the Gaussian at the joint mode) or "nuts": NUTS over the parameters
            and the latent initial map jointly, in coordinates whitened by the Laplace fit
            (see :func:`_sample_nuts`). NUTS samples the marginal posterior of the parameters,
            which the joint mode misses when the latent map has many voxels (the joint mode puts
            D low; the marginal, on the 2D phantoms, above the truth: docs/spatial.md, Limits);
            it costs ``chains x (warmup + n_draws / chains)`` trajectories of gradients.
        chains, warmup: NUTS chains (run on a thread per core) and warm-up iterations.

    Returns:
        The :class:`SpatialPosterior` (with a :class:`ConvergenceWarning` if L-BFGS did not
        converge, the Hessian was not positive definite, or NUTS failed its diagnostics).

    Raises:
        ModelError: unknown method, or fewer than 1 chain or draw.
        CalibrationError: the objective is not finite at the start or at the optimum.
    """
    import optax

    if method not in METHODS:
        raise ModelError(f"unknown spatial calibration method {method!r}; use {METHODS_TEXT}")
    if chains < 1 or n_draws < chains:
        raise ModelError(f"need at least one draw per chain (chains {chains}, draws {n_draws})")
    prob = _Problem(setup)
    if max_iter is None:
        max_iter = 300 if prob.n_field else 100
    if "D" not in setup.free:
        sp.check_stability(prob.op, setup.fixed["D"], setup.dt)
    start = progress or _no_progress
    data = prob.data
    n, m = prob.n, prob.n_latent
    z = jnp.asarray(np.concatenate([prob.prior_mu, np.zeros(m)]))
    f0 = float(jax.jit(prob.neg_log_post)(z, data))
    if not math.isfinite(f0):
        raise CalibrationError(f"objective not finite at the prior median ({f0})")
    opt = optax.lbfgs()

    def objective(w: Any, data: Any, shift: Any, scale: Any, on: Any) -> Any:
        # parameters = shift + scale @ w[:n]; latent offsets switched on (1) or off (0)
        return prob.neg_log_post(jnp.concatenate([shift + scale @ w[:n], on * w[n:]]), data)

    @jax.jit
    def step(w: Any, state: Any, data: Any, shift: Any, scale: Any, on: Any) -> Any:
        fun = partial(objective, data=data, shift=shift, scale=scale, on=on)
        value, grad = optax.value_and_grad_from_state(fun)(w, state=state)
        updates, state = opt.update(grad, state, w, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(w, updates), state, value, grad

    hvps = _hvp_batch(prob)
    hvp_rows = _hvp_rows(prob, hvps)
    advance = start("calibrate (L-BFGS)", max_iter)
    gnorm, iterations, value = np.inf, 0, f0
    shift, scale = jnp.asarray(prob.prior_mu), jnp.eye(n)
    # stage 1: parameters only (initial map as observed); stage 2 (latent initial map): all,
    # with the parameters whitened by stage 1's Hessian, so that L-BFGS sees a well-conditioned
    # problem (latent offsets have unit prior curvature, the parameters thousands). With a
    # proliferation field, a stage 0 first fits the scalars with the field at 0 (its columns of
    # `scale` zeroed): from the prior median the field's modes and the scalars are badly scaled
    # against each other and L-BFGS alone crawled (300 iterations without converging)
    stages = (1, 2) if m else (1,)
    if prob.n_field:
        stages = (0, *stages)
        keep = np.ones(n)
        keep[prob.i_field : prob.i_field + prob.n_field] = 0.0
        scale = jnp.diag(jnp.asarray(keep))
    for stage in stages:
        on = jnp.asarray(float(stage == 2))
        w = jnp.zeros(n + m)
        # strongly typed like the states that `step` returns: optax's initial state has weakly
        # typed scalars, which made XLA compile `step` a second time (10 s cold)
        state = jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.result_type(x)), opt.init(w))
        while iterations < max_iter:
            w, state, value, grad = step(w, state, data, shift, scale, on)
            iterations += 1
            gnorm = float(jnp.max(jnp.abs(grad)))
            advance(1)
            if gnorm < gtol:
                break
        z = jnp.concatenate([shift + scale @ w[:n], on * w[n:]])
        if stage != stages[-1]:
            a = np.asarray(hvp_rows(z, data))[:, :n]
            ev, evec = np.linalg.eigh(0.5 * (a + a.T))
            floor = float(np.min(1.0 / prob.prior_sd**2))
            shift, scale = z[:n], jnp.asarray(evec / np.sqrt(np.maximum(ev, floor)))
            gnorm = np.inf
    value = float(prob.neg_log_post(z, data))
    adv = start("Laplace (Hessian)", 1)
    hess, gain, cg_res, cg_its = _marginal_hessian(prob, z, data, hvps)
    adv(1)
    eig, vec = np.linalg.eigh(hess)
    pd = bool(np.all(eig > 0))
    # a non-positive-definite Hessian gets its bad directions floored at the prior curvature
    floor = float(np.min(1.0 / prob.prior_sd**2))
    cov = (vec / np.maximum(eig, floor)) @ vec.T
    z_map = np.asarray(z)[: prob.n]
    rng = np.random.default_rng(seed)
    zs = rng.multivariate_normal(z_map, cov, size=n_draws, method="cholesky")
    converged = gnorm < gtol and pd and cg_res < 1e-5
    names = (*setup.free, "sigma", "tail_ratio")
    n_named = len(names)
    post = SpatialPosterior(
        setup, names, z_map, cov, np.exp(zs[:, :n_named]), seed, converged,
        {"iterations": iterations, "grad_max": gnorm, "neg_log_post": value,
         "hessian_eigenvalues": eig.tolist(), "optimizer": "optax.lbfgs (zoom line search)",
         "latent_voxels": prob.n_latent, "cg_relative_residual": cg_res,
         "cg_iterations": cg_its, "proliferation": setup.proliferation,
         "field_modes": prob.n_field},
        latent_map=np.asarray(z)[prob.n :], latent_gain=gain, field_draws=zs[:, n_named:],
    )  # fmt: skip
    if not converged:
        warnings.warn(
            f"spatial calibration did not converge (|grad| = {gnorm:.2g}, Hessian positive "
            f"definite: {pd}, CG residual {cg_res:.1g}); intervals are unreliable",
            ConvergenceWarning, stacklevel=2,
        )  # fmt: skip
    if method == "nuts":
        post = _sample_nuts(prob, post, chains, warmup, -(-n_draws // chains), seed, start)
    return post


def _sample_nuts(
    prob: _Problem, laplace: SpatialPosterior, chains: int, warmup: int, draws: int, seed: int,
    progress: Progress,
) -> SpatialPosterior:  # fmt: skip
    """NUTS over parameters and latent offsets, started from the Laplace posterior.

    Coordinates ``w``: parameters ``z = z_map + L w_p`` (``L L^T`` the Laplace covariance) and
    latent offsets ``eta = latent_map - K (z - z_map) + w_l`` (``K`` the Laplace gain), so the
    sampler sees roughly unit scales and no linear coupling. The map is linear: its Jacobian is
    constant and the target density is unchanged. Each chain is one jitted ``lax.scan`` of
    NumPyro's NUTS kernel (diagonal metric adapted in warm-up), started near the mode; the
    chains run on a thread per core (:mod:`oncotwin.inference.threads`).
    """
    from numpyro.infer.hmc import hmc

    from .posterior import Diagnostics
    from .threads import map_in_threads

    n, n_named = prob.n, len(laplace.names)
    args = (
        prob.data, jnp.asarray(laplace.z_map), jnp.asarray(np.linalg.cholesky(laplace.cov)),
        jnp.asarray(laplace.latent_map), jnp.asarray(laplace.latent_gain),
    )  # fmt: skip

    def to_z(w: Any, shift: Any, chol: Any, latent: Any, gain: Any) -> Any:
        dz = chol @ w[:n]
        return jnp.concatenate([shift + dz, latent - gain @ dz + w[n:]])

    def potential_gen(data: Any, *whiten: Any) -> Callable[[Any], Any]:
        return lambda w: prob.neg_log_post(to_z(w, *whiten), data)

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_gen, algo="NUTS")

    @jax.jit
    def chain(key: Any, args: Any) -> tuple[Any, Any, Any]:
        k_start, k_run = jax.random.split(key)
        start = 0.1 * jax.random.normal(k_start, (n + prob.n_latent,))
        state = init_kernel(start, num_warmup=warmup, model_args=args, rng_key=k_run)

        def step(state: Any, _: Any) -> tuple[Any, tuple[Any, Any, Any]]:
            state = sample_kernel(state, model_args=args)
            return state, (state.z, state.diverging, state.num_steps)

        _, (ws, diverging, steps) = jax.lax.scan(step, state, None, length=warmup + draws)
        return jax.vmap(lambda w: to_z(w, *args[1:]))(ws[warmup:]), diverging[warmup:], steps

    advance = progress(f"NUTS ({chains} chains x {warmup} + {draws})", chains)

    def run(key: Any) -> tuple[np.ndarray, ...]:
        out = tuple(np.asarray(v) for v in jax.device_get(chain(key, args)))
        advance(1)
        return out

    keys = list(jax.random.split(jax.random.PRNGKey(seed), chains))
    zs, diverging, steps = (np.stack(v) for v in zip(*map_in_threads(run, keys), strict=True))
    diag = Diagnostics.from_chains(zs[..., :n], int(diverging.sum()))
    interleaved = np.swapaxes(zs, 0, 1).reshape(chains * draws, -1)  # draw i from chain i % c
    diagnostics = dict(laplace.diagnostics, nuts=diag.to_dict(), nuts_warmup=warmup,
                       nuts_mean_steps=float(steps[:, warmup:].mean()))  # fmt: skip
    post = dataclasses.replace(
        laplace, draws=np.exp(interleaved[:, :n_named]), field_draws=interleaved[:, n_named:n],
        latent_draws=interleaved[:, n:], method="nuts", diagnostics=diagnostics,
        converged=laplace.converged and diag.ok,
    )  # fmt: skip
    if not diag.ok:
        warnings.warn(
            "spatial NUTS did not converge: " + "; ".join(diag.problems()),
            ConvergenceWarning, stacklevel=3,
        )  # fmt: skip
    return post


# --------------------------------------------------------------------------- forecasts


@dataclass
class SpatialForecast:
    """Forecast of a spatial twin under one plan.

    Attributes:
        plan: RT plan name.
        days: days (since the first visit) of each entry of ``total_cells``.
        total_cells: quantiles (0.05, 0.5, 0.95) of the total tumour cell count, ``(3, n)``.
        map_days: days of the saved maps.
        median_map, lower_map, upper_map, sd_map: per-voxel 5/50/95% quantiles and sd of the
            normalised cellularity at each map day, ``(n_maps,) + grid``.
        detection: segmentation level used for predicted ROIs.
        level: interval level.
        seed: seed of the posterior draws used.
        converged: the posterior's convergence flag.
    """

    plan: str
    days: np.ndarray
    total_cells: np.ndarray
    map_days: list[float]
    median_map: np.ndarray
    lower_map: np.ndarray
    upper_map: np.ndarray
    sd_map: np.ndarray
    detection: float
    level: float
    seed: int
    converged: bool

    def total_at(self, day: float) -> tuple[float, float, float]:
        """(median, lower, upper) of the total cell count on `day`."""
        i = int(np.argmin(np.abs(self.days - day)))
        q = self.total_cells[:, i]
        return float(q[1]), float(q[0]), float(q[2])


def forecast(
    post: SpatialPosterior,
    days: Sequence[float],
    *,
    plan: str | None = None,
    n_draws: int | None = None,
    chunk: int = 25,
    progress: Progress | None = None,
) -> SpatialForecast:
    """Simulate posterior draws from the initial visit to `days` under RT plan `plan`.

    Args:
        post: the posterior.
        days: days (since the first visit) at which to keep maps; the run ends at the last.
        plan: RT plan name (default: the delivered plan).
        n_draws: number of posterior draws to use (default all).
        chunk: draws simulated together (vmap), to bound memory.
        progress: ``start(label, total) -> advance(n)`` callback.

    Returns:
        The :class:`SpatialForecast`; its intervals are posterior-predictive for the model
        state (noise-free cellularity).
    """
    setup = post.setup
    pt = setup.patient
    plan = plan or pt.delivered
    if plan not in pt.plans:
        raise ModelError(f"unknown RT plan {plan!r}; patient has {sorted(pt.plans)}")
    days = sorted(float(d) for d in days)
    if not days or days[0] < setup.t0:
        raise ModelError(f"forecast days {days} must lie after the initial visit (day {setup.t0})")
    prob = _Problem(setup)
    forcing = plan_forcing(pt, plan, setup.t0, days[-1], setup.dt)
    data = dict(prob.data, dose=jnp.asarray(np.where(pt.mask, pt.plans[plan].dose_map, 0.0)),
                rt=jnp.asarray(forcing.rt_dose), ex=jnp.asarray(forcing.exposure))  # fmt: skip
    saves = [int(round((d - setup.t0) / setup.dt)) for d in days]
    zs = post.draw_vectors(n_draws)
    run = jax.jit(jax.vmap(lambda z, data: prob.run(z, data, saves, False), in_axes=(0, None)))
    advance = (progress or _no_progress)(f"forecast ({plan})", len(zs))
    maps, totals = [], []
    for i in range(0, len(zs), chunk):
        block = zs[i : i + chunk]
        pad = chunk - len(block)
        if pad:  # keep one compiled shape
            block = np.concatenate([block, np.repeat(block[-1:], pad, axis=0)])
        m, t = run(jnp.asarray(block), data)
        maps.append(np.asarray(m)[: chunk - pad])
        totals.append(np.asarray(t)[: chunk - pad])
        advance(chunk - pad)
    all_maps = np.concatenate(maps)
    init = jax.jit(jax.vmap(lambda z, data: jnp.sum(prob.initial(z, data)), in_axes=(0, None)))
    u0_tot = np.asarray(init(jnp.asarray(zs), data))
    tot = np.concatenate(totals) * pt.carrying_capacity
    tot = np.concatenate([u0_tot[:, None] * pt.carrying_capacity, tot], axis=1)
    q = (0.5 - LEVEL / 2, 0.5, 0.5 + LEVEL / 2)
    return SpatialForecast(
        plan=plan,
        days=setup.t0 + setup.dt * np.arange(tot.shape[1]),
        total_cells=np.quantile(tot, q, axis=0),
        map_days=days,
        median_map=np.quantile(all_maps, 0.5, axis=0),
        lower_map=np.quantile(all_maps, q[0], axis=0),
        upper_map=np.quantile(all_maps, q[2], axis=0),
        sd_map=all_maps.std(axis=0),
        detection=setup.detection,
        level=LEVEL,
        seed=post.seed,
        converged=post.converged,
    )


def dice(a: Any, b: Any) -> float:
    """Dice similarity coefficient of two boolean masks (1 when both are empty)."""
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    s = x.sum() + y.sum()
    return 1.0 if s == 0 else float(2.0 * np.logical_and(x, y).sum() / s)


def concordance(x: Any, y: Any) -> float:
    """Lin's concordance correlation coefficient of two samples (Lin 1989)."""
    a, b = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    va, vb = a.var(), b.var()
    cov = ((a - a.mean()) * (b - b.mean())).mean()
    den = va + vb + (a.mean() - b.mean()) ** 2
    return float(2 * cov / den) if den > 0 else 1.0


def compare_visits(
    fc: SpatialForecast, post: SpatialPosterior, visits: Sequence[int]
) -> list[dict[str, Any]]:
    """Forecast vs observed visits: total cells (median, interval, observed), Dice, CCC.

    The observed total is the cell count inside the ROI; the forecast's comparable figure is the
    median map summed over voxels above the detection level. Truth totals are added for
    synthetic patients.

    Args:
        fc: a forecast whose ``map_days`` include the visits' days.
        post: its posterior.
        visits: visit indices.
    """
    pt = post.setup.patient
    truth = pt.truth.get("total_cells")
    rows = []
    for k in visits:
        v = pt.visits[k]
        if not any(abs(d - v.day) < 1e-9 for d in fc.map_days):
            raise ModelError(f"forecast has no map on day {v.day} (visit {k})")
        j = [abs(d - v.day) < 1e-9 for d in fc.map_days].index(True)
        med, lo, hi = fc.total_at(v.day)
        pred_roi = (fc.median_map[j] > fc.detection) & pt.mask
        row = {
            "visit": k, "day": v.day,
            "total_median": med, "total_lower": lo, "total_upper": hi,
            "observed_roi_cells": pt.cell_count(np.where(v.roi, v.cellularity, 0.0)),
            "predicted_roi_cells": pt.cell_count(np.where(pred_roi, fc.median_map[j], 0.0)),
            "dice": dice(pred_roi, v.roi),
            "ccc": concordance(fc.median_map[j][pt.mask], v.cellularity[pt.mask]),
        }  # fmt: skip
        if truth is not None and k < len(truth):
            row["true_total"] = float(truth[k])
        rows.append(row)
    return rows
