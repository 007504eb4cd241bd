"""The `agni-bridge` command line.

    run        API + worker (+ embedded Redis when redis.url is empty), on one machine
    api        the webhook endpoint only (scale-out: many replicas on one shared Redis)
    worker     delivery workers only (scale-out)
    check      validate config, mappings and connector settings offline; exit 1 on any problem
    preview    print what each connector would write for a payload; no network
    setup      prepare destinations once (e.g. HubSpot's call-id property)
    calls      show / list: what happened to a call, and which calls failed
    dlq        list / show / replay / purge dead letters
    replay     deliver a stored call again (after a mapping fix)
    backfill   push historical payloads (JSON lines) through the normal path

Every command and group takes `--config FILE`, before or after its name
(`agni-bridge check --config my.yaml`, `agni-bridge dlq list --config my.yaml`);
given more than once, the one nearest the end wins. Without it: $AGNI_BRIDGE_CONFIG,
then ./config.yaml, then ./config.example.yaml.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from bridge.errors import BridgeError, ConfigError
from bridge.logs import configure_logging
from bridge.settings import Settings, default_config_path, load_settings

__all__ = ["main"]


CONFIG_ENV = "AGNI_BRIDGE_CONFIG"
_CONFIG_KEY = "agni_bridge.config"  # in ctx.meta, which every nested context shares


def _remember_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    # Options are parsed group first, then subcommand: the last `--config` given wins.
    if value is not None:
        ctx.meta[_CONFIG_KEY] = value


def _config_option() -> click.Option:
    return click.Option(
        ["--config"],
        type=click.Path(dir_okay=False, path_type=Path),
        expose_value=False,
        callback=_remember_config,
        help=f"Config file (default: ${CONFIG_ENV}, then config.yaml, then config.example.yaml).",
    )


class _ConfigCommand(click.Command):
    """A command that takes `--config`, so it may follow the command's name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_config_option())


class _ConfigGroup(click.Group):
    """A group whose commands and sub-groups all take `--config` (as does the group itself)."""

    command_class = _ConfigCommand
    group_class = type  # sub-groups are _ConfigGroups too

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_config_option())


def config_path(ctx: click.Context) -> Path:
    """The config file: the last --config given, else $AGNI_BRIDGE_CONFIG, else the default lookup."""
    explicit = ctx.meta.get(_CONFIG_KEY)
    if explicit is not None:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else default_config_path()


def _load(ctx: click.Context) -> Settings:
    try:
        return load_settings(config_path(ctx))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _redis_url(settings: Settings, *, embedded_ok: bool = False) -> str:
    url = os.environ.get("AGNI_BRIDGE_REDIS_URL") or settings.redis.url
    url_file = settings.resolve(settings.data_dir) / "redis" / "url"
    if not url and embedded_ok and url_file.exists():
        url = url_file.read_text().strip()  # the embedded Redis of a running `agni-bridge run`
    if not url:
        raise click.ClickException(
            "redis.url is empty: `api` and `worker` need a shared Redis (or use `agni-bridge run`, "
            "which starts an embedded one)"
        )
    return url


