"""The read side of the call log: one call's report, searches, failure groups, dead letters, payloads.

Every query is one or two indexed statements (see the indexes in :mod:`bridge.db.schema`): a search is
newest first with a cursor — the (received_at, id) of the last row shown — so the next page is an index
range, not an OFFSET that gets slower the deeper one pages. Phone numbers and emails are normalised the
way the writer stored them, so any spelling finds the call.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import zstandard
from sqlalchemy.engine import Engine

from bridge.db import schema as t
from bridge.db.engine import is_sqlite, translate_errors
from bridge.db.facts import normalize_email, normalize_phone

__all__ = ["CallSearch", "LogQueries", "decode_cursor", "encode_cursor"]

_FACTS = (
    "phone",
    "caller_name",
    "email",
    "agent_name",
    "direction",
    "disposition",
    "sentiment",
    "call_status",
    "duration_sec",
    "started_at",
)
_TSV = "to_tsvector('simple', coalesce(summary, '') || ' ' || coalesce(next_steps, ''))"


@dataclass(frozen=True)
class CallSearch:
    """What `calls list`, /admin/calls and the console's Calls page can ask for (all optional, ANDed)."""

    status: str | None = None
    connector: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    phone: str | None = None
    email: str | None = None
    agent: str | None = None
    disposition: str | None = None
    text: str | None = None
    cursor: str | None = None
    limit: int = 50


