"""Real longitudinal oncology datasets shipped with oncotwin, as :class:`PatientData`.

Each dataset keeps its original files and PROVENANCE.md (source, licence, column meanings)
under ``oncotwin/data/files/<folder>/``. :func:`load` turns them into the canonical event
table; every choice made on the way (dropped rows, censoring, added dose rows) is listed in
the dataset's ``description`` and in docs/data.md.

>>> from oncotwin import datasets
>>> data = datasets.load("vaghi2020-lung")
>>> len(data), len(data.observations())
(20, 188)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import numpy as np
import pandas as pd

from ..errors import DataError
from .schema import PatientData

BOXCOX_LAMBDA = 0.3  # FFCD 2000-05 tumour sizes are Box-Cox transformed with lambda 0.3
FFCD_THRESHOLD = -3.33  # left-censoring threshold on the transformed scale (frailtypack)
SLD_ZERO_LLOQ = 1.0  # mm: detection limit given to a complete response (SLD 0), INSPIRE
# FFCD sizes are recorded in steps of 0.1 (smallest positive value 0.2): a recorded 0 is below
# 0.1. The back-transformed threshold itself (1e-10) is a Box-Cox artefact, not a detection limit
FFCD_ZERO_LLOQ = 0.1


@dataclass(frozen=True)
class DatasetInfo:
    """What a shipped dataset is.

    Attributes:
        name: the name :func:`load` takes.
        title: one line.
        folder: folder under ``oncotwin/data/files``.
        kind, unit: observation kind and canonical unit of ``dv``.
        subjects: number of subjects after loading.
        treatment: what the subjects received.
        licence: as stated upstream.
        citation: the paper to cite.
        description: what the loader does with the files (dropped rows, censoring, doses).
    """

    name: str
    title: str
    folder: str
    kind: str
    unit: str
    subjects: int
    treatment: str
    licence: str
    citation: str
    description: str


def _files(folder: str) -> Traversable:
    return resources.files("oncotwin.data").joinpath("files", folder)


def _csv(folder: str, file: str, **kwargs: object) -> pd.DataFrame:
    with _files(folder).joinpath(file).open("r", encoding="utf-8") as f:
        return pd.read_csv(f, **kwargs)  # type: ignore[call-overload]


def _vaghi(file: str, prefix: str, kind: str, unit: str, name: str) -> PatientData:
    """Untreated growth, time in days after injection; zero observations are dropped."""
    raw = _csv("vaghi2020-plumky", file, sep="\t")
    raw = raw[raw["Observation"] > 0]  # the plumky code drops the 2 zero volumes of breast
    frame = pd.DataFrame({
        "id": [f"{prefix}-{i}" for i in raw["ID"]], "time": raw["Time"], "evid": 0,
        "dv": raw["Observation"], "kind": kind, "unit": unit,
    })  # fmt: skip
    return PatientData.from_frame(frame, source=f"dataset:{name}")


def _ffcd(name: str) -> PatientData:
    """SLD in mm (presumed) from the Box-Cox scale; y <= -3.33 (SLD 0) is left-censored.

    Every censored row is stored as -1/0.3, the transform of SLD 0 (a complete response). Its
    back-transformed threshold, 1e-10, would tell a log-scale error model that the tumour shrank
    by 23 natural-log units; the censoring limit is the data's recording step instead (as
    INSPIRE's complete responses are censored at 1 mm).
    """
    raw = _csv("ffcd2000-05-colorectal-frailtypack", "colorectalLongi.csv")
    y = raw["tumor.size"].to_numpy(dtype=float)
    lloq = FFCD_ZERO_LLOQ
    cens = y <= FFCD_THRESHOLD
    sld = np.where(cens, lloq, (BOXCOX_LAMBDA * np.maximum(y, FFCD_THRESHOLD) + 1)
                   ** (1 / BOXCOX_LAMBDA))  # fmt: skip
    frame = pd.DataFrame({
        "id": raw["id"].astype(str), "time": raw["year"], "evid": 0, "dv": sld,
        "kind": "sld", "unit": "mm", "lloq": np.where(cens, lloq, np.nan),
        "cens": cens.astype(int), "arm": raw["treatment"], "age": raw["age"],
        "who_ps": raw["who.PS"], "prev_resection": raw["prev.resection"],
    })  # fmt: skip
    return PatientData.from_frame(frame, source=f"dataset:{name}", time_unit="year")


def _inspire(name: str) -> PatientData:
    """Absolute SLD (mm) from % change and baseline l_size; pembrolizumab 200 mg q21d."""
    folder = "inspire-pembrolizumab-ctDNA-reportRmd"
    sizes = _csv(folder, "ctDNA.csv")
    covs = ["cohort", "pdl1", "tmb", "baseline_ctdna", "age", "sex"]
    patients = _csv(folder, "pembrolizumab.csv").dropna(subset=["l_size"])
    sizes = sizes.dropna(subset=["size_change"]).drop(columns="cohort")
    sizes = sizes.merge(patients[["id", "l_size"]], on="id", how="inner")
    followed = patients[patients["id"].isin(set(_csv(folder, "ctDNA.csv")["id"]))]
    baseline = pd.DataFrame({"id": followed["id"], "time": 0.0, "sld": followed["l_size"]})
    later = pd.DataFrame({"id": sizes["id"], "time": sizes["time"] * 7.0,
                          "sld": sizes["l_size"] * (1 + sizes["size_change"] / 100)})  # fmt: skip
    obs = pd.concat([baseline, later], ignore_index=True)
    zero = obs["sld"] <= 0  # complete response: censored at a 1 mm detection limit
    obs = obs.assign(evid=0, dv=np.where(zero, SLD_ZERO_LLOQ, obs["sld"]), kind="sld", unit="mm",
                     cens=zero.astype(int), lloq=np.where(zero, SLD_ZERO_LLOQ, np.nan))  # fmt: skip
    last = obs.groupby("id")["time"].max()
    doses = pd.DataFrame(
        [(i, t) for i, end in last.items() for t in np.arange(0.0, end + 1e-9, 21.0)],
        columns=["id", "time"],
    ).assign(evid=1, amt=200.0, unit="mg", agent="pembrolizumab")
    frame = pd.concat([obs.drop(columns="sld"), doses], ignore_index=True)
    frame = frame.merge(patients[["id", *covs]], on="id", how="left")
    return PatientData.from_frame(frame, source=f"dataset:{name}")


def _sauer(name: str) -> PatientData:
    """Volumes (mm3) around treatment start (day 0); a switch row for treated mice."""
    raw = _csv("sauer2023-xenografts-biPOD", "xenografts.csv")
    # file line 30 (mouse 530, day 71, 1687.79) repeats line 29 (168.78) with the decimal
    # point moved one place: a typo; we keep line 29.
    raw = raw[~((raw["mouse"] == 530) & (raw["time"] == 71) & (raw["tumour_volume"] > 1000))]
    ids = "mouse-" + raw["mouse"].astype(str)
    obs = pd.DataFrame({
        "id": ids, "time": raw["time"].astype(float), "evid": 0, "dv": raw["tumour_volume"],
        "mdv": (raw["tumour_volume"] <= 0).astype(int),  # one 0 mm3 (mouse 541, day 113)
        "kind": "volume", "unit": "mm3", "arm": raw["treatment_group"],
    })  # fmt: skip
    treated = obs.loc[obs["arm"] == "Treatment", ["id", "arm"]].drop_duplicates()
    switches = treated.assign(time=0.0, evid=2, agent="treatment", on=1.0)
    frame = pd.concat([obs, switches], ignore_index=True)
    return PatientData.from_frame(frame, source=f"dataset:{name}")


_VAGHI_CITE = (
    "Vaghi C, et al. Population modeling of tumor growth curves and the reduced Gompertz model "
    "improve prediction of the age of experimental tumors. PLoS Comput Biol 16(2):e1007178 "
    "(2020). doi:10.1371/journal.pcbi.1007178"
)
_VAGHI_LICENCE = "GPL-3.0 (plumky repository); Zenodo originals, licence unverified"

DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo(
            "vaghi2020-lung", "Lewis lung carcinoma volumes in 20 untreated mice",
            "vaghi2020-plumky", "volume", "mm3", 20, "none (untreated growth)",
            _VAGHI_LICENCE, _VAGHI_CITE + "; Benzekry S, et al. PLoS Comput Biol 10(8):e1003800 "
            "(2014)",
            "lung_vol_data.txt; ids 'lung-<ID>'; time = days after injection; 188 observations.",
        ),
        DatasetInfo(
            "vaghi2020-breast", "LM2-4LUC+ breast tumour volumes in 66 untreated mice",
            "vaghi2020-plumky", "volume", "mm3", 66, "none (untreated growth)",
            _VAGHI_LICENCE, _VAGHI_CITE,
            "breast_vol_data.txt; ids 'breast-<ID>'; the 2 rows with volume 0 are dropped, as "
            "the published plumky code does, leaving 581 observations.",
        ),
        DatasetInfo(
            "vaghi2020-breast-fluo", "MDA-MB-231 bioluminescence in 8 untreated mice",
            "vaghi2020-plumky", "bioluminescence", "photons/s", 8, "none (untreated growth)",
            _VAGHI_LICENCE, _VAGHI_CITE,
            "breast_fluo_data.txt; ids 'fluo-<ID>'; 64 observations in photons/s.",
        ),
        DatasetInfo(
            "ffcd2000-colorectal", "FFCD 2000-05 metastatic colorectal cancer: SLD over time",
            "ffcd2000-05-colorectal-frailtypack", "sld", "mm", 150,
            "sequential (S) vs combination (C) chemotherapy; no dosing times",
            "GPL (>= 2.0) (frailtypack)",
            "Ducreux M, et al. Lancet Oncol 2011;12:1032-44; Krol A, et al. Biometrics "
            "2016;72:907-916",
            "colorectalLongi.csv, 906 observations; time = year x 365.25 days; "
            "SLD = (0.3 y + 1)^(1/0.3) mm (units presumed); rows with y <= -3.33 (34 rows, all "
            "stored as -1/0.3, i.e. SLD 0) are left-censored with lloq = dv = 0.1, the "
            "recording step of the sizes (the back-transformed threshold, 1e-10, is a Box-Cox "
            "artefact); covariates arm, age, who_ps, prev_resection. "
            "Caveat: sizes come in 0.1 steps with a baseline median of 10.7 (min 1.2), which "
            "fits cm better than mm; the unit is unverified.",
        ),
        DatasetInfo(
            "inspire-pembrolizumab", "INSPIRE: tumour size under pembrolizumab, 74 patients",
            "inspire-pembrolizumab-ctDNA-reportRmd", "sld", "mm", 74,
            "pembrolizumab 200 mg every 3 weeks", "MIT (reportRmd)",
            "Bratman SV, et al. Nature Cancer 2020;1:873-881",
            "ctDNA.csv (tumour size) + pembrolizumab.csv; time weeks x 7 days; SLD = l_size x "
            "(1 + size_change/100) mm plus a baseline observation l_size at day 0; the 8 rows "
            "with no size_change are dropped (2 patients keep only their baseline); patients "
            "without l_size would be dropped (none are); SLD 0 (complete response, 20 rows) is "
            "left-censored at 1 mm (cens 1, lloq 1, dv 1); dose rows 200 mg pembrolizumab "
            "every 21 days from day 0 up to the last observation; covariates cohort, pdl1, "
            "tmb, baseline_ctdna, age, sex. 336 observations, 857 dose rows.",
        ),
        DatasetInfo(
            "sauer2023-xenografts", "Xenograft volumes before and after treatment start",
            "sauer2023-xenografts-biPOD", "volume", "mm3", 8, "control vs treatment from day 0",
            "GPL (>= 3) (biPOD)", "Sauer et al., EMBO Mol Med 2023, doi:10.15252/emmm.202215729",
            "xenografts.csv; ids 'mouse-<n>'; time in days, 0 = treatment start; covariate "
            "arm; treated mice get an EVID 2 row (agent 'treatment', on 1) at day 0. The "
            "duplicate at mouse 530 day 71 (1687.79, a decimal typo of 168.78) is dropped; the "
            "0 mm3 of mouse 541 day 113 is kept with mdv 1. 158 rows, 157 usable.",
        ),
    ]
}  # fmt: skip

_LOADERS: dict[str, Callable[[str], PatientData]] = {
    "vaghi2020-lung": lambda n: _vaghi("lung_vol_data.txt", "lung", "volume", "mm3", n),
    "vaghi2020-breast": lambda n: _vaghi("breast_vol_data.txt", "breast", "volume", "mm3", n),
    "vaghi2020-breast-fluo": lambda n: _vaghi(
        "breast_fluo_data.txt", "fluo", "bioluminescence", "photons/s", n
    ),
    "ffcd2000-colorectal": _ffcd,
    "inspire-pembrolizumab": _inspire,
    "sauer2023-xenografts": _sauer,
}


def list_datasets() -> list[DatasetInfo]:
    """The shipped datasets, in a fixed order."""
    return list(DATASETS.values())


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}", file=name)
    return DATASETS[name]


@functools.cache
def load(name: str) -> PatientData:
    """The dataset `name` as validated :class:`PatientData` (source "dataset:<name>").

    The result is cached; it is immutable, so sharing it is safe.

    Raises:
        DataError: unknown name (the message lists the known ones).
    """
    _info(name)
    return _LOADERS[name](name)


def provenance(name: str) -> str:
    """The PROVENANCE.md of the dataset's folder: source, commit, licence, columns, units.

    Raises:
        DataError: unknown name.
    """
    folder = _info(name).folder
    return _files(folder).joinpath("PROVENANCE.md").read_text(encoding="utf-8")
