"""Dynamics 365 connector: who the call was with — email, phone spellings, contact or lead, the cache, on_missing."""

from __future__ import annotations

import pytest

from connectors.dynamics.odata import person_id

pytest_plugins = ("tests.connectors.dynamics_support",)  # fixtures: fake, dyn

NUMBER = "+14155550100"  # the example call's `phone`
STRANGER = {"caller_email": None, "caller_name": None}


def regarding(dyn, call_id: str = "019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d") -> str | None:
    return dyn.phonecall(call_id).get("_regardingobjectid_value")


@pytest.mark.parametrize(
    ("column", "stored"),
    [
        ("telephone1", "+14155550100"),
        ("telephone1", "(415) 555-0100"),
        ("mobilephone", "4155550100"),
        ("telephone2", "14155550100"),
        ("telephone3", "+1 415-555-0100"),
    ],
)
def test_a_number_is_found_however_it_was_typed_and_in_any_phone_column(dyn, fake, column, stored):
    contact = fake.add("contact", lastname="Doe", **{column: stored})
    connector = dyn.connector()
    result = connector.deliver(dyn.delivery(connector, caller_email=None))
    assert regarding(dyn) == contact
    assert result.match == f"contact {contact} by phone"


def test_email_comes_before_phone_and_the_most_recently_modified_match_wins(dyn, fake):
    fake.add("contact", lastname="Old", emailaddress1="john@example.com", modifiedon="2025-01-01T00:00:00.000000Z")
    newest = fake.add(
        "contact", lastname="New", emailaddress2="JOHN@example.com", modifiedon="2026-01-01T00:00:00.000000Z"
    )
    fake.add("contact", lastname="By phone", telephone1=NUMBER, modifiedon="2026-06-01T00:00:00.000000Z")
    connector = dyn.connector()
    connector.deliver(dyn.delivery(connector))
    assert regarding(dyn) == newest


def test_a_contact_wins_over_a_lead_unless_the_order_says_otherwise(dyn, fake):
    contact = fake.add("contact", lastname="Doe", telephone1=NUMBER)
    lead = fake.add("lead", lastname="Doe", telephone1=NUMBER)
    first = dyn.connector(name="contacts_first")
    first.deliver(dyn.delivery(first, caller_email=None))
    assert regarding(dyn) == contact

    fake.store.rows["phonecall"].clear()
    second = dyn.connector(name="leads_first", match={"order": ["lead", "contact"]})
    second.deliver(dyn.delivery(second, caller_email=None))
    call = dyn.phonecall("019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d")
    assert call["_regardingobjectid_value"] == lead
    assert [(p["participationtypemask"], p["entity"]) for p in call["parties"]] == [(2, "lead")]


def test_inactive_contacts_and_qualified_leads_are_never_matched(dyn, fake):
    fake.add("contact", lastname="Gone", telephone1=NUMBER, statecode=1, statuscode=2)
    fake.add("lead", lastname="Qualified", telephone1=NUMBER, statecode=1, statuscode=3)
    connector = dyn.connector()
    result = connector.deliver(dyn.delivery(connector, caller_email=None))
    assert regarding(dyn) is None
    assert result.match == "none (on_missing=unlinked)"


def test_a_quote_in_an_email_is_escaped_in_the_odata_literal(dyn, fake):
    contact = fake.add("contact", lastname="O'Brien", emailaddress1="o'brien@example.com")
    connector = dyn.connector()
    connector.deliver(dyn.delivery(connector, caller_email="O'Brien@example.com"))
    assert regarding(dyn) == contact
    filters = [r.query["$filter"][0] for r in fake.request_log if r.path.endswith("/contacts")]
    assert "emailaddress1 eq 'o''brien@example.com'" in filters[0]


def test_answers_are_cached_in_redis_nobody_included(dyn, fake):
    contact = fake.add("contact", lastname="Doe", emailaddress1="john@example.com")
    connector = dyn.connector()
    for i in range(3):
        connector.deliver(dyn.delivery(connector, call_session_id=f"known-{i}"))
    for i in range(3):
        connector.deliver(
            dyn.delivery(
                connector,
                call_session_id=f"stranger-{i}",
                caller_email="x@example.com",
                phone="+14155550199",
                callee_number="+14155550199",
            )
        )
    assert fake.requests["GET contacts"] == 1 + 2  # john once; the stranger once by email, once by phone
    assert fake.requests["GET leads"] == 2
    assert all(c["_regardingobjectid_value"] == contact for c in fake.records("phonecall") if "known" in c["subject"])


