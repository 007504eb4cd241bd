"""Turning rendered mapping records into the bodies Pipedrive accepts. Pure: no I/O.

The mapping names Pipedrive's own fields; the rules of Pipedrive's formats are applied here, once, so admins
write plain timestamps and seconds:

    call log   start_time, end_time   any timestamp -> UTC "YYYY-MM-DD HH:MM:SS"
               duration               seconds -> "125" (a string, as Pipedrive documents it)
               outcome                must be one of OUTCOMES (else a dead letter naming the field)
    activity   due_date               any timestamp or date -> "YYYY-MM-DD" (UTC)
               due_time               any timestamp -> UTC "HH:MM"
               duration               seconds -> "HH:MM", rounded up to the minute ("HH:MM" passes as is)
               done, busy             booleans
    both       *_id, priority, visible_to   integers
               note                   cut to MAX_NOTE characters (with a note), then the marker appended

What lookups decide is added unless the mapping already set it: the person (call log `person_id`; activity
`participants: [{person_id, primary: true}]`, since `person_id` is read-only in API v2), `org_id`, `deal_id`
(never next to a mapped `lead_id`: Pipedrive takes one of the two) and the owner (call log `user_id`, activity
`owner_id`).

The marker ``agni:<call_session_id>`` (``agni:<id>:follow_up`` on the follow-up) ends every note as a line of
its own: Pipedrive has no external id on call logs or activities, so reconciliation after a lost answer
recognises the record by it (:mod:`connectors.pipedrive.reconcile`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.errors import PermanentError
from bridge.templating import parse_datetime, truncate

__all__ = [
    "FOLLOW_UP",
    "MAX_NOTE",
    "OUTCOMES",
    "Links",
    "activity_body",
    "call_log_body",
    "has_marker",
    "marker",
    "person_body",
    "with_marker",
]

FOLLOW_UP = "follow_up"
MAX_NOTE = 100_000  # Pipedrive documents no limit; a transcript can be long, and a cut keeps the marker
OUTCOMES = ("connected", "no_answer", "left_message", "left_voicemail", "wrong_number", "busy")
INT_FIELDS = frozenset(
    {"user_id", "person_id", "org_id", "deal_id", "owner_id", "activity_id", "project_id", "priority", "visible_to"}
)
BOOL_FIELDS = frozenset({"done", "busy"})
_PIPEDRIVE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CLOCK = re.compile(r"^\d{1,2}:\d{2}(:\d{2})?$")
_TRUE = {"true", "1", "yes", "on"}


@dataclass(frozen=True)
class Links:
    """What lookups decided: the person, organization, deal and owner (Pipedrive ids), each optional."""

    person_id: str | None = None
    org_id: str | None = None
    deal_id: str | None = None
    owner_id: str | None = None


def marker(key: str) -> str:
    """``agni:<key>``: how a record written by the bridge is recognised in Pipedrive."""
    return f"agni:{key}"


def has_marker(text: Any, key: str) -> bool:
    """Whether `text` carries exactly this marker (``agni:X`` does not match ``agni:X:follow_up``)."""
    return re.search(re.escape(marker(key)) + r"(?![\w:.-])", str(text or "")) is not None


def with_marker(note: Any, key: str, notes: list[str]) -> str:
    """The note, cut to MAX_NOTE characters if need be (noted), ending with the marker on a line of its own."""
    text = "" if note is None else str(note)
    if len(text) > MAX_NOTE:
        text = truncate(text, MAX_NOTE)
        notes.append(f"note was longer than {MAX_NOTE:,} characters and was truncated")
    return f"{text}<p>{marker(key)}</p>"


def call_log_body(record: Mapping[str, Any] | None, key: str, links: Links, notes: list[str]) -> dict[str, Any]:
    """POST /v1/callLogs from the mapped record (see the module docstring)."""
    body = _typed(record)
    for field in ("start_time", "end_time"):
        if field in body:
            body[field] = pipedrive_time(body[field], field)
    if "duration" in body:
        body["duration"] = str(_seconds(body["duration"], "duration"))
    outcome = body.get("outcome")
    if outcome not in OUTCOMES:
        allowed = ", ".join(OUTCOMES)
        raise PermanentError(f"mapping field outcome: {outcome!r} is not a Pipedrive call outcome ({allowed})")
    _link(body, "person_id", links.person_id)
    _link(body, "org_id", links.org_id)
    if "lead_id" not in body:
        _link(body, "deal_id", links.deal_id)
    _link(body, "user_id", links.owner_id)
    body["note"] = with_marker(body.get("note"), key, notes)
    return body


def activity_body(
    record: Mapping[str, Any] | None, key: str, links: Links, notes: list[str], *, done: bool
) -> dict[str, Any]:
    """POST /api/v2/activities from the mapped record: a `call` activity, done (the call) or open (a follow-up)."""
    body = _typed(record)
    if "due_date" in body:
        body["due_date"] = activity_date(body["due_date"])
    if "due_time" in body:
        body["due_time"] = activity_time(body["due_time"])
    if "duration" in body:
        body["duration"] = activity_duration(body["duration"])
    body.setdefault("type", "call")
    body.setdefault("done", done)
    body.pop("person_id", None)  # read-only in v2: the primary participant is the person
    if links.person_id is not None and "participants" not in body:
        body["participants"] = [{"person_id": as_id(links.person_id), "primary": True}]
    _link(body, "org_id", links.org_id)
    if "lead_id" not in body:
        _link(body, "deal_id", links.deal_id)
    _link(body, "owner_id", links.owner_id)
    body["note"] = with_marker(body.get("note"), key, notes)
    return body


def person_body(
    name: Any, email: str | None, phone: str | None, extra: Mapping[str, Any], fields: Mapping[str, Any]
) -> dict[str, Any]:
    """POST /api/v2/persons: the caller's name, email and number, then the mapping's `new_contact` section
    (`extra`), then `match.person_fields` (`fields`)."""
    text = str(name or "").strip()
    body: dict[str, Any] = {"name": text or f"Unknown caller {phone or email or ''}".strip()}
    if email:
        body["emails"] = [{"value": email, "primary": True, "label": "work"}]
    if phone:
        body["phones"] = [{"value": phone, "primary": True, "label": "work"}]
    body.update(_typed(extra))
    body.update(_typed(fields))
    return body


# -- formats ------------------------------------------------------------------------------
def pipedrive_time(value: Any, field: str) -> str:
    """UTC "YYYY-MM-DD HH:MM:SS" (what call logs take) from any timestamp."""
    text = str(value).strip()
    if _PIPEDRIVE_TIME.match(text):
        return text
    parsed = parse_datetime(value)
    if parsed is None:
        raise PermanentError(f"mapping field {field}: cannot read {text[:40]!r} as a timestamp")
    return parsed.strftime("%Y-%m-%d %H:%M:%S")


def activity_date(value: Any) -> str:
    text = str(value).strip()
    if _DATE.match(text):
        return text
    parsed = parse_datetime(value)
    if parsed is None:
        raise PermanentError(f"mapping field due_date: cannot read {text[:40]!r} as a date")
    return parsed.date().isoformat()


def activity_time(value: Any) -> str:
    text = str(value).strip()
    if _CLOCK.match(text):
        return text[:5] if len(text.split(":")[0]) == 2 else f"0{text[:4]}"
    parsed = parse_datetime(value)
    if parsed is None:
        raise PermanentError(f"mapping field due_time: cannot read {text[:40]!r} as a time")
    return parsed.strftime("%H:%M")


def activity_duration(value: Any) -> str:
    """"HH:MM" from seconds, rounded up so a short call is not logged as 00:00 ("HH:MM" passes as is)."""
    text = str(value).strip()
    if _CLOCK.match(text):
        return text
    minutes = math.ceil(_seconds(value, "duration") / 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _seconds(value: Any, field: str) -> int:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise PermanentError(f"mapping field {field}: {str(value)[:40]!r} is not a number of seconds") from None
    if seconds < 0 or math.isnan(seconds) or math.isinf(seconds):
        raise PermanentError(f"mapping field {field}: {seconds} is not a duration")
    return round(seconds)


def _typed(record: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy with None left out, ids and booleans in the JSON types Pipedrive's v2 insists on."""
    body: dict[str, Any] = {}
    for field, value in (record or {}).items():
        if value is None:
            continue
        if field in INT_FIELDS and not isinstance(value, bool):
            try:
                value = int(float(value))
            except (TypeError, ValueError):
                raise PermanentError(f"mapping field {field}: {str(value)[:40]!r} is not a Pipedrive id") from None
        elif field in BOOL_FIELDS and not isinstance(value, bool):
            value = str(value).strip().lower() in _TRUE
        body[field] = value
    return body


def _link(body: dict[str, Any], field: str, value: str | None) -> None:
    if value is not None and body.get(field) in (None, ""):
        body[field] = as_id(value)


def as_id(value: str) -> int | str:
    """Pipedrive ids are integers; `preview`'s placeholders stay text."""
    return int(value) if value.isdigit() else value
