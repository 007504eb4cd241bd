"""Rendered mapping records as the ticket bodies Zendesk accepts. Pure: no I/O.

A mapping is a flat list of fields; a ticket is nested. The names say where a value goes:

    subject, type, priority, status, tags, group_id, brand_id, ticket_form_id, assignee_id,
    due_at, custom_status_id, organization_id     the ticket's own attributes (tags: words -> a list)
    voice_comment.<from|to|recording_url|started_at|call_duration|answered_by_id|transcription_text|location>
    comment.<body|html_body|public>                a plain comment (the follow-up task's text)
    custom_fields.<id>                             {"id": <id>, "value": …} in `custom_fields`

The connector owns `external_id` (the call id: exactly-once), `requester_id` (the matched end-user),
and fills `assignee_id` and `voice_comment.answered_by_id` from owner_map unless the mapping set them.

Zendesk plays a voice comment's recording from its link (mp3/wav) and needs from, to, recording_url,
started_at and call_duration. A call without an https recording, or without both numbers (a web call),
gets a private plain comment with the same facts instead, and a note says why. Comment text is cut to
MAX_COMMENT characters with a visible marker.

On a replay (the ledger already knows the ticket) only what is safe to rewrite is sent: subject, type,
priority, custom fields, and the tags as `additional_tags` (tags agents added stay). Comments are
append-only in Zendesk, so the voice comment is never sent twice; status, requester and assignee are
left as agents have them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from bridge.templating import truncate

if TYPE_CHECKING:
    from bridge.mapping import CompiledMapping

__all__ = [
    "FOLLOW_UP",
    "MAX_COMMENT",
    "VOICE_REQUIRED",
    "call_ticket",
    "follow_up_ticket",
    "mapping_field_problems",
    "shape",
    "update_of",
]

FOLLOW_UP = "follow_up"
MAX_COMMENT = 64_000  # Zendesk documents 64 KB per comment; characters, to stay clear of it (unconfirmed)
TOP_LEVEL = frozenset(
    {"subject", "type", "priority", "status", "tags", "group_id", "brand_id", "ticket_form_id", "assignee_id",
     "due_at", "custom_status_id", "organization_id"}
)  # fmt: skip
ID_FIELDS = frozenset({"group_id", "brand_id", "ticket_form_id", "assignee_id", "custom_status_id", "organization_id"})
VOICE_KEYS = frozenset(
    {"from", "to", "recording_url", "started_at", "call_duration", "answered_by_id", "transcription_text", "location"}
)
VOICE_REQUIRED = ("from", "to", "recording_url", "started_at", "call_duration")
COMMENT_KEYS = frozenset({"body", "html_body", "public"})
RESERVED = {
    "external_id": "set by the connector: the call id, which exactly-once delivery relies on",
    "requester_id": "set by the connector from the matched end-user (match.on_missing decides otherwise)",
    "requester": "set by the connector from the matched end-user (match.on_missing decides otherwise)",
    "submitter_id": "Zendesk sets it to the API user",
    "via_id": "for Talk Partner Edition tickets, which this connector does not create",
}
UPDATABLE = ("subject", "type", "priority")
_TAG_SPLIT = re.compile(r"[\s,]+")


def mapping_field_problems(mapping: CompiledMapping) -> list[str]:
    """Field names of `fields` and `follow_up.fields` this connector cannot place in a ticket."""
    problems = [f"{mapping.name}: fields.{name}: {why}" for name, why in _bad_names(mapping.spec.fields)]
    follow_up = mapping.spec.follow_up
    if follow_up is not None:
        problems += [f"{mapping.name}: follow_up.fields.{n}: {why}" for n, why in _bad_names(follow_up.fields)]
    return problems


def _bad_names(names: Iterable[str]) -> Iterable[tuple[str, str]]:
    for name in names:
        head, _, tail = name.partition(".")
        if name in RESERVED:
            yield name, RESERVED[name]
        elif head == "voice_comment" and tail not in VOICE_KEYS:
            yield name, f"a voice comment has {', '.join(sorted(VOICE_KEYS))}"
        elif head == "comment" and tail not in COMMENT_KEYS:
            yield name, f"a comment has {', '.join(sorted(COMMENT_KEYS))}"
        elif head == "custom_fields" and not (tail.isdigit() and int(tail) > 0):
            yield name, "custom fields are named by their numeric id: custom_fields.<id>"
        elif not tail and name not in TOP_LEVEL:
            yield name, f"not a ticket attribute this connector sends ({', '.join(sorted(TOP_LEVEL))})"
        elif tail and head not in ("voice_comment", "comment", "custom_fields"):
            yield name, "only voice_comment.*, comment.* and custom_fields.* have parts"


def shape(record: Mapping[str, Any] | None) -> dict[str, Any]:
    """A flat rendered record as a nested ticket object (see the module docstring); None values left out."""
    ticket: dict[str, Any] = {}
    custom: list[dict[str, Any]] = []
    for name, value in (record or {}).items():
        if value is None or name in RESERVED:
            continue
        head, _, tail = name.partition(".")
        if head in ("voice_comment", "comment") and tail:
            ticket.setdefault(head, {})[tail] = value
        elif head == "custom_fields" and tail.isdigit():
            custom.append({"id": int(tail), "value": value})
        elif name == "tags":
            ticket["tags"] = _tags(value)
        elif name in ID_FIELDS:
            ticket[name] = _id(value)
        elif not tail:
            ticket[name] = value
    if custom:
        ticket["custom_fields"] = custom
    return ticket


def call_ticket(
    record: Mapping[str, Any] | None,
    *,
    external_id: str,
    requester_id: int | str | None,
    owner: int | None,
    notes: list[str],
) -> dict[str, Any]:
    """The call's ticket (`{"ticket": …}` minus the wrapper): the mapped fields, a voice comment (or a plain
    private comment when Zendesk could not play it), the requester, the owner and the call id."""
    ticket = shape(record)
    _place_owner(ticket, owner)
    voice = ticket.pop("voice_comment", None)
    if voice is not None:
        problem = _unplayable(voice)
        if problem is None:
            if owner is not None and "answered_by_id" not in voice:
                voice["answered_by_id"] = owner
            _cut(voice, "transcription_text", notes)
            ticket["voice_comment"] = voice
        else:
            notes.append(f"sent as a private comment instead of a voice comment: {problem}")
            ticket.setdefault("comment", {"body": _as_text(voice), "public": False})
    if "comment" in ticket:
        _cut(ticket["comment"], "body", notes)
        _cut(ticket["comment"], "html_body", notes)
    ticket["external_id"] = external_id
    if requester_id is not None:
        ticket["requester_id"] = _id(requester_id)
    return ticket


def follow_up_ticket(
    record: Mapping[str, Any],
    *,
    external_id: str,
    requester_id: int | str | None,
    owner: int | None,
    call_ticket_id: str,
    notes: list[str],
) -> dict[str, Any]:
    """The follow-up: a task ticket (with `due_at`), its text a private comment naming the call's ticket."""
    ticket = shape(record)
    ticket.pop("voice_comment", None)
    ticket["type"] = "task"
    _place_owner(ticket, owner)
    comment = ticket.setdefault("comment", {})
    body = str(comment.get("body") or comment.pop("html_body", "") or "")
    comment["body"] = f"{body}\n\nCall ticket: #{call_ticket_id}".strip()
    comment["public"] = False
    _cut(comment, "body", notes)
    ticket["external_id"] = external_id
    if requester_id is not None:
        ticket["requester_id"] = _id(requester_id)
    return ticket


