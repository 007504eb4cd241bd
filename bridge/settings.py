"""The configuration file, as msgspec Structs, and how it is loaded.

``load_settings(path)`` reads YAML, substitutes ``${VAR}`` / ``${VAR:-default}``
from the environment, and converts the tree into :class:`Settings`, rejecting
unknown keys. Every error names the file, the key path and the reason, so
``agni-bridge check`` can print it as is. Connector sections are validated
later by each connector's own Config Struct (see :mod:`bridge.registry`),
because only the connector knows its keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from bridge.errors import ConfigError
from bridge.validation import format_validation_error

__all__ = [
    "AdminSettings",
    "AdminUser",
    "AgniSettings",
    "Base",
    "DatabaseSettings",
    "DeliverySettings",
    "LoggingSettings",
    "RedactionSettings",
    "RedisSettings",
    "Route",
    "ServerSettings",
    "Settings",
    "WorkerSettings",
    "default_config_path",
    "load_settings",
]

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
_ENV_REF = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Keys whose values are credentials: they must come from ${ENV}, never be written into the file.
_URL_PASSWORD = re.compile(r"://[^/@\s]*:[^/@\s]+@")
SECRET_KEY = re.compile(r"(^|_)(token|secret|password|private_key|session_id|api_key)$")


class Base(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Shared settings for every config Struct: unknown keys are errors, so typos surface at startup."""


class ServerSettings(Base):
    host: str = "127.0.0.1"
    """Address the webhook endpoint binds to. Use 0.0.0.0 in a container."""
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 2 * 1024 * 1024
    """Larger webhook bodies are refused with 413 (a call with a very long transcript is ~100 KB)."""
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    """HTTP server processes. One is plenty for a call floor; see the README's benchmark for more."""
    root_path: Annotated[str, msgspec.Meta(pattern=r"^(/[A-Za-z0-9._~-]+)*$")] = ""
    """The path prefix a reverse proxy serves the bridge under (e.g. `/agni`); links and cookies follow it."""


class AgniSettings(Base):
    org_ids: Annotated[list[str], msgspec.Meta(min_length=1)]
    """Agni organisations whose calls are accepted; others get 403 (Agni documents no signature)."""
    token: str = ""
    """Optional shared secret: `Authorization: Bearer <token>` or `?token=` on the webhook URL."""


class RedisSettings(Base):
    url: str = ""
    """Empty: start an embedded Redis (one machine). Set it to share one Redis between many API and worker processes."""
    prefix: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]+$")] = "agni"
    """Namespace of every key the bridge writes, so one Redis can serve several bridges."""
    embedded_fsync: Literal["always", "everysec"] = "always"
    """Embedded Redis only. `always`: a call is on disk before Agni gets its 200, so even a power cut
    loses no acknowledged call. `everysec`: faster, but a machine crash may lose the last second's calls
    (Agni has stopped retrying them). A shared Redis (redis.url) is configured by its own operator."""


class DeliverySettings(Base):
    """How hard a delivery is retried before it becomes a dead letter."""

    max_retries: Annotated[int, msgspec.Meta(ge=0)] = 33
    min_backoff_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    max_backoff_seconds: Annotated[float, msgspec.Meta(gt=0)] = 7200.0
    """With the defaults a failing call is retried for at least ~26 h (10 s doubling up to 1-2 h, with jitter)."""
    http_attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    """Quick in-call retries (tenacity) for a timeout, reset, 429 or 5xx before handing back to the queue."""
    http_max_wait_seconds: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    """The longest in-call wait; a longer Retry-After goes back to the queue instead of holding a worker thread."""
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 20.0
    """Per HTTP request to a CRM."""
    job_time_limit_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    circuit_failures: Annotated[int, msgspec.Meta(ge=1)] = 5
    """Consecutive transient failures of one connector that open its circuit (its calls then wait, queued)."""
    circuit_cooldown_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """How long an open circuit waits before one probe delivery; doubles while probes fail."""
    circuit_max_cooldown_seconds: Annotated[float, msgspec.Meta(gt=0)] = 600.0


