"""What every `agni-bridge` command shares: `--config` before or after its name, loading the settings,
finding Redis and the call log.

Commands are built with :class:`ConfigCommand` / :class:`ConfigGroup`, so `--config FILE` is accepted
wherever it is typed; the last one given wins. Without it: $AGNI_BRIDGE_CONFIG, then ./config.yaml,
then ./config.example.yaml.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from bridge.errors import ConfigError
from bridge.settings import Settings, default_config_path, load_settings

__all__ = ["CONFIG_ENV", "ConfigCommand", "ConfigGroup", "config_path", "load", "redis_url"]


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


class ConfigCommand(click.Command):
    """A command that takes `--config`, so it may follow the command's name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_config_option())


class ConfigGroup(click.Group):
    """A group whose commands and sub-groups all take `--config` (as does the group itself)."""

    command_class = ConfigCommand
    group_class = type  # sub-groups are ConfigGroups too

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


def load(ctx: click.Context) -> Settings:
    try:
        return load_settings(config_path(ctx))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def redis_url(settings: Settings, *, embedded_ok: bool = False) -> str:
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
