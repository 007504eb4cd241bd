"""Delivery throughput under a CRM's quota: a burst of queued calls drained by real worker processes.

For each CRM: seed the fake with contacts (a campaign calls the same few hundred people), queue N calls
with no worker running (through the same ingest script as the endpoint; one call in four needs a
follow-up task), then start the workers and time the drain. Reported: calls/s, API requests per
delivered call, 429s received, drain time, peak RSS.

* HubSpot: the fake enforces 190 requests / 10 s and 5 searches / s, like a Professional account.
* Salesforce: the fake answers every request after 50 ms (a CRM across the internet), over TLS.

The call log is written alongside (the workers drain the Redis event stream into the database): every
0.1 s the burst samples the log lag (`XLEN {prefix}:events`, and the age of its oldest entry) and, after
the last delivery, keeps the workers running until the lag is zero. Reported: the largest lag during the
burst, the lag at the last delivery, and how long after the last delivery the log caught up (target:
within 10 s). Each burst runs once per log database (SQLite, PostgreSQL); the database is checked after
it holds every call as delivered.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import redis

from bench.pg import create_database
from bench.procs import ORG, ROOT, peak_rss_mb, start_worker, stop
from bridge.db.engine import build_engine, database_url
from bridge.ingest import Ingestor
from bridge.keys import Keys
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.salesforce import FakeSalesforce
from tests.fakes.tls import make_test_pki

CONTACTS = 300
LOG_TARGET_SECONDS = 10.0

CONFIG = """
agni: {{org_ids: ["{org}"]}}
data_dir: {data}
mappings_dir: {mappings}
logging: {{level: WARNING}}
worker: {{threads: {threads}}}
{database}connectors:
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
        entry = {
            "type": "received",  # what the endpoint logs (bridge.webhook.Prepared.log_entry)
            "org_id": ORG,
            "source_ip": "127.0.0.1",
            "route": "default: all connectors",
            "connectors": [connector],
        }
        ingestor.accept_sync(f"{prefix}-{i}", json.dumps(payload).encode(), (connector,), entry)
    client.close()


def log_lag(client: redis.Redis, keys: Keys) -> tuple[int, float]:
    """(events not yet in the database, age in seconds of the oldest): what `LogDrain.lag` reports."""
    pipe = client.pipeline(transaction=False)
    pipe.xlen(keys.events)
    pipe.xrange(keys.events, count=1)
    length, oldest = pipe.execute()
    if not length or not oldest:
        return 0, 0.0
    return int(length), max(0.0, time.time() - int(oldest[0][0].decode().split("-")[0]) / 1000)


def _drain(
    config: Path, env: dict[str, str], workers: int, done: Any, calls: int, timeout: float, redis_url: str
) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)
    keys = Keys()
    processes = [start_worker(config, env) for _ in range(workers)]
    started = time.monotonic()
    last_delivery: float | None = None
    caught_up: float | None = None
    max_events, max_age, at_last = 0, 0.0, (0, 0.0)
    series: list[tuple[float, int, int]] = []  # (seconds, delivered, log lag events), one a second
    try:
        while time.monotonic() - started < timeout:
            now = time.monotonic()
            delivered = done()
            events, age = log_lag(client, keys)
            max_events, max_age = max(max_events, events), max(max_age, age)
            if not series or now - started >= series[-1][0] + 1:
                series.append((round(now - started, 1), delivered, events))
            if last_delivery is None and delivered >= calls:
                last_delivery, at_last = now, (events, age)
            if last_delivery is not None and events == 0:
                caught_up = now
                break
            if last_delivery is not None and now - last_delivery > 120:
                break
            time.sleep(0.1)
        rss = max(peak_rss_mb(p.pid) for p in processes)
    finally:
        for process in processes:
            stop(process)
        client.close()
    delivered = done()
    elapsed = (last_delivery or time.monotonic()) - started
    return {
        "delivered": delivered,
        "seconds": round(elapsed, 1),
        "calls_per_s": round(delivered / elapsed, 1),
        "worker_peak_rss_mb": round(rss, 1),
        "workers": workers,
        "log": {
            "max_lag_events": max_events,
            "max_lag_seconds": round(max_age, 1),
            "lag_at_last_delivery_events": at_last[0],
            "lag_at_last_delivery_seconds": round(at_last[1], 1),
            "caught_up_after_last_delivery_s": round(caught_up - last_delivery, 2)
            if caught_up is not None and last_delivery is not None
            else None,
            "target_s": LOG_TARGET_SECONDS,
            "met": caught_up is not None
            and last_delivery is not None
            and caught_up - last_delivery <= LOG_TARGET_SECONDS,
            "series": series,
        },
    }


