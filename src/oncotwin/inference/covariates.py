"""Covariates of population models, read from a cohort's data.

A population's fixed effects need numbers per subject. From the data's covariate columns (the
columns constant within each subject, :meth:`oncotwin.data.PatientData.covariates`):

- a numeric column is used as it is (``age``);
- a categorical column becomes one indicator per level but the first in sorted order (``arm``
  with levels C and S gives ``arm=S``: 1 for S, 0 for C), the usual treatment coding; the
  levels are kept with the population, so a new patient is coded the same way;
- ``log_baseline`` is not a column: it is the log of the subject's first observed size
  (:func:`baseline_size`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from ..errors import DataError
from .problem import SubjectData

LOG_BASELINE = "log_baseline"


def baseline_size(subject: SubjectData) -> dict[str, float]:
    """The covariate population priors use: log of the first observed size.

    Growth slows as a tumour grows, so how fast a tumour will grow depends on how large it is;
    with size parameters relative to the first observation, only this covariate tells the
    population about absolute size.
    """
    return {LOG_BASELINE: math.log(subject.ref)}


def covariate_levels(columns: Sequence[str], table: pd.DataFrame) -> dict[str, list[str]]:
    """The levels of each categorical column among `columns` (sorted; the first is the
    reference), from the cohort's covariate table (one row per subject, index "id").

    Raises:
        DataError: a column the table does not have, or one with a single level.
    """
    levels: dict[str, list[str]] = {}
    for col in columns:
        if col == LOG_BASELINE:
            continue
        if col not in table.columns:
            have = ", ".join([LOG_BASELINE, *map(str, table.columns)])
            raise DataError(f"no covariate {col!r} (constant per patient); have: {have}",
                            column=col)  # fmt: skip
        values = table[col].dropna()
        if not pd.api.types.is_numeric_dtype(values):
            found = sorted(values.astype(str).unique())
            if len(found) < 2:
                raise DataError(f"covariate {col!r} has one level ({found}) in the cohort",
                                column=col)  # fmt: skip
            levels[col] = found
    return levels


def encode(
    columns: Sequence[str],
    table: pd.DataFrame,
    subjects: Sequence[SubjectData],
    levels: Mapping[str, Sequence[str]],
) -> dict[str, dict[str, float]]:
    """``{subject id: {covariate: value}}`` for a population fit or prior (see module doc).

    Args:
        columns: the covariates asked for (column names, or ``log_baseline``).
        table: the subjects' covariate table (index "id").
        subjects: the subjects.
        levels: categorical levels (from :func:`covariate_levels` on the fitted cohort).

    Raises:
        DataError: a subject without a value, a level the cohort did not have, or a
            non-numeric value in a numeric covariate.
    """
    out: dict[str, dict[str, float]] = {}
    for s in subjects:
        row: dict[str, float] = {}
        for col in columns:
            if col == LOG_BASELINE:
                row.update(baseline_size(s))
                continue
            value = table[col].get(s.id) if col in table.columns else None
            if value is None or pd.isna(value):
                raise DataError(f"patient {s.id!r} has no value for covariate {col!r}",
                                column=col)  # fmt: skip
            if col in levels:
                known = list(levels[col])
                if str(value) not in known:
                    raise DataError(f"patient {s.id!r}: {col} = {value!r} is not one of the "
                                    f"population's levels {known}", column=col)  # fmt: skip
                row.update({f"{col}={lv}": float(str(value) == lv) for lv in known[1:]})
            else:
                try:
                    row[col] = float(value)
                except (TypeError, ValueError):
                    raise DataError(f"patient {s.id!r}: covariate {col} = {value!r} is not a "
                                    "number", column=col) from None  # fmt: skip
        out[s.id] = row
    return out
