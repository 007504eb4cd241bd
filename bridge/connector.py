"""The connector plug-in interface.

A connector turns one call into records in one destination. It subclasses
:class:`Connector`, declares its settings as a `Config` Struct (unknown keys
are rejected, so `agni-bridge check` catches typos), and is registered under
the ``agni_bridge.connectors`` entry-point group — built-in connectors the
same way as third-party ones:

    [project.entry-points."agni_bridge.connectors"]
    zoho = "bridge_zoho:ZohoConnector"

The worker calls :meth:`Connector.deliver` once per (call, connector) job.
Dramatiq may run a job more than once (a worker killed after the CRM write,
before the acknowledgement), so `deliver` must be idempotent on
`delivery.call_session_id`: upsert by an external id, or look before
creating. It raises :class:`~bridge.errors.RetryableError` for transient
failures and :class:`~bridge.errors.PermanentError` when retrying cannot
help; other libraries' exceptions must not escape it.

I/O objects (a Redis client, an HTTP transport) come in through
:class:`Services`, so tests can hand in fakes and nothing is created at import.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from bridge.settings import Base, DeliverySettings, Settings

if TYPE_CHECKING:
    import httpx
    import redis

    from bridge.mapping import CompiledMapping

__all__ = ["Connector", "ConnectorConfig", "Delivery", "DeliveryResult", "Preview", "Services"]


class ConnectorConfig(Base):
    """Keys every connector accepts; a connector's Config subclasses this and adds its own."""

    type: str
    enabled: bool = True
    mapping: str | None = None
    """Mapping file (in mappings_dir) that shapes the record; None uses the connector's default, if it has one."""
    redact_pii: bool = True
    """Apply the global PII redaction policy to what this connector receives (when a policy is configured)."""


@dataclass(frozen=True)
class Delivery:
    """One call, as one connector sees it."""

    call_session_id: str
    connector: str
    event: str
    org_id: str
    call: dict[str, Any]
    """The webhook's `data` object as Agni sent it (unknown fields included)."""
    raw_body: bytes
    """The webhook body byte for byte (for forwarding unchanged)."""
    record: dict[str, Any] | None
    """The mapped record (`fields` of the connector's mapping), or None when it has no mapping."""
    context: dict[str, Any]
    """The template context the record was rendered from, for connectors that render more sections."""
    attempt: int = 1


@dataclass
class DeliveryResult:
    """What landed: record ids by kind (e.g. {"Task": "00T…", "follow_up": "00T…"}) and how the person matched."""

    records: dict[str, str] = field(default_factory=dict)
    match: str = ""
    """E.g. "Contact 003… by email", "none (on_missing=unlinked)"."""
    skipped: str = ""
    """Non-empty when the connector chose not to write (e.g. on_missing=skip), with the reason."""
    notes: list[str] = field(default_factory=list)
    """Things an admin should know (a recording that could not be attached, a truncated field)."""


@dataclass(frozen=True)
class Preview:
    """One request a connector would make, for `agni-bridge preview`."""

    target: str
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Services:
    """The shared resources a connector may use; all optional so offline tools (check, preview) need none."""

    redis: redis.Redis | None = None
    prefix: str = "agni"
    http_transport: httpx.BaseTransport | None = None
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    resolve_path: Callable[[str], Path] = Path
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("bridge.connector"))

    @classmethod
    def offline(cls, settings: Settings) -> Services:
        """No Redis, no transport: what `check`, `preview` and `setup` give connectors."""
        return cls(prefix=settings.redis.prefix, delivery=settings.delivery, resolve_path=settings.resolve)


class Connector(abc.ABC):
    """Base class of every connector (see the module docstring for the contract)."""

    Config: ClassVar[type[ConnectorConfig]] = ConnectorConfig
    default_mapping: ClassVar[str | None] = None
    """Mapping file used when the config names none (None: the connector works without a mapping)."""

    def __init__(self, name: str, config: Any, services: Services, mapping: CompiledMapping | None) -> None:
        self.name = name
        self.config = config
        self.services = services
        self.mapping = mapping
        self.log = logging.getLogger(f"bridge.connector.{name}")

    @classmethod
    def validate(cls, name: str, raw: dict[str, Any]) -> ConnectorConfig:
        """Convert raw settings into `Config`; raises msgspec.ValidationError (the registry translates it)."""
        return msgspec.convert(raw, type=cls.Config, strict=False)

    def check(self) -> list[str]:
        """Offline problems with the settings, beyond types (e.g. a key file that does not exist). No network."""
        return []

    def setup(self) -> list[str]:
        """One-time, idempotent preparation of the destination (`agni-bridge setup`), e.g. creating the
        custom property that holds call_session_id. Returns what it did or found, one line each."""
        return []

    @abc.abstractmethod
    def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Write the call to the destination, idempotently on `delivery.call_session_id`."""

    def record_url(self, kind: str, record_id: str) -> str | None:
        """The URL of a record this connector wrote (`kind` as in DeliveryResult.records), for deep links from
        the call log and the console; None when it cannot be built from the settings."""
        return None

    def preview(self, delivery: Delivery) -> list[Preview]:
        """What `deliver` would write, without any network: by default the mapped record."""
        return [Preview(target=self.name, body=delivery.record)]

    def close(self) -> None:  # noqa: B027 - a documented no-op default, like Dramatiq's middleware hooks
        """Release connections; called once when the worker stops."""
