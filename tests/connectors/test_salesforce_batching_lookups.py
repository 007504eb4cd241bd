"""Batched Contact/Lead lookups: concurrent calls share one SOQL per object and one SOSL search, with the same matches.

Real simple-salesforce over TLS against the fake org (whose SOSL the support module teaches ``OR``), real Redis.
"""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

from connectors.salesforce.lookup import Number, Person
from connectors.salesforce.match import Identity

pytest_plugins = ("tests.connectors.salesforce_support",)  # fixtures: pki, org, salesforce, burst

EXT = "Agni_Call_Session_Id__c"
LOOKUPS = ("GET /query", "GET /search")
LATENCY = 0.05
THREADS = {"threads": 64}
OLD = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NEW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def lookups_sent(org) -> int:
    return sum(org.requests[route] for route in LOOKUPS)


def test_a_burst_of_calls_is_matched_with_a_handful_of_queries_and_the_results_are_cached(
    salesforce, org, burst, redis_client
):
    # Given 30 callers known by email (Contacts), 30 by phone only (Leads) and 30 nobody knows
    calls, expected = {}, {}
    for i in range(30):
        expected[f"mail-{i}"] = org.add_contact(Email=f"person{i}@example.com")
        calls[f"mail-{i}"] = {"caller_email": f"person{i}@example.com", "phone": None}
        expected[f"tel-{i}"] = org.add_lead(MobilePhone=f"(415) 555-{i:04d}")
        calls[f"tel-{i}"] = {"caller_email": None, "phone": f"+1415555{i:04d}"}
        expected[f"new-{i}"] = None
        calls[f"new-{i}"] = {"caller_email": f"stranger{i}@example.com", "phone": f"+1650555{i:04d}"}
    org.latency_seconds = LATENCY

    # When a 64-thread worker delivers them
    burst(salesforce.settings(worker=THREADS), calls)

    # Then each Task is on the right person, after a fraction of the lookups one at a time would need: 30 email
    # queries, 30 searches, and 2 queries + 2 searches for each stranger (~23 measured on a quiet machine; the
    # first and last calls of a burst find nobody to share a query with, and a loaded machine shares less)
    assert {task[EXT]: task["WhoId"] for task in org.tasks} == expected
    assert lookups_sent(org) <= (30 + 30 + 30 * 4) / 3, org.requests
    # and every identity's answer ("nobody" included) is cached: 30 + 30 + 2 x 30 entries
    assert len(list(redis_client.scan_iter("agni:salesforce:sf:match:*"))) == 120

    # When the same people call again, Salesforce is asked nothing
    before = lookups_sent(org)
    again = {f"{call_id}-again": data for call_id, data in calls.items()}
    burst(salesforce.settings(worker=THREADS), again)
    assert lookups_sent(org) == before
    assert {t[EXT]: t["WhoId"] for t in org.tasks if t[EXT] in again} == {f"{c}-again": w for c, w in expected.items()}


def test_one_search_for_many_numbers_finds_what_a_search_per_number_finds(salesforce, org):
    # Given people whose numbers are stored in every format, some sharing a number
    stale = org.add_contact(Phone="(415) 555-0100", LastModifiedDate=OLD)
    fresh = org.add_contact(HomePhone="+1 415 555 0100", LastModifiedDate=NEW)
    lead = org.add_lead(MobilePhone="650.555.0199")
    contact_over_lead = org.add_contact(OtherPhone="212-555-0142")
    org.add_lead(Phone="2125550142")
    abroad = org.add_contact(Phone="+44 303 555 0177")  # ends in the national digits of +1 303 555 0177 only
    numbers = [
        Number("+14155550100", "4155550100"),
        Number("+16505550199", "6505550199"),
        Number("+12125550142", "2125550142"),
        Number("+13035550177", "3035550177"),
        Number("+17185550123", "7185550123"),  # nobody
    ]
    lookups = salesforce.connector()._build().matcher.lookups

    found = lookups.many_numbers(numbers)

    # Then one search answered for all of them: most recent record, Contacts first, whole number first
    assert org.requests["GET /search"] == 1
    sosl = next(r.query["q"][0] for r in org.request_log if r.path.rstrip("/").endswith("/search"))
    assert sosl.startswith("FIND {\\+14155550100 OR 4155550100 OR \\+16505550199 OR ")
    assert [getattr(found[n], "id", None) for n in numbers] == [fresh, lead, contact_over_lead, abroad, None]
    assert stale not in {p.id for p in found.values() if p}
    assert found == {n: lookups.one_number(n) for n in numbers}  # the same answers as one search per number


def test_one_query_per_object_for_many_emails_finds_what_a_query_per_email_finds(salesforce, org):
    obrien = org.add_contact(LastName="O'Brien", Email="o'brien@example.com")
    org.add_contact(Email="twice@example.com", LastModifiedDate=OLD)
    newer = org.add_contact(Email="TWICE@example.com", LastModifiedDate=NEW)
    lead = org.add_lead(Email="lead@example.com")
    org.add_lead(Email="converted@example.com", IsConverted=True)
    org.add_contact(Email="bystander@example.com")
    emails = [
        "o'brien@example.com",
        "twice@example.com",
        "lead@example.com",
        "converted@example.com",
        "x@example.com' or email != 'x",  # must not widen the query
        "nobody@example.com",
    ]
    lookups = salesforce.connector()._build().matcher.lookups

    found = lookups.many_emails(emails)

    assert org.requests["GET /query"] == 2  # Contacts, then Leads for the emails still unmatched
    assert [getattr(found[e], "id", None) for e in emails] == [obrien, newer, lead, None, None, None]
    assert found["lead@example.com"] == Person("Lead", lead, owner_id=org.default_user_id, by="email")
    assert found == {e: lookups.one_email(e) for e in emails}


def test_concurrent_lookups_of_the_same_and_of_different_people_share_queries(salesforce, org):
    ids = [org.add_contact(Email=f"p{i}@example.com") for i in range(6)]
    org.latency_seconds = LATENCY
    matcher = salesforce.connector()._build().matcher
    people = [Identity(email=f"p{i % 6}@example.com") for i in range(12)]  # each person twice
    barrier = threading.Barrier(len(people))

    def find(identity: Identity) -> str:
        barrier.wait()
        return matcher.find(identity).id

    with ThreadPoolExecutor(len(people)) as pool:
        assert list(pool.map(find, people)) == [ids[i % 6] for i in range(12)]
    assert org.requests["GET /query"] <= 3  # one batch of six distinct emails (maybe split in two): not 12


def test_a_nobody_answer_never_replaces_a_lead_the_connector_created_meanwhile(salesforce, org):
    matcher = salesforce.connector(match={"on_missing": "create_lead"})._build().matcher
    caller = Identity(email="new@example.com", e164="+14155550100", national="4155550100")
    matcher.remember_created("call-1", caller, Person("Lead", "00QHn0000000001AAA", by="created"))

    # A lookup that started before the Lead existed answers "nobody" after it was cached
    matcher._cache_set("email", caller.email, None, 600)

    assert matcher.find(caller) == Person("Lead", "00QHn0000000001AAA", by="email")
    assert org.requests["GET /query"] == 0
