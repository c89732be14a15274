"""Synthetic glioma patients for spatial twins: brain phantom, tumour grown with known parameters.

Public patient images cannot be redistributed, so oncotwin ships a phantom instead
(``oncotwin/data/phantom/manifest.json``, written by :func:`write_phantom`). The generator:

1. draws a brain: an ellipsoid with a smooth random boundary, two ventricles (CSF, outside the
   tissue mask), white matter inside and a grey-matter rim (partial-volume fractions);
2. seeds a tumour (Gaussian blob) in white matter and grows it untreated for `history_days`
   with the reaction-diffusion model of :mod:`oncotwin.models.spatial` and known parameters
   (optionally a spatially varying proliferation rate, ``rho_map``);
3. treats it with the Stupp regimen (60 Gy / 30 fractions with daily temozolomide, then
   adjuvant cycles; Stupp R et al. N Engl J Med 2005;352:987-996) on a plan whose dose map is
   1 inside the tumour ROI expanded by a margin and falls off outside;
4. images it at each visit: tumour ROI where the true cellularity exceeds a detection level, and
   an ADC map (the inverse of the Hormuth observation operator inside the ROI, normal-tissue ADC
   outside) with Gaussian noise.

Everything is driven by one seed (recorded in the manifest); same seed, same files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from .imaging import (
    FREE_WATER_ADC,
    MANIFEST_FORMAT,
    adc_to_cellularity,
    affine_from_spacing,
    carrying_capacity,
    cellularity_to_adc,
    save_nifti,
)

TRUE_PARAMS: dict[str, float] = {
    "D": 0.2,  # mm^2/day, white matter
    "rho": 0.025,  # 1/day
    "alpha": 0.02,  # 1/Gy
    "alpha_beta": 10.0,  # Gy
    "k_chemo": 0.01,  # 1/day per unit exposure
}
ADC_MIN = 0.6e-3  # mm^2/s at full cellularity
ADC_TISSUE = {"white": 0.75e-3, "grey": 0.85e-3}  # normal-appearing tissue, mm^2/s
GREY_WHITE_RATIO = 0.1  # D_grey / D_white


@dataclass
class Phantom:
    """A synthetic patient in memory (see :func:`make_phantom`).

    Attributes:
        affine: 4x4 voxel -> mm transform.
        mask: brain tissue mask.
        white, grey: white/grey matter fractions.
        diffusivity: relative diffusivity map.
        visit_days: days of imaging visits.
        truth_maps: true normalised cellularity at each visit.
        adc: ADC maps at each visit, mm^2/s.
        rois: tumour ROI at each visit.
        plans: RT plans: name -> {"dose_map", "days", "dose_per_fraction"}.
        chemo_days, chemo_doses: temozolomide days and relative doses.
        params: true model parameters (``rho``: the reference rate that ``rho_map`` scales).
        settings: generator settings (seed included).
        rho_map: true proliferation rate per voxel, 1/day (None: ``params["rho"]`` everywhere).
    """

    affine: np.ndarray
    mask: np.ndarray
    white: np.ndarray
    grey: np.ndarray
    diffusivity: np.ndarray
    visit_days: list[float]
    truth_maps: list[np.ndarray]
    adc: list[np.ndarray]
    rois: list[np.ndarray]
    plans: dict[str, dict[str, Any]]
    chemo_days: list[float]
    chemo_doses: list[float]
    params: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)
    rho_map: np.ndarray | None = None

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel sizes, mm."""
        return tuple(float(np.linalg.norm(self.affine[:3, i])) for i in range(self.mask.ndim))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    z = gaussian_filter(rng.standard_normal(shape), sigma_vox, mode="wrap")
    return z / (z.std() + 1e-12)


def _dose_map(
    roi: np.ndarray, mask: np.ndarray, spacing: Sequence[float], margin_mm: float
) -> np.ndarray:
    """1 inside the ROI expanded by the margin; Gaussian fall-off (sd 8 mm) outside."""
    from scipy.ndimage import distance_transform_edt

    dist = distance_transform_edt(~roi, sampling=spacing)
    beyond = np.clip(dist - margin_mm, 0.0, None)
    return np.where(mask, np.exp(-0.5 * (beyond / 8.0) ** 2), 0.0)


