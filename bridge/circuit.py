"""A circuit breaker per connector, shared by every worker through Redis.

When a CRM is down for long (an outage, a daily quota, Salesforce's
REQUEST_LIMIT_EXCEEDED), retrying every queued call on its own schedule burns
their retries and hammers the CRM. Instead, after `threshold` consecutive
transient failures (or at once, when the connector says it is paused until a
given time) the circuit opens: deliveries for that connector are deferred
without using up retries, and the calls stay queued. When the cooldown is
over, one delivery is let through as a probe (half-open); success closes the
circuit, failure reopens it with a doubled cooldown (up to `max_cooldown`).
A permanent error closes it too: the CRM answered, it is up.

Redis being unreachable is not the CRM's fault: asking the breaker then
raises UnavailableError (the delivery is put off before anything is sent),
and reporting an outcome to it is skipped, so a CRM write that succeeded is
never turned into a failure by the breaker's bookkeeping.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bridge.durable import OUTAGE_ERRORS
from bridge.errors import UnavailableError
from bridge.keys import Keys

__all__ = ["CircuitBreaker"]

log = logging.getLogger("bridge.circuit")

# KEYS: circuit hash. ARGV: now ms, threshold, cooldown ms, max cooldown ms, pause ms (0: count a failure).
_FAILURE = """
local failures = redis.call('hincrby', KEYS[1], 'failures', 1)
local opens = tonumber(redis.call('hget', KEYS[1], 'opens') or '0')
local now, pause = tonumber(ARGV[1]), tonumber(ARGV[5])
local until_ms = 0
if pause > 0 then
  until_ms = now + pause
elseif failures >= tonumber(ARGV[2]) then
  until_ms = now + math.min(tonumber(ARGV[3]) * (2 ^ opens), tonumber(ARGV[4]))
end
if until_ms > 0 then
  redis.call('hset', KEYS[1], 'open_until', until_ms, 'opens', opens + 1, 'failures', 0)
  redis.call('del', KEYS[1] .. ':probe')
end
redis.call('pexpire', KEYS[1], 86400000 * 8)
return until_ms
"""


class CircuitBreaker:
    def __init__(
        self, client: Any, keys: Keys, *, threshold: int = 5, cooldown: float = 30.0, max_cooldown: float = 600.0
    ) -> None:
        self.client = client
        self.keys = keys
        self.threshold = threshold
        self.cooldown_ms = int(cooldown * 1000)
        self.max_cooldown_ms = int(max_cooldown * 1000)
        self._failure = client.register_script(_FAILURE)

    def wait_seconds(self, connector: str) -> float | None:
        """None: go ahead. Otherwise how long this delivery should wait before asking again."""
        key = self.keys.circuit(connector)
        try:
            open_until = self.client.hget(key, "open_until")
        except OUTAGE_ERRORS as exc:
            raise UnavailableError(f"Redis unavailable: {type(exc).__name__}") from exc
        if not open_until or int(open_until) == 0:
            return None
        remaining = int(open_until) / 1000 - time.time()
        if remaining > 0:
            return remaining
        # Half-open: exactly one delivery probes the CRM; the others wait for its verdict.
        try:
            probe = self.client.set(f"{key}:probe", "1", nx=True, px=self.cooldown_ms)
        except OUTAGE_ERRORS as exc:
            raise UnavailableError(f"Redis unavailable: {type(exc).__name__}") from exc
        if probe:
            return None
        return min(5.0, self.cooldown_ms / 1000)

    def succeeded(self, connector: str) -> None:
        key = self.keys.circuit(connector)
        try:
            if self.client.exists(key):
                self.client.delete(key, f"{key}:probe")
        except OUTAGE_ERRORS as exc:
            log.warning("circuit of %s not updated (Redis unavailable: %s)", connector, type(exc).__name__)

    def failed(self, connector: str, *, pause_seconds: float | None = None) -> float | None:
        """Count a transient failure (or pause outright); returns the seconds it opened for, if it did."""
        try:
            until = self._failure(
                keys=[self.keys.circuit(connector)],
                args=[
                    int(time.time() * 1000),
                    self.threshold,
                    self.cooldown_ms,
                    self.max_cooldown_ms,
                    int((pause_seconds or 0) * 1000),
                ],
            )
        except OUTAGE_ERRORS as exc:
            log.warning("circuit of %s not updated (Redis unavailable: %s)", connector, type(exc).__name__)
            return None
        return (int(until) / 1000 - time.time()) if until else None

    def state(self, connector: str) -> dict[str, Any]:
        raw = self.client.hgetall(self.keys.circuit(connector))
        return {k.decode(): int(v) for k, v in raw.items()}
