"""`python -m bench`: run the benchmark sections and write bench/results/latest.{md,json}.

Sections:
  ingest    requests/s and p50/p99/p99.9 acknowledgement latency at fixed concurrency, for the bridge's
            endpoint (uvicorn and granian), the same server's decode-only ceiling, and a FastAPI +
            pydantic reference doing the same claim + enqueue; peak RSS; Redis memory per queued call
  e2e       webhook received -> record at the receiver, p50/p99, at a light steady rate
  delivery  bursts of queued calls delivered to fake CRMs under their rate limits, and how long after the
            last delivery the call log catches up, per log database (see bench/delivery.py)
  layout    ingest with the current Redis layout vs the previous one (history list + index), same run
            (bench/layout.py)
  footprint Redis bytes and database bytes per delivered call, payload with a 20 KB transcript
            (bench/footprint.py)
  search    query latency over a log of a million calls, generated once and cached in bench/.cache
            (bench/search.py)
  diagnose  the evidence behind the proposed fixes: the slow queries' plans beside proposed shapes (on
            the cached log), the log writer's statements per batch, Redis key layouts (bench/diagnose.py)

`--only a,b` picks sections (aliases: log = delivery, redis and database = footprint); `--quick` runs
each small, to check the harness, and writes bench/results/quick.*. A run of some sections keeps the
other sections of the results file as they were (each section records its own date and machine load).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench.loadgen import run_wrk, wrk_available
from bench.procs import ORG, ROOT, peak_rss_mb, serve
from bridge.embedded_redis import EmbeddedRedis
from bridge.keys import Keys

EXAMPLE = ROOT / "examples" / "call_completed.json"
RESULTS = ROOT / "bench" / "results"

CONFIG = """
agni: {{org_ids: ["{org}"]}}
data_dir: {data}
mappings_dir: {mappings}
logging: {{level: WARNING}}
connectors:
  crm: {{type: jsonl, path: {data}/outbox.jsonl}}
  forward: {{type: webhook_forward, url: "{forward}"}}
"""


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def template() -> str:
    payload = json.loads(EXAMPLE.read_text())
    payload["data"]["call_session_id"] = "__CALL_ID__"
    return json.dumps(payload)


def ingest(args: argparse.Namespace, tmp: Path, redis_url: str) -> dict[str, Any]:
    config = tmp / "config.yaml"
    config.write_text(
        CONFIG.format(org=ORG, data=tmp / "var", mappings=ROOT / "mappings", forward="http://127.0.0.1:9/unused")
    )
    env = {"AGNI_BRIDGE_CONFIG": str(config), "AGNI_BRIDGE_REDIS_URL": redis_url, "BENCH_ORG_IDS": ORG}
    client = redis.Redis.from_url(redis_url)
    # Redis fsyncs its append-only file before replying (`always`, the embedded default) for every
    # target that writes, the reference included; one extra row shows what `everysec` would buy.
    targets = [
        ("bridge", "uvicorn", "bench.apps:bridge_app", "/webhooks/agni", "always"),
        ("bridge", "granian", "bench.apps:bridge_app", "/webhooks/agni", "always"),
        ("bridge, fsync everysec", "uvicorn", "bench.apps:bridge_app", "/webhooks/agni", "everysec"),
        ("decode-only ceiling", "uvicorn", "bench.apps:bridge_app", "/bench/decode-only", "always"),
        ("decode-only ceiling", "granian", "bench.apps:bridge_app", "/bench/decode-only", "always"),
        (
            "FastAPI + pydantic reference",
            "uvicorn",
            "bench.reference_fastapi:create_reference_app",
            "/webhooks/agni",
            "always",
        ),
    ]
    rows = []
    memory: dict[str, Any] = {}
    body = template()
    for name, server, factory, path, fsync in targets:
        client.flushall()
        client.config_set("appendfsync", fsync)
        before = client.info("memory")["used_memory"]
        with serve(server, factory, env, workers=args.server_workers) as (url, pid):
            run_wrk(url, path, body, connections=16, seconds=2)  # warm-up
            for connections in args.concurrency:
                result = run_wrk(url, path, body, connections=connections, seconds=args.seconds)
                rows.append(
                    {
                        "target": name,
                        "server": server,
                        "path": path,
                        "fsync": fsync,
                        "connections": connections,
                        "rps": round(result.rps),
                        "p50_ms": result.p50_ms,
                        "p99_ms": result.p99_ms,
                        "p999_ms": result.p999_ms,
                        "non2xx": result.non2xx,
                        "socket_errors": result.socket_errors,
                        "peak_rss_mb": round(peak_rss_mb(pid), 1),
                    }
                )
                print(
                    f"  {name:32} {server:8} c={connections:<4} {result.rps:8.0f} req/s  "
                    f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  p99.9 {result.p999_ms:6.1f} ms",
                    file=sys.stderr,
                )
        if name == "bridge" and server == "uvicorn":
            queued = client.xlen(Keys().events)  # one "received" event per accepted call; nothing drains here
            used = client.info("memory")["used_memory"] - before
            memory = {
                "queued_calls": queued,
                "redis_bytes": used,
                "bytes_per_call": round(used / max(queued, 1)),
                "jobs_per_call": 2,
            }
    return {"rows": rows, "redis_memory": memory}


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each server and concurrency: bridge vs reference, bridge vs decode-only ceiling."""
    out = []
    index = {(r["target"], r["server"], r["connections"]): r for r in rows}
    for (target, server, connections), row in index.items():
        if target != "bridge":
            continue
        ref = index.get(("FastAPI + pydantic reference", "uvicorn", connections))
        ceiling = index.get(("decode-only ceiling", server, connections))
        everysec = index.get(("bridge, fsync everysec", server, connections))
        out.append(
            {
                "server": server,
                "connections": connections,
                "vs_reference": _ratio(row, ref),
                "vs_ceiling": _ratio(row, ceiling),
                "vs_everysec": _ratio(row, everysec),
                "p99_ms": row["p99_ms"],
            }
        )
    return out


