"""Finding the Pipedrive person a call is about, and their newest open deal, with a shared cache.

Agni's `call.caller_email` and `call.phone` (the external party) are the identities, tried in the configured
order; the first that finds someone wins. Pipedrive's person search (API v2) takes one term at a time:

    email   GET /api/v2/persons/search?term=<email>&fields=email&exact_match=true
    phone   GET …?term=<+E164>&fields=phone&exact_match=true          numbers stored in E.164
            GET …?term=<national digits>&fields=phone&exact_match=false   numbers typed any other way,
                                                                       e.g. "(415) 555-0100" (as other
                                                                       dialer integrations search)

Every hit is verified before it counts: the email must be one of the person's addresses, and one of the
person's numbers, read in `default_region`, must be the caller's E.164 number — a loose search also returns
numbers that merely contain the digits. When several persons hold the identity, the most recently updated one
wins (search results carry no update time, so their ids are read once more, newest first).

Each identity's answer, "nobody" included, is kept in Redis (:class:`bridge.lookup_cache.LookupCache`:
``{"id", "org"}`` or null) for `lookup_cache_seconds`, so a campaign dialling the same numbers searches once
per number, not once per call; when the bridge creates a person it overwrites those entries. Within a worker
process, threads missing on the same identity at the same moment share one search (single flight), since the
search budget is only 10 requests per 2 s. Open deals are cached per person the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from bridge.lookup_cache import MISSING, LookupCache
from bridge.phones import digits, phone_spellings
from connectors.pipedrive.api import PipedriveApi

__all__ = ["Identity", "PersonFinder", "PersonMatch", "identities_of", "same_number"]


@dataclass(frozen=True)
class Identity:
    """One way to recognise the person: a lower-cased email, or an E.164 number with its national digits."""

    by: str  # "email" | "phone"
    value: str
    national: str = ""


@dataclass(frozen=True)
class PersonMatch:
    id: str
    by: str  # "email" | "phone" | "created"
    org_id: str | None = None
    cached: bool = False
    """Answered from the lookup cache (so possibly stale: the person may have been deleted or merged since)."""


def identities_of(call: Mapping[str, Any], by: list[str], region: str) -> list[Identity]:
    """The call's identities in `by` order; absent or unparseable ones are left out."""
    found: list[Identity] = []
    for kind in by:
        if kind == "email":
            email = str(call.get("caller_email") or "").strip().lower()
            if "@" in email:
                found.append(Identity("email", email))
        elif kind == "phone":
            number = phone_spellings(call.get("phone"), region)
            if number is not None:
                found.append(Identity("phone", number.e164, number.national))
    return found


def same_number(stored: Any, identity: Identity, region: str) -> bool:
    """Whether a number as Pipedrive stores it is the caller's: equal once both are read as E.164."""
    spelled = phone_spellings(stored, region)
    if spelled is not None:
        return spelled.e164 == identity.value
    return digits(stored) in (digits(identity.value), identity.national) and bool(digits(stored))


