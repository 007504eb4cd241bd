"""Finding the HubSpot contact a call is about, with one search at most and a shared cache.

Agni's `call.caller_email` and `call.phone` (the external party) are the
identities, tried in the configured order. All of them go into ONE contacts
search (filter groups are OR'd; 5 is HubSpot's maximum):

    email EQ <email>                                  the primary address
    hs_additional_emails CONTAINS_TOKEN <email>       secondary addresses
    phone EQ <+E164>  /  mobilephone EQ <+E164>       numbers stored in E.164
    hs_searchable_calculated_phone_number EQ <national digits>
                                                      numbers typed any other way, e.g. "(415) 555-0100"

and the results (newest `lastmodifieddate` first) are attributed back to
each identity, a primary email beating an additional one, so several matches
resolve to the most recently modified contact. Each identity's answer,
"no match" included, is cached in Redis (:class:`bridge.lookup_cache.LookupCache`:
``{"id", "company"}`` or null) for `lookup_cache_seconds`, so a
campaign dialling the same numbers searches once per number, not once per
call; when the bridge creates a contact it overwrites those entries. With
batching on, concurrent cache misses share one search instead
(:mod:`connectors.hubspot.lookup`, same attribution rules).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.lookup_cache import MISSING, LookupCache
from bridge.phones import digits, phone_spellings
from connectors.hubspot.client import HubSpotClient

__all__ = [
    "NEWEST_FIRST",
    "SEARCH_LIMIT",
    "SEARCH_PROPERTIES",
    "ContactFinder",
    "ContactMatch",
    "Identity",
    "attribute",
    "cached_matches",
    "email_rank",
    "identities_of",
    "match_of",
    "phone_matches",
    "remember_matches",
    "search_groups",
]

SEARCH_PROPERTIES = [
    "email",
    "hs_additional_emails",
    "phone",
    "mobilephone",
    "hs_searchable_calculated_phone_number",
    "associatedcompanyid",
    "lastmodifieddate",
]
NEWEST_FIRST = [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}]
SEARCH_LIMIT = 50


@dataclass(frozen=True)
class Identity:
    """One way to recognise the person: a lower-cased email, or an E.164 number with its national digits."""

    by: str  # "email" | "phone"
    value: str
    national: str = ""


@dataclass(frozen=True)
class ContactMatch:
    id: str
    by: str  # "email" | "phone" | "created"
    company_id: str | None = None
    cached: bool = False
    """Answered from the lookup cache (so possibly stale: the contact may have been deleted or merged since)."""


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


def search_groups(identities: list[Identity]) -> list[list[dict[str, Any]]]:
    """The OR'd filter groups that find any of `identities` (at most 5: HubSpot's limit)."""
    groups: list[list[dict[str, Any]]] = []
    for identity in identities:
        if identity.by == "email":
            groups.append([{"propertyName": "email", "operator": "EQ", "value": identity.value}])
            groups.append(
                [{"propertyName": "hs_additional_emails", "operator": "CONTAINS_TOKEN", "value": identity.value}]
            )
        else:
            groups.append([{"propertyName": "phone", "operator": "EQ", "value": identity.value}])
            groups.append([{"propertyName": "mobilephone", "operator": "EQ", "value": identity.value}])
            groups.append(
                [
                    {
                        "propertyName": "hs_searchable_calculated_phone_number",
                        "operator": "EQ",
                        "value": identity.national,
                    }
                ]
            )
    return groups


def attribute(results: list[dict[str, Any]], identities: list[Identity]) -> dict[Identity, ContactMatch | None]:
    """Which result (newest first) each identity matched; None when none did."""
    answer: dict[Identity, ContactMatch | None] = {}
    email_hits = {
        identity: [r for r in results if email_rank(r, identity.value) is not None]
        for identity in identities
        if identity.by == "email"
    }
    for identity in identities:
        if identity.by == "email":
            hits = sorted(email_hits[identity], key=lambda r: email_rank(r, identity.value) or 0)  # stable
        else:
            # Every result matched some group: one that matched no email group matched a phone group.
            emailed = {id(r) for hits_ in email_hits.values() for r in hits_}
            hits = [r for r in results if id(r) not in emailed or phone_matches(r, identity)]
        answer[identity] = match_of(hits[0], identity.by) if hits else None
    return answer


def email_rank(result: dict[str, Any], email: str) -> int | None:
    """0 when `email` is the result's primary address, 1 when one of its additional ones, else None."""
    props = result.get("properties") or {}
    if str(props.get("email") or "").strip().lower() == email:
        return 0
    additional = re.split(r"[\s;,]+", str(props.get("hs_additional_emails") or "").lower())
    return 1 if email in additional else None


