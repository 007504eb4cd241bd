"""Batched Task upserts: a burst of calls costs a few sObject Collections requests, and every call still lands once.

A real Dramatiq worker (64 threads, real Redis) delivers bursts of queued calls to the fake org over TLS, through
real simple-salesforce; the org answers each request after 50 ms, like a CRM across the internet. Calls carry no
email or phone (and on_missing is unlinked), so no lookup is needed and every request counted is a Task upsert;
batched lookups are tested in test_salesforce_batching_lookups.py.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bridge.errors import PermanentError, RetryableError
from tests.conftest import log_view
from tests.fakes.httpserver import Fault

pytest_plugins = ("tests.connectors.salesforce_support",)  # fixtures: pki, org, salesforce, burst

EXT = "Agni_Call_Session_Id__c"
COLLECTION = "PATCH /composite/sobjects/Task/{ext}"
SINGLE = "PATCH /sobjects/Task/{ext}"
ANONYMOUS = {"caller_email": None, "phone": None}  # nobody to look up: only Task upserts are sent
OPEN_NEXT_STEPS = {
    "sentiment": "neutral",
    "disposition": "callback_requested",
    "goals_met": False,
    "next_steps": "Send the pricing sheet and call back on Friday.",
}
LATENCY = 0.05
THREADS = {"threads": 64}


def upserts(org) -> int:
    return org.requests[COLLECTION] + org.requests[SINGLE]


def test_a_burst_of_300_calls_lands_as_exactly_300_tasks_with_a_small_fraction_of_the_requests(
    salesforce, org, burst, redis_client
):
    # Given 300 queued calls and a worker with 64 threads, against an org that answers in 50 ms
    org.latency_seconds = LATENCY
    calls = {f"burst-{i:03d}": ANONYMOUS for i in range(300)}

    # When the worker drains the queue
    burst(salesforce.settings(worker=THREADS), calls)

    # Then every call is one Task, and the upserts took far fewer requests than calls
    assert sorted(task[EXT] for task in org.tasks) == sorted(calls)
    assert not log_view(salesforce.settings(), redis_client).dead_letters("sf")
    assert org.requests[COLLECTION] >= 1
    # One request per call without batching; ~0.04 per call on a quiet machine (bench/ measures the target).
    # The bound leaves room for a loaded machine, where the worker hands calls over more slowly.
    assert upserts(org) <= 0.2 * len(calls), org.requests
    assert org.requests["GET /query"] == org.requests["GET /search"] == 0


def test_one_record_salesforce_rejects_inside_a_batch_dead_letters_only_its_call_with_salesforces_message(
    salesforce, org, burst, redis_client
):
    # Given a mapping whose CallType (a restricted picklist) is invalid for one agent's calls only
    mapping = salesforce.mapping_file(
        "picklist.yaml",
        'fields:\n  Subject: "Call {{ call.call_session_id }}"\n'
        "  CallType: \"{{ 'Sideways' if call.agent_name == 'Rogue' else 'Outbound' }}\"\n",
    )
    org.latency_seconds = LATENCY
    calls = {f"mixed-{i:02d}": {**ANONYMOUS, "agent_name": "Rogue" if i == 7 else "Support Agent"} for i in range(30)}

    burst(salesforce.settings(mapping=mapping, worker=THREADS), calls)

    # Then only that call is dead-lettered, at once, with what Salesforce said; the 29 others landed
    letters = log_view(salesforce.settings(), redis_client).dead_letters("sf")
    assert list(letters) == ["mixed-07"]
    letter = letters["mixed-07"]
    assert letter["code"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" and letter["attempts"] == 1
    assert "Call Type: bad value for restricted picklist field: Sideways" in letter["error"]
    assert "fields=CallType" in letter["error"]
    assert sorted(task[EXT] for task in org.tasks) == sorted(set(calls) - {"mixed-07"})
    # and the rejected record really was one of a batch, not sent alone
    batched = [r for r in org.request_log if r.method == "PATCH" and "/composite/" in r.path]
    assert any(any(rec[EXT] == "mixed-07" for rec in r.json()["records"]) for r in batched)
    assert upserts(org) <= 10  # 30 without batching


def test_follow_up_tasks_are_batched_too_and_a_replay_of_the_burst_creates_nothing_new(
    salesforce, org, burst, redis_client
):
    # Given 100 queued calls whose next steps are open: each needs a call Task and a follow-up Task
    org.latency_seconds = LATENCY
    calls = {f"follow-{i:03d}": {**ANONYMOUS, "post_call_analysis": OPEN_NEXT_STEPS} for i in range(100)}
    settings = salesforce.settings(worker=THREADS)

    burst(settings, calls)

    assert org.count("Task") == 200
    follow_ups = {task[EXT] for task in org.tasks if task["Status"] == "Not Started"}
    assert follow_ups == {f"{call_id}:follow_up" for call_id in calls}
    first_requests = upserts(org)
    assert first_requests <= 0.3 * len(calls), org.requests  # two Tasks per call: 200 requests unbatched

    # When every call is delivered again at once (a replay of the whole burst, straight to the connector)
    connector = salesforce.connector()
    with ThreadPoolExecutor(50) as pool:
        replayed = list(pool.map(lambda c: salesforce.deliver(connector, call_session_id=c, **calls[c]), calls))

    # Then the same Tasks were updated, none created, and the call Tasks are still calls
    assert org.count("Task") == 200
    view = log_view(salesforce.settings(), redis_client)
    done = {c: view.records(c, "sf") for c in calls}
    assert {c: r.records for c, r in zip(calls, replayed, strict=True)} == done
    assert {task["TaskSubtype"] for task in org.tasks if task["Status"] == "Completed"} == {"Call"}
    assert upserts(org) - first_requests < 0.5 * len(calls)  # 200 unbatched


def test_batch_size_1_sends_one_single_upsert_per_task_as_before(salesforce, org, burst):
    org.latency_seconds = 0.01
    calls = {f"single-{i:02d}": ANONYMOUS for i in range(40)}

    burst(salesforce.settings(batch_size=1, worker=THREADS), calls)

    assert sorted(task[EXT] for task in org.tasks) == sorted(calls)
    assert org.requests[COLLECTION] == 0
    assert org.requests[SINGLE] == 40


# -- the same guarantees, deterministically, with threads calling the connector at once ------------------


def calls_named(prefix: str, count: int) -> list[dict[str, Any]]:
    return [{**ANONYMOUS, "call_session_id": f"{prefix}-{i}"} for i in range(count)]


def deliver_at_once(salesforce, connector, data: list[dict[str, Any]]) -> list[Any]:
    """Deliver every payload from its own thread, all released together; each result or exception, in order."""
    barrier = threading.Barrier(len(data))

    def one(payload: dict[str, Any]) -> Any:
        delivery = salesforce.delivery(connector, **payload)
        barrier.wait()
        try:
            return connector.deliver(delivery)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(data)) as pool:
        return list(pool.map(one, data))


def test_a_lone_call_at_a_quiet_moment_goes_out_at_once_as_the_single_upsert(salesforce, org):
    # A batch window of a full second: a lone call that waited for it would take at least that long.
    connector = salesforce.connector(batch_max_wait_seconds=1)
    salesforce.deliver(connector, call_session_id="warm-up", **ANONYMOUS)  # token and describe out of the way
    before = org.requests[SINGLE]

    started = time.monotonic()
    salesforce.deliver(connector, call_session_id="alone", **ANONYMOUS)

    assert time.monotonic() - started < 1.0  # the batcher's linger is 20 ms, not a window
    assert org.requests[SINGLE] == before + 1 and org.requests[COLLECTION] == 0


def test_the_same_call_twice_in_one_batch_is_written_once_and_both_get_its_task(salesforce, org):
    # Given 10 calls, each delivered twice at the same moment (a concurrent redelivery)
    org.latency_seconds = LATENCY
    connector = salesforce.connector()
    data = [{**ANONYMOUS, "call_session_id": f"twin-{i % 10}"} for i in range(20)]

    results = deliver_at_once(salesforce, connector, data)

    # Then there are 10 Tasks, both copies of a call got the same one, and they stayed calls
    assert org.count("Task") == 10
    ids = {task[EXT]: task["Id"] for task in org.tasks}
    assert [r.records["Task"] for r in results] == [ids[d["call_session_id"]] for d in data]
    assert {task["TaskSubtype"] for task in org.tasks} == {"Call"}
    assert org.requests[COLLECTION] >= 1 and upserts(org) < 10


def test_a_call_whose_external_id_is_shared_by_two_tasks_fails_alone_with_what_to_fix(salesforce, org):
    org.add_task(**{EXT: "shared-3"})
    org.add_task(**{EXT: "shared-3"})
    org.latency_seconds = LATENCY
    connector = salesforce.connector()

    results = deliver_at_once(salesforce, connector, calls_named("shared", 8))

    failed = results[3]
    assert isinstance(failed, PermanentError) and failed.status == 300
    assert f"several Task records share external id {EXT}=shared-3" in failed.message
    assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i != 3)
    assert org.count("Task") == 2 + 7


def test_a_failed_batch_request_fails_every_call_in_it_with_a_retryable_error(salesforce, org):
    org.latency_seconds = LATENCY
    connector = salesforce.connector()  # the test settings make one attempt per request (http_attempts: 1)
    salesforce.deliver(connector, call_session_id="warm-up", **ANONYMOUS)
    busy = [{"message": "busy", "errorCode": "SERVER_UNAVAILABLE"}]
    org.faults.fail_for(30, Fault(status=503, body=busy), path_prefix="/services/data/v62.0/composite/")

    results = deliver_at_once(salesforce, connector, calls_named("down", 6))

    assert all(isinstance(r, RetryableError) and r.code == "SERVER_UNAVAILABLE" for r in results), results
    assert len({id(r) for r in results}) == 6  # each thread raises its own exception object
    assert org.count("Task") == 1


def test_a_400_for_the_whole_batch_is_narrowed_down_so_the_good_records_still_land(salesforce, org):
    # Given an org that refuses the next collection request as a whole (a value it could not parse, say)
    org.latency_seconds = LATENCY
    connector = salesforce.connector()
    salesforce.deliver(connector, call_session_id="warm-up", **ANONYMOUS)  # describe + token out of the way
    refusal = [{"message": "Cannot deserialize instance of int", "errorCode": "JSON_PARSER_ERROR"}]
    org.faults.add(Fault(status=400, body=refusal), path_prefix="/services/data/v62.0/composite/")

    results = deliver_at_once(salesforce, connector, calls_named("half", 8))

    # Then the batch was split and re-sent instead of dead-lettering every call in it
    assert all(not isinstance(r, Exception) for r in results), results
    assert org.count("Task") == 9
    refused = next(r for r in org.request_log if "/composite/" in r.path)
    assert len(refused.json()["records"]) > 1


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("UNABLE_TO_LOCK_ROW", RetryableError),
        ("REQUEST_LIMIT_EXCEEDED", "paused"),
        ("STRING_TOO_LONG", PermanentError),
    ],
)
def test_a_per_record_error_is_translated_like_the_same_error_on_a_single_request(code, kind):
    from bridge.errors import PausedError
    from connectors.salesforce.errors import error_from_save_result

    answer = {"success": False, "errors": [{"statusCode": code, "message": "said Salesforce", "fields": ["Subject"]}]}
    error = error_from_save_result(answer, "upsert Task X=1", limit_pause=60)

    assert error.code == code and error.status is None  # the answer was a 200: no HTTP status of its own
    assert error.details == {"request": "upsert Task X=1", "fields": "Subject"}
    if kind == "paused":
        assert isinstance(error, PausedError) and error.retry_after == 60
    else:
        assert isinstance(error, kind) and not isinstance(error, PausedError)
        assert error.message == "said Salesforce"
