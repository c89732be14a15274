"""Canonical units and conversions.

Inside oncotwin: time in days, tumour volume in mm^3, lengths (diameters, sums of longest
diameters) in mm, radiation dose in Gy, drug amounts in mg, activity in GBq. Biomarkers keep
their clinical units (PSA ng/mL, ctDNA copies/mL, bioluminescence photons/s). Conversion happens
once, at ingest.
"""

from __future__ import annotations

from .errors import DataError

TIME_TO_DAYS: dict[str, float] = {
    "day": 1.0, "days": 1.0, "d": 1.0,
    "week": 7.0, "weeks": 7.0, "wk": 7.0, "w": 7.0,
    "month": 365.25 / 12, "months": 365.25 / 12, "mo": 365.25 / 12,
    "year": 365.25, "years": 365.25, "yr": 365.25, "y": 365.25,
    "hour": 1 / 24, "hours": 1 / 24, "h": 1 / 24,
}  # fmt: skip

# kind -> (canonical unit, {accepted unit spelling: factor to canonical})
KINDS: dict[str, tuple[str, dict[str, float]]] = {
    "volume": ("mm3", {"mm3": 1.0, "mm^3": 1.0, "ul": 1.0, "µl": 1.0,
                       "cm3": 1e3, "cm^3": 1e3, "ml": 1e3, "cc": 1e3}),
    "sld": ("mm", {"mm": 1.0, "cm": 10.0}),
    "diameter": ("mm", {"mm": 1.0, "cm": 10.0}),
    "anc": ("10^9/l", {"10^9/l": 1.0, "x10^9/l": 1.0, "g/l": 1.0, "10^3/ul": 1.0,
                       "10^3/µl": 1.0, "cells/ul": 1e-3, "cells/µl": 1e-3}),
    "psa": ("ng/ml", {"ng/ml": 1.0, "ug/l": 1.0, "µg/l": 1.0}),
    "ctdna": ("copies/ml", {"copies/ml": 1.0, "molecules/ml": 1.0, "hge/ml": 1.0}),
    "bioluminescence": ("photons/s", {"photons/s": 1.0, "p/s": 1.0}),
    "size": ("1", {"1": 1.0, "": 1.0, "arbitrary": 1.0}),
}  # fmt: skip

KIND_LABELS: dict[str, str] = {
    "volume": "tumour volume",
    "sld": "sum of longest diameters",
    "diameter": "tumour diameter",
    "psa": "PSA",
    "ctdna": "ctDNA",
    "bioluminescence": "bioluminescence",
    "size": "tumour size",
}

KIND_ALIASES: dict[str, str] = {
    "tumour_volume": "volume", "tumor_volume": "volume", "vol": "volume",
    "sum_of_diameters": "sld", "sum_longest_diameters": "sld",
    "tumour_size": "size", "tumor_size": "size",
}  # fmt: skip


def canonical_kind(kind: str) -> str:
    """Canonical name of an observed quantity ("tumor_volume" -> "volume").

    Raises:
        DataError: the kind is not one oncotwin knows.
    """
    k = kind.strip().lower()
    k = KIND_ALIASES.get(k, k)
    if k not in KINDS:
        raise DataError(f"unknown observation kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    return k


def to_canonical(kind: str, unit: str) -> tuple[str, float]:
    """Canonical unit of `kind` and the factor that converts `unit` into it.

    Raises:
        DataError: the unit is not known for this kind.
    """
    k = canonical_kind(kind)
    canonical, accepted = KINDS[k]
    u = unit.strip().lower().replace(" ", "")
    if u not in accepted:
        raise DataError(
            f"unknown unit {unit!r} for {k}; accepted: {', '.join(sorted(set(accepted)))}"
        )
    return canonical, accepted[u]


def time_factor(unit: str) -> float:
    """Days per `unit` of time ("week" -> 7).

    Raises:
        DataError: unknown time unit.
    """
    u = unit.strip().lower()
    if u not in TIME_TO_DAYS:
        raise DataError(f"unknown time unit {unit!r}; accepted: {', '.join(sorted(TIME_TO_DAYS))}")
    return TIME_TO_DAYS[u]
