"""Salesforce errors and limits, end to end: a real Dramatiq worker on real Redis delivers to the fake org.

A call is accepted the way the API accepts it (bridge.ingest.Ingestor: stored, deduped, enqueued
atomically); the worker builds the connector from settings and runs it; outcomes are read back from
the call log (history, dead letters) and from the fake org.
"""

from __future__ import annotations

import logging
import time

import pytest

from bridge.errors import PausedError, RetryableError
from bridge.ingest import Ingestor
from bridge.keys import Keys
from tests.conftest import log_view, payload_bytes, running_worker, wait_for
from tests.fakes.httpserver import Fault

pytest_plugins = ("tests.connectors.salesforce_support",)  # fixtures: pki, org, salesforce, recordings


def accept(redis_client, call_id: str) -> None:
    ingestor = Ingestor(redis_client, Keys(), dedupe_ttl_seconds=600, retention_seconds=3600)
    assert ingestor.accept_sync(call_id, payload_bytes(call_session_id=call_id), ("sf",), {"type": "received"}).accepted





def test_an_unknown_field_in_the_mapping_dead_letters_the_call_with_salesforces_error_code_and_message(
    salesforce, org, redis_url, redis_client
):
    mapping = salesforce.mapping_file("bogus.yaml", 'fields:\n  Subject: "Call"\n  Bogus__c: "{{ call.status }}"\n')
    settings = salesforce.settings(mapping=mapping)

    view = log_view(settings, redis_client)
    with running_worker(settings, redis_url):
        accept(redis_client, "invalid-field")
        letters = wait_for(lambda: view.dead_letters("sf"), timeout=20, message="a dead letter")

    letter = letters["invalid-field"]
    assert letter["code"] == "INVALID_FIELD" and letter["status"] == 400
    assert "No such column 'Bogus__c' on sobject of type Task" in letter["error"]
    assert "fields=Bogus__c" in letter["error"]
    assert letter["attempts"] == 1  # permanent: not retried
    assert org.count("Task") == 0


def test_request_limit_exceeded_pauses_the_call_and_it_lands_once_the_allocation_frees_up(
    salesforce, org, redis_url, redis_client
):
    settings = salesforce.settings(limit_pause_seconds=0.5)
    org.daily_limit = org.api_usage  # the org has used its whole daily allocation

    view = log_view(settings, redis_client)
    with running_worker(settings, redis_url):
        accept(redis_client, "over-limit")
        wait_for(
            lambda: any(e.get("type") == "paused" for e in view.history("over-limit")),
            timeout=20,
            message="the connector to pause",
        )
        org.daily_limit = 15000  # the rolling 24 h window moved on
        wait_for(lambda: view.done("over-limit", "sf"), timeout=20, message="the delivery")

    history = [e for e in view.history("over-limit") if e.get("connector") == "sf"]
    paused = next(e for e in history if e["type"] == "paused")
    assert paused["reason"] == "daily API limit reached: TotalRequests Limit exceeded." and paused["retry_after"] == 0.5
    assert history[-1]["outcome"] == "delivered"
    assert not any(e.get("outcome") in ("retry", "dead") for e in history)  # a pause uses up no retries
    assert org.count("Task") == 1
    assert not view.dead_letters("sf")


def test_request_limit_exceeded_is_a_pause_of_the_whole_connector(salesforce, org):
    org.daily_limit = org.api_usage
    with pytest.raises(PausedError) as caught:
        salesforce.deliver(salesforce.connector())
    assert caught.value.retry_after == 300 and caught.value.code == "REQUEST_LIMIT_EXCEEDED"


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=503, body=[{"message": "Service unavailable", "errorCode": "SERVER_UNAVAILABLE"}]),
        Fault(status=400, body=[{"message": "unable to obtain exclusive access", "errorCode": "UNABLE_TO_LOCK_ROW"}]),
        Fault(reset=True),
    ],
    ids=["503", "row-lock", "connection-reset"],
)
def test_transient_failures_are_retryable(salesforce, org, fault):
    org.faults.fail_for(30, fault, path_prefix="/services/data/v62.0/sobjects/Task/Agni")
    with pytest.raises(RetryableError) as caught:
        salesforce.deliver(salesforce.connector())
    assert not isinstance(caught.value, PausedError)


def test_a_transient_failure_is_retried_in_call_and_the_write_lands(salesforce, org):
    org.faults.add(
        Fault(status=503, body=[{"message": "busy", "errorCode": "SERVER_UNAVAILABLE"}]),
        path_prefix="/services/data/v62.0/sobjects/Task/Agni",
    )
    connector = salesforce.connector(delivery={"http_attempts": 2})  # the default is 3; the test settings use 1
    salesforce.deliver(connector)
    assert org.count("Task") == 1
    assert [r.method for r in org.request_log].count("PATCH") == 2  # the 503 (served by the fault) and the retry


def test_above_the_warning_share_of_the_daily_allocation_it_warns_once_a_minute_and_slows_down(salesforce, org, caplog):
    connector = salesforce.connector(
        use_redis=False
    )  # no match cache: each call makes 5 requests (4 lookups, 1 upsert)
    salesforce.deliver(connector, call_session_id="relaxed")  # far below the limit: no pause, no warning
    org.daily_limit, org.api_usage = 10_000, 9_100  # 91%: 10% of the way from the 90% warning share to the limit
    caplog.set_level(logging.WARNING)

    started = time.monotonic()
    salesforce.deliver(connector, call_session_id="busy-1")
    salesforce.deliver(connector, call_session_id="busy-2")
    elapsed = time.monotonic() - started

    warnings = [r.getMessage() for r in caplog.records if "API usage" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith("Salesforce API usage is 910") and "/10000" in warnings[0]
    assert elapsed > 1.0  # ~0.2 s before each of the 9 requests that follow the first answer over the share
    assert org.count("Task") == 3
