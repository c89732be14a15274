"""Coding of population covariates from a cohort's data (oncotwin.inference.covariates)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from oncotwin.errors import DataError
from oncotwin.inference.covariates import covariate_levels, encode
from oncotwin.inference.problem import SubjectData
from oncotwin.schedule import Schedule


def subject(sid: str, first: float) -> SubjectData:
    t = np.array([0.0, 7.0])
    return SubjectData(sid, t, np.array([first, 2 * first]), np.zeros(2, bool), Schedule(),
                       "volume", "mm3")  # fmt: skip


TABLE = pd.DataFrame(
    {"arm": ["S", "C", "X"], "age": [61.0, 70.0, 55.0], "site": ["lung"] * 3},
    index=pd.Index(["a", "b", "c"], name="id"),
)
SUBJECTS = [subject("a", 50.0), subject("b", 80.0), subject("c", 20.0)]


def test_numeric_categorical_and_baseline_covariates_are_coded():
    levels = covariate_levels(["arm", "age", "log_baseline"], TABLE)
    assert levels == {"arm": ["C", "S", "X"]}  # sorted; C is the reference level
    coded = encode(["arm", "age", "log_baseline"], TABLE, SUBJECTS, levels)
    assert coded["a"] == {"arm=S": 1.0, "arm=X": 0.0, "age": 61.0,
                          "log_baseline": pytest.approx(math.log(50.0))}  # fmt: skip
    assert coded["b"]["arm=S"] == coded["b"]["arm=X"] == 0.0  # the reference level
    assert coded["c"]["arm=X"] == 1.0


def test_bad_covariates_name_the_patient_and_the_column():
    with pytest.raises(DataError, match="no covariate 'stage'.*have: log_baseline, arm, age"):
        covariate_levels(["stage"], TABLE)
    with pytest.raises(DataError, match="'site' has one level"):
        covariate_levels(["site"], TABLE)
    levels = {"arm": ["C", "S"]}  # a new patient with a level the cohort never had
    with pytest.raises(DataError, match=r"patient 'c': arm = 'X' is not one of .*\['C', 'S'\]"):
        encode(["arm"], TABLE, SUBJECTS, levels)
    missing = TABLE.assign(age=[61.0, np.nan, 55.0])
    with pytest.raises(DataError, match="patient 'b' has no value for covariate 'age'"):
        encode(["age"], missing, SUBJECTS, {})
    with pytest.raises(DataError, match="patient 'a' has no value for covariate 'age'"):
        encode(["age"], TABLE.drop(index="a"), SUBJECTS, {})
