"""Pipedrive connector: finding the person (email, the spellings numbers are stored in, the newest of several),
the shared lookup cache, and the on_missing policies."""

from __future__ import annotations

import pytest

from tests.connectors.pipedrive_support import (
    JOHN_EMAIL,
    deliver,
    make_connector,
    only_call_log,
    requests_to,
)

pytest_plugins = ("tests.fakes.pipedrive_fixtures",)  # fixtures: fake

SEARCH = "/api/v2/persons/search"


def searches(fake) -> list[dict[str, str]]:
    with fake.lock:
        return [{k: v[0] for k, v in r.query.items()} for r in fake.request_log if r.path == SEARCH]


def test_an_email_match_wins_and_is_searched_exactly_by_email_alone(fake, redis_client):
    person = fake.add_person("John Doe", emails=("John@Example.com",))
    fake.add_person("Someone else", phones=("+14155550100",))  # the number belongs to another person

    result = deliver(make_connector(fake, redis_client))

    assert result.records["person"] == str(person)
    assert searches(fake) == [{"term": JOHN_EMAIL, "fields": "email", "exact_match": "true", "limit": "100"}]


@pytest.mark.parametrize("stored", ["+14155550100", "(415) 555-0100", "415.555.0100", "1-415-555-0100"])
def test_a_number_is_found_however_it_was_typed_into_pipedrive(fake, redis_client, stored):
    person = fake.add_person("John Doe", phones=(stored,))
    connector = make_connector(fake, redis_client, match={"by": ["phone"]})

    result = deliver(connector)

    assert result.records["person"] == str(person)
    assert result.match.startswith(f"person {person} by phone")
    terms = [(s["term"], s["exact_match"]) for s in searches(fake)]
    assert terms == [("+14155550100", "true"), ("4155550100", "false")]


def test_a_loose_hit_that_only_contains_the_digits_is_not_taken_for_the_caller(fake, redis_client):
    # Pipedrive's loose search returns any number containing 4155550100: these are other people's numbers.
    fake.add_person("Extension", phones=("+1 415 555 01001",))
    fake.add_person("Other country", phones=("+44 4155550100",))
    connector = make_connector(fake, redis_client, match={"by": ["phone"]})

    result = deliver(connector)

    assert "person" not in result.records
    assert result.match.startswith("none (on_missing=unlinked)")
    assert "person_id" not in only_call_log(fake)


def test_when_several_persons_hold_the_number_the_most_recently_updated_wins(fake, redis_client):
    fake.add_person("Old record", phones=("(415) 555-0100",), updated=1_700_000_000)
    newest = fake.add_person("New record", phones=("+14155550100",), updated=1_760_000_000)
    fake.add_person("Middle record", phones=("415-555-0100",), updated=1_730_000_000)
    connector = make_connector(fake, redis_client, match={"by": ["phone"]})

    result = deliver(connector)

    assert result.records["person"] == str(newest)
    assert requests_to(fake, "GET", "/api/v2/persons") == 1  # the candidates' update times, read once


def test_lookups_are_cached_so_a_second_call_from_the_same_person_does_not_search(fake, redis_client):
    fake.add_person("John Doe", emails=(JOHN_EMAIL,))
    connector = make_connector(fake, redis_client)

    deliver(connector, call_session_id="call-1")
    second = deliver(make_connector(fake, redis_client), call_session_id="call-2")  # another worker

    assert len(searches(fake)) == 1
    assert second.match.startswith("person")


def test_nobody_is_cached_too_and_the_cache_can_be_turned_off(fake, redis_client):
    cached = make_connector(fake, redis_client)
    deliver(cached, call_session_id="call-1")
    deliver(cached, call_session_id="call-2")
    assert len(searches(fake)) == 3  # email, E.164, national: once for both calls

    uncached = make_connector(fake, redis_client, name="nocache", lookup_cache_seconds=0)
    deliver(uncached, call_session_id="call-3")
    assert len(searches(fake)) == 6


def test_on_missing_unlinked_logs_the_call_without_a_person(fake, redis_client):
    result = deliver(make_connector(fake, redis_client))
    assert result.match.startswith("none (on_missing=unlinked)")
    assert "person_id" not in only_call_log(fake)


def test_on_missing_skip_writes_nothing_and_says_why(fake, redis_client):
    result = deliver(make_connector(fake, redis_client, match={"on_missing": "skip"}))
    assert result.skipped == "no person matched (on_missing=skip)"
    assert fake.live_call_logs() == []


def test_on_missing_create_person_creates_the_caller_once_for_two_calls(fake, redis_client):
    connector = make_connector(
        fake, redis_client, match={"on_missing": "create_person", "person_fields": {"visible_to": 7}}
    )

    first = deliver(connector, call_session_id="call-1")
    second = deliver(connector, call_session_id="call-2")

    [person] = fake.live_persons()
    assert person["name"] == "John Doe"
    assert person["emails"] == [{"value": JOHN_EMAIL, "primary": True, "label": "work"}]
    assert person["phones"] == [{"value": "+14155550100", "primary": True, "label": "work"}]
    assert person["visible_to"] == 7
    assert first.records["person"] == second.records["person"] == str(person["id"])
    assert first.match == f"person {person['id']} created (on_missing=create_person); owner: the token's user"
    assert {log["person_id"] for log in fake.live_call_logs()} == {person["id"]}
    assert requests_to(fake, "POST", "/api/v2/persons") == 1


def test_a_cached_person_deleted_since_is_looked_up_again_and_the_call_still_lands(fake, redis_client):
    gone = fake.add_person("John Doe", emails=(JOHN_EMAIL,))
    connector = make_connector(fake, redis_client)
    deliver(connector, call_session_id="call-1")
    fake.delete_person(gone)  # merged or deleted in Pipedrive; the cache still names it
    merged = fake.add_person("John Doe (merged)", emails=(JOHN_EMAIL,))

    result = deliver(connector, call_session_id="call-2")

    assert result.records["person"] == str(merged)
    assert {log["person_id"] for log in fake.live_call_logs()} == {gone, merged}
