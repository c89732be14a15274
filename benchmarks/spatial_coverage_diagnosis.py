"""Why the spatial 90% intervals under-cover: experiments on the 2D phantoms of the coverage check.

The coverage check (``benchmarks/spatial.py --coverage 12``) calibrates D, rho and alpha on 12
noisy 2D phantoms (seeds 3-14, 36 x 40 voxels of 2.5 mm, noise sd 0.03, ROI above 0.05, visits
0-2, k_chemo fixed). Here each fit is summarised by ``z = (log truth - log MAP) / sd`` per
parameter (sd from the Laplace covariance): a calibrated method gives z of mean 0 and root mean
square 1 (90% inside +-1.645). Experiments (``--variant``), each changing one piece of the
statistical model for diagnosis only (they patch the calibration's internal problem class):

- ``model``: the shipped method, as the coverage check;
- ``oracle-tail``: the initial map outside the first ROI is the phantom's true map instead of
  the modelled exponential tail (the first ROI itself stays latent): isolates the tail model;
- ``front-tail``: the tail outside the first ROI has the developed Fisher front's shape
  ``c (1 + d/l) exp(-d/l)`` instead of ``c exp(-d/l)`` (same ``l``, same prior on its ratio);
- ``free-tail-length``: the tail's length is a parameter of its own, no longer
  ``tail_ratio * sqrt(D / rho)``: log-normal around the prior medians' front length
  ``sqrt(D0 / rho0)``, log-sd 1 (so the tail cannot inform D);
- ``smooth-latent``: the latent first map inside the ROI gets a smoothness prior (neighbouring
  voxels differ by ``N(0, SMOOTH_EDGE_SD^2)``) instead of the flat one: tests whether the flat
  prior's volume, larger for larger D (diffusion forgets the map's fine detail), lifts D in the
  marginal;
- ``smooth-latent-learned``: the same prior with its sd estimated (a hierarchical prior:
  log-normal hyperprior, ``SMOOTH_GRADIENT_PRIOR`` per mm of spacing; the intrinsic GMRF's
  normaliser ``rank * log sd``, ``rank`` = ROI voxels minus connected components);
- ``censoring-sigma-fixed``: the censored terms outside the ROIs, ``Phi((c - u) / sigma)``, do
  not inform sigma (``stop_gradient``): isolates their pull on the noise level (the phantom's
  segmentation is noise-free, so thousands of far-away voxels, each "surely below c", argue for
  a smaller sigma).

``--method nuts`` samples each variant's posterior exactly (2 chains x (300 warm-up + 300
draws), as ``benchmarks/spatial.py --method nuts``) instead of the Laplace fit at the joint
mode; ``z`` is then the probit of the truth's quantile among the draws (the same 90% test).

``--marginal-profile SEED`` probes the joint-mode bias. The MAP is joint over the parameters and
the latent initial map; the Laplace marginal of the parameters adds ``0.5 log det C`` (``C``
the latent block of the Hessian, formed here densely from Hessian-vector products), which the
joint mode ignores. The script takes the Newton direction of that term from the joint mode
(central differences along each parameter, the latent map moved by its Laplace gain) and prints
the objective change ``df`` (latent map moved linearly, an upper bound on its profile) and
``dLD`` along it, with D's z at each point.

Usage: python benchmarks/spatial_coverage_diagnosis.py --variant model [--seeds 12]
           [--first-seed 3] [--method laplace|nuts]
       python benchmarks/spatial_coverage_diagnosis.py --marginal-profile 4
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import warnings
from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

import oncotwin._jax  # noqa: F401  (float64, compile cache)
from oncotwin._jax import jax, jnp
from oncotwin.data.imaging import load_manifest
from oncotwin.data.phantom import make_phantom, write_phantom
from oncotwin.inference import spatial as isp

NAMES = ("D", "rho", "alpha")
VARIANTS = ("model", "oracle-tail", "front-tail", "free-tail-length", "smooth-latent",
            "smooth-latent-learned", "censoring-sigma-fixed")  # fmt: skip
# smooth-latent: sd of the difference between neighbouring voxels of the initial map (the
# phantoms' true first maps: rms 0.094-0.098 inside the ROI, seeds 3-5)
SMOOTH_EDGE_SD = 0.1
# smooth-latent-learned: log-normal prior of that sd per mm of spacing (median, log-sd): a
# generic front falling from 1 to 0 over about 20 mm, not read off the phantoms
SMOOTH_GRADIENT_PRIOR = (0.05, 1.0)


def phantom_setup(seed: int) -> tuple[Any, Any]:
    """The coverage check's phantom `seed` and its calibration setup."""
    ph = make_phantom((36, 40), (2.5, 2.5), seed=seed, noise=0.03, detection=0.05)
    with tempfile.TemporaryDirectory() as tmp:
        patient = load_manifest(write_phantom(tmp, ph))
    setup = isp.prepare(patient, calibration_visits=[0, 1, 2], fixed={"k_chemo": 0.01},
                        detection=0.05, crop_margin_mm=None)  # fmt: skip
    return ph, setup


