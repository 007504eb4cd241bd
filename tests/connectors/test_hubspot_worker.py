"""HubSpot connector through real Dramatiq workers on real Redis: a burst under the rate limit, dead letters, pauses."""

from __future__ import annotations

import time
from contextlib import ExitStack

from tests.conftest import enqueue, log_view, payload_bytes, running_worker, wait_for
from tests.connectors.hubspot_support import CALL_ID_PROPERTY, MAPPINGS, running_fake, worker_settings

PEOPLE = [(f"person{i}@example.com", f"+1415555010{i}") for i in range(5)]


def test_a_burst_of_300_calls_lands_exactly_once_without_a_single_429(tmp_path, redis_url, redis_client):
    # Given a portal limited like a Free/Starter account (100 requests per rolling 10 s, 5 searches/s)
    # and two worker processes' worth of runtimes sharing nothing but Redis
    with running_fake(requests_per_10s=100, search_per_second=5) as fake:
        contacts = [fake.add_contact(email=email, phone=phone) for email, phone in PEOPLE]
        settings = worker_settings(tmp_path, fake, threads=8, requests_per_10s=100)
        calls = []
        for i in range(300):
            email, phone = PEOPLE[i % len(PEOPLE)]
            body = payload_bytes(call_session_id=f"burst-{i:03d}", caller_email=email, phone=phone, callee_number=phone)
            calls.append((f"burst-{i:03d}", body))

        # When 300 calls arrive at once
        with ExitStack() as stack:
            stack.enter_context(running_worker(settings, redis_url))
            stack.enter_context(running_worker(settings, redis_url))
            started = time.monotonic()
            enqueue(redis_client, settings, calls, ("hs",))
            wait_for(lambda: fake.count("calls") >= 300, timeout=100, interval=0.2, message="300 calls in HubSpot")
            elapsed = time.monotonic() - started
            done = log_view(settings, redis_client)
            wait_for(lambda: all(done.done(call_id, "hs") for call_id, _ in calls), timeout=20, message="done markers")

        # Then every call landed once, on the right contact, and HubSpot never had to refuse a request
        with fake.lock:
            stored = list(fake.objects["calls"].values())
            throttled = dict(fake.throttled)
            total = fake.total_requests
        assert throttled == {}
        assert sorted(c["properties"][CALL_ID_PROPERTY] for c in stored) == sorted(call_id for call_id, _ in calls)
        for call in stored:
            index = int(call["properties"][CALL_ID_PROPERTY].split("-")[1])
            assert fake.associated_ids("calls", call["id"], "contacts") == [contacts[index % len(PEOPLE)]]
        assert log_view(settings, redis_client).dead_letters("hs") == {}
        per_call = total / len(calls)
        print(f"\nburst: 300 calls in {elapsed:.1f}s, {total} HubSpot requests ({per_call:.3f} per call)")
        assert per_call < 1.1  # one create per call; contact searches only until the cache knows everyone


def test_a_validation_error_becomes_a_dead_letter_with_hubspots_message_and_correlation_id(
    tmp_path, redis_url, redis_client
):
    mapping = tmp_path / "broken.yaml"
    text = (MAPPINGS / "hubspot_call.yaml").read_text()
    mapping.write_text(text.replace("\nfields:\n", '\nfields:\n  agni_no_such_property: "x"\n', 1))
    with running_fake() as fake:
        settings = worker_settings(tmp_path, fake, mapping=str(mapping))
        with running_worker(settings, redis_url):
            enqueue(redis_client, settings, [("invalid-1", payload_bytes(call_session_id="invalid-1"))], ("hs",))
            letters = wait_for(lambda: log_view(settings, redis_client).dead_letters("hs"), timeout=15)
        posts = [r for r in fake.request_log if r.method == "POST" and r.path == "/crm/v3/objects/calls"]

    letter = letters["invalid-1"]
    assert letter["status"] == 400
    assert letter["code"] == "VALIDATION_ERROR"
    assert "agni_no_such_property" in letter["error"]
    assert "does not exist" in letter["error"]
    assert "(correlationId=" in letter["error"]
    assert letter["attempts"] == 1
    assert len(posts) == 1  # permanent: not retried


def test_the_daily_limit_keeps_calls_queued_instead_of_dead_lettering_them(tmp_path, redis_url, redis_client):
    with running_fake(daily_limit=1) as fake:  # the contact search spends the day's only request
        settings = worker_settings(tmp_path, fake)
        with running_worker(settings, redis_url):
            enqueue(redis_client, settings, [("daily-1", payload_bytes(call_session_id="daily-1"))], ("hs",))
            history = log_view(settings, redis_client)
            paused = wait_for(lambda: [e for e in history.history("daily-1") if e.get("type") == "paused"], timeout=15)
        assert fake.throttled["DAILY"] == 1

    assert "You have reached your daily limit." in paused[0]["reason"]
    assert paused[0]["retry_after"] > 60
    assert log_view(settings, redis_client).dead_letters("hs") == {}
    assert log_view(settings, redis_client).done("daily-1", "hs") is None
    assert fake.count("calls") == 0
