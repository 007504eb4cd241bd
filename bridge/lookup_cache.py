"""Who is this email or phone number? Answers remembered in Redis, "nobody" included, shared by every worker.

A CRM connector looks the caller up before it writes, and a campaign dialling
the same numbers would otherwise ask the CRM once per call. :class:`LookupCache`
keeps each answer as JSON under ``{prefix}:{kind}:{sha256(value)[:32]}`` for
`ttl_seconds`: the value is hashed, so no email address or phone number appears
in a Redis key name (``SCAN``, ``MONITOR``, memory reports). What an answer
looks like is the connector's business (Salesforce stores a Contact/Lead, HubSpot
a contact id and its company); so is how it writes "nobody" (any JSON value).

Two choices differ between connectors and are parameters:

* `fail_open` (default): when Redis cannot be read the cache is a miss and the
  connector asks the CRM (Salesforce, which works without Redis). Otherwise the
  read raises RetryableError (HubSpot, whose exactly-once ledger needs Redis
  anyway: failing early spares a search that could not be used).
* ``put(..., keep_existing=True)`` writes only where nothing is cached: a
  "nobody" from a lookup that was in flight while the connector created the
  person must not hide that person. A lookup that must replace a stale answer
  (after the CRM refused a cached id) writes with the default, which overwrites.

Writes are best effort (a failed one costs a lookup later, and is logged).
A `ttl_seconds` of 0 turns the cache off: reads miss, writes without their own
`ttl` are skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import redis

from bridge.errors import RetryableError

__all__ = ["MISSING", "LookupCache"]



class _Missing:
    """The type of :data:`MISSING`."""

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
"""What a read returns when nothing is cached (distinct from any cached JSON value, null included)."""

Entry = tuple[str, str]
"""(kind, value), e.g. ("email", "ann@example.com"), ("contact:phone", "+14155550100"), ("deal", "123")."""


class LookupCache:
    """Lookup answers in Redis under `prefix` (see the module docstring); `client` None: always a miss."""

    def __init__(
        self,
        client: redis.Redis | None,
        prefix: str,
        ttl_seconds: float,
        *,
        destination: str = "the destination",
        fail_open: bool = True,
        log: logging.Logger | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = int(ttl_seconds)
        self.destination = destination
        self.fail_open = fail_open
        self.log = log or logging.getLogger("bridge.lookup_cache")

    def key(self, kind: str, value: str) -> str:
        return f"{self.prefix}:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"

    def get(self, kind: str, value: str) -> Any:
        """The cached answer (any JSON value), or :data:`MISSING`."""
        return self.get_many([(kind, value)]).get((kind, value), MISSING)

    def get_many(self, entries: Iterable[Entry]) -> dict[Entry, Any]:
        """The cached answers among `entries`, in one round trip; entries with nothing cached are left out."""
        wanted = list(dict.fromkeys(entries))
        if self.client is None or self.ttl <= 0 or not wanted:
            return {}
        try:
            raws = self.client.mget([self.key(kind, value) for kind, value in wanted])
        except redis.RedisError as exc:
            if not self.fail_open:
                error = type(exc).__name__
                raise RetryableError(f"{self.destination} lookup cache unavailable (Redis: {error})") from exc
            self.log.warning("lookup cache unavailable (%s); asking %s", type(exc).__name__, self.destination)
            return {}
        found: dict[Entry, Any] = {}
        for entry, raw in zip(wanted, raws, strict=True):
            if raw is None:
                continue
            try:
                found[entry] = json.loads(raw)
            except ValueError:
                continue  # written by something else: ask the destination instead
        return found

    def put(self, kind: str, value: str, answer: Any, *, ttl: float | None = None, keep_existing: bool = False) -> None:
        """Remember `answer` for (kind, value) for `ttl` seconds (default: the cache's); see the module docstring."""
        self.put_many({(kind, value): answer}, ttl=ttl, keep_existing=keep_existing)

    def put_many(
        self, answers: Mapping[Entry, Any], *, ttl: float | None = None, keep_existing: bool = False
    ) -> None:
        """:meth:`put` for several entries in one round trip."""
        seconds = self.ttl if ttl is None else int(ttl)
        if self.client is None or seconds <= 0 or not answers:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for (kind, value), answer in answers.items():
                pipe.set(self.key(kind, value), json.dumps(answer), ex=seconds, nx=keep_existing)
            pipe.execute()
        except redis.RedisError as exc:
            self.log.warning("lookup cache unavailable (%s); answer not cached", type(exc).__name__)
