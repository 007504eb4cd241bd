"""Ingest with the current Redis layout vs the previous one, measured in the same run.

The current ingest script appends a "received" event to the log stream; the previous one (before the
call log moved into a database) pushed a per-call history list and a sorted-set index entry instead
(bench/legacy_ingest.py). Both are served by the same app on the same server (uvicorn, one process,
Redis fsyncing before every answer), with the same wrk setup as the ingest section.

Runs alternate A B B A … per round so drift in the machine's load (it is shared) falls on both
alike; each variant gets a fresh server and an empty Redis per round. Reported: median req/s and p99
per variant and concurrency, the ratio current / previous, and the noise: the spread of one variant's
own repeats ((max − min) / median, the larger of the two), for req/s and for p99 alike. "Within noise"
means the current layout is no slower, in req/s and in p99, than that spread allows. Also: Redis bytes
per queued call in each layout (no worker running).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

import redis

from bench.legacy_ingest import PREVIOUS_LAYOUT_COMMIT
from bench.loadgen import run_wrk
from bench.procs import ORG, ROOT, serve
from bridge.keys import Keys

__all__ = ["layout_comparison", "markdown"]

CONFIG = """
agni: {{org_ids: ["{org}"]}}
data_dir: {data}
mappings_dir: {mappings}
logging: {{level: WARNING}}
connectors:
  crm: {{type: jsonl, path: {data}/outbox.jsonl}}
  forward: {{type: webhook_forward, url: "http://127.0.0.1:9/unused"}}
"""

VARIANTS = {
    "current": "bench.apps:bridge_app",
    "previous": "bench.apps:previous_layout_app",
}


def _queued(client: redis.Redis, variant: str) -> int:
    """Calls accepted so far (nothing drains during the run): stream entries, or the previous index."""
    keys = Keys()
    return int(client.xlen(keys.events) if variant == "current" else client.zcard(keys.legacy_index))


def layout_comparison(
    tmp: Path, redis_url: str, body: str, *, concurrency: list[int], seconds: float, rounds: int
) -> dict[str, Any]:
    config = tmp / "layout.yaml"
    config.write_text(CONFIG.format(org=ORG, data=tmp / "var-layout", mappings=ROOT / "mappings"))
    env = {"AGNI_BRIDGE_CONFIG": str(config), "AGNI_BRIDGE_REDIS_URL": redis_url}
    client = redis.Redis.from_url(redis_url)
    runs: list[dict[str, Any]] = []
    memory: dict[str, list[float]] = {"current": [], "previous": []}
    for round_no in range(rounds):
        order = ["current", "previous"] if round_no % 2 == 0 else ["previous", "current"]
        for variant in order:
            client.flushall()
            client.config_set("appendfsync", "always")
            before = client.info("memory")["used_memory"]
            with serve("uvicorn", VARIANTS[variant], env) as (url, _pid):
                run_wrk(url, "/webhooks/agni", body, connections=16, seconds=2)  # warm-up
                for connections in concurrency:
                    result = run_wrk(url, "/webhooks/agni", body, connections=connections, seconds=seconds)
                    runs.append(
                        {
                            "variant": variant,
                            "round": round_no,
                            "connections": connections,
                            "rps": round(result.rps),
                            "p50_ms": result.p50_ms,
                            "p99_ms": result.p99_ms,
                            "non2xx": result.non2xx,
                        }
                    )
                    print(
                        f"  {variant:8} round {round_no} c={connections:<4} {result.rps:7.0f} req/s  "
                        f"p99 {result.p99_ms:6.1f} ms",
                        file=sys.stderr,
                    )
            queued = _queued(client, variant)
            memory[variant].append((client.info("memory")["used_memory"] - before) / max(queued, 1))
    return {
        "baseline": f"previous layout, git show {PREVIOUS_LAYOUT_COMMIT}:bridge/ingest.py (bench/legacy_ingest.py)",
        "server": "uvicorn, 1 process, appendfsync always",
        "seconds": seconds,
        "rounds": rounds,
        "runs": runs,
        "summary": _summary(runs, concurrency),
        "redis_bytes_per_queued_call": {k: round(statistics.median(v)) for k, v in memory.items() if v},
    }


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else 0.0


def _summary(runs: list[dict[str, Any]], concurrency: list[int]) -> list[dict[str, Any]]:
    rows = []
    for connections in concurrency:
        by = {
            v: [r for r in runs if r["variant"] == v and r["connections"] == connections]
            for v in ("current", "previous")
        }
        if not by["current"] or not by["previous"]:
            continue
        rps = {v: statistics.median(r["rps"] for r in rs) for v, rs in by.items()}
        p99 = {v: statistics.median(r["p99_ms"] for r in rs) for v, rs in by.items()}
        noise = max(_spread([r["rps"] for r in rs]) for rs in by.values())
        p99_noise = max(_spread([r["p99_ms"] for r in rs]) for rs in by.values())
        ratio = rps["current"] / rps["previous"] if rps["previous"] else 0.0
        p99_ratio = p99["current"] / p99["previous"] if p99["previous"] else 0.0
        rows.append(
            {
                "connections": connections,
                "current_rps": round(rps["current"]),
                "previous_rps": round(rps["previous"]),
                "ratio": round(ratio, 3),
                "noise": round(noise, 3),
                "current_p99_ms": round(p99["current"], 1),
                "previous_p99_ms": round(p99["previous"], 1),
                "p99_ratio": round(p99_ratio, 3),
                "p99_noise": round(p99_noise, 3),
                # req/s no lower and p99 no higher than the repeats' own spread allows
                "met": (ratio >= 1.0 or 1.0 - ratio <= noise) and (p99_ratio <= 1.0 or p99_ratio - 1.0 <= p99_noise),
            }
        )
    return rows


def markdown(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Ingest: current layout (log stream) vs previous layout (history list + index zset)",
        "",
        f"Baseline: {result['baseline']}. {result['server']}; {result['rounds']} rounds of {result['seconds']:.0f} s "
        "per concurrency, alternating; medians.",
        "",
        "| conn | current req/s | previous req/s | current / previous | req/s spread of repeats "
        "| current p99 ms | previous p99 ms | p99 spread | within noise or better |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["summary"]:
        lines.append(
            f"| {r['connections']} | {r['current_rps']} | {r['previous_rps']} | {r['ratio']}× "
            f"| {r['noise'] * 100:.0f} % | {r['current_p99_ms']} | {r['previous_p99_ms']} "
            f"| {r.get('p99_noise', 0) * 100:.0f} % | {'yes' if r['met'] else '**no**'} |"
        )
    mem = result.get("redis_bytes_per_queued_call") or {}
    if mem:
        lines += [
            "",
            f"Redis bytes per queued call (before any delivery, 2 jobs each): current {mem.get('current')}, "
            f"previous {mem.get('previous')}.",
        ]
    return lines
