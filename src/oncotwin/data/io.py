"""Read and write event tables: CSV, tab- or whitespace-separated, NONMEM style.

:func:`normalise` is the single validator behind :func:`read_events` and
:meth:`PatientData.from_frame`: it turns a raw table (column names in any case, "." for
missing, II/ADDL repeated doses, any time and DV unit) into the canonical event table, or
raises the :class:`~oncotwin.errors.DataError` that comes first in file order. Nothing is
half-loaded. The format is described in docs/data.md.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .. import units
from ..errors import DataError
from .schema import DOSE, EVENT_COLUMNS, OBSERVATION, SWITCH, PatientData

ALIASES = {"loq": "lloq", "blq": "cens"}
INPUT_COLUMNS = (*EVENT_COLUMNS, "ii", "addl")
NUMERIC = ("time", "evid", "dv", "mdv", "amt", "cmt", "rate", "dur", "on", "lloq", "cens",
           "ii", "addl")  # fmt: skip
MISSING = {"", ".", "na", "nan"}  # "." is NONMEM's missing value, "NA" R's
# dose unit (lower case) -> (canonical dose unit, factor to it)
DOSE_UNITS = {"mg": ("mg", 1.0), "g": ("mg", 1e3), "ug": ("mg", 1e-3), "µg": ("mg", 1e-3),
              "mg/m2": ("mg/m2", 1.0), "mg/m^2": ("mg/m2", 1.0), "mg/kg": ("mg/kg", 1.0),
              "gy": ("Gy", 1.0), "cgy": ("Gy", 0.01), "gbq": ("GBq", 1.0),
              "mbq": ("GBq", 1e-3)}  # fmt: skip
POSITIVE_KINDS = ["volume", "sld", "diameter", "bioluminescence"]  # dv > 0 unless MDV = 1
NON_NEGATIVE_KINDS = ["psa", "ctdna"]  # dv >= 0: an undetectable marker may be recorded as 0


class _Problems:
    """Collects the earliest row of each failed check; raises the earliest of all."""

    def __init__(self, source: str, lines: np.ndarray, order: dict[str, int]) -> None:
        self.source, self.lines, self.order = source, lines, order
        self.found: list[tuple[int, int, int, str, str]] = []
        self.bad = np.zeros(len(lines), dtype=bool)  # rows with any problem

    def at(self, line: int, column: str, message: str) -> None:
        self.found.append((line, self.order.get(column, -1), len(self.found), message, column))

    def rows(self, mask: np.ndarray, column: str, message: str | Callable[[int], str]) -> None:
        """Record the earliest row of `mask`; `message` is text or a function of its index."""
        mask = np.asarray(mask, dtype=bool)
        self.bad |= mask
        idx = np.flatnonzero(mask)
        if idx.size:
            i = int(idx[np.argmin(self.lines[idx])])
            self.at(int(self.lines[i]), column, message(i) if callable(message) else message)

    def raise_first(self) -> None:
        if self.found:
            row, _, _, message, column = min(self.found)
            raise DataError(message, file=self.source, row=row, column=column)


def _numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(floats with NaN where missing or bad, missing mask, bad mask: present but no number)."""
    if pd.api.types.is_bool_dtype(values):
        values = values.astype(object)
    x = np.array(pd.to_numeric(values, errors="coerce"), dtype=float)
    if not pd.api.types.is_numeric_dtype(values):
        # pandas' text parser may round the last digit (0.30000000000000004 -> 0.3); NumPy's
        # conversion is correctly rounded, so a written table reads back bit for bit.
        ok = np.isfinite(x)
        x[ok] = np.asarray(values[ok].astype(str).str.strip(), dtype=str).astype(float)
    missing, bad = np.zeros(len(x), dtype=bool), np.zeros(len(x), dtype=bool)
    idx = np.flatnonzero(~np.isfinite(x))  # only these cells need a closer look
    if idx.size:
        cells = values.iloc[idx].astype(object)
        text = cells.where(cells.notna(), "").astype(str).str.strip().str.lower()
        is_missing = text.isin(MISSING).to_numpy()
        missing[idx], bad[idx] = is_missing, ~is_missing
    x[bad] = np.nan
    return x, missing, bad


