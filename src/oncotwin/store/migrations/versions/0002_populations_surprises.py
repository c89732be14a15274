"""Population models and surprises.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "surprises",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("twin_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("observed", sa.Double(), nullable=False),
        sa.Column("lo", sa.Double(), nullable=False),
        sa.Column("hi", sa.Double(), nullable=False),
        sa.Column("level", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["twin_id"], ["twins.id"], name="fk_surprises_twin_id_twins"),
        sa.PrimaryKeyConstraint("id", name="pk_surprises"),
    )
    op.create_index("ix_surprises_twin_id", "surprises", ["twin_id"])
    op.create_table(
        "populations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("draws", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_populations"),
        sa.UniqueConstraint("name", "version", name="uq_populations_name_version"),
    )


def downgrade() -> None:
    op.drop_table("populations")
    op.drop_index("ix_surprises_twin_id", table_name="surprises")
    op.drop_table("surprises")