def update_of(ticket: Mapping[str, Any], *, follow_up: bool = False) -> dict[str, Any] | None:
    """What a replay may rewrite on an existing ticket (module docstring); None when that is nothing."""
    update = {k: ticket[k] for k in UPDATABLE if k in ticket and not (follow_up and k == "type")}
    if ticket.get("custom_fields"):
        update["custom_fields"] = ticket["custom_fields"]
    if ticket.get("tags"):
        update["additional_tags"] = ticket["tags"]
    return update or None


def _place_owner(ticket: dict[str, Any], owner: int | None) -> None:
    if owner is not None and not ticket.get("assignee_id"):
        ticket["assignee_id"] = owner


def _unplayable(voice: Mapping[str, Any]) -> str | None:
    """Why Zendesk could not show `voice` as a voice comment, or None when it can."""
    missing = [key for key in VOICE_REQUIRED if voice.get(key) in (None, "")]
    url = str(voice.get("recording_url") or "")
    if url and not url.lower().startswith("https://"):
        return "the recording link is not https (only the scheme is kept in this note)"
    if missing:
        return f"Zendesk needs {', '.join(missing)} for a voice comment"
    return None


def _as_text(voice: Mapping[str, Any]) -> str:
    """A voice comment's facts as plain text; an insecure recording link is left out (it may be signed)."""
    lines = []
    parties = " ".join(f"{word} {voice[key]}" for key, word in (("from", "from"), ("to", "to")) if voice.get(key))
    if parties:
        lines.append(f"Call {parties}")
    if voice.get("started_at"):
        lines.append(f"Started: {voice['started_at']}")
    if voice.get("call_duration") not in (None, ""):
        lines.append(f"Duration: {voice['call_duration']} s")
    url = str(voice.get("recording_url") or "")
    if url.lower().startswith("https://"):
        lines.append(f"Recording: {url}")
    if voice.get("location"):
        lines.append(f"Location: {voice['location']}")
    text = "\n".join(lines)
    if voice.get("transcription_text"):
        text = f"{text}\n\n{voice['transcription_text']}".strip()
    return text or "Call (no details)"


def _cut(part: dict[str, Any], key: str, notes: list[str]) -> None:
    value = part.get(key)
    if isinstance(value, str) and len(value) > MAX_COMMENT:
        part[key] = truncate(value, MAX_COMMENT)
        notes.append(f"{key} was longer than {MAX_COMMENT:,} characters and was truncated")


def _tags(value: Any) -> list[str]:
    words = value if isinstance(value, list) else _TAG_SPLIT.split(str(value))
    return list(dict.fromkeys(str(w).strip() for w in words if str(w).strip()))


def _id(value: Any) -> Any:
    text = str(value).strip()
    return int(text) if text.isdigit() else value
