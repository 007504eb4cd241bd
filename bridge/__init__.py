"""Agni CRM Bridge: Agni `call.completed` webhooks in, CRM records out, exactly once.

The flow, module by module:

    HTTP in (app, webhook) → decode (events) → route (routing) → claim + store + enqueue (ingest)
    ‖ worker (worker, jobs) → pipeline → map (mapping, templating) → connector → CRM

Third-party connectors import the interface and errors from here, and the shared pieces from
bridge.ledger, bridge.limiter, bridge.lookup_cache, bridge.tls, bridge.http, bridge.phones and
bridge.fetch (see docs/connectors.md).
"""

from bridge.connector import Connector, ConnectorConfig, Delivery, DeliveryResult, Preview, Services
from bridge.errors import (
    BridgeError,
    ConfigError,
    ConnectorError,
    EventDecodeError,
    MappingError,
    PausedError,
    PermanentError,
    RetryableError,
    UnavailableError,
)

__version__ = "0.1.0"

__all__ = [
    "BridgeError",
    "ConfigError",
    "Connector",
    "ConnectorConfig",
    "ConnectorError",
    "Delivery",
    "DeliveryResult",
    "EventDecodeError",
    "MappingError",
    "PausedError",
    "PermanentError",
    "Preview",
    "RetryableError",
    "Services",
    "UnavailableError",
    "__version__",
]
