"""One read function per page: everything a page shows, gathered before its template runs.

Templates never query; each page's data comes from one function here, built on the call log's indexed
queries (:mod:`bridge.db.queries`) and one pipelined Redis round trip — no per-row queries, so a page costs
the same with a thousand calls in the log or a million. The JSON API (:mod:`bridge.admin_api`) answers from
the same functions.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bridge.console.charts import bar_chart
from bridge.console.state import ConsoleState
from bridge.db.queries import CallSearch
from bridge.quota import read_quotas

__all__ = ["call_detail", "calls_page", "failure_group", "failures_page", "overview", "transcript_turns"]

TOP_GROUPS = 5


def _connector_names(state: ConsoleState) -> list[str]:
    return list(state.settings.connectors)


def overview(state: ConsoleState, *, days: int = 1, now_ms: int | None = None) -> dict[str, Any]:
    """Per connector: state (delivering / paused until … because … / disabled), queue depth (ready, delayed,
    dead), delivered and failed in the last hour and 24 h, latency p50/p95, the CRM's quota figures, a chart of
    the last 24 h (hourly) or 7 days (daily); the log's lag; the top failure groups."""
    now_ms = now_ms or int(time.time() * 1000)
    settings = state.settings
    names = _connector_names(state)
    enabled = settings.enabled_connectors()
    keys = state.keys
    pipe = state.redis.pipeline(transaction=False)
    for name in names:
        queue = keys.queue(name)
        pipe.hgetall(keys.circuit(name))
        pipe.llen(keys.queue_list(queue))
        pipe.zcard(keys.queue_scheduled(queue))
    replies = pipe.execute()
    quotas = read_quotas(state.redis, keys.prefix, names)
    stats = state.queries.overview(now_ms, days=days)
    dead = state.queries.dead_count()
    groups = state.queries.failure_groups()
    lag = state.log_lag()
    latest_failure: dict[str, dict[str, Any]] = {}
    for group in groups:
        seen = latest_failure.get(group["connector"])
        if seen is None or (group["last_seen"] or 0) > (seen["last_seen"] or 0):
            latest_failure[group["connector"]] = group
    connectors = []
    for i, name in enumerate(names):
        circuit_raw, ready, delayed = replies[3 * i : 3 * i + 3]
        circuit = {_text(k): int(v) for k, v in (circuit_raw or {}).items()}
        open_until = circuit.get("open_until", 0)
        figures = stats.get(name, {})
        if name not in enabled:
            status = "disabled"
        elif open_until > now_ms:
            status = "paused"
        else:
            status = "delivering"
        why = latest_failure.get(name)
        series = figures.get("series", [])
        connectors.append(
            {
                "name": name,
                "type": settings.connectors[name].get("type", ""),
                "status": status,
                "paused_until": open_until if status == "paused" else None,
                "paused_why": (why or {}).get("error_group") or (why or {}).get("sample_error") or "",
                "circuit_opens": circuit.get("opens", 0),
                "ready": int(ready or 0),
                "delayed": int(delayed or 0),
                "dead": dead.get(name, 0),
                "delivered_1h": figures.get("delivered_1h", 0),
                "failed_1h": figures.get("failed_1h", 0),
                "delivered_24h": figures.get("delivered_24h", 0),
                "failed_24h": figures.get("failed_24h", 0),
                "p50_ms": figures.get("p50_ms"),
                "p95_ms": figures.get("p95_ms"),
                "quota": quotas.get(name),
                "series": [{"start": start, "delivered": d, "failed": f} for start, d, f in series],
                "chart": bar_chart(series, now_ms=now_ms, days=days),
            }
        )
    return {
        "connectors": connectors,
        "days": days,
        "lag": {"events": lag.events, "seconds": round(lag.seconds, 1)},
        "groups": groups[:TOP_GROUPS],
        "group_count": len(groups),
        "now_ms": now_ms,
    }


