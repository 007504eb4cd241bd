"""Pipedrive connector: the burst and search budgets shared by every worker, 429s, the daily token budget's
pause, and Pipedrive's error answers translated once, with what an admin needs and no secret."""

from __future__ import annotations

import logging

import pytest

from bridge.errors import PausedError, PermanentError, RetryableError
from bridge.limiter import seconds_until_midnight
from tests.connectors.pipedrive_support import (
    JOHN_EMAIL,
    concurrently,
    deliver,
    make_connector,
    only_call_log,
    requests_to,
    running_fake,
)
from tests.fakes.httpserver import Fault
from tests.fakes.pipedrive import TOKEN

pytest_plugins = ("tests.fakes.pipedrive_fixtures",)  # fixtures: fake

CALL_LOGS = "/v1/callLogs"
OVER_LIMIT = {"success": False, "error": "Request over limit", "errorCode": 429}


def test_a_burst_429_is_waited_out_in_call_for_x_ratelimit_reset_and_then_the_call_lands(fake, redis_client):
    fake.faults.add(Fault(status=429, body=OVER_LIMIT, headers={"x-ratelimit-reset": "1"}), path_prefix=CALL_LOGS)
    connector = make_connector(fake, redis_client, attempts=3)

    result = deliver(connector)

    assert result.records["call_log"] == only_call_log(fake)["id"]
    assert requests_to(fake, "POST", CALL_LOGS) == 2
    assert requests_to(fake, "GET", CALL_LOGS) == 0  # a refused create cleared its marker: no reconciliation


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"x-ratelimit-reset": "4", "retry-after": "3"}, 4.0),
        ({"x-ratelimit-reset": "1796000000"}, 10.0),  # not a window's remainder: capped
        ({}, 2.0),
    ],
)
def test_a_burst_429_asks_the_queue_to_wait_for_retry_after_or_the_reset_or_the_window(fake, redis_client, headers,
                                                                                      wait):  # fmt: skip
    fake.faults.add(Fault(status=429, body=OVER_LIMIT, headers=headers), path_prefix=CALL_LOGS)
    with pytest.raises(RetryableError) as caught:
        deliver(make_connector(fake, redis_client, attempts=1))
    assert caught.value.retry_after == wait
    assert caught.value.status == 429
    assert not isinstance(caught.value, PausedError)


def test_a_spent_daily_budget_pauses_every_worker_until_midnight_in_the_configured_zone(redis_client):
    with running_fake(daily_tokens=25) as fake:  # the email search (20) leaves too little for a call log (10)
        fake.add_person("John Doe", emails=(JOHN_EMAIL,))
        connector = make_connector(fake, redis_client, daily_reset_timezone="America/New_York")

        with pytest.raises(PausedError) as caught:
            deliver(connector)
        assert caught.value.retry_after == pytest.approx(seconds_until_midnight("America/New_York"), abs=5)
        assert caught.value.status == 429
        assert "Daily API token budget exceeded" in caught.value.message
        assert fake.throttled["daily"] == 1

        # Every worker now waits without asking Pipedrive again (the pause is shared through Redis).
        seen = fake.total_requests
        other_worker = make_connector(fake, redis_client, daily_reset_timezone="America/New_York")
        with pytest.raises(PausedError):
            deliver(other_worker, call_session_id="another-call")
        assert fake.total_requests == seen
        assert fake.live_call_logs() == []


def test_the_budget_header_reaching_zero_pauses_before_pipedrive_has_to_refuse(redis_client):
    with running_fake(daily_tokens=30) as fake:  # a search (20) and a call log (10): then nothing is left
        fake.add_person("John Doe", emails=(JOHN_EMAIL,))
        connector = make_connector(fake, redis_client)
        deliver(connector)
        seen = fake.total_requests

        with pytest.raises(PausedError):
            deliver(connector, call_session_id="the-next-call")

        assert fake.total_requests == seen
        assert fake.throttled["daily"] == 0


def test_the_budget_figures_reach_the_consoles_overview(redis_client):
    from bridge.quota import read_quotas

    with running_fake(daily_tokens=1000, requests_per_2s=40) as fake:
        deliver(make_connector(fake, redis_client))

    figures = read_quotas(redis_client, "agni", ["pd"])["pd"]
    assert (figures["daily_limit"], figures["window_limit"], figures["window_ms"]) == (1000, 40, 2000)
    assert figures["daily_remaining"] < 1000


