"""Reading and writing event tables: validation messages, NONMEM conventions, round trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oncotwin.data import EVENT_COLUMNS, PatientData, read_events, write_events
from oncotwin.errors import DataError


def write(tmp_path, text: str, name: str = "events.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_error(path, row, column, words, **kwargs) -> DataError:
    """read_events raises (returns nothing) and the message names file, row and column."""
    with pytest.raises(DataError) as info:
        read_events(path, **kwargs)
    err = info.value
    message = str(err)
    assert (err.file, err.row, err.column) == (str(path), row, column), message
    assert str(path) in message
    if row is not None:
        assert f"row {row}" in message
    if column is not None:
        assert f"'{column}'" in message
    assert words in message
    return err


# -- validation errors: (file text, row, column, words in the message, read_events kwargs) ------
GOOD = "id,time,dv\na,0,1\na,1,2\n"
ERRORS = {
    "missing ID column": ("time,dv\n0,1\n", 1, "ID", "missing required column ID", {}),
    "missing TIME column": ("id,dv\na,1\n", 1, "TIME", "missing required column TIME", {}),
    "missing DV column": ("id,time,evid,amt\na,0,1,5\na,1,0,.\n", 1, "DV", "missing column DV", {}),
    "missing AMT column": ("id,time,evid,dv\na,0,0,1\na,1,1,.\n", 1, "AMT", "missing column AMT",
                           {}),
    "missing ON column": ("id,time,evid,dv\na,0,0,1\na,1,2,.\n", 1, "ON", "missing column ON", {}),
    "non-numeric time": ("id,time,dv\na,0,1\na,one,2\n", 3, "time", "not a finite number: 'one'",
                         {}),
    "non-numeric dv": ("ID,TIME,DV\na,0,1\na,1,2x\n", 3, "DV", "not a finite number: '2x'", {}),
    "infinite dv": ("id,time,dv\na,0,1\na,1,inf\n", 3, "dv", "not a finite number", {}),
    "empty time": ("id,time,dv\na,0,1\na,,2\n", 3, "time", "missing time", {}),
    "NONMEM missing time": ("id,time,dv\na,0,1\na,.,2\n", 3, "time", "missing time", {}),
    "empty id": ("id,time,dv\na,0,1\n,1,2\n", 3, "id", "missing subject id", {}),
    "empty dv on observation": ("id,time,evid,dv\na,0,0,1\na,1,0,\n", 3, "dv", "missing DV", {}),
    "missing amt on dose": ("id,time,evid,dv,amt\na,0,0,1,.\na,1,1,.,.\n", 3, "amt",
                            "missing AMT", {}),
    "negative volume": ("id,time,dv\na,0,1\na,1,-2\n", 3, "dv", "volume must be > 0",
                        {"kind": "volume"}),
    "zero volume": ("id,time,dv\na,0,1\na,1,0\n", 3, "dv", "volume must be > 0",
                    {"kind": "volume"}),
    "zero sld": ("id,time,dv,kind,unit\na,0,1,sld,mm\na,1,0,sld,cm\n", 3, "dv", "sld must be > 0",
                 {}),
    "negative psa": ("id,time,dv,kind\na,0,1,psa\na,1,-0.1,psa\n", 3, "dv", "psa must be >= 0",
                     {}),
    "negative amt": ("id,time,evid,dv,amt\na,0,0,1,.\na,1,1,.,-5\n", 3, "amt",
                     "AMT must not be negative", {}),
    "unknown kind": ("id,time,dv,kind\na,0,1,volume\na,1,2,weight\n", 3, "kind",
                     "unknown observation kind 'weight'", {}),
    "unknown unit": ("id,time,dv,kind,unit\na,0,1,volume,mm3\na,1,2,volume,litre\n", 3, "unit",
                     "unknown unit 'litre' for volume", {}),
    "unknown dose unit": ("id,time,evid,dv,amt,unit\na,0,0,1,.,.\na,1,1,.,5,pints\n", 3, "unit",
                          "unknown dose unit 'pints'", {}),
    "unknown evid": ("ID,TIME,EVID,DV,AMT\na,0,0,1,.\na,1,3,.,5\n", 3, "EVID", "unknown EVID '3'",
                     {}),
    "missing evid": ("ID,TIME,EVID,DV\na,0,0,1\na,1,.,2\n", 3, "EVID", "missing EVID", {}),
    "on not 0/1": ("id,time,evid,dv,agent,on\na,0,0,1,.,.\na,1,2,.,adt,2\n", 3, "on",
                   "ON must be 0 or 1", {}),
    "on missing on a switch": ("id,time,evid,dv,agent,on\na,0,0,1,.,.\na,1,2,.,adt,.\n", 3, "on",
                               "ON must be 0 or 1", {}),
    "mdv not 0/1": ("id,time,dv,mdv\na,0,1,0\na,1,2,2\n", 3, "mdv", "MDV must be 0 or 1", {}),
    "cens not 0/1": ("id,time,dv,cens\na,0,1,0\na,1,2,3\n", 3, "cens", "CENS must be 0 or 1", {}),
    "censored dv differs from lloq": ("id,time,dv,cens,lloq\na,0,5,0,.\na,1,2,1,1\n", 3, "dv",
                                      "must equal LLOQ", {}),
    "negative lloq": ("id,time,dv,loq\na,0,5,-1\n", 2, "loq", "LLOQ must not be negative", {}),
    "negative rate": ("id,time,evid,dv,amt,rate\na,0,0,1,.,.\na,1,1,.,5,-1\n", 3, "rate",
                      "RATE must not be negative", {}),
    "rate x dur != amt": ("id,time,evid,dv,amt,rate,dur\na,0,0,1,.,.,.\na,1,1,.,10,5,1\n", 3,
                          "rate", "RATE x DUR must equal AMT", {}),
    "ADDL without II": ("id,time,evid,dv,amt,addl\na,0,0,1,.,.\na,1,1,.,5,3\n", 3, "II",
                        "needs an interval II", {}),
    "fractional ADDL": ("id,time,evid,dv,amt,ii,addl\na,0,0,1,.,.,.\na,1,1,.,5,7,1.5\n", 3, "addl",
                        "ADDL must be an integer", {}),
    "bad CMT": ("id,time,dv,cmt\na,0,1,0\n", 2, "cmt", "CMT must be a positive integer", {}),
    "duplicated observation": ("id,time,dv\na,0,1\nb,0,1\na,0,2\n", 4, "time",
                               "same id, time, evid, kind and agent as row 2", {}),
    "duplicated dose from ADDL": (
        "id,time,evid,dv,amt,ii,addl\na,0,0,1,.,.,.\na,0,1,.,5,7,2\na,14,1,.,5,.,.\n", 4, "time",
        "as row 3", {}),
    "subject without observations": ("id,time,evid,dv,amt\na,0,0,1,.\nb,0,1,.,5\nb,9,1,.,5\n",
                                     3, "id", "subject 'b' has no usable observation", {}),
    "subject with only MDV=1": ("id,time,dv,mdv\na,0,1,0\nb,0,1,1\n", 3, "id", "subject 'b'", {}),
    "both DV and AMT without EVID": ("id,time,dv,amt\na,0,1,.\na,1,2,5\n", 3, "amt",
                                     "both DV and AMT", {}),
    "neither DV nor AMT without EVID": ("id,time,dv,amt\na,0,1,.\na,1,.,.\n", 3, "dv",
                                        "neither DV nor AMT", {}),
    "ragged row": ("id,time,dv\na,0,1\na,1,2,3\n", 3, None, "4 fields, but the header has 3", {}),
    "column twice": ("id,ID,time,dv\na,a,0,1\n", 1, "ID", "column given twice", {}),
    "alias twice": ("id,time,dv,lloq,LOQ\na,0,1,.,.\n", 1, "LOQ", "column given twice", {}),
    "header only": ("id,time,dv\n", 1, None, "no data rows", {}),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ERRORS))
def test_each_validation_error_names_file_row_and_column(tmp_path, case):
    text, row, column, words, kwargs = ERRORS[case]
    assert_error(write(tmp_path, text), row, column, words, **kwargs)


def test_empty_file(tmp_path):
    assert_error(write(tmp_path, "\n\n"), None, None, "empty file")


def test_unreadable_file(tmp_path):
    assert_error(tmp_path / "absent.csv", None, None, "cannot read the file")


def test_bad_arguments_name_the_file(tmp_path):
    path = write(tmp_path, GOOD)
    assert_error(path, None, None, "unknown time unit 'fortnight'", time_unit="fortnight")
    assert_error(path, None, None, "unknown observation kind 'mass'", kind="mass")
    assert_error(path, None, None, "unknown unit 'kg' for volume", kind="volume", unit="kg")


def test_first_error_in_file_order_is_reported(tmp_path):
    # the negative volume (row 3) is checked after the bad number (row 5) but comes first
    text = "id,time,dv\na,0,1\na,1,-2\na,2,3\na,zz,4\n"
    assert_error(write(tmp_path, text), 3, "dv", "volume must be > 0", kind="volume")
    # a duplicate (row 3) is found in a later pass than a bad unit (row 4), yet comes first
    text = "id,time,dv,unit\na,0,1,mm3\na,0,1,mm3\na,1,1,furlong\n"
    assert_error(write(tmp_path, text), 3, "time", "as row 2", kind="volume")
    # in the same row the leftmost column wins
    text = "id,time,dv\na,0,1\na,x,y\n"
    assert_error(write(tmp_path, text), 3, "time", "not a finite number")


def test_subject_with_a_bad_row_reports_the_row_not_the_subject(tmp_path):
    text = "id,time,evid,dv,amt\na,0,0,1,.\nb,0,1,.,5\nb,1,0,oops,.\n"
    assert_error(write(tmp_path, text), 4, "dv", "not a finite number: 'oops'")


def test_zero_allowed_where_documented(tmp_path):
    text = "id,time,dv,kind,mdv\na,0,1,volume,0\na,1,0,volume,1\na,2,0,psa,0\na,3,0,ctdna,0\n"
    data = read_events(write(tmp_path, text))
    ev = data.events
    assert list(ev["mdv"]) == [0, 1, 0, 0]
    assert len(data.observations()) == 3  # the MDV=1 row is kept but not usable


# -- NONMEM conventions, separators, units --------------------------------------------------
def test_nonmem_whitespace_file_with_dots_and_mixed_case(tmp_path):
    text = (
        "# a NONMEM data set\n"
        "Id  Time  Dv    Evid Amt  Cmt Rate Mdv\n"
        "1   0     .     1    100  1   .    1\n"
        "\n"
        "1   0.5   12.5  0    .    2   .    0\n"
        "1   24    .     0    .    2   .    1\n"
        "2   0     .     1    50   1   25   1\n"
        "2   1     3.0   0    .    2   0    0\n"
    )
    data = read_events(write(tmp_path, text, "nm.dat"), time_unit="hour", kind="psa")
    ev = data.events
    assert data.ids == ["1", "2"]
    assert list(ev["evid"]) == [1, 0, 0, 1, 0]
    np.testing.assert_allclose(ev["time"], [0, 0.5 / 24, 1.0, 0, 1 / 24])
    assert list(ev["mdv"]) == [1, 0, 1, 1, 0]
    assert list(ev["cmt"]) == [1, 2, 2, 1, 2]
    assert ev["kind"].tolist() == ["", "psa", "psa", "", "psa"]
    assert ev["unit"].tolist() == ["mg", "ng/ml", "ng/ml", "mg", "ng/ml"]
    assert ev["agent"].tolist() == ["drug", "", "", "drug", ""]
    # infusion of 50 mg at 25 mg/hour: 600 mg/day for 2 h = 1/12 day
    dose2 = ev[(ev["id"] == "2") & (ev["evid"] == 1)].iloc[0]
    assert dose2["rate"] == pytest.approx(600.0)
    assert dose2["dur"] == pytest.approx(2 / 24)
    assert len(data.observations()) == 2


def test_missing_evid_is_inferred(tmp_path):
    text = "ID,TIME,DV,AMT,MDV\np,0,.,200,1\np,0,30,.,0\np,21,.,200,.\np,42,25,0,0\n"
    ev = read_events(write(tmp_path, text), kind="sld").events
    assert ev[["time", "evid"]].values.tolist() == [[0, 0], [0, 1], [21, 1], [42, 0]]
    assert ev.loc[ev["evid"] == 1, "amt"].tolist() == [200.0, 200.0]


def test_tab_and_explicit_separator(tmp_path):
    tab = write(tmp_path, "ID\tTime\tDV\tArm\n0\t7.0\t50.0\tx\n0\t11.0\t309.5\tx\n", "t.txt")
    data = read_events(tab, kind="volume")
    assert data.events["dv"].tolist() == [50.0, 309.5]
    assert data.covariate_columns == ["Arm"]
    semi = write(tmp_path, "id;time;dv\na;0;1,5\n", "s.csv")
    with pytest.raises(DataError, match="not a finite number: '1,5'"):
        read_events(semi)
    pipe = write(tmp_path, "id|time|dv\na|0|1.5\n", "p.csv")
    assert read_events(pipe, sep="|").events["dv"].tolist() == [1.5]
    quoted = write(tmp_path, 'id,time,dv,note\na,0,1,"big, round"\n', "q.csv")
    assert read_events(quoted).events["note"].tolist() == ["big, round"]


def test_ii_addl_expand_into_explicit_doses(tmp_path):
    text = (
        "id,time,evid,dv,amt,ii,addl,agent,unit\n"
        "a,0,0,10,.,.,.,.,.\n"
        "a,0,1,.,75,3,4,docetaxel,mg/m2\n"
        "a,2,1,.,2,1,2,rt,Gy\n"
        "a,20,0,12,.,.,.,.,.\n"
    )
    data = read_events(write(tmp_path, text), time_unit="week", kind="sld")
    doc = data.treatments()
    taxel = doc[doc["agent"] == "docetaxel"]
    assert taxel["time"].tolist() == [0.0, 21.0, 42.0, 63.0, 84.0]
    assert set(taxel["unit"]) == {"mg/m2"} and set(taxel["amt"]) == {75.0}
    assert doc.loc[doc["agent"] == "rt", "time"].tolist() == [14.0, 21.0, 28.0]
    assert data.observations()["time"].tolist() == [0.0, 140.0]
    assert not {"ii", "addl"} & set(data.events.columns)


def test_units_are_converted_to_canonical(tmp_path):
    text = (
        "id,time,dv,kind,unit,lloq,cens\na,0,1.5,volume,cm3,.,0\na,1,0.2,sld,cm,0.2,1\n"
        "a,2,7,volume,.,.,0\na,3,0.05,volume,ml,.,1\n"
    )
    ev = read_events(write(tmp_path, text), time_unit="weeks").events
    assert ev["time"].tolist() == [0.0, 7.0, 14.0, 21.0]
    assert ev["dv"].tolist() == [1500.0, 2.0, 7.0, 50.0]
    assert ev["unit"].tolist() == ["mm3", "mm", "mm3", "mm3"]
    assert ev["cens"].tolist() == [0, 1, 0, 1]
    np.testing.assert_allclose(ev["lloq"], [np.nan, 2.0, np.nan, 50.0])  # lloq := dv if absent


def test_unit_argument_applies_to_rows_without_unit(tmp_path):
    path = write(tmp_path, "id,time,dv\na,0,1.5\na,7,2.5\n")
    ev = read_events(path, kind="volume", unit="cm3").events
    assert ev["dv"].tolist() == [1500.0, 2500.0]
    assert set(ev["kind"]) == {"volume"} and set(ev["unit"]) == {"mm3"}
    default = read_events(path).events
    assert set(default["kind"]) == {"size"} and set(default["unit"]) == {"1"}


def test_dose_units_and_switches(tmp_path):
    text = (
        "id,time,evid,dv,amt,unit,agent,on\n"
        "a,0,0,5,.,.,.,.\n"
        "a,0,1,.,7.4,GBq,lu-psma,.\n"
        "a,0,1,.,500,MBq,ga,.\n"
        "a,0,2,.,.,.,adt,1\n"
        "a,30,2,.,.,.,adt,0\n"
        "a,40,1,.,0.5,g,.,.\n"
    )
    ev = read_events(write(tmp_path, text), kind="psa").events
    trt = ev[ev["evid"] > 0].reset_index(drop=True)
    assert trt["agent"].tolist() == ["ga", "lu-psma", "adt", "adt", "drug"]
    assert trt["unit"].tolist() == ["GBq", "GBq", "", "", "mg"]
    np.testing.assert_allclose(trt["amt"], [0.5, 7.4, np.nan, np.nan, 500.0])
    np.testing.assert_allclose(trt["on"], [np.nan, np.nan, 1.0, 0.0, np.nan])
    assert trt["mdv"].tolist() == [1] * 5 and trt["dv"].isna().all()


# -- round trip ------------------------------------------------------------------------------
def rich_table() -> PatientData:
    frame = pd.DataFrame({
        "ID": ["p-10", "p-2", "p-2", "p-2", "p-2", "p-10", "p-10", "p-2"],
        "TIME": [0.0, -7.0, 0.0, 0.0, 0.1 + 0.2, 3.0, 1 / 3, 14.0],
        "EVID": [0, 0, 1, 2, 1, 0, 1, 0],
        "DV": [12.0, 8.5, None, None, None, 0.5, None, 1 / 7],
        "AMT": [None, None, 75.0, None, 10.0, None, 5.0, None],
        "RATE": [None, None, 150.0, None, None, None, None, None],
        "AGENT": [None, None, "docetaxel", "adt", "rt", None, None, None],
        "UNIT": ["mm", "mm", "mg/m2", None, "Gy", "mm", None, "mm"],
        "ON": [None, None, None, 1, None, None, None, None],
        "CENS": [0, 0, 0, 0, 0, 1, 0, 0],
        "LLOQ": [None, None, None, None, None, 0.5, None, None],
        "arm": ["B", "A", "A", "A", "A", "B", "B", "A"],
        "age": [70, 61, 61, 61, 61, 70, 70, 61],
        "weight": [80.5, None, 70.0, 70.0, 70.0, 80.5, 80.5, 70.0],
        "site": ["lung", "liver", "liver", "liver", "liver", "lung", "lung", "bone"],
    })  # fmt: skip
    return PatientData.from_frame(frame, kind="sld", source="rich")


def test_round_trip_gives_equal_table_and_version(tmp_path):
    data = rich_table()
    path = write_events(data, tmp_path / "out.csv")
    back = read_events(path)
    pd.testing.assert_frame_equal(back.events, data.events)
    assert back == data and back.version == data.version
    assert back.source == str(path)
    again = write_events(back, tmp_path / "again.csv")
    assert again.read_bytes() == path.read_bytes()
    assert list(back.events.columns[: len(EVENT_COLUMNS)]) == list(EVENT_COLUMNS)


def test_write_leaves_no_temporary_file(tmp_path):
    write_events(rich_table(), tmp_path / "x.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["x.csv"]


@pytest.mark.parametrize("header", ["#ID TIME DV BLQ LOQ", "# ID TIME DV BLQ LOQ"])
def test_nonmem_censoring_and_commented_header(tmp_path, header):
    text = f"{header}\n1 0 5 0 .\n1 7 . 1 0.5\n1 14 0.4 1 .\n"
    ev = read_events(write(tmp_path, text, "m3.dat"), kind="psa").events
    assert ev["cens"].tolist() == [0, 1, 1]
    assert ev["dv"].tolist() == [5.0, 0.5, 0.4]  # DV "." on a censored row takes the LLOQ
    np.testing.assert_allclose(ev["lloq"], [np.nan, 0.5, 0.4])
    assert ev["mdv"].tolist() == [0, 0, 0]
