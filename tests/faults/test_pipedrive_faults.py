"""The exactly-once promise against Pipedrive, with real processes: SIGKILL the worker while call logs and
follow-up activities are being written, answer some writes with a 5xx after they landed, throw in 429 bursts,
and the fake Pipedrive must end with exactly one call log and one follow-up per call.

Pipedrive has no idempotency key, no upsert and no external id; what keeps duplicates out is the core ledger
plus the reconciliation lookup of each record's ``agni:<call_session_id>`` marker (the token user's call-log
listing, a person's recent activities) — the same listings the real API offers.
"""

from __future__ import annotations

import json
import re
import signal
from collections import Counter

import pytest

from bridge.embedded_redis import EmbeddedRedis
from tests.conftest import payload_bytes, wait_for
from tests.fakes.httpserver import Fault
from tests.fakes.pipedrive import TOKEN, FakePipedrive
from tests.faults.harness import Agni, Bridge

N = 200
MARKER = re.compile(r"agni:([\w-]+?)(:follow_up)?</p>$")
PENDING = {"sentiment": "neutral", "disposition": "callback_requested", "goals_met": False,
           "next_steps": "Call back with a quote."}  # fmt: skip
OVER_LIMIT = {"success": False, "error": "Request over limit", "errorCode": 429}


@pytest.fixture
def pipedrive():
    fake = FakePipedrive(requests_per_2s=100, search_per_2s=10)
    fake.add_person("John Doe", emails=("john@example.com",))
    fake.start()
    yield fake
    fake.stop()


def markers(records: list[dict]) -> Counter[str]:
    found = Counter()
    for record in records:
        match = MARKER.search(record.get("note") or "")
        if match:
            found[match.group(1)] += 1
    return found


def test_a_worker_killed_mid_write_with_5xx_and_429s_leaves_one_call_log_and_one_follow_up_per_call(
    tmp_path, pipedrive
):
    redis_server = EmbeddedRedis(tmp_path / "redis", appendonly=True)
    redis_server.start()
    connectors = (
        f"  pipedrive: {{type: pipedrive, base_url: '{pipedrive.url}', auth: {{api_token: '${{PD_TOKEN}}'}},"
        " requests_per_2s: 100, search_settle_seconds: 1}\n"
    )
    bridge = Bridge(tmp_path, redis_server.url, connectors)
    bridge.env.update(PD_TOKEN=TOKEN)
    # A slow Pipedrive so the kill lands mid-write; some writes land and then fail, some are throttled.
    pipedrive.latency_seconds = 0.05
    pipedrive.faults.add(Fault(status=502, body=b"<html>Bad gateway</html>", after_handling=True), times=4,
                         path_prefix="/v1/callLogs", method="POST")  # fmt: skip
    pipedrive.faults.add(Fault(status=500, body={"success": False, "error": "Internal error"}, after_handling=True),
                         times=4, path_prefix="/api/v2/activities", method="POST")  # fmt: skip
    pipedrive.faults.add(Fault(status=429, body=OVER_LIMIT, headers={"x-ratelimit-reset": "1"}), times=8)
    ids = [f"pd-{i:04d}" for i in range(N)]
    try:
        bridge.start("api")
        victim = bridge.start("worker")
        bodies = [_pending(call_id) for call_id in ids]
        agni = Agni(bridge.url)
        for body in bodies:
            agni.send(body)
        wait_for(lambda: len(pipedrive.live_call_logs()) >= 20, timeout=60, message="some call logs")
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
        pipedrive.latency_seconds = 0.0
        bridge.start("worker")
        try:
            wait_for(
                lambda: len(markers(pipedrive.live_call_logs())) == len(markers(pipedrive.live_activities())) == N,
                timeout=180,
                interval=0.25,
                message="every call's call log and follow-up in Pipedrive",
            )
        except AssertionError as exc:
            missing = sorted(set(ids) - set(markers(pipedrive.live_call_logs())))
            unfollowed = sorted(set(ids) - set(markers(pipedrive.live_activities())))
            raise AssertionError(f"{exc}; no call log: {missing[:10]}, no follow-up: {unfollowed[:10]}; "
                                 f"worker logs:\n{bridge.log_text()[-4000:]}") from exc  # fmt: skip
    finally:
        bridge.stop_all()
        redis_server.stop()
    logs, follow_ups = markers(pipedrive.live_call_logs()), markers(pipedrive.live_activities())
    assert sorted(logs) == sorted(follow_ups) == ids
    assert set(logs.values()) == set(follow_ups.values()) == {1}, "a call was written twice"
    assert len(pipedrive.live_call_logs()) == len(pipedrive.live_activities()) == N
    print(f"\npipedrive faults: {pipedrive.total_requests} requests, throttled {dict(pipedrive.throttled)}")


def _pending(call_id: str) -> bytes:
    body = json.loads(payload_bytes(call_session_id=call_id))
    body["data"]["post_call_analysis"] = PENDING
    return json.dumps(body).encode()
