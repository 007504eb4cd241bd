"""The call log's database going away under load: deliveries never stop, nothing in the log is lost.

A PostgreSQL of the test's own (pgserver, in a temporary folder) is stopped for 30 s while 200 calls go
through real `agni-bridge api` and `worker` processes. Every call must reach the receiver exactly once
during and after the outage, `/readyz` and `/metrics` must say the log is lagging while it lasts, and
once the database is back the log must hold every call as delivered, with the lag back to zero.
Also here: a worker started on a Redis that an older version filled moves that log into the database.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import redis
from pgserver._commands import pg_ctl

from bridge.embedded_redis import EmbeddedRedis
from bridge.keys import Keys
from bridge.settings import load_settings
from tests.conftest import log_view, wait_for
from tests.db.test_lifecycle import write_legacy_log
from tests.faults.harness import Agni, Bridge, Receiver, connector_yaml

N = 200


@pytest.fixture
def redis_server(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres():
    """A PostgreSQL of this test's own, to stop and start. Its folder is outside pytest's (0700) temporary
    folders: the server runs as an unprivileged user, which must still reach it when it starts again."""
    import shutil
    import tempfile

    import pgserver

    folder = tempfile.mkdtemp(prefix="agni-pg-")
    server = pgserver.get_server(folder, cleanup_mode="stop")
    yield server
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


def with_database(bridge: Bridge, url: str) -> None:
    bridge.config.write_text(bridge.config.read_text() + f"database: {{url: '{url}'}}\n")


def readyz(bridge: Bridge) -> dict:
    return httpx.get(f"{bridge.url}/readyz", timeout=5).json()


def test_the_database_stopped_for_30s_during_200_calls_loses_nothing_and_the_log_catches_up(
    tmp_path, redis_server, postgres, receiver, request
):
    bridge = Bridge(tmp_path, redis_server.url, connector_yaml("crm", f"{receiver.url}/in"))
    with_database(bridge, postgres.get_uri())
    request.addfinalizer(bridge.stop_all)
    bridge.start("api")
    bridge.start("worker")
    ids = [f"dbdown-{i:03d}" for i in range(N)]
    agni = Agni(bridge.url)
    sender = threading.Thread(target=lambda: [agni.send(_body(i)) for i in ids], daemon=True)

    # The first calls are logged normally.
    sender.start()
    wait_for(lambda: len(receiver.records) >= 40, timeout=60, message="the first deliveries")

    # The database stops for 30 s while calls keep arriving.
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=postgres.pgdata, user=postgres.system_user)
    stopped = time.monotonic()
    delivered_at_stop = len(receiver.records)
    wait_for(lambda: len(receiver.records) >= delivered_at_stop + 50, timeout=25, message="deliveries to go on")
    wait_for(lambda: readyz(bridge)["log"]["status"] == "lagging", timeout=25, message="readyz to say the log lags")
    lagging = readyz(bridge)
    assert lagging["status"] == "ready" and lagging["log"]["lag_events"] > 0
    metrics = httpx.get(f"{bridge.url}/metrics", timeout=5).text
    assert "agni_bridge_log_lag_events" in metrics and "agni_bridge_log_lag_events 0.0" not in metrics
    time.sleep(max(0.0, 30 - (time.monotonic() - stopped)))  # the rest of the outage
    postgres.ensure_postgres_running()

    # Then every call arrived once, and the log holds them all as delivered, with no lag left.
    sender.join(120)
    wait_for(lambda: receiver.call_ids() == set(ids), timeout=60, message="every call")
    assert max(receiver.writes.values()) == 1, "a database outage must never cause a second write"
    wait_for(lambda: readyz(bridge)["log"]["lag_events"] == 0, timeout=60, message="the log to catch up")
    client = redis.Redis.from_url(redis_server.url)
    view = log_view(load_settings(bridge.config, env=bridge.env), client)
    try:
        statuses = {call_id: view.log.report(call_id).status for call_id in ids}
        assert set(statuses.values()) == {"delivered"}
        assert not redis_server_keys(client, "agni:call:*"), "payloads of finished calls must leave Redis"
    finally:
        view.close()
        client.close()


def test_a_worker_on_an_older_versions_redis_moves_its_log_into_the_database(tmp_path, redis_server, receiver):
    client = redis.Redis.from_url(redis_server.url)
    write_legacy_log(client, Keys())
    bridge = Bridge(tmp_path, redis_server.url, connector_yaml("crm", f"{receiver.url}/in"))
    try:
        bridge.start("worker")
        settings = load_settings(bridge.config, env=bridge.env)
        view = log_view(settings, client)
        try:
            wait_for(lambda: view.log.report("legacy-dead") is not None, timeout=30, message="the import")
            assert view.log.report("legacy-ok").status == "delivered"
            assert not client.exists(Keys().legacy_index)
        finally:
            view.close()
    finally:
        bridge.stop_all()
        client.close()


def redis_server_keys(client: redis.Redis, pattern: str) -> list[bytes]:
    return list(client.scan_iter(pattern, count=1000))


def _body(call_id: str) -> bytes:
    from tests.conftest import payload_bytes

    return payload_bytes(call_session_id=call_id)