def _text(values: pd.Series) -> np.ndarray:
    """Stripped strings, "" for missing ("", ".", "NA"); 1.0 -> "1" for numeric ids."""
    na = values.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        x = values.to_numpy(dtype=float, na_value=np.nan)
        whole = np.isfinite(x) & (x == np.round(x))
        out = np.where(whole, np.nan_to_num(x).astype(np.int64).astype(str), x.astype(str))
    else:
        out = values.astype(object).where(~na, "").astype(str).str.strip().to_numpy()
    out = out.astype(object)
    out[na | np.isin(out, ["", ".", "NA"])] = ""
    return out


def _extra(values: pd.Series) -> pd.Series:
    """A covariate column: kept if typed; from text, numbers if every present cell is one."""
    if values.dtype != object and not pd.api.types.is_string_dtype(values):
        return values
    x, missing, bad = _numbers(values)
    if not bad.any() and not missing.all():
        # integers stay integers, "2.0" stays a float: a written table reads back the same
        ints = not missing.any() and values.astype(str).str.fullmatch(r"\s*[+-]?\d+\s*").all()
        return pd.Series(x.astype(np.int64) if ints else x)
    return pd.Series([t if t != "" else None for t in _text(values)])


def _quoting(template: str, values: pd.Series) -> Callable[[int], str]:
    """A message naming the cell as written: ``template.format(values[i])``."""
    return lambda i: template.format(values.iloc[i])


