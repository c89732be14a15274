"""The spatial benchmark's solve in PyTorch + torchdiffeq, the stack of the open reference tool.

Issue 9 quotes the reference tool (PyTorch, torchdiffeq RK4) at about 15 s and 2.3 GB for the
3D forward solve of `benchmarks/spatial.py` and about 40 s for an adjoint gradient. This script
measures that stack on the same problem, so the comparison is made side by side in one run
rather than against a quoted figure:

- the same grid, geometry, treatment, parameters and finite-volume Laplacian as
  ``benchmarks/spatial.py`` (imported from it), float64;
- each 0.5-day step: the linear-quadratic kick of the day's RT fraction, then one fixed step of
  ``torchdiffeq.odeint(method="rk4")`` with the step's chemotherapy exposure held constant
  (torchdiffeq's "rk4" is the 3/8-rule variant: four stages, fourth order, like ours);
- gradient of a sum-of-squares loss against 0.9 x the final map, w.r.t. (D, rho, alpha), by
  ``odeint_adjoint`` (the adjoint method) and, with ``--backprop``, by backpropagation through
  the solver (it keeps every stage: about 100 MB a step on this grid, 54 GB for 540 steps, so
  only with ``--steps`` small);
- oncotwin's JAX solver on the same steps in the same process (forward, and the same gradient
  by its hand-written adjoint), then the checks: max |torch - JAX| of the final map, and the
  gradients' difference relative to the largest component.

Not installed by the project (PyTorch is a multi-GB dependency); run where torch and torchdiffeq
are, e.g. the lent GPU machine: ``python benchmarks/spatial_torch.py [--repeats 3] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from torchdiffeq import odeint, odeint_adjoint  # noqa: E402

import spatial as bench  # noqa: E402  (the JAX benchmark: geometry, parameters, timing helper)
from oncotwin._jax import jax, jnp  # noqa: E402
from oncotwin.models import spatial as sp  # noqa: E402


class ReactionDiffusion(torch.nn.Module):
    """du/dt = D div(w grad u) + rho u (1 - u) - k_chemo e u, with e fixed for one step."""

    def __init__(self, conductance: list[torch.Tensor], D: Any, rho: Any, k_chemo: float, e: float):
        super().__init__()
        self.conductance, self.D, self.rho, self.k_chemo, self.e = conductance, D, rho, k_chemo, e

    def laplacian(self, u: torch.Tensor) -> torch.Tensor:
        up = torch.nn.functional.pad(u, (1, 1) * u.ndim)
        out = torch.zeros_like(u)
        for axis, c in enumerate(self.conductance):
            hi = [slice(1, -1)] * u.ndim
            lo = [slice(1, -1)] * u.ndim
            hi[axis], lo[axis] = slice(1, None), slice(0, -1)
            flux = c * (up[tuple(hi)] - up[tuple(lo)])
            f1 = [slice(None)] * u.ndim
            f0 = [slice(None)] * u.ndim
            f1[axis], f0[axis] = slice(1, None), slice(0, -1)
            out = out + flux[tuple(f1)] - flux[tuple(f0)]
        return out

    def forward(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.D * self.laplacian(u) + self.rho * u * (1 - u) - self.k_chemo * self.e * u


def solve(u0: torch.Tensor, theta: torch.Tensor, setup: dict[str, Any], adjoint: bool = False):  # type: ignore[no-untyped-def]
    """Final map after all steps; `theta` = (D, rho, alpha)."""
    D, rho, alpha = theta[0], theta[1], theta[2]
    p, dt = bench.PARAMS, bench.DT
    span = torch.tensor([0.0, dt], dtype=u0.dtype, device=u0.device)
    integrate = odeint_adjoint if adjoint else odeint
    u = u0
    for n in range(setup["steps"]):
        d = setup["dose"] * float(setup["rt"][n])
        u = u * torch.exp(-(alpha * d + alpha / p["alpha_beta"] * d * d))
        f = ReactionDiffusion(setup["cond"], D, rho, p["k_chemo"], float(setup["exposure"][n]))
        kwargs = {"adjoint_params": (theta,)} if adjoint else {}
        u = integrate(f, u, span, method="rk4", options={"step_size": dt}, **kwargs)[-1]
    return u


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--steps", type=int, default=bench.N_STEPS, help="steps to time (scaled to 540)"
    )
    parser.add_argument(
        "--backprop", action="store_true",
        help="also backpropagate through the solver (stores every stage: about 100 MB a step here)",
    )  # fmt: skip
    args = parser.parse_args()
    dev = torch.device(args.device)
    gpu = dev.type == "cuda"
    name = torch.cuda.get_device_name(dev) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {name}; JAX on {jax.devices()[0].platform}")

    mask, diffusivity, u0, dose = bench.geometry()
    op = sp.operator(mask, bench.SPACING, diffusivity, dose)
    sched = sp.stupp_schedule(7.0)
    keep = [i for i, d in enumerate(sched["chemo_days"]) if d < bench.N_STEPS * bench.DT]
    forcing = sp.make_forcing(
        bench.N_STEPS, bench.DT, rt_days=sched["rt_days"], rt_doses=sched["rt_doses"],
        chemo_days=[sched["chemo_days"][i] for i in keep],
        chemo_doses=[sched["chemo_doses"][i] for i in keep],
    )  # fmt: skip
    steps = max(1, min(args.steps, bench.N_STEPS))
    scale = bench.N_STEPS / steps
    theta_np = np.array([bench.PARAMS["D"], bench.PARAMS["rho"], bench.PARAMS["alpha"]])

    def tensor(a: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64), device=dev)

    def sync() -> None:
        if gpu:
            torch.cuda.synchronize(dev)

    def memory(since: float) -> float:
        """Device peak (GPU) or growth of the process's peak RSS (CPU) since `since`, MB."""
        return torch.cuda.max_memory_allocated(dev) / 2**20 if gpu else peak_rss_mb() - since

    setup = {
        "cond": [tensor(c) for c in op.conductance], "dose": tensor(op.dose_map),
        "rt": forcing.rt_dose, "exposure": forcing.exposure, "steps": steps,
    }  # fmt: skip
    u0t = tensor(u0)
    where = "device peak" if gpu else "process peak RSS growth"
    times: dict[str, float] = {}

    # torch first, so that its memory is not hidden under JAX's
    def forward() -> torch.Tensor:
        with torch.no_grad():
            u = solve(u0t, tensor(theta_np), setup)
        sync()
        return u

    rss = peak_rss_mb()
    u_torch = forward().cpu().numpy()  # the first call (CUDA context, kernels) is not timed
    times["torch forward"] = bench.timed(forward, args.repeats) * scale
    print(f"torch forward: {times['torch forward']:.2f} s for 540 steps (timed {steps}, median "
          f"of {args.repeats}); {where} {memory(rss):.0f} MB")  # fmt: skip
    target_np = 0.9 * u_torch
    target = tensor(target_np)

    methods = {"odeint_adjoint": True} | ({"backpropagation": False} if args.backprop else {})
    torch_grads: dict[str, np.ndarray] = {}
    for label, adjoint in methods.items():
        if gpu:
            torch.cuda.reset_peak_memory_stats(dev)
        rss = peak_rss_mb()

        def gradient(adjoint: bool = adjoint, label: str = label) -> None:
            th = tensor(theta_np).requires_grad_(True)
            loss = torch.sum((solve(u0t, th, setup, adjoint=adjoint) - target) ** 2)
            (g,) = torch.autograd.grad(loss, th)
            sync()
            torch_grads[label] = g.cpu().numpy()

        times[f"torch {label}"] = t = bench.timed(gradient, args.repeats) * scale
        print(f"torch gradient ({label}): {t:.2f} s = {t / times['torch forward']:.2f} x its "
              f"forward; {where} {memory(rss):.0f} MB")  # fmt: skip

    # oncotwin's JAX solver on the same steps, same process: forward and hand-written adjoint
    u0j = jnp.asarray(u0)
    pj = {k: jnp.asarray(v) for k, v in bench.PARAMS.items()}
    jax_fwd = jax.jit(lambda u, q: sp.simulate(u, q, op, forcing, [steps], checkpoint=False)[0])

    def jax_loss(th: Any) -> Any:
        q = dict(pj, D=th[0], rho=th[1], alpha=th[2])
        m, _ = sp.simulate(u0j, q, op, forcing, [steps], checkpoint=True)
        return jnp.sum((m[0] - target_np) ** 2)

    jax_grad_fn = jax.jit(jax.grad(jax_loss))
    th = jnp.asarray(theta_np)
    u_jax = np.asarray(jax_fwd(u0j, pj)[0])
    jax_grad = np.asarray(jax_grad_fn(th))
    times["JAX forward"] = bench.timed(
        lambda: jax.block_until_ready(jax_fwd(u0j, pj)), args.repeats
    )
    times["JAX gradient"] = bench.timed(
        lambda: jax.block_until_ready(jax_grad_fn(th)), args.repeats
    )
    for k in ("JAX forward", "JAX gradient"):
        times[k] *= scale
    print(f"oncotwin (JAX) forward: {times['JAX forward']:.2f} s; gradient (hand-written adjoint): "
          f"{times['JAX gradient']:.2f} s = {times['JAX gradient'] / times['JAX forward']:.2f} x")  # fmt: skip
    print(f"torch / JAX: forward {times['torch forward'] / times['JAX forward']:.1f}x, "
          f"adjoint gradient {times['torch odeint_adjoint'] / times['JAX gradient']:.1f}x")  # fmt: skip
    # checks: same solution (torchdiffeq's rk4 is the 3/8 rule, ours the classic one), same gradient
    print(f"checks: max |torch - JAX| of the final map {np.max(np.abs(u_torch - u_jax)):.1e}; "
          + "; ".join(f"{k} gradient vs JAX, largest difference / largest component "
                      f"{np.max(np.abs(g - jax_grad)) / np.max(np.abs(jax_grad)):.1e}"
                      for k, g in torch_grads.items()))  # fmt: skip


if __name__ == "__main__":
    main()
