"""Applies a batch of log events to the database, in one transaction, exactly once.

The batch's position in the stream moves with it: the transaction starts by moving the stored cursor
from where the batch starts to where it ends (compare-and-set), so a batch is applied once even if two
processes drain at the same moment (one of them fails the compare and rolls back) or a process dies
between committing and trimming the stream (the next one starts after the stored cursor).

The work is done per batch, not per event: a handful of multi-row statements whatever the batch size,
which is what lets SQLite (one writer at a time) and PostgreSQL keep up with bursts of deliveries.
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import zstandard
from sqlalchemy.engine import Connection, Engine

from bridge.db import schema as t
from bridge.db.engine import is_sqlite, translate_errors
from bridge.db.events import FINAL, INGEST_TYPES, LogEvent, detail_of
from bridge.db.facts import CallFacts, error_group, facts_of
from bridge.db.schema import LATENCY_BUCKETS_MS as BUCKETS

__all__ = ["START", "Applied", "LogWriter", "StaleCursor", "worst_status"]

START = "0-0"
CURSOR = "cursor"
_RANK = {"dead": 0, "failed": 1, "pending": 2, "purged": 3, "skipped": 3, "delivered": 4}
_CHUNK = 500


class StaleCursor(Exception):
    """Another process applied this part of the stream first; re-read the cursor and go on from there."""


def worst_status(statuses: Iterable[str]) -> str:
    """A call's status: the worst of its connectors' (dead > failed > pending > purged, skipped > delivered)."""
    found = list(statuses)
    return min(found, key=lambda s: _RANK.get(s, 0)) if found else "unrouted"


@dataclass
class Applied:
    events: int = 0
    finished: list[tuple[str, str]] = field(default_factory=list)
    """(call_session_id, ingest event id) of calls every connector has finished with: Redis may let go of them."""


class LogWriter:
    def __init__(self, engine: Engine, *, region: str = "US", compress: bool | None = None) -> None:
        self.engine = engine
        self.region = region
        # SQLite stores values as they are; PostgreSQL compresses large ones itself (TOAST).
        self.compress = is_sqlite(engine) if compress is None else compress
        self._zstd = zstandard.ZstdCompressor(level=3)

    def cursor(self) -> str:
        with translate_errors("reading the log position", self.engine), self.engine.connect() as conn:
            value = conn.execute(sa.select(t.log_state.c.value).where(t.log_state.c.name == CURSOR)).scalar()
        return value or START

    def encode_payload(self, body: bytes) -> tuple[bytes, str]:
        return (self._zstd.compress(body), "zstd") if self.compress else (body, "json")

    def apply(
        self,
        entries: list[tuple[str, LogEvent]],
        payloads: dict[str, bytes | None],
        *,
        start: str | None,
        end: str | None,
    ) -> Applied:
        """Apply `entries` (stream id, event), the events after `start` up to `end`; StaleCursor if the log is
        no longer at `start` (None, None: events from elsewhere, e.g. an import, that move no position).
        `payloads` holds the webhook body of each (re)ingested call, when Redis had it."""
        with translate_errors("writing the call log", self.engine), self.engine.begin() as conn:
            if start is not None and end is not None:
                self._move_cursor(conn, start, end)
            return _Batch(self, conn).run(entries, payloads)

    @staticmethod
    def _move_cursor(conn: Connection, start: str, end: str) -> None:
        state = t.log_state
        moved = conn.execute(
            sa.update(state).where(state.c.name == CURSOR, state.c.value == start).values(value=end)
        ).rowcount
        if moved != 1:  # (the row is created by the first migration, at "0-0")
            raise StaleCursor(f"the log is no longer at {start}")


class _Batch:
    """The state of one batch while it is applied."""

    def __init__(self, writer: LogWriter, conn: Connection) -> None:
        self.writer = writer
        self.conn = conn
        self.sqlite = is_sqlite(writer.engine)
        self.now = int(time.time() * 1000)
        self.ids: dict[str, int] = {}  # call_session_id -> calls.id
        self.deliveries: dict[tuple[int, str], dict[str, Any]] = {}
        self.history: list[dict[str, Any]] = []
        self.records: dict[tuple[int, str, str], dict[str, Any]] = {}
        self.dead: dict[tuple[int, str], dict[str, Any] | None] = {}  # None: delete the letter
        self.touched: set[int] = set()
        self.stats: dict[tuple[str, int], dict[str, Any]] = {}  # (connector, hour) -> increments

    def run(self, entries: list[tuple[str, LogEvent]], payloads: dict[str, bytes | None]) -> Applied:
        self._load_ids({event.call for _, event in entries})
        for stream_id, event in entries:
            call_id = self._call(event, stream_id, payloads)
            self.touched.add(call_id)
            self.history.append(self._history_row(call_id, event))
            if event.type in INGEST_TYPES:
                for connector in event.connectors:
                    self._queue(call_id, connector, event.t)
            elif event.type == "attempt" and event.connector:
                self._attempt(call_id, event)
            elif event.type == "purged" and event.connector:
                state = self._delivery(call_id, event.connector, event.t)
                if state["status"] == "dead":  # an admin gave up on it: no longer a failure to act on
                    state.update(status="purged", updated_at=event.t)
                self.dead[(call_id, event.connector)] = None
        self._flush()
        return Applied(len(entries), self._statuses())

    # -- calls --------------------------------------------------------------------------
    def _load_ids(self, call_ids: set[str]) -> None:
        ordered = sorted(call_ids)
        for i in range(0, len(ordered), _CHUNK):
            chunk = ordered[i : i + _CHUNK]
            rows = self.conn.execute(
                sa.select(t.calls.c.call_session_id, t.calls.c.id).where(t.calls.c.call_session_id.in_(chunk))
            )
            self.ids.update({row[0]: row[1] for row in rows})

    def _call(self, event: LogEvent, stream_id: str, payloads: dict[str, bytes | None]) -> int:
        """The call's row id, creating or updating the row for (re)ingest events."""
        known = self.ids.get(event.call)
        if event.type not in INGEST_TYPES:
            if known is not None:
                return known
            # An attempt for a call the log never saw enter (e.g. imported history): keep it anyway.
            return self._insert_call(event.call, {"received_at": event.t, "ingest_event": ""}, None)
        values: dict[str, Any] = {
            "org_id": event.org_id,
            "source": event.source_ip,
            "route": event.route,
            "connectors": json.dumps(event.connectors),
            "ingest_event": stream_id,
        }
        body = payloads.get(event.call)
        if known is None:
            return self._insert_call(event.call, {**values, "received_at": event.t}, body)
        if body is not None:
            columns, facts = self._payload_columns(body)
            self._replace_text(known, facts)
            values.update(columns)
        self.conn.execute(sa.update(t.calls).where(t.calls.c.id == known).values(updated_at=self.now, **values))
        return known

    def _payload_columns(self, body: bytes) -> tuple[dict[str, Any], CallFacts]:
        stored, codec = self.writer.encode_payload(body)
        facts = facts_of(body, self.writer.region)
        return {"payload": stored, "payload_codec": codec, "payload_bytes": len(body), **facts.columns()}, facts

    def _insert_call(self, call_session_id: str, values: dict[str, Any], body: bytes | None) -> int:
        facts: CallFacts | None = None
        row = {"call_session_id": call_session_id, "updated_at": self.now, "status": "pending", **values}
        row.setdefault("org_id", "")
        row.setdefault("source", "")
        row.setdefault("route", "")
        row.setdefault("connectors", "[]")
        row.update(payload=None, payload_codec="json", payload_bytes=0)
        if body is not None:
            columns, facts = self._payload_columns(body)
            row.update(columns)
        new_id = self.conn.execute(sa.insert(t.calls).values(**row).returning(t.calls.c.id)).scalar_one()
        self.ids[call_session_id] = new_id
        if self.sqlite:  # every call has its full-text row (empty without a payload), so deletes always match
            self.conn.execute(
                sa.text("INSERT INTO calls_fts(rowid, summary, next_steps) VALUES (:id, :s, :n)"),
                {
                    "id": new_id,
                    "s": (facts.summary if facts else None) or "",
                    "n": (facts.next_steps if facts else None) or "",
                },
            )
        if facts is not None:
            parties = [("phone", p) for p in facts.phones] + [("email", e) for e in facts.emails]
            if parties:
                self.conn.execute(
                    _insert_ignore(t.parties, self.sqlite),
                    [{"call_id": new_id, "kind": k, "value": v, "received_at": row["received_at"]} for k, v in parties],
                )
        return new_id

    def _replace_text(self, call_id: int, facts: CallFacts) -> None:
        """A re-ingested call may carry new text: the full-text index and parties follow."""
        if self.sqlite:
            old = self.conn.execute(
                sa.select(t.calls.c.summary, t.calls.c.next_steps).where(t.calls.c.id == call_id)
            ).first()
            if old is not None:
                self.conn.execute(
                    sa.text(
                        "INSERT INTO calls_fts(calls_fts, rowid, summary, next_steps) VALUES ('delete', :id, :s, :n)"
                    ),
                    {"id": call_id, "s": old[0] or "", "n": old[1] or ""},
                )
            self.conn.execute(
                sa.text("INSERT INTO calls_fts(rowid, summary, next_steps) VALUES (:id, :s, :n)"),
                {"id": call_id, "s": facts.summary or "", "n": facts.next_steps or ""},
            )
        received = self.conn.execute(sa.select(t.calls.c.received_at).where(t.calls.c.id == call_id)).scalar()
        parties = [("phone", p) for p in facts.phones] + [("email", e) for e in facts.emails]
        if parties:
            self.conn.execute(
                _insert_ignore(t.parties, self.sqlite),
                [{"call_id": call_id, "kind": k, "value": v, "received_at": received} for k, v in parties],
            )

    # -- deliveries ---------------------------------------------------------------------
    def _delivery(self, call_id: int, connector: str, t_ms: int) -> dict[str, Any]:
        key = (call_id, connector)
        state = self.deliveries.get(key)
        if state is None:
            row = (
                self.conn.execute(
                    sa.select(t.deliveries).where(
                        t.deliveries.c.call_id == call_id, t.deliveries.c.connector == connector
                    )
                )
                .mappings()
                .first()
            )
            state = dict(row) if row is not None else _new_delivery(call_id, connector, t_ms)
            self.deliveries[key] = state
        return state

    def _queue(self, call_id: int, connector: str, t_ms: int) -> None:
        """(Re)ingested for this connector: pending again, attempts counted afresh, any dead letter replayed."""
        self.deliveries[(call_id, connector)] = {
            **self._delivery(call_id, connector, t_ms),
            **_new_delivery(call_id, connector, t_ms),
        }
        self.dead[(call_id, connector)] = None

    def _attempt(self, call_id: int, event: LogEvent) -> None:
        connector = event.connector or ""
        state = self._delivery(call_id, connector, event.t)
        state["attempts"] = max(state["attempts"] or 0, event.attempt or 0)
        state["updated_at"] = event.t
        if event.mapping:
            state["mapping"], state["mapping_digest"] = event.mapping, event.mapping_digest
        outcome = event.outcome or ""
        self._count(connector, event.t, outcome, event.t - (state["queued_at"] or event.t))
        if outcome in ("delivered", "skipped"):
            state.update(
                status=outcome,
                finished_at=event.t,
                latency_ms=max(0, event.t - (state["queued_at"] or event.t)),
                match=event.match or event.skipped or None,
                last_error=None,
                error_group=None,
                code=None,
                http_status=None,
            )
            for kind, crm_id in event.records.items():
                self.records[(call_id, connector, kind)] = {
                    "call_id": call_id,
                    "connector": connector,
                    "kind": kind,
                    "crm_id": str(crm_id),
                    "url": event.links.get(kind),
                    "written_at": event.t,
                }
            self.dead[(call_id, connector)] = None
            return
        group = error_group(event.error)
        state.update(last_error=event.error, error_group=group, code=event.code, http_status=event.status)
        if outcome == "dead":
            state["status"] = "dead"
            self.dead[(call_id, connector)] = {
                "call_id": call_id,
                "connector": connector,
                "t": event.t,
                "attempts": state["attempts"],
                "error": event.error,
                "error_group": group,
                "code": event.code,
                "http_status": event.status,
            }
        elif state["status"] not in FINAL:
            state["status"] = "failed"

    def _count(self, connector: str, t_ms: int, outcome: str, latency_ms: int) -> None:
        column = {"delivered": "delivered", "skipped": "skipped", "retry": "retried", "dead": "dead"}.get(outcome)
        if column is None:
            return
        hour = t_ms - t_ms % 3_600_000
        row = self.stats.setdefault(
            (connector, hour),
            {
                "delivered": 0,
                "skipped": 0,
                "retried": 0,
                "dead": 0,
                "latency_sum_ms": 0,
                "buckets": [0] * (len(BUCKETS) + 1),
            },
        )
        row[column] += 1
        if outcome == "delivered":
            latency = max(0, latency_ms)
            row["latency_sum_ms"] += latency
            row["buckets"][bisect.bisect_left(BUCKETS, latency)] += 1

    # -- writing ------------------------------------------------------------------------
    @staticmethod
    def _history_row(call_id: int, event: LogEvent) -> dict[str, Any]:
        detail = detail_of(event)
        return {
            "call_id": call_id,
            "t": event.t,
            "type": event.type,
            "connector": event.connector,
            "attempt": event.attempt,
            "outcome": event.outcome,
            "http_status": event.status,
            "code": event.code,
            "error": event.error,
            "duration_ms": event.duration_ms,
            "mapping": event.mapping,
            "mapping_digest": event.mapping_digest,
            "detail": json.dumps(detail) if detail else None,
        }

    def _flush(self) -> None:
        conn = self.conn
        if self.history:
            conn.execute(sa.insert(t.attempts), self.history)
        if self.deliveries:
            conn.execute(_upsert(t.deliveries, self.sqlite, ("call_id", "connector")), list(self.deliveries.values()))
        if self.records:
            conn.execute(_upsert(t.records, self.sqlite, ("call_id", "connector", "kind")), list(self.records.values()))
        gone = [key for key, letter in self.dead.items() if letter is None]
        for i in range(0, len(gone), _CHUNK):
            conn.execute(
                sa.delete(t.dead_letters).where(
                    sa.tuple_(t.dead_letters.c.call_id, t.dead_letters.c.connector).in_(gone[i : i + _CHUNK])
                )
            )
        letters = [letter for letter in self.dead.values() if letter is not None]
        if letters:
            conn.execute(_upsert(t.dead_letters, self.sqlite, ("call_id", "connector")), letters)
        if self.stats:
            self._flush_stats()

    def _flush_stats(self) -> None:
        """Add this batch's counts to the hourly rows (read, add, write: the log writer is the only writer)."""
        s = t.delivery_stats
        keys = list(self.stats)
        current: dict[tuple[str, int], dict[str, Any]] = {}
        for i in range(0, len(keys), _CHUNK):
            rows = self.conn.execute(sa.select(s).where(sa.tuple_(s.c.connector, s.c.hour).in_(keys[i : i + _CHUNK])))
            current.update({(r.connector, r.hour): dict(r._mapping) for r in rows})
        merged = []
        for (connector, hour), add in self.stats.items():
            row = current.get((connector, hour))
            buckets = json.loads(row["latency_buckets"]) if row else []
            buckets += [0] * (len(add["buckets"]) - len(buckets))
            merged.append(
                {
                    "connector": connector,
                    "hour": hour,
                    **{k: (row[k] if row else 0) + add[k] for k in ("delivered", "skipped", "retried", "dead")},
                    "latency_sum_ms": (row["latency_sum_ms"] if row else 0) + add["latency_sum_ms"],
                    "latency_buckets": json.dumps([a + b for a, b in zip(buckets, add["buckets"], strict=True)]),
                }
            )
        self.conn.execute(_upsert(s, self.sqlite, ("connector", "hour")), merged)

    def _statuses(self) -> list[tuple[str, str]]:
        """Recompute each touched call's overall status; return the calls every connector has finished with."""
        touched = sorted(self.touched)
        by_call: dict[int, list[str]] = {call_id: [] for call_id in touched}
        for i in range(0, len(touched), _CHUNK):
            rows = self.conn.execute(
                sa.select(t.deliveries.c.call_id, t.deliveries.c.status).where(
                    t.deliveries.c.call_id.in_(touched[i : i + _CHUNK])
                )
            )
            for call_id, status in rows:
                by_call[call_id].append(status)
        updates = [{"b_id": call_id, "b_status": worst_status(s), "b_now": self.now} for call_id, s in by_call.items()]
        if updates:
            self.conn.execute(
                sa.update(t.calls)
                .where(t.calls.c.id == sa.bindparam("b_id"))
                .values(status=sa.bindparam("b_status"), updated_at=sa.bindparam("b_now")),
                updates,
            )
        finished_ids = [call_id for call_id, s in by_call.items() if s and all(x in FINAL for x in s)]
        finished: list[tuple[str, str]] = []
        for i in range(0, len(finished_ids), _CHUNK):
            rows = self.conn.execute(
                sa.select(t.calls.c.call_session_id, t.calls.c.ingest_event).where(
                    t.calls.c.id.in_(finished_ids[i : i + _CHUNK])
                )
            )
            finished.extend((row[0], row[1]) for row in rows)
        return finished


def _new_delivery(call_id: int, connector: str, t_ms: int) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "connector": connector,
        "status": "pending",
        "attempts": 0,
        "updated_at": t_ms,
        "queued_at": t_ms,
        "finished_at": None,
        "latency_ms": None,
        "last_error": None,
        "error_group": None,
        "code": None,
        "http_status": None,
        "match": None,
        "mapping": None,
        "mapping_digest": None,
    }


def _dialect_insert(table: sa.Table, sqlite: bool) -> Any:
    if sqlite:
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert(table)


def _insert_ignore(table: sa.Table, sqlite: bool) -> Any:
    return _dialect_insert(table, sqlite).on_conflict_do_nothing()


def _upsert(table: sa.Table, sqlite: bool, key: tuple[str, ...]) -> Any:
    statement = _dialect_insert(table, sqlite)
    return statement.on_conflict_do_update(
        index_elements=list(key),
        set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in key},
    )
