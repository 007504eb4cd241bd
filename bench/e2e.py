"""End-to-end latency at a light steady load: webhook sent → record at the receiver (a forward target)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.procs import ORG, ROOT, peak_rss_mb, serve, start_worker, stop
from tests.fakes.httpserver import FakeRequest, FakeResponse, FakeServer

CONFIG = """
agni: {{org_ids: ["{org}"]}}
data_dir: {data}
mappings_dir: {mappings}
logging: {{level: WARNING}}
connectors:
  forward: {{type: webhook_forward, url: "{url}/in"}}
"""


class Arrivals(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, float] = {}

    def handle(self, request: FakeRequest) -> FakeResponse:
        call_id = json.loads(request.body)["data"]["call_session_id"]
        with self.lock:
            self.seen.setdefault(call_id, time.monotonic())
        return FakeResponse(200, b"{}", {"content-type": "application/json"})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def end_to_end(tmp: Path, redis_url: str, *, seconds: float = 15.0, rate: float = 20.0) -> dict[str, Any]:
    receiver = Arrivals().start()
    config = tmp / "e2e.yaml"
    config.write_text(CONFIG.format(org=ORG, data=tmp / "var-e2e", mappings=ROOT / "mappings", url=receiver.url))
    env = {"AGNI_BRIDGE_CONFIG": str(config), "AGNI_BRIDGE_REDIS_URL": redis_url}
    payload = json.loads((ROOT / "examples" / "call_completed.json").read_text())
    sent: dict[str, float] = {}
    worker = start_worker(config, env)
    try:
        with serve("uvicorn", "bench.apps:bridge_app", env) as (url, api_pid), httpx.Client(base_url=url) as client:
            time.sleep(1.0)  # the worker's consumers start
            total = int(seconds * rate)
            start = time.monotonic()
            for i in range(total):
                target = start + i / rate
                time.sleep(max(0.0, target - time.monotonic()))
                payload["data"]["call_session_id"] = call_id = f"e2e-{i}-{start}"
                sent[call_id] = time.monotonic()
                client.post("/webhooks/agni", content=json.dumps(payload), headers={"content-type": "application/json"})
            deadline = time.monotonic() + 30
            while len(receiver.seen) < total and time.monotonic() < deadline:
                time.sleep(0.05)
            api_rss = peak_rss_mb(api_pid)
        worker_rss = peak_rss_mb(worker.pid)
    finally:
        stop(worker)
        receiver.stop()
    latencies = [(receiver.seen[c] - t) * 1000 for c, t in sent.items() if c in receiver.seen]
    result = {
        "rate_per_s": rate,
        "calls": len(sent),
        "delivered": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
        "api_peak_rss_mb": round(api_rss, 1),
        "worker_peak_rss_mb": round(worker_rss, 1),
    }
    print(f"  e2e at {rate:.0f}/s: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms", flush=True)
    return result
