"""One exception and warning hierarchy for oncotwin.

Every error oncotwin raises on purpose derives from :class:`OncotwinError`, so callers
(the CLI, the service) can map them in one place::

    OncotwinError
    ├── DataError            bad input data: says file, row and column (also a ValueError)
    ├── ModelError           unknown model, bad parameter values or names (also a ValueError)
    ├── ScheduleError        a treatment schedule that cannot be built (also a ValueError)
    ├── SimulationError      the ODE solver failed for a single run (batches report status)
    ├── CalibrationError     inference could not produce a posterior at all
    └── StoreError           the database refused an operation
        └── NotFoundError    a patient, twin or run that does not exist (also a KeyError)

    OncotwinWarning (UserWarning)
    └── ConvergenceWarning   a posterior failed its diagnostics (R-hat, ESS, divergences);
                             every forecast built on it repeats the warning
"""

from __future__ import annotations


class OncotwinError(Exception):
    """Base class of every error oncotwin raises on purpose."""


class DataError(OncotwinError, ValueError):
    """Input data that cannot be used; the message names file, row and column.

    Attributes:
        file: path or name of the source ("<frame>" for in-memory tables).
        row: 1-based line number in the file (header is line 1), or None.
        column: column name, or None.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file, self.row, self.column, self.reason = file, row, column, message
        where = []
        if file is not None:
            where.append(str(file))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ModelError(OncotwinError, ValueError):
    """An unknown model or invalid parameters."""


class ScheduleError(OncotwinError, ValueError):
    """A treatment schedule that cannot be built."""


class SimulationError(OncotwinError):
    """The ODE solver failed (single runs raise; batched runs return a status per run)."""


class CalibrationError(OncotwinError):
    """Inference failed to produce any posterior."""


class StoreError(OncotwinError):
    """The database refused an operation."""


class NotFoundError(StoreError, KeyError):
    """A patient, twin or run that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OncotwinWarning(UserWarning):
    """Base class of oncotwin's warnings."""


class ConvergenceWarning(OncotwinWarning):
    """A posterior failed its convergence diagnostics."""
