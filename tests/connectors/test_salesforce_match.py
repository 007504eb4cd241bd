"""The Salesforce connector links each call to the right Contact or Lead, and does what on_missing says otherwise."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

pytest_plugins = ("tests.connectors.salesforce_support",)  # fixtures: pki, org, salesforce, recordings

EXT = "Agni_Call_Session_Id__c"
NO_EMAIL = {"caller_email": None}


def the_task(org, call_id="019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d"):
    [task] = org.find("Task", **{EXT: call_id})
    return task


def test_a_contact_with_the_callers_email_wins_over_a_lead_with_the_same_email(salesforce, org):
    org.add_lead(Email="john@example.com")
    contact_id = org.add_contact(Email="JOHN@example.com")

    result = salesforce.deliver(salesforce.connector())

    assert result.match == f"Contact {contact_id} by email"
    assert the_task(org)["WhoId"] == contact_id


def test_an_unconverted_lead_is_matched_by_email_when_no_contact_has_it(salesforce, org):
    org.add_lead(Email="john@example.com", IsConverted=True)
    lead_id = org.add_lead(Email="john@example.com")

    result = salesforce.deliver(salesforce.connector())

    assert result.match == f"Lead {lead_id} by email"
    task = the_task(org)
    assert task["WhoId"] == lead_id and task["WhatId"] is None  # a Lead has no Account to relate to


def test_match_order_can_prefer_leads(salesforce, org):
    org.add_contact(Email="john@example.com")
    lead_id = org.add_lead(Email="john@example.com")
    result = salesforce.deliver(salesforce.connector(match={"order": ["Lead", "Contact"]}))
    assert result.match == f"Lead {lead_id} by email"


def test_an_email_with_a_quote_is_escaped_in_soql_and_cannot_widen_the_query(salesforce, org):
    obrien = org.add_contact(LastName="O'Brien", Email="o'brien@example.com")
    org.add_contact(LastName="Bystander", Email="someone@example.com")
    connector = salesforce.connector()

    matched = salesforce.deliver(connector, call_session_id="quote", caller_email="o'brien@example.com")
    injected = salesforce.deliver(
        connector, call_session_id="inject", caller_email="x@example.com' OR Email != 'x", phone=None
    )

    assert matched.match == f"Contact {obrien} by email"
    assert injected.match == "none (on_missing=unlinked)"
    assert the_task(org, "inject")["WhoId"] is None


def test_a_phone_stored_in_national_format_still_matches_the_e164_caller(salesforce, org):
    account_id = org.add_account()
    contact_id = org.add_contact(Phone="(415) 555-0100", AccountId=account_id)
    org.add_contact(Phone="(415) 555-0199")

    result = salesforce.deliver(salesforce.connector(), **NO_EMAIL)

    assert result.match == f"Contact {contact_id} by phone"
    task = the_task(org)
    assert (task["WhoId"], task["WhatId"]) == (contact_id, account_id)
    assert org.requests["GET /search"] == 1


def test_a_caller_number_in_national_form_in_the_payload_matches_too(salesforce, org):
    lead_id = org.add_lead(MobilePhone="+1 415 555 0100")
    result = salesforce.deliver(salesforce.connector(), phone="415.555.0100", **NO_EMAIL)
    assert result.match == f"Lead {lead_id} by phone"


def test_several_phone_matches_pick_the_most_recently_modified_record(salesforce, org):
    old = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    new = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    org.add_contact(Phone="4155550100", LastModifiedDate=old)
    recent = org.add_contact(Phone="+1 (415) 555-0100", LastModifiedDate=new)
    org.add_contact(Phone="415-555-0100", LastModifiedDate=old)

    result = salesforce.deliver(salesforce.connector(), **NO_EMAIL)

    assert result.match == f"Contact {recent} by phone"


def test_no_match_with_on_missing_unlinked_writes_the_task_without_a_who(salesforce, org):
    result = salesforce.deliver(salesforce.connector())
    assert result.match == "none (on_missing=unlinked)"
    assert the_task(org)["WhoId"] is None and not result.skipped


def test_no_match_with_on_missing_skip_writes_nothing_and_says_why(salesforce, org):
    result = salesforce.deliver(salesforce.connector(match={"on_missing": "skip"}))
    assert result.skipped == "no Contact or Lead matched the caller (match.on_missing=skip)"
    assert result.records == {}
    assert org.count("Task") == 0


def test_no_match_with_on_missing_create_lead_creates_one_lead_from_the_mapping_and_links_the_task(salesforce, org):
    connector = salesforce.connector(match={"on_missing": "create_lead"})

    first = salesforce.deliver(connector)
    replay = salesforce.deliver(connector)

    [lead] = org.leads
    assert (lead["FirstName"], lead["LastName"], lead["Company"]) == ("John", "Doe", "[not provided]")
    assert (lead["Phone"], lead["Email"]) == ("+14155550100", "john@example.com")
    assert first.records["Lead"] == lead["Id"] and "Lead" not in replay.records
    assert first.match == f"Lead {lead['Id']} (created, on_missing=create_lead)"
    assert the_task(org)["WhoId"] == lead["Id"]


def test_an_unnamed_unknown_caller_becomes_an_unknown_caller_lead(salesforce, org):
    salesforce.deliver(salesforce.connector(match={"on_missing": "create_lead"}), caller_name=None, **NO_EMAIL)
    [lead] = org.leads
    assert lead["LastName"] == "Unknown caller +14155550100"
    assert lead["FirstName"] is None and lead["Email"] is None


def test_concurrent_calls_from_one_unknown_caller_create_a_single_lead(salesforce, org):
    connector = salesforce.connector(match={"on_missing": "create_lead"})
    barrier = threading.Barrier(6)

    def call(i: int) -> str:
        barrier.wait()
        return salesforce.deliver(connector, call_session_id=f"burst-{i}").match

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(call, range(6)))

    assert org.count("Lead") == 1
    assert {task["WhoId"] for task in org.tasks} == {org.leads[0]["Id"]}
    assert org.count("Task") == 6


def test_lookups_are_cached_in_redis_so_the_next_call_from_the_same_person_asks_salesforce_nothing(
    salesforce, org, redis_client
):
    contact_id = org.add_contact(Email="john@example.com")
    connector = salesforce.connector()
    salesforce.deliver(connector, call_session_id="first")
    queries = org.requests["GET /query"]

    second = salesforce.deliver(connector, call_session_id="second")

    assert second.match == f"Contact {contact_id} by email"
    assert org.requests["GET /query"] == queries
    keys = [key.decode() for key in redis_client.scan_iter("agni:salesforce:sf:match:*")]
    assert keys and not any("john" in key for key in keys)  # identifiers are hashed, not stored in key names


def test_nobody_is_cached_too_until_the_connector_creates_a_lead_for_that_person(salesforce, org):
    unlinked = salesforce.connector()
    salesforce.deliver(unlinked, call_session_id="a")
    searches = org.requests["GET /search"], org.requests["GET /query"]
    salesforce.deliver(unlinked, call_session_id="b")
    assert (org.requests["GET /search"], org.requests["GET /query"]) == searches

    creating = salesforce.connector(match={"on_missing": "create_lead"})
    created = salesforce.deliver(creating, call_session_id="c")
    later = salesforce.deliver(creating, call_session_id="d")

    assert later.match == f"Lead {created.records['Lead']} by email"
    assert org.count("Lead") == 1


def test_link_account_false_leaves_what_id_empty(salesforce, org):
    org.add_contact(Email="john@example.com", AccountId=org.add_account())
    salesforce.deliver(salesforce.connector(link_account=False))
    assert the_task(org)["WhatId"] is None
