"""HubSpot connector: the exactly-once guard's crash window (create landed, answer lost) and HubSpot's search lag."""

from __future__ import annotations

import time

import pytest

from bridge.errors import DeferredError, RetryableError
from bridge.ledger import Ledger
from tests.conftest import make_delivery
from tests.connectors.hubspot_support import (
    CALL_ID_PROPERTY,
    analysis,
    creates,
    make_connector,
    only,
    searches,
)
from tests.fakes.httpserver import Fault

pytest_plugins = ("tests.connectors.hubspot_support",)  # fixtures: fake

CALLS = "/crm/v3/objects/calls"
SESSION = "019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d"


def lose_the_answer_to_the_next_create(fake, path=CALLS):
    """HubSpot writes the object, then the connection drops before the id comes back (as in a crash or timeout)."""
    fake.faults.add(Fault(reset=True, after_handling=True), path_prefix=path, method="POST")


def test_a_call_created_before_its_answer_was_lost_is_found_and_updated_not_duplicated(fake, redis_client):
    connector = make_connector(fake, redis_client)
    lose_the_answer_to_the_next_create(fake)
    with pytest.raises(RetryableError):
        connector.deliver(make_delivery(connector))
    assert fake.count("calls") == 1  # it landed

    # The next attempt sees the intent marker, searches by the call id, and updates the call it finds.
    result = connector.deliver(make_delivery(connector, summary="Second attempt."))

    call_id, props = only(fake, "calls")
    assert result.records["call"] == call_id
    assert "Second attempt." in props["hs_call_body"]
    assert props[CALL_ID_PROPERTY] == SESSION
    assert searches(fake, "calls") == 1
    # The id is in the ledger now: later deliveries neither search nor create.
    connector.deliver(make_delivery(connector))
    assert searches(fake, "calls") == 1
    assert creates(fake) == 1


def test_while_search_lags_behind_the_lost_create_the_retry_waits_instead_of_creating_a_duplicate(fake, redis_client):
    fake.search_lag_seconds = 60  # HubSpot's index has not caught up yet
    connector = make_connector(fake, redis_client)
    lose_the_answer_to_the_next_create(fake)
    with pytest.raises(RetryableError):
        connector.deliver(make_delivery(connector))

    with pytest.raises(DeferredError) as caught:
        connector.deliver(make_delivery(connector))
    # It waits out the request timeout (5 s here) plus the settle time (10 s), counted from the send.
    assert 10 < caught.value.retry_after <= 15
    assert fake.count("calls") == 1

    # Once search shows the call, the retry updates it.
    fake.search_lag_seconds = 0
    result = connector.deliver(make_delivery(connector))
    call_id, _ = only(fake, "calls")
    assert result.records["call"] == call_id


def test_an_intent_marker_older_than_the_settle_time_with_nothing_in_hubspot_leads_to_a_create(fake, redis_client):
    # An attempt claimed the call an hour ago and crashed before sending anything.
    connector = make_connector(fake, redis_client)
    an_hour_ago = Ledger(redis_client, "agni:hubspot:hs:ledger", clock=lambda: time.time() - 3600)
    assert an_hour_ago.claim("call", SESSION).held is None  # it took the marker

    result = connector.deliver(make_delivery(connector))

    call_id, _ = only(fake, "calls")
    assert result.records["call"] == call_id
    assert searches(fake, "calls") == 1  # it looked first, found nothing, then created


def test_a_young_intent_marker_from_a_concurrent_attempt_defers_instead_of_creating(fake, redis_client):
    connector = make_connector(fake, redis_client)
    Ledger(redis_client, "agni:hubspot:hs:ledger").claim("call", SESSION)  # another worker is creating it now

    with pytest.raises(DeferredError):
        connector.deliver(make_delivery(connector))

    assert fake.count("calls") == 0


def test_a_follow_up_task_whose_answer_was_lost_is_not_duplicated(fake, redis_client):
    connector = make_connector(fake, redis_client)
    pending = analysis(goals_met=False)
    lose_the_answer_to_the_next_create(fake, "/crm/v3/objects/tasks")
    with pytest.raises(RetryableError):
        connector.deliver(make_delivery(connector, post_call_analysis=pending))

    result = connector.deliver(make_delivery(connector, post_call_analysis=pending))

    task_id, props = only(fake, "tasks")
    assert result.records["follow_up"] == task_id
    assert props[CALL_ID_PROPERTY] == f"{SESSION}:follow_up"
    assert creates(fake, "calls") == 1
    assert creates(fake, "tasks") == 1


def test_a_contact_whose_create_answer_was_lost_is_not_created_twice(fake, redis_client):
    connector = make_connector(fake, redis_client, match={"on_missing": "create_contact"})
    lose_the_answer_to_the_next_create(fake, "/crm/v3/objects/contacts")
    with pytest.raises(RetryableError):
        connector.deliver(make_delivery(connector))

    result = connector.deliver(make_delivery(connector))

    contact, _ = only(fake, "contacts")
    assert result.records["contact"] == contact
    assert fake.associated_ids("calls", result.records["call"], "contacts") == [contact]
