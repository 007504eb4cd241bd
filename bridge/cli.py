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

from bridge.cli_base import CONFIG_ENV, ConfigGroup, config_path, load, redis_url
from bridge.cli_log import register_log_commands
from bridge.errors import BridgeError
from bridge.logs import configure_logging

__all__ = ["main"]


@click.group(cls=ConfigGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="agni-bridge")
def main() -> None:
    """Agni CRM Bridge: Agni call webhooks into Salesforce, HubSpot and other webhooks."""


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the whole bridge on this machine (API, worker, and Redis if none is configured)."""
    from bridge.supervisor import run_all

    settings = load(ctx)
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

    settings = load(ctx)
    configure_logging(settings.logging.level, settings.logging.format)
    url = redis_url(settings)
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

    settings = load(ctx)
    configure_logging(settings.logging.level, settings.logging.format)
    try:
        run_worker(settings, redis_url(settings))
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

    settings = load(ctx)
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

    settings = load(ctx)
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


def _default(value: Any) -> Any:
    return str(value)


register_log_commands(main)

if __name__ == "__main__":  # pragma: no cover
    main()
