"""Why the slow parts are slow, measured: the evidence behind the fixes the results propose.

Nothing here changes the product; each part sets what the product does today beside a proposed shape,
on the same data, and records the plans and whether both return the same rows.

* search shapes, on the cached million-call logs of the search section (bench/.cache; generated if
  missing): a cursor page with a sargable bound, phone search driven by the parties index, the newest
  full-text matches taken in index order, a covering index for the failure groups (created and dropped
  again), and every connector + status combination and every topic word timed one by one;
* the log writer: statements and time for a batch of 1,000 `received` events, then their 1,000
  attempts, on SQLite and on PostgreSQL (pgserver);
* Redis: what a delivered call's keys cost (used_memory and MEMORY USAGE, 2,000 calls, Agni-length ids)
  as two keys today (dedupe claim + done-marker hash) and as one hash holding both.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from bench.pg import create_database, temporary_postgres
from bench.procs import ROOT
from bench.searchdb import cached_postgres, cached_sqlite
from bench.searchgen import COMPANY_LINES, TOPICS
from bridge.calls import CallLog, CallSearch
from bridge.db.engine import build_engine, database_url
from bridge.db.events import LogEvent
from bridge.db.migrate import upgrade
from bridge.db.writer import LogWriter
from bridge.embedded_redis import EmbeddedRedis

__all__ = ["diagnose", "markdown"]

COLUMNS = "calls.id, calls.call_session_id, calls.received_at, calls.status"
ORDER = "ORDER BY calls.received_at DESC, calls.id DESC LIMIT 51"
FAILURES = (
    "SELECT connector, error_group, count(*), sum(CASE WHEN status = 'dead' THEN 1 ELSE 0 END), min(updated_at), "
    "max(updated_at), min(call_id) FROM deliveries WHERE status IN ('failed', 'dead') GROUP BY connector, error_group "
    "ORDER BY 3 DESC"
)
COVERING = "CREATE INDEX bench_ix_failures_cover ON deliveries (status, connector, error_group, updated_at, call_id)"


def _median_ms(fn: Callable[[], Any], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def _plan(conn: Connection, sqlite: bool, sql: str, params: Any) -> list[str]:
    if sqlite:
        return [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all()]
    return [row[0] for row in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).all()]


def _compare(conn: Connection, sqlite: bool, shapes: dict[str, str], params: Any) -> dict[str, Any]:
    """Each shape's median time and plan, and whether they all return the same rows."""
    rows = {name: conn.exec_driver_sql(sql, params).all() for name, sql in shapes.items()}
    first = next(iter(rows.values()))
    return {
        "ms": {
            name: _median_ms(lambda sql=sql: conn.exec_driver_sql(sql, params).all()) for name, sql in shapes.items()
        },
        "plans": {name: _plan(conn, sqlite, sql, params) for name, sql in shapes.items()},
        "same_rows": all(r == first for r in rows.values()),
        "rows": len(first),
    }


