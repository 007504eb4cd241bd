"""HubSpot connector: what lands in HubSpot for a call, and that it lands exactly once (FakeHubSpot, real Redis)."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from bridge.errors import RetryableError
from bridge.templating import TRUNCATION_MARKER
from tests.conftest import make_delivery
from tests.connectors.hubspot_support import (
    CALL_ID_PROPERTY,
    CONNECTED,
    analysis,
    association_types,
    creates,
    make_connector,
    only,
    running_fake,
    searches,
)
from tests.fakes.hubspot import FakeHubSpot

pytest_plugins = ("tests.connectors.hubspot_support",)  # fixtures: fake

SESSION = "019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d"


def test_the_seed_call_becomes_one_call_with_every_mapped_property_associated_to_its_contact(fake, redis_client):
    # Given the caller is a contact in HubSpot
    contact = fake.add_contact(email="john@example.com", firstname="John")
    connector = make_connector(fake, redis_client)

    # When the example webhook is delivered
    result = connector.deliver(make_delivery(connector))

    # Then one Call holds every mapped property, linked to the contact with type 194
    call_id, props = only(fake, "calls")
    assert result.records == {"call": call_id, "contact": contact}
    assert result.match == f"contact {contact} by email"
    assert props["hs_timestamp"] == "2026-03-24T18:30:00.000Z"
    assert props["hs_call_title"] == "Agni call with John Doe (Support Agent)"
    assert "Customer called about their order #4521." in props["hs_call_body"]
    assert "<strong>Next steps</strong><br>No follow-up needed." in props["hs_call_body"]
    assert "[00:03] Customer: Hi, I wanted to check on my order number 4521.<br>" in props["hs_call_body"]
    assert props["hs_call_duration"] == "125000"
    assert props["hs_call_status"] == "COMPLETED"
    assert props["hs_call_direction"] == "OUTBOUND"
    assert props["hs_call_disposition"] == CONNECTED
    assert props["hs_call_recording_url"] == "https://storage.agniai.com/rec/019d2b3c-8e9f.mp3"
    assert props["hs_call_from_number"] == "+18881234567"
    assert props["hs_call_to_number"] == "+14155550100"
    assert props[CALL_ID_PROPERTY] == SESSION
    assert association_types(fake, "calls", call_id, "contacts") == {contact: 194}
    # One search for the contact and one create: nothing else.
    assert fake.total_requests == 2
    assert fake.count("tasks") == 0


def test_the_same_call_delivered_three_times_is_one_call_updated_in_place(fake, redis_client):
    fake.add_contact(email="john@example.com")
    connector = make_connector(fake, redis_client)

    first = connector.deliver(make_delivery(connector))
    connector.deliver(make_delivery(connector))
    third = connector.deliver(make_delivery(connector, summary="Corrected summary after a replay."))

    call_id, props = only(fake, "calls")
    assert first.records["call"] == third.records["call"] == call_id
    assert "Corrected summary after a replay." in props["hs_call_body"]
    assert creates(fake) == 1
    assert fake.requests["PATCH /crm/v3/objects/calls/{id}"] == 2
    assert searches(fake, "calls") == 0  # the ledger answered: no search before create or update


def test_ten_threads_delivering_the_same_call_at_once_create_one_call(fake, redis_client):
    fake.add_contact(email="john@example.com")
    connector = make_connector(fake, redis_client)  # one connector object, shared by the threads like a worker's

    def deliver_until_done(_: int) -> str:
        deadline = time.monotonic() + 30
        while True:
            try:
                return connector.deliver(make_delivery(connector)).records["call"]
            except RetryableError:  # another thread is creating it right now: the queue would retry
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    with ThreadPoolExecutor(10) as pool:
        ids = set(pool.map(deliver_until_done, range(10)))

    call_id, _ = only(fake, "calls")
    assert ids == {call_id}
    assert creates(fake) == 1


def test_a_follow_up_task_is_created_once_when_next_steps_remain_and_goals_are_not_met(fake, redis_client):
    contact = fake.add_contact(email="john@example.com")
    connector = make_connector(fake, redis_client, owner_map={"Support Agent": "7001"})
    pending = analysis(goals_met=False, next_steps="Send the return label by Friday.")

    first = connector.deliver(make_delivery(connector, post_call_analysis=pending))
    again = connector.deliver(make_delivery(connector, post_call_analysis=pending))

    task_id, task = only(fake, "tasks")
    assert first.records["follow_up"] == again.records["follow_up"] == task_id
    assert task["hs_task_subject"] == "Follow up with John Doe"
    assert "Send the return label by Friday." in task["hs_task_body"]
    assert task["hs_timestamp"] == "2026-03-26T00:00:00.000Z"  # two days after the call ended
    assert task["hs_task_status"] == "NOT_STARTED"
    assert task["hs_task_type"] == "CALL"
    assert task["hubspot_owner_id"] == "7001"
    assert task[CALL_ID_PROPERTY] == f"{SESSION}:follow_up"
    assert association_types(fake, "tasks", task_id, "contacts") == {contact: 204}
    assert creates(fake, "tasks") == 1


def test_no_follow_up_task_is_written_when_the_goals_were_met(fake, redis_client):
    connector = make_connector(fake, redis_client)
    result = connector.deliver(make_delivery(connector, post_call_analysis=analysis(goals_met=True)))
    assert "follow_up" not in result.records
    assert fake.count("tasks") == 0


def test_a_replay_does_not_reopen_a_follow_up_task_the_rep_completed(fake, redis_client):
    connector = make_connector(fake, redis_client)
    pending = analysis(goals_met=False)
    task_id = connector.deliver(make_delivery(connector, post_call_analysis=pending)).records["follow_up"]
    with fake.lock:
        fake.objects["tasks"][task_id]["properties"]["hs_task_status"] = "COMPLETED"

    connector.deliver(make_delivery(connector, post_call_analysis=pending, summary="Replayed."))

    assert fake.properties_of("tasks", task_id)["hs_task_status"] == "COMPLETED"
    assert fake.requests["PATCH /crm/v3/objects/tasks/{id}"] == 1


def test_a_recording_url_that_is_not_https_is_omitted_with_a_note_and_a_warning(fake, redis_client, caplog):
    connector = make_connector(fake, redis_client)
    url = "http://storage.example.com/rec/1.mp3?signature=s3cr3t"

    with caplog.at_level(logging.WARNING):
        result = connector.deliver(make_delivery(connector, recording_url=url))

    _, props = only(fake, "calls")
    assert "hs_call_recording_url" not in props
    assert result.notes == [
        "hs_call_recording_url omitted: HubSpot plays only https recordings (got http://storage.example.com)"
    ]
    assert "hs_call_recording_url omitted" in caplog.text
    assert "s3cr3t" not in caplog.text


def test_text_longer_than_hubspots_limit_is_truncated_with_a_marker_and_a_note(fake, redis_client):
    connector = make_connector(fake, redis_client)
    result = connector.deliver(make_delivery(connector, summary="x" * 70_000))
    _, props = only(fake, "calls")
    assert len(props["hs_call_body"]) == 65_536
    assert props["hs_call_body"].endswith(TRUNCATION_MARKER)
    assert any("hs_call_body" in note and "truncated" in note for note in result.notes)


def test_the_owner_comes_from_owner_map_and_falls_back_to_the_default_owner(fake, redis_client):
    connector = make_connector(fake, redis_client, owner_map={"Support Agent": 7001}, default_owner_id="7002")
    mapped = connector.deliver(make_delivery(connector))
    fallback = connector.deliver(make_delivery(connector, call_session_id="other-agent", agent_name="Night Shift"))
    assert fake.properties_of("calls", mapped.records["call"])["hubspot_owner_id"] == "7001"
    assert fake.properties_of("calls", fallback.records["call"])["hubspot_owner_id"] == "7002"


def test_a_replay_after_the_contact_appeared_links_the_existing_call_to_it(fake, redis_client):
    # Given a call first logged without a contact
    connector = make_connector(fake, redis_client, lookup_cache_seconds=0)
    first = connector.deliver(make_delivery(connector))
    assert first.match == "none (on_missing=unassociated)"
    call_id = first.records["call"]
    assert fake.associated_ids("calls", call_id, "contacts") == []

    # When the contact exists by the time the call is replayed
    contact = fake.add_contact(email="john@example.com")
    replay = connector.deliver(make_delivery(connector))

    # Then the same call is updated and now linked to the contact
    assert replay.records == {"call": call_id, "contact": contact}
    assert fake.associated_ids("calls", call_id, "contacts") == [contact]
    assert creates(fake) == 1
    assert fake.requests["PUT /crm/v4/objects/calls/{id}/associations/default/contacts/{id}"] == 1

    # And a further replay does not associate again
    connector.deliver(make_delivery(connector))
    assert fake.requests["PUT /crm/v4/objects/calls/{id}/associations/default/contacts/{id}"] == 1


def test_the_primary_company_and_the_newest_open_deal_are_associated_when_configured(fake, redis_client):
    company = fake.add_company(name="Acme")
    contact = fake.add_contact(email="john@example.com", associatedcompanyid=company)
    older_open = fake.add_deal(dealname="Old open", dealstage="appointmentscheduled", createdate="2026-01-01T00:00:00Z")
    newer_open = fake.add_deal(dealname="New open", dealstage="qualifiedtobuy", createdate="2026-02-01T00:00:00Z")
    newest_won = fake.add_deal(dealname="Won", dealstage="closedwon", createdate="2026-03-01T00:00:00Z")
    for deal in (older_open, newer_open, newest_won):
        fake.associate("deals", deal, "contacts", contact)
    connector = make_connector(fake, redis_client, associate={"company": True, "deal": True})

    result = connector.deliver(make_delivery(connector))

    call_id = result.records["call"]
    assert association_types(fake, "calls", call_id, "companies") == {company: 182}
    assert association_types(fake, "calls", call_id, "deals") == {newer_open: 206}


def test_companies_and_deals_are_not_associated_by_default(fake, redis_client):
    company = fake.add_company(name="Acme")
    contact = fake.add_contact(email="john@example.com", associatedcompanyid=company)
    deal = fake.add_deal(dealname="Open", dealstage="qualifiedtobuy")
    fake.associate("deals", deal, "contacts", contact)
    connector = make_connector(fake, redis_client)

    call_id = connector.deliver(make_delivery(connector)).records["call"]

    assert fake.associated_ids("calls", call_id, "companies") == []
    assert fake.associated_ids("calls", call_id, "deals") == []
    assert searches(fake, "deals") == 0


def test_a_date_versioned_objects_path_is_used_for_every_request(redis_client):
    with running_fake(objects_path="/crm/objects/2026-03", define_call_id=False) as fake:
        fake.add_contact(email="john@example.com")
        connector = make_connector(fake, redis_client, objects_path="/crm/objects/2026-03")
        connector.setup()
        connector.deliver(make_delivery(connector))
    assert fake.count("calls") == 1
    assert set(fake.requests) == {
        "GET /crm/properties/2026-03/calls",
        "POST /crm/properties/2026-03/calls",
        "GET /crm/properties/2026-03/tasks",
        "POST /crm/properties/2026-03/tasks",
        "POST /crm/objects/2026-03/contacts/search",
        "POST /crm/objects/2026-03/calls",
    }


def test_a_call_deleted_in_hubspot_is_written_anew_when_the_call_is_replayed(fake: FakeHubSpot, redis_client):
    connector = make_connector(fake, redis_client)
    first = connector.deliver(make_delivery(connector))
    with fake.lock:
        del fake.objects["calls"][first.records["call"]]

    replay = connector.deliver(make_delivery(connector))

    new_id, props = only(fake, "calls")
    assert replay.records["call"] == new_id != first.records["call"]
    assert props[CALL_ID_PROPERTY] == SESSION
