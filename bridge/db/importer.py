"""Moving the log an older version kept in Redis into the database (on first start, or `db import-redis`).

Versions before the database kept, per call, a history list (``{prefix}:log:{call}``), an index of calls
(``{prefix}:calls``) and dead letters in hashes per connector (``{prefix}:dlq:{connector}``). Their
history entries are the same events the stream carries now, so importing is applying them with the
same writer, a chunk of calls per transaction, then deleting the legacy keys of what was imported —
and the payloads of calls every connector had finished with, which the log now holds. Calls already in
the database are skipped, so an interrupted import can simply be run again. Calls still in flight keep
their payload and jobs; the workers finish them as usual.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import msgspec
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bridge.db import schema as t
from bridge.db.engine import translate_errors
from bridge.db.events import LogEvent
from bridge.db.writer import LogWriter
from bridge.keys import Keys

__all__ = ["ImportSummary", "import_from_redis", "legacy_log_present"]

log = logging.getLogger("bridge.db.import")

_CHUNK = 500


@dataclass
class ImportSummary:
    calls: int = 0
    events: int = 0
    skipped: int = 0
    dead_letters: int = 0

    def describe(self) -> str:
        if not (self.calls or self.skipped or self.dead_letters):
            return "nothing to import: Redis holds no log of an older version"
        return (
            f"imported {self.calls} call(s) with {self.events} history event(s) and {self.dead_letters} dead "
            f"letter(s) without history; {self.skipped} call(s) were already in the database"
        )


def legacy_log_present(client: redis.Redis, keys: Keys) -> bool:
    return bool(client.exists(keys.legacy_index)) or bool(next(client.scan_iter(keys.legacy_dlq("*"), count=100), None))


def import_from_redis(client: redis.Redis, keys: Keys, engine: Engine, *, region: str = "US") -> ImportSummary:
    writer = LogWriter(engine, region=region)
    summary = ImportSummary()
    while True:
        ids = [i.decode() for i in client.zrange(keys.legacy_index, 0, _CHUNK - 1)]
        if not ids:
            break
        _import_chunk(client, keys, writer, ids, summary)
    _import_orphan_letters(client, keys, writer, summary)
    if summary.calls or summary.dead_letters:
        log.info("%s", summary.describe())
    return summary


def _existing(engine: Engine, call_ids: list[str]) -> set[str]:
    with translate_errors("checking imported calls", engine), engine.connect() as conn:
        rows = conn.execute(sa.select(t.calls.c.call_session_id).where(t.calls.c.call_session_id.in_(call_ids)))
        return {row[0] for row in rows}


def _import_chunk(
    client: redis.Redis, keys: Keys, writer: LogWriter, ids: list[str], summary: ImportSummary
) -> None:
    pipe = client.pipeline(transaction=False)
    for call_id in ids:
        pipe.lrange(keys.legacy_log(call_id), 0, -1)
        pipe.get(keys.payload(call_id))
    replies = pipe.execute()
    present = _existing(writer.engine, ids)
    entries: list[tuple[str, LogEvent]] = []
    payloads: dict[str, bytes | None] = {}
    for i, call_id in enumerate(ids):
        if call_id in present:
            summary.skipped += 1
            continue
        history, body = replies[2 * i], replies[2 * i + 1]
        payloads[call_id] = body
        for n, raw in enumerate(history):
            try:
                event = msgspec.convert({**msgspec.json.decode(raw), "call": call_id}, LogEvent, strict=False)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("call %s: skipping an unreadable history entry: %s", call_id, exc)
                continue
            entries.append((f"{event.t}-{n}", event))
        summary.calls += 1
    entries.sort(key=lambda entry: (entry[1].t, entry[0]))
    applied = writer.apply(entries, payloads, start=None, end=None) if entries else None
    summary.events += len(entries)
    finished = {call for call, _ in applied.finished} if applied else set()
    pipe = client.pipeline(transaction=False)
    for call_id in ids:
        pipe.delete(keys.legacy_log(call_id))
        pipe.zrem(keys.legacy_index, call_id)
        if call_id in finished:
            pipe.delete(keys.payload(call_id))  # the log has it now; only in-flight calls keep theirs in Redis
    pipe.execute()


def _import_orphan_letters(client: redis.Redis, keys: Keys, writer: LogWriter, summary: ImportSummary) -> None:
    """Dead letters whose history was gone (older than the legacy index): each becomes a call with one dead attempt."""
    for key in list(client.scan_iter(keys.legacy_dlq("*"), count=500)):
        connector = key.decode()[len(keys.legacy_dlq("")) :]
        letters = client.hgetall(key)
        calls = [field.decode() for field in letters]
        present = _existing(writer.engine, calls) if calls else set()
        entries, payloads = [], {}
        for field, raw in letters.items():
            call_id = field.decode()
            if call_id in present:
                continue
            letter = msgspec.json.decode(raw)
            t_ms = int(letter.get("t") or 0)
            payload = letter.get("payload")
            payloads[call_id] = payload.encode() if isinstance(payload, str) else None
            received = LogEvent(type="received", call=call_id, t=t_ms, connectors=[connector], source_ip="import")
            entries.append((f"{t_ms}-0", received))
            entries.append(
                (
                    f"{t_ms}-1",
                    LogEvent(
                        type="attempt",
                        call=call_id,
                        t=t_ms,
                        connector=connector,
                        attempt=int(letter.get("attempts") or 1),
                        outcome="dead",
                        error=letter.get("error"),
                        status=letter.get("status"),
                        code=letter.get("code"),
                    ),
                )
            )
            summary.dead_letters += 1
        if entries:
            writer.apply(entries, payloads, start=None, end=None)
        client.delete(key)