def search_shapes(engine: Engine, total: int) -> dict[str, Any]:
    sqlite = engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    log = CallLog(engine)
    out: dict[str, Any] = {}
    combos = {
        f"{c}/{s}": _median_ms(lambda c=c, s=s: log.search(CallSearch(connector=c, status=s)), 3)
        for c in ("salesforce", "hubspot", "webhook")
        for s in ("failed", "dead", "pending", "skipped", "delivered")
    }
    worst = max(combos, key=combos.__getitem__)
    words = {t.split()[0]: 0.0 for t in TOPICS}
    for word in words:
        words[word] = _median_ms(lambda w=word: log.search(CallSearch(text=w)), 3)
    slow_word = max(words, key=words.__getitem__)
    with engine.connect() as conn:
        out["connector_status_ms"] = combos
        connector, status = worst.split("/")
        exists = (
            f"SELECT {COLUMNS} FROM calls WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.call_id = calls.id "
            f"AND d.connector = {mark} AND d.status = {mark}) {ORDER}"
        )
        out["connector_status_worst"] = {"args": worst, "plan": _plan(conn, sqlite, exists, (connector, status))}
        out["text_ms"] = words
        if sqlite:
            match = f'"{slow_word}"'
            hits = conn.exec_driver_sql("SELECT count(*) FROM calls_fts WHERE calls_fts MATCH ?", (match,)).scalar()
            out["text_slowest"] = {
                "word": slow_word,
                "hits": hits,
                **_compare(
                    conn,
                    sqlite,
                    {
                        "product": f"SELECT {COLUMNS} FROM calls WHERE calls.id IN "
                        f"(SELECT rowid FROM calls_fts WHERE calls_fts MATCH ?) {ORDER}",
                        "newest matches in index order": f"SELECT {COLUMNS} FROM calls WHERE calls.id IN "
                        f"(SELECT rowid FROM calls_fts WHERE calls_fts MATCH ? ORDER BY rowid DESC LIMIT 51) {ORDER}",
                    },
                    (match,),
                ),
            }
        else:
            tsv = "to_tsvector('simple', coalesce(summary, '') || ' ' || coalesce(next_steps, ''))"
            sql = f"SELECT {COLUMNS} FROM calls WHERE {tsv} @@ plainto_tsquery('simple', %s) {ORDER}"
            hits = conn.exec_driver_sql(
                f"SELECT count(*) FROM calls WHERE {tsv} @@ plainto_tsquery('simple', %s)", (slow_word,)
            ).scalar()
            out["text_slowest"] = {
                "word": slow_word,
                "hits": hits,
                "plans": {"product": _plan(conn, False, sql, (slow_word,))},
            }
            # The plan above filters an index scan by computing to_tsvector for every row it passes; what that costs
            # per row against a stored tsvector (as a generated column would keep it), over the newest 100,000 calls.
            conn.exec_driver_sql(
                f"CREATE TEMP TABLE bench_tsv AS SELECT id, summary, next_steps, {tsv} AS tsv FROM calls "
                "ORDER BY id DESC LIMIT 100000"
            )
            query = "plainto_tsquery('simple', %s)"
            recompute = f"SELECT count(*) FROM bench_tsv WHERE {tsv} @@ {query}"
            stored = f"SELECT count(*) FROM bench_tsv WHERE tsv @@ {query}"
            out["text_filter_100k_rows_ms"] = {
                "to_tsvector per row (today)": _median_ms(
                    lambda: conn.exec_driver_sql(recompute, (slow_word,)).all(), 3
                ),
                "stored tsvector column": _median_ms(lambda: conn.exec_driver_sql(stored, (slow_word,)).all(), 3),
            }
            conn.exec_driver_sql("DROP TABLE bench_tsv")
        position = (2 * total) // 5  # a page 60 % of the way down the list, newest first
        received, row_id = conn.exec_driver_sql(f"SELECT received_at, id FROM calls WHERE id = {position}").first()
        out["cursor"] = _compare(
            conn,
            sqlite,
            {
                "product": f"SELECT {COLUMNS} FROM calls WHERE calls.received_at < {mark} "
                f"OR calls.received_at = {mark} AND calls.id < {mark} {ORDER}",
                "with received_at <= bound": f"SELECT {COLUMNS} FROM calls WHERE calls.received_at <= {mark} "
                f"AND (calls.received_at < {mark} OR calls.id < {mark}) {ORDER}",
            },
            (received, received, row_id),
        )
        line = COMPANY_LINES[7]
        out["company_line"] = _compare(
            conn,
            sqlite,
            {
                "product": f"SELECT {COLUMNS} FROM calls WHERE calls.id IN "
                f"(SELECT call_id FROM parties WHERE kind = {mark} AND value = {mark}) {ORDER}",
                "driven by parties (kind, value, received_at)": f"SELECT {COLUMNS} FROM parties JOIN calls ON "
                f"calls.id = parties.call_id WHERE parties.kind = {mark} AND parties.value = {mark} "
                "ORDER BY parties.received_at DESC, parties.call_id DESC LIMIT 51",
            },
            ("phone", line),
        )
        out["company_line"]["calls_with_number"] = conn.exec_driver_sql(
            f"SELECT count(*) FROM parties WHERE kind = {mark} AND value = {mark}", ("phone", line)
        ).scalar()
        out["failure_groups"] = {
            "failing_deliveries": conn.exec_driver_sql(
                "SELECT count(*) FROM deliveries WHERE status IN ('failed', 'dead')"
            ).scalar(),
            "ms": {"product": _median_ms(lambda: conn.exec_driver_sql(FAILURES).all())},
            "plans": {"product": _plan(conn, sqlite, FAILURES, ())},
        }
    with engine.begin() as conn:
        conn.exec_driver_sql(COVERING)
    try:
        if not sqlite:  # the visibility map an index-only scan needs (autovacuum keeps it in a live database)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM deliveries")
        with engine.connect() as conn:
            groups = out["failure_groups"]
            groups["ms"]["with covering index"] = _median_ms(lambda: conn.exec_driver_sql(FAILURES).all())
            groups["plans"]["with covering index"] = _plan(conn, sqlite, FAILURES, ())
            groups["covering_index"] = COVERING
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX bench_ix_failures_cover")
    return out


