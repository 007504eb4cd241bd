"""What FakeZendesk accepts in a ticket create or update, and what it stores (see tests.fakes.zendesk).

Validation follows the Tickets API and "Adding voice comments to tickets" (developer.zendesk.com):
a new ticket needs a comment or a voice comment; a voice comment needs from, to, recording_url,
started_at (ISO 8601) and call_duration (integer seconds), and may carry answered_by_id (an agent),
transcription_text and location; requester, assignee and answered_by_id must name users, assignees
agents; type, priority and status take Zendesk's values; a drop-down custom field takes one of its
option tags, a number an integer, a checkbox a boolean; custom field ids the account does not have
are ignored. Updates append comments, merge custom fields, replace or add tags, and are refused on
closed tickets. Error wording follows Zendesk's style; exact messages are the fake's choice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .httpserver import FakeResponse

if TYPE_CHECKING:
    from .zendesk import FakeZendesk

TYPES = ("problem", "incident", "question", "task")
PRIORITIES = ("urgent", "high", "normal", "low")
STATUSES = ("new", "open", "pending", "hold", "solved")
VOICE_REQUIRED = ("from", "to", "recording_url", "started_at", "call_duration")
VOICE_KEYS = (*VOICE_REQUIRED, "answered_by_id", "transcription_text", "location")
AGENT_ROLES = ("agent", "admin")


class ApiError(Exception):
    """An error answer in Zendesk's shape: ``{"error", "description", "details"}``."""

    def __init__(self, status: int, error: str, description: str = "", details: dict[str, Any] | None = None):
        super().__init__(description or error)
        self.status, self.error, self.description, self.details = status, error, description, details

    def response(self) -> FakeResponse:
        body: dict[str, Any] = {"error": self.error}
        if self.description:
            body["description"] = self.description
        if self.details:
            body["details"] = self.details
        return FakeResponse.json(self.status, body)


def invalid(field: str, description: str, error: str = "InvalidValue") -> ApiError:
    """A 422 RecordInvalid naming one field, as Zendesk reports validation errors."""
    details = {field: [{"description": description, "error": error}]}
    return ApiError(422, "RecordInvalid", "Record validation errors", details)


