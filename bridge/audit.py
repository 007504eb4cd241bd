"""The audit log: who did what to which calls, from the console or the admin API.

Every admin action (replay, purge, save a mapping, run setup) is one row of the call log's `audit` table —
when, who (the user's name from `admin.users`, or `admin` for `admin.token`), what, on what (a call id, a
failure group, a mapping file), how many calls it touched, and a JSON detail (e.g. how many calls were
re-queued and how many were already delivered). The console's Audit page, `GET /admin/audit` and
`agni-bridge audit` list it, newest first.

The API process writes these rows itself: they are rare, small, and must not wait for the event stream the
workers drain (an action whose row would appear only once a worker runs is no audit). On SQLite a second
writer simply waits its turn (WAL mode and a busy timeout, see :mod:`bridge.db.engine`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bridge.db import schema as t
from bridge.db.engine import translate_errors

__all__ = ["AuditEntry", "AuditLog"]


@dataclass(frozen=True)
class AuditEntry:
    id: int
    t: int
    """Epoch milliseconds (UTC)."""
    actor: str
    action: str
    target: str
    calls: int
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(
        self, actor: str, action: str, target: str = "", *, calls: int = 0, detail: dict[str, Any] | None = None
    ) -> int:
        """Append one entry; returns its id."""
        row = {
            "t": int(time.time() * 1000),
            "actor": actor[:200],
            "action": action[:64],
            "target": target,
            "calls": int(calls),
            "detail": json.dumps(detail, default=str, sort_keys=True) if detail else None,
        }
        with translate_errors("writing the audit log", self.engine), self.engine.begin() as conn:
            result = conn.execute(sa.insert(t.audit).values(**row))
            return int(result.inserted_primary_key[0])

    def entries(self, *, limit: int = 100, before_id: int | None = None, actor: str | None = None) -> list[AuditEntry]:
        """Newest first; `before_id` pages on (the id of the last entry shown)."""
        statement = sa.select(t.audit).order_by(t.audit.c.id.desc()).limit(max(1, min(limit, 1000)))
        if before_id is not None:
            statement = statement.where(t.audit.c.id < before_id)
        if actor:
            statement = statement.where(t.audit.c.actor == actor)
        with translate_errors("reading the audit log", self.engine), self.engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
        return [
            AuditEntry(
                id=int(row["id"]),
                t=int(row["t"]),
                actor=row["actor"],
                action=row["action"],
                target=row["target"] or "",
                calls=int(row["calls"] or 0),
                detail=json.loads(row["detail"]) if row["detail"] else {},
            )
            for row in rows
        ]
