"""Patient data: the canonical event table, its readers and the shipped datasets."""

from .io import read_events, write_events
from .schema import EVENT_COLUMNS, PatientData

__all__ = ["EVENT_COLUMNS", "PatientData", "read_events", "write_events"]
