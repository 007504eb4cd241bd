"""What a delivered call costs to keep: bytes in Redis, and bytes in the call log's database.

N calls with a ~20 KB transcript go through the real API (uvicorn) and a real worker to a webhook_forward
receiver. When every call has arrived, the log lag is zero (`XLEN {prefix}:events` == 0) and no payload is
left in Redis (or a timeout says which are), Redis is measured two ways — `MEMORY USAGE` of every key,
by kind (dedupe claim, done-marker, payload, and the fixed keys that are not per call), and the change
in `used_memory` since before the first call, divided by N — and then the database: SQLite's file plus
its WAL after a checkpoint, or PostgreSQL's `pg_total_relation_size` of every table (heap, TOAST and
indexes), less the empty schema's size, divided by N and set against the raw payload's size.

Run once with SQLite (the default log) and once with PostgreSQL (pgserver in a folder of its own).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import redis
import sqlalchemy as sa
import zstandard

from bench.e2e import Arrivals
from bench.payloads import call_payload
from bench.pg import create_database
from bench.procs import ORG, ROOT, serve, start_worker, stop
from bridge.db.engine import build_engine, database_url
from bridge.db.migrate import upgrade
from bridge.keys import Keys

__all__ = ["footprint", "markdown"]

CONFIG = """
agni: {{org_ids: ["{org}"]}}
data_dir: {data}
mappings_dir: {mappings}
logging: {{level: WARNING}}
{database}connectors:
  forward: {{type: webhook_forward, url: "{url}/in"}}
"""

REDIS_TARGET_BYTES = 300
DATABASE_TARGET_RATIO = 0.40
KINDS = ("dedupe", "done", "call", "lock")


def _wait(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def redis_keys(client: redis.Redis, keys: Keys) -> dict[str, dict[str, int]]:
    """Every key's MEMORY USAGE, summed by kind: the per-call kinds, and everything else by name."""
    kinds: dict[str, dict[str, int]] = {}
    for key in client.scan_iter(match=f"{keys.prefix}:*", count=1000):
        name = key.decode()
        kind = name.split(":")[1]
        if kind not in KINDS:
            kind = name  # queues, the event stream, metrics, leases: not per call
        entry = kinds.setdefault(kind, {"keys": 0, "bytes": 0})
        entry["keys"] += 1
        entry["bytes"] += int(client.memory_usage(key, samples=0) or 0)
    return kinds


def _memory(client: redis.Redis) -> dict[str, int]:
    """used_memory, and MEMORY STATS' parts (dataset, the key tables' overhead, client buffers, script caches)."""
    stats = client.memory_stats()
    flat = {"used_memory": int(client.info("memory")["used_memory"])}
    for key in ("dataset.bytes", "clients.normal", "lua.caches", "aof.buffer"):
        flat[key] = int(stats.get(key, 0))
    db = stats.get("db.0") or {}
    for key in ("overhead.hashtable.main", "overhead.hashtable.expires"):
        flat[key] = int(db.get(key, 0))
    return flat


def _send(url: str, bodies: list[tuple[str, bytes]], concurrency: int = 8) -> int:
    def post(chunk: list[tuple[str, bytes]]) -> int:
        accepted = 0
        with httpx.Client(base_url=url, timeout=30) as client:
            for _, body in chunk:
                response = client.post("/webhooks/agni", content=body, headers={"content-type": "application/json"})
                accepted += response.status_code == 200 and response.json().get("status") == "accepted"
        return accepted

    chunks = [bodies[i::concurrency] for i in range(concurrency)]
    with ThreadPoolExecutor(concurrency) as pool:
        return sum(pool.map(post, chunks))


def _sqlite_bytes(path: Path) -> dict[str, Any]:
    engine = build_engine(database_url(f"sqlite:///{path}", path.parent))
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
            free = conn.exec_driver_sql("PRAGMA freelist_count").scalar()
            try:
                tables = dict(conn.exec_driver_sql("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").all())
            except sa.exc.OperationalError:  # SQLite built without the dbstat table
                tables = {}
    finally:
        engine.dispose()
    wal = Path(f"{path}-wal")
    return {
        "file": path.stat().st_size,
        "wal": wal.stat().st_size if wal.exists() else 0,
        "pages": pages,
        "free_pages": free,
        "by_table": tables,
    }