def writer_batches() -> dict[str, Any]:
    payload = json.loads((ROOT / "examples" / "call_completed.json").read_text())

    def measure(url: str, folder: Path) -> dict[str, Any]:
        engine = build_engine(database_url(url, folder))
        upgrade(engine)
        sent = {"n": 0}
        event.listen(engine, "before_cursor_execute", lambda *a: sent.__setitem__("n", sent["n"] + 1))
        writer = LogWriter(engine)
        out: dict[str, Any] = {}
        for round_no in range(2):
            received, attempts, bodies = [], [], {}
            for i in range(1000):
                call = f"w{round_no}-{i}"
                payload["data"]["call_session_id"] = call
                bodies[call] = json.dumps(payload).encode()
                t = 1_765_000_000_000 + round_no * 10_000 + i
                received.append((f"{t}-0", LogEvent(type="received", call=call, t=t, connectors=["hubspot"])))
                attempts.append(
                    (
                        f"{t + 5000}-0",
                        LogEvent(
                            type="attempt", call=call, connector="hubspot", outcome="delivered", attempt=1, t=t + 5000
                        ),
                    )
                )
            for name, entries, given in (("1,000 received", received, bodies), ("their 1,000 attempts", attempts, {})):
                sent["n"] = 0
                started = time.perf_counter()
                writer.apply(entries, given, start=None, end=None)
                out.setdefault(name, []).append(
                    {"ms": round((time.perf_counter() - started) * 1000), "statements": sent["n"]}
                )
        engine.dispose()
        return out

    with tempfile.TemporaryDirectory(prefix="agni-bench-writer-") as name:
        folder = Path(name)
        result = {"sqlite": measure(f"sqlite:///{folder / 'calls.db'}", folder)}
        with temporary_postgres() as server:
            result["postgresql"] = measure(create_database(server), folder)
    return result


def redis_layouts(calls: int = 2000) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="agni-bench-redis-"))
    server = EmbeddedRedis(folder / "redis", appendonly=True)
    server.start()
    client = redis.Redis.from_url(server.url)
    rng = random.Random(1)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(calls)]
    ttl = 30 * 86_400
    out: dict[str, Any] = {}

    def two_keys(call: str) -> None:  # what a delivered call leaves today
        client.set(f"agni:dedupe:{call}", "1796083200000", ex=ttl)
        client.hset(f"agni:done:{call}", "forward", "delivered")
        client.expire(f"agni:done:{call}", ttl)

    def one_hash(call: str) -> None:
        client.hset(f"agni:dedupe:{call}", mapping={"_claim": "1796083200000", "forward": "delivered"})
        client.expire(f"agni:dedupe:{call}", ttl)

    try:
        for call in ids:  # a fresh Redis allocates some memory once, on first use: not charged to either layout
            two_keys(call)
        for name, write in (
            ("dedupe claim + done-marker hash (today)", two_keys),
            ("one hash: claim + outcomes", one_hash),
        ):
            client.flushall()
            before = client.info("memory")["used_memory"]
            for call in ids:
                write(call)
            after = client.info("memory")["used_memory"]
            usage = sum(int(client.memory_usage(k, samples=0) or 0) for k in client.scan_iter(count=1000))
            out[name] = {
                "used_memory_per_call": round((after - before) / calls),
                "memory_usage_per_call": round(usage / calls),
            }
    finally:
        client.close()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return out


