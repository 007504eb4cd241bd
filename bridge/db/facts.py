"""The searchable facts of a call, read once from its payload when it is logged; and failure groups.

An admin asks "every call to +1 415 555 0100 last week", "every call by agent Maria that failed",
"failures grouped by error": the facts below are columns (and parties rows) so those questions are
index lookups, not scans of payloads. Phone numbers are stored in E.164 whatever way Agni spelled
them, and searched the same way, so `(415) 555-0100` finds `+14155550100`.

:func:`error_group` normalises an error message for grouping: ids, numbers, emails and quoted values
become placeholders, so 5,000 calls failing with the same expired token are one group, not 5,000.
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from bridge.phones import phone_spellings
from bridge.templating import call_direction

__all__ = ["CallFacts", "error_group", "facts_of", "normalize_email", "normalize_phone", "parse_millis"]


@dataclass
class CallFacts:
    phone: str | None = None
    caller_name: str | None = None
    email: str | None = None
    agent_name: str | None = None
    direction: str | None = None
    disposition: str | None = None
    sentiment: str | None = None
    call_status: str | None = None
    duration_sec: int | None = None
    started_at: int | None = None
    summary: str | None = None
    next_steps: str | None = None
    phones: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)

    def columns(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("phones", "emails")}


def normalize_phone(raw: Any, region: str) -> str | None:
    spellings = phone_spellings(raw, region)
    return spellings.e164 if spellings else None


def normalize_email(raw: Any) -> str | None:
    text = str(raw or "").strip().lower()
    return text if "@" in text else None


def parse_millis(value: Any) -> int | None:
    """An ISO 8601 time (Agni's `started_at`) → epoch milliseconds; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _text(value: Any, limit: int) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text[:limit] if text else None


def facts_of(payload: bytes | None, region: str) -> CallFacts:
    """Facts from a webhook body; an undecodable or odd body gives whatever could be read (never raises)."""
    facts = CallFacts()
    if not payload:
        return facts
    try:
        document = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return facts
    call = document.get("data") if isinstance(document, dict) else None
    if not isinstance(call, dict):
        return facts
    analysis = call.get("post_call_analysis") if isinstance(call.get("post_call_analysis"), dict) else {}
    facts.phone = normalize_phone(call.get("phone"), region)
    facts.caller_name = _text(call.get("caller_name"), 200)
    facts.email = normalize_email(call.get("caller_email"))
    facts.agent_name = _text(call.get("agent_name"), 200)
    facts.direction = call_direction(call) or None
    facts.disposition = _text(analysis.get("disposition"), 100)
    facts.sentiment = _text(analysis.get("sentiment"), 32)
    facts.call_status = _text(call.get("status"), 32)
    duration = call.get("duration_sec")
    facts.duration_sec = int(duration) if isinstance(duration, int | float) and not isinstance(duration, bool) else None
    facts.started_at = parse_millis(call.get("started_at"))
    facts.summary = _text(call.get("summary"), 20_000)
    next_steps = analysis.get("next_steps")
    if isinstance(next_steps, list):
        next_steps = "\n".join(str(step) for step in next_steps)
    facts.next_steps = _text(next_steps, 20_000)
    for key in ("phone", "caller_number", "callee_number"):
        number = normalize_phone(call.get(key), region)
        if number:
            facts.phones.add(number)
    if facts.email:
        facts.emails.add(facts.email)
    return facts


_GROUP_RULES = [
    (re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"), "<email>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "'…'"),
    (re.compile(r"\b(?=[A-Za-z0-9]*\d)[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?\b"), "<id>"),  # Salesforce-like ids
    (re.compile(r"\b[0-9a-fA-F]{12,}\b"), "<hex>"),
    (re.compile(r"\+?\d[\d.,:]*"), "<n>"),
]
_HTTP = re.compile(r"^HTTP (\d{3})")


def error_group(message: str | None) -> str:
    """`HTTP 401 INVALID_SESSION_ID: Session expired` stays as it is; ids and numbers inside become placeholders
    (the HTTP status at the front is kept: a 401 and a 404 are different problems)."""
    text = (message or "").strip()
    if not text:
        return "(no message)"
    status = _HTTP.match(text)
    head, rest = (text[: status.end()], text[status.end() :]) if status else ("", text)
    for pattern, placeholder in _GROUP_RULES:
        rest = pattern.sub(placeholder, rest)
    return (head + rest)[:300]
