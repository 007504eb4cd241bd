"""Redis crashing under a running worker, and a worker crashing under Redis: nothing stranded, lost or doubled.

Real processes (`agni-bridge api` and `worker`), a Redis of the test's own with `appendfsync always` that
is SIGKILLed and restarted on the same port, and receivers that count every write. The worker is never
restarted in the Redis tests: it must recover by itself.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis

from bridge.embedded_redis import EmbeddedRedis
from bridge.settings import load_settings
from tests.conftest import log_view, wait_for
from tests.fakes.httpserver import Fault
from tests.faults.harness import Agni, Bridge, Receiver, connector_yaml


@pytest.fixture
def redis_server(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True, fsync="always")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


def started_calls(receiver: Receiver) -> set[str]:
    """Calls whose write has reached the receiver (it may still be in progress or have failed)."""
    with receiver.lock:
        return {request.json()["data"]["call_session_id"] for request in receiver.request_log}


def statuses(bridge: Bridge, redis_url: str, ids: list[str]) -> dict[str, str]:
    """Each call's status in the call log (`calls show`), once the log has caught up with the stream."""
    client = redis.Redis.from_url(redis_url)
    view = log_view(load_settings(bridge.config, env=bridge.env), client)
    try:
        return {call_id: (report.status if (report := view.report(call_id)) else "unknown") for call_id in ids}
    finally:
        view.close()
        client.close()


def restart_redis_abruptly(server: EmbeddedRedis, down_for: float) -> None:
    server.kill()  # SIGKILL: no shutdown, no final flush; only what was fsynced survives
    time.sleep(down_for)  # the outage itself
    server.start()


def test_calls_in_retry_backoff_survive_a_redis_crash_and_are_delivered_without_restarting_the_worker(
    tmp_path, redis_server, receiver
):
    # Given 40 calls whose deliveries all failed once and now wait in retry backoff (the receiver answers 503)
    bridge = Bridge(tmp_path, redis_server.url, connector_yaml("crm", f"{receiver.url}/in"))
    # No circuit breaker here: every call must make its own attempt and wait in its own backoff.
    bridge.config.write_text(bridge.config.read_text().replace("circuit_failures: 20", "circuit_failures: 1000"))
    try:
        receiver.faults.fail_for(3600, Fault(status=503, body=b"maintenance"))
        bridge.start("api")
        worker = bridge.start("worker")
        ids = [f"backoff-{i:03d}" for i in range(40)]
        Agni(bridge.url).send_calls(ids)
        wait_for(lambda: started_calls(receiver) == set(ids), timeout=60, message="a failed attempt of every call")

        # When Redis is SIGKILLed and comes back 2 s later, and then the receiver recovers
        restart_redis_abruptly(redis_server, down_for=2)
        receiver.faults.clear()

        # Then every call is delivered within the backoff window (2 s) plus a minute, by the same worker
        wait_for(lambda: receiver.call_ids() == set(ids), timeout=62, message="every call after the Redis crash")
        assert worker.poll() is None, "the worker must recover by itself, not by a restart"
        assert len(bridge.processes) == 2
        wait_for(
            lambda: set(statuses(bridge, redis_server.url, ids).values()) == {"delivered"},
            timeout=30,
            message="the log to say delivered",
        )
    finally:
        bridge.stop_all()


def test_deliveries_in_flight_when_redis_crashes_are_logged_as_delivered_and_written_once(
    tmp_path, redis_server, receiver
):
    # Given 20 deliveries in flight at a slow receiver (every write takes 1.5 s)
    bridge = Bridge(tmp_path, redis_server.url, connector_yaml("crm", f"{receiver.url}/in"))
    bridge.config.write_text(bridge.config.read_text().replace("threads: 8", "threads: 24"))
    try:
        bridge.start("api")
        ids = [f"inflight-{i:03d}" for i in range(20)]
        Agni(bridge.url).send_calls(ids)  # all queued before the worker starts
        receiver.delay = 1.5
        worker = bridge.start("worker")
        wait_for(lambda: started_calls(receiver) == set(ids), timeout=30, message="all 20 writes under way")

        # When Redis is SIGKILLed while the writes land, and is back 3 s later
        restart_redis_abruptly(redis_server, down_for=3)
        receiver.delay = 0.0

        # Then every call the receiver took is recorded as delivered within a minute, and none was written twice
        wait_for(
            lambda: set(statuses(bridge, redis_server.url, ids).values()) == {"delivered"},
            timeout=60,
            message=f"every call logged as delivered: {statuses(bridge, redis_server.url, ids)}",
        )
        assert receiver.call_ids() == set(ids)
        assert max(receiver.writes.values()) == 1, receiver.writes
        assert worker.poll() is None
    finally:
        bridge.stop_all()


def test_a_killed_workers_deliveries_come_back_right_after_the_heartbeat_timeout_with_default_settings(
    tmp_path, redis_server, receiver
):
    # Default worker settings (heartbeat timeout 30 s, Dramatiq's maintenance left to chance by default).
    bridge = Bridge(tmp_path, redis_server.url, connector_yaml("crm", f"{receiver.url}/in"), timeout=20)
    config = bridge.config.read_text()
    for line in ("  heartbeat_timeout_seconds: 5\n", "  maintenance_chance: 200000\n"):
        assert line in config
        config = config.replace(line, "")
    bridge.config.write_text(config)
    # The first 8 writes (one per worker thread) hang and never land: only a redelivery brings those calls in.
    receiver.faults.add(Fault(hang_seconds=120, reset=True), times=8)
    try:
        bridge.start("api")
        victim = bridge.start("worker")
        ids = [f"crash-{i:03d}" for i in range(8)]
        Agni(bridge.url).send_calls(ids)
        wait_for(lambda: started_calls(receiver) == set(ids), timeout=30, message="all 8 writes hanging")

        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        victim.wait(5)
        bridge.start("worker")
        wait_for(lambda: receiver.call_ids() == set(ids), timeout=90, message="redelivery of the killed worker's calls")
        recovery = time.monotonic() - killed
        print(f"\ncrash recovery with default settings: {recovery:.1f}s after SIGKILL (heartbeat timeout 30 s)")
        # Before leases, the per-call lock (150 s) held the redelivered calls back long after the timeout.
        assert 29 <= recovery < 40, recovery
    finally:
        bridge.stop_all()
