"""The same promise against the CRM connectors: SIGKILL a worker while Salesforce and HubSpot writes are in
flight, throw in 5xx and 429 answers, and each fake CRM must end with exactly one record per call."""

from __future__ import annotations

import signal

import pytest

from bridge.embedded_redis import EmbeddedRedis
from tests.conftest import wait_for
from tests.fakes.httpserver import Fault
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.salesforce import FakeSalesforce
from tests.fakes.tls import make_test_pki
from tests.faults.harness import Agni, Bridge

N = 200


@pytest.fixture
def crms(tmp_path):
    pki = make_test_pki(tmp_path / "pki")
    salesforce = FakeSalesforce(ssl_context=pki.server_context())
    hubspot = FakeHubSpot(token="hs-token", requests_per_10s=400)
    hubspot.define_property("calls", "agni_call_session_id")
    hubspot.define_property("tasks", "agni_call_session_id")
    salesforce.start()
    hubspot.start()
    yield pki, salesforce, hubspot
    salesforce.stop()
    hubspot.stop()


def test_a_worker_killed_mid_write_leaves_exactly_one_task_and_one_call_per_call(tmp_path, crms):
    pki, salesforce, hubspot = crms
    token = salesforce.add_session()
    redis_server = EmbeddedRedis(tmp_path / "redis", appendonly=True)
    redis_server.start()
    connectors = (
        f"  salesforce: {{type: salesforce, instance_url: '{salesforce.url}', ca_bundle: '{pki.ca_path}',"
        " auth: {method: session, session_id: '${SF_SESSION}'}}\n"
        f"  hubspot: {{type: hubspot, access_token: '${{HS_TOKEN}}', base_url: '{hubspot.url}',"
        " requests_per_10s: 400, search_per_second: 20}\n"
    )
    bridge = Bridge(tmp_path, redis_server.url, connectors)
    bridge.env.update(SF_SESSION=token, HS_TOKEN="hs-token")
    # Slow CRMs so the kill lands mid-write; some writes land and then fail, some are throttled.
    salesforce.latency_seconds = hubspot.latency_seconds = 0.05
    salesforce.faults.add(
        Fault(status=500, body=[{"message": "boom", "errorCode": "UNKNOWN_EXCEPTION"}], after_handling=True), times=5
    )
    hubspot.faults.add(Fault(status=502, after_handling=True), times=5)
    hubspot.faults.add(
        Fault(
            status=429,
            body={
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "policyName": "TEN_SECONDLY_ROLLING",
            },
        ),
        times=5,
    )
    try:
        bridge.start("api")
        victim = bridge.start("worker")
        ids = [f"crm-{i:04d}" for i in range(N)]
        Agni(bridge.url).send_calls(ids)
        wait_for(lambda: salesforce.count("Task") >= 20 or hubspot.count("calls") >= 20, timeout=60)
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
        salesforce.latency_seconds = hubspot.latency_seconds = 0.0
        bridge.start("worker")
        wait_for(
            lambda: salesforce.count("Task") == N and hubspot.count("calls") == N,
            timeout=240,
            message="every call in both CRMs",
        )
    finally:
        bridge.stop_all()
        redis_server.stop()
    tasks = [t["Agni_Call_Session_Id__c"] for t in salesforce.tasks]
    calls = [c["properties"]["agni_call_session_id"] for c in hubspot.objects["calls"].values()]
    assert sorted(tasks) == sorted(ids)
    assert sorted(calls) == sorted(ids)
