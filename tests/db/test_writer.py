"""The log writer on SQLite and PostgreSQL alike: what a call's events become, applied exactly once."""

from __future__ import annotations

import threading

import pytest
import redis
import sqlalchemy as sa

from bridge.db import schema as t
from bridge.db.drain import LogDrain
from bridge.db.events import LogEvent
from bridge.db.writer import START, StaleCursor
from bridge.ingest import Ingestor
from bridge.keys import Keys
from bridge.store import CallStore
from tests.db.conftest import body


def test_a_delivered_call_lands_with_its_facts_parties_records_links_and_statistics(calls, queries, engine):
    # Given a received call and one delivered attempt with a record and its link
    call = calls.received("c-1", ["sf"])
    done = calls.attempt(
        "c-1", "sf", "delivered", t=call.t + 1200, records={"Task": "00T1"}, links={"Task": "https://x/00T1"},
        mapping="salesforce_task.yaml", mapping_digest="abc123def456", match="Contact 003 by email",
    )  # fmt: skip
    payload = body(call_session_id="c-1", phone="+1 (415) 555-0100", caller_email="John@Example.com")
    # When the log applies them
    applied = calls.apply([call, done], {"c-1": payload})
    # Then the call reads back whole
    found = queries.call("c-1")
    row = found["call"]
    assert (row["status"], row["phone"], row["email"], row["agent_name"]) == (
        "delivered", "+14155550100", "john@example.com", "Support Agent"
    )  # fmt: skip
    assert row["disposition"] == "issue_resolved" and row["duration_sec"] == 125 and row["direction"] == "outbound"
    assert queries.payload("c-1") == payload  # compressed or not, the bytes as received
    (delivery,) = found["deliveries"]
    assert (delivery["status"], delivery["latency_ms"]) == ("delivered", 1200)
    assert delivery["mapping_digest"] == "abc123def456"
    assert [(r["kind"], r["crm_id"], r["url"]) for r in found["records"]] == [("Task", "00T1", "https://x/00T1")]
    assert [h["type"] for h in found["history"]] == ["received", "attempt"]
    assert applied.finished == [("c-1", f"{call.t}-1")]  # with the (re)ingest that the Redis markers name
    with engine.connect() as conn:
        parties = {(r.kind, r.value) for r in conn.execute(sa.select(t.parties))}
        stats = conn.execute(sa.select(t.delivery_stats)).mappings().one()
    assert ("phone", "+14155550100") in parties and ("email", "john@example.com") in parties
    assert (stats["connector"], stats["delivered"], stats["latency_sum_ms"]) == ("sf", 1, 1200)


def test_retries_then_a_dead_letter_then_a_replay_then_a_delivery(calls, queries):
    calls.apply([calls.received("c-2", ["hs"])], {"c-2": body(call_session_id="c-2")})
    calls.apply([calls.attempt("c-2", "hs", "retry", error="HTTP 503: down", status=503)])
    assert queries.call("c-2")["call"]["status"] == "failed"
    expired = "HTTP 401 EXPIRED: token {} expired"
    calls.apply([calls.attempt("c-2", "hs", "dead", attempt=3, error=expired.format("4f1c9e2b7a6d88aa"), status=401)])
    found = queries.call("c-2")
    assert found["call"]["status"] == "dead"
    (letter,) = found["dead"]
    assert (letter["attempts"], letter["http_status"]) == (3, 401)
    # Another call failing with another token id is the same failure group
    calls.apply(
        [calls.received("c-2b", ["hs"]), calls.attempt("c-2b", "hs", "dead", error=expired.format("77ab12cd34ef5566"))]
    )
    (group,) = queries.failure_groups()
    assert (group["count"], group["dead"], group["error_group"]) == (2, 2, expired.format("<hex>"))
    # An admin replays it: pending again, the letter is gone; then it is delivered.
    calls.apply([LogEvent(type="replay", call="c-2", t=calls.tick(), connectors=["hs"])])
    found = queries.call("c-2")
    assert (found["call"]["status"], found["deliveries"][0]["attempts"], found["dead"]) == ("pending", 0, [])
    calls.apply([calls.attempt("c-2", "hs", "delivered", records={"Call": "9"})])
    assert queries.call("c-2")["call"]["status"] == "delivered"


