"""The canonical event table and :class:`PatientData`, its validated, immutable wrapper.

One row per event, NONMEM-like, in canonical units (see :mod:`oncotwin.units` and docs/data.md):

========  =========  ===========================================================================
column    dtype      meaning
========  =========  ===========================================================================
id        str        subject id
time      float64    days (negative = before treatment start)
evid      int64      0 observation, 1 dose, 2 treatment on/off switch
dv        float64    observed value in the canonical unit of `kind`; NaN on other rows
mdv       int64      1 when dv is missing or not to be used (always 1 on evid 1/2 rows)
kind      str        canonical observation kind ("volume", "sld", ...); "" on other rows
unit      str        canonical unit of dv; dose unit on evid 1 ("mg", "Gy", "GBq", ...); "" on 2
amt       float64    dose amount in `unit` (evid 1); NaN otherwise
agent     str        treatment name on evid 1/2 rows ("drug" by default); "" on observations
cmt       int64      compartment, 1 by default
rate      float64    infusion rate, amount/day; 0 for a bolus and on non-dose rows
dur       float64    infusion duration, days; 0 for a bolus and on non-dose rows
on        float64    1.0 / 0.0 on evid 2 rows (holds until the next switch of the agent); NaN else
lloq      float64    lower limit of quantification in dv units; NaN if none
cens      int64      1 if left-censored (true value below lloq; dv then holds lloq), else 0
========  =========  ===========================================================================

Any other column is a covariate and is kept as it is. Rows are sorted by id (natural order:
"p-2" before "p-10"), time, evid (an observation comes before a dose at the same time), kind
and agent.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd

from ..errors import DataError

EVENT_COLUMNS: tuple[str, ...] = (
    "id", "time", "evid", "dv", "mdv", "kind", "unit", "amt",
    "agent", "cmt", "rate", "dur", "on", "lloq", "cens",
)  # fmt: skip

OBSERVATION, DOSE, SWITCH = 0, 1, 2


class _ClassOrInstance:
    """Lets ``PatientData.concat([a, b])`` and ``a.concat(b, c)`` share one implementation."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __get__(self, obj: Any, owner: type) -> Callable[..., Any]:
        if obj is None:
            return lambda items: self.func(owner, list(items))
        return lambda *others: self.func(owner, [obj, *others])


