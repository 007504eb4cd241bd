"""What `agni-bridge check` and `agni-bridge preview` do, without a network or Redis.

`run_checks` collects every problem it can find rather than stopping at the
first: config keys, routes, each connector's type and settings, every mapping
file in mappings_dir (compiled), and, when a sample payload is at hand, a
render of each connector's mapping against it. Each problem names the file,
the key and the reason. The report says which mapping each connector uses:
the admin's file (its path) or the built-in one of that name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from bridge.connector import Delivery, Services
from bridge.errors import BridgeError, ConfigError, EventDecodeError, MappingError
from bridge.events import decode_call, decode_envelope
from bridge.mapping import MappingLoader, render_context
from bridge.redaction import Redactor
from bridge.registry import build_connectors, validate_connector
from bridge.routing import Router
from bridge.settings import Settings, load_settings

__all__ = ["preview_payload", "run_checks"]


def run_checks(config_path: Path, payload: Path | None = None) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    report: list[str] = []
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        return [str(exc)], report
    report.append(f"config: {settings.config_path}")
    try:
        Router(settings)
    except ConfigError as exc:
        problems.append(str(exc))
    try:
        Redactor(settings.redaction, source=settings.config_path)
    except ConfigError as exc:
        problems.append(str(exc))

    loader = MappingLoader(settings.resolve(settings.mappings_dir))
    mappings_dir = loader.directory
    if mappings_dir.is_dir():
        for path in sorted(mappings_dir.glob("*.y*ml")):
            try:
                loader.load(str(path))
            except MappingError as exc:
                problems.append(str(exc))
        report.append(f"mappings_dir: {mappings_dir}")
    else:
        # Not a problem by itself (`run` needs no folder either): a connector naming a file found
        # neither there nor among the built-ins fails below, naming both places.
        report.append(f"mappings_dir: {mappings_dir} does not exist; connectors use the built-in mappings")

    services = Services.offline(settings)
    connectors = {}
    for name, raw in settings.connectors.items():
        state = "enabled" if raw.get("enabled", True) is not False else "disabled"
        try:
            validate_connector(settings, name)
            built = build_connectors(settings, services, loader, names=[name])[name]
        except BridgeError as exc:
            problems.append(str(exc))
            continue
        mapping = f", mapping {built.mapping.location}" if built.mapping else ""
        if state == "enabled":
            problems.extend(f"{settings.config_path}: {problem}" for problem in built.check())
            report.append(f"connector {name}: type {raw.get('type')}, enabled{mapping}")
        else:
            # Keys and types are checked; credentials and files only once it is enabled.
            report.append(f"connector {name}: type {raw.get('type')}, disabled (credentials not checked){mapping}")
        if state == "enabled":
            connectors[name] = built

    sample = payload or _default_sample(settings)
    if sample is not None and not problems:
        try:
            previews = preview_payload(settings, sample.read_bytes(), list(connectors), connectors=connectors)
            report.append(f"rendered {sample.name} for {len(previews)} connector(s)")
        except BridgeError as exc:
            problems.append(f"rendering {sample}: {exc}")
    for connector in connectors.values():
        connector.close()
    return problems, report


def _default_sample(settings: Settings) -> Path | None:
    candidate = Path(settings.config_path).parent / "examples" / "call_completed.json"
    return candidate if candidate.is_file() else None


def preview_payload(
    settings: Settings, body: bytes, names: list[str] | None = None, *, connectors: dict[str, Any] | None = None
) -> dict[str, Any]:
    """connector name -> list of {target, headers, body} it would send for this webhook body."""
    try:
        envelope = decode_envelope(body)
        decode_call(envelope)  # validate like the endpoint does
        call = msgspec.json.decode(envelope.data)
    except EventDecodeError as exc:
        raise ConfigError(f"payload is not a valid call.completed webhook: {exc.message} at {exc.path}") from exc
    if connectors is None:
        services = Services.offline(settings)
        loader = MappingLoader(settings.resolve(settings.mappings_dir))
        selected = names if names is not None else list(settings.enabled_connectors())
        unknown = [name for name in selected if name not in settings.connectors]
        if unknown:
            raise ConfigError(
                f"unknown connector(s): {', '.join(unknown)}; configured: {', '.join(settings.connectors)}"
            )
        connectors = build_connectors(settings, services, loader, names=selected)
    result: dict[str, Any] = {}
    for name, connector in connectors.items():
        context = render_context(call=call, event=envelope.event, org_id=envelope.org_id, connector=name)
        record = connector.mapping.render(context) if connector.mapping is not None else None
        call_id = str(call.get("call_session_id", ""))
        delivery = Delivery(call_id, name, envelope.event, envelope.org_id, call, body, record, context)
        result[name] = [
            {"target": p.target, **({"headers": p.headers} if p.headers else {}), "body": p.body}
            for p in connector.preview(delivery)
        ]
    return result
