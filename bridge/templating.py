"""The sandboxed Jinja2 environment mappings and routes are rendered in, and its filters.

Mappings are written by admins, not developers, and may come from anyone who
can edit a YAML file: templates run in Jinja2's ImmutableSandboxedEnvironment
(no attribute access to Python internals, no mutation), with no globals that
reach files or the environment, and with output size bounded so a template
cannot exhaust the worker's memory.

Filters are what admins need to turn a call into CRM fields:

    e164 / national          phone numbers (phonenumbers), default region from the mapping
    date / datetime / epoch_ms / add_days   ISO timestamps to what a CRM field wants
    seconds_to_ms            HubSpot durations are milliseconds
    limit(n)                 truncate with a visible "…(truncated)" marker
    transcript               "[mm:ss] Agent: …" lines, readable in a CRM text field
    lookup(map, default)     value maps from the mapping (dispositions, picklists)
    nl2br                    newlines to <br> for HTML fields
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers
from jinja2 import ChainableUndefined, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError, safe_range
from markupsafe import Markup, escape

__all__ = [
    "FALSE_WORDS",
    "TRUNCATION_MARKER",
    "SandboxEnvironment",
    "call_direction",
    "make_environment",
    "truncate",
    "truthy",
]

TRUNCATION_MARKER = "…(truncated)"
MAX_OUTPUT = 1_000_000  # characters a single binary operation may produce


class SandboxEnvironment(ImmutableSandboxedEnvironment):
    """Immutable sandbox that also refuses `'x' * 10**9` and `10 ** 10**9`."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if isinstance(right, int | float) and abs(right) > 1000:
                raise SecurityError("exponent too large in template")
            return operator.pow(left, right)
        if operator_ == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int) and len(seq) * count > MAX_OUTPUT:
                    raise SecurityError("template output too large")
            return operator.mul(left, right)
        return super().call_binop(context, operator_, left, right)


FALSE_WORDS = frozenset({"", "false", "0", "none", "no", "off"})


def truthy(text: str) -> bool:
    """How rendered text reads as a condition: empty, false, 0, none, no and off are false."""
    return text.strip().lower() not in FALSE_WORDS


def _finalize(value: Any) -> Any:
    """Render None as empty text, never as the word "None"."""
    return "" if value is None else value


def make_environment() -> SandboxEnvironment:
    """A fresh sandbox with the bridge's filters; one per mapping set, built at startup."""
    env = SandboxEnvironment(
        undefined=ChainableUndefined,
        finalize=_finalize,
        autoescape=False,
        keep_trailing_newline=False,
    )
    # Only harmless globals: no cycler/joiner/namespace/lipsum objects to poke at.
    env.globals = {"range": safe_range, "dict": dict}  # safe_range caps at 100,000 items
    env.filters.update(FILTERS)
    return env


# -- phone numbers ---------------------------------------------------------------------


def _parse_phone(value: Any, region: str | None) -> phonenumbers.PhoneNumber | None:
    if not value:
        return None
    try:
        number = phonenumbers.parse(str(value), region or "US")
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_possible_number(number) else None


@pass_context
def e164(context: Context, value: Any, region: str | None = None) -> str:
    """`+14155550100` from any way of writing the number; unparseable input is returned unchanged."""
    number = _parse_phone(value, region or context.get("default_region"))
    if number is None:
        return "" if value is None else str(value)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@pass_context
def national(context: Context, value: Any, region: str | None = None) -> str:
    """The national significant digits, `4155550100`: how CRMs index numbers typed without a country code."""
    number = _parse_phone(value, region or context.get("default_region"))
    return str(number.national_number) if number is not None else ""


# -- dates ---------------------------------------------------------------------------