def make_phantom(
    shape: Sequence[int] = (36, 42, 14),
    spacing: Sequence[float] = (4.5, 4.5, 7.0),
    *,
    seed: int = 0,
    params: Mapping[str, float] | None = None,
    visit_days: Sequence[float] = (0.0, 14.0, 63.0, 105.0, 161.0),
    rt_start: float = 21.0,
    history_days: float = 250.0,
    noise: float = 0.03,
    detection: float = 0.05,
    dt: float = 0.5,
    rho_map: np.ndarray | Callable[[tuple[np.ndarray, ...]], np.ndarray] | None = None,
) -> Phantom:
    """Generate a synthetic glioma patient (2D or 3D).

    Args:
        shape: grid shape (2 or 3 axes).
        spacing: voxel sizes, mm.
        seed: random seed (anatomy, tumour site, image noise).
        params: true model parameters (defaults: :data:`TRUE_PARAMS`).
        visit_days: imaging days (day 0 = first visit).
        rt_start: day of the first RT fraction (Stupp regimen from then on).
        history_days: untreated growth before the first visit, days.
        noise: standard deviation of image noise in cellularity units (applied to ADC).
        detection: cellularity above which tissue is segmented as tumour.
        dt: solver step, days.
        rho_map: spatially varying proliferation, as factors multiplying ``params["rho"]``
            (dimensionless): an array of the grid's shape, or a function of the voxel centres'
            offsets from the tumour seed (one array per axis, mm) returning that array. None
            (default): a uniform rate, exactly as before this option existed.

    Raises:
        ModelError: bad shape/spacing, an unstable step, or a bad ``rho_map``.
    """
    from ..models import spatial as sp

    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(h) for h in spacing)
    if len(shape) not in (2, 3) or len(spacing) != len(shape) or min(shape) < 8:
        raise ModelError(f"phantom shape {shape} / spacing {spacing}: need 2 or 3 axes of >= 8")
    p = dict(TRUE_PARAMS if params is None else params)
    rng = np.random.default_rng(seed)
    nd = len(shape)
    centre = np.array([(n - 1) / 2 for n in shape])
    grid = np.indices(shape).astype(float)
    radii = np.array([0.44 * n for n in shape])
    rel = np.sqrt(sum(((grid[i] - centre[i]) / radii[i]) ** 2 for i in range(nd)))
    bumpy = rel + 0.04 * _smooth_noise(rng, shape, 3.0)
    brain = bumpy < 1.0
    # two ventricles (CSF): outside the tissue mask, so they are zero-flux holes
    vents = np.zeros(shape, dtype=bool)
    for side in (-1, 1):
        c = centre.copy()
        c[0] += side * 0.12 * shape[0]
        vr = np.array([0.05 * shape[0], 0.16 * shape[1]] + ([0.15 * shape[2]] if nd == 3 else []))
        vents |= sum(((grid[i] - c[i]) / vr[i]) ** 2 for i in range(nd)) < 1.0
    mask = brain & ~vents
    # white matter: inner region, with a smooth partial-volume transition to the grey rim
    wm_level = 0.72 + 0.08 * _smooth_noise(rng, shape, 2.0)
    white = np.where(mask, 1.0 / (1.0 + np.exp((bumpy - wm_level) / 0.03)), 0.0)
    white = np.round(white, 2)
    grey = np.where(mask, 1.0 - white, 0.0)
    diffusivity = np.where(mask, white + GREY_WHITE_RATIO * grey, 0.0)
    affine = affine_from_spacing(
        spacing, origin=[-(n - 1) / 2 * h for n, h in zip(shape, spacing, strict=True)]
    )

    # tumour seed: in white matter, off-centre (right hemisphere, away from the ventricles)
    candidates = np.argwhere((white > 0.9) & (grid[0] > centre[0] + 0.18 * shape[0]))
    if candidates.size == 0:
        candidates = np.argwhere(white > 0.5)
    site = candidates[rng.integers(len(candidates))]
    r2 = sum(((grid[i] - site[i]) * spacing[i]) ** 2 for i in range(nd))
    seed_map = np.where(mask, 0.2 * np.exp(-r2 / (2 * 4.0**2)), 0.0)

    true_rho: np.ndarray | None = None
    if rho_map is not None:
        offsets = tuple((grid[i] - site[i]) * spacing[i] for i in range(nd))
        factor = np.asarray(rho_map(offsets) if callable(rho_map) else rho_map, dtype=float)
        if factor.shape != shape or not np.all(np.isfinite(factor)) or np.any(factor[mask] <= 0):
            raise ModelError(
                f"rho_map must be finite positive factors of shape {shape}, got {factor.shape}"
            )
        true_rho = np.where(mask, p["rho"] * factor, 0.0)
    # the simulator's parameters: the rate map replaces the scalar rate (the rng is not used
    # for the map, so anatomy, site and noise are those of the same seed without a map)
    p_sim: dict[str, Any] = dict(p) if true_rho is None else dict(p, rho=true_rho)

    op = sp.operator(mask, spacing, diffusivity)
    sp.check_stability(op, p["D"], dt)
    n_hist = int(round(history_days / dt))
    untreated = sp.make_forcing(max(n_hist, 1), dt)
    maps, _ = sp.simulate(seed_map, p_sim, op, untreated, [untreated.n_steps], checkpoint=False)
    u0 = np.asarray(maps[0])

    # plan on the ROI at the last visit before RT (the planning scan)
    last_pre = max([d for d in visit_days if d <= rt_start] or [visit_days[0]])
    n_steps = int(round(max(visit_days) / dt)) + 1
    schedule = sp.stupp_schedule(rt_start)
    pre = sp.make_forcing(max(int(round(last_pre / dt)), 1), dt)
    plan_map, _ = sp.simulate(
        u0, p_sim, op, pre, [pre.n_steps if last_pre > 0 else 0], checkpoint=False
    )
    planning_roi = (np.asarray(plan_map[0]) > detection) & mask
    hypo = sp.stupp_schedule(rt_start, fractions=15, dose_per_fraction=2.67)
    plans = {
        "standard": {
            "dose_map": _dose_map(planning_roi, mask, spacing, 20.0),
            "days": schedule["rt_days"],
            "dose_per_fraction": 2.0,
            "description": "60 Gy in 30 fractions, ROI + 20 mm (Stupp 2005)",
        },
        "hypofractionated": {
            "dose_map": _dose_map(planning_roi, mask, spacing, 15.0),
            "days": hypo["rt_days"],
            "dose_per_fraction": 2.67,
            "description": "40.05 Gy in 15 fractions, ROI + 15 mm (Roa 2004; Perry 2017)",
        },
    }
    chemo_days = [d for d in schedule["chemo_days"] if d < n_steps * dt]
    chemo_doses = schedule["chemo_doses"][: len(chemo_days)]
    fractions = [d for d in schedule["rt_days"] if d < (n_steps - 0.5) * dt]
    treat = sp.make_forcing(
        n_steps, dt, rt_days=fractions, rt_doses=2.0,
        chemo_days=chemo_days, chemo_doses=chemo_doses,
    )  # fmt: skip
    op_t = sp.operator(mask, spacing, diffusivity, plans["standard"]["dose_map"])
    saves = [int(round(d / dt)) for d in visit_days]
    truth, _ = sp.simulate(u0, p_sim, op_t, treat, saves, checkpoint=False)
    truth_maps = [np.asarray(m) for m in truth]

    tissue_adc = white * ADC_TISSUE["white"] + grey * ADC_TISSUE["grey"]
    adc_noise = noise * (FREE_WATER_ADC - ADC_MIN)
    adcs, rois = [], []
    for m in truth_maps:
        roi = (m > detection) & mask
        clean = np.where(roi, cellularity_to_adc(m, adc_min=ADC_MIN), tissue_adc)
        noisy = clean + adc_noise * rng.standard_normal(shape)
        adcs.append(np.where(mask, np.clip(noisy, 1e-5, None), 0.0))
        rois.append(roi)
    settings = {
        "generator": "oncotwin.data.phantom.make_phantom",
        "seed": seed, "shape": list(shape), "spacing": list(spacing),
        "visit_days": list(map(float, visit_days)), "rt_start": rt_start,
        "history_days": history_days, "noise": noise, "detection": detection, "dt": dt,
        "tumour_site_voxel": [int(i) for i in site],
    }  # fmt: skip
    if true_rho is not None:
        settings["rho_map"] = "spatially varying (Phantom.rho_map; truth_rho.nii.gz)"
    return Phantom(
        affine, mask, white, grey, diffusivity, [float(d) for d in visit_days], truth_maps,
        adcs, rois, plans, chemo_days, list(chemo_doses), p, settings, true_rho,
    )  # fmt: skip


