"""Every exception the bridge raises, in one tree.

    BridgeError
     ├── ConfigError            config.yaml or a connector's settings are invalid
     ├── MappingError           a mapping file is invalid, or rendering one failed
     ├── EventDecodeError       an inbound webhook is not a valid call.completed payload
     ├── UnavailableError       Redis (or the queue on it) cannot be reached right now
     ├── DatabaseError          the call log's database cannot be used right now (unreachable, failing)
     │    └── SchemaError       its schema is newer than this code: refused, never written to
     ├── OperationError         an admin command cannot be done (unknown call, expired payload)
     └── ConnectorError         a connector could not deliver a call
          ├── RetryableError    transient: try again later (optionally after `retry_after` seconds)
          │    └── DeferredError      not an attempt: try later without using up a retry (call busy elsewhere)
          │         └── PausedError   the whole connector must wait (quota, open circuit): calls stay queued
          └── PermanentError    retrying cannot help: dead-letter the call with the reason
               └── UnsafeURLError   a URL from a payload was refused (not https, not allowed, private address)

Other libraries' exceptions (msgspec, httpx, redis, simple-salesforce, jinja2) are
translated into these once, at the module that calls the library, with
``raise ... from exc``. Code above that layer catches only these.
"""

from __future__ import annotations

__all__ = [
    "BridgeError",
    "ConfigError",
    "ConnectorError",
    "DatabaseError",
    "DeferredError",
    "EventDecodeError",
    "MappingError",
    "OperationError",
    "PausedError",
    "PermanentError",
    "RetryableError",
    "SchemaError",
    "UnavailableError",
    "UnsafeURLError",
]


class BridgeError(Exception):
    """Base class for every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration is invalid; the message names the file, key path and reason."""


class MappingError(BridgeError):
    """A mapping file is invalid or failed to render; the message names the file and field."""


class EventDecodeError(BridgeError):
    """An inbound webhook body could not be decoded; `path` locates the problem (e.g. ``$.data.duration_sec``)."""

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class UnavailableError(BridgeError):
    """Redis or the queue is unreachable; the webhook must be refused with 503 so the sender retries."""


class DatabaseError(BridgeError):
    """The call log's database is unreachable or unusable; deliveries go on, the log waits (see bridge.db)."""


class SchemaError(DatabaseError):
    """The database's schema is newer than this version of the bridge knows; it must not be written to."""


class OperationError(BridgeError):
    """An admin command (replay, dead-letter replay, backfill) cannot be carried out; the message says why."""


class ConnectorError(BridgeError):
    """A connector failed to deliver a call.

    `status` is the CRM's HTTP status when there was one, `code` the CRM's own
    error code (e.g. ``INVALID_FIELD``, ``VALIDATION_ERROR``), and `details`
    anything else an admin needs to see in the dead letter (a correlation id).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details or {}

    def describe(self) -> str:
        """One line for logs and dead letters: ``HTTP 400 INVALID_FIELD: No such column…``."""
        parts = []
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code:
            parts.append(self.code)
        prefix = " ".join(parts)
        extra = "".join(f" ({k}={v})" for k, v in self.details.items())
        return f"{prefix}: {self.message}{extra}" if prefix else f"{self.message}{extra}"


class RetryableError(ConnectorError):
    """A transient failure (timeout, connection reset, 429, 5xx); `retry_after` is in seconds when the CRM said."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class DeferredError(RetryableError):
    """Try again after `retry_after` seconds without counting an attempt (e.g. another worker holds the call)."""


class PausedError(DeferredError):
    """The connector as a whole must wait (daily quota, open circuit); its calls stay queued, retries untouched."""


class PermanentError(ConnectorError):
    """Retrying cannot help (validation error, bad credentials): the call goes to the dead-letter list."""


class UnsafeURLError(PermanentError):
    """A URL taken from a payload was refused by the fetch policy (scheme, host allowlist, address, size)."""