def encode_cursor(received_at: int, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{received_at}:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """Raises ValueError for a cursor this code did not make."""
    padded = cursor + "=" * (-len(cursor) % 4)
    received, _, row_id = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
    return int(received), int(row_id)


class LogQueries:
    def __init__(self, engine: Engine, *, region: str = "US") -> None:
        self.engine = engine
        self.region = region
        self.sqlite = is_sqlite(engine)

    # -- one call ---------------------------------------------------------------------------
    def call(self, call_session_id: str) -> dict[str, Any] | None:
        """Everything about one call: its row, deliveries, records, dead letters and history — read in one
        snapshot, so a report taken while the log writer commits is either before or after it, never half."""
        with translate_errors("reading a call", self.engine), self._snapshot() as conn:
            row = (
                conn.execute(sa.select(t.calls).where(t.calls.c.call_session_id == call_session_id)).mappings().first()
            )
            if row is None:
                return None
            call_id = row["id"]
            deliveries = _rows(conn, sa.select(t.deliveries).where(t.deliveries.c.call_id == call_id))
            records = _rows(conn, sa.select(t.records).where(t.records.c.call_id == call_id))
            dead = _rows(conn, sa.select(t.dead_letters).where(t.dead_letters.c.call_id == call_id))
            history = _rows(
                conn, sa.select(t.attempts).where(t.attempts.c.call_id == call_id).order_by(t.attempts.c.id)
            )
        return {"call": dict(row), "deliveries": deliveries, "records": records, "dead": dead, "history": history}

    def _snapshot(self) -> Any:
        if self.sqlite:
            return self.engine.connect()  # BEGIN is emitted before the first read (bridge.db.engine)
        return self.engine.connect().execution_options(isolation_level="REPEATABLE READ")

    def payload(self, call_session_id: str) -> bytes | None:
        with translate_errors("reading a payload", self.engine), self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.calls.c.payload, t.calls.c.payload_codec).where(
                    t.calls.c.call_session_id == call_session_id
                )
            ).first()
        return decode_payload(row[0], row[1]) if row is not None else None

    # -- searching --------------------------------------------------------------------------
    def search(self, query: CallSearch) -> tuple[list[dict[str, Any]], str | None]:
        """A page of calls (newest first) with their deliveries; and the cursor of the next page, if any."""
        c = t.calls
        columns = [c.c.id, c.c.call_session_id, c.c.received_at, c.c.status, c.c.org_id, c.c.route, c.c.source]
        statement = sa.select(*columns, *(c.c[name] for name in _FACTS))
        for condition in self._conditions(query):
            statement = statement.where(condition)
        limit = max(1, min(query.limit, 1000))
        statement = statement.order_by(c.c.received_at.desc(), c.c.id.desc()).limit(limit + 1)
        with translate_errors("searching calls", self.engine), self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(statement).mappings()]
            more = len(rows) > limit
            rows = rows[:limit]
            by_id = {row["id"]: row for row in rows}
            for row in rows:
                row["deliveries"] = []
            if by_id:
                for d in conn.execute(
                    sa.select(t.deliveries).where(t.deliveries.c.call_id.in_(list(by_id)))
                ).mappings():
                    by_id[d["call_id"]]["deliveries"].append(dict(d))
        next_cursor = encode_cursor(rows[-1]["received_at"], rows[-1]["id"]) if more and rows else None
        return rows, next_cursor

    def _conditions(self, query: CallSearch) -> list[Any]:
        c, d = t.calls, t.deliveries
        conditions: list[Any] = []
        if query.connector and query.status:
            conditions.append(
                sa.exists().where(d.c.call_id == c.c.id, d.c.connector == query.connector, d.c.status == query.status)
            )
        elif query.connector:
            conditions.append(sa.exists().where(d.c.call_id == c.c.id, d.c.connector == query.connector))
        elif query.status:
            conditions.append(c.c.status == query.status)
        if query.since_ms is not None:
            conditions.append(c.c.received_at >= query.since_ms)
        if query.until_ms is not None:
            conditions.append(c.c.received_at < query.until_ms)
        if query.phone:
            number = normalize_phone(query.phone, self.region) or query.phone.strip()
            conditions.append(c.c.id.in_(_party("phone", number)))
        if query.email:
            conditions.append(c.c.id.in_(_party("email", normalize_email(query.email) or query.email.strip().lower())))
        if query.agent:
            conditions.append(sa.func.lower(c.c.agent_name) == query.agent.strip().lower())
        if query.disposition:
            conditions.append(sa.func.lower(c.c.disposition) == query.disposition.strip().lower())
        if query.text and query.text.strip():
            conditions.append(self._text(query.text))
        if query.cursor:
            received, row_id = decode_cursor(query.cursor)
            conditions.append(sa.or_(c.c.received_at < received, sa.and_(c.c.received_at == received, c.c.id < row_id)))
        return conditions

    def _text(self, text: str) -> Any:
        words = [w for w in text.replace('"', " ").split() if w]
        if self.sqlite:
            match = " ".join(f'"{w}"' for w in words)  # each word quoted: no FTS5 query syntax from users
            return t.calls.c.id.in_(sa.text("SELECT rowid FROM calls_fts WHERE calls_fts MATCH :q").bindparams(q=match))
        return sa.text(f"{_TSV} @@ plainto_tsquery('simple', :q)").bindparams(q=" ".join(words))

    # -- failures ---------------------------------------------------------------------------
    def failure_groups(self, connector: str | None = None) -> list[dict[str, Any]]:
        """Dead letters and calls still retrying, grouped by (connector, normalised error), biggest first."""
        d = t.deliveries
        statement = (
            sa.select(
                d.c.connector,
                d.c.error_group,
                sa.func.count().label("count"),
                sa.func.sum(sa.case((d.c.status == "dead", 1), else_=0)).label("dead"),
                sa.func.min(d.c.updated_at).label("first_seen"),
                sa.func.max(d.c.updated_at).label("last_seen"),
                sa.func.min(d.c.call_id).label("sample_id"),
            )
            .where(d.c.status.in_(("failed", "dead")))
            .group_by(d.c.connector, d.c.error_group)
            .order_by(sa.desc("count"))
        )
        if connector:
            statement = statement.where(d.c.connector == connector)
        with translate_errors("grouping failures", self.engine), self.engine.connect() as conn:
            groups = [dict(r) for r in conn.execute(statement).mappings()]
            samples = (
                {
                    row[0]: (row[1], row[2])
                    for row in conn.execute(
                        sa.select(t.calls.c.id, t.calls.c.call_session_id, t.deliveries.c.last_error)
                        .join(t.deliveries, t.deliveries.c.call_id == t.calls.c.id)
                        .where(t.calls.c.id.in_([g["sample_id"] for g in groups]))
                    )
                }
                if groups
                else {}
            )
        for group in groups:
            sample = samples.get(group.pop("sample_id"), ("", ""))
            group["sample_call"], group["sample_error"] = sample
        return groups

    def failing_calls(self, connector: str, group: str | None, *, limit: int = 100_000) -> list[tuple[str, str]]:
        """(call_session_id, status) of the failed or dead deliveries of one group (or of a whole connector)."""
        d = t.deliveries
        statement = (
            sa.select(t.calls.c.call_session_id, d.c.status)
            .join(t.calls, t.calls.c.id == d.c.call_id)
            .where(d.c.connector == connector, d.c.status.in_(("failed", "dead")))
            .limit(limit)
        )
        if group is not None:
            statement = statement.where(d.c.error_group == group)
        with translate_errors("listing failures", self.engine), self.engine.connect() as conn:
            return [(row[0], row[1]) for row in conn.execute(statement)]

    def dead_letters(self, connector: str | None = None, call_session_id: str | None = None) -> list[dict[str, Any]]:
        statement = (
            sa.select(t.dead_letters, t.calls.c.call_session_id)
            .join(t.calls, t.calls.c.id == t.dead_letters.c.call_id)
            .order_by(t.dead_letters.c.t)
        )
        if connector:
            statement = statement.where(t.dead_letters.c.connector == connector)
        if call_session_id:
            statement = statement.where(t.calls.c.call_session_id == call_session_id)
        with translate_errors("listing dead letters", self.engine), self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(statement).mappings()]

    # -- statistics ---------------------------------------------------------------------------
    def stats(self, since_ms: int) -> list[dict[str, Any]]:
        """The hourly rows (connector, hour, delivered, skipped, retried, dead, latency) since `since_ms`."""
        s = t.delivery_stats
        statement = sa.select(s).where(s.c.hour >= since_ms - since_ms % 3_600_000).order_by(s.c.hour)
        with translate_errors("reading statistics", self.engine), self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(statement).mappings()]
        for row in rows:
            row["latency_buckets"] = json.loads(row["latency_buckets"] or "[]")
        return rows

    def overview(self, now_ms: int, *, days: int = 1) -> dict[str, dict[str, Any]]:
        """Per connector: delivered/failed in the last hour and 24 h, latency p50/p95 (24 h), and a series of
        (bucket start, delivered, failed) per hour (days=1) or per day (days=7)."""
        rows = self.stats(now_ms - max(days, 1) * 86_400_000)
        hour_ago, day_ago = now_ms - 3_600_000, now_ms - 86_400_000
        bucket = 3_600_000 if days <= 1 else 86_400_000
        result: dict[str, dict[str, Any]] = {}
        for row in rows:
            entry = result.setdefault(
                row["connector"],
                {"delivered_1h": 0, "failed_1h": 0, "delivered_24h": 0, "failed_24h": 0, "histogram": [], "series": {}},
            )
            failed = row["retried"] + row["dead"]
            delivered = row["delivered"] + row["skipped"]
            if row["hour"] + 3_600_000 > hour_ago:
                entry["delivered_1h"] += delivered
                entry["failed_1h"] += failed
            if row["hour"] + 3_600_000 > day_ago:
                entry["delivered_24h"] += delivered
                entry["failed_24h"] += failed
                histogram = entry["histogram"]
                histogram += [0] * (len(row["latency_buckets"]) - len(histogram))
                for i, count in enumerate(row["latency_buckets"]):
                    histogram[i] += count
            start = row["hour"] - row["hour"] % bucket
            point = entry["series"].setdefault(start, [0, 0])
            point[0] += delivered
            point[1] += failed
        for entry in result.values():
            histogram = entry.pop("histogram")
            entry["p50_ms"] = percentile(histogram, 0.50)
            entry["p95_ms"] = percentile(histogram, 0.95)
            entry["series"] = sorted((start, d, f) for start, (d, f) in entry["series"].items())
        return result

    def dead_count(self) -> dict[str, int]:
        statement = sa.select(t.dead_letters.c.connector, sa.func.count()).group_by(t.dead_letters.c.connector)
        with translate_errors("counting dead letters", self.engine), self.engine.connect() as conn:
            return {row[0]: int(row[1]) for row in conn.execute(statement)}