def write_phantom(directory: str | Path, phantom: Phantom | None = None, **kwargs: Any) -> Path:
    """Write a phantom as compressed NIfTI files plus ``manifest.json``; returns the manifest.

    Args:
        directory: output folder (created).
        phantom: the phantom to write (default: ``make_phantom(**kwargs)``).
        kwargs: passed to :func:`make_phantom`.
    """
    ph = phantom if phantom is not None else make_phantom(**kwargs)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    aff = ph.affine
    save_nifti(out / "brain_mask.nii.gz", ph.mask, aff, dtype=np.uint8)
    save_nifti(out / "white_matter.nii.gz", ph.white, aff, dtype=np.uint8, scale=0.01)
    save_nifti(out / "grey_matter.nii.gz", ph.grey, aff, dtype=np.uint8, scale=0.01)
    visits = []
    for k, (day, adc, roi) in enumerate(zip(ph.visit_days, ph.adc, ph.rois, strict=True)):
        save_nifti(out / f"visit{k}_adc.nii.gz", adc, aff, dtype=np.int16, scale=1e-6)
        save_nifti(out / f"visit{k}_roi.nii.gz", roi, aff, dtype=np.uint8)
        visits.append({"day": day, "adc": f"visit{k}_adc.nii.gz", "roi": f"visit{k}_roi.nii.gz"})
    plans = {}
    for name, plan in ph.plans.items():
        save_nifti(out / f"dose_{name}.nii.gz", plan["dose_map"], aff, dtype=np.uint8, scale=0.01)
        plans[name] = {
            "dose_map": f"dose_{name}.nii.gz",
            "days": plan["days"],
            "dose_per_fraction": plan["dose_per_fraction"],
            "description": plan["description"],
        }
    truth: dict[str, Any] = {}
    if ph.rho_map is not None:
        # float32 keeps 7 digits of the rate (1/day); the manifest names the file
        save_nifti(out / "truth_rho.nii.gz", ph.rho_map, aff, dtype=np.float32)
        truth["rho_map"] = "truth_rho.nii.gz"
    voxel = float(np.prod(ph.spacing))
    theta = carrying_capacity(voxel, 5.0)
    true_cells = [float(np.sum(m)) * theta for m in ph.truth_maps]
    manifest = {
        "format": MANIFEST_FORMAT,
        "patient": f"phantom-glioma-seed{ph.settings.get('seed', 0)}",
        "description": "Synthetic glioma patient (oncotwin.data.phantom); not patient data.",
        "tissue": {
            "mask": "brain_mask.nii.gz",
            "white_matter": "white_matter.nii.gz",
            "grey_matter": "grey_matter.nii.gz",
            "grey_white_diffusivity_ratio": GREY_WHITE_RATIO,
        },
        "adc": {"free_water": FREE_WATER_ADC, "min": ADC_MIN, "unit": "mm2/s"},
        "cell_radius_um": 5.0,
        "visits": visits,
        "radiotherapy": {"delivered": "standard", "plans": plans},
        "chemotherapy": {
            "agent": "temozolomide", "days": ph.chemo_days, "relative_doses": ph.chemo_doses,
            "half_life_days": 1.8 / 24, "reference_dose": "75 mg/m2",
        },
        "truth": {"params": ph.params, "total_cells": true_cells, "settings": ph.settings,
                  **truth},
    }  # fmt: skip
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def observed_cellularity(ph: Phantom, k: int) -> np.ndarray:
    """Cellularity of visit `k` as the imaging pipeline sees it (ADC -> cellularity in the ROI)."""
    return adc_to_cellularity(ph.adc[k], ph.rois[k], adc_min=ADC_MIN)


def shipped_manifest() -> Path:
    """Path of the demo phantom shipped with oncotwin (``oncotwin/data/phantom/manifest.json``)."""
    return Path(__file__).resolve().parent / "phantom" / "manifest.json"


if __name__ == "__main__":  # regenerate the shipped phantom
    print(write_phantom(shipped_manifest().parent, seed=7))  # python -m oncotwin.data.phantom
