"""Medical images for spatial twins: NIfTI in/out, masks, ADC -> cellularity, volumes, crops.

A spatial patient is described by a JSON *manifest* next to its NIfTI files (paths relative to
the manifest)::

    {
      "format": "oncotwin-spatial/1",
      "patient": "phantom-glioma-01",
      "tissue": {"mask": "brain_mask.nii.gz", "white_matter": "white_matter.nii.gz",
                 "grey_matter": "grey_matter.nii.gz", "grey_white_diffusivity_ratio": 0.1},
      "adc": {"free_water": 3.0e-3, "min": 0.6e-3},          (mm^2/s; min optional)
      "cell_radius_um": 5.0,                                  (or "carrying_capacity": cells/voxel)
      "visits": [{"day": 0, "adc": "visit0_adc.nii.gz", "roi": "visit0_roi.nii.gz"}, ...],
      "radiotherapy": {"delivered": "standard",
                       "plans": {"standard": {"dose_map": "dose_standard.nii.gz",
                                              "days": [...], "dose_per_fraction": 2.0}}},
      "chemotherapy": {"agent": "temozolomide", "days": [...], "relative_doses": [...],
                       "half_life_days": 0.075, "reference_dose": "75 mg/m2"},
      "truth": {...}                                          (synthetic patients only)
    }

Every image must share the mask's shape and affine (hence spacing and orientation); a missing
file, an unreadable image or a mismatch raises :class:`~oncotwin.errors.DataError` naming the
manifest and the field. Nothing is returned unless every check passes.

Science: tumour cellularity from diffusion-weighted MRI by the linear ADC map of Hormuth et al.
(``N = theta (ADC_w - ADC) / (ADC_w - ADC_min)``; Hormuth DA et al. Phys Biol 2015;12:046006;
Hormuth DA et al. Sci Rep 2021;11:8520; following Atuegwu NC et al. Transl Oncol 2013;6:256-264),
and the carrying capacity of a voxel from close packing of spherical cells (packing density
0.7405; Atuegwu 2013).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

MANIFEST_FORMAT = "oncotwin-spatial/1"
FREE_WATER_ADC = 3.0e-3  # mm^2/s at 37 C
PACKING_DENSITY = 0.7405  # close packing of spheres
_ATOL = 1e-4  # affine agreement, mm


@dataclass(frozen=True)
class Image:
    """An image volume with its geometry.

    Attributes:
        data: voxel values (NumPy array, 2D or 3D).
        affine: 4x4 voxel -> scanner (RAS+, mm) transform.
        path: where it was read from (None when built in memory).
    """

    data: np.ndarray
    affine: np.ndarray
    path: str | None = None

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size along each array axis, mm."""
        return spacing_of(self.affine, self.data.ndim)

    @property
    def orientation(self) -> str:
        """Axis codes (e.g. "RAS") of the array axes."""
        import nibabel as nib

        return "".join(nib.aff2axcodes(self.affine))


def spacing_of(affine: Any, ndim: int = 3) -> tuple[float, ...]:
    """Voxel sizes (mm) of the first `ndim` array axes of a 4x4 affine."""
    a = np.asarray(affine, dtype=float)
    return tuple(float(np.linalg.norm(a[:3, i])) for i in range(ndim))


def affine_from_spacing(
    spacing: Sequence[float], origin: Sequence[float] | None = None
) -> np.ndarray:
    """A diagonal (RAS) affine with the given voxel sizes (mm) and origin (mm)."""
    aff = np.eye(4)
    for i, h in enumerate(spacing):
        aff[i, i] = float(h)
    if origin is not None:
        aff[: len(origin), 3] = origin
    return aff


def load_nifti(path: str | Path, *, where: str | None = None) -> Image:
    """Read a NIfTI file (``.nii`` or ``.nii.gz``) into an :class:`Image` (float64 or bool data).

    Args:
        path: file path.
        where: context for error messages (e.g. "manifest.json, field 'visits[2].adc'").

    Raises:
        DataError: the file is missing or is not a readable NIfTI image.
    """
    import nibabel as nib

    p = Path(path)
    if not p.is_file():
        raise DataError(f"image file not found: {p}", file=where or str(p))
    try:
        img: Any = nib.load(str(p))
        data = np.asarray(img.get_fdata(dtype=np.float64))
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise DataError(f"cannot read NIfTI image {p}: {exc}", file=where or str(p)) from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]  # 2D images are stored with one slice
    return Image(data, affine, str(p))


