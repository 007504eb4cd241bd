"""Sending calls again on purpose: replay, dead-letter replay and purge, and backfill.

All of them go through the same path as the endpoint — :meth:`WebhookIntake.prepare`
(decode, org check, routing with the current config) and the ingest script —
so a replayed call is indistinguishable from a new one except that it may
bypass the dedupe window (`force`) and clears the connectors' done-markers.
A call whose payload has left Redis (every connector finished with it) is
re-ingested from the call log's database.
CRM writes are upserts, so a replay updates what is there instead of
duplicating it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.db.events import encode_event
from bridge.db.queries import LogQueries
from bridge.errors import OperationError as ReplayError
from bridge.ingest import Ingestor
from bridge.keys import Keys
from bridge.webhook import WebhookIntake, WebhookOutcome

__all__ = ["BackfillSummary", "Operations", "iter_payload_lines"]


def _letter(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "call_session_id": row["call_session_id"],
        "connector": row["connector"],
        "t": row["t"],
        "attempts": row["attempts"],
        "error": row["error"] or "",
        "code": row["code"] or "",
        "status": row["http_status"],
    }


@dataclass
class BackfillSummary:
    accepted: int = 0
    duplicate: int = 0
    ignored: int = 0
    invalid: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.accepted + self.duplicate + self.ignored + self.invalid


class Operations:
    """Admin operations over a running bridge: Redis (to queue calls again) and the call log (to find them)."""

    def __init__(
        self,
        client: Any,
        keys: Keys,
        intake: WebhookIntake,
        ingestor: Ingestor,
        enabled: Iterable[str],
        queries: LogQueries,
    ):
        self.client = client
        self.keys = keys
        self.intake = intake
        self.ingestor = ingestor
        self.enabled = set(enabled)
        self.queries = queries

    # -- replay -----------------------------------------------------------------------
    def body(self, call_id: str) -> bytes:
        """The call's webhook body: from Redis while it is in flight, else from the log."""
        body = self.client.get(self.keys.payload(call_id)) or self.queries.payload(call_id)
        if body is None:
            raise ReplayError(f"call {call_id} is not in the log (unknown, or older than retention_days)")
        return body

    def replay(self, call_id: str, connectors: list[str] | None = None, *, actor: str = "cli") -> tuple[str, ...]:
        """Re-deliver a call (bypassing dedupe); to `connectors` or wherever routes send it now."""
        return self._resend(call_id, self.body(call_id), connectors, "replay", actor)

    def _resend(
        self, call_id: str, body: bytes, connectors: list[str] | None, kind: str, actor: str = "cli"
    ) -> tuple[str, ...]:
        prepared = self.intake.prepare(body)
        if isinstance(prepared, WebhookOutcome):
            raise ReplayError(f"call {call_id}: {prepared.body.get('error') or prepared.result}")
        targets = tuple(connectors) if connectors else prepared.decision.connectors
        unknown = [name for name in targets if name not in self.enabled]
        if unknown:
            raise ReplayError(f"connector(s) not configured or disabled: {', '.join(unknown)}")
        self.ingestor.accept_sync(
            call_id, body, targets, {**prepared.log_entry(actor, kind), "connectors": list(targets)}, force=True
        )
        return targets

    # -- dead letters -----------------------------------------------------------------
    def dead_letters(self, connector: str | None = None) -> list[dict[str, Any]]:
        return [_letter(row) for row in self.queries.dead_letters(connector)]

    def dead_letter(self, call_id: str, connector: str | None = None) -> list[dict[str, Any]]:
        return [_letter(row) for row in self.queries.dead_letters(connector, call_id)]

    def replay_dead(
        self, connector: str | None, call_ids: list[str] | None, *, actor: str = "cli"
    ) -> list[tuple[str, str]]:
        """Re-enqueue dead letters with the current config and mapping; they leave the list once the log has it."""
        done = []
        for letter in self.dead_letters(connector):
            call_id, name = letter["call_session_id"], letter["connector"]
            if call_ids is not None and call_id not in call_ids:
                continue
            self._resend(call_id, self.body(call_id), [name], "replay", actor)
            done.append((name, call_id))
        return done

    def purge_dead(self, connector: str | None, call_ids: list[str] | None, *, actor: str = "cli") -> int:
        """Forget dead letters for good: the log records each as `purged` (through the same event stream as
        everything else, so the order of what happened to a call is kept)."""
        letters = [
            letter
            for letter in self.dead_letters(connector)
            if call_ids is None or letter["call_session_id"] in call_ids
        ]
        pipe = self.client.pipeline(transaction=False)
        for letter in letters:
            event = {
                "type": "purged",
                "call": letter["call_session_id"],
                "connector": letter["connector"],
                "t": int(time.time() * 1000),
                "source_ip": actor,
            }
            pipe.xadd(self.keys.events, {"e": encode_event(event)})
        pipe.execute()
        return len(letters)

    # -- backfill ---------------------------------------------------------------------
    def backfill_one(self, body: bytes, *, force: bool, where: str, summary: BackfillSummary) -> None:
        prepared = self.intake.prepare(body)
        if isinstance(prepared, WebhookOutcome):
            if prepared.result == "ignored":
                summary.ignored += 1
                return
            summary.invalid += 1
            path = prepared.body.get("path")
            summary.problems.append(f"{where}: {prepared.body.get('error')}" + (f" at {path}" if path else ""))
            return
        result = self.ingestor.accept_sync(
            prepared.call_session_id,
            body,
            prepared.decision.connectors,
            prepared.log_entry(where.rsplit(":", 1)[0], "backfill"),
            force=force,
        )
        if result.accepted:
            summary.accepted += 1
        else:
            summary.duplicate += 1


def iter_payload_lines(path: Path) -> Iterator[tuple[str, bytes]]:
    """(file:line, body) for every non-empty line of a .jsonl file, or of every *.jsonl/*.json file in a folder."""
    files = (
        sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".json") and p.is_file())
        if path.is_dir()
        else [path]
    )
    for file in files:
        with open(file, "rb") as handle:
            if file.suffix == ".json" and path.is_dir():
                yield f"{file}:1", handle.read().strip()
                continue
            for number, line in enumerate(handle, start=1):
                line = line.strip()
                if line:
                    yield f"{file}:{number}", line
