"""Zendesk connector: what a call becomes — the ticket, its voice comment, requester, owner, follow-up task."""

from __future__ import annotations

import pytest

from tests.conftest import make_delivery
from tests.connectors import zendesk_support
from tests.connectors.zendesk_support import (
    MAPPINGS,
    PENDING,
    SESSION,
    analysis,
    make_connector,
    posts,
    searches,
)

fake, seeded = zendesk_support.fake, zendesk_support.seeded  # the fixtures


def test_the_seed_call_lands_once_as_a_ticket_with_every_field(fake, seeded, redis_client):
    # Given the example caller as an end-user and the call's agent mapped to a Zendesk agent
    connector = make_connector(fake, redis_client, owner_map={"Support Agent": seeded.agent})

    # When the example webhook is delivered
    result = connector.deliver(make_delivery(connector))

    # Then one ticket holds every mapped field, requested by the caller, assigned to the agent
    ticket = fake.only_ticket(SESSION)
    assert result.records == {"ticket": str(ticket["id"]), "requester": str(seeded.john)}
    assert result.match == f"end-user {seeded.john} by email"
    assert ticket["subject"] == "Call with John Doe (Support Agent)"
    assert ticket["requester_id"] == seeded.john
    assert ticket["assignee_id"] == seeded.agent
    assert ticket["status"] == "open"
    assert ticket["tags"] == [
        "agni_call", "agni_completed", "agni_outbound", "sentiment_positive", "disposition_issue_resolved"
    ]  # fmt: skip
    [voice] = fake.comments_of(ticket["id"])
    assert voice["type"] == "VoiceComment"
    data = voice["data"]
    assert data["from"] == "+18881234567"
    assert data["to"] == "+14155550100"
    assert data["recording_url"] == "https://storage.agniai.com/rec/019d2b3c-8e9f.mp3"
    assert data["started_at"] == "2026-03-24T18:30:00.000Z"
    assert data["call_duration"] == 125  # seconds, as Zendesk wants them
    assert data["answered_by_id"] == seeded.agent
    assert data["transcription_text"].startswith("Summary: Customer called about their order #4521.")
    assert "[00:03] Customer: Hi, I wanted to check on my order number 4521." in data["transcription_text"]
    assert "Sentiment: positive" in data["transcription_text"]
    # The example met its goals: no follow-up task, and a lone call cost one create and one search.
    assert len(fake.tickets) == 1
    assert (posts(fake), searches(fake)) == (1, 1)


def test_custom_fields_from_the_mapping_land_as_id_value_pairs(fake, seeded, redis_client, tmp_path):
    fake.add_ticket_field(360001, "tagger", ("positive", "neutral", "negative"))
    fake.add_ticket_field(360002, "integer")
    mapping = tmp_path / "custom.yaml"
    extra = (
        '  custom_fields.360001: "{{ call.post_call_analysis.sentiment }}"\n'
        '  custom_fields.360002: {value: "{{ call.duration_sec }}", type: int}\n'
        "  priority: high\n"
        "  type: incident\n"
    )
    mapping.write_text((MAPPINGS / "zendesk_ticket.yaml").read_text().replace("\nfields:\n", "\nfields:\n" + extra, 1))
    connector = make_connector(fake, redis_client, mapping=mapping)

    connector.deliver(make_delivery(connector))

    ticket = fake.only_ticket(SESSION)
    assert ticket["custom_fields"] == [{"id": 360001, "value": "positive"}, {"id": 360002, "value": 125}]
    assert (ticket["priority"], ticket["type"]) == ("high", "incident")


def test_next_steps_left_open_become_one_follow_up_task_ticket(fake, seeded, redis_client):
    connector = make_connector(fake, redis_client, owner_map={"Support Agent": seeded.agent})

    result = connector.deliver(make_delivery(connector, post_call_analysis=analysis(**PENDING)))
    connector.deliver(make_delivery(connector, post_call_analysis=analysis(**PENDING)))  # a redelivery

    call_ticket = fake.only_ticket(SESSION)
    task = fake.only_ticket(f"{SESSION}:follow_up")
    assert result.records["follow_up"] == str(task["id"])
    assert task["type"] == "task"
    assert task["due_at"] == "2026-03-26T00:00:00.000Z"  # two days after the call ended
    assert task["subject"] == "Follow up with John Doe"
    assert (task["requester_id"], task["assignee_id"]) == (seeded.john, seeded.agent)
    assert "agni_follow_up" in task["tags"]
    [comment] = fake.comments_of(task["id"])
    assert comment["public"] is False
    assert comment["body"].startswith("Send the quote by Friday.")
    assert comment["body"].endswith(f"Call ticket: #{call_ticket['id']}")
    assert len(fake.tickets) == 2
    assert posts(fake) == 2


def test_on_missing_create_makes_one_end_user_from_the_caller_and_reuses_it(fake, redis_client):
    connector = make_connector(fake, redis_client)  # on_missing: create is the default

    first = connector.deliver(make_delivery(connector))
    second = connector.deliver(make_delivery(connector, call_session_id="another-call"))

    user = fake.user_by_email("john@example.com")
    assert user is not None
    assert (user["name"], user["phone"], user["role"]) == ("John Doe", "+14155550100", "end-user")
    assert user["external_id"] is None  # keyed by the email; a customer's own external_id is never written
    assert first.match == f"end-user {user['id']} created (on_missing=create)"
    assert fake.only_ticket(SESSION)["requester_id"] == user["id"]
    assert fake.only_ticket("another-call")["requester_id"] == user["id"]
    assert second.match == f"end-user {user['id']} by email"  # from the cache: search lags behind the create
    assert posts(fake, "/api/v2/users/create_or_update") == 1
    assert len(fake.users) == 2  # the API user and John


