"""The application user's budgets, shared by every worker through Redis.

Dataverse limits each *user* — and the bridge's application user is one user for
every worker on every machine — to 6,000 requests and 52 concurrent requests per
sliding 5 minutes (a ``$batch`` counts as one request). :class:`Limits` holds

* a :class:`bridge.limiter.RollingLimiter` (``requests_per_5_minutes`` in any 300 s,
  plus a second of guard) and a :class:`bridge.limiter.ConcurrencyLimiter`
  (``max_concurrent_requests``, leases longer than the request timeout), entered
  together around every request, the concurrency slot last, right before sending;
* a :class:`bridge.limiter.SharedPause`: a 429 says the *user* is throttled for
  Retry-After seconds, so every worker holds off, not just the one that was told.
  A short pause (up to ``http_max_wait_seconds``) is slept through in-call; a
  longer one raises PausedError, so calls stay queued without using retries;
* a :class:`DailyBudget` (``daily_request_limit`` operations a day, off by
  default): the tenant's Power Platform request allocation is counted per
  operation, so a batch of four operations spends four. When it is spent the
  connector pauses until midnight in ``daily_reset_timezone``.

:class:`DailyBudget` is generic (a Redis counter per local day, refunded when a
request is refused locally) and could move to :mod:`bridge.limiter`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from zoneinfo import ZoneInfo

import redis

from bridge.errors import PausedError, RetryableError
from bridge.limiter import ConcurrencyLimiter, RollingLimiter, SharedPause, seconds_until_midnight

__all__ = ["DailyBudget", "Limits", "account_key"]

WINDOW_SECONDS = 300.0
WINDOW_GUARD_SECONDS = 1.0
LIMITER_MAX_WAIT_SECONDS = 30.0
DATAVERSE = "Dataverse"
THROTTLED = "Dataverse throttled the application user (429); paused for its Retry-After"
DAILY_SPENT = "the daily_request_limit of Dataverse operations is spent; paused until midnight in {zone}"

# KEYS[1]: today's counter. ARGV: operations, limit, ttl seconds. 1 when granted, 0 when it would exceed the limit.
_SPEND = """
local used = redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
if used > tonumber(ARGV[2]) then
  redis.call('DECRBY', KEYS[1], tonumber(ARGV[1]))
  return 0
end
return 1
"""


def account_key(instance_url: str, client_id: str, tenant: str) -> str:
    """A short hash naming the application user's budgets: two connectors on one user share them."""
    account = f"{instance_url.rstrip('/').lower()}|{client_id.lower()}|{tenant.lower()}"
    return hashlib.sha256(account.encode()).hexdigest()[:16]


class DailyBudget:
    """At most `limit` operations per local day (in `timezone`), counted in Redis across every process."""

    def __init__(self, client: redis.Redis, key: str, limit: int, timezone: str, *, pause: SharedPause) -> None:
        self.key = key
        self.limit = limit
        self.timezone = timezone
        self.pause = pause
        self._spend = client.register_script(_SPEND)

    def spend(self, operations: int, now: datetime | None = None) -> None:
        """Count `operations`; when they do not fit in today's budget, pause every worker until midnight."""
        day = (now or datetime.now(ZoneInfo(self.timezone))).astimezone(ZoneInfo(self.timezone)).date()
        try:
            granted = int(self._spend(keys=[f"{self.key}:{day.isoformat()}"], args=[operations, self.limit, 2 * 86400]))
        except redis.RedisError as exc:
            raise RetryableError(f"{DATAVERSE} daily budget unavailable (Redis: {type(exc).__name__})") from exc
        if not granted:
            wait = seconds_until_midnight(self.timezone, now)
            self.pause.pause(wait)
            raise PausedError(DAILY_SPENT.format(zone=self.timezone), retry_after=wait, code="DAILY_REQUEST_LIMIT")


class Limits:
    """Everything a request waits for before it is sent; see the module docstring."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        requests_per_window: int,
        max_concurrent: int,
        lease_seconds: float,
        max_inline_pause: float,
        daily_limit: int = 0,
        timezone: str = "UTC",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rolling = RollingLimiter(
            client,
            f"{key}:5min",
            requests_per_window,
            WINDOW_SECONDS + WINDOW_GUARD_SECONDS,
            max_wait_seconds=LIMITER_MAX_WAIT_SECONDS,
            destination=DATAVERSE,
        )
        self.concurrency = ConcurrencyLimiter(
            client,
            f"{key}:inflight",
            max_concurrent,
            lease_seconds=lease_seconds,
            max_wait_seconds=LIMITER_MAX_WAIT_SECONDS,
            destination=DATAVERSE,
        )
        self.pause = SharedPause(client, f"{key}:paused", reason=THROTTLED, destination=DATAVERSE)
        self.daily = (
            DailyBudget(client, f"{key}:daily", daily_limit, timezone, pause=self.pause) if daily_limit else None
        )
        self.max_inline_pause = max_inline_pause
        self._sleep = sleep

    @contextmanager
    def slot(self, operations: int = 1) -> Iterator[None]:
        """Wait out a short shared pause, spend the daily budget, then hold a window slot and a concurrency slot."""
        self.wait_if_paused()
        if self.daily is not None:
            self.daily.spend(operations)
        with ExitStack() as stack:
            stack.enter_context(self.rolling.slot())
            stack.enter_context(self.concurrency.slot())
            yield

    def wait_if_paused(self) -> None:
        """Sleep through a pause of up to `max_inline_pause` seconds; raise PausedError for a longer one."""
        for _ in range(3):
            try:
                self.pause.check()
                return
            except PausedError as exc:
                if exc.retry_after is None or exc.retry_after > self.max_inline_pause:
                    raise
                self._sleep(exc.retry_after)
        self.pause.check()

    def throttled(self, retry_after: float) -> None:
        """Dataverse answered 429: every worker holds off for `retry_after` seconds."""
        self.pause.pause(retry_after)
