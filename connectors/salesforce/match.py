"""Finding the Contact or Lead a call was with (and, when configured, creating the Lead).

Lookup order follows ``match.by`` (default email, then phone):

* email: SOQL on Contact, then on unconverted Leads, in ``match.order``;
* phone: SOSL ``FIND {…} IN PHONE FIELDS RETURNING Contact(…), Lead(… WHERE
  IsConverted = false)`` with the E.164 number, then with the national digits — SOQL's
  ``Phone = '+14155550100'`` is an exact string compare and misses "(415) 555-0100".

The queries themselves, and how concurrent lookups share one query, live in
:mod:`connectors.salesforce.lookup`. Several matches: the first type in ``match.order``
wins, and within it the most recently modified record.

Results, "nobody" included, are cached in Redis for ``match.cache_seconds``
(:class:`bridge.lookup_cache.LookupCache` under ``{prefix}:salesforce:{connector}:match``,
keyed ``{kind}:{sha256}``: no emails or phone numbers in key names). Without Redis, or
while it is down, Salesforce is asked every time. A "nobody" never replaces a cached
person: a lookup that was in flight while a Lead was being created must not hide that
Lead. Creating a Lead takes a
Redis lock on the person's identifiers and writes the new Lead into the cache, so
concurrent calls from one unknown number create one Lead, and a retried job finds the
Lead it created even before Salesforce's search index has it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis

from bridge.errors import DeferredError, RetryableError
from bridge.lookup_cache import LookupCache
from bridge.phones import phone_spellings
from connectors.salesforce.config import MatchConfig
from connectors.salesforce.lookup import Lookups, Number, Person, soql_quote, sosl_escape

__all__ = ["Identity", "Matcher", "Person", "soql_quote", "sosl_escape"]

CREATED_LEAD_SECONDS = 7 * 86400  # a retried job must find the Lead it created, whatever cache_seconds is
LOCK_SECONDS = 30


@dataclass(frozen=True)
class Identity:
    """The normalized identifiers of the caller: lower-cased email, E.164 and national-digit phone."""

    email: str = ""
    e164: str = ""
    national: str = ""

    @classmethod
    def of(cls, call: Mapping[str, Any], region: str) -> Identity:
        email = str(call.get("caller_email") or "").strip().lower()
        number = phone_spellings(call.get("phone"), region)
        e164, national = (number.e164, number.national) if number is not None else ("", "")
        return cls(email if "@" in email else "", e164, national)

    def identifiers(self) -> list[tuple[str, str]]:
        """(kind, value) pairs the cache is keyed by."""
        return [(kind, value) for kind, value in (("email", self.email), ("phone", self.e164)) if value]


class Matcher:
    """Finds people for one connector; shared by its worker threads."""

    def __init__(
        self,
        lookups: Lookups,
        config: MatchConfig,
        *,
        redis_client: redis.Redis | None,
        key_prefix: str,
        log: logging.Logger,
    ) -> None:
        self.lookups = lookups
        self.config = config
        self.redis = redis_client
        self.key_prefix = key_prefix
        self.log = log
        self.cache = LookupCache(
            redis_client, f"{key_prefix}:match", config.cache_seconds, destination="Salesforce", log=log
        )

    # -- lookup ------------------------------------------------------------------------
    def find(self, identity: Identity) -> Person | None:
        """The best match by the configured identifiers, or None."""
        for kind in self.config.by:
            value = identity.email if kind == "email" else identity.e164
            if not value:
                continue
            cached = self.cache.get(kind, value)
            if isinstance(cached, dict):  # anything else: not cached, or not by this bridge
                if not cached:
                    continue  # cached "nobody"
                try:
                    return Person(**cached)
                except TypeError:
                    pass  # an entry from another version of the bridge: ask Salesforce
            if kind == "email":
                person = self.lookups.by_email(value)
            else:
                person = self.lookups.by_phone(Number(identity.e164, identity.national))
            self._cache_set(kind, value, person, self.config.cache_seconds)
            if person is not None:
                return person
        return None

    # -- creating a Lead ---------------------------------------------------------------------
    @contextmanager
    def creating(self, identity: Identity) -> Iterator[None]:
        """Hold the lock on this person while looking again and creating, so one Lead is created, not two."""
        if self.redis is None or not identity.identifiers():
            yield
            return
        digest = _digest("|".join(f"{k}={v}" for k, v in identity.identifiers()))
        try:
            lock = self.redis.lock(f"{self.key_prefix}:lead-lock:{digest}", timeout=LOCK_SECONDS, blocking_timeout=10)
            acquired = lock.acquire()
        except redis.RedisError as exc:
            raise RetryableError(f"cannot lock the new Lead in Redis: {type(exc).__name__}") from exc
        if not acquired:  # not this call's fault: try again soon without using up a retry
            raise DeferredError("another worker is creating a Lead for this caller", retry_after=5)
        try:
            yield
        finally:
            with suppress(redis.RedisError):  # it expires on its own
                lock.release()

    def created_for_call(self, call_session_id: str) -> str | None:
        """The Lead an earlier attempt of this call created, if any."""
        value = self._redis_get(f"{self.key_prefix}:lead-for-call:{_digest(call_session_id)}")
        return value or None

    def remember_created(self, call_session_id: str, identity: Identity, person: Person) -> None:
        """Write the new Lead through to the cache (instead of waiting for Salesforce's search index)."""
        ttl = max(self.config.cache_seconds, CREATED_LEAD_SECONDS)
        self._redis_set(f"{self.key_prefix}:lead-for-call:{_digest(call_session_id)}", person.id, ttl)
        for kind, value in identity.identifiers():
            self._cache_set(kind, value, replace(person, by=kind), ttl)

    # -- cache ---------------------------------------------------------------------------
    def _cache_set(self, kind: str, value: str, person: Person | None, ttl: int) -> None:
        """A person as a dict, "nobody" as {} — and "nobody" only where nothing is cached: a Lead written
        meanwhile (remember_created) must stay."""
        answer = asdict(person) if person else {}
        self.cache.put(kind, value, answer, ttl=ttl, keep_existing=person is None)

    def _redis_get(self, key: str) -> str | None:
        if self.redis is None:
            return None
        try:
            value = self.redis.get(key)
        except redis.RedisError as exc:  # an optimisation: ask Salesforce instead
            self.log.warning("Lead memory unavailable (%s); asking Salesforce", type(exc).__name__)
            return None
        return value.decode() if isinstance(value, bytes) else value

    def _redis_set(self, key: str, value: str, ttl: int) -> None:
        if self.redis is None:
            return
        try:
            self.redis.set(key, value, ex=ttl)
        except redis.RedisError as exc:
            self.log.warning("Lead memory unavailable (%s); the created Lead is not remembered", type(exc).__name__)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]
