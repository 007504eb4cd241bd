"""`agni-bridge run` as a user runs it: a subprocess with its own embedded Redis."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bridge.embedded_redis import free_port
from tests.conftest import EXAMPLE, ORG_ID, ROOT, wait_for

CONFIG = """
server: {{host: 127.0.0.1, port: {port}}}
agni: {{org_ids: ["{org}"]}}
data_dir: {data}
mappings_dir: {mappings}
worker: {{threads: 2, shutdown_timeout_seconds: 5}}
connectors:
  outbox: {{type: jsonl, path: {data}/outbox.jsonl, mapping: jsonl_record.yaml}}
  forward: {{type: webhook_forward, url: "{sink}/agni"}}
"""


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def bridge(tmp_path, sink):
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        CONFIG.format(port=port, org=ORG_ID, data=tmp_path / "var", mappings=ROOT / "mappings", sink=sink.url)
    )
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "AGNI_BRIDGE_REDIS_URL")}
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "--config", str(config), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def ready():
        try:
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(lambda: ready() or process.poll() is not None, timeout=30, message="bridge to be ready")
        assert process.poll() is None, process.stdout.read().decode()
        yield process, base, tmp_path
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_run_delivers_the_example_call_and_stops_cleanly(bridge, sink):
    process, base, tmp_path = bridge
    response = httpx.post(
        f"{base}/webhooks/agni", content=EXAMPLE.read_bytes(), headers={"content-type": "application/json"}
    )
    assert response.json()["status"] == "accepted"
    outbox = tmp_path / "var" / "outbox.jsonl"
    wait_for(lambda: outbox.exists() and outbox.read_text().strip(), timeout=10, message="the outbox record")
    wait_for(lambda: sink.received, timeout=10, message="the forwarded webhook")
    record = json.loads(outbox.read_text().splitlines()[0])
    assert record["record"]["call_session_id"] == "019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d"
    assert sink.received[0].body == EXAMPLE.read_bytes()

    children = children_of(process.pid)
    assert len(children) == 3  # redis-server, worker, api
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    wait_for(lambda: not any(alive(pid) for pid in children), timeout=10, message="children to exit")
    assert (tmp_path / "var" / "redis" / "appendonlydir").exists() or list((tmp_path / "var" / "redis").glob("*.aof"))


def test_the_embedded_redis_is_on_disk_before_a_call_is_acknowledged(bridge):
    """The default fsync policy is `always`: Redis fsyncs its append-only file before it replies."""
    import redis

    _, _, tmp_path = bridge
    client = redis.Redis.from_url((tmp_path / "var" / "redis" / "url").read_text(), decode_responses=True)
    try:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
    finally:
        client.close()


def test_killing_the_bridge_leaves_no_orphan_processes(bridge):
    process, _, _ = bridge
    children = children_of(process.pid)
    assert len(children) == 3
    process.kill()
    process.wait(10)
    wait_for(lambda: not any(alive(pid) for pid in children), timeout=15, message="orphans to die with the parent")