_PG_SIZES = (
    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
)


def _postgres_bytes(url: str, *, compacted: bool = False) -> dict[str, Any]:
    """Every table's total size (heap, TOAST, indexes) as the writer left it — dead row versions of its
    updates included, as a live database has them until autovacuum reuses the space — and, with
    `compacted`, also after VACUUM FULL (the live rows alone)."""
    engine = build_engine(database_url(url, Path(".")))
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("CHECKPOINT")
            tables = {name: int(size) for name, size in conn.exec_driver_sql(_PG_SIZES).all()}
            live = None
            if compacted:
                conn.exec_driver_sql("VACUUM FULL")
                live = sum(int(size) for _, size in conn.exec_driver_sql(_PG_SIZES).all())
    finally:
        engine.dispose()
    return {"file": sum(tables.values()), "wal": 0, "by_table": tables, "after_vacuum_full": live}


def payload_storage(url: str, bodies: list[bytes]) -> dict[str, int]:
    """What the payloads alone cost on PostgreSQL stored as the writer stores them there (plain bytea, left to
    TOAST's own compression) and zstd-compressed as on SQLite: bytes per payload, in scratch tables."""
    zstd = zstandard.ZstdCompressor(level=3)
    engine = build_engine(database_url(url, Path(".")))
    out: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            for name, encode in (("plain", bytes), ("zstd", zstd.compress)):
                conn.exec_driver_sql(f"CREATE TABLE bench_payload_{name} (id serial PRIMARY KEY, payload bytea)")
                conn.execute(
                    sa.text(f"INSERT INTO bench_payload_{name} (payload) VALUES (:p)"),
                    [{"p": encode(body)} for body in bodies],
                )
        with engine.begin() as conn:
            for name in ("plain", "zstd"):
                size = conn.exec_driver_sql(f"SELECT pg_total_relation_size('bench_payload_{name}')").scalar()
                out[name] = round(int(size or 0) / len(bodies))
                conn.exec_driver_sql(f"DROP TABLE bench_payload_{name}")
    finally:
        engine.dispose()
    return out


def _database_bytes(backend: str, target: Any) -> dict[str, Any]:
    return _sqlite_bytes(target) if backend == "sqlite" else _postgres_bytes(target)


def _log_counts(engine_url: str) -> dict[str, int]:
    engine = build_engine(database_url(engine_url, Path(".")))
    try:
        with engine.connect() as conn:
            return {
                "calls": conn.exec_driver_sql("SELECT count(*) FROM calls").scalar(),
                "delivered": conn.exec_driver_sql("SELECT count(*) FROM deliveries WHERE status='delivered'").scalar(),
                "payloads_in_log": conn.exec_driver_sql(
                    "SELECT count(*) FROM calls WHERE payload IS NOT NULL"
                ).scalar(),
            }
    finally:
        engine.dispose()


