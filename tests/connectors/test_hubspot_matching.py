"""HubSpot connector: finding the contact by email or phone, the lookup cache, and each `on_missing` choice."""

from __future__ import annotations

from tests.conftest import make_delivery
from tests.connectors.hubspot_support import (
    association_types,
    creates,
    make_connector,
    only,
    running_fake,
    searches,
)
from tests.fakes.hubspot import ManualClock

pytest_plugins = ("tests.connectors.hubspot_support",)  # fixtures: fake


def deliver(fake, redis_client, **data):
    connector = make_connector(fake, redis_client, **data.pop("options", {}))
    return connector.deliver(make_delivery(connector, **data))


def linked_contacts(fake, result):
    return fake.associated_ids("calls", result.records["call"], "contacts")


def test_the_contact_is_found_by_its_primary_email(fake, redis_client):
    contact = fake.add_contact(email="John@Example.com")
    result = deliver(fake, redis_client)
    assert result.match == f"contact {contact} by email"
    assert linked_contacts(fake, result) == [contact]


def test_the_contact_is_found_by_one_of_its_additional_emails(fake, redis_client):
    contact = fake.add_contact(email="jd@work.example", hs_additional_emails="old@example.org;john@example.com")
    result = deliver(fake, redis_client)
    assert result.match == f"contact {contact} by email"


def test_the_contact_is_found_by_its_phone_stored_in_e164(fake, redis_client):
    contact = fake.add_contact(phone="+14155550100")
    result = deliver(fake, redis_client, caller_email=None)
    assert result.match == f"contact {contact} by phone"
    assert linked_contacts(fake, result) == [contact]


def test_the_contact_is_found_by_a_phone_typed_as_415_555_0100(fake, redis_client):
    contact = fake.add_contact(phone="(415) 555-0100")
    result = deliver(fake, redis_client, caller_email=None)
    assert result.match == f"contact {contact} by phone"


def test_the_contact_is_found_by_its_mobile_phone(fake, redis_client):
    contact = fake.add_contact(mobilephone="+14155550100")
    result = deliver(fake, redis_client, caller_email=None)
    assert result.match == f"contact {contact} by phone"


def test_a_national_number_from_agni_matches_with_the_configured_default_region(fake, redis_client):
    contact = fake.add_contact(phone="+442079460018")
    result = deliver(
        fake, redis_client, caller_email=None, phone="020 7946 0018", callee_number="020 7946 0018",
        options={"match": {"default_region": "GB"}},
    )  # fmt: skip
    assert result.match == f"contact {contact} by phone"


def test_when_several_contacts_share_the_number_the_most_recently_modified_wins(redis_client):
    clock = ManualClock()
    with running_fake(clock=clock) as fake:
        older = fake.add_contact(phone="+14155550100", firstname="Older")
        clock.advance(60)
        newer = fake.add_contact(phone="(415) 555-0100", firstname="Newer")
        clock.advance(60)
        fake.add_contact(phone="+14155559999", firstname="Other number")
        result = deliver(fake, redis_client, caller_email=None)
    assert result.match == f"contact {newer} by phone"
    assert older != newer


def test_an_email_match_beats_a_more_recently_modified_phone_match(redis_client):
    clock = ManualClock()
    with running_fake(clock=clock) as fake:
        by_email = fake.add_contact(email="john@example.com")
        clock.advance(60)
        fake.add_contact(phone="+14155550100")
        result = deliver(fake, redis_client)
        assert searches(fake) == 1  # email and phone went into one search
    assert result.match == f"contact {by_email} by email"


def test_lookups_are_cached_so_a_campaign_calling_the_same_person_searches_once(fake, redis_client):
    contact = fake.add_contact(phone="+14155550100")
    connector = make_connector(fake, redis_client)
    for n in range(5):
        result = connector.deliver(make_delivery(connector, call_session_id=f"campaign-{n}", caller_email=None))
        assert result.records["contact"] == contact
    assert searches(fake) == 1
    assert creates(fake) == 5


def test_no_match_is_cached_too(fake, redis_client):
    connector = make_connector(fake, redis_client)
    for n in range(3):
        connector.deliver(make_delivery(connector, call_session_id=f"unknown-{n}"))
    assert searches(fake) == 1


def test_the_cache_can_be_turned_off(fake, redis_client):
    connector = make_connector(fake, redis_client, lookup_cache_seconds=0)
    for n in range(2):
        connector.deliver(make_delivery(connector, call_session_id=f"uncached-{n}"))
    assert searches(fake) == 2


def test_no_match_with_on_missing_unassociated_logs_the_call_without_a_contact(fake, redis_client):
    fake.add_contact(email="someone.else@example.com", phone="+14155559999")
    result = deliver(fake, redis_client)
    assert result.match == "none (on_missing=unassociated)"
    assert "contact" not in result.records
    assert linked_contacts(fake, result) == []
    assert fake.count("calls") == 1
    assert fake.count("contacts") == 1


