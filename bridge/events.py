"""The inbound contract: Agni's `call.completed` webhook, as msgspec Structs.

Decoding happens once, at the edge, from the raw body. Only `event`, `org_id`
and `data.call_session_id` are required; every other field is optional and may
be null, and unknown fields are accepted (Agni adds fields over time). The
Structs validate types; the raw body is what gets stored and forwarded, so
unknown fields survive byte for byte.

Timestamps stay strings here on purpose: a call must never be refused because
Agni changed a date's format. Mappings parse them when they need to.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from bridge.errors import EventDecodeError

__all__ = [
    "CALL_COMPLETED",
    "CallData",
    "Envelope",
    "Message",
    "PostCallAnalysis",
    "Transcript",
    "decode_call",
    "decode_envelope",
]

CALL_COMPLETED = "call.completed"

Number = int | float


class _Lenient(msgspec.Struct, kw_only=True, frozen=True):
    """Unknown fields are ignored (forward compatibility); every field defaults to None."""


class Message(_Lenient):
    content: str | None = None
    format: str | None = None


class Transcript(_Lenient):
    id: str | None = None
    timestamp_ms: Number | None = None
    role: str | None = None
    message: Message | None = None
    created_at: str | None = None


class PostCallAnalysis(_Lenient):
    sentiment: str | None = None
    disposition: str | None = None
    goals_met: bool | None = None
    next_steps: str | None = None


class CallData(_Lenient):
    call_session_id: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    campaign_id: str | None = None
    contact_id: str | None = None
    phone: str | None = None
    status: str | None = None
    duration_sec: Number | None = None
    attempt: int | None = None
    summary: str | None = None
    recording_url: str | None = None
    caller_number: str | None = None
    callee_number: str | None = None
    caller_name: str | None = None
    caller_email: str | None = None
    agent_name: str | None = None
    channel: str | None = None
    disconnect_reason: str | None = None
    cost_total: Number | None = None
    call_latency_ms: Number | None = None
    started_at: str | None = None
    ended_at: str | None = None
    created_at: str | None = None
    post_call_analysis: PostCallAnalysis | None = None
    transcripts: list[Transcript] | None = None


class Envelope(_Lenient):
    """The outer object; `data` stays raw until we know the event is one we handle."""

    event: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    org_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    data: msgspec.Raw


_envelope_decoder = msgspec.json.Decoder(Envelope)
_call_decoder = msgspec.json.Decoder(CallData)
_AT = re.compile(r" - at `\$(.*)`$")


def decode_envelope(body: bytes) -> Envelope:
    """Decode the envelope; raise EventDecodeError with a JSON path on any problem."""
    try:
        return _envelope_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _decode_error(exc, "$") from exc


def decode_call(envelope: Envelope) -> CallData:
    """Decode `data` of a call.completed envelope (its errors are located under `$.data`)."""
    try:
        return _call_decoder.decode(envelope.data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _decode_error(exc, "$.data") from exc


def _decode_error(exc: Exception, root: str) -> EventDecodeError:
    message = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        match = _AT.search(message)
        path = root + (match.group(1) if match else "")
        reason = message[: match.start()] if match else message
        missing = re.match(r"Object missing required field `([^`]+)`", reason)
        if missing:
            path = f"{path}.{missing.group(1)}"
        return EventDecodeError(reason, path)
    # A DecodeError means the bytes are not JSON at all ("JSON is malformed: ... (byte 12)").
    return EventDecodeError(f"body is not valid JSON: {message}", root)
