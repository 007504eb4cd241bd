"""Optional PII redaction of what callers said, before any connector sees it.

Applied in the worker to the free-text parts of a call — `summary`,
`post_call_analysis.next_steps` and every transcript message — so the CRM,
the forwarded webhook and the jsonl outbox all receive the same redacted text
(a connector opts out with `redact_pii: false`). It removes:

* card numbers: 13–19 digits (spaces/dashes allowed) that pass the Luhn check;
* e-mail addresses;
* phone numbers, found with `phonenumbers`' matcher (so "(415) 555-0100" and
  "+44 20 7946 0018" are found, not every run of digits) — except the call's
  own parties (`phone`, `caller_number`, `callee_number`), which the CRM
  record is about anyway;
* anything matching the admin's own regular expressions.

Structured fields (`caller_email`, `phone`, …) are left alone: connectors
need them to find the contact.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import phonenumbers

from bridge.errors import ConfigError
from bridge.settings import RedactionSettings

__all__ = ["Redactor", "luhn_valid"]

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char)
        if i % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


class Redactor:
    def __init__(self, settings: RedactionSettings, *, source: str = "config") -> None:
        self.settings = settings
        self.patterns = []
        for i, pattern in enumerate(settings.patterns):
            try:
                self.patterns.append(re.compile(pattern))
            except re.error as exc:
                raise ConfigError(f"{source}: redaction.patterns[{i}]: invalid regular expression: {exc}") from exc

    def _mark(self, kind: str) -> str:
        return self.settings.replacement.format(kind=kind)

    def text(self, value: str, keep_numbers: frozenset[str]) -> str:
        s = self.settings
        if s.cards:
            value = _CARD.sub(lambda m: self._card(m), value)
        if s.emails:
            value = _EMAIL.sub(self._mark("email"), value)
        if s.phones:
            value = self._phones(value, keep_numbers)
        for pattern in self.patterns:
            value = pattern.sub(self._mark("pattern"), value)
        return value

    def _card(self, match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return self._mark("card") if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)

    def _phones(self, value: str, keep: frozenset[str]) -> str:
        pieces, last = [], 0
        for found in phonenumbers.PhoneNumberMatcher(value, self.settings.default_region):
            e164 = phonenumbers.format_number(found.number, phonenumbers.PhoneNumberFormat.E164)
            if e164 in keep:
                continue
            pieces += [value[last : found.start], self._mark("phone")]
            last = found.end
        return "".join(pieces) + value[last:] if pieces else value

    def call(self, call: dict[str, Any]) -> dict[str, Any]:
        """A redacted copy of the webhook's `data`."""
        keep = frozenset(n for n in (self._e164(call.get(k)) for k in ("phone", "caller_number", "callee_number")) if n)
        out = copy.deepcopy(call)
        redact: Callable[[str], str] = lambda text: self.text(text, keep)  # noqa: E731
        if isinstance(out.get("summary"), str):
            out["summary"] = redact(out["summary"])
        analysis = out.get("post_call_analysis")
        if isinstance(analysis, dict) and isinstance(analysis.get("next_steps"), str):
            analysis["next_steps"] = redact(analysis["next_steps"])
        for turn in out.get("transcripts") or []:
            message = turn.get("message") if isinstance(turn, dict) else None
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                message["content"] = redact(message["content"])
        return out

    def _e164(self, value: Any) -> str:
        if not value:
            return ""
        try:
            number = phonenumbers.parse(str(value), self.settings.default_region)
        except phonenumbers.NumberParseException:
            return ""
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
