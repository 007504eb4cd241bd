"""A connector that is down for long: the circuit opens, calls wait without burning retries, others are unaffected."""

import httpx

from tests.conftest import (
    Sink,
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


def test_an_outage_opens_the_circuit_and_every_call_is_delivered_once_it_ends(tmp_path, redis_url, sink, redis_client):
    settings = make_settings(
        tmp_path,
        delivery={
            "max_retries": 3,
            "min_backoff_seconds": 0.05,
            "max_backoff_seconds": 0.1,
            "circuit_failures": 3,
            "circuit_cooldown_seconds": 1,
            "circuit_max_cooldown_seconds": 2,
        },
        connectors={"fwd": {"type": "webhook_forward", "url": f"{sink.url}/in"}},
    )
    calls = [f"outage-{i}" for i in range(20)]
    with running_worker(settings, redis_url), running_api(settings, redis_url) as base:
        # The outage starts once everything runs, so a slow start cannot use it up.
        sink.faults.fail_for(4, Fault(status=503))
        with httpx.Client(base_url=base) as client:
            for call_id in calls:
                client.post("/webhooks/agni", content=payload_bytes(call_session_id=call_id), headers=JSON)
        # With 3 retries each and no circuit, every call would be dead within a second.
        wait_for(lambda: len(sink.received) == len(calls), timeout=30, message="all calls after the outage")
    delivered = sorted(r.json()["data"]["call_session_id"] for r in sink.received)
    assert delivered == sorted(calls)
    assert not dead_letters(settings, redis_client, "fwd")
    # The open circuit is gone once a delivery succeeds; the calls it held back say so in their history.
    held = [
        c
        for c in calls
        if any(e["type"] == "paused" and "circuit open" in e["reason"] for e in history(settings, redis_client, c))
    ]
    assert held, "no call was held back by an open circuit"
    failed_attempts = len(sink.request_log) - len(sink.received)
    assert failed_attempts < 3 * len(calls)  # the open circuit kept calls from hammering the receiver


def test_one_connector_failing_for_good_does_not_delay_the_others(tmp_path, redis_url, sink):
    broken = Sink().start()
    broken.faults.fail_for(120, Fault(status=500))
    try:
        settings = make_settings(
            tmp_path,
            delivery={"max_retries": 30, "min_backoff_seconds": 0.05, "max_backoff_seconds": 0.2},
            connectors={
                "good": {"type": "webhook_forward", "url": f"{sink.url}/in"},
                "bad": {"type": "webhook_forward", "url": f"{broken.url}/in"},
            },
        )
        calls = [f"iso-{i}" for i in range(40)]
        with running_worker(settings, redis_url), running_api(settings, redis_url) as base:
            with httpx.Client(base_url=base) as client:
                for call_id in calls:
                    client.post("/webhooks/agni", content=payload_bytes(call_session_id=call_id), headers=JSON)
            wait_for(lambda: len(sink.received) == len(calls), timeout=15, message="the healthy connector")
        assert broken.received == []
    finally:
        broken.stop()


def test_redaction_applies_to_forwarded_payloads_and_a_connector_can_opt_out(tmp_path, redis_url, sink):
    import json

    settings = make_settings(
        tmp_path,
        redaction={"enabled": True},
        connectors={
            "fwd": {"type": "webhook_forward", "url": f"{sink.url}/in"},
            "raw": {"type": "jsonl", "path": str(tmp_path / "raw.jsonl"), "redact_pii": False, "include_payload": True},
        },
    )
    summary = "Customer gave card 4111 1111 1111 1111 and email jo@example.org; call back on 415-555-0199."
    with running_worker(settings, redis_url), running_api(settings, redis_url) as base:
        httpx.post(f"{base}/webhooks/agni", content=payload_bytes(call_session_id="pii", summary=summary), headers=JSON)
        wait_for(lambda: sink.received and (tmp_path / "raw.jsonl").exists(), timeout=15)
    forwarded = sink.received[0].json()
    assert forwarded["data"]["summary"] == (
        "Customer gave card [redacted card] and email [redacted email]; call back on [redacted phone]."
    )
    assert forwarded["data"]["caller_email"] == "john@example.com"  # structured fields are kept
    raw = json.loads((tmp_path / "raw.jsonl").read_text())
    assert raw["call"]["summary"] == summary