def diagnose(*, total: int, databases: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"calls": total, "search": {}}
    for database in databases:
        print(f"  search shapes, {database}", file=sys.stderr, flush=True)
        if database == "sqlite":
            path, _ = cached_sqlite(total)
            engine = build_engine(database_url(f"sqlite:///{path}", path.parent))
            try:
                out["search"]["sqlite"] = search_shapes(engine, total)
            finally:
                engine.dispose()
        else:
            with cached_postgres(total) as (url, _):
                engine = build_engine(database_url(url, Path(".")))
                try:
                    out["search"]["postgresql"] = search_shapes(engine, total)
                finally:
                    engine.dispose()
    print("  log writer batches", file=sys.stderr, flush=True)
    out["writer"] = writer_batches()
    print("  Redis key layouts", file=sys.stderr, flush=True)
    out["redis"] = redis_layouts()
    return out


def _plan_block(plans: dict[str, list[str]]) -> list[str]:
    lines = ["```"]
    for name, plan in plans.items():
        lines.append(f"-- {name}")
        lines += plan
    return [*lines, "```"]


def markdown(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Diagnosis: the slow queries and the log writer, with the proposed shapes measured",
        "",
        f"On the search section's logs ({result['calls']:,} calls); median of 5 runs, ms.",
        "",
        "| what | database | today | proposed | proposed ms | same rows |",
        "|---|---|---:|---|---:|---|",
    ]
    for database, s in result["search"].items():
        for key, label in (
            ("cursor", "cursor page deep in the list"),
            ("company_line", "phone shared by 5 % of calls"),
        ):
            ms = s[key]["ms"]
            other = next(k for k in ms if k != "product")
            same = "yes" if s[key]["same_rows"] else "NO"
            lines.append(f"| {label} | {database} | {ms['product']} | {other} | {ms[other]} | {same} |")
        ms = s["failure_groups"]["ms"]
        lines.append(
            f"| failure groups ({s['failure_groups']['failing_deliveries']:,} failing deliveries) | {database} | "
            f"{ms['product']} | covering index (status, connector, error_group, updated_at, call_id) | "
            f"{ms['with covering index']} | yes (same query) |"
        )
        text = s["text_slowest"]
        if "ms" in text:
            lines.append(
                f"| text, most common word ({text['word']!r}, {text['hits']:,} calls) | {database} | "
                f"{text['ms']['product']} | newest matches in full-text index order | "
                f"{text['ms']['newest matches in index order']} | {'yes' if text['same_rows'] else 'NO'} |"
            )
    for database, s in result["search"].items():
        if "text_filter_100k_rows_ms" in s:
            cost = s["text_filter_100k_rows_ms"]
            lines += [
                "",
                f"{database}: filtering 100,000 calls by a word: "
                + ", ".join(f"{k} {v} ms" for k, v in cost.items())
                + ".",
            ]
        worst = s["connector_status_worst"]
        lines += [
            "",
            f"{database}: connector + status, each combination (ms): "
            + ", ".join(f"{k} {v}" for k, v in s["connector_status_ms"].items())
            + f". Slowest: {worst['args']}.",
            "",
            f"{database}: text, each topic word (ms): " + ", ".join(f"{k} {v}" for k, v in s["text_ms"].items()) + ".",
            "",
            f"Plans ({database}):",
            "",
            *_plan_block({f"connector + status {worst['args']}": worst["plan"]}),
            *_plan_block(
                {f"text {s['text_slowest']['word']!r} — {k}": v for k, v in s["text_slowest"]["plans"].items()}
            ),
            *_plan_block({f"cursor — {k}": v for k, v in s["cursor"]["plans"].items()}),
            *_plan_block({f"shared phone — {k}": v for k, v in s["company_line"]["plans"].items()}),
            *_plan_block({f"failure groups — {k}": v for k, v in s["failure_groups"]["plans"].items()}),
        ]
    lines += ["", "Log writer, one batch (LogWriter.apply): milliseconds and statements sent", ""]
    lines += ["| database | batch | round 1 | round 2 |", "|---|---|---|---|"]
    for database, batches in result["writer"].items():
        for name, rounds in batches.items():
            cells = " | ".join(f"{r['ms']} ms, {r['statements']} statements" for r in rounds)
            lines.append(f"| {database} | {name} | {cells} |")
    lines += ["", "Redis, per delivered call (2,000 calls):", "", "| layout | used_memory | MEMORY USAGE |"]
    lines.append("|---|---:|---:|")
    for name, r in result["redis"].items():
        lines.append(f"| {name} | {r['used_memory_per_call']} | {r['memory_usage_per_call']} |")
    return lines