def phone_matches(result: dict[str, Any], identity: Identity) -> bool:
    """Whether the result holds the number: in E.164 as phone or mobile phone, or typed any way (national digits)."""
    props = result.get("properties") or {}
    typed = digits(props.get("hs_searchable_calculated_phone_number"))
    return identity.value in (props.get("phone"), props.get("mobilephone")) or typed == identity.national


def match_of(result: dict[str, Any], by: str) -> ContactMatch:
    company = (result.get("properties") or {}).get("associatedcompanyid")
    return ContactMatch(str(result["id"]), by, str(company) if company else None)


def cached_matches(cache: LookupCache, identities: list[Identity]) -> dict[Identity, ContactMatch | None]:
    """The cached answers ("no match" included) among `identities`, in one round trip; uncached ones left out."""
    found = cache.get_many(_entry(i) for i in identities)
    return {i: _from_cache(found[_entry(i)], i.by) for i in identities if _entry(i) in found}


def remember_matches(cache: LookupCache, answers: Mapping[Identity, ContactMatch | None]) -> None:
    """Remember each identity's answer, in one round trip (overwriting: a fresh answer replaces a stale one)."""
    cache.put_many(
        {_entry(i): {"id": m.id, "company": m.company_id} if m is not None else None for i, m in answers.items()}
    )


Lookup = Callable[[list[Identity], bool], dict[Identity, ContactMatch | None]]
"""Searches HubSpot for identities the cache did not answer (`fresh`: do not trust the cache)."""


class ContactFinder:
    """Contact (and open deal) lookups; `cache` is None for offline tools.

    `lookup` answers cache misses; None sends one search per call (:func:`search_groups`).
    The batching connector passes :meth:`connectors.hubspot.lookup.CoalescedLookup.lookup`,
    which shares searches between concurrent deliveries and writes the cache itself.
    """

    def __init__(self, client: HubSpotClient, cache: LookupCache | None, lookup: Lookup | None = None) -> None:
        self.client = client
        self.cache = cache
        self.lookup = lookup

    def find(self, identities: list[Identity], *, fresh: bool = False) -> ContactMatch | None:
        """The best match in identity order; `fresh` skips the cache (a re-check after a create, or after
        HubSpot refused a cached contact)."""
        known = {} if fresh or self.cache is None else cached_matches(self.cache, identities)
        for identity in identities:  # stop early when a better identity is already answered from the cache
            if identity not in known:
                break
            if known[identity] is not None:
                return known[identity]
        unknown = [i for i in identities if i not in known]
        if unknown and self.lookup is not None:
            known.update(self.lookup(unknown, fresh))
        elif unknown:
            groups = search_groups(unknown)
            results = self.client.search("contacts", groups, SEARCH_PROPERTIES, sorts=NEWEST_FIRST, limit=SEARCH_LIMIT)
            answered = attribute(results, unknown)
            known.update(answered)
            if self.cache is not None:
                remember_matches(self.cache, answered)
        return next((known[i] for i in identities if known.get(i) is not None), None)

    def remember(self, identities: list[Identity], match: ContactMatch) -> None:
        """After the bridge created a contact: later calls from the same person find it without a search."""
        if self.cache is not None:
            remember_matches(self.cache, dict.fromkeys(identities, match))

    def open_deal(self, contact_id: str, closed_stages: list[str]) -> str | None:
        """The contact's most recently created deal that is not in a closed stage (cached per contact)."""
        cached = self.cache.get("deal", contact_id) if self.cache is not None else MISSING
        if cached is not MISSING:
            return cached.get("id") if isinstance(cached, dict) else None
        filters: list[dict[str, Any]] = [
            {"propertyName": "associations.contact", "operator": "EQ", "value": contact_id}
        ]
        if closed_stages:
            filters.append({"propertyName": "dealstage", "operator": "NOT_IN", "values": closed_stages})
        newest = [{"propertyName": "createdate", "direction": "DESCENDING"}]
        results = self.client.search("deals", [filters], ["dealstage", "createdate"], sorts=newest, limit=1)
        deal = str(results[0]["id"]) if results else None
        if self.cache is not None:
            self.cache.put("deal", contact_id, {"id": deal})
        return deal


def _entry(identity: Identity) -> tuple[str, str]:
    return f"contact:{identity.by}", identity.value


def _from_cache(value: Any, by: str) -> ContactMatch | None:
    if not isinstance(value, dict) or not value.get("id"):
        return None
    return ContactMatch(str(value["id"]), by, value.get("company"), cached=True)
