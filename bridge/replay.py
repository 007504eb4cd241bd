"""Sending calls again on purpose: replay, dead-letter replay and purge, and backfill.

All of them go through the same path as the endpoint — :meth:`WebhookIntake.prepare`
(decode, org check, routing with the current config) and the ingest script —
so a replayed call is indistinguishable from a new one except that it may
bypass the dedupe window (`force`) and clears the connectors' done-markers.
CRM writes are upserts, so a replay updates what is there instead of
duplicating it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from bridge.errors import OperationError as ReplayError
from bridge.ingest import Ingestor
from bridge.keys import Keys
from bridge.webhook import WebhookIntake, WebhookOutcome

__all__ = ["BackfillSummary", "Operations", "iter_payload_lines"]

_decode = msgspec.json.decode


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
    def __init__(self, client: Any, keys: Keys, intake: WebhookIntake, ingestor: Ingestor, enabled: Iterable[str]):
        self.client = client
        self.keys = keys
        self.intake = intake
        self.ingestor = ingestor
        self.enabled = set(enabled)

    # -- replay -----------------------------------------------------------------------
    def replay(self, call_id: str, connectors: list[str] | None = None) -> tuple[str, ...]:
        """Re-deliver a stored call (bypassing dedupe); to `connectors` or wherever routes send it now."""
        body = self.client.get(self.keys.payload(call_id))
        if body is None:
            raise ReplayError(f"call {call_id} is not stored (unknown, or older than retention_days)")
        return self._resend(call_id, body, connectors, "replay")

    def _resend(self, call_id: str, body: bytes, connectors: list[str] | None, kind: str) -> tuple[str, ...]:
        prepared = self.intake.prepare(body)
        if isinstance(prepared, WebhookOutcome):
            raise ReplayError(f"call {call_id}: {prepared.body.get('error') or prepared.result}")
        targets = tuple(connectors) if connectors else prepared.decision.connectors
        unknown = [name for name in targets if name not in self.enabled]
        if unknown:
            raise ReplayError(f"connector(s) not configured or disabled: {', '.join(unknown)}")
        self.ingestor.accept_sync(
            call_id, body, targets, {**prepared.log_entry("cli", kind), "connectors": list(targets)}, force=True
        )
        return targets

    # -- dead letters -----------------------------------------------------------------
    def dead_letters(self, connector: str | None = None) -> list[dict[str, Any]]:
        names = [connector] if connector else sorted(self._dlq_connectors())
        letters = []
        for name in names:
            for value in self.client.hvals(self.keys.dlq(name)):
                letters.append(_decode(value))
        return sorted(letters, key=lambda letter: letter.get("t", 0))

    def _dlq_connectors(self) -> set[str]:
        prefix = self.keys.dlq("")
        return {key.decode()[len(prefix) :] for key in self.client.scan_iter(match=prefix + "*")} | self.enabled

    def dead_letter(self, call_id: str, connector: str | None = None) -> list[dict[str, Any]]:
        return [letter for letter in self.dead_letters(connector) if letter.get("call_session_id") == call_id]

    def replay_dead(self, connector: str | None, call_ids: list[str] | None) -> list[tuple[str, str]]:
        """Re-enqueue dead letters with the current config and mapping; they leave the list once delivered."""
        done = []
        for letter in self.dead_letters(connector):
            call_id, name = letter["call_session_id"], letter["connector"]
            if call_ids is not None and call_id not in call_ids:
                continue
            body = self.client.get(self.keys.payload(call_id))
            if body is None and letter.get("payload"):
                body = letter["payload"].encode()
            if body is None:
                raise ReplayError(f"dead letter {call_id} ({name}) has no payload to replay")
            self._resend(call_id, body, [name], "replay")
            done.append((name, call_id))
        return done

    def purge_dead(self, connector: str | None, call_ids: list[str] | None) -> int:
        removed = 0
        for name in [connector] if connector else sorted(self._dlq_connectors()):
            key = self.keys.dlq(name)
            if call_ids is None:
                removed += self.client.hlen(key)
                self.client.delete(key)
            elif call_ids:
                removed += self.client.hdel(key, *call_ids)
        return removed

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
            prepared.log_entry("backfill", "backfill"),
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
