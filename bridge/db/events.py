"""What the log is made of: the events the API and the workers append to the Redis stream.

One stream per bridge (``{prefix}:events``, see :mod:`bridge.keys`), one JSON object per entry in its
field ``e``. Events are written in the same atomic Redis step as the state they describe (the ingest
script, a done-marker's MULTI), so the log can never miss what happened, and the stream entry's id
orders them. The database applies them in that order (:mod:`bridge.db.drain`).

    received | replay | backfill   a call (re-)entered the bridge: org, source, route, connectors
    attempt                        one delivery attempt and its outcome: delivered | skipped | retry | dead
    paused                         a delivery put off without an attempt (open circuit, busy elsewhere)
    purged                         an admin dropped a dead letter for good

New fields always get defaults: events written by an older bridge must still decode.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["INGEST_TYPES", "LogEvent", "decode_event", "encode_event"]

INGEST_TYPES = frozenset({"received", "replay", "backfill"})
FINAL = frozenset({"delivered", "skipped", "dead", "purged"})


class LogEvent(msgspec.Struct, kw_only=True):
    type: str
    call: str
    t: int
    connector: str | None = None
    # received / replay / backfill
    org_id: str = ""
    source_ip: str = ""
    route: str = ""
    connectors: list[str] = msgspec.field(default_factory=list)
    # attempt
    attempt: int | None = None
    outcome: str | None = None
    records: dict[str, str] = msgspec.field(default_factory=dict)
    links: dict[str, str] = msgspec.field(default_factory=dict)
    match: str = ""
    notes: list[str] = msgspec.field(default_factory=list)
    skipped: str = ""
    duration_ms: float | None = None
    mapping: str | None = None
    mapping_digest: str | None = None
    mapping_origin: str | None = None
    error: str | None = None
    status: int | None = None
    code: str | None = None
    retry_after: float | None = None
    # paused
    reason: str | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LogEvent)


def encode_event(event: dict[str, Any]) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes) -> LogEvent:
    return _decoder.decode(data)


def detail_of(event: LogEvent) -> dict[str, Any]:
    """The parts of an attempt that have no column of their own, for the history's `detail` JSON."""
    detail: dict[str, Any] = {}
    for name in ("records", "links", "match", "notes", "skipped", "retry_after", "reason", "mapping_origin"):
        value = getattr(event, name)
        if value:
            detail[name] = value
    if event.type in INGEST_TYPES:
        detail.update(org_id=event.org_id, source_ip=event.source_ip, route=event.route, connectors=event.connectors)
    return detail