class PersonFinder:
    """Person and open-deal lookups; `cache` None (offline tools, or lookup_cache_seconds 0) asks every time."""

    def __init__(self, api: PipedriveApi, cache: LookupCache | None, region: str) -> None:
        self.api = api
        self.cache = cache
        self.region = region
        self._inflight: dict[tuple[str, str], Future[PersonMatch | None]] = {}
        self._lock = threading.Lock()

    def find(self, identities: list[Identity], *, fresh: bool = False) -> PersonMatch | None:
        """The first identity (in order) that finds someone; `fresh` skips the cache (after Pipedrive refused a
        cached person, or to re-check after a create)."""
        for identity in identities:
            match = self._lookup(identity, fresh)
            if match is not None:
                return match
        return None

    def remember(self, identities: list[Identity], match: PersonMatch) -> None:
        """After the bridge created a person: later calls from them find it without a search."""
        if self.cache is not None:
            answer = {"id": match.id, "org": match.org_id}
            self.cache.put_many({_entry(i): answer for i in identities})

    def open_deal(self, person_id: str) -> str | None:
        """The person's most recently added open deal (cached per person)."""
        cached = self.cache.get("deal", person_id) if self.cache is not None else MISSING
        if cached is not MISSING:
            return cached.get("id") if isinstance(cached, dict) else None
        deal = self.api.newest_open_deal(person_id)
        if self.cache is not None:
            self.cache.put("deal", person_id, {"id": deal})
        return deal

    # -- one identity -----------------------------------------------------------------------
    def _lookup(self, identity: Identity, fresh: bool) -> PersonMatch | None:
        if not fresh and self.cache is not None:
            cached = self.cache.get(*_entry(identity))
            if cached is not MISSING:
                return _from_cache(cached, identity.by)
        return self._single_flight((identity.by, identity.value), lambda: self._search(identity))

    def _single_flight(
        self, key: tuple[str, str], search: Callable[[], PersonMatch | None]
    ) -> PersonMatch | None:
        with self._lock:
            running = self._inflight.get(key)
            if running is None:
                mine: Future[PersonMatch | None] = Future()
                self._inflight[key] = mine
        if running is not None:
            return running.result()
        try:
            mine.set_result(search())
        except BaseException as exc:  # the threads waiting on this identity must wake up too
            mine.set_exception(exc)
            raise
        finally:
            with self._lock:
                del self._inflight[key]
        return mine.result()

    def _search(self, identity: Identity) -> PersonMatch | None:
        if identity.by == "email":
            items = self.api.search_persons(identity.value, "email", exact=True)
            hits = [item for item in items if identity.value in _emails(item)]
        else:
            exact = self.api.search_persons(identity.value, "phone", exact=True)
            loose = self.api.search_persons(identity.national, "phone", exact=False) if identity.national else []
            unique = {str(item["id"]): item for item in [*exact, *loose]}
            hits = [item for item in unique.values() if self._holds(item, identity)]
        best = self._newest(hits)
        match = _match_of(best, identity.by) if best is not None else None
        if self.cache is not None:
            self.cache.put(*_entry(identity), {"id": match.id, "org": match.org_id} if match is not None else None)
        return match

    def _holds(self, item: dict[str, Any], identity: Identity) -> bool:
        return any(same_number(phone, identity, self.region) for phone in _phones(item))

    def _newest(self, hits: list[dict[str, Any]]) -> dict[str, Any] | None:
        if len(hits) <= 1:
            return hits[0] if hits else None
        by_id = {str(item["id"]): item for item in hits}
        ordered = [str(person.get("id")) for person in self.api.persons_newest_first(list(by_id))]
        newest = next((by_id[i] for i in ordered if i in by_id), None)
        return newest if newest is not None else hits[0]


def _emails(item: dict[str, Any]) -> set[str]:
    return {str(_value(email)).strip().lower() for email in item.get("emails") or []}


def _phones(item: dict[str, Any]) -> list[Any]:
    return [_value(phone) for phone in item.get("phones") or []]


def _value(entry: Any) -> Any:
    """Search items list plain strings; person objects list {"value", "primary", "label"}: accept both."""
    return entry.get("value") if isinstance(entry, dict) else entry


def _match_of(item: dict[str, Any], by: str) -> PersonMatch:
    organization = item.get("organization")
    org = organization.get("id") if isinstance(organization, dict) else item.get("org_id")
    return PersonMatch(str(item["id"]), by, str(org) if org else None)


def _entry(identity: Identity) -> tuple[str, str]:
    return f"person:{identity.by}", identity.value


def _from_cache(value: Any, by: str) -> PersonMatch | None:
    if not isinstance(value, dict) or not value.get("id"):
        return None
    org = value.get("org")
    return PersonMatch(str(value["id"]), by, str(org) if org else None, cached=True)
