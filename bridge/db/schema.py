"""The call log's tables, in one place (Alembic's migrations and every query read them from here).

    calls          one row per call: who, when, what was said (the searchable facts), the webhook
                   payload (compressed where the database does not compress it itself), the route
                   decision, and the call's overall status (the worst of its connectors')
    parties        (kind, value) → call: every phone number (E.164) and email of the call, for search
    deliveries     one row per (call, connector): its current state, attempts, last error (and its
                   normalised group, so one expired token is one failure group), latency, mapping
    attempts       the history: received / replayed / every attempt / pauses, in order
    records        what landed where: CRM ids and, where the connector can build one, the record's URL
    dead_letters   calls a connector gave up on, until an admin replays or purges them
    delivery_stats per connector and hour: deliveries, failures, and a latency histogram — what the console's
                   overview and charts read, so they never scan a million calls
    log_state      the position in the Redis event stream the log has applied (see bridge.db.drain)
    audit          who did what in the admin console and API, and to how many calls

Times are integer milliseconds since the epoch (UTC): portable, compact, and what the events carry.
Child tables point at `calls.id` (an integer, SQLite's rowid) rather than the 36-character call id, which
keeps their indexes small; there are no foreign-key constraints, because the log writer is the only
writer and retention deletes a call's rows together.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "attempts",
    "audit",
    "calls",
    "dead_letters",
    "deliveries",
    "delivery_stats",
    "log_state",
    "metadata",
    "parties",
    "records",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite makes an INTEGER PRIMARY KEY the rowid (what its full-text index points at); elsewhere a bigint.
RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Millis = sa.BigInteger

calls = sa.Table(
    "calls",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("call_session_id", sa.String(128), nullable=False, unique=True),
    sa.Column("org_id", sa.String(64), nullable=False, default=""),
    sa.Column("received_at", Millis, nullable=False),
    sa.Column("updated_at", Millis, nullable=False),
    sa.Column("source", sa.String(64), nullable=False, default=""),
    sa.Column("route", sa.String(200), nullable=False, default=""),
    sa.Column("connectors", sa.Text, nullable=False, default="[]"),
    sa.Column("status", sa.String(16), nullable=False, default="pending"),
    sa.Column("ingest_event", sa.String(40), nullable=False, default=""),  # stream id of the latest (re)ingest
    sa.Column("payload", sa.LargeBinary, nullable=True),
    sa.Column("payload_codec", sa.String(8), nullable=False, default="json"),
    sa.Column("payload_bytes", sa.Integer, nullable=False, default=0),
    # The searchable facts, read from the payload once, when it is logged.
    sa.Column("phone", sa.String(32), nullable=True),
    sa.Column("caller_name", sa.String(200), nullable=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("agent_name", sa.String(200), nullable=True),
    sa.Column("direction", sa.String(8), nullable=True),
    sa.Column("disposition", sa.String(100), nullable=True),
    sa.Column("sentiment", sa.String(32), nullable=True),
    sa.Column("call_status", sa.String(32), nullable=True),
    sa.Column("duration_sec", sa.Integer, nullable=True),
    sa.Column("started_at", Millis, nullable=True),
    sa.Column("summary", sa.Text, nullable=True),
    sa.Column("next_steps", sa.Text, nullable=True),
    sa.Index(None, "received_at"),
    sa.Index(None, "status", "received_at"),
)
# Agent and disposition are searched case-insensitively, newest first.
sa.Index("ix_calls_agent_lower_received_at", sa.func.lower(calls.c.agent_name), calls.c.received_at)
sa.Index("ix_calls_disposition_lower_received_at", sa.func.lower(calls.c.disposition), calls.c.received_at)

parties = sa.Table(
    "parties",
    metadata,
    sa.Column("call_id", RowId, nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # phone | email
    sa.Column("value", sa.String(320), nullable=False),  # E.164, or the email lowercased
    sa.Column("received_at", Millis, nullable=False),  # copied from the call: newest-first search in the index
    sa.PrimaryKeyConstraint("call_id", "kind", "value"),
    sa.Index(None, "kind", "value", "received_at"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("call_id", RowId, nullable=False),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | failed | dead | delivered | skipped
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", Millis, nullable=False),
    sa.Column("queued_at", Millis, nullable=False),  # received or last replayed: what latency counts from
    sa.Column("finished_at", Millis, nullable=True),  # delivered or skipped
    sa.Column("latency_ms", sa.Integer, nullable=True),  # queued_at → finished_at
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("error_group", sa.String(300), nullable=True),
    sa.Column("code", sa.String(100), nullable=True),
    sa.Column("http_status", sa.Integer, nullable=True),
    sa.Column("match", sa.Text, nullable=True),
    sa.Column("mapping", sa.String(200), nullable=True),
    sa.Column("mapping_digest", sa.String(32), nullable=True),
    sa.PrimaryKeyConstraint("call_id", "connector"),
    sa.Index(None, "connector", "status", "updated_at"),
    sa.Index(None, "status", "connector", "error_group"),
    sa.Index(None, "finished_at"),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("call_id", RowId, nullable=False),
    sa.Column("t", Millis, nullable=False),
    sa.Column("type", sa.String(16), nullable=False),  # received | replay | backfill | attempt | paused
    sa.Column("connector", sa.String(64), nullable=True),
    sa.Column("attempt", sa.Integer, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=True),  # delivered | skipped | retry | dead
    sa.Column("http_status", sa.Integer, nullable=True),
    sa.Column("code", sa.String(100), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=True),
    sa.Column("mapping", sa.String(200), nullable=True),
    sa.Column("mapping_digest", sa.String(32), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),  # the rest of the event, JSON
    sa.Index(None, "call_id", "t"),
)

records = sa.Table(
    "records",
    metadata,
    sa.Column("call_id", RowId, nullable=False),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("crm_id", sa.String(200), nullable=False),
    sa.Column("url", sa.Text, nullable=True),
    sa.Column("written_at", Millis, nullable=False),
    sa.PrimaryKeyConstraint("call_id", "connector", "kind"),
    sa.Index(None, "crm_id"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("call_id", RowId, nullable=False),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("t", Millis, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("error_group", sa.String(300), nullable=True),
    sa.Column("code", sa.String(100), nullable=True),
    sa.Column("http_status", sa.Integer, nullable=True),
    sa.PrimaryKeyConstraint("call_id", "connector"),
    sa.Index(None, "connector", "error_group", "t"),
    sa.Index(None, "t"),
)

# Upper bounds (ms) of the latency histogram's buckets; the last one catches everything longer.
LATENCY_BUCKETS_MS = (
    25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10_000, 20_000, 30_000, 60_000,
    120_000, 300_000, 600_000, 1_800_000, 3_600_000, 86_400_000,
)  # fmt: skip

delivery_stats = sa.Table(
    "delivery_stats",
    metadata,
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("hour", Millis, nullable=False),  # the hour's start, epoch ms (UTC)
    sa.Column("delivered", sa.Integer, nullable=False, default=0),
    sa.Column("skipped", sa.Integer, nullable=False, default=0),
    sa.Column("retried", sa.Integer, nullable=False, default=0),  # failed attempts that will be retried
    sa.Column("dead", sa.Integer, nullable=False, default=0),
    sa.Column("latency_sum_ms", Millis, nullable=False, default=0),
    sa.Column("latency_buckets", sa.Text, nullable=False, default="[]"),  # counts per LATENCY_BUCKETS_MS (+1)
    sa.PrimaryKeyConstraint("connector", "hour"),
    sa.Index(None, "hour"),
)

log_state = sa.Table(
    "log_state",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("t", Millis, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),  # the admin user's name, or "cli"
    sa.Column("action", sa.String(64), nullable=False),  # replay | purge | save-mapping | setup | ...
    sa.Column("target", sa.Text, nullable=False, default=""),  # what it was done to (call id, group, file)
    sa.Column("calls", sa.Integer, nullable=False, default=0),  # how many calls it touched
    sa.Column("detail", sa.Text, nullable=True),  # JSON
    sa.Index(None, "t"),
)
