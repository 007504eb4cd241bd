"""HubSpot connector: the request budget shared through Redis holds across processes and waits instead of failing."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from bridge.errors import DeferredError
from connectors.hubspot.limits import LOCAL_LIMIT, RollingLimiter


def test_limiters_in_different_processes_never_grant_more_than_the_limit_in_any_window(redis_url):
    # Given four "processes" (own Redis connection, own limiter object) sharing one budget of 5 per 0.5 s
    limit, window = 5, 0.5
    grants: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        client = redis.Redis.from_url(redis_url)
        limiter = RollingLimiter(client, "agni:test:budget", limit, window)
        for _ in range(4):
            with limiter.slot(), lock:
                grants.append(time.monotonic())
        client.close()

    # When they all take slots as fast as they can
    threads = [threading.Thread(target=worker) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then no window held more than the limit, and the 16 requests took at least three windows
    grants.sort()
    slack = 0.03  # grants are timed by Redis; these stamps are taken a moment later, in this process
    for i, start in enumerate(grants):
        assert sum(1 for t in grants[i:] if t < start + window - slack) <= limit
    assert time.monotonic() - started >= 3 * window - slack


def test_a_saturated_budget_defers_the_call_after_the_longest_wait_without_sending(redis_client):
    limiter = RollingLimiter(redis_client, "agni:test:full", 1, 60, max_wait_seconds=0.2)
    with limiter.slot(), pytest.raises(DeferredError) as caught, limiter.slot():
        pass
    assert caught.value.code == LOCAL_LIMIT
    assert 59 < caught.value.retry_after <= 60.01


def test_a_wait_shorter_than_the_longest_wait_is_slept_through(redis_client):
    limiter = RollingLimiter(redis_client, "agni:test:short", 1, 0.3, max_wait_seconds=5)
    with limiter.slot() as first:
        assert first < 0.1
    with limiter.slot() as waited:
        assert 0.2 < waited < 1.0
