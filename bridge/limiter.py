"""Request budgets shared by every worker process through Redis: a rolling window, a concurrency cap, a pause.

Destinations count requests per account, not per process (HubSpot: 100 or 190
per rolling 10 s and 5 searches per second), so each worker counting on its own
would overshoot as soon as two processes run. :class:`RollingLimiter` keeps the
timestamps of recent requests in one Redis sorted set per budget; a Lua script
(atomic, using Redis's clock so hosts with skewed clocks agree) grants a slot or
says how long until the oldest one expires, and the caller sleeps that long. A
burst therefore waits instead of collecting 429s. When the answer comes back,
the request's mark moves to that moment, because the destination counted it
on arrival, somewhere between grant and answer. The window is an exact rolling
window, not fixed buckets (which can admit twice the limit across a bucket edge);
callers still shave a safety margin off the published numbers, since a request
reaches the destination a little after its slot was granted.

:class:`ConcurrencyLimiter` caps the requests *in flight* across all workers
(a destination that refuses more than N concurrent requests per user). Each
holder is a member of a sorted set scored by its lease's expiry, so the slot of
a worker killed mid-request frees itself after `lease_seconds`.

Both wait at most `max_wait_seconds` and then raise DeferredError with code
:data:`LOCAL_LIMIT` (nothing was sent), which hands the call back to the queue
without using up a retry: a busy budget says nothing about the destination's health.

:class:`SharedPause` is the other shared state: after a "daily limit" answer
every worker stops sending to the account until the reset
(:func:`seconds_until_midnight`), without spending a request.
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

__all__ = ["LOCAL_LIMIT", "ConcurrencyLimiter", "RollingLimiter", "SharedPause", "seconds_until_midnight"]

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


# KEYS[1]: the sorted set of holders scored by lease expiry. ARGV: limit, lease in ms, a unique member.
# Returns 1 when a slot was taken, 0 when all are held by unexpired leases.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 1000)
  return 1
end
return 0
"""


class RollingLimiter:
    """At most `limit` requests in any `window_seconds`, across every process sharing the Redis key.

    A request is counted from the moment its slot is granted until `window_seconds`
    after its answer came back: the destination counts it when it *arrives*,
    somewhere in between, and a request delayed on its way (a slow connection, a
    busy host) would otherwise land in the next window together with that window's own.
    `destination` names the budget's owner in messages ("HubSpot").
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        limit: int,
        window_seconds: float,
        *,
        max_wait_seconds: float = 30.0,
        destination: str = "the destination",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.key = key
        self.destination = destination
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
                raise _unavailable(self.destination, "rate limiter", exc) from exc
            waited = time.monotonic() - started
            if wait_ms <= 0:
                return waited
            if waited + wait_ms / 1000 > self.max_wait_seconds:
                raise DeferredError(
                    f"{self.destination} request budget exhausted for {waited:.0f}s; handing the call back to "
                    "the queue",
                    retry_after=wait_ms / 1000,
                    code=LOCAL_LIMIT,
                )
            # A little jitter so waiting threads do not all wake for the same freed slot.
            self._sleep(wait_ms / 1000 + random.uniform(0, 0.02))  # noqa: S311 - jitter, not security


class ConcurrencyLimiter:
    """At most `limit` requests in flight at once, across every process sharing the Redis key.

    A holder's slot is a lease: it is released when the request ends, or expires
    `lease_seconds` after it was taken (a worker killed mid-request), so make the
    lease longer than the request timeout. Waiting threads poll every `poll_seconds`
    (with jitter): a slot frees whenever any request anywhere ends, which no timer predicts.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        limit: int,
        *,
        lease_seconds: float = 60.0,
        max_wait_seconds: float = 30.0,
        poll_seconds: float = 0.05,
        destination: str = "the destination",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.key = key
        self.limit = limit
        self.lease_ms = int(lease_seconds * 1000)
        self.max_wait_seconds = max_wait_seconds
        self.poll_seconds = poll_seconds
        self.destination = destination
        self._client = client
        self._sleep = sleep
        self._acquire = client.register_script(_HOLD)

    @contextmanager
    def slot(self) -> Iterator[float]:
        """Hold one of the `limit` slots while the request runs; yields the seconds waited for it.

        Raises DeferredError (code LOCAL_RATE_LIMIT, nothing sent) when no slot freed up in `max_wait_seconds`."""
        member = uuid.uuid4().hex
        started = time.monotonic()
        while True:
            try:
                granted = int(self._acquire(keys=[self.key], args=[self.limit, self.lease_ms, member]))
            except redis.RedisError as exc:
                raise _unavailable(self.destination, "concurrency limiter", exc) from exc
            waited = time.monotonic() - started
            if granted:
                break
            if waited + self.poll_seconds > self.max_wait_seconds:
                raise DeferredError(
                    f"{self.destination}: {self.limit} requests in flight for {waited:.0f}s; handing the call back "
                    "to the queue",
                    retry_after=max(1.0, self.poll_seconds),
                    code=LOCAL_LIMIT,
                )
            self._sleep(self.poll_seconds * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not security
        try:
            yield waited
        finally:
            with contextlib.suppress(redis.RedisError):  # the lease expires on its own
                self._client.zrem(self.key, member)

    def in_flight(self) -> int:
        """Holders whose lease has not expired, by Redis's clock (for tests and metrics)."""
        seconds, micros = self._client.time()
        return int(self._client.zcount(self.key, f"({seconds * 1000 + micros // 1000}", "+inf"))


class SharedPause:
    """A shared "paused until <epoch>" marker: set on a daily-limit answer, checked before each request.

    `reason` is the PausedError's message while the pause lasts."""

    def __init__(self, client: redis.Redis, key: str, *, reason: str, destination: str = "the destination") -> None:
        self.client = client
        self.key = key
        self.reason = reason
        self.destination = destination

    def pause(self, seconds: float) -> None:
        # Best effort: without the marker each call still gets its own PausedError from the destination's answer.
        with contextlib.suppress(redis.RedisError):
            self.client.set(self.key, str(time.time() + seconds), ex=max(1, int(seconds) + 1))

    def check(self) -> None:
        """Raise PausedError while the pause lasts."""
        try:
            raw = self.client.get(self.key)
        except redis.RedisError as exc:
            raise _unavailable(self.destination, "pause marker", exc) from exc
        if raw is None:
            return
        remaining = float(raw) - time.time()
        if remaining > 0:
            raise PausedError(self.reason, retry_after=remaining)


def seconds_until_midnight(timezone: str, now: datetime | None = None) -> float:
    """Seconds from `now` until the next midnight in `timezone` (when daily budgets such as HubSpot's reset)."""
    zone = ZoneInfo(timezone)
    local = (now or datetime.now(zone)).astimezone(zone)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return max(1.0, (midnight - local).total_seconds())


def _unavailable(destination: str, what: str, exc: redis.RedisError) -> RetryableError:
    return RetryableError(f"{destination} {what} unavailable (Redis: {type(exc).__name__})")
