"""Speed and memory of the spatial (reaction-diffusion) twin, with a NumPy baseline in the same run.

Measured:
- 3D forward solve, 90 x 116 x 36 voxels (2 x 2 x 4 mm), 270 days = 540 RK4 steps of 0.5 d,
  30 RT fractions (2 Gy, Stupp schedule) and daily temozolomide-like exposure: warm time
  (median of repeats) and peak memory            target <= 5 s, <= 1 GB
- gradient of a scalar loss of the final state w.r.t. (D, rho, alpha), reverse mode through the
  scan with one stored state per step: warm time  target <= 3x forward; with the hand-written
  adjoint of the RK4 step (``simulate(..., adjoint=True)``, the default) and, as the baseline in
  the same run, with autodiff of the checkpointed step (``adjoint=False``, the previous method)
- the same scheme in plain NumPy (same arrays, same float64 arithmetic): time of `--numpy-steps`
  steps, scaled to 540 (the scheme costs the same every step)
- calibration with uncertainty (L-BFGS MAP + Laplace + 100-draw forecast) on the shipped 3D
  phantom, first run in the process (compilation included unless the persistent compile cache
  already holds it; clear ONCOTWIN_JAX_CACHE for a truly cold figure)   target <= 2 min
- the open reference tool's stack (PyTorch, torchdiffeq RK4; quoted in issue 9 at about 15 s and
  2.3 GB forward, about 40 s for an adjoint gradient) is measured on this same problem by
  ``benchmarks/spatial_torch.py``, where torch is installed (it is not a project dependency).

Stability: with 2 x 2 x 4 mm voxels, explicit RK4 with dt = 0.5 d is stable for
D <= 2.785 / (dt * 4 * (1/4 + 1/4 + 1/16)) = 2.48 mm^2/day (white matter); the benchmark uses
D = 0.2 mm^2/day (glioma range 0.003-0.3; Rockne 2010), so dt * lambda_max = 0.22.

Coverage (``--coverage N``, instead of the speed figures): simulation-based check of the 90%
intervals of D, rho and alpha on N synthetic 2D patients (phantom seeds 3 .. N+2, 36 x 40 voxels
of 2.5 mm, image noise sd 0.03, ROI above 0.05, calibrated on visits 0-2 with k_chemo fixed):
per seed the MAP / truth and the interval, then the fraction of seeds whose interval holds the
truth (issue 9's criterion; a calibrated method gives about 0.9). ``--initial-state observed``
measures the previous method (first map taken as exact).

Proliferation field (``--field``, instead of the speed figures): one 2D phantom (36 x 40 voxels
of 2.5 mm, noise sd 0.03, ROI above 0.05) whose true proliferation rate varies across the tumour
(``rho(x) = 0.025 exp(0.7 tanh(x / 12 mm))``, x the offset from the seed along the first axis:
a factor 4 from one side to the other), calibrated on visits 0-2 (15 mm crop, k_chemo fixed)
with one rate (the baseline, same run) and with the field: calibration time (first run in the
process; compilation included unless the persistent cache holds it), Pearson r of log rho
(median vs truth) over the tumour voxels, the share of tumour voxels whose 90% interval covers
the true rate, and the held-out total cell counts (visits 3, 4) against the truth.

Full-resolution calibration (``--full-grid-calibration SEED``, instead of the speed figures): a 3D
phantom on the speed benchmark's grid (90 x 116 x 36 voxels of 2 x 2 x 4 mm, noise sd 0.03, ROI
above 0.05), calibrated on visits 0-2 (k_chemo fixed, default 30 mm crop) with MAP + Laplace and
a 100-draw forecast of visits 3-4: time (first run in the process), intervals against the truth,
held-out totals, Dice and concordance.

Usage: python benchmarks/spatial.py [--repeats 3] [--numpy-steps 20] [--skip-calibration]
       python benchmarks/spatial.py --coverage 12 [--initial-state latent|observed]
       python benchmarks/spatial.py --field [--field-seed 5]
       python benchmarks/spatial.py --full-grid-calibration 1
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
import warnings
from typing import Any

import numpy as np

import oncotwin._jax  # noqa: F401  (float64, compile cache)
from oncotwin._jax import jax, jnp
from oncotwin.inference import spatial as isp
from oncotwin.models import spatial as sp

SHAPE = (90, 116, 36)
SPACING = (2.0, 2.0, 4.0)
DT = 0.5
N_STEPS = 540
PARAMS = {"D": 0.2, "rho": 0.025, "alpha": 0.03, "alpha_beta": 10.0, "k_chemo": 0.02}
NUTS_DRAWS = 600  # --method nuts: 2 chains x (300 warm-up + 300 draws)


def geometry() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ellipsoidal brain with white-matter core, a spherical dose region and a tumour seed."""
    g = np.indices(SHAPE).astype(float)
    c = [(n - 1) / 2 for n in SHAPE]
    r = np.sqrt(sum(((g[i] - c[i]) / (0.46 * SHAPE[i])) ** 2 for i in range(3)))
    mask = r < 1.0
    white = np.clip((0.8 - r) / 0.1, 0.0, 1.0)
    diffusivity = np.where(mask, white + 0.1 * (1.0 - white), 0.0)
    site = (62.0, 58.0, 18.0)
    d2 = sum(((g[i] - site[i]) * SPACING[i]) ** 2 for i in range(3))
    u0 = np.where(mask, 0.8 * np.exp(-d2 / (2 * 6.0**2)), 0.0)
    dose = np.where(mask, np.exp(-0.5 * (np.clip(np.sqrt(d2) - 30.0, 0, None) / 8.0) ** 2), 0.0)
    return mask, diffusivity, u0, dose


