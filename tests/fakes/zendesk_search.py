"""The part of Zendesk's search syntax that `GET /api/v2/users/search?query=` needs, for FakeZendesk.

Zendesk splits a query on whitespace into terms and ANDs them; `field:value` compares a user property,
a double-quoted value keeps its spaces (``phone:"+1 415-555-0100"``), and a bare word matches the name
or email. The fake is exact where Zendesk is exact for identities: ``email:`` compares whole addresses
case-insensitively and ``phone:`` compares the stored spelling as written — it does NOT normalise
numbers, so a client must search the spellings an account holds (Zendesk's own normalisation of phone
searches is undocumented: the strict choice keeps the bridge honest).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["SearchError", "matches", "parse"]

_TERM = re.compile(r'(?:(?P<field>[a-z_]+):)?(?:"(?P<quoted>[^"]*)"|(?P<bare>\S+))')
FIELDS = frozenset({"email", "phone", "role", "name", "external_id", "tags"})


class SearchError(ValueError):
    """A query the fake cannot read (Zendesk answers such queries with a 400)."""


def parse(query: str) -> list[tuple[str | None, str]]:
    """[(field or None, value)] for each term of `query`."""
    terms: list[tuple[str | None, str]] = []
    position = 0
    text = query.strip()
    if not text:
        raise SearchError("query is empty")
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        found = _TERM.match(text, position)
        if found is None or found.end() == position:
            raise SearchError(f"cannot read the query at {text[position:]!r}")
        field = found.group("field")
        value = found.group("quoted") if found.group("quoted") is not None else found.group("bare")
        if field is not None and field not in FIELDS:
            field, value = None, f"{field}:{value}"  # Zendesk reads an unknown field as text
        terms.append((field, value))
        position = found.end()
    return terms


def matches(user: dict[str, Any], identities: Iterable[dict[str, Any]], terms: list[tuple[str | None, str]]) -> bool:
    """Whether `user` (with its `identities`) satisfies every term."""
    emails = [str(i["value"]).lower() for i in identities if i["type"] == "email"]
    phones = [str(i["value"]) for i in identities if i["type"] == "phone_number"]
    for field, value in terms:
        wanted = value.lower()
        if field == "email":
            ok = wanted in emails
        elif field == "phone":
            ok = value in phones
        elif field == "role":
            ok = str(user.get("role")) == wanted
        elif field == "external_id":
            ok = str(user.get("external_id") or "").lower() == wanted
        elif field == "tags":
            ok = wanted in user.get("tags", [])
        elif field == "name":
            ok = wanted in str(user.get("name") or "").lower()
        else:
            ok = wanted in str(user.get("name") or "").lower() or any(wanted in e for e in emails)
        if not ok:
            return False
    return True
