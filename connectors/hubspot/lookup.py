"""Coalesced contact lookups: concurrent deliveries' cache misses share one contacts search.

HubSpot allows 5 searches per second per account, so a burst of calls from people the cache does not know
yet would queue one search per call behind that budget. Instead, the misses that arrive together (through
a :class:`~bridge.batching.Batcher`) go into one search with IN filters, one group each:

    email IN [...]                                          primary addresses
    phone IN [+E164...]   /   mobilephone IN [+E164...]     numbers stored in E.164
    hs_searchable_calculated_phone_number IN [national digits...]
                                                            numbers typed any other way

That is 4 of HubSpot's 5 groups and 18 filters. IN lists hold at most 100 values (HubSpot documents no
cap; this is one full batch) and more identities take more searches. Pages of 200 results are followed
with `after` to the last one: an identity without a hit is cached as "no match", so it must really have
none. Each identity gets the most recently modified contact that holds it (compared after normalising:
lower-cased email, E.164 or national digits), and every answer is written to the lookup cache before any
caller wakes up.

Secondary addresses (hs_additional_emails) can only be searched with CONTAINS_TOKEN, one value per group,
so an email no contact has as its primary address is looked for there in a second search, five emails a
request. That keeps the single search's rule (an email match, primary then secondary, beats a phone
match) and costs a search only for unknown emails, once per cache lifetime.

A batch holding at most one email and one phone (a lone call) sends the single search of
:mod:`connectors.hubspot.match` unchanged.

Single flight: a thread that misses on an identity another thread is already looking up waits for that
answer instead of searching again; the owner re-reads the cache after claiming the identity, so a lookup
that finished a moment earlier is not repeated either.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from bridge.batching import Batcher
from bridge.lookup_cache import LookupCache
from connectors.hubspot.client import HubSpotClient
from connectors.hubspot.match import (
    NEWEST_FIRST,
    SEARCH_LIMIT,
    SEARCH_PROPERTIES,
    ContactMatch,
    Identity,
    attribute,
    cached_matches,
    email_rank,
    match_of,
    phone_matches,
    remember_matches,
    search_groups,
)

__all__ = ["CoalescedLookup", "in_groups", "search_contacts"]

MAX_IN_VALUES = 100
PAGE_SIZE = 200  # HubSpot's largest `limit`
SECONDARY_PER_SEARCH = 5  # one CONTAINS_TOKEN group per email, 5 groups at most

Answers = dict[Identity, ContactMatch | None]


class CoalescedLookup:
    """Cache misses of concurrent deliveries, answered by shared searches (see the module docstring)."""

    def __init__(
        self, client: HubSpotClient, cache: LookupCache | None, *, size: int, linger: float, max_wait: float
    ) -> None:
        self.client = client
        self.cache = cache
        self._inflight: dict[Identity, Future[ContactMatch | None]] = {}
        self._lock = threading.Lock()
        self._batcher: Batcher[tuple[Identity, ...], Answers] = Batcher(
            self._run, max_size=size, linger=linger, max_wait=max_wait, name="hubspot-contact-lookups"
        )

    def lookup(self, identities: list[Identity], fresh: bool = False) -> Answers:
        """Each identity's match (None: no contact holds it). `fresh` does not trust the cache."""
        owned: dict[Identity, Future[ContactMatch | None]] = {}
        joined: dict[Identity, Future[ContactMatch | None]] = {}
        with self._lock:
            for identity in identities:
                running = self._inflight.get(identity)
                if running is not None and not fresh:  # a fresh lookup must not take an answer from the cache
                    joined[identity] = running
                else:
                    owned[identity] = Future()
                    self._inflight.setdefault(identity, owned[identity])
        try:
            answers = self._resolve(list(owned), fresh=fresh)
            for identity, future in owned.items():
                future.set_result(answers[identity])
        except BaseException as exc:  # the threads waiting on these identities must wake up too
            for future in owned.values():
                if not future.done():
                    future.set_exception(exc)
            raise
        finally:
            with self._lock:
                for identity, future in owned.items():
                    if self._inflight.get(identity) is future:
                        del self._inflight[identity]
        for identity, future in joined.items():
            answers[identity] = future.result()
        return answers

    def close(self) -> None:
        self._batcher.close()

    def _resolve(self, identities: list[Identity], *, fresh: bool) -> Answers:
        # Re-read: an owner that claimed the identity just after another finished would otherwise search again.
        answers = {} if fresh or self.cache is None else cached_matches(self.cache, identities)
        rest = tuple(i for i in identities if i not in answers)
        if rest:
            answers.update(self._batcher.submit(rest))
        return answers

    def _run(self, requests: Sequence[tuple[Identity, ...]]) -> list[Answers]:
        wanted = list(dict.fromkeys(i for request in requests for i in request))
        answers = search_contacts(self.client, wanted)
        if self.cache is not None:
            remember_matches(self.cache, answers)
        return [{i: answers[i] for i in request} for request in requests]


