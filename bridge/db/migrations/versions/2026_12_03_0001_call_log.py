"""The call log: calls, their parties, deliveries, history, records, dead letters, log position, audit.

Revision ID: 0001_call_log
Revises:
Created: 2026-12-03 21:06:45.939304
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_call_log"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("t", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("code", sa.String(length=100), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("mapping", sa.String(length=200), nullable=True),
        sa.Column("mapping_digest", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
    )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attempts_call_id_t"), ["call_id", "t"], unique=False)

    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("t", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit")),
    )
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_t"), ["t"], unique=False)

    op.create_table(
        "calls",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("call_session_id", sa.String(length=128), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("connectors", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ingest_event", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("payload_codec", sa.String(length=8), nullable=False),
        sa.Column("payload_bytes", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("caller_name", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("agent_name", sa.String(length=200), nullable=True),
        sa.Column("direction", sa.String(length=8), nullable=True),
        sa.Column("disposition", sa.String(length=100), nullable=True),
        sa.Column("sentiment", sa.String(length=32), nullable=True),
        sa.Column("call_status", sa.String(length=32), nullable=True),
        sa.Column("duration_sec", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("next_steps", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("call_session_id", name=op.f("uq_calls_call_session_id")),
    )
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_calls_received_at"), ["received_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_calls_status_received_at"), ["status", "received_at"], unique=False)

    op.create_table(
        "dead_letters",
        sa.Column("call_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("t", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_group", sa.String(length=300), nullable=True),
        sa.Column("code", sa.String(length=100), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("call_id", "connector", name=op.f("pk_dead_letters")),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dead_letters_connector_error_group_t"), ["connector", "error_group", "t"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_dead_letters_t"), ["t"], unique=False)

    op.create_table(
        "deliveries",
        sa.Column("call_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("queued_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("error_group", sa.String(length=300), nullable=True),
        sa.Column("code", sa.String(length=100), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("match", sa.Text(), nullable=True),
        sa.Column("mapping", sa.String(length=200), nullable=True),
        sa.Column("mapping_digest", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("call_id", "connector", name=op.f("pk_deliveries")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deliveries_connector_status_updated_at"), ["connector", "status", "updated_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_deliveries_finished_at"), ["finished_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_deliveries_status_connector_error_group"),
            ["status", "connector", "error_group"],
            unique=False,
        )

    op.create_table(
        "log_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_log_state")),
    )
    op.create_table(
        "parties",
        sa.Column("call_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("call_id", "kind", "value", name=op.f("pk_parties")),
    )
    with op.batch_alter_table("parties", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_parties_kind_value_received_at"), ["kind", "value", "received_at"], unique=False
        )

    op.create_table(
        "records",
        sa.Column("call_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("crm_id", sa.String(length=200), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("written_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("call_id", "connector", "kind", name=op.f("pk_records")),
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_records_crm_id"), ["crm_id"], unique=False)
    # The log's position in the event stream: one row, moved by compare-and-set (bridge.db.writer).
    op.execute("INSERT INTO log_state (name, value) VALUES ('cursor', '0-0')")
    # Case-insensitive agent and disposition search, newest first (expression indexes).
    op.create_index("ix_calls_agent_lower_received_at", "calls", [sa.text("lower(agent_name)"), "received_at"])
    op.create_index("ix_calls_disposition_lower_received_at", "calls", [sa.text("lower(disposition)"), "received_at"])
    # Free text in summary and next steps: SQLite's FTS5 over the calls table, PostgreSQL's GIN on a tsvector.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE calls_fts USING fts5(summary, next_steps, content='calls', content_rowid='id')"
        )
    else:
        op.execute(
            "CREATE INDEX ix_calls_text ON calls USING gin "
            "(to_tsvector('simple', coalesce(summary, '') || ' ' || coalesce(next_steps, '')))"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE calls_fts")
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_records_crm_id"))

    op.drop_table("records")
    with op.batch_alter_table("parties", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_parties_kind_value_received_at"))

    op.drop_table("parties")
    op.drop_table("log_state")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_status_connector_error_group"))
        batch_op.drop_index(batch_op.f("ix_deliveries_finished_at"))
        batch_op.drop_index(batch_op.f("ix_deliveries_connector_status_updated_at"))

    op.drop_table("deliveries")
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letters_t"))
        batch_op.drop_index(batch_op.f("ix_dead_letters_connector_error_group_t"))

    op.drop_table("dead_letters")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calls_status_received_at"))
        batch_op.drop_index(batch_op.f("ix_calls_received_at"))

    op.drop_table("calls")
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_t"))

    op.drop_table("audit")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attempts_call_id_t"))

    op.drop_table("attempts")
