"""What FakePipedrive stores and how it checks writes: call logs, activities, persons, person search.

Every rule cites its source: the Pipedrive docs and the official SDK's models (pipedrive/client-nodejs,
REFERENCE.md §9.3) unless marked "fake's choice" (where Pipedrive documents nothing, the fake is strict, so
a request the real API might refuse is refused here too). Pure data and checks; the server is in
:mod:`tests.fakes.pipedrive`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

OUTCOMES = ("connected", "no_answer", "left_message", "left_voicemail", "wrong_number", "busy")  # SDK enum
GENERIC_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
PIPEDRIVE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")  # call logs: "YYYY-MM-DD HH:MM:SS"
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CLOCK = re.compile(r"^\d{2}:\d{2}(:\d{2})?$")  # activities: due_time "HH:MM", duration "HH:MM" (v1 docs)

# POST /v1/callLogs body (AddCallLogRequest in the SDK): name -> type checker.
CALL_LOG_FIELDS = {
    "outcome": "outcome", "to_phone_number": "str", "start_time": "time", "end_time": "time",
    "user_id": "int", "activity_id": "int", "subject": "str", "duration": "digits", "from_phone_number": "str",
    "person_id": "int", "org_id": "int", "deal_id": "int", "lead_id": "str", "note": "str",
}  # fmt: skip
CALL_LOG_REQUIRED = ("outcome", "to_phone_number", "start_time", "end_time")
# POST/PATCH /api/v2/activities (AddActivityRequest). person_id is read-only in v2 (the primary participant
# decides it): accepted and ignored, as the migration guide describes.
ACTIVITY_FIELDS = {
    "subject": "str", "type": "str", "owner_id": "int", "deal_id": "int", "lead_id": "str", "person_id": "any",
    "org_id": "int", "project_id": "int", "due_date": "date", "due_time": "clock", "duration": "clock",
    "busy": "bool", "done": "bool", "location": "any", "participants": "participants", "attendees": "any",
    "public_description": "str", "priority": "int", "note": "str",
}  # fmt: skip
# POST /api/v2/persons (AddPersonRequest).
PERSON_FIELDS = {
    "name": "str", "owner_id": "int", "org_id": "int", "emails": "labelled", "phones": "labelled",
    "visible_to": "int", "label_ids": "ints", "marketing_status": "str", "custom_fields": "any",
}  # fmt: skip
SEARCH_FIELDS = frozenset({"custom_fields", "email", "notes", "phone", "name"})


class ApiError(Exception):
    """An error answer in Pipedrive's shape: ``{"success": false, "error", "error_info", "data": null}``."""

    def __init__(self, status: int, error: str, *, info: str = GENERIC_INFO, code: str | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.info, self.code = status, error, info, code

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "success": False,
            "error": self.error,
            "error_info": self.info,
            "data": None,
            "additional_data": None,
        }
        if self.status in (401, 429):
            body["errorCode"] = self.status  # as the live 401 shows (secondary source)
        if self.code:
            body["code"] = self.code
        return body


def now_v1(epoch: float) -> str:
    """v1's timestamps: UTC "YYYY-MM-DD HH:MM:SS"."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def now_v2(epoch: float) -> str:
    """v2's timestamps: RFC 3339."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str, name: str) -> float:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"Parameter '{name}' must be a valid RFC3339 date-time") from None
    if moment.tzinfo is None:
        raise ApiError(400, f"Parameter '{name}' must be a valid RFC3339 date-time")
    return moment.timestamp()


def check_body(body: Any, fields: dict[str, str], what: str) -> dict[str, Any]:
    """Types of every field; an unknown field is a 400 (fake's choice: Pipedrive ignores or refuses, unsaid)."""
    if not isinstance(body, dict):
        raise ApiError(400, f"Invalid request body for {what}: expected a JSON object")
    for name, value in body.items():
        kind = fields.get(name)
        if kind is None:
            raise ApiError(400, f"Unknown field '{name}' for {what}")
        if value is None or kind == "any":
            continue
        problem = _type_problem(kind, value)
        if problem:
            raise ApiError(400, f"Invalid value for field '{name}': {problem}")
    return dict(body)


