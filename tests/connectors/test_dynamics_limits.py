"""Dynamics 365 connector: the application user's limits, shared by every worker — 429s, windows, concurrency, days."""

from __future__ import annotations

import time

import pytest

from bridge.errors import DeferredError, PausedError
from bridge.limiter import LOCAL_LIMIT
from tests.fakes.httpserver import Fault

pytest_plugins = ("tests.connectors.dynamics_support",)  # fixtures: fake, dyn

THROTTLED = {
    "error": {
        "code": "0x80072322",
        "message": "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
    }
}


def test_a_429_is_waited_out_for_its_retry_after_by_every_worker(dyn, fake):
    # Given two workers of one application user, and Dataverse throttling the user for 1 s
    first, second = dyn.connector(name="dyn", attempts=3), dyn.connector(name="dyn", attempts=3)
    fake.faults.add(Fault(status=429, body=THROTTLED, headers={"Retry-After": "1"}), path_prefix="/api/data/")
    started = time.monotonic()

    # When one of them is told so, and the other delivers right after
    results = dyn.concurrently(
        lambda args: args[0].deliver(args[1]),
        [(first, dyn.delivery(first, call_session_id="a")), (second, dyn.delivery(second, call_session_id="b"))],
    )

    # Then both calls land after the pause, and Dataverse was asked once while the user was throttled
    assert [r for r in results if isinstance(r, Exception)] == []
    assert fake.count("phonecall") == 2
    assert time.monotonic() - started >= 1.0
    throttled_at = next(i for i, r in enumerate(fake.request_log) if r.path.startswith("/api/data/"))
    later = [r for r in fake.request_log[throttled_at + 1 :] if r.path.startswith("/api/data/")]
    assert later, "the calls were sent again after the pause"


def test_a_long_retry_after_pauses_the_connector_and_keeps_calls_queued(dyn, fake):
    connector = dyn.connector(attempts=3, max_wait=2.0)
    fake.faults.add(Fault(status=429, body=THROTTLED, headers={"Retry-After": "120"}), path_prefix="/api/data/")

    with pytest.raises(PausedError) as caught:
        connector.deliver(dyn.delivery(connector, call_session_id="a"))
    assert (caught.value.status, caught.value.code) == (429, "0x80072322")
    assert 119 <= caught.value.retry_after <= 120
    assert "Number of requests exceeded the limit of 6000" in caught.value.message

    # and another worker holds off without sending anything
    other = dyn.connector(name="dyn")
    sent = len(fake.request_log)
    with pytest.raises(PausedError):
        other.deliver(dyn.delivery(other, call_session_id="b"))
    assert len(fake.request_log) == sent


def test_a_429_that_outlasts_the_in_call_retries_keeps_the_call_queued_for_its_retry_after(dyn, fake):
    connector = dyn.connector(attempts=2)
    fake.faults.add(Fault(status=429, body=THROTTLED, headers={"Retry-After": "1"}), times=2, path_prefix="/api/data/")
    with pytest.raises(PausedError) as caught:
        connector.deliver(dyn.delivery(connector))
    assert caught.value.retry_after == 1.0
    assert (caught.value.status, caught.value.code) == (429, "0x80072322")
    assert len([r for r in fake.request_log if r.path.startswith("/api/data/")]) == 2


def test_the_five_minute_budget_is_shared_by_every_worker(dyn, fake):
    # Given a budget of 3 requests per 5 minutes for the user, and two workers with one request at a time each
    options = {"batch_size": 1, "requests_per_5_minutes": 3, "match": {"order": ["contact"]}}
    workers = [dyn.connector(name="dyn", **options) for _ in range(2)]
    # When the first worker spends it (a contact lookup, the create, the close)
    workers[0].deliver(dyn.delivery(workers[0], call_session_id="a", caller_email=None))
    # Then the second worker is handed back to the queue before it sends anything
    with pytest.raises(DeferredError) as caught:
        workers[1].deliver(dyn.delivery(workers[1], call_session_id="b", caller_email=None, phone="+14155550199"))
    assert caught.value.code == LOCAL_LIMIT
    assert fake.total_requests == 3


def test_requests_in_flight_stay_under_the_cap_across_workers(dyn, fake):
    # Given a Dataverse that answers slowly and refuses more than 3 requests in flight per user
    fake.max_concurrent, fake.processing_seconds = 3, 0.15
    workers = [dyn.connector(name="dyn", batch_size=1, max_concurrent_requests=3) for _ in range(2)]
    calls = [(workers[i % 2], dyn.delivery(workers[0], call_session_id=f"c-{i}", **dyn.person(i))) for i in range(10)]

    results = dyn.concurrently(lambda item: item[0].deliver(item[1]), calls)

    assert [r for r in results if isinstance(r, Exception)] == []
    assert fake.throttled == {}
    assert fake.max_in_flight <= 3
    assert fake.count("phonecall") == 10


def test_the_cap_is_what_keeps_dataverse_from_refusing(dyn, fake):
    fake.max_concurrent, fake.processing_seconds = 3, 0.15
    connector = dyn.connector(batch_size=1, max_concurrent_requests=50)
    calls = [dyn.delivery(connector, call_session_id=f"c-{i}", **dyn.person(i)) for i in range(10)]
    dyn.concurrently(connector.deliver, calls)
    assert fake.throttled["0x80072326"] > 0


def test_a_spent_daily_budget_pauses_every_worker_until_midnight(dyn, fake):
    # Given 3 operations a day: the lookup (1) and the call's change set (create + close: 2)
    match = {"by": ["phone"], "order": ["contact"]}
    first = dyn.connector(name="dyn", daily_request_limit=3, daily_reset_timezone="Europe/Berlin", match=match)
    first.deliver(dyn.delivery(first, call_session_id="a"))
    assert fake.count("phonecall") == 1

    with pytest.raises(PausedError) as caught:
        first.deliver(dyn.delivery(first, call_session_id="b", phone="+14155550199", callee_number="+14155550199"))
    assert caught.value.code == "DAILY_REQUEST_LIMIT"
    assert caught.value.retry_after > 0
    assert "midnight in Europe/Berlin" in caught.value.message

    second = dyn.connector(name="dyn", daily_request_limit=3)
    sent = fake.total_requests
    with pytest.raises(PausedError):
        second.deliver(dyn.delivery(second, call_session_id="c"))
    assert fake.total_requests == sent