def variant_problem(variant: str, ph: Any) -> type:
    """The calibration's problem class with one piece changed (see the module docstring)."""

    class Oracle(isp._Problem):
        def initial(self, z: Any, data: Any) -> Any:
            u = super().initial(z, data)
            return jnp.where(data["roi0"], u, jnp.where(data["mask"], ph.truth_maps[0], 0.0))

    class FrontTail(isp._Problem):
        def tail(self, z: Any, data: Any) -> Any:
            p = self.params(z)
            x = data["dist"] / (jnp.exp(z[self.i_tail]) * jnp.sqrt(p["D"] / p["rho"]))
            return data["detection"] * (1.0 + x) * jnp.exp(-x)

    class FreeTailLength(isp._Problem):
        def __init__(self, setup: Any) -> None:
            super().__init__(setup)
            # the tail's length is its own parameter: log-normal around the prior medians' front
            # length, log-sd 1, and no longer depends on D or rho
            self.ell0 = math.sqrt(isp.sp.param_spec("D").prior_median
                                  / isp.sp.param_spec("rho").prior_median)  # fmt: skip
            sd = np.asarray(self.data["prior_sd"]).copy()
            sd[self.i_tail] = 1.0
            self.data["prior_sd"] = jnp.asarray(sd)
            self.prior_sd = sd

        def tail(self, z: Any, data: Any) -> Any:
            return data["detection"] * jnp.exp(
                -data["dist"] / (jnp.exp(z[self.i_tail]) * self.ell0)
            )

    class SmoothLatent(isp._Problem):
        def __init__(self, setup: Any) -> None:
            super().__init__(setup)
            # neighbour pairs inside the first ROI, flat indices of the grid
            inside = np.zeros(setup.patient.mask.size, bool)
            inside[self.latent_idx] = True
            inside = inside.reshape(setup.patient.mask.shape)
            flat = np.arange(inside.size).reshape(inside.shape)
            pairs = []
            for ax in range(inside.ndim):
                lo = [slice(None)] * inside.ndim
                hi = [slice(None)] * inside.ndim
                lo[ax], hi[ax] = slice(0, -1), slice(1, None)
                both = inside[tuple(lo)] & inside[tuple(hi)]
                pairs.append(np.stack([flat[tuple(lo)][both], flat[tuple(hi)][both]]))
            self.edges = jnp.asarray(np.concatenate(pairs, axis=1))

        def neg_log_post(self, z: Any, data: Any) -> Any:
            u = self.initial(z, data).reshape(-1)
            diff = u[self.edges[0]] - u[self.edges[1]]
            return super().neg_log_post(z, data) + 0.5 * jnp.sum((diff / SMOOTH_EDGE_SD) ** 2)

    class SmoothLatentLearned(SmoothLatent):
        def __init__(self, setup: Any) -> None:
            super().__init__(setup)
            # one more parameter after the tail: log of the neighbour-difference sd, log-normal
            # around SMOOTH_GRADIENT_PRIOR[0] per mm times the mean spacing (the scalar problem
            # has no field modes, so calibrate() carries it where their columns would be)
            median = SMOOTH_GRADIENT_PRIOR[0] * float(np.mean(setup.patient.spacing))
            self.i_smooth = self.n
            self.n += 1
            for key, value in (("prior_mu", math.log(median)),
                               ("prior_sd", SMOOTH_GRADIENT_PRIOR[1])):  # fmt: skip
                extended = np.append(getattr(self, key), value)
                setattr(self, key, extended)
                self.data[key] = jnp.asarray(extended)
            # rank of the ROI graph's Laplacian: voxels minus connected components
            edges = np.asarray(self.edges)
            graph = scipy.sparse.coo_matrix(
                (np.ones(edges.shape[1]), (edges[0], edges[1])),
                shape=(setup.patient.mask.size,) * 2,
            )  # fmt: skip
            _, labels = scipy.sparse.csgraph.connected_components(graph, directed=False)
            self.rank = self.n_latent - len(np.unique(labels[self.latent_idx]))

        def neg_log_post(self, z: Any, data: Any) -> Any:
            u = self.initial(z, data).reshape(-1)
            diff = u[self.edges[0]] - u[self.edges[1]]
            log_s = z[self.i_smooth]
            smooth = 0.5 * jnp.sum(diff**2) * jnp.exp(-2 * log_s) + self.rank * log_s
            return super(SmoothLatent, self).neg_log_post(z, data) + smooth  # the model's

    class CensoringSigmaFixed(isp._Problem):
        def neg_log_post(self, z: Any, data: Any) -> Any:
            maps, _ = self.run(z, data, self.saves)
            sigma = jnp.exp(z[self.i_sigma])
            r = (data["obs"] - maps) / sigma
            gauss = jnp.sum(jnp.where(data["in_roi"], -0.5 * r * r - jnp.log(sigma), 0.0))
            scale = jax.lax.stop_gradient(sigma)
            below = jax.scipy.special.log_ndtr((data["detection"] - maps) / scale)
            cens = jnp.sum(jnp.where(data["censored"], below, 0.0))
            prior = -0.5 * jnp.sum(((z[: self.n] - data["prior_mu"]) / data["prior_sd"]) ** 2)
            return -(gauss + cens + prior - 0.5 * jnp.sum(z[self.n :] ** 2))

    return {"model": isp._Problem, "oracle-tail": Oracle, "front-tail": FrontTail,
            "free-tail-length": FreeTailLength, "smooth-latent": SmoothLatent,
            "smooth-latent-learned": SmoothLatentLearned,
            "censoring-sigma-fixed": CensoringSigmaFixed}[variant]  # fmt: skip


