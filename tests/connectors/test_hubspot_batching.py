"""HubSpot connector with batching: concurrent deliveries share batch requests, each keeps its own outcome.

Every test drives one connector object from many threads at once, as a worker does, against the
FakeHubSpot over real HTTP and a real Redis. A longer linger than the default makes "at once" certain.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from bridge.errors import DeferredError, PermanentError, RetryableError
from tests.conftest import make_delivery
from tests.connectors.hubspot_support import (
    CALL_ID_PROPERTY,
    MAPPINGS,
    TEN_SECONDLY,
    analysis,
    batch_requests,
    concurrently,
    creates,
    make_connector,
    person,
    searches,
    together,
)
from tests.fakes.httpserver import Fault

pytest_plugins = ("tests.connectors.hubspot_support",)  # fixtures: fake

BATCH_CREATE = "/crm/v3/objects/calls/batch/create"


def seed_people(fake, count):
    return [fake.add_contact(email=person(i)["caller_email"], phone=person(i)["phone"]) for i in range(count)]


def deliveries(connector, count, prefix="call", **data):
    return [make_delivery(connector, call_session_id=f"{prefix}-{i:02d}", **person(i), **data) for i in range(count)]


def calls_by_call_id(fake):
    """call id -> HubSpot id of every call the bridge wrote (seeded calls carry no call id)."""
    with fake.lock:
        calls = list(fake.objects["calls"].values())
    return {c["properties"][CALL_ID_PROPERTY]: c["id"] for c in calls if CALL_ID_PROPERTY in c["properties"]}


def mapping_with(tmp_path, line):
    path = tmp_path / "mapping.yaml"
    text = (MAPPINGS / "hubspot_call.yaml").read_text()
    path.write_text(text.replace("\nfields:\n", f"\nfields:\n  {line}\n", 1))
    return path


def intent_marker(redis_client, call_id):
    return redis_client.hget(f"agni:hubspot:hs:ledger:call:{call_id}", "intent")


def test_concurrent_calls_share_one_search_and_one_batch_create_and_each_gets_its_own_call(fake, redis_client):
    # Given 40 callers who are contacts in HubSpot
    contacts = seed_people(fake, 40)
    connector = make_connector(fake, redis_client, **together(40))

    # When 40 of their calls are delivered at the same moment
    results = concurrently(connector.deliver, deliveries(connector, 40))

    # Then each delivery reports its own call, on its own contact, written by one batch request
    stored = calls_by_call_id(fake)
    assert len(stored) == 40
    for i, result in enumerate(results):
        assert result.records == {"call": stored[f"call-{i:02d}"], "contact": contacts[i]}
        assert result.match == f"contact {contacts[i]} by email"
        assert fake.associated_ids("calls", result.records["call"], "contacts") == [contacts[i]]
    assert batch_requests(fake, "create") == 1
    assert creates(fake) == 0
    assert searches(fake) == 1
    assert fake.total_requests == 2


def test_a_lone_call_at_a_quiet_moment_goes_out_at_once_as_a_single_create(fake, redis_client):
    fake.add_contact(email="john@example.com")
    # A batch window of a full second: a call that waited for it would take two (lookup, then create).
    connector = make_connector(fake, redis_client, batch_max_wait_seconds=1)
    connector.deliver(make_delivery(connector, call_session_id="warm-up"))  # first connection, batcher threads

    started = time.monotonic()
    connector.deliver(make_delivery(connector))

    assert time.monotonic() - started < 1.0  # two short lingers (lookup, create), no fixed window
    assert creates(fake) == 2
    assert batch_requests(fake, "create") == 0


class ReshapedResults(httpx.BaseTransport):
    """HubSpot does not promise batch results in input order: hand them back reversed (and, optionally,
    without the call-id property, as if HubSpot echoed only its own properties)."""

    def __init__(self, *, hide_call_id: bool = False) -> None:
        self.inner = httpx.HTTPTransport()
        self.hide_call_id = hide_call_id

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not request.url.path.endswith("/batch/create"):
            return response
        body = json.loads(response.read())
        body["results"].reverse()
        for result in body["results"] if self.hide_call_id else []:
            del result["properties"][CALL_ID_PROPERTY]
        return httpx.Response(response.status_code, json=body)


@pytest.mark.parametrize("hide_call_id", [False, True], ids=["echoed", "read-back"])
def test_batch_results_in_another_order_are_attributed_by_the_call_id_they_carry(fake, redis_client, hide_call_id):
    contacts = seed_people(fake, 12)
    connector = make_connector(fake, redis_client, transport=ReshapedResults(hide_call_id=hide_call_id), **together(12))

    results = concurrently(connector.deliver, deliveries(connector, 12))

    stored = calls_by_call_id(fake)
    assert [r.records["call"] for r in results] == [stored[f"call-{i:02d}"] for i in range(12)]
    for i, result in enumerate(results):
        assert fake.associated_ids("calls", result.records["call"], "contacts") == [contacts[i]]
    assert batch_requests(fake, "create") == 1
    assert batch_requests(fake, "read") == (1 if hide_call_id else 0)  # one read-back covers the whole batch
    # The ledger holds the right ids too: a replay updates each call in place.
    replays = concurrently(connector.deliver, deliveries(connector, 12, summary="Replayed."))
    assert [r.records["call"] for r in replays] == [stored[f"call-{i:02d}"] for i in range(12)]
    assert fake.count("calls") == 12


def test_an_input_hubspot_rejects_inside_a_207_fails_only_its_own_call_with_hubspots_message(
    fake, redis_client, tmp_path
):
    # Given a unique call property, and one call whose value is already taken in HubSpot
    fake.define_property("calls", "agni_ref", unique=True)
    taken = fake.add_object("calls", hs_timestamp="2026-01-01T00:00:00Z", agni_ref="ref-taken")
    connector = make_connector(
        fake, redis_client, mapping=mapping_with(tmp_path, 'agni_ref: "{{ call.contact_id }}"'), **together(10)
    )
    batch = [
        make_delivery(connector, call_session_id=f"call-{i:02d}", contact_id=f"ref-{i}", caller_email=None)
        for i in range(10)
    ]
    batch[3] = make_delivery(connector, call_session_id="call-03", contact_id="ref-taken", caller_email=None)

    # When all ten are delivered at once
    results = concurrently(connector.deliver, batch)

    # Then only that call fails, permanently, with HubSpot's own message; the other nine landed
    error = results[3]
    assert isinstance(error, PermanentError)
    assert error.status == 409
    assert error.code == "CONFLICT"
    assert f'ref-taken already has a value for unique property "agni_ref" on object {taken}' in error.message
    assert [i for i, r in enumerate(results) if isinstance(r, Exception)] == [3]
    assert sorted(calls_by_call_id(fake)) == sorted(f"call-{i:02d}" for i in range(10) if i != 3)
    assert batch_requests(fake, "create") == 1
    assert creates(fake) == 0  # one error, one missing input: they pair up without asking again
    assert intent_marker(redis_client, "call-03") is None  # refused for sure: the retry may create straight away


def test_several_errors_a_207_does_not_attribute_are_told_apart_by_retrying_those_inputs_alone(
    fake, redis_client, tmp_path
):
    fake.define_property("calls", "agni_ref", unique=True)
    for ref in ("ref-a", "ref-b"):
        fake.add_object("calls", hs_timestamp="2026-01-01T00:00:00Z", agni_ref=ref)
    connector = make_connector(
        fake, redis_client, mapping=mapping_with(tmp_path, 'agni_ref: "{{ call.contact_id }}"'), **together(6)
    )
    refs = ["ref-0", "ref-a", "ref-2", "ref-3", "ref-b", "ref-5"]
    batch = [
        make_delivery(connector, call_session_id=f"call-{i:02d}", contact_id=ref, caller_email=None)
        for i, ref in enumerate(refs)
    ]

    results = concurrently(connector.deliver, batch)

    failed = {i: r for i, r in enumerate(results) if isinstance(r, Exception)}
    assert sorted(failed) == [1, 4]
    assert 'ref-a already has a value for unique property "agni_ref"' in failed[1].message
    assert 'ref-b already has a value for unique property "agni_ref"' in failed[4].message
    assert all(isinstance(e, PermanentError) and e.status == 409 for e in failed.values())
    assert fake.count("calls") == 2 + 4
    assert batch_requests(fake, "create") == 1
    assert creates(fake) == 2  # only the two failed inputs were asked about again


def test_one_input_that_makes_hubspot_refuse_the_whole_batch_is_found_by_splitting_it(fake, redis_client, tmp_path):
    # Given an enumeration property and one call whose value is not an option: HubSpot refuses the whole batch
    fake.define_property("calls", "agni_channel", type_="enumeration", field_type="select", options=("voice",))
    connector = make_connector(
        fake, redis_client, mapping=mapping_with(tmp_path, 'agni_channel: "{{ call.channel }}"'), **together(16)
    )
    batch = deliveries(connector, 16)
    batch[11] = make_delivery(connector, call_session_id="call-11", channel="carrier-pigeon", **person(11))

    results = concurrently(connector.deliver, batch)

    error = results[11]
    assert isinstance(error, PermanentError)
    assert error.status == 400
    assert "carrier-pigeon was not one of the allowed options" in error.message
    assert error.details["correlationId"]
    assert [i for i, r in enumerate(results) if isinstance(r, Exception)] == [11]
    assert fake.count("calls") == 15
    # Halving 16 inputs down to the bad one: 1 + 2 + 2 + 2 batch requests and 2 single creates at most.
    assert batch_requests(fake, "create") + creates(fake) <= 9
    assert intent_marker(redis_client, "call-11") is None


def test_a_cached_contact_deleted_since_costs_only_its_own_call_a_fresh_lookup_inside_a_batch(fake, redis_client):
    # Given ten callers the lookup cache knows, one of whom HubSpot has since deleted and re-created (a merge)
    contacts = seed_people(fake, 10)
    connector = make_connector(fake, redis_client, **together(10))
    concurrently(connector.deliver, deliveries(connector, 10, prefix="before"))
    with fake.lock:
        del fake.objects["contacts"][contacts[4]]
        fake.associations = [a for a in fake.associations if contacts[4] not in (a.from_id, a.to_id)]
    merged = fake.add_contact(email=person(4)["caller_email"], phone=person(4)["phone"])
    searched = searches(fake)

    # When their next calls go out together, HubSpot refuses the batch for that one stale association
    results = concurrently(connector.deliver, deliveries(connector, 10, prefix="after"))

    # Then that call was looked up afresh and linked to the contact that exists; the others kept their cache
    assert [r.records["contact"] for r in results] == [*contacts[:4], merged, *contacts[5:]]
    assert fake.associated_ids("calls", results[4].records["call"], "contacts") == [merged]
    assert searches(fake) == searched + 1
    assert len(calls_by_call_id(fake)) == 20


def test_a_batch_whose_answer_is_lost_is_found_and_updated_by_the_retries_not_created_twice(fake, redis_client):
    seed_people(fake, 8)
    connector = make_connector(fake, redis_client, **together(8))
    fake.faults.add(Fault(status=503, body={"message": "upstream busy"}, after_handling=True), path_prefix=BATCH_CREATE)

    # The batch landed but its answer did not: every caller hears the same transient error
    first = concurrently(connector.deliver, deliveries(connector, 8))
    assert all(isinstance(r, RetryableError) and r.status == 503 for r in first)
    assert fake.count("calls") == 8
    assert all(intent_marker(redis_client, f"call-{i:02d}") for i in range(8))  # kept: they may have landed

    # The retries see the markers, search by call id, find the calls and update them
    again = concurrently(connector.deliver, deliveries(connector, 8, summary="Retried."))

    stored = calls_by_call_id(fake)
    assert len(stored) == 8
    assert [r.records["call"] for r in again] == [stored[f"call-{i:02d}"] for i in range(8)]
    assert searches(fake, "calls") == 8  # one each: this path is unchanged, and paced at 4 searches/s
    assert batch_requests(fake, "create") == 1
    assert all("Retried." in fake.properties_of("calls", cid)["hs_call_body"] for cid in stored.values())


def test_a_429_on_a_batch_sends_every_call_back_and_the_retry_creates_them_without_searching(fake, redis_client):
    seed_people(fake, 6)
    connector = make_connector(fake, redis_client, **together(6))
    fake.faults.add(Fault(status=429, body=TEN_SECONDLY), path_prefix=BATCH_CREATE)

    first = concurrently(connector.deliver, deliveries(connector, 6))
    assert all(isinstance(r, RetryableError) and r.status == 429 and r.retry_after == 10.0 for r in first)

    concurrently(connector.deliver, deliveries(connector, 6))

    assert fake.count("calls") == 6
    assert searches(fake, "calls") == 0  # HubSpot refused the first batch: nothing could be duplicated


def test_replays_update_their_calls_through_one_batch_update(fake, redis_client):
    seed_people(fake, 10)
    connector = make_connector(fake, redis_client, **together(10))
    originals = concurrently(connector.deliver, deliveries(connector, 10))

    replays = concurrently(connector.deliver, deliveries(connector, 10, summary="Corrected after a replay."))

    assert [r.records for r in replays] == [r.records for r in originals]
    assert fake.count("calls") == 10
    assert batch_requests(fake, "update") == 1
    assert fake.requests["PATCH /crm/v3/objects/calls/{id}"] == 0
    for result in replays:
        assert "Corrected after a replay." in fake.properties_of("calls", result.records["call"])["hs_call_body"]


def test_a_call_deleted_in_hubspot_is_written_anew_when_its_batched_update_finds_it_gone(fake, redis_client):
    seed_people(fake, 5)
    connector = make_connector(fake, redis_client, **together(5))
    originals = concurrently(connector.deliver, deliveries(connector, 5))
    gone = originals[2].records["call"]
    with fake.lock:
        del fake.objects["calls"][gone]

    replays = concurrently(connector.deliver, deliveries(connector, 5))

    stored = calls_by_call_id(fake)
    assert len(stored) == 5
    assert replays[2].records["call"] == stored["call-02"] != gone
    assert [r.records["call"] for i, r in enumerate(replays) if i != 2] == [
        o.records["call"] for i, o in enumerate(originals) if i != 2
    ]


def test_follow_up_tasks_are_created_by_one_batch_and_only_once(fake, redis_client):
    contacts = seed_people(fake, 10)
    connector = make_connector(fake, redis_client, **together(10))
    pending = analysis(goals_met=False, next_steps="Send the return label.")

    first = concurrently(connector.deliver, deliveries(connector, 10, post_call_analysis=pending))
    with fake.lock:
        fake.objects["tasks"][first[0].records["follow_up"]]["properties"]["hs_task_status"] = "COMPLETED"
    again = concurrently(connector.deliver, deliveries(connector, 10, post_call_analysis=pending))

    assert fake.count("tasks") == 10
    assert batch_requests(fake, "create", "tasks") == 1
    assert batch_requests(fake, "update", "tasks") == 1
    for i, (result, replay) in enumerate(zip(first, again, strict=True)):
        task_id = result.records["follow_up"]
        assert replay.records["follow_up"] == task_id
        task = fake.properties_of("tasks", task_id)
        assert task[CALL_ID_PROPERTY] == f"call-{i:02d}:follow_up"
        assert fake.associated_ids("tasks", task_id, "contacts") == [contacts[i]]
    # The replay did not reopen the task the rep completed.
    assert fake.properties_of("tasks", first[0].records["follow_up"])["hs_task_status"] == "COMPLETED"


def test_the_same_call_delivered_several_times_at_once_among_others_is_created_once(fake, redis_client):
    seed_people(fake, 10)
    connector = make_connector(fake, redis_client, **together(10))
    batch = deliveries(connector, 10) + [make_delivery(connector, call_session_id="call-03", **person(3))] * 3

    def deliver_until_done(delivery):
        deadline = time.monotonic() + 30
        while True:
            try:
                return connector.deliver(delivery).records["call"]
            except DeferredError:  # another thread holds the call's marker: the queue would retry later
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    ids = concurrently(deliver_until_done, batch)

    stored = calls_by_call_id(fake)
    assert len(stored) == 10
    assert ids[3] == ids[10] == ids[11] == ids[12] == stored["call-03"]


def test_batch_size_1_keeps_the_single_object_path(fake, redis_client):
    contacts = seed_people(fake, 6)
    connector = make_connector(fake, redis_client, batch_size=1)

    results = concurrently(connector.deliver, deliveries(connector, 6))
    concurrently(connector.deliver, deliveries(connector, 6, summary="Replayed."))

    assert [r.records["contact"] for r in results] == contacts
    assert fake.count("calls") == 6
    assert creates(fake) == 6
    assert fake.requests["PATCH /crm/v3/objects/calls/{id}"] == 6
    assert searches(fake) == 6  # one search per call: lookups are not shared either
    assert not any("/batch/" in key for key in fake.requests)
    assert connector._stores().writer is None
