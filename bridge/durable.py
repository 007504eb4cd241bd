"""Writes that must not be lost to a Redis outage: wait for Redis to come back, then write.

A worker that has written a call to a CRM must record that fact (the done-
marker, the history entry, the retry it schedules, the acknowledgement) or the
call log lies and a redelivery writes the CRM record again. If Redis is down at
that moment — a restart, a failover — giving up is the one wrong answer, and
there is nothing else useful the thread could do meanwhile. So :func:`until_redis`
retries the write with a short capped backoff for as long as Redis is
unreachable, keeping the Dramatiq message unacknowledged (its thread is busy),
and logs the wait at most every few seconds. Errors that mean "Redis answered
and said no" (a script error, a wrong type) are not outages and propagate at once.

A process that is stopped while it waits simply exits: its message is still in
its unacked set, and another worker redelivers it (the CRM upsert absorbs it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from redis.exceptions import BusyLoadingError, ConnectionError, ReadOnlyError, TimeoutError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

__all__ = ["OUTAGE_ERRORS", "until_redis"]

T = TypeVar("T")

log = logging.getLogger("bridge.durable")

OUTAGE_ERRORS: tuple[type[Exception], ...] = (ConnectionError, TimeoutError, BusyLoadingError, ReadOnlyError, OSError)
"""Redis is unreachable, still loading its data after a restart, or a replica after a failover: worth waiting."""

_LOG_EVERY_SECONDS = 10.0


def until_redis(fn: Callable[[], T], what: str, *, max_wait: float = 1.0) -> T:
    """Call `fn`; while Redis is unavailable, wait (0.05 s doubling to `max_wait`) and call it again."""
    started = time.monotonic()
    last_log = [0.0]

    def report(state: RetryCallState) -> None:
        now = time.monotonic()
        if now - last_log[0] >= _LOG_EVERY_SECONDS:
            last_log[0] = now
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "Redis unavailable while %s (%s); waiting for it, %.0fs so far",
                what,
                type(exc).__name__,
                now - started,
            )

    retryer = Retrying(
        retry=retry_if_exception_type(OUTAGE_ERRORS),
        wait=wait_exponential(multiplier=0.05, max=max_wait),
        before_sleep=report,
        reraise=True,
    )
    result = retryer(fn)
    if last_log[0]:
        log.warning("Redis is back; %s done after %.1fs", what, time.monotonic() - started)
    return result