def calibrated(setup: Any, seed: int, problem: type, method: str = "laplace") -> Any:
    shipped = isp._Problem
    isp._Problem = problem  # calibrate() builds its problem from this name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # NUTS: 2 chains x (300 warm-up + 300 draws), as benchmarks/spatial.py --method nuts
            return isp.calibrate(setup, n_draws=600 if method == "nuts" else 10, seed=seed,
                                 method=method)  # fmt: skip
    finally:
        isp._Problem = shipped


def z_scores(post: Any, truth: dict[str, float]) -> list[float]:
    """Laplace: from the mode and sd. NUTS: from the draws' median and the probit of the
    truth's quantile among the draws (the same 90% test, |z| < 1.645, without normality)."""
    if post.method == "nuts":
        draws = post.unconstrained_draws()
        q = [(np.sum(draws[:, i] < math.log(truth[n])) + 0.5) / (len(draws) + 1)
             for i, n in enumerate(NAMES)]  # fmt: skip
        return [float(jax.scipy.stats.norm.ppf(v)) for v in q]
    return [(math.log(truth[n]) - post.z_map[i]) / math.sqrt(post.cov[i, i])
            for i, n in enumerate(NAMES)]  # fmt: skip


def coverage(variant: str, seeds: range, method: str) -> None:
    zs: list[list[float]] = []
    t0 = time.perf_counter()
    print(f"variant {variant!r}, method {method}, seeds {seeds.start}..{seeds.stop - 1}")
    for seed in seeds:
        ph, setup = phantom_setup(seed)
        post = calibrated(setup, seed, variant_problem(variant, ph), method)
        zs.append(z_scores(post, ph.params))
        print(f"  seed {seed:2d}: " + " ".join(f"{n} z {z:+.2f}" for n, z in zip(NAMES, zs[-1], strict=True))
              + f" | sigma {post.map['sigma']:.4f} (truth 0.03), tail ratio "
              f"{post.map['tail_ratio']:.2f}" + "".join(  # a variant's own parameters
                  f", extra {math.exp(v):.4f}" for v in post.z_map[len(post.names):]),
              flush=True)  # fmt: skip
    z = np.asarray(zs)
    print(f"{variant} ({time.perf_counter() - t0:.0f} s): " + ", ".join(
        f"{n} in 90% {int(np.sum(np.abs(z[:, i]) < 1.645))}/{len(z)}, mean z {z[:, i].mean():+.2f},"
        f" rms z {math.sqrt(np.mean(z[:, i] ** 2)):.2f}" for i, n in enumerate(NAMES)))  # fmt: skip


