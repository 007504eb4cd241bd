"""What the CRMs say about their own quota, kept in Redis for the console's overview.

Some CRMs report how much of their API allowance is used on every answer: Salesforce's
`Sforce-Limit-Info: api-usage=N/M` (the org's rolling 24-hour allocation), HubSpot's
`X-HubSpot-RateLimit-Daily(-Remaining)` and `X-HubSpot-RateLimit-Max/-Remaining` (the ten-second window).
The connectors that read those headers hand the numbers to a :class:`QuotaRecorder`, which keeps the
latest per connector in one small Redis hash (``{prefix}:quota:{connector}``); every API replica's
overview reads the same hash.

Recording is a convenience: it writes at most once a second per connector and process, and a Redis error
is swallowed — a quota figure must never slow or fail a delivery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["QuotaRecorder", "hubspot_quota", "quota_key", "read_quotas"]

log = logging.getLogger("bridge.quota")

KEEP_SECONDS = 2 * 86400  # a figure older than this says nothing about today
_HUBSPOT_HEADERS = {
    "x-hubspot-ratelimit-daily": "daily_limit",
    "x-hubspot-ratelimit-daily-remaining": "daily_remaining",
    "x-hubspot-ratelimit-max": "window_limit",
    "x-hubspot-ratelimit-remaining": "window_remaining",
    "x-hubspot-ratelimit-interval-milliseconds": "window_ms",
}


def quota_key(prefix: str, connector: str) -> str:
    return f"{prefix}:quota:{connector}"


def hubspot_quota(headers: Mapping[str, str]) -> dict[str, int]:
    """The rate-limit figures of one HubSpot answer (empty when it carries none)."""
    found: dict[str, int] = {}
    for header, name in _HUBSPOT_HEADERS.items():
        raw = headers.get(header)
        if raw is not None and str(raw).strip().isdigit():
            found[name] = int(str(raw).strip())
    return found


class QuotaRecorder:
    """Keeps one connector's latest quota figures in Redis (throttled, never raising)."""

    def __init__(self, client: Any, prefix: str, connector: str, *, min_interval: float = 1.0) -> None:
        self.client = client
        self.key = quota_key(prefix, connector)
        self.min_interval = min_interval
        self._last = 0.0
        self._lock = threading.Lock()

    def record(self, figures: Mapping[str, int | str]) -> None:
        if not figures or self.client is None:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.min_interval:
                return
            self._last = now
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(self.key, mapping={**figures, "t": int(time.time() * 1000)})
            pipe.expire(self.key, KEEP_SECONDS)
            pipe.execute()
        except Exception as exc:  # best effort: never let bookkeeping fail a delivery
            log.debug("quota figures not recorded: %s", type(exc).__name__)

    def salesforce(self, used: int, limit: int) -> None:
        """From `Sforce-Limit-Info: api-usage=used/limit`."""
        self.record({"api_usage": used, "api_limit": limit})

    def hubspot(self, headers: Mapping[str, str]) -> None:
        self.record(hubspot_quota(headers))


def read_quotas(client: Any, prefix: str, connectors: Iterable[str]) -> dict[str, dict[str, int]]:
    """connector -> its latest figures (plus `t`, when they were seen, epoch ms); connectors without any are left
    out. One pipelined round trip."""
    names = list(connectors)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(quota_key(prefix, name))
    result: dict[str, dict[str, int]] = {}
    for name, raw in zip(names, pipe.execute(), strict=True):
        figures = {}
        for field, value in (raw or {}).items():
            key = field.decode() if isinstance(field, bytes) else str(field)
            try:
                figures[key] = int(value)
            except (TypeError, ValueError):
                continue
        if figures:
            result[name] = figures
    return result
