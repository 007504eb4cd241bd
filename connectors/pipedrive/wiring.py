"""What one Pipedrive connector builds once and shares between its deliveries and worker threads.

Built lazily, so `check`, `preview` and imports create nothing:

* the client (:mod:`connectors.pipedrive.client`) with its credentials and the budgets it shares through Redis
  with every worker on the same account (:mod:`bridge.limiter`): the burst window (`requests_per_2s` less a
  10% reserve, over 2.25 s), the search window (`search_per_2s`, likewise) and the daily pause;
* the exactly-once ledgers (:mod:`bridge.ledger`), the lookup cache (:mod:`bridge.lookup_cache`), the person
  finder and the owner resolver. `setup` runs without Redis: no budgets, no cache.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import redis

from bridge.connector import Services
from bridge.ledger import Ledger
from bridge.limiter import RollingLimiter, SharedPause
from bridge.lookup_cache import LookupCache
from bridge.tls import resolve_trust
from connectors.pipedrive.api import PipedriveApi
from connectors.pipedrive.auth import Credentials
from connectors.pipedrive.client import PipedriveClient
from connectors.pipedrive.config import PipedriveConfig
from connectors.pipedrive.match import PersonFinder
from connectors.pipedrive.owners import OwnerResolver

__all__ = ["PIPEDRIVE", "Stores", "account_key", "build_api", "build_stores"]

PIPEDRIVE = "Pipedrive"
LIMITER_MAX_WAIT_SECONDS = 30.0
# A request reaches Pipedrive a moment after its slot was granted: stretch the window a little.
WINDOW_GUARD_SECONDS = 0.25
DAILY_LIMIT_REACHED = "Pipedrive's daily API token budget is spent; paused until it resets"


def account_key(config: PipedriveConfig) -> str:
    """A short hash of the API host and the credential: connectors on one account share budgets; the
    credential itself is never stored."""
    auth = config.auth
    identity = auth.api_token or auth.refresh_token or auth.oauth_token or auth.client_id
    return hashlib.sha256(f"{config.api_base}|{identity}".encode()).hexdigest()[:16]


def build_api(config: PipedriveConfig, services: Services, budget: str, log_name: str) -> PipedriveApi:
    """The connector's API; `budget` is the Redis key prefix of the account's shared budgets."""
    client = services.redis
    trust = resolve_trust(config.ca_bundle, resolve_path=services.resolve_path)
    limiter = search_limiter = pause = None
    if client is not None:
        limiter = RollingLimiter(
            client,
            f"{budget}:2s",
            max(1, config.requests_per_2s - max(1, config.requests_per_2s // 10)),
            2.0 + WINDOW_GUARD_SECONDS,
            max_wait_seconds=LIMITER_MAX_WAIT_SECONDS,
            destination=PIPEDRIVE,
        )
        search_limiter = RollingLimiter(
            client,
            f"{budget}:search",
            max(1, config.search_per_2s - max(1, config.search_per_2s // 10)),
            2.0 + WINDOW_GUARD_SECONDS,
            max_wait_seconds=LIMITER_MAX_WAIT_SECONDS,
            destination=PIPEDRIVE,
        )
        pause = SharedPause(client, f"{budget}:paused", reason=DAILY_LIMIT_REACHED, destination=PIPEDRIVE)
    credentials = Credentials(
        config.auth,
        config.api_base,
        timeout=services.delivery.timeout_seconds,
        trust=trust,
        transport=services.http_transport,
    )
    return PipedriveApi(
        PipedriveClient(
            credentials=credentials,
            delivery=services.delivery,
            trust=trust,
            timezone=config.daily_reset_timezone,
            transport=services.http_transport,
            limiter=limiter,
            search_limiter=search_limiter,
            pause=pause,
            log=logging.getLogger(log_name),
        )
    )


@dataclass(frozen=True)
class Stores:
    """What deliveries share: the ledgers, the person finder and the owner resolver."""

    ledger: Ledger
    persons: Ledger
    finder: PersonFinder
    owners: OwnerResolver


def build_stores(config: PipedriveConfig, api: PipedriveApi, store: redis.Redis, keys: str) -> Stores:
    """Ledgers and lookups under the Redis prefix `keys` (``{prefix}:pipedrive:{name}``)."""
    # fail_open=False: the ledger needs Redis anyway, so a lookup that could not be cached would be wasted.
    cache = LookupCache(store, f"{keys}:lookup", config.lookup_cache_seconds, destination=PIPEDRIVE, fail_open=False)
    ledger = Ledger(store, f"{keys}:ledger", destination=PIPEDRIVE)
    # A person the bridge created is remembered briefly; after that, search finds it (or its merge).
    ttl = max(3600.0, config.lookup_cache_seconds)
    persons = Ledger(store, f"{keys}:ledger", destination=PIPEDRIVE, ttl_seconds=ttl)
    finder = PersonFinder(api, cache, config.match.default_region)
    owners = OwnerResolver(api, cache, config.owner_map, config.default_owner)
    return Stores(ledger, persons, finder, owners)