def _type_problem(kind: str, value: Any) -> str | None:
    if kind in ("int", "str", "bool"):
        want = {"int": int, "str": str, "bool": bool}[kind]
        bad_int = kind == "int" and isinstance(value, bool)  # v2: booleans and numbers are strict
        return None if isinstance(value, want) and not bad_int else f"expected {kind}, got {type(value).__name__}"
    if kind == "outcome":
        return None if value in OUTCOMES else f"must be one of {', '.join(OUTCOMES)}"
    if kind == "time":
        return None if isinstance(value, str) and PIPEDRIVE_TIME.match(value) else "format YYYY-MM-DD HH:MM:SS (UTC)"
    if kind == "digits":  # call log duration: "The duration of the call in seconds", typed string
        return None if isinstance(value, str) and value.isdigit() else "a string of seconds, e.g. \"125\""
    if kind == "date":
        return None if isinstance(value, str) and DATE.match(value) else "format YYYY-MM-DD"
    if kind == "clock":
        return None if isinstance(value, str) and CLOCK.match(value) else "format HH:MM"
    if kind == "participants":
        ok = isinstance(value, list) and all(
            isinstance(p, dict) and isinstance(p.get("person_id"), int) and isinstance(p.get("primary", False), bool)
            for p in value
        )
        return None if ok else "a list of {person_id: int, primary: bool}"
    if kind == "labelled":
        ok = isinstance(value, list) and all(isinstance(v, dict) and isinstance(v.get("value"), str) for v in value)
        return None if ok else "a list of {value, primary, label}"
    if kind == "ints":
        return None if isinstance(value, list) and all(isinstance(v, int) for v in value) else "a list of ids"
    return None


def digits(text: Any) -> str:
    return re.sub(r"\D", "", str(text or ""))


def search_hit(person: dict[str, Any], term: str, fields: set[str], exact: bool) -> int:
    """The result score of a person for a search, 0 for no match.

    Email and name: exact = equal ignoring case (Pipedrive: "not case sensitive"), else a substring. Phone:
    exact = the stored text equals the term; loose = the term's digits occur in the stored number's digits
    (Pipedrive normalises numbers for search; how exactly is not documented: this is the fake's model, which
    is why the connector verifies every loose hit itself).
    """
    low = term.strip().lower()
    best = 0
    if "email" in fields:
        for email in (e["value"].lower() for e in person.get("emails") or []):
            if email == low:
                best = max(best, 2)
            elif not exact and low in email:
                best = max(best, 1)
    if "phone" in fields:
        for phone in (p["value"] for p in person.get("phones") or []):
            if phone.strip() == term.strip():
                best = max(best, 2)
            elif not exact and digits(term) and digits(term) in digits(phone):
                best = max(best, 1)
    if "name" in fields:
        name = str(person.get("name") or "").lower()
        if name == low:
            best = max(best, 2)
        elif not exact and low in name:
            best = max(best, 1)
    return best


def search_item(person: dict[str, Any], organizations: dict[int, dict[str, Any]], score: int) -> dict[str, Any]:
    """One item of GET /api/v2/persons/search (the SDK's GetPersonSearchResponse: plain-string phones/emails,
    owner and organization as small objects, no update time)."""
    org = organizations.get(person.get("org_id") or -1)
    return {
        "result_score": float(score),
        "item": {
            "id": person["id"],
            "type": "person",
            "name": person["name"],
            "phones": [p["value"] for p in person.get("phones") or []],
            "emails": [e["value"] for e in person.get("emails") or []],
            "visible_to": person.get("visible_to", 3),
            "owner": {"id": person.get("owner_id")},
            "organization": {"id": org["id"], "name": org["name"]} if org else None,
            "custom_fields": [],
            "notes": [],
        },
    }
