"""The exactly-once promise against Dataverse, with real `agni-bridge api` and `worker` processes: SIGKILL a worker
while phone calls are being written, answer some writes with a 5xx after they landed, throw in a burst of 429s —
and each fake environment must end with exactly one completed phone call per call (N = 200).

Two connectors run side by side, each on its own environment: `dynbatch` writes every call as one change set
inside shared $batch requests (create and close in one transaction), `dynsingle` (batch_size 1) one request at
a time, where a kill or a lost answer between the create and the close leaves an open phone call that only the
redelivery's "already exists → read the state → close it" path completes.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis

from bridge.embedded_redis import EmbeddedRedis
from bridge.keys import Keys
from bridge.store import CallStore
from connectors.dynamics.odata import phonecall_id
from tests.conftest import wait_for
from tests.fakes.dynamics import CLIENT_ID, CLIENT_SECRET, TENANT, FakeDynamics
from tests.fakes.httpserver import Fault
from tests.faults.harness import Agni, Bridge

N = 200
API = "/api/data/v9.2/"
THROTTLED = {
    "error": {
        "code": "0x80072322",
        "message": "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
    }
}


@pytest.fixture
def environments():
    fakes = {"dynbatch": FakeDynamics(), "dynsingle": FakeDynamics()}
    for fake in fakes.values():
        fake.start()
        fake.add("contact", firstname="John", lastname="Doe", emailaddress1="john@example.com")  # the example's caller
    yield fakes
    for fake in fakes.values():
        fake.stop()


def connector_yaml(name: str, fake: FakeDynamics, batch_size: int) -> str:
    auth = (
        f"{{tenant_id: '{TENANT}', client_id: '{CLIENT_ID}', client_secret: '${{DYN_SECRET}}', "
        f"token_url: '{fake.token_url}'}}"
    )
    return f"  {name}: {{type: dynamics, instance_url: '{fake.url}', batch_size: {batch_size}, auth: {auth}}}\n"


def test_a_killed_worker_5xx_after_writes_and_429_bursts_leave_one_completed_phone_call_per_call(
    tmp_path, environments
):
    batched, single = environments["dynbatch"], environments["dynsingle"]
    redis_server = EmbeddedRedis(tmp_path / "redis", appendonly=True)
    redis_server.start()
    bridge = Bridge(
        tmp_path, redis_server.url, connector_yaml("dynbatch", batched, 20) + connector_yaml("dynsingle", single, 1)
    )
    bridge.env.update(DYN_SECRET=CLIENT_SECRET)
    # Slow environments, so the kill lands mid-write; some writes land and are then answered 502.
    for fake in environments.values():
        fake.latency_seconds = 0.05
    batched.faults.add(Fault(status=502, after_handling=True), times=5, path_prefix=f"{API}$batch")
    single.faults.add(Fault(status=502, after_handling=True), times=8, path_prefix=f"{API}phonecalls(", method="PATCH")
    too_many = Fault(status=429, body=THROTTLED, headers={"Retry-After": "1"})
    ids = [f"dyn-{i:04d}" for i in range(N)]
    try:
        bridge.start("api")
        victim = bridge.start("worker")
        Agni(bridge.url).send_calls(ids)
        wait_for(lambda: single.count("phonecall") >= 20, timeout=60, message="the first phone calls")
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
        for fake in environments.values():
            fake.faults.fail_for(1.5, too_many, path_prefix=API)  # a burst of 429s
            fake.latency_seconds = 0.0
        started = time.monotonic()
        bridge.start("worker")
        done = CallStore(redis.Redis.from_url(redis_server.url), Keys("agni"), retention_seconds=3600)
        wait_for(
            lambda: all(done.done(i, name) for i in ids for name in environments),
            timeout=120,
            interval=0.5,
            message="every call delivered to both environments",
        )
        settled = time.monotonic() - started
    finally:
        bridge.stop_all()
        redis_server.stop()

    john = {name: fake.records("contact")[0]["contactid"] for name, fake in environments.items()}
    for name, fake in environments.items():
        calls = fake.records("phonecall")
        assert sorted(c["activityid"] for c in calls) == sorted(phonecall_id(i) for i in ids), name  # one per call
        assert {(c["statecode"], c["statuscode"]) for c in calls} == {(1, 2)}, name  # every one completed
        assert {c["_regardingobjectid_value"] for c in calls} == {john[name]}, name
        assert fake.count("contact") == 1
    duplicates = {name: fake.refusals["0x80040237"] for name, fake in environments.items()}
    print(
        f"\ndynamics faults: settled {settled:.1f}s after the restart; creates refused as already there: {duplicates}"
    )
    # Writes that landed were sent again (5xx after landing, the kill): Dataverse's "already exists", not luck,
    # kept them single — and the open phone calls those left behind were completed by the redeliveries.
    assert duplicates["dynsingle"] >= 8
    assert duplicates["dynbatch"] >= 5