class PatientData:
    """Validated longitudinal data of one or more subjects: the canonical event table.

    Build it with :meth:`from_frame`, :func:`oncotwin.data.read_events` or
    :func:`oncotwin.datasets.load`; ``PatientData(df)`` is the same as ``from_frame(df)``.
    Instances are immutable: every method returns a new object and :attr:`events` returns a
    copy.
    """

    __slots__ = ("_events", "_source", "_version")
    _events: pd.DataFrame
    _source: str
    _version: str | None

    def __init__(self, events: pd.DataFrame, source: str = "<frame>") -> None:
        valid = PatientData.from_frame(events, source=source)
        self._events, self._source, self._version = valid._events, source, valid._version

    @classmethod
    def _trusted(cls, events: pd.DataFrame, source: str) -> PatientData:
        """Wrap an already canonical, sorted table without validating it again."""
        self = object.__new__(cls)
        self._events = events.reset_index(drop=True)
        self._source, self._version = source, None
        return self

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        source: str = "<frame>",
        time_unit: str = "day",
        kind: str | None = None,
        unit: str | None = None,
    ) -> PatientData:
        """Validate and canonicalise an in-memory event table.

        Accepts exactly what :func:`~oncotwin.data.read_events` accepts (NONMEM-style column
        names in any case, "." for missing, II/ADDL, ...) and validates it the same way.

        Args:
            df: the table; column names are case-insensitive.
            source: name used in error messages and kept as :attr:`source`.
            time_unit: unit of TIME, II and DUR ("day", "week", "month", "year", "hour").
            kind: observation kind for rows without a KIND value (default "size").
            unit: unit of DV for rows without a UNIT value (default: canonical unit of kind).

        Raises:
            DataError: the first problem in row order. ``row`` is the 0-based *position* of
                the offending row plus 2, as if the frame had been read from a CSV file
                with a header line.
        """
        from .io import normalise  # io builds on this module; imported here to avoid a cycle

        lines = pd.RangeIndex(2, len(df) + 2).to_numpy()
        events = normalise(df, lines, source=source, time_unit=time_unit, kind=kind, unit=unit)
        return cls._trusted(events, source)

    # -- basic properties ---------------------------------------------------------------

    @property
    def events(self) -> pd.DataFrame:
        """The canonical event table (a copy: changing it does not change this object)."""
        return self._events.copy()

    @property
    def source(self) -> str:
        """Where the data came from (file path, "<frame>" or "dataset:<name>")."""
        return self._source

    @property
    def ids(self) -> list[str]:
        """Subject ids in table order."""
        return list(dict.fromkeys(self._events["id"]))

    @property
    def kinds(self) -> set[str]:
        """Canonical kinds of the usable observations."""
        obs = self._events[self._usable()]
        return set(obs["kind"])

    @property
    def covariate_columns(self) -> list[str]:
        """Names of the columns that are not canonical event columns."""
        return [c for c in self._events.columns if c not in EVENT_COLUMNS]

    @property
    def version(self) -> str:
        """Content hash: first 16 hex digits of sha256 of :meth:`to_csv`. Same table, same id."""
        if self._version is None:
            digest = hashlib.sha256(self.to_csv().encode("utf-8")).hexdigest()
            self._version = digest[:16]
        return self._version

    def to_csv(self) -> str:
        """Canonical CSV text of the table (what :func:`~oncotwin.data.write_events` writes)."""
        return self._events.to_csv(index=False, lineterminator="\n")

    # -- views -----------------------------------------------------------------------

    def _usable(self) -> pd.Series:
        ev = self._events
        return (ev["evid"] == OBSERVATION) & (ev["mdv"] == 0)

    def _rows_of(self, mask: pd.Series, id: str | None) -> pd.DataFrame:
        if id is not None:
            self._check_ids([id])
            mask = mask & (self._events["id"] == id)
        return self._events[mask].reset_index(drop=True)

    def observations(self, id: str | None = None) -> pd.DataFrame:
        """Usable observation rows (evid 0, mdv 0), of one subject if `id` is given."""
        return self._rows_of(self._usable(), id)

    def treatments(self, id: str | None = None) -> pd.DataFrame:
        """Dose (evid 1) and on/off switch (evid 2) rows, of one subject if `id` is given."""
        return self._rows_of(self._events["evid"].isin([DOSE, SWITCH]), id)

    def covariates(self) -> pd.DataFrame:
        """One row per subject (index "id") of the covariate columns constant within subjects."""
        ev = self._events
        groups = ev.groupby("id", sort=False)
        keep = [c for c in self.covariate_columns if (groups[c].nunique(dropna=False) <= 1).all()]
        table = groups[keep].first() if keep else pd.DataFrame(index=pd.Index(self.ids))
        table = table.reindex(self.ids)
        table.index.name = "id"
        return table

    def _check_ids(self, ids: Iterable[str]) -> None:
        known = set(self._events["id"])
        missing = [i for i in ids if i not in known]
        if missing:
            raise DataError(
                f"unknown subject id(s) {', '.join(map(repr, missing))}", file=self.source
            )

    def subject(self, id: str) -> PatientData:
        """The data of one subject.

        Raises:
            DataError: unknown id.
        """
        return self.select([id])

    def select(self, ids: Sequence[str]) -> PatientData:
        """The data of some subjects (kept in table order).

        Raises:
            DataError: an unknown id.
        """
        ids = [str(i) for i in ids]
        self._check_ids(ids)
        return PatientData._trusted(self._events[self._events["id"].isin(ids)], self._source)

    def truncate(self, until_time: float) -> PatientData:
        """What was known at `until_time` (days): rows with time <= until_time.

        Subjects left without a usable observation are dropped.

        Raises:
            DataError: no subject has a usable observation by then.
        """
        ev = self._events[self._events["time"] <= until_time]
        usable = ev[(ev["evid"] == OBSERVATION) & (ev["mdv"] == 0)]
        ev = ev[ev["id"].isin(set(usable["id"]))]
        if ev.empty:
            raise DataError(
                f"no usable observation at or before day {until_time}", file=self.source
            )
        return PatientData._trusted(ev, self._source)

    @_ClassOrInstance
    def concat(cls, items: list[PatientData]) -> PatientData:  # noqa: N805
        """Combine data sets: ``PatientData.concat([a, b])`` or ``a.concat(b)``.

        Rows of the same subject are merged (new observations for a known patient), and the
        result is validated again: an event present in both raises.

        Raises:
            DataError: duplicated events, or an empty list.
        """
        if not items:
            raise DataError("nothing to concatenate")
        source = " + ".join(dict.fromkeys(d.source for d in items))
        frame = pd.concat([d._events for d in items], ignore_index=True)
        return cls.from_frame(frame, source=source)

    # -- dunder ----------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._events["id"].nunique())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PatientData):
            return NotImplemented
        return self._events.equals(other._events)

    def __hash__(self) -> int:
        return hash(self.version)

    def __repr__(self) -> str:
        ev = self._events
        n_obs = int(self._usable().sum())
        n_trt = int(ev["evid"].isin([DOSE, SWITCH]).sum())
        return (
            f"PatientData(source={self._source!r}, subjects={len(self)}, "
            f"observations={n_obs}, treatment_rows={n_trt}, kinds={sorted(self.kinds)}, "
            f"covariates={self.covariate_columns}, version={self.version!r})"
        )
