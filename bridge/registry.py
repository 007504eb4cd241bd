"""Finds connector classes through entry points and builds configured connectors.

Built-in and third-party connectors are loaded the same way, from the
``agni_bridge.connectors`` entry-point group, once at startup (never per
request). A config that names an unknown `type` fails with the list of the
types that are installed.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import msgspec

from bridge.connector import Connector, ConnectorConfig, Services
from bridge.errors import ConfigError, MappingError
from bridge.mapping import MappingLoader
from bridge.settings import Settings
from bridge.validation import format_validation_error

__all__ = ["ENTRY_POINT_GROUP", "available_types", "build_connectors", "connector_class"]

ENTRY_POINT_GROUP = "agni_bridge.connectors"


def available_types() -> dict[str, Any]:
    """Connector type name -> entry point (not loaded yet)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def connector_class(type_name: str, *, where: str = "") -> type[Connector]:
    eps = available_types()
    ep = eps.get(type_name)
    if ep is None:
        known = ", ".join(sorted(eps)) or "none installed"
        raise ConfigError(f"{where}type: unknown connector type {type_name!r}; known types: {known}")
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plug-in must say which one, not crash with an ImportError
        raise ConfigError(f"{where}type: connector {type_name!r} failed to load ({ep.value}): {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ConfigError(f"{where}type: {ep.value} is not a bridge.connector.Connector subclass")
    return cls


def validate_connector(settings: Settings, name: str) -> tuple[type[Connector], ConnectorConfig]:
    """The class and validated Config of one configured connector; ConfigError names file and key."""
    raw = settings.connectors[name]
    where = f"{settings.config_path}: connectors.{name}."
    if not isinstance(raw, dict) or "type" not in raw:
        raise ConfigError(f"{where}type: required key is missing")
    cls = connector_class(str(raw["type"]), where=where)
    try:
        config = cls.validate(name, raw)
    except msgspec.ValidationError as exc:
        reason = format_validation_error(exc, f"$.connectors.{name}", getattr(cls, "Config", None), raw)
        raise ConfigError(f"{settings.config_path}: {reason}") from exc
    return cls, config


def build_connectors(
    settings: Settings, services: Services, loader: MappingLoader, *, names: list[str] | None = None
) -> dict[str, Connector]:
    """Instantiate the enabled connectors (or `names`), with their mappings compiled."""
    built: dict[str, Connector] = {}
    selected = names if names is not None else list(settings.enabled_connectors())
    for name in selected:
        cls, config = validate_connector(settings, name)
        mapping_name = config.mapping or cls.default_mapping
        mapping = None
        if mapping_name:
            try:
                mapping = loader.load(mapping_name)
            except MappingError as exc:
                raise ConfigError(f"{settings.config_path}: connectors.{name}.mapping: {exc}") from exc
        built[name] = cls(name, config, services, mapping)
    return built
