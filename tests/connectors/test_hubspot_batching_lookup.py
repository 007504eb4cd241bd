"""HubSpot connector with batching: concurrent contact lookups share IN searches, each answer goes to its caller.

Deliveries run concurrently against one connector (FakeHubSpot over real HTTP, real Redis); the number
of contact searches HubSpot received is counted in every test.
"""

from __future__ import annotations

import threading
import time

from connectors.hubspot.lookup import MAX_IN_VALUES, search_contacts
from connectors.hubspot.match import Identity
from tests.conftest import make_delivery
from tests.connectors.hubspot_support import concurrently, make_connector, running_fake, searches, together
from tests.fakes.hubspot import ManualClock

pytest_plugins = ("tests.connectors.hubspot_support",)  # fixtures: fake


def call(connector, call_id, *, email=None, phone=None, **data):
    return make_delivery(
        connector, call_session_id=call_id, caller_email=email, phone=phone, callee_number=phone, **data
    )


def matched(results):
    return [(r.records.get("contact"), r.match.split(" by ")[-1] if " by " in r.match else r.match) for r in results]


def test_concurrent_lookups_by_email_phone_and_national_format_share_one_search_and_are_told_apart(fake, redis_client):
    # Given contacts holding their identity in each of the ways HubSpot stores it
    by_email = fake.add_contact(email="Ann@Example.com", phone="+14155550999")  # the email wins over the phone
    by_e164 = fake.add_contact(phone="+14155550101")
    by_typed = fake.add_contact(phone="(415) 555-0102")
    by_mobile = fake.add_contact(mobilephone="+14155550103")
    phone_of_other = fake.add_contact(phone="+14155550104")
    connector = make_connector(fake, redis_client, **together(5))
    batch = [
        call(connector, "c-email", email="ann@example.com", phone="+14155550104"),
        call(connector, "c-e164", phone="+14155550101"),
        call(connector, "c-typed", phone="415-555-0102"),
        call(connector, "c-mobile", phone="(415) 555-0103"),
        call(connector, "c-nobody", phone="+14155550177"),
    ]

    # When their calls are delivered at the same moment
    results = concurrently(connector.deliver, batch)

    # Then one search answered all of them, each with its own contact
    assert matched(results) == [
        (by_email, "email"),
        (by_e164, "phone"),
        (by_typed, "phone"),
        (by_mobile, "phone"),
        (None, "none (on_missing=unassociated)"),
    ]
    assert searches(fake) == 1
    assert phone_of_other not in {r.records.get("contact") for r in results}

    # And every answer ("no match" included) is cached: the same people calling again cost no search
    again = concurrently(
        connector.deliver, [call(connector, f"again-{i}", phone=d.call["phone"]) for i, d in enumerate(batch)]
    )
    assert [r.records.get("contact") for r in again] == [phone_of_other, by_e164, by_typed, by_mobile, None]
    assert searches(fake) == 1


def test_when_several_contacts_share_a_number_the_most_recently_modified_wins_in_a_shared_search(redis_client):
    clock = ManualClock()
    with running_fake(clock=clock) as fake:
        older = fake.add_contact(phone="+14155550100")
        clock.advance(60)
        newer = fake.add_contact(phone="(415) 555-0100")
        clock.advance(60)
        other = fake.add_contact(email="bo@example.com")
        clock.advance(60)
        oldest_first = fake.add_contact(phone="+14155550200")
        connector = make_connector(fake, redis_client, **together(3))

        results = concurrently(
            connector.deliver,
            [
                call(connector, "c1", phone="+14155550100"),
                call(connector, "c2", email="bo@example.com"),
                call(connector, "c3", phone="+14155550200"),
            ],
        )

        assert [r.records["contact"] for r in results] == [newer, other, oldest_first]
        assert older != newer
        assert searches(fake) == 1


def test_an_email_known_only_as_an_additional_address_is_found_by_a_second_search(fake, redis_client):
    secondary = fake.add_contact(email="jd@work.example", hs_additional_emails="old@example.org;john@example.com")
    primary = fake.add_contact(email="mary@example.com")
    connector = make_connector(fake, redis_client, **together(2))

    results = concurrently(
        connector.deliver,
        [call(connector, "c1", email="john@example.com"), call(connector, "c2", email="mary@example.com")],
    )

    assert [r.records["contact"] for r in results] == [secondary, primary]
    assert searches(fake) == 2  # IN over primary addresses, then the one unknown email among secondary ones


def test_simultaneous_misses_on_one_identity_cost_one_search_even_across_batches(fake, redis_client):
    contact = fake.add_contact(phone="+14155550100")
    fake.latency_seconds = 1.5  # the first search is still running when the later lookups arrive
    connector = make_connector(fake, redis_client)
    results = {}

    def deliver(name, delay):
        time.sleep(delay)
        results[name] = connector.deliver(call(connector, name, phone="+14155550100"))

    threads = [threading.Thread(target=deliver, args=(f"c{i}", 0.15 * i)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {r.records["contact"] for r in results.values()} == {contact}
    assert searches(fake) == 1


def test_results_beyond_the_first_page_are_read_before_anyone_is_told_no_match(redis_client):
    # 200 contacts share one number and are newer than the only contact with the other number,
    # so newest-first that contact is result 201: on the second page.
    clock = ManualClock()
    with running_fake(clock=clock) as fake:
        second_page = fake.add_contact(phone="+14155550200")
        for _ in range(200):
            clock.advance(1)
            fake.add_contact(phone="+14155550100")
        connector = make_connector(fake, redis_client, **together(2))

        results = concurrently(
            connector.deliver,
            [call(connector, "c1", phone="+14155550100"), call(connector, "c2", phone="+14155550200")],
        )

        assert results[1].records["contact"] == second_page
        assert searches(fake) == 2  # one search, two pages


def test_hundreds_of_identities_are_split_into_searches_within_hubspots_limits(fake, redis_client):
    # Straight through the search function: 250 numbers, half of them contacts stored in national format.
    contacts = {i: fake.add_contact(phone=f"(415) 555-{i:04d}") for i in range(0, 250, 2)}
    connector = make_connector(fake, redis_client)
    identities = [Identity("phone", f"+1415555{i:04d}", f"415555{i:04d}") for i in range(250)]

    answers = search_contacts(connector.client, identities)

    assert {i: (m.id if m else None) for i, m in enumerate(answers.values())} == {
        i: contacts.get(i) for i in range(250)
    }
    assert searches(fake) == -(-250 // MAX_IN_VALUES)  # the fake refuses more than 5 groups or 18 filters
    bodies = [r.json() for r in fake.request_log if r.path.endswith("/contacts/search")]
    assert all(len(f["values"]) <= MAX_IN_VALUES for b in bodies for g in b["filterGroups"] for f in g["filters"])
