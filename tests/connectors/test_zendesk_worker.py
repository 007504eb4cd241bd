"""Zendesk connector through real Dramatiq workers on real Redis: a burst lands once, a refusal dead-letters
with Zendesk's message, and a long 429 keeps calls queued."""

from __future__ import annotations

from contextlib import ExitStack

from tests.conftest import call_store, dead_letters, enqueue, history, payload_bytes, running_worker, wait_for
from tests.connectors.zendesk_support import MAPPINGS, TICKETS, posts, running_fake, seed, worker_settings
from tests.fakes.httpserver import Fault
from tests.fakes.zendesk import RATE_LIMITED


def test_a_burst_of_calls_from_two_workers_lands_once_each_without_a_429(tmp_path, redis_url, redis_client):
    with running_fake(requests_per_minute=200) as fake:
        people = seed(fake)
        settings = worker_settings(tmp_path, fake, threads=8, owner_map={"Support Agent": people.agent})
        calls = [(f"burst-{i:03d}", payload_bytes(call_session_id=f"burst-{i:03d}")) for i in range(60)]

        with ExitStack() as stack:
            stack.enter_context(running_worker(settings, redis_url))
            stack.enter_context(running_worker(settings, redis_url))
            enqueue(redis_client, settings, calls, ("zd",))
            done = call_store(redis_client, settings)
            wait_for(lambda: all(done.done(call_id, "zd") for call_id, _ in calls), timeout=60, message="done markers")

        for call_id, _ in calls:
            ticket = fake.only_ticket(call_id)
            assert (ticket["requester_id"], ticket["assignee_id"]) == (people.john, people.agent)
        assert fake.throttled == {}
        assert posts(fake) == 60
        assert dead_letters(settings, redis_client, "zd") == {}


def test_a_record_invalid_becomes_a_dead_letter_with_zendesks_message(tmp_path, redis_url, redis_client):
    mapping = tmp_path / "broken.yaml"
    text = (MAPPINGS / "zendesk_ticket.yaml").read_text()
    mapping.write_text(text.replace("\nfields:\n", "\nfields:\n  priority: whenever\n", 1))
    with running_fake() as fake:
        seed(fake)
        settings = worker_settings(tmp_path, fake, mapping=str(mapping))
        with running_worker(settings, redis_url):
            enqueue(redis_client, settings, [("invalid-1", payload_bytes(call_session_id="invalid-1"))], ("zd",))
            letters = wait_for(lambda: dead_letters(settings, redis_client, "zd"), timeout=15)

        letter = letters["invalid-1"]
        assert letter["status"] == 422
        assert letter["code"] == "RecordInvalid"
        assert "Record validation errors: Priority: whenever is not valid" in letter["error"]
        assert "(priority=Priority: whenever is not valid)" in letter["error"]
        assert "(request_id=" in letter["error"]
        assert letter["attempts"] == 1
        assert posts(fake) == 1  # permanent: not retried
        assert fake.tickets == {}


def test_a_long_429_keeps_calls_queued_instead_of_dead_lettering_them(tmp_path, redis_url, redis_client):
    with running_fake() as fake:
        seed(fake)
        hour = Fault(status=429, body=RATE_LIMITED, headers={"Retry-After": "3600", "content-type": "text/plain"})
        fake.faults.fail_for(60, hour, path_prefix=TICKETS)
        settings = worker_settings(tmp_path, fake)
        with running_worker(settings, redis_url):
            enqueue(redis_client, settings, [("paused-1", payload_bytes(call_session_id="paused-1"))], ("zd",))
            events = lambda: history(settings, redis_client, "paused-1")  # noqa: E731
            paused = wait_for(lambda: [e for e in events() if e.get("type") == "paused"], timeout=15)

        assert RATE_LIMITED in paused[0]["reason"]
        assert paused[0]["retry_after"] > 3000
        assert dead_letters(settings, redis_client, "zd") == {}
        assert call_store(redis_client, settings).done("paused-1", "zd") is None
        assert fake.tickets == {}
