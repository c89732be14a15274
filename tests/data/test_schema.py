"""PatientData: the canonical table, its views, version and immutability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oncotwin.data import EVENT_COLUMNS, PatientData
from oncotwin.errors import DataError


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["p-10", "p-2", "p-2", "p-2", "p-10", "p-2", "p-10"],
        "time": [0.0, 0.0, 0.0, 21.0, 21.0, 42.0, 42.0],
        "evid": [0, 1, 0, 0, 0, 0, 0],
        "dv": [100.0, None, 50.0, 40.0, 120.0, 35.0, 150.0],
        "amt": [None, 75.0, None, None, None, None, None],
        "agent": [None, "docetaxel", None, None, None, None, None],
        "arm": ["B", "A", "A", "A", "B", "A", "B"],
        "visit": [1, 1, 1, 2, 2, 3, 3],
    })  # fmt: skip


@pytest.fixture
def data() -> PatientData:
    return PatientData.from_frame(frame(), kind="sld", unit="mm", source="trial")


def test_columns_types_and_order(data):
    ev = data.events
    assert list(ev.columns) == [*EVENT_COLUMNS, "arm", "visit"]
    assert EVENT_COLUMNS[:5] == ("id", "time", "evid", "dv", "mdv")
    for c in ("time", "dv", "amt", "rate", "dur", "on", "lloq"):
        assert ev[c].dtype == np.float64, c
    for c in ("evid", "mdv", "cmt", "cens"):
        assert ev[c].dtype == np.int64, c
    # natural id order, then time, then evid: the observation at a dose time comes first
    assert ev[["id", "time", "evid"]].values.tolist() == [
        ["p-2", 0.0, 0], ["p-2", 0.0, 1], ["p-2", 21.0, 0], ["p-2", 42.0, 0],
        ["p-10", 0.0, 0], ["p-10", 21.0, 0], ["p-10", 42.0, 0],
    ]  # fmt: skip
    dose = ev[ev["evid"] == 1].iloc[0]
    assert (dose["mdv"], dose["kind"], dose["unit"], dose["agent"]) == (1, "", "mg", "docetaxel")
    assert dose["rate"] == 0.0 and dose["dur"] == 0.0 and dose["cmt"] == 1
    obs = ev[ev["evid"] == 0]
    assert set(obs["agent"]) == {""} and obs["amt"].isna().all() and obs["on"].isna().all()


def test_basic_properties(data):
    assert data.source == "trial"
    assert data.ids == ["p-2", "p-10"]
    assert len(data) == 2
    assert data.kinds == {"sld"}
    assert data.covariate_columns == ["arm", "visit"]
    text = repr(data)
    assert "subjects=2" in text and "observations=6" in text and data.version in text


def test_views(data):
    assert len(data.observations()) == 6
    assert data.observations("p-10")["dv"].tolist() == [100.0, 120.0, 150.0]
    assert data.treatments()["agent"].tolist() == ["docetaxel"]
    assert data.treatments("p-10").empty
    cov = data.covariates()
    assert list(cov.index) == ["p-2", "p-10"] and cov.index.name == "id"
    assert list(cov.columns) == ["arm"]  # "visit" changes within subjects
    assert cov.loc["p-10", "arm"] == "B"


def test_subject_select_and_unknown_ids(data):
    one = data.subject("p-10")
    assert one.ids == ["p-10"] and len(one.events) == 3 and one.source == "trial"
    assert data.select(["p-10", "p-2"]).ids == ["p-2", "p-10"]  # table order
    with pytest.raises(DataError, match="unknown subject id.*'p-3'"):
        data.subject("p-3")
    with pytest.raises(DataError, match="'x'"):
        data.observations("x")


def test_events_cannot_change_the_object(data):
    before = data.version
    ev = data.events
    ev.loc[0, "dv"] = -1.0
    ev["extra"] = 1
    assert data.events.loc[0, "dv"] == 50.0
    assert "extra" not in data.events.columns
    assert data.version == before
    with pytest.raises(AttributeError):
        data.source = "other"  # type: ignore[misc]


def test_version_is_a_content_hash(data):
    assert len(data.version) == 16 and int(data.version, 16) >= 0
    same = PatientData.from_frame(frame().iloc[::-1], kind="sld", source="elsewhere")
    assert same.version == data.version and same == data and hash(same) == hash(data)
    changed = frame()
    changed.loc[0, "dv"] = 101.0
    other = PatientData.from_frame(changed, kind="sld")
    assert other.version != data.version and other != data


def test_constructor_validates_like_from_frame():
    assert PatientData(frame()) == PatientData.from_frame(frame())
    bad = frame().astype({"time": object})
    bad.loc[3, "time"] = "soon"
    with pytest.raises(DataError, match="not a finite number") as info:
        PatientData(bad)
    assert info.value.row == 5 and info.value.column == "time" and info.value.file == "<frame>"


def test_from_frame_rows_are_positions_plus_two():
    bad = frame().set_index(pd.Index([10, 20, 30, 40, 50, 60, 70]))
    bad.loc[60, "dv"] = -35.0
    with pytest.raises(DataError) as info:
        PatientData.from_frame(bad, kind="volume", source="mine")
    assert (info.value.file, info.value.row, info.value.column) == ("mine", 7, "dv")
    assert "mine, row 7, column 'dv'" in str(info.value)


def test_from_frame_of_events_is_idempotent(data):
    again = PatientData.from_frame(data.events)
    pd.testing.assert_frame_equal(again.events, data.events)
    assert again.version == data.version


def test_concat_merges_new_observations(data):
    new = PatientData.from_frame(
        pd.DataFrame({"id": ["p-10", "p-7"], "time": [63.0, 0.0], "dv": [170.0, 9.0],
                      "arm": ["B", "C"], "visit": [4, 1]}),
        kind="sld", source="visit-4",
    )  # fmt: skip
    both = data.concat(new)
    assert both.ids == ["p-2", "p-7", "p-10"]
    assert both.observations("p-10")["time"].tolist() == [0.0, 21.0, 42.0, 63.0]
    assert both.source == "trial + visit-4"
    assert PatientData.concat([data, new]) == both
    with pytest.raises(DataError, match="same id, time, evid, kind and agent"):
        data.concat(data)
    with pytest.raises(DataError, match="nothing to concatenate"):
        PatientData.concat([])


def test_truncate_is_what_was_known_then(data):
    early = data.truncate(21.0)
    assert early.events["time"].max() == 21.0
    assert len(early.observations()) == 4
    assert data.truncate(0.0).ids == ["p-2", "p-10"]
    with pytest.raises(DataError, match="no usable observation"):
        data.truncate(-1.0)
    # a subject whose only data by then is a dose is dropped
    shifted = frame()
    shifted.loc[2, "time"] = 5.0
    d = PatientData.from_frame(shifted, kind="sld")
    assert d.truncate(1.0).ids == ["p-10"]
