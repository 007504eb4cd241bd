"""Dynamics 365 connector: what lands in Dataverse for a call — every field, the note, the follow-up, the parties."""

from __future__ import annotations

import pytest

from connectors.dynamics.odata import follow_up_id, note_id, phonecall_id
from tests.conftest import example_payload

pytest_plugins = ("tests.connectors.dynamics_support",)  # fixtures: fake, dyn (connectors on it), certificate

AGENT = "11111111-2222-4333-8444-555555555555"
CALL_ID = example_payload()["data"]["call_session_id"]
LONG_TRANSCRIPT = [
    {"timestamp_ms": i * 4000, "role": "agent" if i % 2 else "user", "message": {"content": f"Sentence {i}. " * 12}}
    for i in range(40)
]


@pytest.fixture
def agent(fake):
    return fake.add("systemuser", AGENT, fullname="Sam Agent", isdisabled=False)


@pytest.fixture
def john(fake):
    return fake.add("contact", firstname="John", lastname="Doe", emailaddress1="john@example.com")


def test_the_seed_call_lands_once_as_a_completed_phone_call_with_every_mapped_field(dyn, fake, agent, john):
    # Given the example call (outbound, 125 s) from a known contact, handled by a mapped agent
    connector = dyn.connector(owner_map={"Support Agent": AGENT})

    # When it is delivered
    result = connector.deliver(dyn.delivery(connector))

    # Then one completed phone call holds every field of the mapping, linked to the contact and owned by the agent
    call = dyn.phonecall(CALL_ID)
    assert fake.count("phonecall") == 1
    assert call["activityid"] == phonecall_id(CALL_ID)
    assert call["subject"] == "Agni call with John Doe (Support Agent)"
    assert call["phonenumber"] == "+14155550100"
    assert call["directioncode"] is True  # outgoing: Agni called the customer
    assert call["actualdurationminutes"] == 3  # 125 s, rounded up
    assert call["actualstart"] == "2026-03-24T18:30:00.000Z"
    assert call["actualend"] == "2026-03-24T18:32:05.000Z"
    assert call["leftvoicemail"] is False
    assert call["category"] == "Resolved"
    assert call["description"].startswith("Customer called about their order #4521.")
    assert "Next steps: No follow-up needed." in call["description"]
    assert "Recording: https://storage.agniai.com/rec/019d2b3c-8e9f.mp3" in call["description"]
    assert "[00:03] Customer: Hi, I wanted to check on my order number 4521." in call["description"]
    assert (call["statecode"], call["statuscode"]) == (1, 2)  # Completed, Made
    assert call["_regardingobjectid_value"] == john
    assert call["_ownerid_value"] == agent
    assert sorted((p["participationtypemask"], p["entity"], p["id"]) for p in call["parties"]) == [
        (1, "systemuser", agent),  # From: the agent
        (2, "contact", john),  # To: the customer
    ]
    assert fake.count("annotation") == 0  # the description held everything
    assert fake.count("task") == 0  # goals met: no follow-up
    assert result.records == {"phonecall": phonecall_id(CALL_ID), "contact": john}
    assert result.match == f"contact {john} by email"


def test_an_incoming_call_is_from_the_customer_to_the_agent_and_closed_as_received(dyn, fake, agent, john):
    connector = dyn.connector(default_owner_id=AGENT)
    connector.deliver(dyn.delivery(connector, callee_number="+18881234567", caller_number="+14155550100"))

    call = dyn.phonecall(CALL_ID)
    assert call["directioncode"] is False
    assert (call["statecode"], call["statuscode"]) == (1, 4)  # Completed, Received
    assert sorted((p["participationtypemask"], p["entity"]) for p in call["parties"]) == [
        (1, "contact"),  # From: the customer
        (2, "systemuser"),  # To: the agent
    ]


