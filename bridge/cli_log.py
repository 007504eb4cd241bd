"""The admin commands over the call log: `calls`, `dlq`, `replay`, `backfill`, `db`, `audit`.

They read the log's database (`calls show/list`, `dlq list/show`) and act through Redis, the same path a
webhook takes (`replay`, `dlq replay`, `backfill`), so what they do shows up in the log like anything else.
On one machine they find the embedded Redis of a running `agni-bridge run` by themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from bridge.calls import STATUSES, parse_when
from bridge.cli_base import ConfigCommand, ConfigGroup, load, redis_url
from bridge.errors import BridgeError
from bridge.settings import Settings

__all__ = ["register_log_commands"]


@dataclass
class _Admin:
    settings: Settings
    client: Any
    engine: Any
    ops: Any
    log: Any

    def lag(self) -> Any:
        from bridge.db.drain import LogDrain
        from bridge.db.writer import LogWriter
        from bridge.keys import Keys

        return LogDrain(self.client, Keys(self.settings.redis.prefix), LogWriter(self.engine)).lag()


def _admin(ctx: click.Context, *, migrate: bool = True) -> _Admin:
    """Settings, Redis, the log database (schema brought up to date) and the operations object."""
    import redis

    from bridge.calls import CallLog
    from bridge.db.engine import log_engine
    from bridge.db.migrate import ensure_schema
    from bridge.db.queries import LogQueries
    from bridge.ingest import Ingestor
    from bridge.keys import Keys
    from bridge.replay import Operations
    from bridge.routing import Router
    from bridge.webhook import WebhookIntake

    settings = load(ctx)
    client = redis.Redis.from_url(redis_url(settings, embedded_ok=True), socket_timeout=10)
    keys = Keys(settings.redis.prefix)
    engine = log_engine(settings)
    try:
        if migrate:
            ensure_schema(engine)
    except BridgeError as exc:
        raise click.ClickException(str(exc)) from exc
    ingestor = Ingestor(
        client,
        keys,
        dedupe_ttl_seconds=settings.dedupe_ttl_days * 86400,
        retention_seconds=settings.retention_days * 86400,
    )
    intake = WebhookIntake(ingestor=ingestor, router=Router(settings), org_ids=settings.agni.org_ids, token="")
    region = settings.database.phone_region
    queries = LogQueries(engine, region=region)
    ops = Operations(client, keys, intake, ingestor, settings.enabled_connectors(), queries)
    return _Admin(settings, client, engine, ops, CallLog(engine, region=region))


def _fail(exc: BridgeError) -> click.ClickException:
    return click.ClickException(str(exc))


# -- calls ---------------------------------------------------------------------------------


@click.group(cls=ConfigGroup)
def calls() -> None:
    """What happened to a call: its route, every attempt per connector, records written, dead letters."""


@calls.command("show")
@click.argument("call_session_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def calls_show(ctx: click.Context, call_session_id: str, as_json: bool) -> None:
    from bridge.report import render_report

    admin = _admin(ctx)
    try:
        report = admin.log.report(call_session_id)
    except BridgeError as exc:
        raise _fail(exc) from exc
    if report is None:
        lag = admin.lag()
        behind = f"; the log is {lag.events} event(s) behind ({lag.seconds:.0f}s)" if lag.events else ""
        known = admin.client.exists(admin.ops.keys.dedupe(call_session_id))
        state = "it was received and is not in the log yet" if known else "never received, or older than retention"
        raise click.ClickException(f"no record of call {call_session_id} ({state}{behind})")
    click.echo(json.dumps(report.to_dict(), indent=2, default=str) if as_json else render_report(report))


@calls.command("list")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--connector", default=None, help="Only calls routed to this connector (with --status: its status).")
@click.option("--since", default=None, help="Received after: 30m, 2h, 7d ago, or an ISO date/time.")
@click.option("--until", default=None, help="Received before: a duration ago or an ISO date/time.")
@click.option("--phone", default=None, help="Any party's number, in any spelling (+1 415 555 0100, (415) 555-0100).")
@click.option("--email", default=None)
@click.option("--agent", default=None, help="The agent's name (case-insensitive).")
@click.option("--disposition", default=None, help="E.g. meeting_booked (case-insensitive).")
@click.option("--text", default=None, help="Words in the summary or next steps.")
@click.option("--cursor", default=None, help="Continue after the last page (printed below it).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def calls_list(ctx: click.Context, as_json: bool, since: str | None, until: str | None, **filters: Any) -> None:
    """Calls, newest first, filtered; one page at a time."""
    from bridge.calls import CallSearch
    from bridge.report import render_list

    try:
        window = {"since_ms": parse_when(since) if since else None, "until_ms": parse_when(until) if until else None}
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from exc
    admin = _admin(ctx)
    try:
        page = admin.log.search(CallSearch(**window, **filters))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--cursor") from exc
    except BridgeError as exc:
        raise _fail(exc) from exc
    if as_json:
        body = {"calls": [r.to_dict(history=False) for r in page.calls], "next_cursor": page.next_cursor}
        click.echo(json.dumps(body, indent=2, default=str))
        return
    click.echo(render_list(page.calls))
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")


# -- dead letters --------------------------------------------------------------------------


@click.group(cls=ConfigGroup)
def dlq() -> None:
    """Dead letters: calls a connector gave up on (permanent error or retries exhausted)."""


@dlq.command("list")
@click.option("--connector", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dlq_list(ctx: click.Context, connector: str | None, as_json: bool) -> None:
    from bridge.report import render_dead_letters

    letters = _admin(ctx).ops.dead_letters(connector)
    click.echo(json.dumps(letters, indent=2) if as_json else render_dead_letters(letters))


@dlq.command("show")
@click.argument("call_session_id")
@click.option("--connector", default=None)
@click.pass_context
def dlq_show(ctx: click.Context, call_session_id: str, connector: str | None) -> None:
    """The dead letter(s) of a call, with its webhook payload."""
    admin = _admin(ctx)
    letters = admin.ops.dead_letter(call_session_id, connector)
    if not letters:
        raise click.ClickException(f"no dead letter for {call_session_id}")
    body = admin.ops.body(call_session_id)
    for letter in letters:
        letter["payload"] = body.decode("utf-8", "replace")
    click.echo(json.dumps(letters, indent=2))


@dlq.command("replay")
@click.argument("call_ids", nargs=-1)
@click.option("--connector", default=None)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter (of --connector, if given).")
@click.pass_context
def dlq_replay(ctx: click.Context, call_ids: tuple[str, ...], connector: str | None, replay_all: bool) -> None:
    """Re-enqueue dead letters with the current config and mapping (upserts: no duplicates)."""
    if not call_ids and not replay_all:
        raise click.UsageError("name call ids, or pass --all")
    admin = _admin(ctx)
    try:
        done = admin.ops.replay_dead(connector, None if replay_all else list(call_ids))
    except BridgeError as exc:
        raise _fail(exc) from exc
    for name, call_id in done:
        click.echo(f"re-enqueued {call_id} for {name}")
    click.echo(f"{len(done)} dead letter(s) re-enqueued; they leave the list once the log records the replay")


@dlq.command("purge")
@click.argument("call_ids", nargs=-1)
@click.option("--connector", default=None)
@click.option("--all", "purge_all", is_flag=True)
@click.pass_context
def dlq_purge(ctx: click.Context, call_ids: tuple[str, ...], connector: str | None, purge_all: bool) -> None:
    """Drop dead letters for good (the log keeps that it happened)."""
    if not call_ids and not purge_all:
        raise click.UsageError("name call ids, or pass --all")
    removed = _admin(ctx).ops.purge_dead(connector, None if purge_all else list(call_ids))
    click.echo(f"{removed} dead letter(s) purged")


# -- sending again -------------------------------------------------------------------------


@click.command(cls=ConfigCommand)
@click.argument("call_session_id")
@click.option("--connector", "connector_names", multiple=True, help="Only this connector (repeatable).")
@click.pass_context
def replay(ctx: click.Context, call_session_id: str, connector_names: tuple[str, ...]) -> None:
    """Deliver a call again, bypassing the dedupe window (e.g. after fixing a mapping)."""
    try:
        targets = _admin(ctx).ops.replay(call_session_id, list(connector_names) or None)
    except BridgeError as exc:
        raise _fail(exc) from exc
    click.echo(f"re-enqueued {call_session_id} for {', '.join(targets) or 'no connector (no route matched)'}")


@click.command(cls=ConfigCommand)
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--force", is_flag=True, help="Bypass the dedupe window (deliver again calls already accepted).")
@click.pass_context
def backfill(ctx: click.Context, source: Path, force: bool) -> None:
    """Push historical webhooks (one JSON per line; a .jsonl file or a folder) through the normal path."""
    from bridge.replay import BackfillSummary, iter_payload_lines
    from bridge.report import backfill_progress

    ops = _admin(ctx).ops
    total = sum(1 for _ in iter_payload_lines(source))
    summary = BackfillSummary()
    with backfill_progress(total, summary) as advance:
        for where, body in iter_payload_lines(source):
            ops.backfill_one(body, force=force, where=where, summary=summary)
            advance()
    for problem in summary.problems:
        click.echo(click.style("invalid ", fg="yellow") + problem, err=True)
    click.echo(
        f"{summary.total} line(s): {summary.accepted} accepted, {summary.duplicate} duplicate, "
        f"{summary.ignored} ignored, {summary.invalid} invalid"
    )


# -- the database ----------------------------------------------------------------------------


@click.group(cls=ConfigGroup)
def db() -> None:
    """The call log's database: schema migrations, and moving an older install's log out of Redis."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Bring the schema up to date (the bridge also does this on start)."""
    from bridge.db.engine import log_engine, safe_url
    from bridge.db.migrate import upgrade

    engine = log_engine(load(ctx))
    try:
        before, after = upgrade(engine)
    except BridgeError as exc:
        raise _fail(exc) from exc
    moved = f"upgraded from {before or 'an empty database'} to {after}" if before != after else f"already at {after}"
    click.echo(f"{safe_url(engine)}: {moved}")


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """The schema revision of the database, and this code's."""
    from bridge.db.engine import log_engine, safe_url
    from bridge.db.migrate import SchemaState, current_revision

    engine = log_engine(load(ctx))
    try:
        state = SchemaState(current_revision(engine))
    except BridgeError as exc:
        raise _fail(exc) from exc
    verdict = (
        "up to date"
        if state.up_to_date
        else "NEWER than this bridge: refused"
        if state.newer_than_code
        else "behind: run `agni-bridge db upgrade` (or start the bridge)"
    )
    click.echo(f"{safe_url(engine)}: {state.current or 'empty'} (this bridge: {state.head}) — {verdict}")


