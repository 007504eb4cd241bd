"""The `agni-bridge` command line.

    run        API + worker (+ embedded Redis when redis.url is empty), on one machine
    api        the webhook endpoint only (scale-out: many replicas on one shared Redis)
    worker     delivery workers only (scale-out)
    check      validate config, mappings and connector settings offline; exit 1 on any problem
    preview    print what each connector would write for a payload; no network

`--config` defaults to ./config.yaml, then ./config.example.yaml.
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


def _load(ctx: click.Context) -> Settings:
    try:
        return load_settings(ctx.obj["config"])
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _redis_url(settings: Settings) -> str:
    url = os.environ.get("AGNI_BRIDGE_REDIS_URL") or settings.redis.url
    if not url:
        raise click.ClickException(
            "redis.url is empty: `api` and `worker` need a shared Redis (or use `agni-bridge run`, "
            "which starts an embedded one)"
        )
    return url


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file (default: config.yaml, then config.example.yaml).",
)
@click.version_option(package_name="agni-bridge")
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """Agni CRM Bridge: Agni call webhooks into Salesforce, HubSpot and other webhooks."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config or Path(os.environ.get("AGNI_BRIDGE_CONFIG") or default_config_path())


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
        os.environ["AGNI_BRIDGE_CONFIG"] = settings.config_path
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

    problems, report = run_checks(ctx.obj["config"], payload)
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
    services = Services(prefix=settings.redis.prefix, delivery=settings.delivery, resolve_path=settings.resolve)
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


if __name__ == "__main__":  # pragma: no cover
    main()
