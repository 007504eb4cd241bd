"""Dynamics 365 connector through real Dramatiq workers on real Redis: dead letters, a burst, throttling."""

from __future__ import annotations

import time
from contextlib import ExitStack

from connectors.dynamics.odata import phonecall_id
from tests.conftest import (
    ROOT,
    call_store,
    dead_letters,
    enqueue,
    history,
    payload_bytes,
    running_worker,
    wait_for,
)
from tests.fakes.httpserver import Fault

pytest_plugins = ("tests.connectors.dynamics_support",)  # fixtures: fake, dyn


def test_a_refused_column_becomes_a_dead_letter_with_dataverses_code_and_message(
    tmp_path, dyn, fake, redis_url, redis_client
):
    mapping = tmp_path / "broken.yaml"
    text = (ROOT / "mappings" / "dynamics_phonecall.yaml").read_text()
    mapping.write_text(text.replace("\nfields:\n", '\nfields:\n  agni_nope: "x"\n', 1))
    settings = dyn.settings(tmp_path, mapping=str(mapping))

    with running_worker(settings, redis_url):
        enqueue(redis_client, settings, [("bad-1", payload_bytes(call_session_id="bad-1"))], ("dyn",))
        letters = wait_for(lambda: dead_letters(settings, redis_client, "dyn"), timeout=15)

    letter = letters["bad-1"]
    assert (letter["status"], letter["code"], letter["attempts"]) == (400, "0x80060888", 1)
    assert "The property 'agni_nope' does not exist on type 'Microsoft.Dynamics.CRM.phonecall'" in letter["error"]
    assert f"(request=create phonecall {phonecall_id('bad-1')})" in letter["error"]
    assert "(request-id=" in letter["error"]
    assert fake.count("phonecall") == 0
    assert fake.requests["POST $batch"] == 1  # permanent: not retried


def test_a_missing_privilege_dead_letters_with_the_privilege_named(tmp_path, dyn, fake, redis_url, redis_client):
    fake.privileges.discard("prvCreateActivity")
    settings = dyn.settings(tmp_path)
    with running_worker(settings, redis_url):
        enqueue(redis_client, settings, [("priv-1", payload_bytes(call_session_id="priv-1"))], ("dyn",))
        letters = wait_for(lambda: dead_letters(settings, redis_client, "dyn"), timeout=15)
    letter = letters["priv-1"]
    assert (letter["status"], letter["code"]) == (403, "0x80040220")
    assert "is missing prvCreateActivity privilege" in letter["error"]


def test_a_burst_lands_exactly_once_in_few_requests_without_a_429(tmp_path, dyn, fake, redis_url, redis_client):
    # Given an application user allowed 60 requests per 5 minutes, and two worker processes' worth of runtimes
    fake.requests_per_window = 60
    people = [dyn.person(i) for i in range(6)]
    for p in people:
        fake.add("contact", lastname="Doe", emailaddress1=p["caller_email"], telephone1=p["phone"])
    settings = dyn.settings(tmp_path, threads=16, requests_per_5_minutes=60, batch_size=50, batch_linger_seconds=0.1)
    calls = [(f"burst-{i:03d}", payload_bytes(call_session_id=f"burst-{i:03d}", **people[i % 6])) for i in range(150)]

    # When 150 calls arrive at once
    with ExitStack() as stack:
        stack.enter_context(running_worker(settings, redis_url))
        stack.enter_context(running_worker(settings, redis_url))
        started = time.monotonic()
        enqueue(redis_client, settings, calls, ("dyn",))
        done = call_store(redis_client, settings)
        wait_for(lambda: all(done.done(call_id, "dyn") for call_id, _ in calls), timeout=60, interval=0.2)
        elapsed = time.monotonic() - started

    # Then every call is one completed phone call on the right contact, and Dataverse never refused a request
    phonecalls = fake.records("phonecall")
    assert sorted(c["activityid"] for c in phonecalls) == sorted(phonecall_id(call_id) for call_id, _ in calls)
    assert {c["statecode"] for c in phonecalls} == {1}
    contacts = {c["emailaddress1"]: c["contactid"] for c in fake.records("contact")}
    for call_id, _ in calls:
        expected = contacts[people[int(call_id.split("-")[1]) % 6]["caller_email"]]
        assert fake.get("phonecall", phonecall_id(call_id))["_regardingobjectid_value"] == expected
    assert fake.throttled == {}
    assert dead_letters(settings, redis_client, "dyn") == {}
    per_call = fake.total_requests / len(calls)
    print(f"\nburst: 150 calls in {elapsed:.1f}s, {fake.total_requests} Dataverse requests ({per_call:.3f} per call)")
    assert per_call < 0.4  # writes share change-set batches; lookups share one and are cached


def test_throttling_keeps_calls_queued_until_dataverse_lets_them_through(tmp_path, dyn, fake, redis_url, redis_client):
    message = (
        "Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds over time window "
        "of 300 seconds."
    )
    throttled = {"error": {"code": "0x80072321", "message": message}}
    fake.faults.add(Fault(status=429, body=throttled, headers={"Retry-After": "1"}), times=3, path_prefix="/api/data/")
    settings = dyn.settings(tmp_path)
    calls = [(f"t-{i}", payload_bytes(call_session_id=f"t-{i}", **dyn.person(i))) for i in range(5)]
    with running_worker(settings, redis_url):
        enqueue(redis_client, settings, calls, ("dyn",))
        done = call_store(redis_client, settings)
        wait_for(lambda: all(done.done(call_id, "dyn") for call_id, _ in calls), timeout=30, interval=0.1)
    assert fake.count("phonecall") == 5
    assert dead_letters(settings, redis_client, "dyn") == {}
    events = [e for call_id, _ in calls for e in history(settings, redis_client, call_id)]
    paused = [e for e in events if e.get("type") == "paused"]
    assert any("Combined execution time of incoming requests exceeded" in e.get("reason", "") for e in paused)
    assert not [e for e in events if e.get("outcome") == "retry"]  # no retry was used up