@click.group(cls=_ConfigGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="agni-bridge")
def main() -> None:
    """Agni CRM Bridge: Agni call webhooks into Salesforce, HubSpot and other webhooks."""


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the whole bridge on this machine (API, worker, and Redis if none is configured)."""
    from bridge.supervisor import run_all

    settings = _load(ctx)
    configure_logging(settings.logging.level, settings.logging.format)
    try:
        code = run_all(settings)
    except BridgeError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


@main.command()
@click.pass_context
def api(ctx: click.Context) -> None:
    """Serve POST /webhooks/agni, /healthz, /readyz and /metrics."""
    import uvicorn

    from bridge.app import create_app

    settings = _load(ctx)
    configure_logging(settings.logging.level, settings.logging.format)
    url = _redis_url(settings)
    server = settings.server
    if server.workers > 1:
        os.environ[CONFIG_ENV] = settings.config_path
        os.environ["AGNI_BRIDGE_REDIS_URL"] = url
        uvicorn.run(
            "bridge.app:create_app",
            factory=True,
            host=server.host,
            port=server.port,
            workers=server.workers,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=15,
        )
        return
    uvicorn.run(
        create_app(settings, redis_url=url),
        host=server.host,
        port=server.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=15,
    )


@main.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Deliver queued calls to the connectors (run several for more throughput)."""
    from bridge.worker import run_worker

    settings = _load(ctx)
    configure_logging(settings.logging.level, settings.logging.format)
    try:
        run_worker(settings, _redis_url(settings))
    except BridgeError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option(
    "--payload",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Also render every mapping against this webhook (default: examples/call_completed.json if present).",
)
@click.pass_context
def check(ctx: click.Context, payload: Path | None) -> None:
    """Validate the config, every mapping and every connector's settings, offline."""
    from bridge.checks import run_checks

    problems, report = run_checks(config_path(ctx), payload)
    for line in report:
        click.echo(line)
    for problem in problems:
        click.echo(click.style("✗ ", fg="red") + problem, err=True)
    if problems:
        click.echo(f"{len(problems)} problem(s) found.", err=True)
        sys.exit(1)
    click.echo(click.style("✓ ", fg="green") + "configuration is valid")


@main.command()
@click.option("--payload", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--connector", "connector_names", multiple=True, help="Only this connector (repeatable).")
@click.pass_context
def preview(ctx: click.Context, payload: Path, connector_names: tuple[str, ...]) -> None:
    """Print the record(s) each connector would write for PAYLOAD, without any network."""
    from bridge.checks import preview_payload

    settings = _load(ctx)
    try:
        previews = preview_payload(settings, payload.read_bytes(), list(connector_names) or None)
    except BridgeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(previews, indent=2, ensure_ascii=False, default=_default))


@main.command()
@click.option("--connector", "connector_names", multiple=True, help="Only this connector (repeatable).")
@click.pass_context
def setup(ctx: click.Context, connector_names: tuple[str, ...]) -> None:
    """Prepare each destination once (idempotent): e.g. create HubSpot's call-id property."""
    from bridge.connector import Services
    from bridge.mapping import MappingLoader
    from bridge.registry import build_connectors

    settings = _load(ctx)
    configure_logging(settings.logging.level, settings.logging.format)
    services = Services.offline(settings)
    loader = MappingLoader(settings.resolve(settings.mappings_dir))
    try:
        connectors = build_connectors(settings, services, loader, names=list(connector_names) or None)
        for name, connector in connectors.items():
            for line in connector.setup() or ["nothing to set up"]:
                click.echo(f"{name}: {line}")
            connector.close()
    except BridgeError as exc:
        raise click.ClickException(str(exc)) from exc


# -- admin commands ---------------------------------------------------------------------


def _admin(ctx: click.Context) -> Any:
    """Settings, a Redis client and the operations object, for the admin commands."""
    import redis

    from bridge.ingest import Ingestor
    from bridge.keys import Keys
    from bridge.replay import Operations
    from bridge.routing import Router
    from bridge.webhook import WebhookIntake

    settings = _load(ctx)
    client = redis.Redis.from_url(_redis_url(settings, embedded_ok=True), socket_timeout=10)
    keys = Keys(settings.redis.prefix)
    ingestor = Ingestor(
        client,
        keys,
        dedupe_ttl_seconds=settings.dedupe_ttl_days * 86400,
        retention_seconds=settings.retention_days * 86400,
    )
    intake = WebhookIntake(ingestor=ingestor, router=Router(settings), org_ids=settings.agni.org_ids, token="")
    return settings, client, keys, Operations(client, keys, intake, ingestor, settings.enabled_connectors())


@main.group()
def calls() -> None:
    """What happened to a call: its route, every attempt per connector, records written, dead letters."""


