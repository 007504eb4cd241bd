"""Zendesk connector: one ticket per call under replays, concurrent redeliveries, lost answers and crashes.

The guards (connectors/zendesk/writer.py): the ledger with its intent marker, the Idempotency-Key on
every create, and the `GET /tickets?external_id=` listing after a crash.
"""

from __future__ import annotations

import time

import pytest

from bridge.errors import DeferredError, RetryableError
from tests.conftest import make_delivery
from tests.connectors import zendesk_support
from tests.connectors.zendesk_support import (
    PENDING,
    SESSION,
    TICKETS,
    analysis,
    concurrently,
    listings,
    make_connector,
    posts,
)
from tests.fakes.httpserver import Fault
from tests.fakes.zendesk import ManualClock

fake, seeded = zendesk_support.fake, zendesk_support.seeded  # the fixtures

LEDGER = "agni:zendesk:zd:ledger"
EMPTY_LISTING = {"tickets": [], "next_page": None, "previous_page": None, "count": 0}


def lose_the_answer_to_the_next_create(fake):
    """Zendesk creates the ticket, then the connection drops before the answer comes back."""
    fake.faults.add(Fault(reset=True, after_handling=True), path_prefix=TICKETS, method="POST")


def make_the_marker_old(redis_client, kind="ticket", key=SESSION):
    """As if the attempt that set the intent marker crashed an hour ago."""
    redis_client.hset(f"{LEDGER}:{kind}:{key}", "intent", repr(time.time() - 3600))


def hide_the_listing(fake, times=1):
    """The external_id listing does not show the ticket yet (a lagging listing, as the search API lags)."""
    fake.faults.add(Fault(status=200, body=EMPTY_LISTING), times=times, path_prefix=TICKETS, method="GET")


def test_a_replay_updates_the_ticket_instead_of_creating_another(fake, seeded, redis_client):
    connector = make_connector(fake, redis_client)
    first = connector.deliver(make_delivery(connector))

    replay = connector.deliver(make_delivery(connector, summary="Corrected summary.", status="voicemail"))

    ticket = fake.only_ticket(SESSION)
    assert replay.records["ticket"] == first.records["ticket"] == str(ticket["id"])
    assert posts(fake) == 1
    assert fake.requests[f"PUT {TICKETS}/{{id}}"] == 1
    assert "agni_voicemail" in ticket["tags"] and "agni_completed" in ticket["tags"]  # added, none removed
    assert len(fake.comments_of(ticket["id"])) == 1  # comments are append-only: the voice comment is not resent


def test_ten_concurrent_redeliveries_write_one_ticket(fake, seeded, redis_client):
    connector = make_connector(fake, redis_client)

    results = concurrently(lambda _: connector.deliver(make_delivery(connector)), list(range(10)))

    delivered = [r for r in results if not isinstance(r, Exception)]
    assert delivered, results
    assert all(isinstance(r, DeferredError) for r in results if isinstance(r, Exception)), results
    assert len(fake.tickets_with(SESSION)) == 1
    assert posts(fake) == 1
    # The deferred ones, run again, find the ticket in the ledger.
    for _ in range(len(results) - len(delivered)):
        assert connector.deliver(make_delivery(connector)).records["ticket"] == delivered[0].records["ticket"]
    assert len(fake.tickets_with(SESSION)) == 1


def test_a_ticket_whose_answer_was_lost_is_found_by_external_id_not_created_again(fake, seeded, redis_client):
    connector = make_connector(fake, redis_client)
    lose_the_answer_to_the_next_create(fake)
    with pytest.raises(RetryableError):
        connector.deliver(make_delivery(connector))
    assert len(fake.tickets_with(SESSION)) == 1  # it landed

    result = connector.deliver(make_delivery(connector))

    ticket = fake.only_ticket(SESSION)
    assert result.records["ticket"] == str(ticket["id"])
    assert posts(fake) == 1 and listings(fake) == 1
    connector.deliver(make_delivery(connector))  # now in the ledger: neither a listing nor a create
    assert posts(fake) == 1 and listings(fake) == 1


def test_while_an_earlier_attempt_may_still_be_in_flight_the_retry_waits(fake, seeded, redis_client):
    connector = make_connector(fake, redis_client, reconcile_settle_seconds=5)
    lose_the_answer_to_the_next_create(fake)
    with pytest.raises(RetryableError):
        connector.deliver(make_delivery(connector))
    hide_the_listing(fake)

    with pytest.raises(DeferredError) as caught:
        connector.deliver(make_delivery(connector))

    assert 5 < caught.value.retry_after <= 10  # the request timeout (5 s) + reconcile_settle_seconds
    assert posts(fake) == 1