def footprint_run(
    tmp: Path, redis_url: str, backend: str, *, calls: int, pg_server: str | None, transcript_bytes: int = 20_000
) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    keys = Keys()
    data = tmp / f"var-footprint-{backend}"
    data.mkdir(parents=True, exist_ok=True)
    if backend == "sqlite":
        url = f"sqlite:///{data / 'calls.db'}"
        database = ""
        target: Any = data / "calls.db"
    else:
        assert pg_server is not None
        url = create_database(pg_server)
        database = f"database: {{url: '{url}'}}\n"
        target = url
    engine = build_engine(database_url(url, data))
    upgrade(engine)  # the same migrations the worker runs on start; measured empty, as the baseline
    engine.dispose()
    empty = _database_bytes(backend, target)

    rng = random.Random(20_000 + calls)
    bodies = []
    for _ in range(calls):
        call_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))  # as long as Agni's ids
        person = rng.randrange(10**7)
        bodies.append(
            (
                call_id,
                call_payload(
                    call_id,
                    rng,
                    transcript_bytes=transcript_bytes,
                    phone=f"+1415{person:07d}",
                    callee_number=f"+1415{person:07d}",
                    caller_email=f"person{person}@example.com",
                ),
            )
        )
    raw = [len(body) for _, body in bodies]
    zstd = zstandard.ZstdCompressor(level=3)  # what the writer stores on SQLite: the payload alone, for reference
    compressed = statistics.mean(len(zstd.compress(body)) for _, body in bodies)

    receiver = Arrivals().start()
    config = tmp / f"footprint-{backend}.yaml"
    config.write_text(
        CONFIG.format(org=ORG, data=data, mappings=ROOT / "mappings", url=receiver.url, database=database)
    )
    env = {"AGNI_BRIDGE_CONFIG": str(config), "AGNI_BRIDGE_REDIS_URL": redis_url}
    # Measured with only this client connected, before the API and worker start and after they stop: the
    # difference is data, not the connections' buffers (which hold a 20 KB body or reply while busy).
    before = _memory(client)
    worker = start_worker(config, env)
    timings: dict[str, float] = {}
    try:
        with serve("uvicorn", "bench.apps:bridge_app", env) as (url_api, _pid):
            time.sleep(1.0)  # the worker's consumers start
            started = time.monotonic()
            accepted = _send(url_api, bodies)
            timings["send_s"] = round(time.monotonic() - started, 1)
            delivered = _wait(lambda: len(receiver.seen) >= calls, timeout=60 + calls / 10)
            timings["delivered_s"] = round(time.monotonic() - started, 1)
            caught_up = _wait(lambda: client.xlen(keys.events) == 0, timeout=120)
            timings["log_caught_up_s"] = round(time.monotonic() - started, 1)
            released = _wait(lambda: not any(True for _ in client.scan_iter(f"{keys.prefix}:call:*", count=1000)), 30)
            timings["payloads_released_s"] = round(time.monotonic() - started, 1)
    finally:
        stop(worker)
        receiver.stop()
    _wait(lambda: client.info("clients")["connected_clients"] <= 1, timeout=10)
    after = _memory(client)
    by_kind = redis_keys(client, keys)
    counts = _log_counts(url)
    what_if = payload_storage(url, [body for _, body in bodies]) if backend == "postgresql" else None
    used = _sqlite_bytes(target) if backend == "sqlite" else _postgres_bytes(url, compacted=True)
    per_call_kinds = {k: v for k, v in by_kind.items() if k in KINDS}
    per_call = sum(v["bytes"] for v in per_call_kinds.values()) / calls
    db_total = used["file"] + used["wal"]
    db_net = db_total - (empty["file"] + empty["wal"])
    raw_mean = statistics.mean(raw)
    result = {
        "backend": backend,
        "calls": calls,
        "accepted": accepted,
        "delivered": len(receiver.seen),
        "all_delivered": delivered,
        "log_caught_up": caught_up,
        "payloads_released": released,
        "timings": timings,
        "raw_payload_bytes": round(raw_mean),
        "payload_zstd3_bytes": round(compressed),
        "redis": {
            "per_call_bytes": round(per_call),
            "used_memory_delta_per_call": round((after["used_memory"] - before["used_memory"]) / calls),
            "info_memory_delta_per_call": {k: round((after[k] - before[k]) / calls) for k in before},
            "by_kind": {
                k: {**v, "per_call": round(v["bytes"] / calls, 1), "per_key": round(v["bytes"] / max(v["keys"], 1))}
                for k, v in sorted(by_kind.items())
            },
            "target_bytes": REDIS_TARGET_BYTES,
            "met": max(per_call, (after["used_memory"] - before["used_memory"]) / calls) <= REDIS_TARGET_BYTES,
        },
        "database": {
            "empty_bytes": empty["file"] + empty["wal"],
            "total_bytes": db_total,
            "per_call_bytes": round(db_net / calls),
            "ratio_to_raw": round(db_net / calls / raw_mean, 3),
            "target_ratio": DATABASE_TARGET_RATIO,
            "met": db_net / calls / raw_mean <= DATABASE_TARGET_RATIO,
            "by_table_per_call": {
                name: round((size - empty["by_table"].get(name, 0)) / calls)
                for name, size in sorted(used["by_table"].items(), key=lambda kv: -kv[1])
                if size - empty["by_table"].get(name, 0) > 0
            },
            **{k: used[k] for k in ("pages", "free_pages") if k in used},
            "log_counts": counts,
            "per_call_after_vacuum_full": round((used["after_vacuum_full"] - empty["file"]) / calls)
            if used.get("after_vacuum_full")
            else None,
            "payload_alone_per_call": what_if,
        },
    }
    print(
        f"  {backend}: redis {result['redis']['per_call_bytes']} B/call (MEMORY USAGE), "
        f"{result['redis']['used_memory_delta_per_call']} B/call (used_memory delta); "
        f"database {result['database']['per_call_bytes']} B/call = {result['database']['ratio_to_raw']:.0%} of "
        f"{result['raw_payload_bytes']} B raw",
        file=sys.stderr,
    )
    return result


