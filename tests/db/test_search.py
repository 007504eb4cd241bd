"""Searching the call log the way an admin asks, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest

from bridge.calls import CallLog, CallSearch
from bridge.db.queries import decode_cursor, encode_cursor, percentile
from bridge.db.schema import LATENCY_BUCKETS_MS


@pytest.fixture
def seeded(calls):
    """Twelve calls: three agents, two dispositions, different parties and words; newest is c-11."""
    agents = ["Maria Lopez", "Sam Chen", "Support Agent"]
    for i in range(12):
        calls.delivered(
            f"c-{i:02d}",
            ["sf", "hs"],
            phone=f"+1415555{i:04d}",
            callee_number=f"+1415555{i:04d}",
            caller_email=f"Person{i}@Example.com",
            agent_name=agents[i % 3],
            post_call_analysis={
                "disposition": "meeting_booked" if i % 2 else "not_interested",
                "sentiment": "positive",
                "goals_met": True,
                "next_steps": "send the pricing sheet" if i == 7 else "nothing",
            },
            summary="Customer asked about invoices" if i in (3, 8) else "A short call",
        )
    return calls


def ids(page):
    return [report.call_session_id for report in page.calls]


def test_a_phone_number_finds_its_calls_in_any_spelling(seeded, engine):
    log = CallLog(engine)
    for spelling in ("+14155550005", "(415) 555-0005", "415.555.0005", "+1 415 555 0005"):
        assert ids(log.search(CallSearch(phone=spelling))) == ["c-05"], spelling
    assert ids(log.search(CallSearch(phone="+14155559999"))) == []


def test_email_agent_and_disposition_match_whatever_their_case(seeded, engine):
    log = CallLog(engine)
    assert ids(log.search(CallSearch(email="PERSON4@example.COM"))) == ["c-04"]
    assert ids(log.search(CallSearch(agent="maria lopez"))) == ["c-09", "c-06", "c-03", "c-00"]
    assert len(ids(log.search(CallSearch(disposition="Meeting_Booked")))) == 6
    both = log.search(CallSearch(agent="Sam Chen", disposition="meeting_booked"))
    assert ids(both) == ["c-07", "c-01"]


def test_free_text_searches_summary_and_next_steps_by_words(seeded, engine):
    log = CallLog(engine)
    assert ids(log.search(CallSearch(text="invoices"))) == ["c-08", "c-03"]
    assert ids(log.search(CallSearch(text="pricing sheet"))) == ["c-07"]
    assert ids(log.search(CallSearch(text='"pricing" OR NEAR(x)'))) == []  # user text is words, never query syntax


def test_status_and_connector_filters_read_each_connectors_state(calls, engine):
    calls.delivered("ok", ["sf", "hs"])
    calls.apply([calls.received("half", ["sf", "hs"]), calls.attempt("half", "sf", "delivered")])
    calls.apply([calls.attempt("half", "hs", "retry", error="HTTP 503: busy")])
    log = CallLog(engine)
    assert ids(log.search(CallSearch(status="failed"))) == ["half"]
    assert ids(log.search(CallSearch(connector="sf", status="delivered"))) == ["half", "ok"]
    assert ids(log.search(CallSearch(connector="hs", status="failed"))) == ["half"]
    page = log.search(CallSearch(status="failed"))
    states = {c.connector: c.status for c in page.calls[0].connectors}
    assert states == {"sf": "delivered", "hs": "failed"}


def test_time_ranges_and_cursor_pages_cover_every_call_once_in_order(seeded, engine):
    log = CallLog(engine)
    everything = ids(log.search(CallSearch(limit=100)))
    assert everything == [f"c-{i:02d}" for i in range(11, -1, -1)]
    seen, cursor = [], None
    while True:
        page = log.search(CallSearch(limit=5, cursor=cursor))
        seen += ids(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == everything
    first = log.report("c-04").received_at
    last = log.report("c-07").received_at
    window = CallSearch(since_ms=int(first * 1000), until_ms=int(last * 1000))
    assert ids(log.search(window)) == ["c-06", "c-05", "c-04"]


def test_a_cursor_this_code_did_not_make_is_refused():
    assert decode_cursor(encode_cursor(1_765_000_000_000, 42)) == (1_765_000_000_000, 42)
    with pytest.raises(ValueError):
        decode_cursor("not-a-cursor")


def test_the_overview_counts_per_connector_and_reads_latency_from_the_histogram(calls, queries):
    received = calls.received("o-1", ["sf"])
    calls.apply([received, calls.attempt("o-1", "sf", "delivered", t=received.t + 400)])
    received = calls.received("o-2", ["sf"])
    calls.apply([received, calls.attempt("o-2", "sf", "retry", t=received.t + 10, error="HTTP 500: x")])
    overview = queries.overview(calls.clock + 1000)
    sf = overview["sf"]
    assert (sf["delivered_1h"], sf["failed_1h"], sf["delivered_24h"], sf["failed_24h"]) == (1, 1, 1, 1)
    assert 300 <= sf["p50_ms"] <= 500 and sf["p95_ms"] <= 500
    assert sum(point[1] for point in sf["series"]) == 1


def test_percentiles_interpolate_inside_the_bucket():
    histogram = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    histogram[2] = 10  # ten deliveries between 50 and 100 ms
    assert percentile(histogram, 0.5) == 75
    assert percentile([0] * 5, 0.5) is None