def _natural_key(s: str) -> tuple:
    """Sort key putting "p-2" before "p-10"."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)), s


def normalise(
    raw: pd.DataFrame,
    lines: np.ndarray,
    *,
    source: str,
    time_unit: str = "day",
    kind: str | None = None,
    unit: str | None = None,
) -> pd.DataFrame:
    """Validate a raw event table; return the canonical, sorted table (docs/data.md).

    Args:
        raw: the table as read; column names are case-insensitive.
        lines: line number of each row in its file (header = line 1), for error messages.
        source: file name used in error messages.
        time_unit: unit of TIME, II and DUR (and the time part of RATE); converted to days.
        kind: observation kind of rows without a KIND value (default "size").
        unit: DV (and LLOQ) unit of rows without a UNIT value (default: the kind's canonical
            unit).

    Raises:
        DataError: the problem that comes first in file order.
    """
    lines = np.asarray(lines, dtype=np.int64)
    try:
        tf = units.time_factor(time_unit)
        default_kind = units.canonical_kind(kind or "size")
        if unit is not None and kind is not None:
            units.to_canonical(default_kind, unit)
    except DataError as e:
        raise DataError(f"{e.reason} (function argument)", file=source) from None

    # -- columns -----------------------------------------------------------------------
    names: dict[str, str] = {}  # canonical -> header as written
    extras: list = []
    for c in raw.columns:
        key = ALIASES.get(str(c).strip().lower(), str(c).strip().lower())
        if key in names or (key not in INPUT_COLUMNS and c in extras):
            raise DataError(
                f"column given twice ({names.get(key, c)!r} and {c!r})",
                file=source,
                row=1,
                column=str(c),
            )
        if key in INPUT_COLUMNS:
            names[key] = str(c)
        else:
            extras.append(c)
    for required in ("id", "time"):
        if required not in names:
            raise DataError(
                f"missing required column {required.upper()} (any case)",
                file=source,
                row=1,
                column=required.upper(),
            )
    if len(raw) == 0:
        raise DataError("no data rows", file=source, row=1)
    n = len(raw)
    p = _Problems(source, lines, {str(c): i for i, c in enumerate(raw.columns)})
    name = {k: names.get(k, k.upper()) for k in INPUT_COLUMNS}  # column name in messages
    col = {k: raw[names[k]].reset_index(drop=True) for k in names}

    num, given, miss = {}, {}, {}
    for k in NUMERIC:
        if k in col:
            x, missing, bad = _numbers(col[k])
            p.rows(bad, name[k], _quoting("not a finite number: {!r}", col[k]))
            num[k], given[k], miss[k] = x, ~missing & ~bad, missing
        else:
            num[k], given[k], miss[k] = np.full(n, np.nan), np.zeros(n, bool), np.zeros(n, bool)
    txt = {k: _text(col[k]) if k in col else np.full(n, "", dtype=object)
           for k in ("id", "kind", "unit", "agent")}  # fmt: skip
    p.rows(txt["id"] == "", name["id"], "missing subject id")
    p.rows(miss["time"], name["time"], "missing time")
    time = num["time"] * tf

    # -- evid --------------------------------------------------------------------------
    mdv_in = num["mdv"]
    if "evid" in col:
        p.rows(miss["evid"], name["evid"], "missing EVID")
        unknown = given["evid"] & ~np.isin(num["evid"], [0, 1, 2])
        p.rows(
            unknown,
            name["evid"],
            lambda i: (
                f"unknown EVID {col['evid'].iloc[i]!r}; "
                "accepted: 0 observation, 1 dose, 2 treatment on/off"
            ),
        )
        evid = np.where(given["evid"] & ~unknown, num["evid"], -1).astype(np.int64)
    else:  # NONMEM without EVID: a row with AMT and no usable DV is a dose
        has_amt = given["amt"] & (np.nan_to_num(num["amt"]) != 0)
        p.rows(
            has_amt & given["dv"] & (mdv_in != 1),
            name["amt"],
            "row has both DV and AMT; add an EVID column (or MDV=1 on dose rows)",
        )
        p.rows(
            miss["dv"] & miss["amt"] & (mdv_in != 1),
            name["dv"],
            "row has neither DV nor AMT (and there is no EVID column)",
        )
        evid = np.where(has_amt & (~given["dv"] | (mdv_in == 1)), DOSE, OBSERVATION)
    obs, dosing, switch = evid == OBSERVATION, evid == DOSE, evid == SWITCH
    for k, needed, what in (
        ("dv", obs, "observation rows (EVID 0)"),
        ("amt", dosing, "dose rows (EVID 1)"),
        ("on", switch, "treatment on/off rows (EVID 2)"),
    ):
        if k not in col and needed.any():
            p.at(1, k.upper(), f"missing column {k.upper()}, needed for {what}")

    # -- observations: mdv, kind and unit, dv, censoring --------------------------------
    p.rows(given["mdv"] & ~np.isin(mdv_in, [0, 1]), name["mdv"], "MDV must be 0 or 1")
    mdv = np.where(obs, given["mdv"] & (mdv_in == 1), True).astype(np.int64)
    p.rows(given["cens"] & ~np.isin(num["cens"], [0, 1]), name["cens"], "CENS must be 0 or 1")
    cens = (obs & (num["cens"] == 1)).astype(np.int64)
    dv_in = np.where((cens == 1) & miss["dv"], num["lloq"], num["dv"])  # NONMEM M3: DV "."
    if "dv" in col:
        p.rows(
            obs & np.isnan(dv_in) & miss["dv"] & (mdv == 0),
            name["dv"],
            "missing DV on an observation row (MDV=1 keeps it as a missing value)",
        )
    kinds = np.where(txt["kind"] == "", default_kind, txt["kind"])
    kind_out, unit_out = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    factor = np.full(n, np.nan)
    obs_rows = np.flatnonzero(obs)
    pairs = pd.DataFrame({"k": kinds[obs], "u": txt["unit"][obs]}).groupby(["k", "u"], sort=False)
    for (k, u), pos in pairs.indices.items():
        rows, mask = obs_rows[pos], np.zeros(n, dtype=bool)
        mask[rows] = True
        try:
            ck = units.canonical_kind(k)
        except DataError as e:
            p.rows(mask, name["kind"], e.reason)
            continue
        try:
            cu, f = units.to_canonical(ck, u or (unit if unit is not None else units.KINDS[ck][0]))
        except DataError as e:
            p.rows(mask, name["unit"], e.reason)
            continue
        kind_out[rows], unit_out[rows], factor[rows] = ck, cu, f
    dv = np.where(obs, dv_in * factor, np.nan)
    lloq = np.where(obs, num["lloq"] * factor, np.nan)
    p.rows(obs & (lloq < 0), name["lloq"], "LLOQ must not be negative")
    mismatch = (cens == 1) & given["dv"] & given["lloq"] & ~np.isclose(dv, lloq, rtol=1e-9)
    p.rows(
        mismatch,
        name["dv"],
        lambda i: f"censored row (CENS=1): DV {num['dv'][i]:g} must equal LLOQ {num['lloq'][i]:g}",
    )
    lloq = np.where((cens == 1) & np.isnan(lloq), dv, lloq)
    used = obs & (mdv == 0)
    p.rows(
        used & np.isin(kind_out, POSITIVE_KINDS) & (dv <= 0),
        name["dv"],
        lambda i: (
            f"{kind_out[i]} must be > 0, got {dv_in[i]:g} (MDV=1 keeps a value "
            "to ignore; CENS=1 with LLOQ marks one below a limit)"
        ),
    )
    p.rows(
        used & np.isin(kind_out, NON_NEGATIVE_KINDS) & (dv < 0),
        name["dv"],
        lambda i: f"{kind_out[i]} must be >= 0, got {dv_in[i]:g}",
    )

    # -- doses and on/off switches -------------------------------------------------------
    amt_raw = num["amt"]
    if "amt" in col:
        p.rows(dosing & miss["amt"], name["amt"], "missing AMT on a dose row")
    p.rows(dosing & (amt_raw < 0), name["amt"], "AMT must not be negative")
    dose_unit = np.where(txt["unit"] == "", "mg", txt["unit"])
    dfactor = np.ones(n)
    for u in np.unique(dose_unit[dosing]):
        rows = dosing & (dose_unit == u)
        key = str(u).lower().replace(" ", "")
        if key not in DOSE_UNITS:
            accepted = sorted({c for c, _ in DOSE_UNITS.values()})
            p.rows(
                rows,
                name["unit"],
                f"unknown dose unit {u!r}; accepted: {', '.join(accepted)}"
                " (and g, ug, cGy, MBq, converted)",
            )
            continue
        unit_out[rows], dfactor[rows] = DOSE_UNITS[key]
    amt = np.where(dosing, amt_raw * dfactor, np.nan)
    agent = np.where(dosing | switch, np.where(txt["agent"] == "", "drug", txt["agent"]), "")
    on = np.where(switch, num["on"], np.nan)
    if "on" in col:
        p.rows(switch & ~np.isin(on, [0, 1]), name["on"], "ON must be 0 or 1 on EVID=2 rows")
    cmt = np.where(given["cmt"], num["cmt"], 1.0)
    p.rows(
        given["cmt"] & ((cmt != np.round(cmt)) | (cmt < 1)),
        name["cmt"],
        "CMT must be a positive integer",
    )
    rate = np.where(given["rate"] & dosing, num["rate"], 0.0)
    dur = np.where(given["dur"] & dosing, num["dur"], 0.0)
    p.rows(rate < 0, name["rate"], "RATE must not be negative (modelled rates are not supported)")
    p.rows(dur < 0, name["dur"], "DUR must not be negative")
    a = np.nan_to_num(amt_raw)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p.rows(
            (rate > 0) & (dur > 0) & ~np.isclose(rate * dur, a, rtol=1e-6),
            name["rate"],
            "RATE x DUR must equal AMT",
        )
        dur = np.where((rate > 0) & (dur == 0), a / rate, dur)
        rate = np.where((dur > 0) & (rate == 0), a / dur, rate)
    rate, dur = rate * dfactor / tf, dur * tf

    # -- repeated doses (II/ADDL) ----------------------------------------------------------
    ii, addl = np.nan_to_num(num["ii"]) * tf, np.where(given["addl"] & dosing, num["addl"], 0)
    p.rows((addl < 0) | (addl != np.round(addl)), name["addl"], "ADDL must be an integer >= 0")
    p.rows(dosing & (ii < 0), name["ii"], "II must not be negative")
    p.rows((addl > 0) & ~(ii > 0), name["ii"], "ADDL > 0 needs an interval II > 0")
    repeat = np.where(p.bad | (addl < 0), 0, np.nan_to_num(addl)).astype(np.int64) + 1

    frame = pd.DataFrame({
        "id": txt["id"], "time": time, "evid": evid.astype(np.int64), "dv": dv, "mdv": mdv,
        "kind": kind_out, "unit": unit_out, "amt": amt, "agent": agent,
        "cmt": np.nan_to_num(cmt, nan=1.0).astype(np.int64), "rate": rate, "dur": dur,
        "on": on.astype(float), "lloq": lloq, "cens": cens,
    })  # fmt: skip
    for c in ("id", "kind", "unit", "agent"):
        frame[c] = frame[c].astype(str)
    for c in extras:
        frame[c] = _extra(raw[c].reset_index(drop=True))
    frame["_line"], frame["_bad"] = lines, p.bad
    frame = frame.loc[frame.index.repeat(repeat)]
    frame["time"] += frame.groupby(level=0).cumcount().to_numpy() * ii[frame.index]
    frame = frame.reset_index(drop=True)

    # -- table checks: duplicated events, subjects without a usable observation -------------
    good = frame[~frame["_bad"]].sort_values("_line", kind="stable")
    event_key = ["id", "time", "evid", "kind", "agent"]
    dup = good.duplicated(event_key, keep="first").to_numpy()
    if dup.any():
        first = good.groupby(event_key, sort=False)["_line"].transform("min").to_numpy()
        i = int(np.flatnonzero(dup)[0])
        p.at(
            int(good["_line"].iloc[i]),
            name["time"],
            f"duplicated event (same id, time, evid, kind and agent as row {first[i]})",
        )
    flawed = set(frame.loc[frame["_bad"], "id"])
    usable = set(frame.loc[(frame["evid"] == OBSERVATION) & (frame["mdv"] == 0), "id"])
    empty = frame[~frame["id"].isin(usable | flawed)]
    if len(empty):
        first_line = empty.groupby("id")["_line"].min()
        p.at(
            int(first_line.min()),
            name["id"],
            f"subject {first_line.idxmin()!r} has no usable "
            "observation (EVID 0 with a DV and MDV 0)",
        )
    p.raise_first()

    rank = {s: r for r, s in enumerate(sorted(set(frame["id"]), key=_natural_key))}
    frame["_rank"] = frame["id"].map(rank)
    frame = frame.sort_values(["_rank", "time", "evid", "kind", "agent"], kind="stable")
    return frame.drop(columns=["_rank", "_line", "_bad"]).reset_index(drop=True)


def _is_header_comment(cells: list[str]) -> bool:
    """NONMEM files often comment out their header ("#ID TIME DV ...") so NONMEM skips it."""
    names = {c.strip().lstrip("#").strip().lower() for c in cells}
    return bool(cells) and cells[0].lstrip().startswith("#") and {"id", "time"} <= names


def _split(text: str, sep: str | None) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, rows and the line number of each row; blank lines and "#" comments skipped."""
    if sep is None:
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        sep = next((s for s in ("\t", ",", ";") if s in first), None)
    records: list[tuple[int, list[str]]] = []
    if sep is None or (sep.isspace() and sep != "\t"):  # whitespace separated (NONMEM)
        records = [(i, ln.split()) for i, ln in enumerate(text.splitlines(), 1)]
    else:
        reader, start = csv.reader(io.StringIO(text), delimiter=sep), 1
        for cells in reader:
            records.append((start, cells))
            start = reader.line_num + 1
    records = [(i, c) for i, c in records if len(c) > 1 or (c and c[0].strip())]
    if records:
        records[0] = (records[0][0], [c.strip() for c in records[0][1]])
    if records and _is_header_comment(records[0][1]):
        cells = records[0][1]
        header = [cells[0].lstrip("#").strip(), *cells[1:]]
        records[0] = (records[0][0], [c for c in header if c] if sep is None else header)
    records = [(i, cells) for i, cells in records if not cells[0].lstrip().startswith("#")]
    if not records:
        return [], [], []
    (_, header), body = records[0], records[1:]
    return header, [cells for _, cells in body], [i for i, _ in body]