def timed(fn: Any, repeats: int) -> float:
    """Median wall time of `fn()` over `repeats` calls, seconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def numpy_rk4(u: np.ndarray, op: sp.Operator, forcing: sp.Forcing, steps: int) -> np.ndarray:
    """The same scheme (finite-volume Laplacian, LQ kick, RK4) written directly in NumPy."""
    p = PARAMS
    cond = [np.asarray(c) for c in op.conductance]

    def lap(v: np.ndarray) -> np.ndarray:
        vp = np.pad(v, 1)
        out = np.zeros_like(v)
        for a, c in enumerate(cond):
            hi = [slice(1, -1)] * 3
            lo = [slice(1, -1)] * 3
            hi[a], lo[a] = slice(1, None), slice(0, -1)
            f = c * (vp[tuple(hi)] - vp[tuple(lo)])
            s1 = [slice(None)] * 3
            s0 = [slice(None)] * 3
            s1[a], s0[a] = slice(1, None), slice(0, -1)
            out += f[tuple(s1)] - f[tuple(s0)]
        return out

    def rhs(v: np.ndarray, e: float) -> np.ndarray:
        return p["D"] * lap(v) + p["rho"] * v * (1 - v) - p["k_chemo"] * e * v

    for n in range(steps):
        d = op.dose_map * forcing.rt_dose[n]
        u = u * np.exp(-(p["alpha"] * d + p["alpha"] / p["alpha_beta"] * d * d))
        e = forcing.exposure[n]
        k1 = rhs(u, e)
        k2 = rhs(u + 0.5 * DT * k1, e)
        k3 = rhs(u + 0.5 * DT * k2, e)
        k4 = rhs(u + DT * k3, e)
        u = u + DT / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return u


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_peak_mb() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def coverage(n_seeds: int, initial_state: str, method: str) -> None:
    """Print the 90% interval coverage of D, rho, alpha over `n_seeds` noisy 2D phantoms."""
    import tempfile

    from oncotwin.data.imaging import load_manifest
    from oncotwin.data.phantom import make_phantom, write_phantom
    from oncotwin.errors import ConvergenceWarning

    names = ("D", "rho", "alpha")
    hits = {n: 0 for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    print(f"coverage of 90% intervals, initial state {initial_state!r}, method {method!r}, "
          f"seeds 3..{n_seeds + 2}")  # fmt: skip
    t0 = time.perf_counter()
    for seed in range(3, n_seeds + 3):
        with tempfile.TemporaryDirectory() as tmp:
            ph = make_phantom((36, 40), (2.5, 2.5), seed=seed, noise=0.03, detection=0.05)
            patient = load_manifest(write_phantom(tmp, ph))
        setup = isp.prepare(patient, calibration_visits=[0, 1, 2], fixed={"k_chemo": 0.01},
                            detection=0.05, crop_margin_mm=None, initial_state=initial_state)  # fmt: skip
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            t = time.perf_counter()
            post = isp.calibrate(setup, n_draws=NUTS_DRAWS if method == "nuts" else 10,
                                 seed=seed, method=method)  # fmt: skip
            secs = time.perf_counter() - t
        truth = patient.truth["params"]
        cells = []
        for n in names:
            lo, hi = post.interval(n)
            inside = lo < truth[n] < hi
            hits[n] += inside
            ratios[n].append(post.median(n) / truth[n])
            cells.append(f"{n} {post.median(n) / truth[n]:.3f} [{lo / truth[n]:.3f}, "
                         f"{hi / truth[n]:.3f}] {'in' if inside else 'OUT'}")  # fmt: skip
        flag = "" if post.converged and not caught else " (not converged)"
        if method == "nuts":
            d = post.diagnostics["nuts"]
            flag += (f" | R-hat {d['rhat_max']:.3f}, bulk ESS {d['ess_bulk_min']:.0f}, "
                     f"{d['divergences']} divergent, {post.diagnostics['nuts_mean_steps']:.0f} "
                     "steps/draw")  # fmt: skip
        print(f"  seed {seed:2d} ({secs:.0f} s): " + " | ".join(cells) + flag, flush=True)
    print(f"coverage over {n_seeds} seeds ({time.perf_counter() - t0:.0f} s): " + ", ".join(
        f"{n} {hits[n]}/{n_seeds} = {hits[n] / n_seeds:.2f} (median of medians/truth "
        f"{statistics.median(ratios[n]):.3f})" for n in names))  # fmt: skip


def full_grid_calibration(seed: int, method: str) -> None:
    """Calibration with uncertainty on a 3D phantom at the speed benchmark's resolution."""
    import tempfile

    from oncotwin.data.imaging import load_manifest
    from oncotwin.data.phantom import make_phantom, write_phantom
    from oncotwin.errors import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)
    dev = jax.devices()[0]
    print(f"device: {dev.platform} ({dev.device_kind}); 3D phantom seed {seed}, grid {SHAPE}, "
          f"voxels {SPACING} mm, noise sd 0.03, ROI above 0.05, visits 0-2, k_chemo fixed")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        ph = make_phantom(SHAPE, SPACING, seed=seed, noise=0.03, detection=0.05)
        patient = load_manifest(write_phantom(tmp, ph))
    t = time.perf_counter()
    setup = isp.prepare(patient, calibration_visits=[0, 1, 2], fixed={"k_chemo": 0.01},
                        detection=0.05)  # fmt: skip
    post = isp.calibrate(setup, n_draws=NUTS_DRAWS if method == "nuts" else 100, seed=seed,
                         method=method)  # fmt: skip
    calibrated = time.perf_counter() - t
    fc = isp.forecast(post, [v.day for v in patient.visits[3:]], n_draws=100)
    total = time.perf_counter() - t
    print(f"calibration ({method}) + 100-draw forecast: {total:.1f} s, of which calibration "
          f"{calibrated:.1f} s (crop {setup.patient.mask.shape} = {setup.patient.mask.size} "
          f"voxels, {post.diagnostics['iterations']} L-BFGS iterations, converged "
          f"{post.converged}; first run in this process)")  # fmt: skip
    truth = patient.truth["params"]
    for row in post.summary():
        n = row["parameter"]
        if n in truth:
            inside = row["lower"] < truth[n] < row["upper"]
            print(f"  {n}: median {row['median']:.4g} (90% {row['lower']:.4g}-{row['upper']:.4g}); "
                  f"truth {truth[n]:.4g} {'inside' if inside else 'OUTSIDE'}")  # fmt: skip
    for row in isp.compare_visits(fc, post, [3, 4]):
        err = row["total_median"] / row["true_total"] - 1
        inside = row["total_lower"] < row["true_total"] < row["total_upper"]
        print(f"  day {row['day']:.0f}: total cells {err:+.1%} vs truth "
              f"({'inside' if inside else 'outside'} its 90% interval); Dice {row['dice']:.3f}, "
              f"CCC {row['ccc']:.3f}")  # fmt: skip


