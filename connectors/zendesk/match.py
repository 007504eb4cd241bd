"""Finding the Zendesk end-user who requests a call's ticket, with a shared cache.

Agni's `call.caller_email` and `call.phone` (the external party) are the
identities, tried in the configured order (`match.by`). An email is one users
search (``query=email:…``). A number is searched in the spellings Zendesk
accounts hold (``match.phone_spellings``): E.164 ``+14155550100``, Zendesk's own
display form ``+1 415-555-0100``, the national form ``(415) 555-0100`` and bare
digits ``4155550100``, one search each until one finds somebody. Among the users
a search returns, the most recently updated end-user wins.

Only end-users request tickets. An agent or admin found by a caller's email or
number (an agent testing the line, a shared desk phone) is not used: the
identity counts as unmatched, and when the connector creates an end-user it
leaves that email or number out (Zendesk would otherwise attach it to the agent,
or refuse it as taken).

Each identity's answer is cached in Redis (:class:`bridge.lookup_cache.LookupCache`)
for `lookup_cache_seconds`: ``{"id": <end-user>}``, ``{"agent": <id>}`` or null
("nobody"), so a campaign calling the same numbers searches once per number, not
once per call. The users search is an index that lags behind writes by minutes, so
an end-user the connector creates is written into the cache at once (for at least
an hour), and later calls find it without searching.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from bridge.lookup_cache import MISSING, LookupCache
from connectors.zendesk.client import ZendeskClient

__all__ = ["CREATED_TTL_SECONDS", "Identity", "Lookup", "Requester", "RequesterFinder", "identities_of"]

CREATED_TTL_SECONDS = 3600.0
AGENT_ROLES = frozenset({"agent", "admin"})
_FORMATS = {
    "international": phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    "national": phonenumbers.PhoneNumberFormat.NATIONAL,
}


@dataclass(frozen=True)
class Identity:
    """A lower-cased email, or a number in E.164 with the spellings to search it by."""

    by: str  # "email" | "phone"
    value: str
    spellings: tuple[str, ...] = ()

    def queries(self) -> list[str]:
        if self.by == "email":
            return [f"email:{_quoted(self.value)}"]
        return [f"phone:{_quoted(spelling)}" for spelling in self.spellings]


@dataclass(frozen=True)
class Requester:
    id: int
    by: str  # "email" | "phone" | "created" | "fallback"
    cached: bool = False
    """Answered from the lookup cache (so possibly stale: the user may have been deleted or merged since)."""


@dataclass(frozen=True)
class Lookup:
    """The end-user found (or None) and the identities an agent holds (never used for a requester)."""

    requester: Requester | None
    agents: dict[Identity, int] = field(default_factory=dict)

    def describe(self) -> str:
        held = ", ".join(f"{i.by} held by agent {agent}" for i, agent in self.agents.items())
        return f" ({held}: agents do not request tickets)" if held else ""


def identities_of(call: Mapping[str, Any], by: list[str], region: str, spellings: list[str]) -> list[Identity]:
    """The call's identities in `by` order; absent or unparseable ones are left out."""
    found: list[Identity] = []
    for kind in by:
        if kind == "email":
            email = str(call.get("caller_email") or "").strip().lower()
            if "@" in email:
                found.append(Identity("email", email))
        elif kind == "phone":
            number = _parse(call.get("phone"), region)
            if number is not None:
                e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                forms = [_spell(number, e164, spelling) for spelling in spellings]
                found.append(Identity("phone", e164, tuple(dict.fromkeys(forms))))
    return found


def _parse(raw: Any, region: str) -> phonenumbers.PhoneNumber | None:
    text = str(raw or "").strip()
    if not text:
        return None
    try:
        number = phonenumbers.parse(text, (region or "US").upper())
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_possible_number(number) else None


def _spell(number: phonenumbers.PhoneNumber, e164: str, spelling: str) -> str:
    if spelling == "digits":
        return str(number.national_number)
    if spelling in _FORMATS:
        return phonenumbers.format_number(number, _FORMATS[spelling])
    return e164


def _quoted(value: str) -> str:
    """Zendesk's search syntax splits on spaces: quote a value that has any (or parentheses)."""
    return f'"{value}"' if any(ch in value for ch in ' ()"') else value


class RequesterFinder:
    """Users searches behind the lookup cache; `cache` None (offline tools) always asks Zendesk."""

    def __init__(self, client: ZendeskClient, cache: LookupCache | None) -> None:
        self.client = client
        self.cache = cache

    def find(self, identities: list[Identity], *, fresh: bool = False) -> Lookup:
        """The first identity (in order) that an end-user holds; `fresh` skips the cache (after Zendesk
        refused a cached id)."""
        agents: dict[Identity, int] = {}
        for identity in identities:
            answer = MISSING if fresh or self.cache is None else self.cache.get(*_entry(identity))
            cached = answer is not MISSING
            if not cached:
                answer = self._search(identity)
                if self.cache is not None:
                    self.cache.put(*_entry(identity), answer)
            if isinstance(answer, dict) and answer.get("id"):
                return Lookup(Requester(int(answer["id"]), identity.by, cached=cached), agents)
            if isinstance(answer, dict) and answer.get("agent"):
                agents[identity] = int(answer["agent"])
        return Lookup(None, agents)

    def remember(self, identities: list[Identity], user_id: int) -> None:
        """After the bridge created (or upserted) an end-user: the search index will not show it for minutes."""
        if self.cache is None:
            return
        ttl = max(CREATED_TTL_SECONDS, float(self.cache.ttl))
        self.cache.put_many({_entry(i): {"id": user_id} for i in identities}, ttl=ttl)

    def _search(self, identity: Identity) -> dict[str, int] | None:
        agent: int | None = None
        for query in identity.queries():
            users = self.client.search_users(query)
            end_users = [u for u in users if u.get("role") == "end-user" and u.get("active", True) is not False]
            if end_users:
                newest = max(end_users, key=lambda u: (str(u.get("updated_at") or ""), int(u["id"])))
                return {"id": int(newest["id"])}
            if agent is None:
                agent = next((int(u["id"]) for u in users if u.get("role") in AGENT_ROLES), None)
        return {"agent": agent} if agent is not None else None


def _entry(identity: Identity) -> tuple[str, str]:
    return f"user:{identity.by}", identity.value