def test_a_caller_with_only_a_number_is_created_under_the_bridges_external_id(fake, redis_client):
    connector = make_connector(fake, redis_client)

    connector.deliver(make_delivery(connector, caller_email=None, caller_name=None))

    [user] = [u for u in fake.users.values() if u["id"] != fake.agent_id]
    assert user["external_id"] == "agni-phone:+14155550100"
    assert (user["name"], user["phone"]) == ("Caller +14155550100", "+14155550100")
    assert fake.only_ticket(SESSION)["requester_id"] == user["id"]


def test_on_missing_fallback_uses_the_configured_requester_and_creates_nobody(fake, redis_client):
    unknown = fake.add_user("Unknown caller", email="unknown-caller@acme.test")
    connector = make_connector(fake, redis_client, match={"on_missing": "fallback", "fallback_requester_id": unknown})

    result = connector.deliver(make_delivery(connector))

    assert fake.only_ticket(SESSION)["requester_id"] == unknown
    assert result.match == f"fallback requester {unknown} (on_missing=fallback)"
    assert posts(fake, "/api/v2/users/create_or_update") == 0


def test_on_missing_skip_writes_nothing_and_says_why(fake, redis_client):
    connector = make_connector(fake, redis_client, match={"on_missing": "skip"})

    result = connector.deliver(make_delivery(connector))

    assert result.skipped == "no end-user matched (on_missing=skip)"
    assert result.records == {}
    assert fake.tickets == {}


def test_a_call_without_email_or_number_falls_back_or_is_skipped(fake, redis_client):
    anonymous = {"caller_email": None, "phone": None, "caller_number": None}
    connector = make_connector(fake, redis_client)
    skipped = connector.deliver(make_delivery(connector, **anonymous))
    assert skipped.skipped == "no end-user matched and no email or phone to create one from"
    assert fake.tickets == {}

    unknown = fake.add_user("Unknown caller")
    fallback = make_connector(fake, redis_client, match={"fallback_requester_id": unknown})
    fallback.deliver(make_delivery(fallback, **anonymous))
    assert fake.only_ticket(SESSION)["requester_id"] == unknown


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"recording_url": "http://storage.agniai.com/rec/1.mp3?sig=secret"}, "the recording link is not https"),
        ({"recording_url": None}, "Zendesk needs recording_url for a voice comment"),
        ({"channel": "web", "caller_number": None, "callee_number": None}, "Zendesk needs from, to"),
    ],
)
def test_a_call_zendesk_cannot_play_gets_a_private_comment_with_the_same_facts(
    fake, seeded, redis_client, changes, why
):
    connector = make_connector(fake, redis_client)

    result = connector.deliver(make_delivery(connector, **changes))

    [comment] = fake.comments_of(fake.only_ticket(SESSION)["id"])
    assert comment["type"] == "Comment"
    assert comment["public"] is False
    assert "Duration: 125 s" in comment["body"]
    assert "Summary: Customer called about their order #4521." in comment["body"]
    assert "secret" not in comment["body"] and "http://" not in comment["body"]
    assert any(why in note for note in result.notes)


def test_the_owner_comes_from_the_agent_name_or_email_then_the_default(fake, seeded, redis_client):
    other = fake.add_user("Other Agent", email="other@acme.test", role="agent")
    by_email = make_connector(fake, redis_client, owner_map={"ann@acme.test": seeded.agent}, default_owner_id=other)
    by_email.deliver(make_delivery(by_email, call_session_id="c1", agent_email="Ann@acme.test"))
    by_email.deliver(make_delivery(by_email, call_session_id="c2", agent_name="Someone Else"))

    assert fake.only_ticket("c1")["assignee_id"] == seeded.agent
    assert fake.only_ticket("c2")["assignee_id"] == other
    unassigned = make_connector(fake, redis_client, name="plain")
    unassigned.deliver(make_delivery(unassigned, call_session_id="c3"))
    assert fake.only_ticket("c3")["assignee_id"] is None
    assert "answered_by_id" not in fake.comments_of(fake.only_ticket("c3")["id"])[0]["data"]


def test_an_oauth_token_works_as_well_as_an_api_token(fake, seeded, redis_client):
    connector = make_connector(fake, redis_client, auth={"oauth_token": fake.oauth_token})
    connector.deliver(make_delivery(connector))
    assert fake.only_ticket(SESSION)["requester_id"] == seeded.john


def test_a_number_zendesk_says_another_user_holds_is_left_off_the_new_end_user(fake, redis_client):
    # Someone holds the number, but the users search index does not show them yet (it lags behind writes).
    holder = fake.add_user("Jane", phone="+14155550100", searchable=False)
    connector = make_connector(fake, redis_client)

    result = connector.deliver(make_delivery(connector))

    created = fake.user_by_email("john@example.com")
    assert created is not None and created["id"] != holder
    assert created["phone"] is None
    assert fake.only_ticket(SESSION)["requester_id"] == created["id"]
    assert "the caller's number belongs to another Zendesk user; the new end-user was created without it" in (
        result.notes
    )
    assert posts(fake, "/api/v2/users/create_or_update") == 2
