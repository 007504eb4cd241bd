"""Finding the contact or lead a call was with, and creating one when the config says so.

Lookup order follows ``match.by`` (email, then phone) and, for each, ``match.order``
(contact, then lead): the first table with a match wins, and within it the most
recently modified record (:mod:`connectors.dynamics.lookup` sends the queries).

Answers, "nobody" included, are cached in Redis for ``lookup_cache_seconds``
(:class:`bridge.lookup_cache.LookupCache` under ``{prefix}:dynamics:{name}:lookup``,
keys hashed: no email or number in a key name). A "nobody" never replaces a
cached person: a lookup in flight while a person was being created must not
hide that person.

``on_missing: create_contact`` / ``create_lead`` creates the person with a
create-only request under an id derived from who the caller is
(:func:`~connectors.dynamics.odata.person_id`, keyed by the E.164 number, else
the email). Two calls from one unknown number — on two workers, or a retry
after a lost answer — name the same record: the first creates it, the others
are told it exists and use it. No lock is needed, and Dataverse's queries see
the new record at once (they read the database, not a search index).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import phonenumbers

from bridge.lookup_cache import LookupCache
from bridge.phones import phone_spellings
from connectors.dynamics.client import DataverseClient
from connectors.dynamics.config import MatchConfig
from connectors.dynamics.lookup import Lookups, Query
from connectors.dynamics.odata import ENTITY_SETS, person_id
from connectors.dynamics.records import Person

__all__ = ["Identity", "PersonFinder"]


@dataclass(frozen=True)
class Identity:
    """The caller's lower-cased email and the spellings of their number (E.164 first)."""

    email: str = ""
    phones: tuple[str, ...] = ()

    @property
    def e164(self) -> str:
        return self.phones[0] if self.phones else ""

    @classmethod
    def of(cls, call: Mapping[str, Any], region: str) -> Identity:
        email = str(call.get("caller_email") or "").strip().lower()
        return cls(email if "@" in email else "", spellings(call.get("phone"), region))

    def key(self) -> str:
        """Who this is, for the id of a person the bridge creates: the number, else the email."""
        return self.e164 or self.email

    def values(self) -> dict[str, str]:
        return {"email": self.email, "e164": self.e164}


def spellings(raw: Any, region: str) -> tuple[str, ...]:
    """``+14155550100``, ``4155550100``, ``14155550100``, ``(415) 555-0100``, ``+1 415-555-0100``; () when `raw` is
    not a possible number."""
    found = phone_spellings(raw, region)
    if found is None:
        return ()
    number = phonenumbers.parse(found.e164)
    formatted = [
        phonenumbers.format_number(number, style)
        for style in (phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    ]
    return tuple(dict.fromkeys([found.e164, found.national, found.digits, *formatted]))


class PersonFinder:
    """Finds (and creates) people for one connector; shared by its worker threads."""

    def __init__(self, client: DataverseClient, lookups: Lookups, cache: LookupCache, config: MatchConfig) -> None:
        self.client = client
        self.lookups = lookups
        self.cache = cache
        self.config = config

    def find(self, identity: Identity, *, fresh: bool = False) -> Person | None:
        """The best match, or None; `fresh` skips the cache (a cached id Dataverse no longer has)."""
        for kind in self.config.by:
            value = identity.email if kind == "email" else identity.e164
            if not value:
                continue
            if not fresh:
                cached = self.cache.get(kind, value)
                if isinstance(cached, dict):  # anything else: not cached, or not by this bridge
                    if not cached:
                        continue  # cached "nobody"
                    try:
                        return replace(Person(**cached), cached=True)
                    except TypeError:
                        pass  # another version's entry: ask Dataverse
            person = self._ask(kind, identity)
            self._remember(kind, value, person)
            if person is not None:
                return person
        return None

    def create(self, entity: str, body: dict[str, Any], identity: Identity) -> Person:
        """Create the person once (create-only, an id derived from `identity`) and remember it."""
        record_id = person_id(entity, identity.key())
        self.client.create_only(ENTITY_SETS[entity], record_id, body, what=f"create {entity} (on_missing)")
        person = Person(entity, record_id, by="created")
        for kind, value in (("email", identity.email), ("phone", identity.e164)):
            if value:
                self.cache.put(kind, value, asdict(person))  # overwrite the "nobody" just cached
        return person

    def _ask(self, kind: str, identity: Identity) -> Person | None:
        fields = self.config.email_fields if kind == "email" else self.config.phone_fields
        values = (identity.email,) if kind == "email" else identity.phones
        if not fields:
            return None
        for entity in self.config.order:
            rows = self.lookups.rows(Query(entity, tuple(fields), values))
            if rows and rows[0].get(f"{entity}id"):
                return Person(entity, str(rows[0][f"{entity}id"]), by=kind)
        return None

    def _remember(self, kind: str, value: str, person: Person | None) -> None:
        answer = asdict(replace(person, cached=False)) if person is not None else {}
        self.cache.put(kind, value, answer, keep_existing=person is None)
