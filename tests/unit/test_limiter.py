"""Shared request budgets (bridge.limiter): they hold across processes through Redis and wait instead of failing.

A rolling window (HubSpot's ten-second and search budgets), a cap on requests in flight, and a shared pause.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from bridge.errors import DeferredError, PausedError
from bridge.limiter import LOCAL_LIMIT, ConcurrencyLimiter, RollingLimiter, SharedPause
from tests.conftest import wait_for


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


# -- the concurrency cap --------------------------------------------------------------------------------------


def test_never_more_than_the_cap_in_flight_across_processes(redis_url):
    # Given six "processes" (own Redis connection, own limiter) sharing a cap of 2 requests in flight
    in_flight = peak = 0
    lock = threading.Lock()
    done = threading.Event()

    def worker() -> None:
        nonlocal in_flight, peak
        client = redis.Redis.from_url(redis_url)
        limiter = ConcurrencyLimiter(client, "agni:test:inflight", 2, poll_seconds=0.01)
        for _ in range(3):
            with limiter.slot():
                with lock:
                    in_flight += 1
                    peak = max(peak, in_flight)
                done.wait(0.02)  # the request takes a while
                with lock:
                    in_flight -= 1
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # Then the 18 requests ran, at most two at a time, and every slot was given back
    assert peak == 2
    assert ConcurrencyLimiter(redis.Redis.from_url(redis_url), "agni:test:inflight", 2).in_flight() == 0


def test_a_full_cap_defers_the_call_after_the_longest_wait_without_sending(redis_client):
    limiter = ConcurrencyLimiter(redis_client, "agni:test:cap", 1, max_wait_seconds=0.2, destination="Dynamics")
    with limiter.slot(), pytest.raises(DeferredError) as caught, limiter.slot():
        pass
    assert caught.value.code == LOCAL_LIMIT
    assert caught.value.message.startswith("Dynamics: 1 requests in flight")
    with limiter.slot() as waited:  # released when the holder finished
        assert waited < 0.1


def test_the_slot_of_a_worker_that_died_holding_it_frees_itself_when_its_lease_ends(redis_client):
    crashed = ConcurrencyLimiter(redis_client, "agni:test:lease", 1, lease_seconds=0.3)
    held = crashed.slot()
    held.__enter__()  # taken and never released: the process is gone
    assert crashed.in_flight() == 1

    limiter = ConcurrencyLimiter(redis_client, "agni:test:lease", 1, max_wait_seconds=5, poll_seconds=0.02)
    with limiter.slot() as waited:
        assert 0.15 < waited < 2.0
        assert limiter.in_flight() == 1
    del held


# -- the shared pause -----------------------------------------------------------------------------------------


def test_a_pause_set_by_one_process_stops_every_process_until_it_ends(redis_url):
    first, second = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    reason = "Pipedrive daily budget spent; paused until it resets"
    pausing = SharedPause(first, "agni:test:paused", reason=reason)
    waiting = SharedPause(second, "agni:test:paused", reason=reason)
    waiting.check()  # not paused yet

    pausing.pause(60)
    with pytest.raises(PausedError) as caught:
        waiting.check()
    assert caught.value.message == reason
    assert 58 < caught.value.retry_after <= 60

    pausing.pause(0.2)
    wait_for(lambda: not paused(waiting), timeout=5, message="the short pause to end")
    first.close()
    second.close()


def paused(pause: SharedPause) -> bool:
    try:
        pause.check()
    except PausedError:
        return True
    return False
