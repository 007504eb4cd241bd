"""Fault injection with real processes: for each scenario, N calls go in and exactly N records come out.

Every scenario runs `agni-bridge api` and `agni-bridge worker` as subprocesses on a Redis of its own
(append-only, so it can be restarted), against receivers that keep one record per webhook-id — the
contract a Standard Webhooks receiver or a CRM upsert gives. The assertions are exact counts: no call
lost, none doubled. `--soak` runs the long variants (30 s outages, a minute of duplicates).
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bridge.embedded_redis import EmbeddedRedis
from tests.conftest import payload_bytes, wait_for
from tests.fakes.httpserver import Fault
from tests.faults.harness import Agni, Bridge, Receiver, connector_yaml

N = 200


@pytest.fixture
def redis_server(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def bridge(tmp_path, redis_server, receiver):
    bridge = Bridge(tmp_path, redis_server.url, connector_yaml("crm", f"{receiver.url}/in"))
    yield bridge
    bridge.stop_all()


def calls(prefix: str, n: int = N) -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(n)]


def test_duplicate_webhooks_concurrent_and_over_time_give_one_delivery_each(bridge, receiver, request):
    bridge.start("api")
    bridge.start("worker")
    agni = Agni(bridge.url)
    ids = calls("dup")
    answers = agni.send_calls(ids, copies=3, threads=32)  # every call three times, interleaved
    assert sum(a["status"] == "accepted" for a in answers) == N
    one = payload_bytes(call_session_id="dup-hot")
    with ThreadPoolExecutor(50) as pool:
        statuses = [a["status"] for a in pool.map(agni.send, [one] * 50)]
    assert statuses.count("accepted") == 1
    spread = 60 if request.config.getoption("--soak") else 5
    for _ in range(10):
        assert agni.send(one)["status"] == "duplicate"
        time.sleep(spread / 10)
    wait_for(lambda: len(receiver.records) == N + 1, timeout=60, message="all deliveries")
    time.sleep(1)  # a duplicate would arrive right behind; none may
    assert receiver.call_ids() == set(ids) | {"dup-hot"}
    assert sum(receiver.writes.values()) == N + 1  # not even a duplicate request


def test_redis_down_at_ingest_answers_503_and_every_call_arrives_once_redis_is_back(bridge, receiver, redis_server):
    bridge.start("api")
    bridge.start("worker")
    agni = Agni(bridge.url)
    ids = calls("redis-down")
    answers: list[dict] = []
    sender = threading.Thread(target=lambda: answers.extend(agni.send_calls(ids, threads=8)))
    sender.start()
    # Stop and restart Redis from this (main) thread: the embedded server dies with the thread that started it.
    wait_for(lambda: sum(agni.answers.values()) >= 20, timeout=20)
    redis_server.stop()
    time.sleep(3)
    redis_server.start()
    sender.join(120)
    assert agni.answers["503"] > 0, "the outage should have been visible to the sender"
    assert {a["status"] for a in answers} <= {"accepted", "duplicate"}
    wait_for(lambda: len(receiver.records) == N, timeout=90, message="every call after the outage")
    assert receiver.call_ids() == set(ids)


def test_a_worker_killed_mid_write_is_redelivered_and_the_crm_holds_one_record_each(bridge, receiver):
    # Every write is slow, so the SIGKILL lands while writes are in flight at the receiver.
    receiver.delay = 0.3
    bridge.start("api")
    victim = bridge.start("worker")
    agni = Agni(bridge.url)
    ids = calls("kill")
    agni.send_calls(ids)
    wait_for(lambda: len(receiver.records) >= 20, timeout=30)
    victim.send_signal(signal.SIGKILL)
    victim.wait(5)
    in_flight_before = len(receiver.records)
    receiver.delay = 0.0
    bridge.start("worker")  # the survivor picks up the queue and, after the heartbeat timeout, the victim's calls
    wait_for(lambda: len(receiver.records) == N, timeout=120, message="redelivery of the killed worker's calls")
    assert receiver.call_ids() == set(ids)
    assert in_flight_before < N


def test_crm_outage_throttling_resets_and_hangs_still_deliver_every_call_once(
    tmp_path, redis_server, receiver, request
):
    # A short HTTP timeout, so the hangs below outlast it (elsewhere it is long enough for a loaded machine).
    bridge = Bridge(tmp_path, redis_server.url, connector_yaml("crm", f"{receiver.url}/in"), timeout=2)
    request.addfinalizer(bridge.stop_all)
    outage = 30 if request.config.getoption("--soak") else 6
    receiver.faults.fail_for(outage, Fault(status=503, body=b"maintenance"))
    receiver.faults.add(Fault(status=429, headers={"retry-after": "1"}), times=30)
    receiver.faults.add(Fault(reset=True), times=20)
    receiver.faults.add(Fault(hang_seconds=4), times=10)  # longer than the 2 s timeout; the write lands late
    receiver.faults.add(Fault(status=500, after_handling=True), times=10)  # written, then answered 500
    bridge.start("api")
    bridge.start("worker")
    ids = calls("flaky")
    Agni(bridge.url).send_calls(ids)
    wait_for(lambda: receiver.call_ids() == set(ids), timeout=180, message="every call through the faults")
    assert len(receiver.records) == N
    assert sum(receiver.writes.values()) > N  # retried writes happened, and were absorbed by the upsert


def test_one_connector_failing_for_good_leaves_the_others_on_time(tmp_path, redis_server, receiver):
    broken = Receiver().start()
    broken.faults.fail_for(600, Fault(status=500))
    bridge = Bridge(
        tmp_path,
        redis_server.url,
        connector_yaml("good", f"{receiver.url}/in") + connector_yaml("bad", f"{broken.url}/in"),
    )
    try:
        bridge.start("api")
        bridge.start("worker")
        ids = calls("iso")
        Agni(bridge.url).send_calls(ids)
        # Each failing call of the other connector is retried for 10 minutes; these arrive in seconds.
        wait_for(lambda: len(receiver.records) == N, timeout=60, message="the healthy connector")
        assert not broken.records
    finally:
        bridge.stop_all()
        broken.stop()


def test_sigterm_lets_in_flight_work_finish_and_loses_nothing(bridge, receiver):
    receiver.delay = 0.5
    api = bridge.start("api")
    worker = bridge.start("worker")
    agni = Agni(bridge.url)
    ids = calls("term")
    agni.send_calls(ids)
    wait_for(lambda: len(receiver.records) >= 10, timeout=30)

    # The API: requests in flight when SIGTERM arrives still get their answer; later ones are refused
    # (connection errors, which Agni retries), never answered 5xx.
    def late_post(i: int) -> tuple[str, int | None]:
        call_id = f"late-{i}"
        try:
            response = httpx.post(
                f"{bridge.url}/webhooks/agni",
                content=payload_bytes(call_session_id=call_id),
                headers={"content-type": "application/json"},
                timeout=10,
            )
        except httpx.TransportError:
            return call_id, None
        return call_id, response.status_code

    with ThreadPoolExecutor(8) as pool:
        pending = [pool.submit(late_post, i) for i in range(8)]
        time.sleep(0.05)
        api.send_signal(signal.SIGTERM)
        outcomes = [f.result() for f in pending]
    assert api.wait(20) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its graceful shutdown
    assert {code for _, code in outcomes} <= {200, None}
    late = [call_id for call_id, code in outcomes if code == 200]

    # The worker: in-flight deliveries finish, prefetched calls go back to the queue.
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    delivered_by_first = len(receiver.records)
    receiver.delay = 0.0
    bridge.start("worker")
    expected = set(ids) | set(late)
    wait_for(lambda: receiver.call_ids() == expected, timeout=60, message="the rest after a graceful stop")
    assert delivered_by_first < len(expected)
    assert sum(receiver.writes.values()) == len(expected), "a graceful stop must not cause a second write"


def test_queued_calls_survive_a_redis_restart_with_append_only_persistence(bridge, receiver, redis_server):
    bridge.start("api")
    ids = calls("aof")
    Agni(bridge.url).send_calls(ids)  # no worker yet: everything stays queued
    redis_server.stop()  # SIGTERM: Redis flushes its append-only file
    redis_server.start()
    bridge.start("worker")
    wait_for(lambda: len(receiver.records) == N, timeout=60, message="queued calls after the restart")
    assert receiver.call_ids() == set(ids)


def test_no_secret_reaches_the_logs(bridge, receiver):
    receiver.faults.add(Fault(status=400, body=b"bad"), times=5)
    bridge.start("api")
    bridge.start("worker")
    Agni(bridge.url).send_calls(calls("secret", 20))
    wait_for(lambda: len(receiver.records) >= 15, timeout=30)
    bridge.stop_all()
    logs = bridge.log_text()
    secret = bridge.env["FWD_SECRET"]
    password = bridge.env["AGNI_BRIDGE_REDIS_URL"].split(":")[2].split("@")[0]
    assert logs, "the processes should have logged something"
    assert secret not in logs and secret.removeprefix("whsec_") not in logs
    assert password not in logs


def test_deliveries_that_outlast_the_shutdown_timeout_are_requeued_at_once(tmp_path, redis_server, receiver):
    # A heartbeat timeout far longer than the test: only the explicit requeue can bring the calls back in time.
    bridge = Bridge(tmp_path, redis_server.url, connector_yaml("crm", f"{receiver.url}/in"), timeout=30, shutdown=1)
    bridge.config.write_text(
        bridge.config.read_text().replace("heartbeat_timeout_seconds: 5", "heartbeat_timeout_seconds: 600")
    )
    # The first eight writes hang, then fail without landing: only a redelivery can bring those calls in, and
    # it must not wait for the abandoned attempts' locks to expire (minutes).
    receiver.faults.add(Fault(hang_seconds=20, reset=True), times=8)
    try:
        bridge.start("api")
        worker = bridge.start("worker")
        ids = calls("slow", 20)
        Agni(bridge.url).send_calls(ids)
        wait_for(lambda: len(receiver.request_log) >= 8, timeout=20)
        stopped = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
        assert time.monotonic() - stopped < 10
        assert "did not finish in time and were put back" in bridge.log_text()
        bridge.start("worker")
        wait_for(lambda: receiver.call_ids() == set(ids), timeout=40, message="requeued calls")
    finally:
        bridge.stop_all()