def read_events(
    path: str | os.PathLike[str],
    *,
    time_unit: str = "day",
    kind: str | None = None,
    unit: str | None = None,
    sep: str | None = None,
) -> PatientData:
    """Read an event table (CSV, tab or whitespace separated; NONMEM column names).

    Args:
        path: the file.
        time_unit: unit of TIME, II and DUR in the file; converted to days.
        kind: observation kind when the file has no KIND column (default "size").
        unit: DV/LLOQ unit when the file has no UNIT value (default: the kind's canonical unit).
        sep: separator; sniffed from the header line (tab, comma, semicolon, else whitespace).

    Returns:
        The validated table; reading what :func:`write_events` wrote gives an equal table.

    Raises:
        DataError: unreadable or empty file, or the first invalid value in file order, with
            file, 1-based line number (header = 1) and column.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the file: {e}", file=source) from None
    header, rows, lines = _split(text, sep)
    if not header:
        raise DataError("empty file", file=source)
    for cells, line in zip(rows, lines, strict=True):
        if len(cells) != len(header):
            raise DataError(
                f"{len(cells)} fields, but the header has {len(header)}", file=source, row=line
            )
    raw = pd.DataFrame(rows, columns=header, dtype=object)
    events = normalise(
        raw, np.asarray(lines), source=source, time_unit=time_unit, kind=kind, unit=unit
    )
    return PatientData._trusted(events, source)


def write_events(data: PatientData, path: str | os.PathLike[str]) -> Path:
    """Write the canonical table as CSV (empty cells for missing values); atomic replace.

    Returns:
        The path written.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(data.to_csv())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