def marginal_profile(seed: int, fd_step: float = 0.05) -> None:
    ph, setup = phantom_setup(seed)
    post = calibrated(setup, seed, isp._Problem)
    prob = isp._Problem(setup)
    hvps = isp._hvp_batch(prob)
    n, m = prob.n, prob.n_latent
    z0 = jnp.asarray(np.concatenate([post.z_map, post.latent_map]))

    def half_logdet(z: Any) -> float:  # 0.5 log det of the latent block, n columns at a time
        cols = []
        for a in range(0, m, n):
            k = min(n, m - a)
            v = np.zeros((n, n + m))
            v[np.arange(k), n + a + np.arange(k)] = 1.0
            cols.append(np.asarray(hvps(jnp.asarray(v), z, prob.data))[:k, n:])
        c = np.concatenate(cols)
        sign, logdet = np.linalg.slogdet(0.5 * (c + c.T))
        assert sign > 0, "latent block not positive definite"
        return 0.5 * logdet

    grad = np.zeros(n)
    for j in range(n):
        d = np.concatenate([np.eye(n)[j], -post.latent_gain[:, j]])
        h = fd_step * math.sqrt(post.cov[j, j])
        grad[j] = (half_logdet(z0 + h * d) - half_logdet(z0 - h * d)) / (2 * h)
    step = -post.cov @ grad
    direction = np.concatenate([step, -post.latent_gain @ step])
    f = jax.jit(prob.neg_log_post)
    f0, ld0 = float(f(z0, prob.data)), half_logdet(z0)
    sd_d = math.sqrt(post.cov[0, 0])
    log_d = math.log(ph.params["D"])
    print(f"seed {seed}: {m} latent voxels; joint mode D z {(log_d - post.z_map[0]) / sd_d:+.2f}; "
          f"one Newton step on the marginal would move D z to "
          f"{(log_d - post.z_map[0] - step[0]) / sd_d:+.2f}")  # fmt: skip
    for t in (0.1, 0.2, 0.3, 0.4, 0.6, 1.0):
        zt = z0 + t * direction
        df, dld = float(f(zt, prob.data)) - f0, half_logdet(zt) - ld0
        print(f"  t {t:.1f}: D z {(log_d - float(zt[0])) / sd_d:+.2f}  df {df:+8.3f}  "
              f"dLD {dld:+8.3f}  sum {df + dld:+8.3f}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", default="model",
                        choices=VARIANTS)  # fmt: skip
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--first-seed", type=int, default=3)
    parser.add_argument("--method", default="laplace", choices=isp.METHODS)
    parser.add_argument("--marginal-profile", type=int, default=None, metavar="SEED")
    args = parser.parse_args()
    if args.marginal_profile is not None:
        marginal_profile(args.marginal_profile)
    else:
        coverage(args.variant, range(args.first_seed, args.first_seed + args.seeds), args.method)


if __name__ == "__main__":
    main()