def test_two_workers_sharing_the_burst_budget_never_draw_a_429(redis_client):
    with running_fake(requests_per_2s=8) as fake:
        fake.add_person("John Doe", emails=(JOHN_EMAIL,))
        workers = [make_connector(fake, redis_client, requests_per_2s=8) for _ in range(2)]

        results = concurrently(
            lambda i: deliver(workers[i % 2], call_session_id=f"burst-{i:02d}"), list(range(12))
        )

        assert [r for r in results if isinstance(r, Exception)] == []
        assert len(fake.live_call_logs()) == 12
        assert fake.throttled == {}


def test_searches_keep_to_their_own_budget_across_workers(redis_client):
    with running_fake(search_per_2s=3) as fake:
        people = [f"person{i}@example.com" for i in range(4)]
        for email in people:
            fake.add_person(email, emails=(email,))
        workers = [make_connector(fake, redis_client, search_per_2s=3) for _ in range(2)]

        results = concurrently(
            lambda i: deliver(workers[i % 2], call_session_id=f"s-{i}", caller_email=people[i]), list(range(4))
        )

        assert [r for r in results if isinstance(r, Exception)] == []
        assert fake.throttled == {}
        assert {log.get("person_id") for log in fake.live_call_logs()} == {p["id"] for p in fake.live_persons()}


def test_a_refusal_is_permanent_with_pipedrives_message_its_correlation_id_and_the_fix(redis_client):
    with running_fake(admin=False) as fake:
        colleague = fake.add_user("Ann", "ann@example.com")
        connector = make_connector(fake, redis_client, owner_map={"Support Agent": colleague})

        with pytest.raises(PermanentError) as caught:
            deliver(connector)

    error = caught.value
    assert error.status == 403
    assert "You do not have permission to create call logs for other users" in error.message
    assert "needs a token whose user has account settings access" in error.message
    assert set(error.details) == {"correlationId"}
    assert error.details["correlationId"] in error.describe()


def test_an_html_403_from_pipedrives_edge_is_waited_out_not_dead_lettered(fake, redis_client):
    fake.faults.add(Fault(status=403, body=b"<html><body>Access denied | Cloudflare</body></html>"), times=1)
    with pytest.raises(RetryableError) as caught:
        deliver(make_connector(fake, redis_client))
    assert caught.value.retry_after == 60.0
    assert "Access denied" in caught.value.message


def test_a_503_on_a_search_is_retried_in_call(fake, redis_client):
    person = fake.add_person("John Doe", emails=(JOHN_EMAIL,))
    fake.faults.add(Fault(status=503, body=b"<html>Service Unavailable</html>"), path_prefix="/api/v2/persons/search")
    result = deliver(make_connector(fake, redis_client, attempts=3))
    assert result.records["person"] == str(person)


def test_an_error_body_that_is_not_json_still_gives_a_readable_error(fake, redis_client):
    fake.faults.add(Fault(status=400, body=b"<html><body>Bad Request</body></html>"), path_prefix=CALL_LOGS)
    with pytest.raises(PermanentError) as caught:
        deliver(make_connector(fake, redis_client))
    assert caught.value.status == 400
    assert "Bad Request" in caught.value.message


def test_a_bad_token_is_permanent_and_the_token_appears_nowhere(fake, redis_client, caplog):
    connector = make_connector(fake, redis_client, auth={"api_token": "wrong-secret-token"})
    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentError) as caught:
        deliver(connector)
    assert caught.value.status == 401
    assert caught.value.message == "Pipedrive search persons by email: unauthorized access"
    assert "wrong-secret" not in caught.value.describe()
    assert "wrong-secret" not in caplog.text
    assert "wrong-secret" not in repr(connector.api.client) + repr(connector.api.client.credentials)


def test_a_token_echoed_in_an_error_body_is_redacted(fake, redis_client):
    fake.faults.add(Fault(status=400, body={"success": False, "error": f"bad token {TOKEN}"}), path_prefix=CALL_LOGS)
    with pytest.raises(PermanentError) as caught:
        deliver(make_connector(fake, redis_client))
    assert TOKEN not in caught.value.describe()
    assert "<redacted>" in caught.value.message


def test_a_token_with_a_line_break_is_refused_before_it_reaches_a_header(redis_client):
    connector = make_connector(None, redis_client, auth={"api_token": "secret-part\nX-Injected: 1"})
    with pytest.raises(PermanentError) as caught:
        deliver(connector)
    assert "secret-part" not in caught.value.describe()
