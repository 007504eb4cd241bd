"""Delivery throughput under a CRM's quota: a burst of queued calls drained by real worker processes.

For each CRM: seed the fake with contacts (a campaign calls the same few hundred people), queue N calls
with no worker running (through the same ingest script as the endpoint; one call in four needs a
follow-up task), then start the workers and time the drain. Reported: calls/s, API requests per
delivered call, 429s received, drain time, peak RSS.

* HubSpot: the fake enforces 190 requests / 10 s and 5 searches / s, like a Professional account.
* Salesforce: the fake answers every request after 50 ms (a CRM across the internet), over TLS.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis

from bench.procs import ORG, ROOT, peak_rss_mb, start_worker, stop
from bridge.ingest import Ingestor
from bridge.keys import Keys
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.salesforce import FakeSalesforce
from tests.fakes.tls import make_test_pki

CONTACTS = 300

CONFIG = """
agni: {{org_ids: ["{org}"]}}
data_dir: {data}
mappings_dir: {mappings}
logging: {{level: WARNING}}
worker: {{threads: {threads}}}
connectors:
{connector}
"""


def _phone(i: int) -> str:
    return f"+1415555{i:04d}"


def _queue(redis_url: str, connector: str, calls: int, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    ingestor = Ingestor(client, Keys(), dedupe_ttl_seconds=86400, retention_seconds=86400)
    payload = json.loads((ROOT / "examples" / "call_completed.json").read_text())
    for i in range(calls):
        person = i % CONTACTS
        payload["data"].update(
            call_session_id=f"{prefix}-{i}",
            phone=_phone(person),
            callee_number=_phone(person),
            caller_email=f"person{person}@example.com",
        )
        ingestor.accept_sync(f"{prefix}-{i}", json.dumps(payload).encode(), (connector,), {"type": "bench"})
    client.close()


def _drain(config: Path, env: dict[str, str], workers: int, done: Any, calls: int, timeout: float) -> dict[str, Any]:
    processes = [start_worker(config, env) for _ in range(workers)]
    started = time.monotonic()
    try:
        while done() < calls and time.monotonic() - started < timeout:
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        rss = max(peak_rss_mb(p.pid) for p in processes)
    finally:
        for process in processes:
            stop(process)
    delivered = done()
    return {
        "delivered": delivered,
        "seconds": round(elapsed, 1),
        "calls_per_s": round(delivered / elapsed, 1),
        "worker_peak_rss_mb": round(rss, 1),
        "workers": workers,
    }


def hubspot_burst(tmp: Path, redis_url: str, *, calls: int, workers: int, threads: int) -> dict[str, Any]:
    fake = FakeHubSpot(token="bench-token", requests_per_10s=190, search_per_second=5)
    fake.define_property("calls", "agni_call_session_id")
    fake.define_property("tasks", "agni_call_session_id")
    for i in range(CONTACTS):
        fake.add_contact(email=f"person{i}@example.com", phone=_phone(i), firstname="P", lastname=str(i))
    fake.start()
    try:
        config = tmp / "hubspot.yaml"
        connector = (
            f"  hubspot: {{type: hubspot, access_token: '${{HS_TOKEN}}', base_url: '{fake.url}', "
            "requests_per_10s: 190, search_per_second: 5}"
        )
        config.write_text(
            CONFIG.format(
                org=ORG, data=tmp / "var-hs", mappings=ROOT / "mappings", threads=threads, connector=connector
            )
        )
        _queue(redis_url, "hubspot", calls, "hs")
        before = fake.total_requests
        env = {"AGNI_BRIDGE_REDIS_URL": redis_url, "HS_TOKEN": "bench-token"}
        result = _drain(config, env, workers, lambda: fake.count("calls"), calls, timeout=600)
        requests = fake.total_requests - before
        result.update(
            requests=requests,
            requests_per_call=round(requests / max(result["delivered"], 1), 3),
            throttled_429=sum(fake.throttled.values()),
            calls=calls,
            limit="190 req/10 s, search 5/s",
        )
        return result
    finally:
        fake.stop()


def salesforce_burst(tmp: Path, redis_url: str, *, calls: int, workers: int, threads: int) -> dict[str, Any]:
    pki = make_test_pki(tmp / "pki")
    fake = FakeSalesforce(ssl_context=pki.server_context())
    for i in range(CONTACTS):
        fake.add_contact(Email=f"person{i}@example.com", Phone=_phone(i), LastName=str(i))
    fake.start()
    fake.latency_seconds = 0.05
    try:
        token = fake.add_session()
        config = tmp / "salesforce.yaml"
        connector = (
            f"  salesforce: {{type: salesforce, instance_url: '{fake.url}', ca_bundle: '{pki.ca_path}', "
            "auth: {method: session, session_id: '${SF_SESSION}'}}"
        )
        config.write_text(
            CONFIG.format(
                org=ORG, data=tmp / "var-sf", mappings=ROOT / "mappings", threads=threads, connector=connector
            )
        )
        _queue(redis_url, "salesforce", calls, "sf")
        before = len(fake.request_log)
        env = {"AGNI_BRIDGE_REDIS_URL": redis_url, "SF_SESSION": token}
        result = _drain(config, env, workers, lambda: fake.count("Task"), calls, timeout=900)
        requests = len(fake.request_log) - before
        result.update(
            requests=requests,
            requests_per_call=round(requests / max(result["delivered"], 1), 3),
            calls=calls,
            latency_ms=50,
        )
        return result
    finally:
        fake.stop()


def delivery_bursts(tmp: Path, redis_url: str, *, calls: int, workers: int = 2, threads: int = 64) -> dict[str, Any]:
    results = {}
    for name, burst in (("hubspot", hubspot_burst), ("salesforce", salesforce_burst)):
        redis.Redis.from_url(redis_url).flushall()
        results[name] = burst(tmp, redis_url, calls=calls, workers=workers, threads=threads)
        print(f"  {name}: {results[name]}", flush=True)
    return results