def calls_page(state: ConsoleState, search: CallSearch) -> dict[str, Any]:
    page = state.call_log.search(search)
    return {"calls": page.calls, "next_cursor": page.next_cursor, "connectors": _connector_names(state)}


def call_detail(state: ConsoleState, call_id: str) -> dict[str, Any] | None:
    """The call's report, its payload (redacted when redaction is on), transcript turns and per-connector
    timelines of attempts."""
    report = state.call_log.report(call_id)
    if report is None:
        return None
    body = state.call_log.payload(call_id)
    document: Any = None
    if body is not None:
        try:
            document = json.loads(body)
        except ValueError:
            document = None
    data = document.get("data") if isinstance(document, dict) and isinstance(document.get("data"), dict) else {}
    if state.redactor is not None and data:
        data = state.redactor.call(data)
        document = {**document, "data": data}
    analysis = data.get("post_call_analysis") if isinstance(data.get("post_call_analysis"), dict) else {}
    timelines: dict[str, list[dict[str, Any]]] = {c.connector: [] for c in report.connectors}
    received = []
    for entry in report.history:
        connector = entry.get("connector")
        if connector and entry.get("type") in ("attempt", "paused", "purged"):
            timelines.setdefault(connector, []).append(entry)
        elif entry.get("type") in ("received", "replay", "backfill"):
            received.append(entry)
    return {
        "report": report,
        "data": data,
        "analysis": analysis,
        "summary": data.get("summary") if isinstance(data.get("summary"), str) else report.facts.get("summary"),
        "next_steps": analysis.get("next_steps") if isinstance(analysis.get("next_steps"), str)
        else report.facts.get("next_steps"),
        "sentiment": analysis.get("sentiment") or report.facts.get("sentiment"),
        "recording_url": data.get("recording_url") if isinstance(data.get("recording_url"), str) else "",
        "transcript": transcript_turns(data.get("transcripts")),
        "payload_json": json.dumps(document, indent=2, ensure_ascii=False) if document is not None else "",
        "timelines": timelines,
        "received": received,
        "redacted": state.redactor is not None,
    }


def transcript_turns(turns: Any) -> list[dict[str, str]]:
    """[{at: "01:05", role: "Agent", text}] from the payload's `transcripts` (anything else is skipped)."""
    if not isinstance(turns, list):
        return []
    out = []
    for turn in turns:
        if not isinstance(turn, dict):
            continue
        message = turn.get("message")
        content = message.get("content") if isinstance(message, dict) else message
        if not content:
            continue
        stamp = ""
        ms = turn.get("timestamp_ms")
        if isinstance(ms, int | float) and ms >= 0:
            minutes, seconds = divmod(int(ms // 1000), 60)
            stamp = f"{minutes:02d}:{seconds:02d}"
        role = str(turn.get("role") or "unknown").lower()
        label = {"agent": "Agent", "assistant": "Agent", "user": "Customer", "customer": "Customer"}.get(
            role, role.capitalize()
        )
        out.append({"at": stamp, "role": label, "text": str(content)})
    return out


def failures_page(state: ConsoleState, connector: str | None = None) -> dict[str, Any]:
    groups = state.queries.failure_groups(connector or None)
    return {
        "groups": groups,
        "connector": connector or "",
        "connectors": _connector_names(state),
        "total": sum(g["count"] for g in groups),
    }


GROUP_PAGE_LIMIT = 500


def failure_group(state: ConsoleState, connector: str, group: str | None) -> dict[str, Any]:
    """One group's calls (the first GROUP_PAGE_LIMIT shown; bulk actions take the whole group)."""
    groups = [g for g in state.queries.failure_groups(connector) if group is None or g["error_group"] == group]
    calls = state.queries.failing_calls(connector, group, limit=GROUP_PAGE_LIMIT)
    return {
        "connector": connector,
        "group": group,
        "summary": groups[0] if len(groups) == 1 else None,
        "count": sum(g["count"] for g in groups),
        "calls": calls,
        "limit": GROUP_PAGE_LIMIT,
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
