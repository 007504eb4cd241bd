"""POST /webhooks/agni over HTTP, against a real Redis: every answer of the contract."""

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bridge.embedded_redis import EmbeddedRedis
from bridge.keys import Keys
from tests.conftest import ORG_ID, make_settings, payload_bytes, running_api, wait_for

JSON = {"content-type": "application/json"}


@pytest.fixture
def settings(tmp_path):
    return make_settings(
        tmp_path,
        agni={"org_ids": [ORG_ID], "token": "t0ken-value"},
        server={"max_body_bytes": 4096},
        connectors={"out": {"type": "jsonl", "path": str(tmp_path / "out.jsonl")}},
    )


@pytest.fixture
def api(settings, redis_url):
    with running_api(settings, redis_url) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def post(api, body: bytes, *, token="t0ken-value", headers=None, params=None):
    hdrs = {**JSON, **({"authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    return api.post("/webhooks/agni", content=body, headers=hdrs, params=params)


def queued(redis_client, connector="out"):
    keys = Keys()
    return redis_client.llen(keys.queue_list(keys.queue(connector)))


def test_a_new_call_is_accepted_and_durably_queued_before_the_answer(api, redis_client):
    response = post(api, payload_bytes(call_session_id="c-1"))
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "call_session_id": "c-1"}
    keys = Keys()
    assert redis_client.exists(keys.dedupe("c-1"))
    assert redis_client.get(keys.payload("c-1")) == payload_bytes(call_session_id="c-1")
    assert queued(redis_client) == 1


def test_a_repeated_call_is_a_duplicate_and_nothing_more_is_queued(api, redis_client):
    post(api, payload_bytes(call_session_id="c-2"))
    response = post(api, payload_bytes(call_session_id="c-2"))
    assert response.status_code == 200
    assert response.json() == {"status": "duplicate", "call_session_id": "c-2"}
    assert queued(redis_client) == 1


def test_twenty_concurrent_posts_queue_exactly_one_job(api, redis_client):
    body = payload_bytes(call_session_id="c-concurrent")
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: post(api, body).json()["status"], range(20)))
    assert statuses.count("accepted") == 1
    assert statuses.count("duplicate") == 19
    assert queued(redis_client) == 1


def test_other_events_are_ignored_with_200(api, redis_client):
    body = json.dumps({"event": "call.started", "org_id": ORG_ID, "data": {}}).encode()
    response = post(api, body)
    assert response.status_code == 200
    assert response.json() == {"status": "ignored", "event": "call.started"}
    assert queued(redis_client) == 0


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b"{not json", "$"),
        (
            json.dumps(
                {"event": "call.completed", "org_id": ORG_ID, "data": {"call_session_id": "x", "duration_sec": "long"}}
            ).encode(),
            "$.data.duration_sec",
        ),
        (json.dumps({"event": "call.completed", "org_id": ORG_ID, "data": {}}).encode(), "$.data.call_session_id"),
        (json.dumps({"event": "call.completed", "data": {"call_session_id": "x"}}).encode(), "$.org_id"),
    ],
)
def test_undecodable_bodies_get_400_with_the_path(api, redis_client, body, path):
    response = post(api, body)
    assert response.status_code == 400
    assert response.json()["status"] == "invalid"
    assert response.json()["path"] == path
    assert response.json()["error"]
    assert queued(redis_client) == 0


def test_a_missing_or_wrong_token_gets_401(api):
    assert post(api, payload_bytes(), token=None).status_code == 401
    assert post(api, payload_bytes(), token="wrong").status_code == 401


def test_the_token_may_come_in_the_query_string(api):
    response = post(api, payload_bytes(call_session_id="c-q"), token=None, params={"token": "t0ken-value"})
    assert response.status_code == 200


def test_an_unknown_org_gets_403(api, redis_client):
    body = json.dumps({"event": "call.completed", "org_id": "someone-else", "data": {"call_session_id": "x"}})
    response = post(api, body.encode())
    assert response.status_code == 403
    assert "someone-else" in response.json()["error"]
    assert queued(redis_client) == 0


def test_a_body_over_the_limit_gets_413(api):
    big = payload_bytes(summary="x" * 5000)
    assert post(api, big).status_code == 413


def test_a_non_json_content_type_gets_415(api):
    response = post(api, payload_bytes(), headers={"content-type": "text/plain"})
    assert response.status_code == 415


def test_health_and_readiness(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").status_code == 200


def test_metrics_count_webhooks_by_result(api):
    post(api, payload_bytes(call_session_id="m-1"))
    post(api, payload_bytes(call_session_id="m-1"))
    post(api, b"{", token="t0ken-value")
    text = api.get("/metrics").text
    assert 'agni_bridge_webhooks_total{result="accepted"} 1.0' in text
    assert 'agni_bridge_webhooks_total{result="duplicate"} 1.0' in text
    assert 'agni_bridge_webhooks_total{result="invalid"} 1.0' in text
    assert 'agni_bridge_queue_depth{connector="out",queue="ready"} 1.0' in text


def test_redis_down_gives_503_and_the_retry_is_accepted_once_it_is_back(tmp_path, settings):
    # A Redis of this test's own, so stopping it disturbs no other test.
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True)
    server.start()
    try:
        with running_api(settings, server.url) as base, httpx.Client(base_url=base, timeout=15) as api:
            server.stop()
            body = payload_bytes(call_session_id="c-outage")
            response = post(api, body)
            assert response.status_code == 503
            assert response.json()["status"] == "unavailable"
            assert api.get("/readyz").status_code == 503
            server.start()
            response = wait_for(lambda: (r := post(api, body)).status_code == 200 and r, timeout=15)
            assert response.json()["status"] == "accepted"  # nothing was half-recorded by the failed attempt
    finally:
        server.stop()


def test_calls_are_accepted_after_redis_forgets_the_ingest_script(api, redis_client):
    # A Redis restart without persistence of the script cache: the first EVALSHA says NOSCRIPT.
    post(api, payload_bytes(call_session_id="before-flush"))
    redis_client.script_flush()
    response = post(api, payload_bytes(call_session_id="after-flush"))
    assert response.json()["status"] == "accepted"
    assert queued(redis_client) == 2


def test_a_burst_of_concurrent_calls_is_group_committed_and_each_answered_correctly(api, redis_client):
    bodies = [payload_bytes(call_session_id=f"burst-{i % 50}") for i in range(150)]
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda body: post(api, body).json(), bodies))
    assert sum(a["status"] == "accepted" for a in answers) == 50
    assert sum(a["status"] == "duplicate" for a in answers) == 100
    assert queued(redis_client) == 50
