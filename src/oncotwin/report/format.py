"""Formatting for people: numbers, intervals, days and units as a clinician reads them.

Thousands are grouped with a narrow no-break space (U+202F): a thin space that never wraps
a number across lines. Negative numbers use the minus sign (U+2212).
"""

from __future__ import annotations

import math
import re
from typing import Any

THIN = "\u202f"  # narrow no-break space: thin, and keeps a number on one line
MINUS = "\u2212"
DASH = "\u2013"  # en dash, for ranges
MISSING = DASH

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def fmt_num(x: Any, sig: int = 3, *, group: bool = True, trim: bool = False) -> str:
    """`x` rounded to `sig` significant figures, with thin-space thousands separators.

    Very small or very large magnitudes (< 0.001 or >= 1e9) use "1.23 × 10⁻⁵". None and NaN
    give an en dash. `trim` drops trailing zeros (for exact values such as doses: "50", not
    "50.0").
    """
    if x is None:
        return MISSING
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return MISSING
    if math.isinf(v):
        return "∞" if v > 0 else f"{MINUS}∞"
    if v == 0:
        return "0"
    sign = MINUS if v < 0 else ""
    a = abs(v)
    exponent = math.floor(math.log10(a))
    if a < 1e-3 or a >= 1e9:
        mantissa = round(a / 10**exponent, sig - 1)
        if mantissa >= 10:  # 9.996 -> 10.0
            mantissa, exponent = mantissa / 10, exponent + 1
        m = f"{mantissa:.{sig - 1}f}"
        return f"{sign}{m} × 10{str(exponent).translate(_SUPERSCRIPT)}"
    decimals = sig - 1 - exponent
    r = round(a, decimals)
    if r != 0 and math.floor(math.log10(r)) > exponent:  # 999.7 -> 1000: one digit fewer
        decimals -= 1
        r = round(a, decimals)
    text = f"{r:,.{max(decimals, 0)}f}"
    if trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    text = text.replace(",", THIN if group else "")
    return sign + text


def fmt_int(x: Any) -> str:
    """`x` rounded to an integer, with thin-space thousands separators."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return MISSING
    v = round(float(x))
    return (MINUS if v < 0 else "") + f"{abs(v):,d}".replace(",", THIN)


def fmt_interval(lo: Any, hi: Any, sig: int = 3) -> str:
    """ "900–1 700" (an en dash; " to " when a bound is negative)."""
    a, b = fmt_num(lo, sig), fmt_num(hi, sig)
    joiner = " to " if a.startswith(MINUS) or b.startswith(MINUS) else DASH
    return f"{a}{joiner}{b}"


def fmt_day(t: Any) -> str:
    """A time in days as "day 30" or "day 30.5"."""
    if t is None or not math.isfinite(float(t)):
        return "day ?"
    v = round(float(t), 1)
    text = f"{v:.1f}".rstrip("0").rstrip(".")
    return f"day {text.replace('-', MINUS)}"


def fmt_days(d: Any) -> str:
    """A duration in days: "1 day", "28 days", "2.5 days"."""
    v = round(float(d), 1)
    text = f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{text} day" if text == "1" else f"{text} days"


def fmt_pct(p: Any, *, estimate: bool = False) -> str:
    """A probability (0-1) as a percentage: "93%", "<1%", ">99%".

    `estimate`: `p` is a Monte Carlo estimate, so 0 and 1 print as "<1%" and ">99%" (a
    finite number of draws cannot show certainty).
    """
    v = float(p)
    if not math.isfinite(v):
        return MISSING
    if 0 < v < 0.01 or (estimate and v == 0):
        return "<1%"
    if 0.99 < v < 1 or (estimate and v == 1):
        return ">99%"
    return f"{round(100 * v)}%"


def fmt_change(ratio: Any) -> str:
    """A ratio to a reference value in words: "2.5 times", "40% smaller", "about the same"."""
    r = float(ratio)
    if not math.isfinite(r) or r < 0:
        return MISSING
    if 0.95 <= r <= 1.05:
        return "about the same as"
    if r > 1:
        return f"{fmt_num(r, 2, trim=True)} times"
    return f"{fmt_num(100 * (1 - r), 2, trim=True)}% smaller than"


def fmt_level(level: float) -> str:
    """An interval level (0-1) as "90%"."""
    return f"{100 * level:g}%"


_UNIT_WORDS = {
    "1": "",
    "": "",
    "ul": "µL",
    "µl": "µL",
    "ml": "mL",
    "cc": "mL",
    "1/day": "/day",
    "1/d": "/day",
    "1/week": "/week",
    "1/h": "/h",
    "ng/ml": "ng/mL",
    "ug/l": "µg/L",
    "µg/l": "µg/L",
    "copies/ml": "copies/mL",
    "molecules/ml": "molecules/mL",
    "hge/ml": "hGE/mL",
    "photons/s": "photons/s",
    "p/s": "photons/s",
    "mg/m2": "mg/m²",
    "mg/m^2": "mg/m²",
}


def pretty_unit(unit: str | None, data_unit: str | None = None) -> str:
    """Unit as printed: "mm3" -> "mm³", "1/day" -> "/day", "ng/ml" -> "ng/mL", "1" -> "".

    `data_unit` replaces the placeholder unit "size" (parameters in the data's unit).
    """
    if unit is None:
        return ""
    u = str(unit).strip()
    if u == "size":
        return pretty_unit(data_unit) if data_unit is not None else "units of the data"
    low = u.lower()
    if low in _UNIT_WORDS:
        return _UNIT_WORDS[low]
    u = re.sub(r"(?<=[a-zA-Zµ])\^?3\b", "³", u)
    u = re.sub(r"(?<=[a-zA-Zµ])\^?2\b", "²", u)
    u = re.sub(r"(?<![a-zA-Z])ml\b", "mL", u)
    return u


NBSP = "\u00a0"


def with_unit(value: str, unit: str | None) -> str:
    """`value` and its pretty unit joined by a no-break space, so the unit never wraps onto
    the next line ("1 230 mm³"); nothing is added for dimensionless quantities."""
    u = pretty_unit(unit)
    return f"{value}{NBSP}{u}" if u else value
