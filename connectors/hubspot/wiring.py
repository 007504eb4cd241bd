"""What one HubSpot connector builds once and shares between its deliveries and worker threads.

The connector builds these lazily, so `check`, `preview` and imports create nothing, and a connector that
never delivers never starts a batcher thread:

* the client, with the request budgets it shares through Redis with every worker on the same account
  (:mod:`bridge.limiter`);
* the exactly-once ledgers (:mod:`bridge.ledger`), the lookup cache (:mod:`bridge.lookup_cache`) and the
  contact finder;
* unless `batch_size` is 1, the batchers: :class:`~connectors.hubspot.batch.BatchWriter` for creates and
  updates, :class:`~connectors.hubspot.lookup.CoalescedLookup` for contact searches.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from bridge.connector import Services
from bridge.ledger import Ledger
from bridge.limiter import RollingLimiter, SharedPause
from bridge.lookup_cache import LookupCache
from bridge.tls import resolve_trust
from connectors.hubspot.batch import BatchWriter
from connectors.hubspot.client import HubSpotClient
from connectors.hubspot.config import HubSpotConfig
from connectors.hubspot.lookup import CoalescedLookup
from connectors.hubspot.match import ContactFinder

__all__ = ["Stores", "build_client", "build_stores"]

LIMITER_MAX_WAIT_SECONDS = 30.0
# Keep a little of each budget in reserve: a request reaches HubSpot a moment after its slot was granted.
WINDOW_GUARD_SECONDS = 0.5
HUBSPOT = "HubSpot"
DAILY_LIMIT_REACHED = "HubSpot daily request limit reached; paused until the daily reset"


def build_client(config: HubSpotConfig, services: Services, budget: str) -> HubSpotClient:
    """The connector's client; `budget` is the Redis key prefix of the account's shared budgets."""
    client = services.redis
    limiter = search_limiter = pause = None
    if client is not None:
        margin = max(1, config.requests_per_10s // 20)
        limiter = RollingLimiter(
            client,
            f"{budget}:10s",
            max(1, config.requests_per_10s - margin),
            10.0 + WINDOW_GUARD_SECONDS,
            max_wait_seconds=LIMITER_MAX_WAIT_SECONDS,
            destination=HUBSPOT,
        )
        search_limiter = RollingLimiter(
            client,
            f"{budget}:search",
            config.search_per_second,
            1.0 + WINDOW_GUARD_SECONDS / 5,
            max_wait_seconds=LIMITER_MAX_WAIT_SECONDS,
            destination=HUBSPOT,
        )
        pause = SharedPause(client, f"{budget}:paused", reason=DAILY_LIMIT_REACHED, destination=HUBSPOT)
    return HubSpotClient(
        base_url=config.base_url,
        objects_path=config.objects_path,
        token=config.access_token,
        delivery=services.delivery,
        timezone=config.daily_reset_timezone,
        transport=services.http_transport,
        trust=resolve_trust(config.ca_bundle, resolve_path=services.resolve_path),
        limiter=limiter,
        search_limiter=search_limiter,
        pause=pause,
    )


@dataclass(frozen=True)
class Stores:
    """What deliveries share: the ledgers, the contact finder, and the batchers (None when batch_size is 1)."""

    ledger: Ledger
    contacts: Ledger
    finder: ContactFinder
    writer: BatchWriter | None
    lookup: CoalescedLookup | None

    def close(self) -> None:
        """Stop the batchers (each sends what it holds first)."""
        if self.writer is not None:
            self.writer.close()
        if self.lookup is not None:
            self.lookup.close()


def build_stores(config: HubSpotConfig, client: HubSpotClient, store: redis.Redis, keys: str) -> Stores:
    """Ledgers and lookups under the Redis prefix `keys` (``{prefix}:hubspot:{name}``)."""
    ledger = Ledger(store, f"{keys}:ledger", destination=HUBSPOT)
    # A contact the bridge created is remembered briefly; after that, search finds it (or its merge).
    ttl = max(3600.0, config.lookup_cache_seconds)
    contacts = Ledger(store, f"{keys}:ledger", destination=HUBSPOT, ttl_seconds=ttl)
    # fail_open=False: the ledger needs Redis anyway, so a lookup that could not be cached would be wasted.
    cache = LookupCache(store, f"{keys}:lookup", config.lookup_cache_seconds, destination=HUBSPOT, fail_open=False)
    writer = lookup = None
    if config.batch_size > 1:
        timing = {"linger": config.batch_linger_seconds, "max_wait": config.batch_max_wait_seconds}
        writer = BatchWriter(client, ledger, id_property=config.call_id_property, size=config.batch_size, **timing)
        lookup = CoalescedLookup(client, cache, size=config.batch_size, **timing)
    finder = ContactFinder(client, cache, lookup.lookup if lookup is not None else None)
    return Stores(ledger, contacts, finder, writer, lookup)