def save_nifti(
    path: str | Path, data: Any, affine: Any, *, dtype: Any = np.float32, scale: float | None = None
) -> Path:
    """Write an array as NIfTI with the given affine; returns the path.

    Args:
        path: target (``.nii.gz`` compresses).
        data: 2D or 3D array (2D is stored as one slice).
        affine: 4x4 voxel -> RAS mm transform.
        dtype: on-disk type (float32, int16, uint8 ...).
        scale: for integer types, the value of one stored unit (NIfTI ``scl_slope``): the data
            are stored as ``round(data / scale)`` and read back multiplied by it.
    """
    import nibabel as nib

    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[..., None]
    img = nib.Nifti1Image(np.zeros(arr.shape, dtype=dtype), np.asarray(affine, dtype=float))
    img.header.set_data_dtype(dtype)
    if scale is not None:
        stored = np.round(arr / scale).astype(dtype)
        img = nib.Nifti1Image(stored, np.asarray(affine, dtype=float), img.header)
        img.header.set_slope_inter(scale, 0.0)
    else:
        img = nib.Nifti1Image(arr.astype(dtype), np.asarray(affine, dtype=float), img.header)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(np.asarray(affine, dtype=float), code=1)
    img.set_sform(np.asarray(affine, dtype=float), code=1)
    p = Path(path)
    nib.save(img, str(p))
    return p


# --------------------------------------------------------------------------- observation operators


def carrying_capacity(voxel_volume_mm3: float, cell_radius_um: float = 5.0) -> float:
    """Maximum number of tumour cells in a voxel: close packing of spheres of the given radius.

    Args:
        voxel_volume_mm3: voxel volume, mm^3.
        cell_radius_um: cell radius, micrometres.
    """
    cell = 4.0 / 3.0 * math.pi * (cell_radius_um * 1e-3) ** 3  # mm^3
    return PACKING_DENSITY * voxel_volume_mm3 / cell


def adc_to_cellularity(
    adc: Any, roi: Any, *, free_water: float = FREE_WATER_ADC, adc_min: float | None = None
) -> np.ndarray:
    """Normalised tumour cellularity ``N / theta`` from an ADC map (Hormuth et al. 2015, 2021).

    ``N / theta = (ADC_w - ADC) / (ADC_w - ADC_min)`` inside the tumour ROI, clipped to [0, 1];
    0 outside the ROI.

    Args:
        adc: apparent diffusion coefficient map, mm^2/s.
        roi: tumour region of interest (boolean, same shape).
        free_water: ADC of free water, mm^2/s (3.0e-3 at 37 C).
        adc_min: ADC at maximal cellularity, mm^2/s; default the minimum ADC inside the ROI.

    Raises:
        DataError: shapes differ, or ``adc_min`` is not below ``free_water``.
    """
    a = np.asarray(adc, dtype=float)
    r = np.asarray(roi, dtype=bool)
    if a.shape != r.shape:
        raise DataError(f"ADC map shape {a.shape} differs from ROI shape {r.shape}")
    if adc_min is None:
        adc_min = float(a[r].min()) if r.any() else free_water / 2
    if not adc_min < free_water:
        raise DataError(f"adc_min {adc_min} must be below the free-water ADC {free_water}")
    u = (free_water - a) / (free_water - adc_min)
    return np.where(r, np.clip(u, 0.0, 1.0), 0.0)


def cellularity_to_adc(
    u: Any, *, free_water: float = FREE_WATER_ADC, adc_min: float = 0.6e-3
) -> np.ndarray:
    """Inverse of :func:`adc_to_cellularity`: ADC (mm^2/s) of normalised cellularity `u`."""
    return free_water - np.asarray(u, dtype=float) * (free_water - adc_min)


def mask_volume(mask: Any, spacing: Sequence[float]) -> float:
    """Volume of a segmentation mask, mm^3 (voxel count times voxel volume)."""
    return float(np.count_nonzero(mask)) * float(np.prod(spacing))


