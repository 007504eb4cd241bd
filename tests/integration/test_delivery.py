"""A real Dramatiq worker on a real Redis delivers accepted calls to a local HTTP receiver, exactly once."""

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bridge.embedded_redis import EmbeddedRedis
from bridge.keys import Keys
from bridge.store import CallStore
from tests.conftest import (
    dead_letters,
    history,
    make_settings,
    payload_bytes,
    running_api,
    running_worker,
    wait_for,
)
from tests.fakes.httpserver import Fault

JSON = {"content-type": "application/json"}


@pytest.fixture
def settings(tmp_path, sink):
    return make_settings(
        tmp_path,
        connectors={
            "fwd": {"type": "webhook_forward", "url": f"{sink.url}/calls"},
            "out": {"type": "jsonl", "path": str(tmp_path / "out.jsonl")},
        },
    )


def outbox(tmp_path):
    path = tmp_path / "out.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def store(redis_client, settings):
    return CallStore(redis_client, Keys(settings.redis.prefix), retention_seconds=3600)


def test_an_accepted_call_is_delivered_to_every_connector(tmp_path, settings, redis_url, sink, redis_client):
    body = payload_bytes(call_session_id="d-1")
    with running_worker(settings, redis_url), running_api(settings, redis_url) as base:
        assert httpx.post(f"{base}/webhooks/agni", content=body, headers=JSON).json()["status"] == "accepted"
        wait_for(lambda: sink.received and outbox(tmp_path), timeout=15, message="both deliveries")
    assert sink.received[0].body == body
    record = outbox(tmp_path)[0]
    assert record["call_session_id"] == "d-1"
    assert record["record"]["subject"] == "Call with John Doe"
    events = wait_for(lambda: len(h := history(settings, redis_client, "d-1")) >= 3 and h, timeout=15)
    assert events[0]["type"] == "received"
    assert {e["connector"] for e in events if e.get("outcome") == "delivered"} == {"fwd", "out"}


def test_duplicates_sequential_and_concurrent_produce_one_delivery(tmp_path, settings, redis_url, sink):
    with running_worker(settings, redis_url), running_api(settings, redis_url) as base:
        with httpx.Client(base_url=base) as client:
            seq = payload_bytes(call_session_id="dup-seq")
            for _ in range(5):
                client.post("/webhooks/agni", content=seq, headers=JSON)
            conc = payload_bytes(call_session_id="dup-conc")
            with ThreadPoolExecutor(20) as pool:
                list(pool.map(lambda _: client.post("/webhooks/agni", content=conc, headers=JSON), range(20)))
        wait_for(lambda: len(sink.received) >= 2 and len(outbox(tmp_path)) >= 2, timeout=15)
        # Give any stray duplicate job the time to show itself: wait for the queues to be empty.
        keys = Keys()
        client = httpx.Client(base_url=base)
        wait_for(lambda: 'queue="ready"} 0.0' in client.get("/metrics").text, timeout=10)
    ids = sorted(json.loads(r.body)["data"]["call_session_id"] for r in sink.received)
    assert ids == ["dup-conc", "dup-seq"]
    assert sorted(r["call_session_id"] for r in outbox(tmp_path)) == ["dup-conc", "dup-seq"]
    assert keys


def test_a_job_retried_after_a_500_delivers_once(tmp_path, settings, redis_url, sink, redis_client):
    sink.faults.add(Fault(status=500), times=2)
    with running_worker(settings, redis_url), running_api(settings, redis_url) as base:
        httpx.post(f"{base}/webhooks/agni", content=payload_bytes(call_session_id="r-1"), headers=JSON)
        wait_for(lambda: sink.received, timeout=20, message="delivery after retries")
    assert len(sink.received) == 1
    assert len(sink.request_log) == 3
    outcomes = [e.get("outcome") for e in history(settings, redis_client, "r-1") if e.get("connector") == "fwd"]
    assert outcomes == ["retry", "retry", "delivered"]