def test_the_idempotency_key_returns_the_first_ticket_when_the_listing_misses_it(fake, seeded, redis_client):
    connector = make_connector(fake, redis_client)
    lose_the_answer_to_the_next_create(fake)
    with pytest.raises(RetryableError):
        connector.deliver(make_delivery(connector))
    make_the_marker_old(redis_client)
    hide_the_listing(fake)

    result = connector.deliver(make_delivery(connector))

    ticket = fake.only_ticket(SESSION)
    assert result.records["ticket"] == str(ticket["id"])
    assert posts(fake) == 2  # the create went out again, under the same key...
    assert any("Idempotency-Key cache" in note for note in result.notes)  # ...and Zendesk answered `hit`
    assert [r.headers.get("idempotency-key") for r in fake.request_log if r.method == "POST"] == [SESSION] * 2


def test_a_changed_body_under_the_same_key_defers_until_the_ticket_is_listed(fake, seeded, redis_client):
    connector = make_connector(fake, redis_client)
    lose_the_answer_to_the_next_create(fake)
    with pytest.raises(RetryableError):
        connector.deliver(make_delivery(connector))
    make_the_marker_old(redis_client)
    hide_the_listing(fake, times=2)  # before the create, and when reconciling Zendesk's refusal

    with pytest.raises(DeferredError) as caught:
        connector.deliver(make_delivery(connector, summary="The mapping changed meanwhile."))

    assert caught.value.code == "IdempotentRequestError"
    assert 7000 < caught.value.retry_after <= 7200  # until the key expires, counted from its first send
    assert len(fake.tickets_with(SESSION)) == 1
    # Once the ticket is listed, the next attempt updates it.
    result = connector.deliver(make_delivery(connector, summary="The mapping changed meanwhile."))
    assert result.records["ticket"] == str(fake.only_ticket(SESSION)["id"])
    assert len(fake.tickets_with(SESSION)) == 1


def test_among_tickets_sharing_the_external_id_the_oldest_is_picked(fake, seeded, redis_client):
    # Another integration (or an import) left two tickets with this external_id; the listing shows the newest first.
    older = fake.add_ticket(external_id=SESSION, created_at="2026-03-24T18:32:06Z", updated_at="2026-03-24T18:40:00Z")
    newer = fake.add_ticket(external_id=SESSION, created_at="2026-03-24T18:35:00Z", updated_at="2026-03-24T18:36:00Z")
    connector = make_connector(fake, redis_client)
    connector.services.redis.hset(f"{LEDGER}:ticket:{SESSION}", "intent", repr(time.time() - 3600))

    result = connector.deliver(make_delivery(connector))

    assert result.records["ticket"] == str(older)
    assert fake.tickets[older]["subject"] == "Call with John Doe (Support Agent)"  # updated
    assert "subject" not in fake.tickets[newer]
    assert posts(fake) == 0


def test_a_lost_follow_up_answer_leaves_one_task(fake, seeded, redis_client):
    connector = make_connector(fake, redis_client)
    pending = analysis(**PENDING)
    connector.deliver(make_delivery(connector, call_session_id="warm-up"))  # the call's own ticket path is warm
    fake.faults.add(Fault(reset=True, after_handling=True), times=1, path_prefix=TICKETS, method="POST")
    with pytest.raises(RetryableError):
        connector.deliver(make_delivery(connector, post_call_analysis=pending))  # the call ticket's answer is lost
    lose_the_answer_to_the_next_create(fake)
    with pytest.raises(RetryableError):
        connector.deliver(make_delivery(connector, post_call_analysis=pending))  # now the task's answer is lost

    result = connector.deliver(make_delivery(connector, post_call_analysis=pending))

    assert result.records["follow_up"] == str(fake.only_ticket(f"{SESSION}:follow_up")["id"])
    assert result.records["ticket"] == str(fake.only_ticket(SESSION)["id"])


def test_a_replay_of_a_call_whose_ticket_was_closed_is_delivered_with_a_note(fake, seeded, redis_client):
    connector = make_connector(fake, redis_client)
    first = connector.deliver(make_delivery(connector))
    fake.tickets[int(first.records["ticket"])]["status"] = "closed"

    replay = connector.deliver(make_delivery(connector))

    assert replay.records["ticket"] == first.records["ticket"]
    assert any("is closed in Zendesk and was left as it is" in note for note in replay.notes)
    assert len(fake.tickets) == 1


def test_a_ticket_deleted_in_zendesk_is_written_again_on_replay_once_its_key_expired(redis_client):
    clock = ManualClock(time.time())
    with zendesk_support.running_fake(clock=clock) as zendesk:
        people = zendesk_support.seed(zendesk)
        connector = make_connector(zendesk, redis_client)
        first = connector.deliver(make_delivery(connector))
        with zendesk.lock:
            del zendesk.tickets[int(first.records["ticket"])]
        clock.advance(7201)  # Zendesk has forgotten the Idempotency-Key

        replay = connector.deliver(make_delivery(connector))

        ticket = zendesk.only_ticket(SESSION)
        assert replay.records["ticket"] == str(ticket["id"]) != first.records["ticket"]
        assert ticket["requester_id"] == people.john