def crop_box(
    roi: Any, spacing: Sequence[float], margin_mm: float, *, within: Any = None
) -> tuple[slice, ...]:
    """Index box around `roi` extended by `margin_mm` on every side (clipped to the image).

    Args:
        roi: boolean region (e.g. union of tumour ROIs over visits).
        spacing: voxel sizes, mm.
        margin_mm: margin, mm.
        within: optional mask whose bounding box also limits the crop.

    Raises:
        DataError: the ROI is empty.
    """
    r = np.asarray(roi, dtype=bool)
    if not r.any():
        raise DataError("cannot crop around an empty tumour ROI")
    idx = np.nonzero(r)
    box = []
    for axis, h in enumerate(spacing):
        m = int(math.ceil(margin_mm / float(h)))
        lo = max(int(idx[axis].min()) - m, 0)
        hi = min(int(idx[axis].max()) + m + 1, r.shape[axis])
        if within is not None:
            w = np.nonzero(np.asarray(within, dtype=bool))[axis]
            lo, hi = max(lo, int(w.min())), min(hi, int(w.max()) + 1)
        box.append(slice(lo, hi))
    return tuple(box)


def crop_affine(affine: Any, box: Sequence[slice]) -> np.ndarray:
    """The affine of a cropped image (origin moved to the box's first voxel)."""
    a = np.asarray(affine, dtype=float).copy()
    start = np.zeros(3)
    start[: len(box)] = [s.start or 0 for s in box]
    a[:3, 3] = a[:3, :3] @ start + a[:3, 3]
    return a


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Visit:
    """One imaging visit.

    Attributes:
        day: days since the reference (first) visit.
        cellularity: normalised cellularity ``N / theta`` (0 outside the ROI).
        roi: tumour segmentation (boolean).
    """

    day: float
    cellularity: np.ndarray
    roi: np.ndarray


@dataclass(frozen=True)
class RTPlan:
    """A radiotherapy plan: relative dose map and fraction days/doses.

    Attributes:
        name: plan name.
        dose_map: dose per fraction relative to the prescription (1 = prescribed), per voxel.
        days: fraction days (days since the first visit).
        dose_per_fraction: prescribed dose per fraction, Gy.
    """

    name: str
    dose_map: np.ndarray
    days: tuple[float, ...]
    dose_per_fraction: float

    @property
    def total_dose(self) -> float:
        """Prescribed total dose, Gy."""
        return self.dose_per_fraction * len(self.days)