def _log_database(tmp: Path, name: str, database: str, pg_server: str | None) -> tuple[str, str]:
    """(config line, URL) of a fresh log database for one burst: SQLite under its data_dir, or PostgreSQL."""
    if database == "sqlite":
        return "", f"sqlite:///{tmp / name / 'calls.db'}"
    assert pg_server is not None, "PostgreSQL bursts need a server"
    url = create_database(pg_server)
    return f"database: {{url: '{url}'}}\n", url


def _log_check(url: str) -> dict[str, int]:
    """What the log holds after the burst: calls, deliveries delivered, history rows, payloads kept."""
    engine = build_engine(database_url(url, Path(".")))
    try:
        with engine.connect() as conn:
            one = lambda sql: int(conn.exec_driver_sql(sql).scalar() or 0)  # noqa: E731
            return {
                "calls": one("SELECT count(*) FROM calls"),
                "delivered": one("SELECT count(*) FROM deliveries WHERE status = 'delivered'"),
                "history_rows": one("SELECT count(*) FROM attempts"),
                "payloads": one("SELECT count(*) FROM calls WHERE payload IS NOT NULL"),
            }
    finally:
        engine.dispose()


def hubspot_burst(
    tmp: Path, redis_url: str, *, calls: int, workers: int, threads: int, database: str, pg_server: str | None
) -> dict[str, Any]:
    fake = FakeHubSpot(token="bench-token", requests_per_10s=190, search_per_second=5)
    fake.define_property("calls", "agni_call_session_id")
    fake.define_property("tasks", "agni_call_session_id")
    for i in range(CONTACTS):
        fake.add_contact(email=f"person{i}@example.com", phone=_phone(i), firstname="P", lastname=str(i))
    fake.start()
    try:
        config = tmp / f"hubspot-{database}.yaml"
        line, url = _log_database(tmp, f"var-hs-{database}", database, pg_server)
        connector = (
            f"  hubspot: {{type: hubspot, access_token: '${{HS_TOKEN}}', base_url: '{fake.url}', "
            "requests_per_10s: 190, search_per_second: 5}"
        )
        config.write_text(
            CONFIG.format(
                org=ORG,
                data=tmp / f"var-hs-{database}",
                mappings=ROOT / "mappings",
                threads=threads,
                connector=connector,
                database=line,
            )
        )
        _queue(redis_url, "hubspot", calls, "hs")
        before = fake.total_requests
        env = {"AGNI_BRIDGE_REDIS_URL": redis_url, "HS_TOKEN": "bench-token"}
        result = _drain(config, env, workers, lambda: fake.count("calls"), calls, 600, redis_url)
        requests = fake.total_requests - before
        result.update(
            requests=requests,
            requests_per_call=round(requests / max(result["delivered"], 1), 3),
            throttled_429=sum(fake.throttled.values()),
            calls=calls,
            limit="190 req/10 s, search 5/s",
            database=database,
            log_check=_log_check(url),
        )
        return result
    finally:
        fake.stop()


