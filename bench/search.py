"""Search latency on a full call log: the product's own queries over a million generated calls.

Each kind of question an admin asks (by phone, email, agent, disposition, words, status, connector and
status, a page deep in the list, failures grouped by error, one call's report, the overview) is asked
`queries` times with varied arguments drawn from the log itself (random calls' phones, emails, agents…),
through `CallLog` / `LogQueries` on the product's engine (SQLite as `build_engine` opens it; PostgreSQL
through psycopg's pool), after a few warm-up runs. Reported: p50, p95 and max in ms and the rows found.
For every kind the SQL the product sent is captured and its plan recorded (EXPLAIN QUERY PLAN on SQLite,
EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL), so a slow one can be read, not guessed at.

Targets (the issue's): search by phone and the failures-by-error grouping under 100 ms at p95.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from bench.searchdb import cached_postgres, cached_sqlite
from bench.searchgen import COMPANY_LINES, T_END, TOPICS
from bridge.calls import CallLog, CallSearch
from bridge.db.engine import build_engine, database_url
from bridge.db.queries import LogQueries, encode_cursor

__all__ = ["markdown", "search_latency"]

TARGET_MS = 100.0
TARGETS = ("phone", "failure groups")
TIME_CAP_S = 30.0  # per kind: a pathological query stops early rather than holding the run for an hour


class _Capture:
    """The statements an engine runs while armed (for EXPLAIN)."""

    def __init__(self, engine: Engine) -> None:
        self.armed = False
        self.statements: list[tuple[str, Any]] = []
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if self.armed and not many and statement.lstrip().upper().startswith("SELECT"):
            self.statements.append((statement, parameters))


def _sample(engine: Engine, total: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    ids = sorted(rng.sample(range(1, total + 1), min(count, total)))
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, call_session_id, received_at, phone, email, agent_name, disposition FROM calls "
                "WHERE id IN (" + ",".join(str(i) for i in ids) + ")"
            )
        ).mappings()
        found = [dict(r) for r in rows]
    rng.shuffle(found)
    return found


def _kinds(engine: Engine, total: int, count: int) -> dict[str, list[Callable[[], int]]]:
    rng = random.Random(11)
    calls = _sample(engine, total, count, rng)
    log = CallLog(engine)
    queries = LogQueries(engine)
    words = [t.split()[0] for t in TOPICS]

    def page(**kw: Any) -> Callable[[], int]:
        return lambda: len(log.search(CallSearch(**kw)).calls)

    def spell(phone: str) -> str:  # any spelling finds it: ask as people type
        digits = phone[2:]
        return rng.choice(
            (phone, f"({digits[:3]}) {digits[3:6]}-{digits[6:]}", f"{digits[:3]}.{digits[3:6]}.{digits[6:]}")
        )

    def groups(connector: str | None) -> Callable[[], int]:
        return lambda: len(queries.failure_groups(connector))

    def overview(days: int) -> Callable[[], int]:
        return lambda: len(queries.overview(T_END, days=days))

    connectors = ("salesforce", "hubspot", "webhook")
    statuses = ("failed", "dead", "pending", "skipped", "delivered")
    deep = [encode_cursor(c["received_at"], c["id"]) for c in calls if c["id"] < total // 2] or [
        encode_cursor(calls[0]["received_at"], calls[0]["id"])
    ]
    return {
        "phone": [page(phone=spell(c["phone"])) for c in calls],
        "phone (company line, shared by ~5 % of calls)": [page(phone=rng.choice(COMPANY_LINES)) for _ in calls],
        "email": [page(email=(c["email"] or "nobody@example.com").upper()) for c in calls],
        "agent": [page(agent=c["agent_name"].lower()) for c in calls],
        "disposition": [page(disposition=c["disposition"]) for c in calls],
        "text": [
            page(text=rng.choice(words) if i % 2 else f"{rng.choice(words)} {rng.choice(words)}")
            for i in range(len(calls))
        ],
        "status": [page(status=rng.choice(statuses)) for _ in calls],
        "connector + status": [page(connector=rng.choice(connectors), status=rng.choice(statuses)) for _ in calls],
        "cursor page deep in the list": [page(cursor=rng.choice(deep)) for _ in calls],
        "failure groups": [groups(None if i % 2 == 0 else rng.choice(connectors)) for i in range(len(calls))],
        "report (one call)": [
            (lambda s=c["call_session_id"]: len(log.report(s).history))  # type: ignore[union-attr]
            for c in calls
        ],
        "overview": [overview(1 if i % 2 == 0 else 7) for i in range(len(calls))],
    }


def _explain(engine: Engine, statements: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    plans = []
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        for sql, params in statements:
            prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
            try:
                rows = conn.exec_driver_sql(prefix + sql, params).all()
            except sa.exc.DBAPIError as exc:
                plans.append({"sql": sql, "error": str(exc.orig)})
                continue
            lines = [f"{r[1]}:{r[2]} {r[3]}" for r in rows] if sqlite else [r[0] for r in rows]
            plans.append({"sql": " ".join(sql.split()), "params": repr(params), "plan": lines})
    return plans


def _time_kinds(engine: Engine, total: int, count: int) -> dict[str, Any]:
    capture = _Capture(engine)
    results: dict[str, Any] = {}
    for kind, runs in _kinds(engine, total, count).items():
        for run in runs[:3]:  # warm-up
            run()
        capture.statements.clear()
        capture.armed = True
        runs[3 % len(runs)]()
        capture.armed = False
        statements = list(capture.statements)
        times, found = [], []
        started = time.monotonic()
        for run in runs:
            t0 = time.perf_counter()
            found.append(run())
            times.append((time.perf_counter() - t0) * 1000)
            if time.monotonic() - started > TIME_CAP_S:
                break
        ordered = sorted(times)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        results[kind] = {
            "queries": len(times),
            "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(p95, 2),
            "max_ms": round(ordered[-1], 2),
            "rows_median": statistics.median(found),
            "rows_max": max(found),
            "target_ms": TARGET_MS if kind in TARGETS else None,
            "met": (p95 < TARGET_MS) if kind in TARGETS else None,
            "plans": _explain(engine, statements),
        }
        print(
            f"    {kind:48} p50 {results[kind]['p50_ms']:8.2f} ms  p95 {p95:8.2f} ms  ({len(times)} queries)",
            file=sys.stderr,
            flush=True,
        )
    return results


def search_latency(*, total: int, queries: int, databases: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"calls": total, "queries_per_kind": queries, "runs": {}}
    for database in databases:
        print(f"  {database}:", file=sys.stderr)
        if database == "sqlite":
            path, note = cached_sqlite(total)
            engine = build_engine(database_url(f"sqlite:///{path}", Path(path).parent))
            try:
                out["runs"]["sqlite"] = {"generation": note, "kinds": _time_kinds(engine, total, queries)}
            finally:
                engine.dispose()
        else:
            with cached_postgres(total) as (url, note):
                engine = build_engine(database_url(url, Path(".")))
                try:
                    out["runs"]["postgresql"] = {"generation": note, "kinds": _time_kinds(engine, total, queries)}
                finally:
                    engine.dispose()
    return out


def markdown(result: dict[str, Any]) -> list[str]:
    runs = result["runs"]
    names = list(runs)
    lines = [
        f"## Search latency with {result['calls']:,} calls in the log",
        "",
        "p50 / p95 in ms over varied arguments (count per kind in the JSON); targets: phone and failure groups "
        "p95 < 100 ms.",
        "",
        "| query | " + " | ".join(f"{n} p50 | {n} p95" for n in names) + " | target |",
        "|---|" + "---:|---:|" * len(names) + "---|",
    ]
    kinds = list(next(iter(runs.values()))["kinds"]) if runs else []
    for kind in kinds:
        cells = []
        verdicts = []
        for n in names:
            k = runs[n]["kinds"].get(kind, {})
            cells.append(f"{k.get('p50_ms', '–')} | {k.get('p95_ms', '–')}")
            if k.get("met") is not None:
                verdicts.append(f"{n} {'met' if k['met'] else '**missed**'}")
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {', '.join(verdicts) or ''} |")
    for n in names:
        g = runs[n]["generation"]
        lines += [
            "",
            f"{n}: generated in {g['timings']['total_s']} s ({', '.join(f'{k} {v}' for k, v in g['timings'].items())}"
            f"{'; reused from bench/.cache' if g.get('cached') else ''}), {g['bytes'] / 1e9:.2f} GB, rows: "
            + ", ".join(f"{k} {v:,}" for k, v in g["rows"].items())
            + ".",
        ]
    slow = [(n, kind, k) for n in names for kind, k in runs[n]["kinds"].items() if k["p95_ms"] >= TARGET_MS]
    if slow:
        lines += ["", "### Plans of the queries at or over 100 ms p95", ""]
        for n, kind, k in slow:
            lines += [f"**{n}, {kind}** (p95 {k['p95_ms']} ms):", "", "```"]
            for plan in k["plans"]:
                lines.append(plan["sql"][:600])
                lines += ["  " + line for line in plan.get("plan", [plan.get("error", "")])]
            lines += ["```", ""]
    return lines
