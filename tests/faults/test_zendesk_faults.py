"""The exactly-once promise against Zendesk, with real `agni-bridge api` and `worker` processes: SIGKILL a worker
while ticket creates are in flight, answer some creates with a 5xx after the ticket was written, throw in a
burst of 429s — and the fake Zendesk must end with exactly one ticket per call (N = 200)."""

from __future__ import annotations

import signal
import time

import pytest
import redis

from bridge.embedded_redis import EmbeddedRedis
from bridge.keys import Keys
from bridge.store import CallStore
from tests.conftest import wait_for
from tests.fakes.httpserver import Fault
from tests.fakes.zendesk import RATE_LIMITED, FakeZendesk
from tests.faults.harness import Agni, Bridge

N = 200
TICKETS = "/api/v2/tickets"


@pytest.fixture
def zendesk():
    fake = FakeZendesk(requests_per_minute=1000)
    fake.add_user("John Doe", email="john@example.com", phone="+14155550100")  # the example's caller
    fake.start()
    yield fake
    fake.stop()


def test_a_killed_worker_5xx_after_writes_and_429_bursts_leave_exactly_one_ticket_per_call(tmp_path, zendesk):
    redis_server = EmbeddedRedis(tmp_path / "redis", appendonly=True)
    redis_server.start()
    connectors = (
        f"  zendesk: {{type: zendesk, base_url: '{zendesk.url}', requests_per_minute: 1000,"
        f" auth: {{email: '{zendesk.email}', api_token: '${{ZD_TOKEN}}'}}}}\n"
    )
    bridge = Bridge(tmp_path, redis_server.url, connectors)
    bridge.env.update(ZD_TOKEN=zendesk.api_token)
    # A slow Zendesk, so the kill lands mid-write; some creates are written and then answered 502/503.
    zendesk.latency_seconds = 0.05
    zendesk.faults.add(Fault(status=502, after_handling=True), times=5, path_prefix=TICKETS, method="POST")
    zendesk.faults.add(Fault(status=503, body={"error": "Service Unavailable"}, after_handling=True), times=3,
                       path_prefix=TICKETS, method="POST")  # fmt: skip
    too_many = Fault(status=429, body=RATE_LIMITED, headers={"Retry-After": "1", "content-type": "text/plain"})
    ids = [f"zd-{i:04d}" for i in range(N)]
    try:
        bridge.start("api")
        victim = bridge.start("worker")
        Agni(bridge.url).send_calls(ids)
        wait_for(lambda: len(zendesk.tickets) >= 20, timeout=60, message="the first tickets")
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
        zendesk.faults.fail_for(1.5, too_many, path_prefix=TICKETS, method="POST")  # a burst of 429s
        zendesk.latency_seconds = 0.0
        started = time.monotonic()
        bridge.start("worker")
        wait_for(lambda: len(zendesk.tickets) >= N, timeout=120, interval=0.2, message="a ticket for every call")
        # Every call's job has finished (its done-marker is set), and redelivered jobs have gone quiet.
        done = CallStore(redis.Redis.from_url(redis_server.url), Keys("agni"), retention_seconds=3600)
        wait_for(lambda: all(done.done(i, "zendesk") for i in ids), timeout=60, interval=0.5, message="done-markers")
        wait_for(lambda: _settled(zendesk), timeout=30, interval=0.5, message="no request for 2 s")
        settled = time.monotonic() - started
    finally:
        bridge.stop_all()
        redis_server.stop()

    with zendesk.lock:
        external_ids = sorted(t["external_id"] for t in zendesk.tickets.values())
        creates = sum(1 for r in zendesk.request_log if r.method == "POST" and r.path == TICKETS)
        listings = sum(1 for r in zendesk.request_log if r.method == "GET" and r.path == TICKETS)
    print(f"\nzendesk faults: settled {settled:.1f}s after the restart; {creates} creates, {listings} listings")
    assert external_ids == sorted(ids)  # exactly one ticket per call
    assert len(zendesk.users) == 2  # the API user and John: nobody was created twice
    assert listings >= 8  # every create answered 5xx after it was written was reconciled by a listing
    assert creates > N  # 429s and the kill made creates go out again: the guards, not luck, kept one per call


def _settled(fake: FakeZendesk) -> bool:
    """True once the fake has seen no request for two seconds."""
    with fake.lock:
        count = len(fake.request_log)
    time.sleep(2)
    with fake.lock:
        return len(fake.request_log) == count
