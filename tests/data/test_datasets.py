"""Shipped datasets: counts as documented in each PROVENANCE.md, and the loaders' choices."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import oncotwin.datasets as alias
from oncotwin.data import PatientData, datasets
from oncotwin.errors import DataError

SHARED = Path("/work/shared/data")  # the originals, where this checkout has them
FILES = resources.files("oncotwin.data").joinpath("files")


def raw(folder: str, file: str, **kwargs) -> pd.DataFrame:
    with FILES.joinpath(folder, file).open("r", encoding="utf-8") as f:
        return pd.read_csv(f, **kwargs)


# name -> (subjects, usable observations, dose rows, switch rows, censored rows)
COUNTS = {
    "vaghi2020-lung": (20, 188, 0, 0, 0),  # PROVENANCE: 20 animals, 188 rows
    "vaghi2020-breast": (66, 581, 0, 0, 0),  # 583 rows less the 2 zero volumes
    "vaghi2020-breast-fluo": (8, 64, 0, 0, 0),
    "ffcd2000-colorectal": (150, 906, 0, 0, 34),  # 906 rows, 34 at the censoring floor
    "inspire-pembrolizumab": (74, 336, 857, 0, 20),  # derived in test_inspire_counts
    "sauer2023-xenografts": (8, 157, 0, 4, 0),  # 159 rows - 1 typo duplicate - 1 zero (mdv 1)
}


@pytest.mark.parametrize("name", list(COUNTS))
def test_counts(name):
    data = datasets.load(name)
    ev = data.events
    subjects, n_obs, n_dose, n_switch, n_cens = COUNTS[name]
    assert len(data) == subjects == datasets.DATASETS[name].subjects
    assert len(data.observations()) == n_obs
    assert (ev["evid"] == 1).sum() == n_dose and (ev["evid"] == 2).sum() == n_switch
    assert ev["cens"].sum() == n_cens
    info = datasets.DATASETS[name]
    assert data.kinds == {info.kind} and set(data.observations()["unit"]) == {info.unit}
    assert data.source == f"dataset:{name}"


def test_registry_and_alias_module():
    names = [d.name for d in datasets.list_datasets()]
    assert names == list(COUNTS)
    assert alias.load is datasets.load and alias.DATASETS is datasets.DATASETS
    assert alias.list_datasets() == datasets.list_datasets()
    assert datasets.load("vaghi2020-lung") is datasets.load("vaghi2020-lung")  # cached
    with pytest.raises(DataError, match="unknown dataset 'nope'; known: vaghi2020-lung"):
        datasets.load("nope")


@pytest.mark.parametrize("name", list(COUNTS))
def test_provenance_is_shipped(name):
    text = datasets.provenance(name)
    assert text.startswith("# ") and "Source repo" in text and "icense" in text


def test_files_are_byte_for_byte_copies():
    shipped = {p.name: p for p in FILES.iterdir()}
    assert set(shipped) == {"README.md", *(d.folder for d in datasets.list_datasets())}
    if not SHARED.is_dir():
        pytest.skip("originals not available")
    for original in sorted(SHARED.rglob("*")):
        if original.is_file():
            copy = FILES.joinpath(*original.relative_to(SHARED).parts)
            digest = hashlib.sha256(copy.read_bytes()).hexdigest()
            assert digest == hashlib.sha256(original.read_bytes()).hexdigest(), original


def test_vaghi_ids_times_and_dropped_zeros():
    lung = datasets.load("vaghi2020-lung")
    assert lung.ids[:3] == ["lung-0", "lung-1", "lung-2"] and lung.ids[-1] == "lung-19"
    first = lung.observations("lung-0").iloc[0]
    assert (first["time"], first["dv"]) == (7.0, 50.02179539848303)
    breast_raw = raw("vaghi2020-plumky", "breast_vol_data.txt", sep="\t")
    assert len(breast_raw) == 583 and (breast_raw["Observation"] == 0).sum() == 2
    assert (datasets.load("vaghi2020-breast").observations()["dv"] > 0).all()
    fluo = datasets.load("vaghi2020-breast-fluo")
    assert fluo.observations("fluo-0")["dv"].iloc[0] == 1931000000.0


def test_ffcd_back_transform_and_censoring():
    data = datasets.load("ffcd2000-colorectal")
    obs = data.observations("1")
    # first row of colorectalLongi.csv: id 1, year 0, tumor.size 5.22767935551004
    assert obs["time"].iloc[0] == 0.0
    assert obs["dv"].iloc[0] == pytest.approx((0.3 * 5.22767935551004 + 1) ** (1 / 0.3))
    assert obs["dv"].iloc[0] == pytest.approx(23.2, abs=1e-9)  # sizes are 0.1 steps
    assert obs["time"].iloc[1] == pytest.approx(0.21311475 * 365.25)
    cens = data.events[data.events["cens"] == 1]
    raw_sizes = raw("ffcd2000-05-colorectal-frailtypack", "colorectalLongi.csv")
    # censored rows are SLD 0 (stored as -1/0.3); the limit is the recording step, 0.1, just
    # below the smallest positive size in the file (0.2)
    assert (raw_sizes["tumor.size"] <= -3.33).sum() == len(cens) == 34
    assert np.allclose(raw_sizes.loc[raw_sizes["tumor.size"] <= -3.33, "tumor.size"], -1 / 0.3)
    assert data.events.loc[data.events["cens"] == 0, "dv"].min() == pytest.approx(0.2)
    assert np.allclose(cens["lloq"], 0.1) and np.allclose(cens["dv"], 0.1)
    assert data.events.loc[data.events["cens"] == 0, "lloq"].isna().all()
    cov = data.covariates()
    assert list(cov.columns) == ["arm", "age", "who_ps", "prev_resection"]
    assert cov.loc["1"].tolist() == ["S", "60-69 years", 0, "No"]
    assert set(cov["arm"]) == {"S", "C"}


def test_inspire_counts():
    """Derive the INSPIRE counts from the two CSV files independently of the loader.

    ctDNA.csv: 270 rows, 74 patients, 8 NA size_change -> 262 follow-up sizes; all 74 have
    l_size in pembrolizumab.csv, so 74 baseline rows: 336 observations. Doses every 21 days
    from day 0 to the last observation: sum of floor(last / 21) + 1 = 857.
    """
    folder = "inspire-pembrolizumab-ctDNA-reportRmd"
    sizes, patients = raw(folder, "ctDNA.csv"), raw(folder, "pembrolizumab.csv")
    assert len(sizes) == 270 and sizes["id"].nunique() == 74 and len(patients) == 94
    kept = sizes.dropna(subset=["size_change"])
    assert (
        len(kept) == 262
        and patients.set_index("id").loc[sizes["id"].unique(), "l_size"].notna().all()
    )
    last_day = kept.groupby("id")["time"].max().reindex(sizes["id"].unique()).fillna(0) * 7
    assert int((np.floor(last_day / 21 + 1e-12) + 1).sum()) == 857
    assert (kept["size_change"] == -100).sum() == 20


def test_inspire_sizes_doses_and_complete_responses():
    data = datasets.load("inspire-pembrolizumab")
    obs = data.observations("INS-A-002")
    assert obs[["time", "dv"]].values.tolist() == [[0.0, 140.0], [8.11904761904762 * 7,
                                                   pytest.approx(140.0 * 1.057)]]  # fmt: skip
    doses = data.treatments("INS-A-002")
    assert doses["time"].tolist() == [0.0, 21.0, 42.0]  # last size at 56.8 days
    assert set(doses["agent"]) == {"pembrolizumab"} and set(doses["amt"]) == {200.0}
    cr = data.events[data.events["cens"] == 1]
    assert set(cr["dv"]) == {1.0} and set(cr["lloq"]) == {1.0} and set(cr["unit"]) == {"mm"}
    cov = data.covariates()
    assert list(cov.columns) == ["cohort", "pdl1", "tmb", "baseline_ctdna", "age", "sex"]
    assert cov.loc["INS-A-002", "sex"] == "Male"
    only_baseline = [i for i in data.ids if len(data.observations(i)) == 1]
    assert len(only_baseline) == 2  # their only follow-up size was NA


def test_sauer_switches_typo_and_zero():
    data = datasets.load("sauer2023-xenografts")
    assert data.ids == [f"mouse-{n}" for n in (529, 530, 532, 537, 541, 542, 543, 544)]
    sw = data.treatments()
    assert sw["id"].tolist() == ["mouse-530", "mouse-541", "mouse-543", "mouse-544"]
    assert set(sw["time"]) == {0.0} and set(sw["on"]) == {1.0} and set(sw["agent"]) == {"treatment"}
    m530 = data.observations("mouse-530")
    assert m530.loc[m530["time"] == 71, "dv"].tolist() == [168.7789237]
    zero = data.events[(data.events["id"] == "mouse-541") & (data.events["time"] == 113)]
    assert zero[["dv", "mdv"]].values.tolist() == [[0.0, 1]]
    assert data.observations()["time"].min() < 0  # pre-treatment growth is kept
    cov = data.covariates()
    assert cov.loc["mouse-529", "arm"] == "Control" and cov.loc["mouse-530", "arm"] == "Treatment"


def test_loaded_data_round_trips(tmp_path):
    from oncotwin.data import read_events, write_events

    for name in COUNTS:
        data = datasets.load(name)
        back = read_events(write_events(data, tmp_path / f"{name}.csv"))
        assert isinstance(back, PatientData) and back.version == data.version, name