@dataclass(frozen=True)
class SpatialPatient:
    """Everything a spatial twin needs about one patient, loaded from a manifest.

    Attributes:
        patient: patient identifier.
        affine: shared 4x4 affine of every image.
        mask: tissue (brain) mask, boolean.
        diffusivity: relative diffusivity per voxel (1 in white matter).
        visits: imaging visits in time order.
        plans: radiotherapy plans by name.
        delivered: name of the plan actually given.
        chemo_days, chemo_doses, chemo_half_life: chemotherapy days, relative doses and
            half-life (days).
        carrying_capacity: cells per voxel at full cellularity.
        truth: known parameters (synthetic patients), else empty.
        source: manifest path.
    """

    patient: str
    affine: np.ndarray
    mask: np.ndarray
    diffusivity: np.ndarray
    visits: tuple[Visit, ...]
    plans: Mapping[str, RTPlan]
    delivered: str
    chemo_days: tuple[float, ...] = ()
    chemo_doses: tuple[float, ...] = ()
    chemo_half_life: float = 1.8 / 24
    carrying_capacity: float = 1.0
    truth: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel sizes, mm."""
        return spacing_of(self.affine, self.mask.ndim)

    @property
    def voxel_volume(self) -> float:
        """Voxel volume, mm^3."""
        return float(np.prod(self.spacing))

    def cell_count(self, cellularity: Any) -> float:
        """Total tumour cells of a normalised cellularity map."""
        return float(np.sum(cellularity)) * self.carrying_capacity

    def crop(self, margin_mm: float = 20.0) -> tuple[SpatialPatient, tuple[slice, ...]]:
        """The patient cropped to the box around all visits' ROIs plus `margin_mm`.

        Returns:
            The cropped patient and the index box into the original images.
        """
        union = np.zeros(self.mask.shape, dtype=bool)
        for v in self.visits:
            union |= v.roi
        box = crop_box(union, self.spacing, margin_mm, within=self.mask)
        visits = tuple(Visit(v.day, v.cellularity[box], v.roi[box]) for v in self.visits)
        plans = {
            k: RTPlan(p.name, p.dose_map[box], p.days, p.dose_per_fraction)
            for k, p in self.plans.items()
        }
        cropped = SpatialPatient(
            self.patient, crop_affine(self.affine, box), self.mask[box], self.diffusivity[box],
            visits, plans, self.delivered, self.chemo_days, self.chemo_doses,
            self.chemo_half_life, self.carrying_capacity, self.truth, self.source,
        )  # fmt: skip
        return cropped, box


def _field(obj: Mapping[str, Any], key: str, where: str, manifest: str) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise DataError(f"missing required field '{where}{key}'", file=manifest, column=where + key)
    return obj[key]


def _days(values: Any, name: str, manifest: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise DataError(f"'{name}' must be a list of numbers", file=manifest, column=name) from None
    if any(not math.isfinite(v) for v in out):
        raise DataError(f"'{name}' has non-finite values", file=manifest, column=name)
    return out


def load_manifest(path: str | Path) -> SpatialPatient:
    """Read a spatial patient from its manifest and NIfTI files, checking every image.

    Args:
        path: the manifest JSON file.

    Returns:
        The :class:`SpatialPatient` (visits sorted by day).

    Raises:
        DataError: unreadable JSON, unknown format, a missing field or file, an image whose
            shape or affine (spacing, orientation) differs from the mask's, visit days out of
            order, or values out of range. The message names the manifest and the field.
    """
    mpath = Path(path)
    mf = str(mpath)
    if not mpath.is_file():
        raise DataError(f"manifest not found: {mpath}", file=mf)
    try:
        spec = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON: {exc}", file=mf) from None
    if not isinstance(spec, Mapping):
        raise DataError("manifest must be a JSON object", file=mf)
    fmt = spec.get("format")
    if fmt != MANIFEST_FORMAT:
        raise DataError(
            f"unknown format {fmt!r}; expected {MANIFEST_FORMAT!r}", file=mf, column="format"
        )
    base = mpath.parent

    def image(rel: Any, fieldname: str) -> Image:
        if not isinstance(rel, str) or not rel:
            raise DataError(f"field '{fieldname}' must be a file name", file=mf, column=fieldname)
        p = base / rel
        if not p.is_file():
            raise DataError(f"file not found: {p}", file=mf, column=fieldname)
        return load_nifti(p, where=f"{mf}, field '{fieldname}'")

    tissue = _field(spec, "tissue", "", mf)
    ref = image(_field(tissue, "mask", "tissue.", mf), "tissue.mask")
    shape, affine = ref.data.shape, ref.affine

    def same_grid(img: Image, fieldname: str) -> np.ndarray:
        if img.data.shape != shape:
            raise DataError(
                f"image shape {img.data.shape} differs from the mask's {shape}",
                file=mf, column=fieldname,
            )  # fmt: skip
        if not np.allclose(img.affine, affine, atol=_ATOL):
            sp, ref_sp = img.spacing, ref.spacing
            what = (
                "spacing"
                if not np.allclose(sp, ref_sp, atol=_ATOL)
                else "affine (orientation/origin)"
            )
            raise DataError(
                f"image {what} differs from the mask's: spacing {sp} vs {ref_sp} mm",
                file=mf, column=fieldname,
            )  # fmt: skip
        return img.data

    mask = ref.data > 0.5
    if not mask.any():
        raise DataError("tissue mask is empty", file=mf, column="tissue.mask")
    ratio = float(tissue.get("grey_white_diffusivity_ratio", 0.1))
    if not 0 <= ratio <= 1:
        raise DataError("must be in [0, 1]", file=mf, column="tissue.grey_white_diffusivity_ratio")
    if "white_matter" in tissue:
        wm = np.clip(
            same_grid(image(tissue["white_matter"], "tissue.white_matter"), "tissue.white_matter"),
            0,
            1,
        )
        gm = (
            np.clip(
                same_grid(image(tissue["grey_matter"], "tissue.grey_matter"), "tissue.grey_matter"),
                0,
                1,
            )
            if "grey_matter" in tissue
            else 1.0 - wm
        )
        total = np.maximum(wm + gm, 1e-12)
        diffusivity = np.where(mask, (wm + ratio * gm) / total, 0.0)
    else:
        diffusivity = mask.astype(float)

    adc_spec = spec.get("adc", {})
    free_water = float(adc_spec.get("free_water", FREE_WATER_ADC))
    adc_min = adc_spec.get("min")
    visits_spec = _field(spec, "visits", "", mf)
    if not isinstance(visits_spec, list) or not visits_spec:
        raise DataError("'visits' must be a non-empty list", file=mf, column="visits")
    visits = []
    for i, v in enumerate(visits_spec):
        tag = f"visits[{i}]."
        day = _field(v, "day", tag, mf)
        if not isinstance(day, int | float) or not math.isfinite(day):
            raise DataError("day must be a number", file=mf, column=tag + "day")
        roi = same_grid(image(_field(v, "roi", tag, mf), tag + "roi"), tag + "roi") > 0.5
        if "cellularity" in v:
            cell = np.clip(
                same_grid(image(v["cellularity"], tag + "cellularity"), tag + "cellularity"), 0, 1
            )
        else:
            adc = same_grid(image(_field(v, "adc", tag, mf), tag + "adc"), tag + "adc")
            try:
                cell = adc_to_cellularity(
                    adc,
                    roi,
                    free_water=free_water,
                    adc_min=None if adc_min is None else float(adc_min),
                )
            except DataError as exc:
                raise DataError(exc.reason, file=mf, column=tag + "adc") from None
        visits.append(Visit(float(day), np.where(mask, cell, 0.0), roi & mask))
    days = [v.day for v in visits]
    if any(b <= a for a, b in zip(days, days[1:], strict=False)):
        raise DataError(f"visit days {days} must increase", file=mf, column="visits")

    rt = spec.get("radiotherapy", {"plans": {}})
    plans = {}
    for name, p in _field(rt, "plans", "radiotherapy.", mf).items():
        tag = f"radiotherapy.plans.{name}."
        dmap = same_grid(image(_field(p, "dose_map", tag, mf), tag + "dose_map"), tag + "dose_map")
        if np.any(dmap < 0) or not np.all(np.isfinite(dmap)):
            raise DataError("dose map must be finite and >= 0", file=mf, column=tag + "dose_map")
        dpf = float(_field(p, "dose_per_fraction", tag, mf))
        plans[name] = RTPlan(name, dmap, _days(_field(p, "days", tag, mf), tag + "days", mf), dpf)
    delivered = rt.get("delivered", next(iter(plans), ""))
    if plans and delivered not in plans:
        raise DataError(f"delivered plan {delivered!r} is not among {sorted(plans)}", file=mf,
                        column="radiotherapy.delivered")  # fmt: skip

    chemo = spec.get("chemotherapy", {})
    cdays = _days(chemo.get("days", []), "chemotherapy.days", mf)
    cdoses = _days(
        chemo.get("relative_doses", [1.0] * len(cdays)), "chemotherapy.relative_doses", mf
    )
    if len(cdoses) != len(cdays):
        raise DataError(
            "needs one relative dose per day", file=mf, column="chemotherapy.relative_doses"
        )
    half_life = float(chemo.get("half_life_days", 1.8 / 24))
    voxel = float(np.prod(ref.spacing))
    if "carrying_capacity" in spec:
        theta = float(spec["carrying_capacity"])
    else:
        theta = carrying_capacity(voxel, float(spec.get("cell_radius_um", 5.0)))
    if not theta > 0:
        raise DataError("carrying capacity must be positive", file=mf, column="carrying_capacity")
    return SpatialPatient(
        patient=str(spec.get("patient", mpath.stem)), affine=affine, mask=mask,
        diffusivity=diffusivity, visits=tuple(visits), plans=plans, delivered=str(delivered),
        chemo_days=cdays, chemo_doses=cdoses, chemo_half_life=half_life,
        carrying_capacity=theta, truth=dict(spec.get("truth", {})), source=mf,
    )  # fmt: skip
