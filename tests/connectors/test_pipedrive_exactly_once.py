"""Pipedrive connector: the exactly-once guard's crash window (create landed, answer lost), settled by the
reconciliation lookup on the listings Pipedrive really has."""

from __future__ import annotations

import time

import pytest

from bridge.errors import DeferredError, RetryableError
from bridge.ledger import Ledger
from tests.connectors.pipedrive_support import (
    JOHN_EMAIL,
    SESSION,
    deliver,
    make_connector,
    only_call_log,
    pending,
    requests_to,
)
from tests.fakes.httpserver import Fault

pytest_plugins = ("tests.fakes.pipedrive_fixtures",)  # fixtures: fake

CALL_LOGS = "/v1/callLogs"
ACTIVITIES = "/api/v2/activities"
LEDGER = "agni:pipedrive:pd:ledger"


def lose_the_answer_to_the_next_create(fake, path=CALL_LOGS):
    """Pipedrive writes the record, then the connection drops before the id comes back (a crash or timeout)."""
    fake.faults.add(Fault(reset=True, after_handling=True), path_prefix=path, method="POST")


def test_a_call_log_created_before_its_answer_was_lost_is_found_by_its_marker_not_logged_twice(fake, redis_client):
    for i in range(120):  # other call logs of the token's user: the lookup pages through them
        fake.call_logs[f"{i:032x}"] = {"id": f"{i:032x}", "user_id": fake.me, "note": f"agni:other-{i}",
                                       "deleted": False, "has_recording": False}  # fmt: skip
    connector = make_connector(fake, redis_client)
    lose_the_answer_to_the_next_create(fake)
    with pytest.raises(RetryableError):
        deliver(connector)
    assert len(fake.live_call_logs()) == 121  # it landed

    # The next attempt sees the intent marker, lists the call logs, and finds the one carrying its marker.
    result = deliver(connector)

    mine = [log for log in fake.live_call_logs() if log["note"].endswith(f"<p>agni:{SESSION}</p>")]
    assert len(mine) == 1
    assert result.records["call_log"] == mine[0]["id"]
    assert requests_to(fake, "GET", CALL_LOGS) == 3  # pages of 50 up to the last one
    assert requests_to(fake, "POST", CALL_LOGS) == 1
    # The id is in the ledger now: later deliveries neither list nor create.
    deliver(connector)
    assert requests_to(fake, "GET", CALL_LOGS) == 3


def test_a_5xx_after_the_call_log_landed_is_reconciled_the_same_way(fake, redis_client):
    connector = make_connector(fake, redis_client, attempts=3)
    fake.faults.add(Fault(status=502, body=b"<html>Bad gateway</html>", after_handling=True), path_prefix=CALL_LOGS,
                    method="POST")  # fmt: skip
    with pytest.raises(RetryableError) as caught:
        deliver(connector)
    assert caught.value.status == 502
    assert requests_to(fake, "POST", CALL_LOGS) == 1  # a create that may have landed is not retried in-call

    result = deliver(connector)

    assert result.records["call_log"] == only_call_log(fake)["id"]


def test_while_the_settle_time_runs_a_retry_that_cannot_see_the_record_waits_instead_of_writing(fake, redis_client):
    # The earlier attempt's call log is invisible to the listing (say it was logged for another user).
    connector = make_connector(fake, redis_client, search_settle_seconds=30)
    Ledger(redis_client, LEDGER).claim("call", SESSION)  # its intent marker, a moment ago

    with pytest.raises(DeferredError) as caught:
        deliver(connector)

    assert 30 < caught.value.retry_after <= 35  # settle time + request timeout, counted from the send
    assert fake.live_call_logs() == []


def test_an_intent_marker_older_than_the_settle_time_with_nothing_in_pipedrive_leads_to_a_create(fake, redis_client):
    # An attempt claimed the call an hour ago and crashed before sending anything.
    connector = make_connector(fake, redis_client)
    an_hour_ago = Ledger(redis_client, LEDGER, clock=lambda: time.time() - 3600)
    assert an_hour_ago.claim("call", SESSION).held is None

    result = deliver(connector)

    assert result.records["call_log"] == only_call_log(fake)["id"]
    assert requests_to(fake, "GET", CALL_LOGS) == 1  # it looked first, found nothing, then created


def test_a_call_activity_whose_answer_was_lost_is_found_among_the_persons_recent_activities(fake, redis_client):
    person = fake.add_person("John Doe", emails=(JOHN_EMAIL,))
    connector = make_connector(fake, redis_client, record="activity")
    lose_the_answer_to_the_next_create(fake, ACTIVITIES)
    with pytest.raises(RetryableError):
        deliver(connector)

    result = deliver(connector, summary="Second attempt.")

    [call] = fake.live_activities()
    assert result.records["activity"] == str(call["id"])
    assert "Second attempt." in call["note"]  # found, then updated
    [listing] = [r for r in fake.request_log if r.method == "GET" and r.path == ACTIVITIES]
    assert listing.query["person_id"] == [str(person)]
    assert "updated_since" in listing.query


def test_a_follow_up_whose_answer_was_lost_is_not_duplicated(fake, redis_client):
    connector = make_connector(fake, redis_client)
    lose_the_answer_to_the_next_create(fake, ACTIVITIES)
    with pytest.raises(RetryableError):
        deliver(connector, post_call_analysis=pending())

    result = deliver(connector, post_call_analysis=pending())

    [task] = fake.live_activities()
    assert result.records["follow_up"] == str(task["id"])
    assert requests_to(fake, "POST", ACTIVITIES) == 1
    assert requests_to(fake, "POST", CALL_LOGS) == 1


def test_a_person_whose_create_answer_was_lost_is_not_created_twice(fake, redis_client):
    connector = make_connector(fake, redis_client, match={"on_missing": "create_person"})
    lose_the_answer_to_the_next_create(fake, "/api/v2/persons")
    with pytest.raises(RetryableError):
        deliver(connector)

    result = deliver(connector)

    [person] = fake.live_persons()
    assert result.records["person"] == str(person["id"])
    assert only_call_log(fake)["person_id"] == person["id"]


def test_a_create_pipedrive_refused_clears_the_marker_so_the_retry_creates_without_a_lookup(fake, redis_client):
    body = {"success": False, "error": "Request over limit", "errorCode": 429}
    fake.faults.add(Fault(status=429, body=body, headers={"x-ratelimit-reset": "1"}), path_prefix=CALL_LOGS,
                    method="POST")  # fmt: skip
    connector = make_connector(fake, redis_client, attempts=1)
    with pytest.raises(RetryableError):
        deliver(connector)

    deliver(connector)

    assert len(fake.live_call_logs()) == 1
    assert requests_to(fake, "GET", CALL_LOGS) == 0