def search_contacts(client: HubSpotClient, identities: list[Identity]) -> Answers:
    """Every identity's newest matching contact, with as few searches as HubSpot's limits allow."""
    emails = [i for i in identities if i.by == "email"]
    phones = [i for i in identities if i.by != "email"]
    if len(emails) <= 1 and len(phones) <= 1:
        groups = search_groups(identities)
        results = client.search("contacts", groups, SEARCH_PROPERTIES, sorts=NEWEST_FIRST, limit=SEARCH_LIMIT)
        return attribute(results, identities)

    found: dict[str, dict[str, Any]] = {}
    for start in range(0, max(len(emails), len(phones)), MAX_IN_VALUES):
        groups = in_groups(emails[start : start + MAX_IN_VALUES], phones[start : start + MAX_IN_VALUES])
        for result in _all_pages(client, groups):
            found.setdefault(str(result["id"]), result)
    results = newest_first(found.values())
    answers: Answers = {}
    for identity in identities:
        if identity.by == "email":
            hits = [r for r in results if email_rank(r, identity.value) == 0]
        else:
            hits = [r for r in results if phone_matches(r, identity)]
        answers[identity] = match_of(hits[0], identity.by) if hits else None

    unknown = [i for i in emails if answers[i] is None]
    for start in range(0, len(unknown), SECONDARY_PER_SEARCH):
        chunk = unknown[start : start + SECONDARY_PER_SEARCH]
        groups = [
            [{"propertyName": "hs_additional_emails", "operator": "CONTAINS_TOKEN", "value": i.value}] for i in chunk
        ]
        secondary = newest_first(_all_pages(client, groups))
        for identity in chunk:
            hits = [r for r in secondary if email_rank(r, identity.value) is not None]
            answers[identity] = match_of(hits[0], "email") if hits else None
    return answers


def in_groups(emails: list[Identity], phones: list[Identity]) -> list[list[dict[str, Any]]]:
    """The OR'd groups (one IN filter each) that find any of the given emails and phone numbers."""
    groups = []
    if emails:
        groups.append([_in("email", [i.value for i in emails])])
    if phones:
        numbers = [i.value for i in phones]
        groups.append([_in("phone", numbers)])
        groups.append([_in("mobilephone", numbers)])
        national = list(dict.fromkeys(i.national for i in phones if i.national))
        if national:
            groups.append([_in("hs_searchable_calculated_phone_number", national)])
    return groups


def newest_first(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results ordered by lastmodifieddate, newest first (merging pages and searches); stable for ties."""
    return sorted(results, key=_modified, reverse=True)


def _in(name: str, values: list[str]) -> dict[str, Any]:
    return {"propertyName": name, "operator": "IN", "values": values}


def _all_pages(client: HubSpotClient, groups: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page, after = client.search_page(
            "contacts", groups, SEARCH_PROPERTIES, sorts=NEWEST_FIRST, limit=PAGE_SIZE, after=after
        )
        results.extend(page)
        if after is None or not page:
            return results


def _modified(result: dict[str, Any]) -> float:
    raw = str((result.get("properties") or {}).get("lastmodifieddate") or "")
    if raw.isdigit():
        return int(raw) / 1000
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
