"""The read side of the delivery log: "what happened to this call?" for admins.

Built from what the ingest script and the workers write (see :mod:`bridge.keys`):
the history list, the per-connector done-markers and the dead-letter hashes.
Each connector's state is one of

    delivered   the CRM confirmed the write         skipped   the connector chose not to write
    dead        a dead letter awaits an admin        failed    attempts failed; retries are scheduled
    pending     queued (or paused), no attempt yet

and a call's overall status is the worst of its connectors' (dead > failed >
pending > skipped > delivered); a call routed nowhere is `unrouted`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec

from bridge.keys import Keys

__all__ = ["CallLog", "CallReport", "ConnectorState", "parse_since"]

_decode = msgspec.json.decode
_RANK = {"dead": 0, "failed": 1, "pending": 2, "skipped": 3, "delivered": 4}
STATUSES = ("delivered", "skipped", "failed", "dead", "pending", "unrouted")


@dataclass
class ConnectorState:
    connector: str
    status: str
    attempts: int = 0
    last_error: str = ""
    records: dict[str, str] = field(default_factory=dict)
    match: str = ""
    mapping: str = ""


@dataclass
class CallReport:
    call_session_id: str
    status: str
    received_at: float | None
    org_id: str = ""
    source_ip: str = ""
    route: str = ""
    connectors: list[ConnectorState] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, *, history: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not history:
            data.pop("history")
        return data


def parse_since(text: str) -> float:
    """`90s`, `15m`, `2h`, `7d` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return float(text[:-1]) * units[text[-1]]
    if text.replace(".", "", 1).isdigit():
        return float(text)
    raise ValueError(f"cannot read {text!r} as a duration (use e.g. 30m, 2h, 7d)")


class CallLog:
    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def report(self, call_id: str) -> CallReport | None:
        reports = self._reports([call_id])
        return reports[0] if reports else None

    def list(
        self,
        *,
        status: str | None = None,
        connector: str | None = None,
        since_seconds: float | None = None,
        limit: int = 100,
    ) -> list[CallReport]:
        """Most recent first, filtered; scans at most 20,000 calls of the window."""
        low = "-inf" if since_seconds is None else (time.time() - since_seconds) * 1000
        found: list[CallReport] = []
        offset, page = 0, 500
        while len(found) < limit and offset < 20_000:
            ids = self.client.zrevrangebyscore(self.keys.index, "+inf", low, start=offset, num=page)
            if not ids:
                break
            offset += len(ids)
            for report in self._reports([i.decode() if isinstance(i, bytes) else i for i in ids]):
                if connector and connector not in {c.connector for c in report.connectors}:
                    continue
                if status and not self._has_status(report, status, connector):
                    continue
                found.append(report)
                if len(found) >= limit:
                    break
        return found

    @staticmethod
    def _has_status(report: CallReport, status: str, connector: str | None) -> bool:
        if connector:
            return any(c.connector == connector and c.status == status for c in report.connectors)
        return report.status == status

    def _reports(self, call_ids: list[str]) -> list[CallReport]:
        # MULTI: a call's history and done-markers are written together (CallStore.mark_done), so read
        # them at one instant too, or a report could say "delivered" without the records.
        pipe = self.client.pipeline(transaction=True)
        for call_id in call_ids:
            pipe.lrange(self.keys.log(call_id), 0, -1)
            pipe.hgetall(self.keys.done(call_id))
        replies = pipe.execute()
        partial = []
        for i, call_id in enumerate(call_ids):
            history = [_decode(item) for item in replies[2 * i]]
            if not history:
                continue
            done = {_text(k): _decode(v) for k, v in replies[2 * i + 1].items()}
            partial.append((call_id, history, done))
        # Dead letters live per connector; ask only about the connectors each call was routed to.
        # The letter itself is read, not just its existence: it may have been written after the
        # history above was read, and then it is the only place the CRM's error can be found.
        pipe = self.client.pipeline(transaction=False)
        asked = []
        for call_id, history, _ in partial:
            for name in _connectors_of(history):
                pipe.hget(self.keys.dlq(name), call_id)
                asked.append((call_id, name))
        replies = pipe.execute() if asked else []
        dead = {pair: _decode(raw) for pair, raw in zip(asked, replies, strict=True) if raw is not None}
        return [self._build(call_id, history, done, dead) for call_id, history, done in partial]

    @staticmethod
    def _build(
        call_id: str,
        history: list[dict[str, Any]],
        done: dict[str, Any],
        dead: dict[tuple[str, str], dict[str, Any]],
    ) -> CallReport:
        received = next((e for e in history if e.get("type") in ("received", "replay", "backfill")), {})
        report = CallReport(
            call_session_id=call_id,
            status="unrouted",
            received_at=received.get("t", 0) / 1000 if received else None,
            org_id=received.get("org_id", ""),
            source_ip=received.get("source_ip", ""),
            route=received.get("route", ""),
            history=history,
        )
        for name in _connectors_of(history):
            state = ConnectorState(name, "pending")
            # Only attempts after the latest replay count toward the current state.
            for event in history:
                if event.get("type") in ("replay", "backfill") and name in event.get("connectors", []):
                    state = ConnectorState(name, "pending")
                if event.get("type") != "attempt" or event.get("connector") != name:
                    continue
                state.attempts = max(state.attempts, int(event.get("attempt") or 0))
                state.mapping = event.get("mapping", state.mapping)
                outcome = event.get("outcome")
                if outcome in ("retry", "dead"):
                    state.status = "failed" if outcome == "retry" else "dead"
                    state.last_error = event.get("error", "")
                elif outcome in ("delivered", "skipped"):
                    state.status = outcome
                    state.records = event.get("records") or {}
                    state.match = event.get("match") or event.get("skipped") or ""
            if name in done and state.status not in ("delivered", "skipped"):
                state.status = done[name].get("outcome", "delivered")
            letter = dead.get((call_id, name))
            if letter is not None and name not in done:
                state.status = "dead"
                state.last_error = letter.get("error") or state.last_error
                state.attempts = max(state.attempts, int(letter.get("attempts") or 0))
            report.connectors.append(state)
        if report.connectors:
            report.status = min((c.status for c in report.connectors), key=lambda s: _RANK.get(s, 0))
        return report


def _connectors_of(history: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for event in history:
        for name in event.get("connectors", []) if event.get("type") != "attempt" else [event.get("connector")]:
            if name and name not in names:
                names.append(name)
    return names


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
