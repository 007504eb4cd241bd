"""The Settings page: the effective configuration with every secret masked, `check`, and connector setup.

Masking is belt and braces. A value is replaced by `••••••` when its key names a credential (the same rule
that forces such keys to come from `${ENV}`, plus `authorization`, `cookie`, `credential`, `*_key`), when it
is a URL's password, or when it contains the value of an environment variable the config file references
(eight characters or longer) — so a secret under an unusual key is hidden too. Admin users' tokens are
masked like any other.

`setup` runs the connector's own :meth:`~bridge.connector.Connector.setup` (what `agni-bridge setup` runs:
idempotent, e.g. HubSpot's call-id property, Salesforce's external-id field) with this process's Redis, and
keeps its last result per connector in Redis (``{prefix}:console:setup:{connector}``) so the page shows
each connector's setup status without calling the CRM on every view.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import msgspec

from bridge.connector import Services
from bridge.console.state import ConsoleState
from bridge.errors import BridgeError, OperationError
from bridge.registry import build_connectors
from bridge.settings import SECRET_KEY

__all__ = ["effective_config", "run_setup", "settings_page", "setup_status"]

MASK = "••••••"
_EXTRA_SECRET = re.compile(r"(authorization|cookie|credential|passwd|(^|_)key)$", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^/@\s:]*:)([^/@\s]+)(@)")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
MIN_SECRET_LENGTH = 8


def _env_secrets(config_path: str) -> list[str]:
    try:
        text = Path(config_path).read_text(encoding="utf-8")
    except OSError:
        return []
    values = {os.environ.get(name, "") for name in _ENV_REF.findall(text)}
    return sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def _mask(node: Any, key: str, secrets: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _mask(v, str(k), secrets) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask(v, key, secrets) for v in node]
    if node in (None, "", False, True) or isinstance(node, int | float):
        return node
    if SECRET_KEY.search(key) or _EXTRA_SECRET.search(key):
        return MASK
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), str(node))
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def effective_config(state: ConsoleState) -> dict[str, Any]:
    """Every setting in force (defaults included), secrets masked."""
    tree = msgspec.to_builtins(state.settings)
    return _mask(tree, "", _env_secrets(state.settings.config_path))


def _setup_key(state: ConsoleState, connector: str) -> str:
    return f"{state.keys.prefix}:console:setup:{connector}"


def setup_status(state: ConsoleState) -> dict[str, dict[str, Any]]:
    pipe = state.redis.pipeline(transaction=False)
    names = list(state.settings.connectors)
    for name in names:
        pipe.get(_setup_key(state, name))
    status = {}
    for name, raw in zip(names, pipe.execute(), strict=True):
        status[name] = json.loads(raw) if raw else {}
    return status


def run_setup(state: ConsoleState, connector: str, actor: str) -> dict[str, Any]:
    """Run the connector's setup now; the outcome is kept for the page and audited."""
    settings = state.settings
    if connector not in settings.enabled_connectors():
        raise OperationError(f"no enabled connector named {connector!r}")
    services = Services(
        redis=state.redis, prefix=settings.redis.prefix, delivery=settings.delivery, resolve_path=settings.resolve
    )
    from bridge.mapping import MappingLoader

    loader = MappingLoader(settings.resolve(settings.mappings_dir))
    outcome: dict[str, Any] = {"t": int(time.time() * 1000), "actor": actor}
    try:
        built = build_connectors(settings, services, loader, names=[connector])[connector]
        try:
            outcome["lines"] = built.setup() or ["nothing to set up"]
            outcome["ok"] = True
        finally:
            built.close()
    except BridgeError as exc:
        outcome["lines"] = [str(exc)]
        outcome["ok"] = False
    state.redis.set(_setup_key(state, connector), json.dumps(outcome))
    state.audit.record(actor, "setup", connector, calls=0, detail={"ok": outcome["ok"], "lines": outcome["lines"]})
    return outcome


def settings_page(state: ConsoleState) -> dict[str, Any]:
    from bridge.checks import run_checks

    config_path = Path(state.settings.config_path)
    if config_path.is_file():
        problems, report = run_checks(config_path)
    else:
        problems, report = [f"{config_path}: the config file is not there any more"], []
    connectors = []
    status = setup_status(state)
    enabled = state.settings.enabled_connectors()
    for name, raw in state.settings.connectors.items():
        connectors.append(
            {"name": name, "type": raw.get("type", ""), "enabled": name in enabled, "setup": status.get(name) or {}}
        )
    return {
        "config": json.dumps(effective_config(state), indent=2, ensure_ascii=False),
        "config_path": str(config_path),
        "problems": problems,
        "report": report,
        "connectors": connectors,
        "mappings_writable": state.settings.admin.mappings_writable,
        "users": [{"name": u.name, "role": u.role} for u in state.users],
    }
