""" "What happened to this call?" — the reports admins read, built from the call log's database.

Each connector's state is one of

    delivered   the CRM confirmed the write         skipped   the connector chose not to write
    dead        a dead letter awaits an admin        failed    attempts failed; retries are scheduled
    pending     queued (or paused), no attempt yet   purged    an admin dropped its dead letter

and a call's overall status is the worst of its connectors' (dead > failed > pending > skipped >
delivered); a call routed nowhere is `unrouted`. The database is written by the workers a moment
after the fact (see :mod:`bridge.db.drain`): when the log lags, a report says so rather than guess.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from bridge.db.queries import CallSearch, LogQueries, history_entry

__all__ = ["STATUSES", "CallLog", "CallPage", "CallReport", "CallSearch", "ConnectorState", "parse_since", "parse_when"]

STATUSES = ("delivered", "skipped", "failed", "dead", "pending", "purged", "unrouted")


@dataclass
class ConnectorState:
    connector: str
    status: str
    attempts: int = 0
    last_error: str = ""
    code: str = ""
    http_status: int | None = None
    records: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    match: str = ""
    mapping: str = ""
    mapping_digest: str = ""
    latency_ms: int | None = None
    dead_letter: bool = False


@dataclass
class CallReport:
    call_session_id: str
    status: str
    received_at: float | None
    org_id: str = ""
    source_ip: str = ""
    route: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    connectors: list[ConnectorState] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, *, history: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not history:
            data.pop("history")
        return data


@dataclass
class CallPage:
    calls: list[CallReport]
    next_cursor: str | None


def parse_since(text: str) -> float:
    """`90s`, `15m`, `2h`, `7d` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return float(text[:-1]) * units[text[-1]]
    if text.replace(".", "", 1).isdigit():
        return float(text)
    raise ValueError(f"cannot read {text!r} as a duration (use e.g. 30m, 2h, 7d)")


def parse_when(text: str, now: float | None = None) -> int:
    """A duration ago (`30m`, `2h`, `7d`) or an ISO date/time (`2026-12-01`, `2026-12-01T09:00Z`) → epoch ms."""
    try:
        return int(((now or time.time()) - parse_since(text)) * 1000)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"cannot read {text!r} as a time (use e.g. 2h, 7d, 2026-12-01 or 2026-12-01T09:00Z)") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


class CallLog:
    """Reports over the log database (read-only; the workers write it)."""

    def __init__(self, engine: Engine, *, region: str = "US") -> None:
        self.queries = LogQueries(engine, region=region)

    def report(self, call_session_id: str) -> CallReport | None:
        found = self.queries.call(call_session_id)
        if found is None:
            return None
        row = found["call"]
        records: dict[str, dict[str, tuple[str, str | None]]] = {}
        for record in found["records"]:
            records.setdefault(record["connector"], {})[record["kind"]] = (record["crm_id"], record["url"])
        dead = {letter["connector"] for letter in found["dead"]}
        report = _report(row)
        report.connectors = [
            _state(d, records.get(d["connector"], {}), d["connector"] in dead) for d in found["deliveries"]
        ]
        order = json.loads(row["connectors"] or "[]")
        report.connectors.sort(key=lambda s: order.index(s.connector) if s.connector in order else len(order))
        report.history = [history_entry(h) for h in found["history"]]
        return report

    def search(self, query: CallSearch) -> CallPage:
        rows, cursor = self.queries.search(query)
        reports = []
        for row in rows:
            report = _report(row)
            report.connectors = [_state(d, {}, d["status"] == "dead") for d in row["deliveries"]]
            reports.append(report)
        return CallPage(reports, cursor)

    def payload(self, call_session_id: str) -> bytes | None:
        return self.queries.payload(call_session_id)


def _report(row: dict[str, Any]) -> CallReport:
    facts = {
        key: row.get(key)
        for key in (
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
            "summary",
            "next_steps",
        )
        if row.get(key) is not None
    }
    return CallReport(
        call_session_id=row["call_session_id"],
        status=row["status"],
        received_at=row["received_at"] / 1000 if row.get("received_at") else None,
        org_id=row.get("org_id") or "",
        source_ip=row.get("source") or "",
        route=row.get("route") or "",
        facts=facts,
    )


def _state(d: dict[str, Any], records: dict[str, tuple[str, str | None]], dead: bool) -> ConnectorState:
    return ConnectorState(
        connector=d["connector"],
        status=d["status"],
        attempts=int(d.get("attempts") or 0),
        last_error=d.get("last_error") or "",
        code=d.get("code") or "",
        http_status=d.get("http_status"),
        records={kind: crm_id for kind, (crm_id, _) in records.items()},
        links={kind: url for kind, (_, url) in records.items() if url},
        match=d.get("match") or "",
        mapping=d.get("mapping") or "",
        mapping_digest=d.get("mapping_digest") or "",
        latency_ms=d.get("latency_ms"),
        dead_letter=dead,
    )