def parse_datetime(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO 8601 string or epoch seconds/ms; None when absent or unparseable."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, int | float):
        seconds = value / 1000 if value > 10**11 else value
        return datetime.fromtimestamp(seconds, UTC)
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def date(value: Any) -> str:
    """`2026-03-24` (UTC) from an ISO timestamp."""
    parsed = parse_datetime(value)
    return parsed.date().isoformat() if parsed else ""


def datetime_iso(value: Any) -> str:
    """`2026-03-24T18:30:00.000Z`: the UTC form both CRMs accept."""
    parsed = parse_datetime(value)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.") + f"{parsed.microsecond // 1000:03d}Z" if parsed else ""


def epoch_ms(value: Any) -> int | str:
    parsed = parse_datetime(value)
    return int(parsed.timestamp() * 1000) if parsed else ""


def add_days(value: Any, days: float = 0) -> str:
    """The date `days` after a timestamp: follow-up due dates."""
    parsed = parse_datetime(value)
    return (parsed + timedelta(days=float(days))).date().isoformat() if parsed else ""


def seconds_to_ms(value: Any) -> int | str:
    if value is None or value == "":
        return ""
    try:
        return round(float(value) * 1000)
    except (TypeError, ValueError):
        return ""


# -- text ---------------------------------------------------------------------------


def truncate(value: Any, length: int, marker: str = TRUNCATION_MARKER) -> str:
    """Cut text to at most `length` characters, ending with a visible marker when anything was cut."""
    text = "" if value is None else str(value)
    if len(text) <= length:
        return text
    if length <= len(marker):
        return text[:length]
    return text[: length - len(marker)].rstrip() + marker


def limit(value: Any, length: int, marker: str = TRUNCATION_MARKER) -> str:
    return truncate(value, int(length), marker)


ROLE_LABELS = {"agent": "Agent", "assistant": "Agent", "bot": "Agent", "user": "Customer", "customer": "Customer"}


def transcript(turns: Any, agent: str = "Agent", user: str = "Customer") -> str:
    """The transcript as readable text, one line per turn: `[01:05] Agent: …`."""
    if not turns or not isinstance(turns, list | tuple):
        return ""
    labels = dict(ROLE_LABELS, agent=agent, assistant=agent, user=user, customer=user)
    lines = []
    for turn in turns:
        if not isinstance(turn, Mapping):
            continue
        message = turn.get("message")
        content = message.get("content") if isinstance(message, Mapping) else message
        if not content:
            continue
        stamp = ""
        ms = turn.get("timestamp_ms")
        if isinstance(ms, int | float) and ms >= 0:
            minutes, seconds = divmod(int(ms // 1000), 60)
            stamp = f"[{minutes:02d}:{seconds:02d}] "
        role = str(turn.get("role") or "unknown")
        lines.append(f"{stamp}{labels.get(role.lower(), role.capitalize())}: {str(content).strip()}")
    return "\n".join(lines)


@pass_context
def lookup(context: Context, value: Any, map_name: str, default: Any = None) -> Any:
    """Translate through a value map of the mapping; unknown values fall back to the map's `_default`, then `default`.

    Keys are compared as text, case-insensitively, so `Issue_Resolved` finds `issue_resolved`.
    """
    maps = context.get("value_maps") or {}
    table = maps.get(map_name)
    if table is None:
        raise KeyError(f"no value map named {map_name!r} in this mapping")
    key = "" if value is None else str(value)
    for candidate, mapped in table.items():
        if str(candidate).lower() == key.lower():
            return mapped
    if "_default" in table:
        return table["_default"]
    return default if default is not None else ("" if value is None else value)


def nl2br(value: Any) -> Markup:
    """HTML-escape text and turn newlines into <br>: for HubSpot's HTML body fields."""
    return Markup("<br>\n").join(escape(line) for line in str(value or "").split("\n"))


def call_direction(call: Mapping[str, Any]) -> str:
    """`inbound` or `outbound` from Agni's point of view, inferred from which party is `phone`.

    Agni's `phone` is the external party. When it equals `caller_number` the
    person called us (inbound); when it equals `callee_number` we called them.
    Agni does not document this field, hence the inference; empty when unknown.
    """
    phone = _digits(call.get("phone"))
    if not phone:
        return ""
    if phone == _digits(call.get("callee_number")):
        return "outbound"
    if phone == _digits(call.get("caller_number")):
        return "inbound"
    return ""


def _digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isdigit())


FILTERS: dict[str, Callable[..., Any]] = {
    "add_days": add_days,
    "date": date,
    "datetime": datetime_iso,
    "e164": e164,
    "epoch_ms": epoch_ms,
    "limit": limit,
    "lookup": lookup,
    "national": national,
    "nl2br": nl2br,
    "seconds_to_ms": seconds_to_ms,
    "transcript": transcript,
}