def footprint(tmp: Path, redis_url: str, *, calls: int, backends: list[str], pg_server: str | None) -> dict[str, Any]:
    # A fresh Redis allocates ~0.9 MB once, on the first calls through the pipeline (the same whichever
    # database runs first); a small unreported run takes it, so it is not charged to the measured calls.
    footprint_run(tmp / "warm-up", redis_url, backends[0], calls=min(50, calls), pg_server=pg_server)
    return {
        "transcript_bytes": 20_000,
        "runs": [footprint_run(tmp, redis_url, b, calls=calls, pg_server=pg_server) for b in backends],
    }


def markdown(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Footprint of a delivered call (payload with a ~20 KB transcript)",
        "",
        "Calls through the real API and a worker to a webhook_forward receiver; measured once every call was "
        "delivered and the log lag was 0.",
        "",
        "| log database | calls | raw payload B | Redis B/call (MEMORY USAGE) | Redis B/call (used_memory Δ) "
        "| ≤ 300 B | payload zstd-3 alone B | database B/call | / raw payload | ≤ 40 % |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in result["runs"]:
        red, db = r["redis"], r["database"]
        lines.append(
            f"| {r['backend']} | {r['calls']} | {r['raw_payload_bytes']} | {red['per_call_bytes']} | "
            f"{red['used_memory_delta_per_call']} | {'met' if red['met'] else '**missed**'} | "
            f"{r['payload_zstd3_bytes']} | {db['per_call_bytes']} | "
            f"{db['ratio_to_raw'] * 100:.1f} % | {'met' if db['met'] else '**missed**'} |"
        )
    for r in result["runs"]:
        lines += [
            "",
            f"Redis keys after delivery ({r['backend']} run):",
            "",
            "| key | keys | bytes | per key | per call |",
        ]
        lines.append("|---|---:|---:|---:|---:|")
        for kind, v in r["redis"]["by_kind"].items():
            lines.append(f"| {kind} | {v['keys']} | {v['bytes']} | {v['per_key']} | {v['per_call']} |")
        lines += ["", f"INFO memory deltas per call ({r['backend']} run): {r['redis']['info_memory_delta_per_call']}."]
        lines += [
            "",
            f"Database bytes per call by table ({r['backend']}): "
            + ", ".join(f"{name} {size}" for name, size in r["database"]["by_table_per_call"].items())
            + ".",
        ]
        if r["database"].get("per_call_after_vacuum_full"):
            lines += [
                "",
                f"PostgreSQL after VACUUM FULL (live rows only, no dead versions of updated rows): "
                f"{r['database']['per_call_after_vacuum_full']} B/call.",
            ]
        if r["database"].get("payload_alone_per_call"):
            alone = r["database"]["payload_alone_per_call"]
            lines += [
                "",
                f"The payloads alone on PostgreSQL (scratch tables, same {r['calls']} bodies): plain bytea as the "
                f"writer stores them there (TOAST compression) {alone['plain']} B each; zstd-3 compressed as on SQLite "
                f"{alone['zstd']} B each.",
            ]
        if not (r["all_delivered"] and r["log_caught_up"] and r["payloads_released"]):
            lines.append(
                f"**Incomplete run**: delivered {r['delivered']}/{r['calls']}, log caught up {r['log_caught_up']}, "
                f"payloads released {r['payloads_released']}."
            )
    return lines