class WorkerSettings(Base):
    threads: Annotated[int, msgspec.Meta(ge=1, le=256)] = 32
    """Concurrent deliveries per worker process. Deliveries wait on CRMs, not the CPU, and a batching
    connector can only batch as many calls as there are threads: use 64 or more for large bursts."""
    shutdown_timeout_seconds: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    """On SIGTERM, in-flight deliveries get this long to finish; the rest are requeued, never lost."""
    heartbeat_timeout_seconds: Annotated[float, msgspec.Meta(ge=5)] = 30.0
    """A worker silent this long is presumed dead and its fetched messages are redelivered."""
    maintenance_chance: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 20_000
    """Per million broker calls: how often consumers sweep for dead workers' messages (Dramatiq's default: 1,000)."""


class DatabaseSettings(Base):
    """Where the call log lives (see bridge/db): every call, attempt, record and dead letter, searchable."""

    url: str = ""
    """Empty: an SQLite file under data_dir (one machine). `postgresql://user:${DB_PASSWORD}@host/db` for many
    API and worker processes on several machines (a password must come from the environment)."""
    phone_region: Annotated[str, msgspec.Meta(min_length=2, max_length=2)] = "US"
    """Region for phone numbers written without a country code, when the log stores and searches them."""
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000
    """Events written to the database per transaction by the log writer."""


class LoggingSettings(Base):
    level: str = "INFO"
    format: str = "text"
    """`text` for people, `json` for log shippers (one JSON object per line)."""


