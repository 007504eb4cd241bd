"""What the call log reads out of a payload for search, and how it groups failures."""

from __future__ import annotations

import json

from bridge.db.facts import error_group, facts_of, parse_millis
from tests.conftest import example_payload


def test_the_example_calls_facts_are_read_for_search():
    facts = facts_of(json.dumps(example_payload()).encode(), "US")
    assert (facts.phone, facts.email, facts.agent_name) == ("+14155550100", "john@example.com", "Support Agent")
    assert (facts.direction, facts.disposition, facts.sentiment, facts.duration_sec) == (
        "outbound",
        "issue_resolved",
        "positive",
        125,
    )
    assert facts.started_at == parse_millis(example_payload()["data"]["started_at"])
    assert "+14155550100" in facts.phones and facts.emails == {"john@example.com"}


def test_numbers_written_nationally_are_stored_in_e164_and_odd_values_are_left_out():
    facts = facts_of(
        json.dumps(
            example_payload(phone="(415) 555-0100", caller_email="not an email", duration_sec="long", agent_name=None)
        ).encode(),
        "US",
    )
    assert facts.phone == "+14155550100"
    assert (facts.email, facts.duration_sec, facts.agent_name) == (None, None, None)


def test_a_body_that_is_not_a_call_gives_no_facts_and_no_error():
    for body in (b"", b"{not json", b"[1, 2]", json.dumps({"data": "x"}).encode()):
        facts = facts_of(body, "US")
        assert facts.phone is None and not facts.phones


def test_failures_that_differ_only_in_ids_and_numbers_are_one_group():
    messages = [
        "HTTP 404 ENTITY_IS_DELETED: entity 00T5e00000AbCdE is deleted",
        "HTTP 404 ENTITY_IS_DELETED: entity 00T5e00000XyZwQ is deleted",
    ]
    assert len({error_group(m) for m in messages}) == 1
    assert error_group("HTTP 429: retry in 12 s") == error_group("HTTP 429: retry in 3 s")
    assert error_group("user bob@example.com has no seat") == error_group("user amy@example.org has no seat")
    assert error_group("call 019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d failed") == "call <uuid> failed"


def test_the_http_status_stays_part_of_the_group():
    assert error_group("HTTP 401: token expired") != error_group("HTTP 403: token expired")
    assert error_group("") == "(no message)"