def _ratio(row: dict[str, Any], reference: dict[str, Any] | None) -> float | None:
    return round(row["rps"] / reference["rps"], 2) if reference and reference["rps"] else None


def _times(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio}×"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; last run {m['date']} (each section's own "
        "date and the machine's load average around it are listed at the end: the machine is shared). "
        "Load generator (wrk, 2 threads) on the same machine.",
        "",
    ]
    if "ingest" in results:
        lines += [
            "## Ingest: POST /webhooks/agni, unique calls",
            "",
            "| target | server | conn | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | peak RSS MB |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["ingest"]["rows"]:
            lines.append(
                f"| {r['target']} | {r['server']} | {r['connections']} | {r['rps']} | {r['p50_ms']:.1f} | "
                f"{r['p99_ms']:.1f} | {r['p999_ms']:.1f} | {r['non2xx']} | {r['peak_rss_mb']} |"
            )
        lines += [
            "",
            "| server | conn | bridge / FastAPI reference | bridge / decode-only ceiling "
            "| fsync always / everysec | bridge p99 ms |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in results["ingest"]["ratios"]:
            lines.append(
                f"| {r['server']} | {r['connections']} | {_times(r['vs_reference'])} | {_times(r['vs_ceiling'])} | "
                f"{_times(r.get('vs_everysec'))} | {r['p99_ms']:.1f} |"
            )
        mem = results["ingest"].get("redis_memory") or {}
        if mem:
            lines += [
                "",
                f"Redis memory per queued call: {mem['bytes_per_call']} bytes "
                f"({mem['queued_calls']} calls, {mem['jobs_per_call']} jobs each, payload "
                f"{EXAMPLE.stat().st_size} bytes).",
            ]
    if "e2e" in results:
        lines += ["", "## e2e", "", "```json", json.dumps(results["e2e"], indent=2), "```"]
    from bench import delivery, diagnose, footprint, layout, search

    sections = (("delivery", delivery), ("layout", layout), ("footprint", footprint), ("search", search))
    for key, module in (*sections, ("diagnose", diagnose)):
        if key in results:
            lines += ["", *module.markdown(results[key])]
    runs = results.get("runs") or {}
    if runs:
        lines += ["", "## When each section ran", "", "| section | date | load average before → after |"]
        lines.append("|---|---|---|")
        for key, run in runs.items():
            lines.append(f"| {key} | {run['date']} | {run['load_before']} → {run['load_after']} |")
    return "\n".join(lines) + "\n"


ALIASES = {"log": "delivery", "redis": "footprint", "database": "footprint"}
ALL = "ingest,e2e,delivery,layout,footprint,search,diagnose"


def _load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", "--only", dest="sections", default=ALL, help=f"comma-separated, of {ALL}")
    parser.add_argument("--seconds", type=float, default=10.0, help="per load level")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[16, 64, 256])
    parser.add_argument("--server-workers", type=int, default=1)
    parser.add_argument("--calls", type=int, default=10_000, help="calls per delivery burst")
    parser.add_argument("--databases", default="sqlite,postgresql", help="log databases for delivery/footprint/search")
    parser.add_argument("--layout-rounds", type=int, default=4, help="alternating rounds per layout")
    parser.add_argument("--footprint-calls", type=int, default=2_000)
    parser.add_argument("--search-calls", type=int, default=1_000_000)
    parser.add_argument("--search-queries", type=int, default=200, help="queries per kind")
    parser.add_argument("--quick", action="store_true", help="short runs, to check the harness works")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.concurrency, args.calls = 2.0, [16, 64], 500
        args.layout_rounds, args.footprint_calls, args.search_calls, args.search_queries = 2, 200, 20_000, 20
    sections = {ALIASES.get(s.strip(), s.strip()) for s in args.sections.split(",") if s.strip()}
    unknown = sections - set(ALL.split(","))
    if unknown:
        sys.exit(f"unknown section(s): {', '.join(sorted(unknown))} (choose from {ALL})")
    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    if sections & {"ingest", "layout"} and not wrk_available():
        sys.exit("wrk is needed for the ingest benchmarks: apt-get install wrk (make bench does this)")
    name = "quick" if args.quick else "latest"
    previous = RESULTS / f"{name}.json"
    results: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() else {}
    results.update(machine=machine(), args={k: v for k, v in vars(args).items()})
    runs = results.setdefault("runs", {})
    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        server = EmbeddedRedis(tmp / "redis", appendonly=True)
        server.start()
        stack.callback(server.stop)
        pg_server: str | None = None
        if "postgresql" in databases and sections & {"delivery", "footprint"}:
            from bench.pg import temporary_postgres

            pg_server = stack.enter_context(temporary_postgres())

        def run(section: str, fn: Any) -> None:
            print(f"{section}:", file=sys.stderr)
            started = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "load_before": _load()}
            results[section] = fn()
            runs[section] = {**started, "load_after": _load()}

        if "ingest" in sections:

            def ingest_section() -> dict[str, Any]:
                data = ingest(args, tmp, server.url)
                return {**data, "ratios": ratios(data["rows"])}

            run("ingest", ingest_section)
        if "e2e" in sections:
            from bench.e2e import end_to_end

            run("e2e", lambda: end_to_end(tmp, server.url, seconds=args.seconds * 1.5))
        if "delivery" in sections:
            from bench.delivery import delivery_bursts

            run(
                "delivery",
                lambda: delivery_bursts(tmp, server.url, calls=args.calls, databases=databases, pg_server=pg_server),
            )
        if "layout" in sections:
            from bench.layout import layout_comparison

            run(
                "layout",
                lambda: layout_comparison(
                    tmp,
                    server.url,
                    template(),
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                    rounds=args.layout_rounds,
                ),
            )
        if "footprint" in sections:
            from bench.footprint import footprint

            run(
                "footprint",
                lambda: footprint(tmp, server.url, calls=args.footprint_calls, backends=databases, pg_server=pg_server),
            )
        if "search" in sections:
            from bench.search import search_latency

            run(
                "search",
                lambda: search_latency(total=args.search_calls, queries=args.search_queries, databases=databases),
            )
        if "diagnose" in sections:
            from bench.diagnose import diagnose

            run("diagnose", lambda: diagnose(total=args.search_calls, databases=databases))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