class AdminUser(Base):
    """One person (or script) allowed into the console and the admin API."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    token: str
    """Their sign-in token, from the environment (`${ALICE_CONSOLE_TOKEN}`); at least 16 characters."""
    role: Literal["viewer", "admin"] = "viewer"
    """`viewer` reads everything; `admin` may also replay, purge, save mappings and run setup."""


class AdminSettings(Base):
    token: str = ""
    """A single admin token (Bearer for /admin/*, or console sign-in as user `admin`); empty: none."""
    users: list[AdminUser] = msgspec.field(default_factory=list)
    """Named users of the console and the admin API. With neither `token` nor `users`, both are off."""
    session_hours: Annotated[float, msgspec.Meta(gt=0, le=24 * 30)] = 12.0
    """How long a console sign-in lasts."""
    mappings_writable: bool = False
    """Let admins save mapping files from the console's playground (validated like `check`, old version kept)."""
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    """Addresses (or CIDR ranges) of reverse proxies whose X-Forwarded-Proto/-For headers are believed."""
    login_attempts_per_minute: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    """Failed console sign-ins allowed per client address per minute, across every API process."""


class RedactionSettings(Base):
    """Optional PII redaction of summary, next steps and transcript (see bridge/redaction.py)."""

    enabled: bool = False
    cards: bool = True
    emails: bool = True
    phones: bool = True
    default_region: Annotated[str, msgspec.Meta(min_length=2, max_length=2)] = "US"
    """Region for phone numbers written without a country code."""
    patterns: list[str] = msgspec.field(default_factory=list)
    """Extra regular expressions (Python syntax) whose matches are removed, e.g. order or policy numbers."""
    replacement: str = "[redacted {kind}]"
    """Text put in place of each match; {kind} is card, email, phone or pattern."""


class Route(Base):
    connectors: list[str]
    when: str = ""
    """A Jinja2 condition over `call`, `event` and `org_id`; empty matches every call."""
    name: str = ""


class Settings(Base):
    agni: AgniSettings
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    data_dir: str = "./var"
    mappings_dir: str = "./mappings"
    dedupe_ttl_days: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    retention_days: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """How long the log keeps a call (payload, history, records); older calls are pruned in the background.
    Dead letters are kept until replayed or purged."""
    delivery: DeliverySettings = msgspec.field(default_factory=DeliverySettings)
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    admin: AdminSettings = msgspec.field(default_factory=AdminSettings)
    redaction: RedactionSettings = msgspec.field(default_factory=RedactionSettings)
    connectors: dict[Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)], dict[str, Any]] = msgspec.field(
        default_factory=dict
    )
    """name -> connector settings; `type` picks the implementation, the rest is the connector's own Config."""
    routes: list[Route] = msgspec.field(default_factory=list)
    """First matching route wins; without routes every call goes to every enabled connector."""
    config_path: str = ""
    """Set by the loader: the file these settings came from (relative paths resolve against its folder)."""

    def resolve(self, path: str) -> Path:
        """A path from the config, made absolute against the config file's folder."""
        candidate = Path(path).expanduser()
        if candidate.is_absolute():
            return candidate
        base = Path(self.config_path).parent if self.config_path else Path.cwd()
        return (base / candidate).resolve()

    def enabled_connectors(self) -> dict[str, dict[str, Any]]:
        return {name: raw for name, raw in self.connectors.items() if raw.get("enabled", True) is not False}


def default_config_path() -> Path:
    """`config.yaml` when present, else `config.example.yaml`, in the current folder."""
    for name in ("config.yaml", "config.example.yaml"):
        if Path(name).exists():
            return Path(name)
    return Path("config.yaml")


def load_settings(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Settings:
    """Read, interpolate and validate a config file; raise ConfigError naming the file and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc
    try:
        tree = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(tree).__name__}")
    tree = interpolate(tree, os.environ if env is None else env, str(path))
    tree["config_path"] = str(path.resolve())
    settings = convert(tree, Settings, str(path), "$")
    _check_routes(settings, str(path))
    return settings


def convert(tree: Any, type_: type[Any], source: str, root: str) -> Any:
    """msgspec.convert with the error turned into 'file: key.path: reason'."""
    try:
        # strict=False: values that came from ${ENV} are strings, and "8080" must still be a port.
        return msgspec.convert(tree, type=type_, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc, root, type_, tree)}") from exc


def interpolate(node: Any, env: Mapping[str, str], source: str, path: str = "") -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string of the tree (`$${` escapes a literal `${`).

    Done on the parsed tree, not the text, so an environment value can never
    inject YAML structure. A key that holds a credential must be written as a
    reference: a literal secret in the file is refused.
    """
    if isinstance(node, dict):
        return {
            key: interpolate(value, env, source, f"{path}.{key}" if path else str(key)) for key, value in node.items()
        }
    if isinstance(node, list):
        return [interpolate(value, env, source, f"{path}[{i}]") for i, value in enumerate(node)]
    if not isinstance(node, str):
        if node is not None and SECRET_KEY.search(path.rsplit(".", 1)[-1]):
            raise ConfigError(f"{source}: {path}: secrets must come from the environment; write ${{YOUR_VAR}}")
        return node

    def substitute(match: re.Match[str]) -> str:
        if match.group(1):  # $${...} -> literal ${...}
            return match.group(0)[1:]
        name, default = match.group(2), match.group(3)
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        if value is not None:  # set but empty
            return ""
        raise ConfigError(f"{source}: {path}: environment variable {name} is not set (use ${{{name}:-}} for optional)")

    result = _ENV_REF.sub(substitute, node)
    key = path.rsplit(".", 1)[-1]
    if key == "url" and _URL_PASSWORD.search(_ENV_REF.sub("", node)):
        raise ConfigError(
            f"{source}: {path}: the password in this URL must come from the environment; write ${{YOUR_VAR}}"
        )
    if SECRET_KEY.search(key) and node.strip() and not _ENV_REF.fullmatch(node.strip()):
        raise ConfigError(f"{source}: {path}: secrets must come from the environment; write ${{YOUR_VAR}}")
    return result


def _check_routes(settings: Settings, source: str) -> None:
    for i, route in enumerate(settings.routes):
        for name in route.connectors:
            if name not in settings.connectors:
                known = ", ".join(sorted(settings.connectors)) or "none"
                raise ConfigError(f"{source}: routes[{i}].connectors: unknown connector {name!r} (configured: {known})")