def test_a_cached_contact_that_was_deleted_since_is_looked_up_again(dyn, fake):
    old = fake.add("contact", lastname="Doe", emailaddress1="john@example.com")
    connector = dyn.connector()
    connector.deliver(dyn.delivery(connector, call_session_id="first"))
    # Given the contact was merged away in Dynamics after the bridge cached it
    with fake.lock:
        del fake.store.rows["contact"][old]
    new = fake.add("contact", lastname="Doe", emailaddress1="john@example.com")

    result = connector.deliver(dyn.delivery(connector, call_session_id="second"))

    assert dyn.phonecall("second")["_regardingobjectid_value"] == new
    assert result.records["contact"] == new


def test_unlinked_writes_the_phone_call_regarding_nobody(dyn, fake):
    connector = dyn.connector()
    result = connector.deliver(dyn.delivery(connector, **STRANGER))
    call = dyn.phonecall("019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d")
    assert call.get("_regardingobjectid_value") is None
    assert "parties" not in call
    assert call["phonenumber"] == NUMBER
    assert result.match == "none (on_missing=unlinked)"


def test_skip_writes_nothing_and_says_why(dyn, fake):
    connector = dyn.connector(match={"on_missing": "skip"})
    result = connector.deliver(dyn.delivery(connector, **STRANGER))
    assert fake.count("phonecall") == 0
    assert result.skipped == "no contact or lead matched the caller (match.on_missing=skip)"


def test_create_contact_creates_one_contact_for_every_call_from_one_unknown_caller(dyn, fake):
    connector = dyn.connector(match={"on_missing": "create_contact"}, batch_size=10, batch_linger_seconds=0.2)
    calls = [
        dyn.delivery(connector, call_session_id=f"unknown-{i}", caller_name="Ann Lee", caller_email=None)
        for i in range(6)
    ]

    results = dyn.concurrently(connector.deliver, calls)

    contacts = fake.records("contact")
    assert len(contacts) == 1
    contact = contacts[0]
    assert contact["contactid"] == person_id("contact", NUMBER)
    assert (contact["firstname"], contact["lastname"], contact["telephone1"]) == ("Ann", "Lee", NUMBER)
    assert fake.count("phonecall") == 6
    assert {c["_regardingobjectid_value"] for c in fake.records("phonecall")} == {contact["contactid"]}
    assert all(not isinstance(r, Exception) for r in results), results


def test_create_lead_creates_a_lead_with_a_topic_and_no_contact_only_fields(dyn, fake):
    connector = dyn.connector(match={"on_missing": "create_lead"})
    result = connector.deliver(dyn.delivery(connector, caller_email="ann@example.com", caller_name="Ann Lee"))
    leads = fake.records("lead")
    assert len(leads) == 1
    assert leads[0]["subject"] == "Agni call from Ann Lee"
    assert leads[0]["emailaddress1"] == "ann@example.com"
    assert result.match == f"lead {leads[0]['leadid']} created (on_missing=create_lead)"
    assert regarding(dyn) == leads[0]["leadid"]
    assert fake.count("contact") == 0


def test_a_caller_with_no_email_and_no_number_is_written_unlinked_even_with_create_contact(dyn, fake):
    connector = dyn.connector(match={"on_missing": "create_contact"})
    result = connector.deliver(dyn.delivery(connector, caller_email=None, phone=None))
    assert fake.count("contact") == 0
    assert result.match == "none (no email or phone number to create a person from)"
    assert fake.count("phonecall") == 1


def test_concurrent_lookups_share_one_batch_request(dyn, fake):
    people = [dyn.person(i) for i in range(8)]
    for p in people:
        fake.add("contact", lastname="Doe", emailaddress1=p["caller_email"])
    connector = dyn.connector(batch_size=8, batch_linger_seconds=1, batch_max_wait_seconds=1)
    calls = [dyn.delivery(connector, call_session_id=f"c-{i}", **p) for i, p in enumerate(people)]

    results = dyn.concurrently(connector.deliver, calls)

    assert all(not isinstance(r, Exception) for r in results), results
    assert fake.requests["GET contacts"] == 8  # each query ran...
    assert fake.requests["POST $batch"] == 2  # ...inside one lookup $batch, and the 8 calls in one write $batch
