"""Human-readable output for the admin commands (`calls`, `dlq`, `backfill`), built with rich."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bridge.calls import CallReport

__all__ = ["backfill_progress", "render_dead_letters", "render_list", "render_report"]

_COLOURS = {"delivered": "green", "skipped": "cyan", "pending": "yellow", "failed": "red", "dead": "bold red"}


def _when(seconds: float | None) -> str:
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _render(renderable: Any) -> str:
    """Plain text (no colours); cells are escaped by the callers, since CRM errors contain [brackets]."""
    console = Console(record=True, width=140, file=None, force_terminal=False, color_system=None)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get().rstrip()


def render_report(report: CallReport) -> str:
    facts = report.facts
    lines = [
        f"Call {report.call_session_id}: {report.status.upper()}",
        f"  received {_when(report.received_at)} from {report.source_ip or '-'} (org {report.org_id or '-'})",
        f"  route: {report.route or '-'} -> {', '.join(c.connector for c in report.connectors) or 'no connector'}",
    ]
    who = " · ".join(str(facts[key]) for key in ("caller_name", "phone", "email", "direction") if facts.get(key))
    if who:
        lines.append(f"  party: {who}")
    call = " · ".join(
        f"{label} {facts[key]}"
        for label, key in (
            ("agent", "agent_name"),
            ("disposition", "disposition"),
            ("sentiment", "sentiment"),
            ("duration", "duration_sec"),
        )
        if facts.get(key) is not None
    )
    if call:
        lines.append(f"  {call}")
    table = Table("connector", "status", "attempts", "result", box=None, pad_edge=False)
    for state in report.connectors:
        if state.status in ("delivered", "skipped"):
            result = (
                ", ".join(
                    f"{kind} {rid}" + (f" <{state.links[kind]}>" if kind in state.links else "")
                    for kind, rid in state.records.items()
                )
                or "-"
            )
            if state.match:
                result += f"; match: {state.match}"
        else:
            result = state.last_error or ("dead letter purged" if state.status == "purged" else "waiting in the queue")
        if state.mapping:
            result += f" [mapping {state.mapping}@{state.mapping_digest}]"
        table.add_row(escape(state.connector), state.status, str(state.attempts), escape(result))
    lines.append(_render(table))
    lines.append("History:")
    for event in report.history:
        stamp = datetime.fromtimestamp(event.get("t", 0) / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]
        if event.get("type") == "attempt":
            detail = (
                event.get("error")
                or event.get("skipped")
                or ", ".join(f"{k} {v}" for k, v in (event.get("records") or {}).items())
            )
            extra = f" mapping {event['mapping']}@{event.get('mapping_digest', '')}" if event.get("mapping") else ""
            lines.append(
                f"  {stamp}  {event.get('connector')}  attempt {event.get('attempt')}  {event.get('outcome')}"
                f"  {detail}{extra}"
            )
        elif event.get("type") in ("paused", "purged"):
            lines.append(f"  {stamp}  {event.get('connector')}  {event.get('type')}  {event.get('reason') or ''}")
        else:
            lines.append(f"  {stamp}  {event.get('type')}  {event.get('route', '')} -> {event.get('connectors', [])}")
    return "\n".join(lines)


def render_list(reports: list[CallReport]) -> str:
    if not reports:
        return "no calls match"
    table = Table("received", "call_session_id", "status", "party", "agent", "connectors", box=None, pad_edge=False)
    for report in reports:
        states = ", ".join(f"{c.connector}={c.status}" for c in report.connectors) or "-"
        party = report.facts.get("phone") or report.facts.get("email") or "-"
        table.add_row(
            _when(report.received_at),
            escape(report.call_session_id),
            report.status,
            escape(str(party)),
            escape(str(report.facts.get("agent_name") or "-")),
            escape(states),
        )
    return _render(table)


def render_dead_letters(letters: list[dict[str, Any]]) -> str:
    if not letters:
        return "no dead letters"
    table = Table("when", "connector", "call_session_id", "attempts", "error", box=None, pad_edge=False)
    for letter in letters:
        table.add_row(
            _when(letter.get("t", 0) / 1000),
            escape(letter.get("connector", "")),
            escape(letter.get("call_session_id", "")),
            str(letter.get("attempts", "")),
            escape((letter.get("error") or "")[:100]),
        )
    return _render(table)


@contextmanager
def backfill_progress(total: int, summary: Any) -> Iterator[Callable[[], None]]:
    """A progress bar with rate, ETA and the running accepted/duplicate/invalid counts (on stderr)."""
    progress = Progress(
        TextColumn("backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}/s"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[counts]}"),
        console=Console(file=sys.stderr),
        transient=False,
    )

    def counts() -> str:
        return f"accepted {summary.accepted} · duplicate {summary.duplicate} · invalid {summary.invalid}"

    with progress:
        task = progress.add_task("backfill", total=total, rate="0", counts=counts())

        def advance() -> None:
            progress.advance(task)
            speed = progress.tasks[0].speed or 0
            progress.update(task, rate=f"{speed:,.0f}", counts=counts())

        yield advance
