"""Hourly delivery statistics per connector, for the console's overview and charts.

Revision ID: 0002_delivery_stats
Revises: 0001_call_log
Created: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_delivery_stats"
down_revision = "0001_call_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_stats",
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("retried", sa.Integer(), nullable=False),
        sa.Column("dead", sa.Integer(), nullable=False),
        sa.Column("latency_sum_ms", sa.BigInteger(), nullable=False),
        sa.Column("latency_buckets", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("connector", "hour", name=op.f("pk_delivery_stats")),
    )
    op.create_index(op.f("ix_delivery_stats_hour"), "delivery_stats", ["hour"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_delivery_stats_hour"), table_name="delivery_stats")
    op.drop_table("delivery_stats")
