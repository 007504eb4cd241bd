"""HubSpot's request budgets, shared by every worker process through Redis.

HubSpot counts requests per account in a *rolling* window (100 or 190 per
10 s, and 5 searches per second), so each worker counting on its own would
overshoot as soon as two processes run. :class:`RollingLimiter` keeps the
timestamps of recent requests in one Redis sorted set per budget; a Lua
script (atomic, using Redis's clock so hosts with skewed clocks agree) grants
a slot or says how long until the oldest one expires, and the caller sleeps
that long. A burst therefore waits instead of collecting 429s. When the
answer comes back, the request's mark moves to that moment, because HubSpot
counted it on arrival, somewhere between grant and answer.

The window is the exact rolling window HubSpot uses, not fixed buckets (which
can admit twice the limit across a bucket edge); the connector still shaves a
safety margin off the configured numbers, since a request reaches HubSpot a
little after its slot was granted.

:class:`DailyPause` is the other shared state: after a DAILY 429 every worker
stops sending to this account until the reset, without spending a request.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import redis

from bridge.errors import DeferredError, PausedError, RetryableError

__all__ = ["LOCAL_LIMIT", "DailyPause", "RollingLimiter", "seconds_until_midnight"]

LOCAL_LIMIT = "LOCAL_RATE_LIMIT"
"""The `code` of the DeferredError raised when a slot did not free up in time: nothing was sent."""

# KEYS[1]: the sorted set. ARGV: limit, window in ms, a unique member.
# Returns 0 when a slot was taken, else the milliseconds until one frees up.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now + 1)
"""

# KEYS[1]: the sorted set. ARGV: the member, window in ms. Move a finished request's mark to now.
_FINISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 1000)
return 0
"""


class RollingLimiter:
    """At most `limit` requests in any `window_seconds`, across every process sharing the Redis key.

    A request is counted from the moment its slot is granted until `window_seconds`
    after its answer came back: HubSpot counts it when it *arrives*, somewhere in
    between, and a request delayed on its way (a slow connection, a busy host)
    would otherwise land in the next window together with that window's own.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        limit: int,
        window_seconds: float,
        *,
        max_wait_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.key = key
        self.limit = limit
        self.window_ms = int(window_seconds * 1000)
        self.max_wait_seconds = max_wait_seconds
        self._sleep = sleep
        self._acquire = client.register_script(_ACQUIRE)
        self._finish = client.register_script(_FINISH)

    @contextmanager
    def slot(self) -> Iterator[float]:
        """Hold a slot while the request runs; yields the seconds waited for it.

        Blocks until a slot is free. Raises DeferredError (code LOCAL_RATE_LIMIT,
        nothing sent) after `max_wait_seconds`, so a saturated budget hands the
        job back to the queue instead of holding a worker thread indefinitely.
        Deferred, not failed: a busy budget says nothing about HubSpot's health.
        """
        member = uuid.uuid4().hex
        waited = self._wait_for_slot(member)
        try:
            yield waited
        finally:
            # Best effort: if Redis is gone the mark simply keeps its grant time.
            with contextlib.suppress(redis.RedisError):
                self._finish(keys=[self.key], args=[member, self.window_ms])

    def _wait_for_slot(self, member: str) -> float:
        started = time.monotonic()
        while True:
            try:
                wait_ms = int(self._acquire(keys=[self.key], args=[self.limit, self.window_ms, member]))
            except redis.RedisError as exc:
                raise RetryableError(f"HubSpot rate limiter unavailable (Redis: {type(exc).__name__})") from exc
            waited = time.monotonic() - started
            if wait_ms <= 0:
                return waited
            if waited + wait_ms / 1000 > self.max_wait_seconds:
                raise DeferredError(
                    f"HubSpot request budget exhausted for {waited:.0f}s; handing the call back to the queue",
                    retry_after=wait_ms / 1000,
                    code=LOCAL_LIMIT,
                )
            # A little jitter so waiting threads do not all wake for the same freed slot.
            self._sleep(wait_ms / 1000 + random.uniform(0, 0.02))  # noqa: S311 - jitter, not security


class DailyPause:
    """A shared "paused until <epoch>" marker: set on a DAILY 429, checked before each delivery."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key

    def pause(self, seconds: float) -> None:
        # Best effort: without the marker each call still gets its own PausedError from HubSpot's 429.
        with contextlib.suppress(redis.RedisError):
            self.client.set(self.key, str(time.time() + seconds), ex=max(1, int(seconds) + 1))

    def check(self) -> None:
        """Raise PausedError while the account's daily cap is spent."""
        try:
            raw = self.client.get(self.key)
        except redis.RedisError as exc:
            raise RetryableError(f"HubSpot pause marker unavailable (Redis: {type(exc).__name__})") from exc
        if raw is None:
            return
        remaining = float(raw) - time.time()
        if remaining > 0:
            raise PausedError(
                "HubSpot daily request limit reached; paused until the daily reset", retry_after=remaining
            )


def seconds_until_midnight(timezone: str, now: datetime | None = None) -> float:
    """Seconds from `now` until the next midnight in `timezone` (when HubSpot resets the daily cap)."""
    zone = ZoneInfo(timezone)
    local = (now or datetime.now(zone)).astimezone(zone)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return max(1.0, (midnight - local).total_seconds())