@pytest.mark.parametrize(("seconds", "minutes"), [(0, 0), (1, 1), (40, 1), (60, 1), (61, 2), (125, 3), (3600, 60)])
def test_the_duration_is_whole_minutes_rounded_up(dyn, seconds, minutes):
    connector = dyn.connector(batch_size=1)
    connector.deliver(dyn.delivery(connector, duration_sec=seconds))
    assert dyn.phonecall(CALL_ID)["actualdurationminutes"] == minutes


def test_a_transcript_too_long_for_the_description_goes_whole_into_a_note_once(dyn, fake, john):
    connector = dyn.connector()
    delivery = dyn.delivery(connector, transcripts=LONG_TRANSCRIPT)

    first = connector.deliver(delivery)
    connector.deliver(delivery)  # a replay

    call = dyn.phonecall(CALL_ID)
    assert len(call["description"]) == 2000
    assert call["description"].endswith("…(truncated; the full text is in the note)")
    assert call["description"].startswith("Customer called about their order #4521.")  # the summary survives
    notes = fake.records("annotation")
    assert len(notes) == 1
    assert notes[0]["annotationid"] == note_id(CALL_ID)
    assert notes[0]["_objectid_value"] == call["activityid"]
    assert notes[0]["subject"] == f"Full text of the Agni call {CALL_ID}"
    assert "Sentence 39. Sentence 39." in notes[0]["notetext"]
    assert notes[0]["notetext"].startswith("Customer called about their order #4521.")
    assert first.records["note"] == note_id(CALL_ID)
    assert any("cut to 2,000" in note for note in first.notes)


def test_the_description_limit_follows_the_orgs_column_length(dyn, fake):
    # Given an org whose admin lengthened phonecall.description
    fake.store.lengths["phonecall.description"] = 100_000
    connector = dyn.connector(description_max_length=100_000)
    connector.deliver(dyn.delivery(connector, transcripts=LONG_TRANSCRIPT))
    assert "Sentence 39. Sentence 39." in dyn.phonecall(CALL_ID)["description"]
    assert fake.count("annotation") == 0


def test_a_follow_up_task_is_created_once_open_regarding_the_contact_when_goals_were_not_met(dyn, fake, agent, john):
    connector = dyn.connector(owner_map={"Support Agent": AGENT})
    pending = {
        "sentiment": "neutral",
        "disposition": "callback_requested",
        "goals_met": False,
        "next_steps": "Send the quote by Friday",
    }
    delivery = dyn.delivery(connector, post_call_analysis=pending)

    result = connector.deliver(delivery)
    connector.deliver(delivery)

    tasks = fake.records("task")
    assert len(tasks) == 1
    task = tasks[0]
    assert task["activityid"] == follow_up_id(CALL_ID) == result.records["follow_up"]
    assert task["subject"] == "Follow up with John Doe"
    assert task["description"].startswith("Send the quote by Friday")
    assert task["scheduledend"] == "2026-03-26T00:00:00.000Z"  # two days after the call
    assert task["prioritycode"] == 1
    assert (task["statecode"], task["statuscode"]) == (0, 2)  # open, not started
    assert task["_regardingobjectid_value"] == john
    assert task["_ownerid_value"] == agent


def test_an_unknown_agent_leaves_ownership_to_the_application_user(dyn, fake, john):
    connector = dyn.connector(owner_map={"Someone Else": AGENT})
    connector.deliver(dyn.delivery(connector))
    call = dyn.phonecall(CALL_ID)
    assert call["_ownerid_value"] == fake.app_user
    assert [(p["participationtypemask"], p["entity"]) for p in call["parties"]] == [(2, "contact")]


def test_the_owner_map_also_matches_the_agents_email_case_insensitively(dyn, fake, agent, john):
    connector = dyn.connector(owner_map={"SAM@acme.example": AGENT})
    connector.deliver(dyn.delivery(connector, agent_name="Sam", agent_email="sam@ACME.example"))
    assert dyn.phonecall(CALL_ID)["_ownerid_value"] == agent
