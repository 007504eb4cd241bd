"""What one Zendesk connector builds once and shares between its deliveries and worker threads.

Built lazily by the connector, so `check`, `preview` and imports create nothing:

* the client, with the account's budgets shared through Redis by every worker and every connector on
  the same Zendesk account (:mod:`bridge.limiter`): the per-minute window, Zendesk's separate Update
  Ticket window, and the pause a 429 sets;
* the exactly-once ledger and ticket writer (:mod:`connectors.zendesk.writer`), the lookup cache and
  the requester finder (:mod:`connectors.zendesk.match`).

Zendesk counts requests per account (subdomain), whoever's credentials sent them, so the budgets are
keyed by a hash of the base URL alone: two connectors with different tokens on one account share them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis

from bridge.connector import Services
from bridge.ledger import Ledger
from bridge.limiter import RollingLimiter, SharedPause
from bridge.lookup_cache import LookupCache
from bridge.tls import resolve_trust
from connectors.zendesk.client import Budgets, ZendeskClient
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.match import RequesterFinder
from connectors.zendesk.writer import TicketWriter

__all__ = ["ZENDESK", "Parts", "account_key", "build_client", "build_parts"]

ZENDESK = "Zendesk"
LIMITER_MAX_WAIT_SECONDS = 30.0
# A request reaches Zendesk a moment after its slot was granted: count a slightly longer window.
WINDOW_GUARD_SECONDS = 1.0
RATE_LIMITED = "Zendesk rate limit reached (429); every worker waits for the Retry-After Zendesk gave"


def account_key(services: Services, config: ZendeskConfig) -> str:
    """``{prefix}:zendesk:budget:{hash of the base URL}``: one set of budgets per Zendesk account."""
    account = hashlib.sha256(config.base_url.rstrip("/").lower().encode()).hexdigest()[:16]
    return f"{services.prefix}:zendesk:budget:{account}"


def build_client(config: ZendeskConfig, services: Services) -> ZendeskClient:
    """The connector's client; with Redis (deliveries), bound to the account's shared budgets."""
    store = services.redis
    budgets = Budgets()
    if store is not None:
        key = account_key(services, config)
        window = 60.0 + WINDOW_GUARD_SECONDS
        budgets = Budgets(
            minute=_limiter(store, f"{key}:minute", config.requests_per_minute, window),
            updates=_limiter(store, f"{key}:updates", config.ticket_updates_per_minute, window),
            pause=SharedPause(store, f"{key}:paused", reason=RATE_LIMITED, destination=ZENDESK),
        )
    return ZendeskClient(
        api_root=config.api_root,
        auth=config.auth,
        delivery=services.delivery,
        requests_per_minute=config.requests_per_minute,
        transport=services.http_transport,
        trust=resolve_trust(config.ca_bundle, resolve_path=services.resolve_path),
        budgets=budgets,
    )


def _limiter(store: redis.Redis, key: str, published: int, window: float) -> RollingLimiter:
    margin = max(1, published // 20) if published > 1 else 0  # ~5% for other integrations on the account
    return RollingLimiter(
        store, key, published - margin, window, max_wait_seconds=LIMITER_MAX_WAIT_SECONDS, destination=ZENDESK
    )


@dataclass(frozen=True)
class Parts:
    """What deliveries share: the ticket writer (with its ledger) and the requester finder."""

    writer: TicketWriter
    finder: RequesterFinder


def build_parts(
    config: ZendeskConfig, client: ZendeskClient, store: redis.Redis, keys: str, stale_after: float
) -> Parts:
    """Ledger and lookups under the Redis prefix `keys` (``{prefix}:zendesk:{name}``)."""
    ledger = Ledger(store, f"{keys}:ledger", destination=ZENDESK)
    writer = TicketWriter(
        client, ledger, store, stale_after=stale_after, window_seconds=config.idempotency_window_seconds
    )
    # fail_open=False: the ledger needs Redis anyway, so a lookup that could not be cached would be wasted.
    cache = LookupCache(store, f"{keys}:lookup", config.lookup_cache_seconds, destination=ZENDESK, fail_open=False)
    return Parts(writer, RequesterFinder(client, cache))