def iso(epoch: float) -> str:
    """Zendesk's timestamp form, e.g. ``2026-11-20T12:00:00Z``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TicketRules:
    """Validates and applies ticket writes against a FakeZendesk's state (called under its lock)."""

    def __init__(self, fake: FakeZendesk) -> None:
        self.fake = fake

    def create(self, data: dict[str, Any], who: dict[str, Any], now: float) -> dict[str, Any]:
        comment = self._comment(data.get("comment"))
        voice = self._voice(data.get("voice_comment"))
        if comment is None and voice is None:
            raise invalid("description", "Description: cannot be blank", "BlankValue")
        requester = self._requester(data, who)
        ticket_id = next(self.fake._ids)
        ticket: dict[str, Any] = {
            "id": ticket_id,
            "url": f"{self.fake.url}/api/v2/tickets/{ticket_id}.json",
            "external_id": _text_or_none(data.get("external_id")),
            "subject": str(data.get("subject") or ""),
            "description": (comment or {}).get("body") or (voice or {}).get("transcription_text") or "Voice call",
            "type": None, "priority": None, "status": "new", "requester_id": requester,
            "submitter_id": who["id"], "assignee_id": None, "tags": [], "custom_fields": [], "due_at": None,
            "created_at": iso(now), "updated_at": iso(now), "via": {"channel": "api"},
        }  # fmt: skip
        self._apply(ticket, data, creating=True)
        if ticket["assignee_id"] is not None and "status" not in data:
            ticket["status"] = "open"
        self.fake.tickets[ticket_id] = ticket
        self.fake.comments[ticket_id] = []
        self._append(ticket_id, comment, voice, who, now)
        return dict(ticket)

    def update(self, ticket: dict[str, Any], data: dict[str, Any], who: dict[str, Any], now: float) -> dict[str, Any]:
        if ticket["status"] == "closed":
            raise invalid("status", "Status: closed prevents ticket update", "ClosedPreventsUpdate")
        comment = self._comment(data.get("comment"))
        voice = self._voice(data.get("voice_comment"))
        if "requester_id" in data:
            ticket["requester_id"] = self._requester(data, who)
        self._apply(ticket, data, creating=False)
        if "external_id" in data:
            ticket["external_id"] = _text_or_none(data["external_id"])
        ticket["updated_at"] = iso(now)
        self._append(ticket["id"], comment, voice, who, now)
        return dict(ticket)

    # -- parts ----------------------------------------------------------------------------------
    def _apply(self, ticket: dict[str, Any], data: dict[str, Any], *, creating: bool) -> None:
        for field, allowed in (("type", TYPES), ("priority", PRIORITIES), ("status", STATUSES)):
            if data.get(field) is not None:
                if data[field] not in allowed:
                    raise invalid(field, f"{field.title()}: {data[field]} is not valid")
                ticket[field] = data[field]
        if "subject" in data and not creating:
            ticket["subject"] = str(data["subject"] or "")
        if data.get("assignee_id") is not None:
            ticket["assignee_id"] = self._agent(data["assignee_id"], "assignee", "Assignee")
        if "tags" in data:
            ticket["tags"] = _tags(data["tags"])
        if "additional_tags" in data:
            ticket["tags"] = list(dict.fromkeys([*ticket["tags"], *_tags(data["additional_tags"])]))
        if "remove_tags" in data:
            gone = set(_tags(data["remove_tags"]))
            ticket["tags"] = [t for t in ticket["tags"] if t not in gone]
        if "custom_fields" in data:
            merged = {f["id"]: f for f in ticket["custom_fields"]}
            merged.update({f["id"]: f for f in self._custom_fields(data["custom_fields"])})
            ticket["custom_fields"] = list(merged.values())
        if data.get("due_at") is not None:
            if _parse_time(data["due_at"]) is None:
                raise invalid("due_at", f"Due at: {data['due_at']} is not a valid date", "InvalidFormat")
            if ticket["type"] == "task":
                ticket["due_at"] = data["due_at"]

    def _comment(self, raw: Any) -> dict[str, Any] | None:
        if raw is None:
            return None
        if not isinstance(raw, dict) or not (str(raw.get("body") or "").strip() or raw.get("html_body")):
            raise invalid("description", "Description: cannot be blank", "BlankValue")
        return {"body": str(raw.get("body") or raw.get("html_body")), "public": raw.get("public", True) is not False}

    def _voice(self, raw: Any) -> dict[str, Any] | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise invalid("voice_comment", "Voice comment: must be an object")
        missing = [k for k in VOICE_REQUIRED if raw.get(k) in (None, "")]
        if missing:
            raise invalid("voice_comment", f"Voice comment: {', '.join(missing)} cannot be blank", "BlankValue")
        duration = raw["call_duration"]
        if isinstance(duration, bool) or not isinstance(duration, int) or duration < 0:
            raise invalid("voice_comment", f"Voice comment: call_duration {duration!r} is not a number of seconds")
        if _parse_time(raw["started_at"]) is None:
            raise invalid("voice_comment", f"Voice comment: started_at {raw['started_at']!r} is not ISO 8601")
        url = urlsplit(str(raw["recording_url"]))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise invalid("voice_comment", "Voice comment: recording_url is not a URL")
        if raw.get("answered_by_id") is not None:
            self._agent(raw["answered_by_id"], "voice_comment", "Voice comment: answered_by_id")
        return {key: raw[key] for key in VOICE_KEYS if key in raw}

    def _requester(self, data: dict[str, Any], who: dict[str, Any]) -> int:
        if data.get("requester_id") is not None:
            requester = data["requester_id"]
            if not isinstance(requester, int) or requester not in self.fake.users:
                raise invalid("requester", f"Requester: {requester} is not a user of this account")
            return requester
        inline = data.get("requester")
        if isinstance(inline, dict) and inline.get("email"):
            existing = self.fake._find_identity("email", str(inline["email"]).lower())
            if existing is not None:
                return existing
            user = self.fake._new_user({"name": inline.get("name") or inline["email"], "email": inline["email"]},
                                       indexed=False)  # fmt: skip
            return int(user["id"])
        return int(who["id"])  # Zendesk's default: the user making the request

    def _agent(self, raw: Any, field: str, label: str) -> int:
        user = self.fake.users.get(raw) if isinstance(raw, int) else None
        if user is None or user["role"] not in AGENT_ROLES:
            raise invalid(field, f"{label}: {raw} is not an agent of this account")
        return int(raw)

    def _custom_fields(self, raw: Any) -> list[dict[str, Any]]:
        if not isinstance(raw, list):
            raise invalid("custom_fields", "Custom fields: must be a list of {id, value}")
        kept = []
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("id"), int):
                raise invalid("custom_fields", "Custom fields: each needs a numeric id")
            field = self.fake.ticket_fields.get(item["id"])
            if field is None:
                continue  # an id the account does not have is ignored
            value = item.get("value")
            if field["type"] == "tagger" and value not in (None, "", *field["options"]):
                raise invalid("base", f"{value} is not a valid option for the field {item['id']}")
            if field["type"] == "integer" and not (value is None or isinstance(value, int) or str(value).isdigit()):
                raise invalid("base", f"{value} is not a number for the field {item['id']}")
            if field["type"] == "checkbox" and not isinstance(value, bool):
                raise invalid("base", f"{value} is not true or false for the field {item['id']}")
            kept.append({"id": item["id"], "value": value})
        return kept

    def _append(
        self,
        ticket_id: int,
        comment: dict[str, Any] | None,
        voice: dict[str, Any] | None,
        who: dict[str, Any],
        now: float,
    ) -> None:
        comments = self.fake.comments[ticket_id]
        for kind, part in (("Comment", comment), ("VoiceComment", voice)):
            if part is None:
                continue
            entry: dict[str, Any] = {"id": next(self.fake._ids), "type": kind, "author_id": who["id"],
                                     "created_at": iso(now)}  # fmt: skip
            if kind == "Comment":
                entry.update(part)
            else:
                entry.update(public=False, body=part.get("transcription_text") or "", data=part)
            comments.append(entry)


def _tags(value: Any) -> list[str]:
    words = value if isinstance(value, list) else str(value or "").split()
    return list(dict.fromkeys(str(w).strip() for w in words if str(w).strip()))


def _text_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