def percentile(histogram: list[int], q: float) -> int | None:
    """The q-quantile (ms) of a latency histogram over LATENCY_BUCKETS_MS, interpolated inside its bucket."""
    total = sum(histogram)
    if not total:
        return None
    target = q * total
    seen = 0
    for i, count in enumerate(histogram):
        if count and seen + count >= target:
            low = t.LATENCY_BUCKETS_MS[i - 1] if i > 0 else 0
            high = t.LATENCY_BUCKETS_MS[i] if i < len(t.LATENCY_BUCKETS_MS) else low * 2
            return int(low + (high - low) * (target - seen) / count)
        seen += count
    return t.LATENCY_BUCKETS_MS[-1]


def _party(kind: str, value: str) -> Any:
    return sa.select(t.parties.c.call_id).where(t.parties.c.kind == kind, t.parties.c.value == value)


def _rows(conn: Any, statement: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(statement).mappings()]


def decode_payload(stored: bytes | None, codec: str) -> bytes | None:
    if stored is None:
        return None
    if codec == "zstd":
        return zstandard.ZstdDecompressor().decompress(stored)
    return bytes(stored)


def history_entry(row: dict[str, Any]) -> dict[str, Any]:
    """An `attempts` row as the event it was, the shape `calls show --json` and the console show."""
    entry = {
        key: row[key]
        for key in (
            "t",
            "type",
            "connector",
            "attempt",
            "outcome",
            "code",
            "error",
            "duration_ms",
            "mapping",
            "mapping_digest",
        )
        if row.get(key) is not None
    }
    if row.get("http_status") is not None:
        entry["status"] = row["http_status"]
    if row.get("detail"):
        entry.update(json.loads(row["detail"]))
    return entry