def test_a_write_that_landed_before_a_timeout_is_not_repeated_by_a_redelivered_job(
    tmp_path, settings, redis_url, sink, redis_client
):
    # The receiver takes the write, then the worker is told the job must run again (as after a crash):
    # the done-marker stops a second write.
    with running_worker(settings, redis_url), running_api(settings, redis_url) as base:
        httpx.post(f"{base}/webhooks/agni", content=payload_bytes(call_session_id="once"), headers=JSON)
        wait_for(lambda: sink.received, timeout=15)
        # The first delivery has finished (and let go of its lock) before the job comes back.
        wait_for(lambda: store(redis_client, settings).done("once", "fwd"), timeout=15, message="the done-marker")
        # Enqueue the same job again through Dramatiq's own broker, as a redelivery would.
        import dramatiq
        from dramatiq.brokers.redis import RedisBroker

        from bridge.keys import ACTOR_NAME

        keys = Keys()
        broker = RedisBroker(client=redis_client, namespace=keys.namespace)
        queue = keys.queue("fwd")
        broker.enqueue(
            dramatiq.Message(queue_name=queue, actor_name=ACTOR_NAME, args=("once", "fwd"), kwargs={}, options={})
        )
        wait_for(lambda: redis_client.hlen(keys.queue_messages(queue)) == 0, timeout=10, message="the job to run")
    assert len(sink.received) == 1
    events = [e for e in history(settings, redis_client, "once") if e.get("connector") == "fwd"]
    assert [e["type"] for e in events] == ["attempt"]  # the redelivery stopped at the marker: no attempt, no wait


def test_a_permanent_failure_becomes_a_dead_letter_at_once(tmp_path, settings, redis_url, sink, redis_client):
    sink.faults.add(Fault(status=422, body=b'{"error":"field x is invalid"}'), times=1)
    with running_worker(settings, redis_url), running_api(settings, redis_url) as base:
        httpx.post(f"{base}/webhooks/agni", content=payload_bytes(call_session_id="dead-1"), headers=JSON)
        letters = wait_for(lambda: dead_letters(settings, redis_client, "fwd"), timeout=15)
        wait_for(lambda: outbox(tmp_path), timeout=15, message="the other connector's record")
    letter = letters["dead-1"]
    assert letter["status"] == 422
    assert "field x is invalid" in letter["error"]
    assert letter["attempts"] == 1
    assert json.loads(letter["payload"])["data"]["call_session_id"] == "dead-1"
    assert len(sink.request_log) == 1  # not retried


def test_retries_exhausted_become_a_dead_letter(tmp_path, redis_url, sink, redis_client):
    settings = make_settings(
        tmp_path,
        delivery={"max_retries": 2, "min_backoff_seconds": 0.02, "max_backoff_seconds": 0.05},
        connectors={"fwd": {"type": "webhook_forward", "url": f"{sink.url}/calls"}},
    )
    sink.faults.fail_for(60, Fault(status=503))
    with running_worker(settings, redis_url), running_api(settings, redis_url) as base:
        httpx.post(f"{base}/webhooks/agni", content=payload_bytes(call_session_id="exhaust"), headers=JSON)
        letters = wait_for(lambda: dead_letters(settings, redis_client, "fwd"), timeout=20)
    assert letters["exhaust"]["attempts"] == 3
    assert letters["exhaust"]["status"] == 503
    assert len(sink.request_log) == 3


def test_redis_outage_at_ingest_then_delivery_once_redis_is_back(tmp_path, settings, sink):
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True)
    server.start()
    body = payload_bytes(call_session_id="outage")
    try:
        with running_api(settings, server.url) as base, httpx.Client(base_url=base, timeout=15) as api:
            server.stop()
            assert api.post("/webhooks/agni", content=body, headers=JSON).status_code == 503
            server.start()
            with running_worker(settings, server.url):
                wait_for(lambda: api.post("/webhooks/agni", content=body, headers=JSON).status_code == 200, timeout=15)
                wait_for(lambda: sink.received, timeout=15)
    finally:
        server.stop()
    assert len(sink.received) == 1