@db.command("import-redis")
@click.pass_context
def db_import_redis(ctx: click.Context) -> None:
    """Move the log an older version kept in Redis (histories, dead letters) into the database; idempotent."""
    from bridge.db.importer import import_from_redis

    admin = _admin(ctx)
    try:
        region = admin.settings.database.phone_region
        summary = import_from_redis(admin.client, admin.ops.keys, admin.engine, region=region)
    except BridgeError as exc:
        raise _fail(exc) from exc
    click.echo(summary.describe())


# -- the audit log -----------------------------------------------------------------------------


@click.command(cls=ConfigCommand)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--actor", default=None, help="Only this user's actions.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit(ctx: click.Context, limit: int, actor: str | None, as_json: bool) -> None:
    """Admin actions taken in the console or through /admin (who, what, when, on how many calls), newest first."""
    from datetime import UTC, datetime

    from bridge.audit import AuditLog
    from bridge.db.engine import log_engine
    from bridge.db.migrate import ensure_schema

    engine = log_engine(load(ctx))
    try:
        ensure_schema(engine)
        entries = AuditLog(engine).entries(limit=limit, actor=actor)
    except BridgeError as exc:
        raise _fail(exc) from exc
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    if not entries:
        click.echo("no admin actions recorded")
    for entry in entries:
        when = datetime.fromtimestamp(entry.t / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        detail = ", ".join(f"{key} {value}" for key, value in entry.detail.items())
        click.echo(f"{when}  {entry.actor}  {entry.action}  {entry.target}  calls={entry.calls}  {detail}".rstrip())


def register_log_commands(main: click.Group) -> None:
    for command in (calls, dlq, replay, backfill, db, audit):
        main.add_command(command)
