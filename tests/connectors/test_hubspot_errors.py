"""HubSpot connector: HubSpot's rate limits and error answers become the bridge's errors, with what an admin needs."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bridge.errors import PausedError, PermanentError, RetryableError
from bridge.limiter import seconds_until_midnight
from tests.conftest import make_delivery, wait_for
from tests.connectors.hubspot_support import (
    MAPPINGS,
    TEN_SECONDLY,
    TOKEN,
    creates,
    make_connector,
    running_fake,
    searches,
)
from tests.fakes.httpserver import Fault

pytest_plugins = ("tests.connectors.hubspot_support",)  # fixtures: fake

CALLS = "/crm/v3/objects/calls"


def test_a_ten_secondly_429_is_waited_out_in_call_and_then_the_call_lands(fake, redis_client):
    # HubSpot's interval header says how long the window is; the connector waits that long, then retries.
    headers = {"X-HubSpot-RateLimit-Interval-Milliseconds": "300"}
    fake.faults.add(Fault(status=429, body=TEN_SECONDLY, headers=headers), path_prefix=CALLS, method="POST")
    connector = make_connector(fake, redis_client, attempts=3)

    result = connector.deliver(make_delivery(connector))

    assert fake.count("calls") == 1
    assert result.records["call"] in fake.objects["calls"]
    posts = [r for r in fake.request_log if r.method == "POST" and r.path == CALLS]
    assert len(posts) == 2
    assert searches(fake, "calls") == 0  # the refused create cleared its marker: no search needed


def test_a_ten_secondly_429_without_headers_asks_the_queue_to_wait_ten_seconds(fake, redis_client):
    fake.faults.add(Fault(status=429, body=TEN_SECONDLY), path_prefix=CALLS, method="POST")
    connector = make_connector(fake, redis_client, attempts=1)

    with pytest.raises(RetryableError) as caught:
        connector.deliver(make_delivery(connector))

    assert caught.value.retry_after == 10.0
    assert caught.value.status == 429
    assert caught.value.details == {"correlationId": TEN_SECONDLY["correlationId"]}
    # The retry creates straight away: HubSpot refused the first create, so nothing can be duplicated.
    connector.deliver(make_delivery(connector))
    assert fake.count("calls") == 1
    assert searches(fake, "calls") == 0


def test_the_search_secondly_limit_asks_for_a_one_second_wait(fake, redis_client):
    body = {"status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT"}
    fake.faults.add(Fault(status=429, body=body), path_prefix="/crm/v3/objects/contacts/search")
    connector = make_connector(fake, redis_client, attempts=1)

    with pytest.raises(RetryableError) as caught:
        connector.deliver(make_delivery(connector))

    assert caught.value.retry_after == 1.0
    assert not isinstance(caught.value, PausedError)
    assert fake.count("calls") == 0


def test_the_daily_limit_pauses_the_connector_until_midnight_in_the_accounts_time_zone(redis_client):
    with running_fake(daily_limit=1) as fake:  # the contact search uses the day's only request
        connector = make_connector(fake, redis_client, daily_reset_timezone="America/New_York")
        expected = seconds_until_midnight("America/New_York")

        with pytest.raises(PausedError) as caught:
            connector.deliver(make_delivery(connector))
        assert caught.value.retry_after == pytest.approx(expected, abs=5)
        assert fake.throttled["DAILY"] == 1

        # Every worker now waits without asking HubSpot again (the pause is shared through Redis).
        seen = fake.total_requests
        other_worker = make_connector(fake, redis_client, daily_reset_timezone="America/New_York")
        with pytest.raises(PausedError):
            other_worker.deliver(make_delivery(other_worker, call_session_id="another-call"))
        assert fake.total_requests == seen
        assert fake.count("calls") == 0


def test_seconds_until_midnight_follows_the_time_zone():
    now = datetime(2026, 11, 20, 22, 30, tzinfo=ZoneInfo("UTC"))  # 17:30 in New York
    assert seconds_until_midnight("UTC", now) == 90 * 60
    assert seconds_until_midnight("America/New_York", now) == 6.5 * 3600


def test_a_validation_error_is_permanent_with_hubspots_message_and_correlation_id(fake, redis_client, tmp_path):
    # A mapping that writes a property the portal does not have: HubSpot's 400 VALIDATION_ERROR.
    mapping = tmp_path / "with_unknown_property.yaml"
    text = (MAPPINGS / "hubspot_call.yaml").read_text()
    mapping.write_text(text.replace("\nfields:\n", '\nfields:\n  agni_no_such_property: "x"\n', 1))
    connector = make_connector(fake, redis_client, mapping=mapping)

    with pytest.raises(PermanentError) as caught:
        connector.deliver(make_delivery(connector))

    error = caught.value
    assert error.status == 400
    assert error.code == "VALIDATION_ERROR"
    assert 'Property \\"agni_no_such_property\\" does not exist' in error.message
    assert set(error.details) == {"correlationId"}
    assert error.details["correlationId"] in error.describe()
    assert fake.count("calls") == 0


def test_a_bad_token_is_permanent_and_the_token_appears_nowhere(fake, redis_client, caplog):
    connector = make_connector(fake, redis_client, access_token="pat-na1-wrong-secret-token")
    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentError) as caught:
        connector.deliver(make_delivery(connector))
    assert caught.value.status == 401
    assert caught.value.code == "INVALID_AUTHENTICATION"
    assert "wrong-secret" not in caught.value.describe()
    assert "wrong-secret" not in caplog.text
    assert "wrong-secret" not in repr(connector.client)


def test_a_token_with_a_line_break_is_refused_before_it_reaches_a_header(redis_client):
    connector = make_connector(None, redis_client, access_token="secret-part\nX-Injected: 1")
    with pytest.raises(PermanentError) as caught:
        connector.deliver(make_delivery(connector))
    assert "secret-part" not in caught.value.describe()


def test_a_503_on_a_search_is_retried_in_call(fake, redis_client):
    contact = fake.add_contact(email="john@example.com")
    fake.faults.add(Fault(status=503, body=b"<html>Service Unavailable</html>"), path_prefix="/crm/v3/objects/contacts")
    connector = make_connector(fake, redis_client, attempts=3)
    result = connector.deliver(make_delivery(connector))
    assert result.records["contact"] == contact
    assert fake.count("calls") == 1


def test_a_503_on_a_create_goes_back_to_the_queue_since_the_create_may_have_landed(fake, redis_client):
    fake.faults.add(Fault(status=503, body={"message": "upstream busy"}), path_prefix=CALLS, method="POST")
    connector = make_connector(fake, redis_client, attempts=3)
    with pytest.raises(RetryableError) as caught:
        connector.deliver(make_delivery(connector))
    assert caught.value.status == 503
    assert caught.value.message == "HubSpot create calls: upstream busy"
    assert len([r for r in fake.request_log if r.method == "POST" and r.path == CALLS]) == 1


def test_an_error_body_that_is_not_json_still_gives_a_readable_error(fake, redis_client):
    fake.faults.add(Fault(status=400, body=b"<html><body>Bad Request</body></html>"), path_prefix=CALLS)
    connector = make_connector(fake, redis_client)
    with pytest.raises(PermanentError) as caught:
        connector.deliver(make_delivery(connector))
    assert caught.value.status == 400
    assert "Bad Request" in caught.value.message
    assert caught.value.details == {}


def test_an_error_body_with_only_some_fields_is_handled(fake, redis_client):
    fake.faults.add(Fault(status=403, body={"category": "MISSING_SCOPES"}), path_prefix=CALLS)
    connector = make_connector(fake, redis_client)
    with pytest.raises(PermanentError) as caught:
        connector.deliver(make_delivery(connector))
    assert caught.value.code == "MISSING_SCOPES"
    assert caught.value.message == "HubSpot create calls: HTTP 403"


def test_a_create_that_timed_out_is_not_retried_in_call(fake, redis_client):
    # The write may have landed: only the exactly-once guard (on the next attempt) may decide to create again.
    fake.faults.add(Fault(hang_seconds=1.5, after_handling=True), path_prefix=CALLS, method="POST")
    connector = make_connector(fake, redis_client, attempts=3, timeout=0.5)

    with pytest.raises(RetryableError) as caught:
        connector.deliver(make_delivery(connector))

    assert "timed out" in caught.value.message
    assert len([r for r in fake.request_log if r.method == "POST" and r.path == CALLS]) == 1
    wait_for(lambda: creates(fake) == 1, timeout=5, message="the timed-out create to land")  # it did land
    assert TOKEN not in caught.value.describe()
