"""Persistent storage: patients, events, versioned twins, forecasts and runs.

``Store(url)`` opens SQLite (default: a file in the user data directory, or env
``ONCOTWIN_DB``) or PostgreSQL (``postgresql+psycopg://...``) and migrates the schema with
Alembic on open. See ``docs/store.md``.
"""

from oncotwin.store.repository import (
    ForecastRecord,
    IngestResult,
    PatientRow,
    PopulationRecord,
    RunRecord,
    Store,
    SurpriseRecord,
    TwinRecord,
    head_revision,
)

__all__ = [
    "ForecastRecord",
    "IngestResult",
    "PatientRow",
    "PopulationRecord",
    "RunRecord",
    "Store",
    "SurpriseRecord",
    "TwinRecord",
    "head_revision",
]
