"""Zendesk connector: who requests the ticket — email, then the number in the spellings Zendesk holds, the
most recently updated end-user, never an agent — and the shared cache of those answers."""

from __future__ import annotations

import pytest

from tests.conftest import make_delivery
from tests.connectors import zendesk_support
from tests.connectors.zendesk_support import SESSION, make_connector, posts, searches

fake, seeded = zendesk_support.fake, zendesk_support.seeded  # the fixtures

BY_PHONE = {"caller_email": None}


def queries(fake) -> list[str]:
    return [r.query["query"][0] for r in fake.request_log if r.path.endswith("/users/search")]


@pytest.mark.parametrize(
    ("stored", "spelling_searched"),
    [
        ("+14155550100", "phone:+14155550100"),
        ("+1 415-555-0100", 'phone:"+1 415-555-0100"'),
        ("(415) 555-0100", 'phone:"(415) 555-0100"'),
        ("4155550100", "phone:4155550100"),
    ],
)
def test_a_number_is_found_however_the_account_spelled_it(fake, redis_client, stored, spelling_searched):
    jane = fake.add_user("Jane", phone=stored)
    connector = make_connector(fake, redis_client)

    result = connector.deliver(make_delivery(connector, **BY_PHONE))

    assert fake.only_ticket(SESSION)["requester_id"] == jane
    assert result.match == f"end-user {jane} by phone"
    assert queries(fake)[-1] == spelling_searched  # the searches stop at the first spelling that finds her


def test_the_configured_spellings_alone_are_searched(fake, redis_client):
    fake.add_user("Jane", phone="4155550100")
    connector = make_connector(fake, redis_client, match={"phone_spellings": ["e164", "international"]})

    result = connector.deliver(make_delivery(connector, **BY_PHONE))

    assert queries(fake) == ["phone:+14155550100", 'phone:"+1 415-555-0100"']
    assert result.match.startswith("end-user") and "created" in result.match  # not found: a new end-user


def test_email_is_tried_first_and_compared_case_insensitively(fake, redis_client):
    by_phone = fake.add_user("Phone Person", phone="+14155550100")
    by_email = fake.add_user("Email Person", email="John@Example.com")
    connector = make_connector(fake, redis_client)

    connector.deliver(make_delivery(connector, caller_email="JOHN@example.com"))

    assert fake.only_ticket(SESSION)["requester_id"] == by_email != by_phone
    assert queries(fake) == ["email:john@example.com"]


def test_the_most_recently_updated_end_user_wins(fake, redis_client):
    fake.add_user("Old", phone="+14155550100", updated_at=1_700_000_000, shared_phone=True)
    recent = fake.add_user("Recent", phone="+14155550100", updated_at=1_780_000_000, shared_phone=True)
    fake.add_user("Middle", phone="+14155550100", updated_at=1_750_000_000, shared_phone=True)
    connector = make_connector(fake, redis_client)

    connector.deliver(make_delivery(connector, **BY_PHONE))

    assert fake.only_ticket(SESSION)["requester_id"] == recent


def test_an_agent_holding_the_callers_number_never_requests_the_ticket(fake, redis_client):
    agent = fake.add_user("Desk Phone", phone="+14155550100", role="agent")
    connector = make_connector(fake, redis_client)

    result = connector.deliver(make_delivery(connector))

    created = fake.user_by_email("john@example.com")
    assert created is not None and created["role"] == "end-user"
    assert created["phone"] is None  # the agent's number is not given to the new end-user
    assert fake.only_ticket(SESSION)["requester_id"] == created["id"] != agent
    assert f"phone held by agent {agent}: agents do not request tickets" in result.match


def test_an_agent_found_by_email_and_nothing_else_to_create_from_uses_the_fallback(fake, redis_client):
    fake.add_user("Agent John", email="john@example.com", role="agent")
    unknown = fake.add_user("Unknown caller")
    connector = make_connector(fake, redis_client, match={"fallback_requester_id": unknown})

    result = connector.deliver(make_delivery(connector, phone=None))

    assert fake.only_ticket(SESSION)["requester_id"] == unknown
    assert posts(fake, "/api/v2/users/create_or_update") == 0
    assert result.match.startswith(f"fallback requester {unknown}")


def test_answers_are_cached_for_every_worker_nobody_included(fake, redis_client):
    first = make_connector(fake, redis_client, match={"on_missing": "skip"})
    first.deliver(make_delivery(first, caller_email="nobody@example.com", phone="+14155550177"))
    asked = searches(fake)
    assert asked == 5  # the email, then four spellings of the number

    other_worker = make_connector(fake, redis_client, match={"on_missing": "skip"})
    result = other_worker.deliver(
        make_delivery(other_worker, call_session_id="c2", caller_email="nobody@example.com", phone="+14155550177")
    )

    assert result.skipped == "no end-user matched (on_missing=skip)"
    assert searches(fake) == asked  # "nobody" came from the cache


def test_a_cache_of_zero_seconds_asks_zendesk_every_time(fake, seeded, redis_client):
    connector = make_connector(fake, redis_client, lookup_cache_seconds=0)
    connector.deliver(make_delivery(connector, call_session_id="c1"))
    connector.deliver(make_delivery(connector, call_session_id="c2"))
    assert searches(fake) == 2


def test_a_cached_requester_zendesk_no_longer_has_is_looked_up_again(fake, seeded, redis_client):
    connector = make_connector(fake, redis_client)
    connector.deliver(make_delivery(connector, call_session_id="c1"))  # caches john@example.com -> John
    with fake.lock:  # John is merged into a new user since
        del fake.users[seeded.john]
        del fake.identities[seeded.john]
    merged = fake.add_user("John Doe", email="john@example.com")

    result = connector.deliver(make_delivery(connector, call_session_id="c2"))

    assert fake.only_ticket("c2")["requester_id"] == merged
    assert result.match == f"end-user {merged} by email"