@calls.command("show")
@click.argument("call_session_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def calls_show(ctx: click.Context, call_session_id: str, as_json: bool) -> None:
    from bridge.calls import CallLog
    from bridge.report import render_report

    _, client, keys, _ = _admin(ctx)
    report = CallLog(client, keys).report(call_session_id)
    if report is None:
        raise click.ClickException(f"no record of call {call_session_id} (never received, or older than retention)")
    click.echo(json.dumps(report.to_dict(), indent=2, default=_default) if as_json else render_report(report))


@calls.command("list")
@click.option("--status", type=click.Choice(["delivered", "skipped", "failed", "dead", "pending", "unrouted"]))
@click.option("--connector", default=None)
@click.option("--since", default=None, help="Only calls received within this long, e.g. 30m, 2h, 7d.")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def calls_list(
    ctx: click.Context, status: str | None, connector: str | None, since: str | None, limit: int, as_json: bool
) -> None:
    from bridge.calls import CallLog, parse_since
    from bridge.report import render_list

    _, client, keys, _ = _admin(ctx)
    try:
        window = parse_since(since) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    reports = CallLog(client, keys).list(status=status, connector=connector, since_seconds=window, limit=limit)
    if as_json:
        click.echo(json.dumps([r.to_dict(history=False) for r in reports], indent=2, default=_default))
    else:
        click.echo(render_list(reports))


@main.group()
def dlq() -> None:
    """Dead letters: calls a connector gave up on (permanent error or retries exhausted)."""


@dlq.command("list")
@click.option("--connector", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dlq_list(ctx: click.Context, connector: str | None, as_json: bool) -> None:
    from bridge.report import render_dead_letters

    *_, ops = _admin(ctx)
    letters = ops.dead_letters(connector)
    if as_json:
        click.echo(json.dumps([{k: v for k, v in x.items() if k != "payload"} for x in letters], indent=2))
    else:
        click.echo(render_dead_letters(letters))


@dlq.command("show")
@click.argument("call_session_id")
@click.option("--connector", default=None)
@click.pass_context
def dlq_show(ctx: click.Context, call_session_id: str, connector: str | None) -> None:
    *_, ops = _admin(ctx)
    letters = ops.dead_letter(call_session_id, connector)
    if not letters:
        raise click.ClickException(f"no dead letter for {call_session_id}")
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
    *_, ops = _admin(ctx)
    try:
        done = ops.replay_dead(connector, None if replay_all else list(call_ids))
    except BridgeError as exc:
        raise click.ClickException(str(exc)) from exc
    for name, call_id in done:
        click.echo(f"re-enqueued {call_id} for {name}")
    click.echo(f"{len(done)} dead letter(s) re-enqueued; they leave the list once delivered")


@dlq.command("purge")
@click.argument("call_ids", nargs=-1)
@click.option("--connector", default=None)
@click.option("--all", "purge_all", is_flag=True)
@click.pass_context
def dlq_purge(ctx: click.Context, call_ids: tuple[str, ...], connector: str | None, purge_all: bool) -> None:
    """Delete dead letters for good."""
    if not call_ids and not purge_all:
        raise click.UsageError("name call ids, or pass --all")
    *_, ops = _admin(ctx)
    removed = ops.purge_dead(connector, None if purge_all else list(call_ids))
    click.echo(f"{removed} dead letter(s) removed")


@main.command()
@click.argument("call_session_id")
@click.option("--connector", "connector_names", multiple=True, help="Only this connector (repeatable).")
@click.pass_context
def replay(ctx: click.Context, call_session_id: str, connector_names: tuple[str, ...]) -> None:
    """Deliver a stored call again, bypassing the dedupe window (e.g. after fixing a mapping)."""
    *_, ops = _admin(ctx)
    try:
        targets = ops.replay(call_session_id, list(connector_names) or None)
    except BridgeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"re-enqueued {call_session_id} for {', '.join(targets) or 'no connector (no route matched)'}")


@main.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--force", is_flag=True, help="Bypass the dedupe window (deliver again calls already accepted).")
@click.pass_context
def backfill(ctx: click.Context, source: Path, force: bool) -> None:
    """Push historical webhooks (one JSON per line; a .jsonl file or a folder) through the normal path."""
    from bridge.replay import BackfillSummary, iter_payload_lines
    from bridge.report import backfill_progress

    *_, ops = _admin(ctx)
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


def _default(value: Any) -> Any:
    return str(value)


if __name__ == "__main__":  # pragma: no cover
    main()