def test_no_match_with_on_missing_skip_writes_nothing(fake, redis_client):
    result = deliver(fake, redis_client, options={"match": {"on_missing": "skip"}})
    assert result.skipped == "no contact matched (on_missing=skip)"
    assert result.records == {}
    assert fake.count("calls") == 0


def test_no_match_with_on_missing_create_contact_creates_the_contact_and_links_the_call(fake, redis_client):
    options = {"match": {"on_missing": "create_contact", "contact_properties": {"hs_lead_status": "NEW"}}}
    result = deliver(fake, redis_client, options=options)

    contact, props = only(fake, "contacts")
    assert result.match == f"contact {contact} created (on_missing=create_contact)"
    assert result.records["contact"] == contact
    assert props["firstname"] == "John"
    assert props["lastname"] == "Doe"
    assert props["email"] == "john@example.com"
    assert props["phone"] == "+14155550100"
    assert props["lifecyclestage"] == "lead"  # from the mapping's new_contact section
    assert props["hs_lead_status"] == "NEW"  # from match.contact_properties
    assert association_types(fake, "calls", result.records["call"], "contacts") == {contact: 194}


def test_a_contact_created_by_the_bridge_is_found_by_the_next_call_without_a_search(fake, redis_client):
    connector = make_connector(fake, redis_client, match={"on_missing": "create_contact"})
    first = connector.deliver(make_delivery(connector, call_session_id="first"))
    second = connector.deliver(make_delivery(connector, call_session_id="second", caller_email=None))
    assert second.records["contact"] == first.records["contact"]
    assert second.match == f"contact {first.records['contact']} by phone"
    assert fake.count("contacts") == 1
    assert searches(fake) == 1


def test_create_contact_uses_the_existing_contact_when_hubspot_says_the_email_is_taken(fake, redis_client):
    # Search has not indexed the contact yet, so the lookup misses it and the create gets HubSpot's 409.
    fake.search_lag_seconds = 60
    existing = fake.add_contact(email="john@example.com")
    result = deliver(fake, redis_client, options={"match": {"on_missing": "create_contact"}})
    assert result.records["contact"] == existing
    assert fake.count("contacts") == 1
    assert fake.associated_ids("calls", result.records["call"], "contacts") == [existing]


def test_a_call_without_email_or_phone_cannot_create_a_contact_and_is_logged_unassociated(fake, redis_client):
    result = deliver(
        fake, redis_client, caller_email=None, phone=None, options={"match": {"on_missing": "create_contact"}}
    )
    assert result.match == "none (no email or phone to create a contact from)"
    assert fake.count("contacts") == 0
    assert fake.count("calls") == 1
    assert searches(fake) == 0


def test_matching_only_by_phone_ignores_the_email(fake, redis_client):
    fake.add_contact(email="john@example.com")
    by_phone = fake.add_contact(phone="+14155550100")
    result = deliver(fake, redis_client, options={"match": {"by": ["phone"]}})
    assert result.match == f"contact {by_phone} by phone"


def delete_contact(fake, contact):
    with fake.lock:
        del fake.objects["contacts"][contact]
        fake.associations = [a for a in fake.associations if contact not in (a.from_id, a.to_id)]


def test_a_cached_contact_that_was_deleted_since_is_looked_up_again_instead_of_failing_the_call(fake, redis_client):
    # Given a contact the cache remembers, which is then deleted and re-created (as after a merge)
    old = fake.add_contact(email="john@example.com")
    connector = make_connector(fake, redis_client)
    connector.deliver(make_delivery(connector, call_session_id="before"))
    delete_contact(fake, old)
    new = fake.add_contact(email="john@example.com")

    # When the next call names the cached contact, HubSpot refuses the association
    result = connector.deliver(make_delivery(connector, call_session_id="after"))

    # Then the connector searches again and links the call to the contact that exists
    assert result.records["contact"] == new
    assert result.match == f"contact {new} by email"
    assert fake.associated_ids("calls", result.records["call"], "contacts") == [new]
    assert searches(fake) == 2


def test_a_cached_contact_that_is_gone_for_good_leaves_the_call_unassociated(fake, redis_client):
    old = fake.add_contact(email="john@example.com")
    connector = make_connector(fake, redis_client)
    connector.deliver(make_delivery(connector, call_session_id="before"))
    delete_contact(fake, old)

    result = connector.deliver(make_delivery(connector, call_session_id="after"))

    assert result.match == "none (on_missing=unassociated)"
    assert fake.associated_ids("calls", result.records["call"], "contacts") == []