def salesforce_burst(
    tmp: Path, redis_url: str, *, calls: int, workers: int, threads: int, database: str, pg_server: str | None
) -> dict[str, Any]:
    pki = make_test_pki(tmp / "pki")
    fake = FakeSalesforce(ssl_context=pki.server_context())
    for i in range(CONTACTS):
        fake.add_contact(Email=f"person{i}@example.com", Phone=_phone(i), LastName=str(i))
    fake.start()
    fake.latency_seconds = 0.05
    try:
        token = fake.add_session()
        config = tmp / f"salesforce-{database}.yaml"
        line, url = _log_database(tmp, f"var-sf-{database}", database, pg_server)
        connector = (
            f"  salesforce: {{type: salesforce, instance_url: '{fake.url}', ca_bundle: '{pki.ca_path}', "
            "auth: {method: session, session_id: '${SF_SESSION}'}}"
        )
        config.write_text(
            CONFIG.format(
                org=ORG,
                data=tmp / f"var-sf-{database}",
                mappings=ROOT / "mappings",
                threads=threads,
                connector=connector,
                database=line,
            )
        )
        _queue(redis_url, "salesforce", calls, "sf")
        before = len(fake.request_log)
        env = {"AGNI_BRIDGE_REDIS_URL": redis_url, "SF_SESSION": token}
        result = _drain(config, env, workers, lambda: fake.count("Task"), calls, 900, redis_url)
        requests = len(fake.request_log) - before
        result.update(
            requests=requests,
            requests_per_call=round(requests / max(result["delivered"], 1), 3),
            calls=calls,
            latency_ms=50,
            database=database,
            log_check=_log_check(url),
        )
        return result
    finally:
        fake.stop()


def delivery_bursts(
    tmp: Path,
    redis_url: str,
    *,
    calls: int,
    databases: list[str],
    pg_server: str | None,
    workers: int = 2,
    threads: int = 64,
) -> dict[str, Any]:
    """Each CRM's burst once per log database: {crm: ..., crm/postgresql: ...} (SQLite keeps the plain name)."""
    results = {}
    for database in databases:
        for name, burst in (("hubspot", hubspot_burst), ("salesforce", salesforce_burst)):
            redis.Redis.from_url(redis_url).flushall()
            key = name if database == "sqlite" else f"{name}/{database}"
            results[key] = burst(
                tmp, redis_url, calls=calls, workers=workers, threads=threads, database=database, pg_server=pg_server
            )
            brief = {k: v for k, v in results[key].items() if k != "log"}
            log = {k: v for k, v in results[key]["log"].items() if k != "series"}
            print(f"  {key}: {brief} log: {log}", file=sys.stderr, flush=True)
    return results


def markdown(results: dict[str, Any]) -> list[str]:
    lines = [
        "## Delivery bursts, and the call log keeping up",
        "",
        "| burst | log database | delivered | seconds | calls/s | requests/call | 429s | worker RSS MB "
        "| max log lag (events / s) | lag at last delivery | log at zero after last delivery | ≤ 10 s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, r in results.items():
        log = r["log"]
        after = log["caught_up_after_last_delivery_s"]
        lines.append(
            f"| {key.split('/')[0]} | {r.get('database', 'sqlite')} | {r['delivered']} | {r['seconds']} | "
            f"{r['calls_per_s']} | {r['requests_per_call']} | {r.get('throttled_429', '–')} | "
            f"{r['worker_peak_rss_mb']} | {log['max_lag_events']} / {log['max_lag_seconds']} | "
            f"{log['lag_at_last_delivery_events']} / {log['lag_at_last_delivery_seconds']} s | "
            f"{'–' if after is None else f'{after} s'} | {'met' if log['met'] else '**missed**'} |"
        )
    checks = [f"{key}: {r['log_check']}" for key, r in results.items() if "log_check" in r]
    if checks:
        lines += ["", "The log afterwards: " + "; ".join(checks) + "."]
    return lines
