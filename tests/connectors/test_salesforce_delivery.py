"""The Salesforce connector writes each call as one completed call Task, idempotently, with every mapped field.

Real simple-salesforce over real TLS against the fake org (tests/fakes/salesforce.py).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from bridge.errors import PermanentError
from tests.fakes.httpserver import Fault

pytest_plugins = ("tests.connectors.salesforce_support",)  # fixtures: pki, org, salesforce, recordings

EXT = "Agni_Call_Session_Id__c"
CALL_ID = "019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d"  # the example payload's call_session_id
OPEN_NEXT_STEPS = {
    "sentiment": "neutral",
    "disposition": "callback_requested",
    "goals_met": False,
    "next_steps": "Send the pricing sheet and call back on Friday.",
}


def test_a_seed_call_becomes_one_completed_call_task_with_every_mapped_field_on_the_matched_contact(salesforce, org):
    # Given a Contact with the caller's email, at an Account
    account_id = org.add_account(Name="Acme")
    contact_id = org.add_contact(FirstName="John", LastName="Doe", Email="john@example.com", AccountId=account_id)
    connector = salesforce.connector()
    delivery = salesforce.delivery(connector)

    # When the example call is delivered
    result = connector.deliver(delivery)

    # Then exactly one Task exists, linked to the Contact and its Account, with every mapped field as rendered
    [task] = org.tasks
    assert result.records == {"Task": task["Id"]}
    assert result.match == f"Contact {contact_id} by email"
    for name, value in delivery.record.items():
        assert task[name] == value, name
    assert task[EXT] == CALL_ID
    assert task["TaskSubtype"] == "Call" and task["Status"] == "Completed" and task["IsClosed"] is True
    assert task["Subject"] == "Call with John Doe"
    assert task["CallType"] == "Outbound"  # Agni's `phone` is the callee: we called them
    assert task["CallDurationInSeconds"] == 125
    assert task["CallDisposition"] == "Resolved"  # issue_resolved through the mapping's value map
    assert task["ActivityDate"] == "2026-03-24"
    assert (task["WhoId"], task["WhatId"]) == (contact_id, account_id)
    assert task["OwnerId"] == org.default_user_id  # the Contact's owner, as nothing else is configured
    description = task["Description"]
    assert description.startswith("Customer called about their order #4521.")
    assert "Next steps: No follow-up needed." in description
    assert "Recording: https://storage.agniai.com/rec/019d2b3c-8e9f.mp3" in description
    assert "[00:03] Customer: Hi, I wanted to check on my order number 4521." in description


def test_the_same_call_delivered_three_times_updates_one_task_and_keeps_it_a_call(salesforce, org):
    connector = salesforce.connector()
    first = salesforce.deliver(connector)
    salesforce.deliver(connector)
    third = salesforce.deliver(connector, summary="Updated summary after a replay.")

    assert org.count("Task") == 1
    [task] = org.tasks
    assert first.records["Task"] == third.records["Task"] == task["Id"]
    assert task["TaskSubtype"] == "Call"  # create-only: set once, left out of the updates
    assert task["Description"].startswith("Updated summary after a replay.")


def test_ten_threads_delivering_the_same_call_at_once_leave_one_task(salesforce, org):
    connector = salesforce.connector()
    barrier = threading.Barrier(10)
    delivery = salesforce.delivery(connector)

    def run(_: int) -> str:
        barrier.wait()
        return connector.deliver(delivery).records["Task"]

    with ThreadPoolExecutor(10) as pool:
        ids = set(pool.map(run, range(10)))

    assert org.count("Task") == 1
    assert ids == {org.tasks[0]["Id"]}


def test_a_follow_up_task_is_created_once_when_next_steps_remain_and_goals_are_not_met(salesforce, org):
    contact_id = org.add_contact(Email="john@example.com")
    connector = salesforce.connector()

    results = [salesforce.deliver(connector, post_call_analysis=OPEN_NEXT_STEPS) for _ in range(2)]

    assert org.count("Task") == 2
    call_task, follow_up = org.find("Task", **{EXT: CALL_ID})[0], org.find("Task", **{EXT: f"{CALL_ID}:follow_up"})[0]
    assert results[0].records == results[1].records == {"Task": call_task["Id"], "follow_up": follow_up["Id"]}
    assert follow_up["Status"] == "Not Started" and follow_up["IsClosed"] is False
    assert follow_up["TaskSubtype"] == "Task"
    assert follow_up["ActivityDate"] == "2026-03-26"  # the call's date + due_in_days (2)
    assert follow_up["Subject"] == "Follow up: John Doe"
    assert follow_up["Description"].startswith("Send the pricing sheet and call back on Friday.")
    assert (follow_up["WhoId"], follow_up["OwnerId"]) == (contact_id, call_task["OwnerId"])


def test_no_follow_up_task_is_created_when_the_goals_were_met(salesforce, org):
    result = salesforce.deliver(salesforce.connector())  # the example call: goals_met is true
    assert org.count("Task") == 1
    assert "follow_up" not in result.records


def test_a_description_longer_than_the_org_allows_is_cut_with_a_visible_marker_instead_of_rejected(salesforce, org):
    org.schema("Task").field("Description").length = 1000  # what this org's describe says
    connector = salesforce.connector()

    result = salesforce.deliver(connector, summary="word " * 2000)

    [task] = org.tasks
    assert len(task["Description"]) == 1000
    assert task["Description"].endswith("…(truncated)")
    [note] = result.notes
    assert note.startswith("Task.Description truncated to 1000 characters (was 1")


def test_when_describe_fails_the_default_lengths_still_keep_the_write_valid(salesforce, org):
    org.faults.add(
        Fault(status=500, body=[{"message": "boom", "errorCode": "UNKNOWN_EXCEPTION"}]),
        path_prefix="/services/data/v62.0/sobjects/Task/describe",
    )
    connector = salesforce.connector()

    salesforce.deliver(connector, summary="x" * 40000)

    [task] = org.tasks
    assert len(task["Description"]) == 32000 and task["Description"].endswith("…(truncated)")


def test_a_custom_field_in_the_mapping_is_written_without_code(salesforce, org):
    mapping = salesforce.mapping_file(
        "custom.yaml",
        'fields:\n  Subject: "Call {{ call.call_session_id }}"\n'
        '  Sentiment__c: "{{ call.post_call_analysis.sentiment }}"\n',
    )
    salesforce.deliver(salesforce.connector(mapping=mapping))
    [task] = org.tasks
    assert task["Sentiment__c"] == "positive"


def test_several_tasks_sharing_the_external_id_is_a_permanent_error_that_says_what_to_fix(salesforce, org):
    org.add_task(**{EXT: CALL_ID})
    org.add_task(**{EXT: CALL_ID})

    with pytest.raises(PermanentError) as caught:
        salesforce.deliver(salesforce.connector())

    assert caught.value.status == 300
    assert f"several Task records share external id {EXT}={CALL_ID}" in caught.value.message
    assert org.count("Task") == 2


def test_the_owner_comes_from_owner_map_then_default_owner_then_the_matched_records_owner(salesforce, org):
    rep, fallback, contact_owner = org.add_user(), org.add_user(), org.add_user()
    org.add_contact(Email="john@example.com", OwnerId=contact_owner)
    mapped = salesforce.connector(owner_map={"Support Agent": rep}, default_owner_id=fallback)

    salesforce.deliver(mapped, call_session_id="owner-1")
    salesforce.deliver(mapped, call_session_id="owner-2", agent_name="Night Shift Agent")
    salesforce.deliver(salesforce.connector(), call_session_id="owner-3")

    owners = {task[EXT]: task["OwnerId"] for task in org.tasks}
    assert owners == {"owner-1": rep, "owner-2": fallback, "owner-3": contact_owner}


def test_a_call_id_with_reserved_url_characters_is_percent_encoded_into_the_upsert_path(salesforce, org):
    salesforce.deliver(salesforce.connector(), call_session_id="odd/id with space?and#hash")
    assert [task[EXT] for task in org.tasks] == ["odd/id with space?and#hash"]
