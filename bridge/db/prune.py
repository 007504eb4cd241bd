"""Retention: calls older than `retention_days` leave the log, a few hundred at a time.

Each batch is its own short transaction (select the oldest ids, delete their rows from every table),
so the log writer — the only other writer — is never held up for more than one batch, and on
PostgreSQL no statement locks more than those rows. Calls with a dead letter stay until an admin
replays or purges them; hourly statistics older than the window go too. Run by the log writer's
leader every few minutes (:class:`bridge.db.drain.DrainLoop`), and by tests directly.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bridge.db import schema as t
from bridge.db.engine import is_sqlite, translate_errors

__all__ = ["prune"]


def prune(engine: Engine, older_than_ms: int, *, batch: int = 500, max_batches: int | None = None) -> int:
    """Delete calls received before `older_than_ms` (except those with dead letters); returns how many."""
    removed = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        count = _one_batch(engine, older_than_ms, batch)
        removed += count
        batches += 1
        if count < batch:
            break
    with translate_errors("pruning statistics", engine), engine.begin() as conn:
        conn.execute(sa.delete(t.delivery_stats).where(t.delivery_stats.c.hour < older_than_ms - 3_600_000))
    return removed


def _one_batch(engine: Engine, older_than_ms: int, batch: int) -> int:
    c = t.calls
    with translate_errors("pruning old calls", engine), engine.begin() as conn:
        rows = conn.execute(
            sa.select(c.c.id, c.c.summary, c.c.next_steps)
            .where(c.c.received_at < older_than_ms)
            .where(~sa.exists().where(t.dead_letters.c.call_id == c.c.id))
            .order_by(c.c.received_at)
            .limit(batch)
        ).all()
        if not rows:
            return 0
        ids = [row[0] for row in rows]
        if is_sqlite(engine):
            conn.execute(
                sa.text("INSERT INTO calls_fts(calls_fts, rowid, summary, next_steps) VALUES ('delete', :id, :s, :n)"),
                [{"id": row[0], "s": row[1] or "", "n": row[2] or ""} for row in rows],
            )
        for table in (t.parties, t.deliveries, t.attempts, t.records):
            conn.execute(sa.delete(table).where(table.c.call_id.in_(ids)))
        conn.execute(sa.delete(c).where(c.c.id.in_(ids)))
        return len(ids)