def test_a_purged_dead_letter_leaves_the_failures_and_the_history_keeps_it(calls, queries):
    calls.apply([calls.received("c-3", ["hs"]), calls.attempt("c-3", "hs", "dead", error="HTTP 400: bad")])
    assert [g["count"] for g in queries.failure_groups()] == [1]
    calls.apply([LogEvent(type="purged", call="c-3", connector="hs", t=calls.tick())])
    found = queries.call("c-3")
    assert (found["call"]["status"], found["dead"], queries.failure_groups()) == ("purged", [], [])
    assert found["history"][-1]["type"] == "purged"


def test_one_call_has_one_row_whichever_events_arrive(calls, queries):
    # An attempt for a call the log never saw enter (imported history) still lands, on a row of its own.
    calls.apply([calls.attempt("orphan", "sf", "delivered", records={"Task": "1"})])
    assert queries.call("orphan")["call"]["status"] == "delivered"
    calls.apply([calls.received("orphan", ["sf"])], {"orphan": body(call_session_id="orphan")})
    assert queries.search(__import__("bridge.calls").calls.CallSearch())[0][0]["call_session_id"] == "orphan"


def test_a_batch_is_applied_once_even_when_two_writers_race_for_it(redis_client, engine, writer):
    # Given ten events on the stream
    keys = Keys()
    ingestor = Ingestor(redis_client, keys, dedupe_ttl_seconds=60, retention_seconds=60)
    for i in range(10):
        ingestor.accept_sync(f"race-{i}", body(call_session_id=f"race-{i}"), ("sf",), {"type": "received"})
    drains = [LogDrain(redis.Redis(connection_pool=redis_client.connection_pool), keys, writer) for _ in range(4)]
    # When four drains apply them at the same moment
    barrier = threading.Barrier(4)
    applied: list[int] = []

    def go(drain: LogDrain) -> None:
        barrier.wait()
        applied.append(drain.drain_once())

    threads = [threading.Thread(target=go, args=(d,)) for d in drains]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then the events were applied once: one drain did it, the others found the position moved
    assert sorted(applied) == [0, 0, 0, 10]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.attempts)).scalar() == 10
        assert conn.execute(sa.select(sa.func.count()).select_from(t.calls)).scalar() == 10
    assert redis_client.xlen(keys.events) == 0  # and the stream was trimmed


def test_a_stale_position_is_refused_and_changes_nothing(calls, writer, engine):
    event = calls.received("s-1", ["sf"])
    writer.apply([("5-0", event)], {}, start=START, end="5-0")
    with pytest.raises(StaleCursor):
        writer.apply([("5-0", event)], {}, start=START, end="5-0")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.attempts)).scalar() == 1
    assert writer.cursor() == "5-0"


def test_an_unreadable_stream_entry_is_skipped_and_the_rest_applied(redis_client, writer, queries):
    keys = Keys()
    redis_client.xadd(keys.events, {"e": b"{not json"})
    redis_client.xadd(keys.events, {"nothing": b"here"})
    CallStore(redis_client, keys, retention_seconds=60).append(
        "after", {"type": "attempt", "connector": "x", "outcome": "retry", "error": "e"}
    )
    assert LogDrain(redis_client, keys, writer).drain_once() == 1
    assert queries.call("after")["deliveries"][0]["status"] == "failed"


def test_a_finished_calls_payload_leaves_redis_unless_it_was_replayed_meanwhile(redis_client, writer):
    keys = Keys()
    ingestor = Ingestor(redis_client, keys, dedupe_ttl_seconds=60, retention_seconds=60)
    store = CallStore(redis_client, keys, retention_seconds=60)
    drain = LogDrain(redis_client, keys, writer)
    for call in ("fin", "again"):
        ingestor.accept_sync(call, body(call_session_id=call), ("sf",), {"type": "received", "connectors": ["sf"]})
        store.mark_done(call, "sf", "delivered", {"type": "attempt", "connector": "sf", "outcome": "delivered"})
    # "again" is replayed after its delivery was recorded but before the log caught up
    ingestor.accept_sync("again", body(call_session_id="again"), ("sf",), {"type": "replay", "connectors": ["sf"]},
                         force=True)  # fmt: skip
    drain.drain_once()
    assert not redis_client.exists(keys.payload("fin"))  # finished and logged: only small markers remain
    assert redis_client.exists(keys.dedupe("fin")) and redis_client.hget(keys.done("fin"), "sf") == b"delivered"
    assert redis_client.exists(keys.payload("again"))  # the replay still needs it