def rho_factor(offsets: tuple[np.ndarray, ...]) -> np.ndarray:
    """True proliferation factor of the field benchmark and test: x 0.5 to x 2 across the seed."""
    return np.exp(0.7 * np.tanh(offsets[0] / 12.0))


def field(seed: int) -> None:
    """Print calibration time and recovery of a proliferation field, scalar fit as baseline."""
    import tempfile

    from oncotwin.data.imaging import load_manifest
    from oncotwin.data.phantom import make_phantom, write_phantom
    from oncotwin.errors import ConvergenceWarning

    ph = make_phantom((36, 40), (2.5, 2.5), seed=seed, noise=0.03, detection=0.05,
                      rho_map=rho_factor)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        patient = load_manifest(write_phantom(tmp, ph))
    print(f"proliferation field benchmark: phantom seed {seed}, 36 x 40 voxels of 2.5 mm, "
          f"true rho {np.min(ph.rho_map[ph.mask]):.4f}-{np.max(ph.rho_map[ph.mask]):.4f} 1/day")  # fmt: skip
    for mode in ("scalar", "field"):
        setup = isp.prepare(patient, calibration_visits=[0, 1, 2], fixed={"k_chemo": 0.01},
                            detection=0.05, crop_margin_mm=15.0, proliferation=mode)  # fmt: skip
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            post = isp.calibrate(setup, n_draws=100, seed=seed)
        t_cal = time.perf_counter() - t
        fc = isp.forecast(post, [v.day for v in patient.visits[2:]])
        t_all = time.perf_counter() - t
        med, lo, hi = post.rho_field()
        truth = ph.rho_map[setup.box]
        tumour = patient.visits[2].roi[setup.box] & setup.patient.mask
        r = (np.corrcoef(np.log(med[tumour]), np.log(truth[tumour]))[0, 1]
             if np.ptp(med[tumour]) > 0 else float("nan"))  # fmt: skip
        cover = float(np.mean((lo[tumour] <= truth[tumour]) & (truth[tumour] <= hi[tumour])))
        err = float(np.median(np.abs(med[tumour] / truth[tumour] - 1)))
        print(f"  {mode:6s}: calibration {t_cal:.1f} s ({post.diagnostics['iterations']} L-BFGS "
              f"iterations, converged {post.converged and not caught}), + forecast {t_all:.1f} s; "
              f"D {post.map['D']:.3f} (truth 0.2), alpha {post.map['alpha']:.4f} (truth 0.02)")  # fmt: skip
        print(f"          tumour voxels {int(tumour.sum())} (visit 2 ROI): Pearson r of log rho "
              f"{r:.3f}, median |rho/truth - 1| {err:.3f}, 90% intervals cover the truth in "
              f"{cover:.2f} of voxels")  # fmt: skip
        for row in isp.compare_visits(fc, post, [3, 4]):
            print(f"          day {row['day']:.0f}: total cells median {row['total_median']:.3g} "
                  f"(90% {row['total_lower']:.3g}-{row['total_upper']:.3g}), truth "
                  f"{row['true_total']:.3g}, error {row['total_median'] / row['true_total'] - 1:+.3f}")  # fmt: skip
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--numpy-steps", type=int, default=20)
    parser.add_argument("--skip-calibration", action="store_true")
    parser.add_argument("--coverage", type=int, default=0, help="seeds of the coverage check")
    parser.add_argument("--initial-state", default="latent", choices=("latent", "observed"))
    parser.add_argument("--method", default="laplace", choices=isp.METHODS,
                        help="calibration method of --coverage and --full-grid-calibration")  # fmt: skip
    parser.add_argument("--field", action="store_true", help="proliferation-field benchmark")
    parser.add_argument("--field-seed", type=int, default=5)
    parser.add_argument("--full-grid-calibration", type=int, metavar="SEED",
                        help="calibrate a 3D phantom on the benchmark's grid instead")  # fmt: skip
    args = parser.parse_args()
    if args.full_grid_calibration is not None:
        full_grid_calibration(args.full_grid_calibration, args.method)
        return
    if args.field:
        field(args.field_seed)
        return
    if args.coverage:
        coverage(args.coverage, args.initial_state, args.method)
        return
    dev = jax.devices()[0]
    print(f"device: {dev.platform} ({dev.device_kind}); grid {SHAPE} voxels {SPACING} mm; "
          f"{N_STEPS} steps of {DT} d")  # fmt: skip
    mask, diffusivity, u0, dose = geometry()
    op = sp.operator(mask, SPACING, diffusivity, dose)
    sp.check_stability(op, PARAMS["D"], DT)
    lam = float(np.max(sp._row_sums(op))) * PARAMS["D"]
    print(f"stability: dt * lambda_max = {DT * lam:.3f} (RK4 limit {sp.RK4_STABILITY}); "
          f"max stable D = {sp.max_stable_diffusivity(SPACING, DT):.2f} mm^2/day")  # fmt: skip
    sched = sp.stupp_schedule(7.0)
    keep = [i for i, d in enumerate(sched["chemo_days"]) if d < N_STEPS * DT]
    forcing = sp.make_forcing(
        N_STEPS, DT, rt_days=sched["rt_days"], rt_doses=sched["rt_doses"],
        chemo_days=[sched["chemo_days"][i] for i in keep],
        chemo_doses=[sched["chemo_doses"][i] for i in keep],
    )  # fmt: skip
    print(f"treatment: {int(np.count_nonzero(forcing.rt_dose))} RT fractions, "
          f"{len(keep)} chemotherapy days")  # fmt: skip
    rss0 = peak_rss_mb()
    u0j = jnp.asarray(u0)
    pj = {k: jnp.asarray(v) for k, v in PARAMS.items()}

    fwd = jax.jit(lambda u, p: sp.simulate(u, p, op, forcing, [N_STEPS], checkpoint=False))
    t = time.perf_counter()
    jax.block_until_ready(fwd(u0j, pj))
    cold = time.perf_counter() - t
    warm = timed(lambda: jax.block_until_ready(fwd(u0j, pj)), args.repeats)
    maps, totals = fwd(u0j, pj)
    rss_fwd = peak_rss_mb()
    dpk = device_peak_mb()
    print(
        f"forward: warm {warm:.2f} s (cold incl. compile {cold:.1f} s); "
        f"total cells (voxel units) day 0 {float(np.sum(u0)):.1f} -> day 270 {float(totals[-1]):.1f}"
    )
    print(
        f"forward memory: process peak RSS {rss_fwd:.0f} MB (after imports and set-up "
        f"{rss0:.0f} MB)" + (f"; device peak {dpk:.0f} MB" if dpk is not None else "")
    )

    target = jnp.asarray(np.asarray(maps[0]) * 0.9)
    th = jnp.asarray([PARAMS["D"], PARAMS["rho"], PARAMS["alpha"]])
    # hand-written adjoint of the RK4 step (the default) and, as the baseline in the same run,
    # autodiff of the checkpointed step (the previous method)
    methods = {"hand-written adjoint": True, "autodiff baseline": False}
    grads, cold_g, fns = {}, {}, {}
    for label, adjoint in methods.items():

        def loss(theta: Any, adjoint: bool = adjoint) -> Any:
            p = dict(pj, D=theta[0], rho=theta[1], alpha=theta[2])
            m, _ = sp.simulate(u0j, p, op, forcing, [N_STEPS], checkpoint=True, adjoint=adjoint)
            return jnp.sum((m[0] - target) ** 2)

        fns[label] = jax.jit(jax.grad(loss))
        t = time.perf_counter()
        grads[label] = np.asarray(jax.block_until_ready(fns[label](th)))
        cold_g[label] = time.perf_counter() - t
        dpk = device_peak_mb()
        print(f"gradient ({label}): first call {cold_g[label]:.1f} s incl. compile; process "
              f"peak RSS so far {peak_rss_mb():.0f} MB"
              + (f"; device peak {dpk:.0f} MB" if dpk is not None else ""))  # fmt: skip
    # interleaved rounds (forward, then each gradient): on a shared machine the load drifts,
    # and a ratio of two times taken seconds apart is fairer than one of separate medians
    times: dict[str, list[float]] = {k: [] for k in ("forward", *methods)}
    for _ in range(args.repeats):
        times["forward"].append(timed(lambda: jax.block_until_ready(fwd(u0j, pj)), 1))
        for label, fn in fns.items():
            times[label].append(timed(lambda fn=fn: jax.block_until_ready(fn(th)), 1))
    fmed = statistics.median(times["forward"])
    for label in methods:
        ratios = [g / f for g, f in zip(times[label], times["forward"], strict=True)]
        print(
            f"gradient ({label}, one stored state per step): warm {statistics.median(times[label]):.2f} s"
            f" = {statistics.median(ratios):.2f} x forward (median of {args.repeats} interleaved "
            f"rounds; per round {', '.join(f'{r:.2f}' for r in ratios)}; forward {fmed:.2f} s); "
            f"grad = {grads[label]}"
        )
    a, b = grads.values()
    print(
        f"hand adjoint vs autodiff: max relative difference {np.max(np.abs(a - b) / np.abs(b)):.1e}"
    )

    n = max(1, min(args.numpy_steps, N_STEPS))
    t = time.perf_counter()
    numpy_rk4(u0.copy(), op, forcing, n)
    np_time = (time.perf_counter() - t) * N_STEPS / n
    check = numpy_rk4(u0.copy(), op, forcing, 4)
    ref, _ = jax.jit(lambda u, p: sp.simulate(u, p, op, forcing, [4], checkpoint=False))(u0j, pj)
    diff = float(np.max(np.abs(check - np.asarray(ref[0]))))
    print(
        f"NumPy baseline: {np_time:.1f} s for {N_STEPS} steps (timed {n} steps, scaled); "
        f"JAX is {np_time / warm:.1f}x faster; max |NumPy - JAX| after 4 steps {diff:.1e}"
    )
    print(
        "PyTorch/torchdiffeq on the same problem: benchmarks/spatial_torch.py (issue 9 quotes "
        "about 15 s and 2.3 GB forward, about 40 s adjoint gradient)"
    )

    if not args.skip_calibration:
        from oncotwin.data.imaging import load_manifest
        from oncotwin.data.phantom import shipped_manifest
        from oncotwin.errors import ConvergenceWarning

        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        patient = load_manifest(shipped_manifest())
        setup = isp.prepare(patient, calibration_visits=[0, 1, 2], fixed={"k_chemo": 0.01})
        post = isp.calibrate(setup, n_draws=100, seed=1)
        fc = isp.forecast(post, [v.day for v in patient.visits[2:]])
        total = time.perf_counter() - t
        print(
            f"calibration with uncertainty (shipped phantom, crop {setup.patient.mask.shape}, "
            f"{post.diagnostics['iterations']} L-BFGS iterations, Laplace, 100-draw forecast): "
            f"{total:.1f} s (first run in this process; compilation comes from the persistent "
            f"cache when it is warm); converged {post.converged}"
        )
        med, lo, hi = fc.total_at(patient.visits[-1].day)
        print(
            f"  day {patient.visits[-1].day:.0f} total cells median {med:.3g} "
            f"(90% {lo:.3g}-{hi:.3g})"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
