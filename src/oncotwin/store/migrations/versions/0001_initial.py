"""Initial schema: patients, ingests, events, twins, forecasts, runs.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types: a migration must not change when tables.py does.
_ts = sa.DateTime(timezone=True)
_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "patients",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("covariates", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_patients"),
    )
    op.create_table(
        "ingests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("n_skipped", sa.Integer(), nullable=False),
        sa.Column("n_patients", sa.Integer(), nullable=False),
        sa.Column("data_version", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ingests"),
    )
    op.create_table(
        "events",
        sa.Column("id", _big_id, autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("ingest_id", sa.Integer(), nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("evid", sa.SmallInteger(), nullable=False),
        sa.Column("dv", sa.Double(), nullable=True),
        sa.Column("mdv", sa.SmallInteger(), nullable=True),
        sa.Column("kind", sa.String(64), nullable=True),
        sa.Column("unit", sa.String(64), nullable=True),
        sa.Column("amt", sa.Double(), nullable=True),
        sa.Column("agent", sa.String(128), nullable=True),
        sa.Column("cmt", sa.Integer(), nullable=True),
        sa.Column("rate", sa.Double(), nullable=True),
        sa.Column("dur", sa.Double(), nullable=True),
        sa.Column("on", sa.Double(), nullable=True),
        sa.Column("lloq", sa.Double(), nullable=True),
        sa.Column("cens", sa.SmallInteger(), nullable=True),
        sa.Column("recorded_at", _ts, nullable=False),
        sa.CheckConstraint("evid IN (0, 1, 2)", name="ck_events_evid"),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name="fk_events_patient_id_patients"
        ),
        sa.ForeignKeyConstraint(["ingest_id"], ["ingests.id"], name="fk_events_ingest_id_ingests"),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_patient_id_time", "events", ["patient_id", "time"])
    op.create_index("ix_events_ingest_id", "events", ["ingest_id"])
    op.create_index("ix_events_recorded_at", "events", ["recorded_at"])
    op.create_table(
        "twins",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("data_version", sa.String(128), nullable=False),
        sa.Column("data_as_of", _ts, nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("oncotwin_version", sa.String(64), nullable=False),
        sa.Column("draws", sa.LargeBinary(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("diagnostics", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("converged", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name="fk_twins_patient_id_patients"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_twins"),
        sa.UniqueConstraint("patient_id", "version", name="uq_twins_patient_id_version"),
    )
    op.create_table(
        "forecasts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("twin_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("schedule_name", sa.String(255), nullable=False),
        sa.Column("schedule", sa.JSON(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["twin_id"], ["twins.id"], name="fk_forecasts_twin_id_twins"),
        sa.PrimaryKeyConstraint("id", name="pk_forecasts"),
    )
    op.create_index("ix_forecasts_twin_id", "forecasts", ["twin_id"])
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", _ts, nullable=False),
        sa.Column("finished_at", _ts, nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'done', 'failed')", name="ck_runs_status"),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_kind", "runs", ["kind"])


def downgrade() -> None:
    op.drop_index("ix_runs_kind", table_name="runs")
    op.drop_table("runs")
    op.drop_index("ix_forecasts_twin_id", table_name="forecasts")
    op.drop_table("forecasts")
    op.drop_table("twins")
    op.drop_index("ix_events_recorded_at", table_name="events")
    op.drop_index("ix_events_ingest_id", table_name="events")
    op.drop_index("ix_events_patient_id_time", table_name="events")
    op.drop_table("events")
    op.drop_table("ingests")
    op.drop_table("patients")
