"""Pipedrive connector through real Dramatiq workers on real Redis: a burst under the limits, dead letters with
Pipedrive's message, and the daily budget's pause that keeps calls queued."""

from __future__ import annotations

import time
from contextlib import ExitStack

from tests.conftest import call_store, dead_letters, enqueue, history, payload_bytes, running_worker, wait_for
from tests.connectors.pipedrive_support import JOHN_EMAIL, running_fake, worker_settings


def test_a_burst_of_60_calls_on_two_workers_lands_exactly_once_without_a_429(tmp_path, redis_url, redis_client):
    # Given a Lite plan's API token (20 requests per rolling 2 s) and two workers sharing nothing but Redis
    with running_fake(requests_per_2s=20, search_per_2s=10) as fake:
        person = fake.add_person("John Doe", emails=(JOHN_EMAIL,))
        settings = worker_settings(tmp_path, fake, threads=8, requests_per_2s=20)
        calls = [(f"burst-{i:02d}", payload_bytes(call_session_id=f"burst-{i:02d}")) for i in range(60)]

        # When 60 calls arrive at once
        with ExitStack() as stack:
            stack.enter_context(running_worker(settings, redis_url))
            stack.enter_context(running_worker(settings, redis_url))
            started = time.monotonic()
            enqueue(redis_client, settings, calls, ("pd",))
            done = call_store(redis_client, settings)
            wait_for(lambda: all(done.done(call_id, "pd") for call_id, _ in calls), timeout=90, interval=0.2,
                     message="every call delivered")  # fmt: skip
            elapsed = time.monotonic() - started

        # Then every call is one call log on the person, and Pipedrive never had to refuse a request
        logs = fake.live_call_logs()
        assert sorted(log["note"].rsplit("agni:", 1)[1].removesuffix("</p>") for log in logs) == [c for c, _ in calls]
        assert {log["person_id"] for log in logs} == {person}
        assert fake.throttled == {}
        assert dead_letters(settings, redis_client, "pd") == {}
        print(f"\nburst: 60 calls in {elapsed:.1f}s, {fake.total_requests} Pipedrive requests")
        assert fake.total_requests <= 62  # one search per worker at most, then one create per call


def test_a_refusal_becomes_a_dead_letter_with_pipedrives_message_and_correlation_id(tmp_path, redis_url, redis_client):
    with running_fake(admin=False) as fake:
        colleague = fake.add_user("Ann", "ann@example.com")
        settings = worker_settings(tmp_path, fake, owner_map={"Support Agent": colleague})
        with running_worker(settings, redis_url):
            enqueue(redis_client, settings, [("refused-1", payload_bytes(call_session_id="refused-1"))], ("pd",))
            letters = wait_for(lambda: dead_letters(settings, redis_client, "pd"), timeout=15)
        posts = [r for r in fake.request_log if r.method == "POST" and r.path == "/v1/callLogs"]

    letter = letters["refused-1"]
    assert letter["status"] == 403
    assert "You do not have permission to create call logs for other users" in letter["error"]
    assert "(correlationId=" in letter["error"]
    assert letter["attempts"] == 1
    assert len(posts) == 1  # permanent: not retried


def test_the_daily_budget_keeps_calls_queued_instead_of_dead_lettering_them(tmp_path, redis_url, redis_client):
    with running_fake(daily_tokens=25) as fake:  # the email search (20) leaves too little for a call log
        fake.add_person("John Doe", emails=(JOHN_EMAIL,))
        settings = worker_settings(tmp_path, fake)
        with running_worker(settings, redis_url):
            enqueue(redis_client, settings, [("daily-1", payload_bytes(call_session_id="daily-1"))], ("pd",))
            paused = wait_for(
                lambda: [e for e in history(settings, redis_client, "daily-1") if e.get("type") == "paused"], timeout=15
            )
        assert fake.throttled["daily"] == 1

    assert "Daily API token budget exceeded" in paused[0]["reason"]
    assert paused[0]["retry_after"] > 60
    assert dead_letters(settings, redis_client, "pd") == {}
    assert call_store(redis_client, settings).done("daily-1", "pd") is None
    assert fake.live_call_logs() == []
