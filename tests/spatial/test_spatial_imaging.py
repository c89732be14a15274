"""NIfTI I/O, observation operators and manifests (oncotwin.data.imaging, data.phantom).

References: Hormuth DA et al. Phys Biol 2015;12:046006 and Sci Rep 2021;11:8520 (linear ADC ->
cellularity map); close packing density 0.7405 (Atuegwu NC et al. Transl Oncol 2013).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from oncotwin.data import imaging as im
from oncotwin.data.phantom import make_phantom, shipped_manifest, write_phantom
from oncotwin.errors import DataError


def test_nifti_round_trip_preserves_affine_spacing_and_data(tmp_path: Path) -> None:
    c, s = math.cos(0.3), math.sin(0.3)
    aff = np.array(
        [[1.5 * c, -2.0 * s, 0, -40.0], [1.5 * s, 2.0 * c, 0, 12.5], [0, 0, 3.0, 7.0], [0, 0, 0, 1]]
    )
    data = np.random.default_rng(1).random((6, 7, 5)).astype(np.float32)
    img = im.load_nifti(im.save_nifti(tmp_path / "a.nii.gz", data, aff))
    np.testing.assert_allclose(img.affine, aff, atol=1e-5)
    assert img.spacing == pytest.approx((1.5, 2.0, 3.0), abs=1e-6)
    np.testing.assert_array_equal(img.data, data.astype(np.float64))
    # integer storage with a scale factor (how the phantom stores ADC): error <= scale / 2
    adc = 0.6e-3 + 2.4e-3 * data
    back = im.load_nifti(im.save_nifti(tmp_path / "b.nii.gz", adc, aff, dtype=np.int16, scale=1e-6))
    assert np.max(np.abs(back.data - adc)) <= 0.5e-6 + 1e-12
    # 2D images are stored as one slice and come back 2D
    flat = im.load_nifti(im.save_nifti(tmp_path / "c.nii", data[:, :, 0], aff))
    assert flat.data.shape == (6, 7)


def test_adc_to_cellularity_hormuth_map() -> None:
    u = np.array([0.0, 0.25, 0.5, 1.0])
    adc = im.cellularity_to_adc(u, free_water=3e-3, adc_min=0.6e-3)
    np.testing.assert_allclose(adc, [3e-3, 2.4e-3, 1.8e-3, 0.6e-3])  # 3.0 - u * 2.4 (x1e-3)
    roi = np.array([True, True, True, False])
    np.testing.assert_allclose(im.adc_to_cellularity(adc, roi, adc_min=0.6e-3), [0, 0.25, 0.5, 0])
    # default ADC_min is the ROI minimum: the densest ROI voxel has cellularity 1
    assert im.adc_to_cellularity(adc, roi)[2] == pytest.approx(1.0)
    with pytest.raises(DataError, match="shape"):
        im.adc_to_cellularity(adc, roi[:3])


def test_carrying_capacity_volume_and_crop() -> None:
    # 1 mm^3 voxel, 5 um radius cells: 0.7405 / (4/3 pi 125e-9) = 1.4142e6 cells
    assert im.carrying_capacity(1.0, 5.0) == pytest.approx(1.41424e6, rel=1e-4)
    mask = np.zeros((10, 10, 10), bool)
    mask[2:5, 3:7, 4:5] = True
    assert im.mask_volume(mask, (1.0, 2.0, 3.0)) == 12 * 6.0
    box = im.crop_box(mask, (1.0, 2.0, 3.0), margin_mm=3.0)
    assert box == (slice(0, 8), slice(1, 9), slice(3, 6))
    aff = im.crop_affine(im.affine_from_spacing((1.0, 2.0, 3.0)), box)
    np.testing.assert_allclose(aff[:3, 3], [0.0, 2.0, 9.0])
    with pytest.raises(DataError, match="empty"):
        im.crop_box(np.zeros((3, 3), bool), (1.0, 1.0), 1.0)


@pytest.fixture(scope="module")
def small_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ph = make_phantom(
        (24, 28), (4.0, 4.0), seed=2, visit_days=(0.0, 14.0, 40.0), history_days=150.0
    )
    return write_phantom(tmp_path_factory.mktemp("phantom"), ph)


def test_phantom_manifest_loads_with_truth(small_manifest: Path) -> None:
    pt = im.load_manifest(small_manifest)
    assert pt.mask.shape == (24, 28) and pt.spacing == pytest.approx((4.0, 4.0))
    assert [v.day for v in pt.visits] == [0.0, 14.0, 40.0]
    assert set(pt.plans) == {"standard", "hypofractionated"}
    assert pt.plans["standard"].total_dose == pytest.approx(60.0)
    assert pt.plans["hypofractionated"].total_dose == pytest.approx(40.05)
    assert pt.truth["params"]["D"] == 0.2
    # observed cells inside the ROI are close to the truth's (noise averages out)
    obs = pt.cell_count(pt.visits[0].cellularity)
    assert obs == pytest.approx(pt.truth["total_cells"][0], rel=0.1)


def _broken(src: Path, dst: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    shutil.copytree(src.parent, dst)
    spec = json.loads((dst / "manifest.json").read_text())
    edit(spec, dst)
    (dst / "manifest.json").write_text(json.dumps(spec))
    return dst / "manifest.json"


def test_bad_manifests_give_clear_errors(small_manifest: Path, tmp_path: Path) -> None:
    def missing(spec, d):  # type: ignore[no-untyped-def]
        spec["visits"][1]["adc"] = "nope.nii.gz"

    with pytest.raises(DataError, match=r"visits\[1\]\.adc.*file not found"):
        im.load_manifest(_broken(small_manifest, tmp_path / "a", missing))

    def shape(spec, d):  # type: ignore[no-untyped-def]
        im.save_nifti(d / "bad.nii.gz", np.zeros((24, 27)), im.affine_from_spacing((4.0, 4.0)))
        spec["visits"][2]["roi"] = "bad.nii.gz"

    with pytest.raises(DataError, match=r"visits\[2\]\.roi.*shape \(24, 27\) differs"):
        im.load_manifest(_broken(small_manifest, tmp_path / "b", shape))

    def spacing(spec, d):  # type: ignore[no-untyped-def]
        im.save_nifti(d / "bad.nii.gz", np.zeros((24, 28)), im.affine_from_spacing((4.0, 3.0)))
        spec["tissue"]["white_matter"] = "bad.nii.gz"

    with pytest.raises(DataError, match=r"tissue\.white_matter.*spacing"):
        im.load_manifest(_broken(small_manifest, tmp_path / "c", spacing))

    def order(spec, d):  # type: ignore[no-untyped-def]
        spec["visits"][2]["day"] = 10

    with pytest.raises(DataError, match="must increase"):
        im.load_manifest(_broken(small_manifest, tmp_path / "d", order))

    def no_visits(spec, d):  # type: ignore[no-untyped-def]
        del spec["visits"]

    with pytest.raises(DataError, match="missing required field 'visits'"):
        im.load_manifest(_broken(small_manifest, tmp_path / "e", no_visits))
    with pytest.raises(DataError, match="manifest not found"):
        im.load_manifest(tmp_path / "none.json")


def test_shipped_phantom_is_small_and_loads() -> None:
    folder = shipped_manifest().parent
    assert sum(p.stat().st_size for p in folder.iterdir()) < 2_000_000
    pt = im.load_manifest(shipped_manifest())
    assert pt.mask.ndim == 3 and len(pt.visits) == 5
