"""Logging: text for people, JSON lines for log shippers; every line about a call names it.

The worker sets the current call and connector in context variables before a
delivery (`call_scope`), and a filter copies them onto every record, so a line
logged deep inside a connector still says which call and connector it is
about. Secrets never reach here: connectors log CRM messages, not requests.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

__all__ = ["call_scope", "configure_logging"]

_call: contextvars.ContextVar[str] = contextvars.ContextVar("call_session_id", default="")
_connector: contextvars.ContextVar[str] = contextvars.ContextVar("connector", default="")


@contextmanager
def call_scope(call_session_id: str, connector: str = "") -> Iterator[None]:
    call_token = _call.set(call_session_id)
    connector_token = _connector.set(connector)
    try:
        yield
    finally:
        _call.reset(call_token)
        _connector.reset(connector_token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "call_session_id", ""):
            record.call_session_id = _call.get()
        if not getattr(record, "connector", ""):
            record.connector = _connector.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("call_session_id", "connector"):
            value = getattr(record, key, "")
            if value:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = " ".join(
            f"{key}={value}" for key in ("call_session_id", "connector") if (value := getattr(record, key, ""))
        )
        return f"{line} [{tags}]" if tags else line


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once per process (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that log every request at INFO would drown the delivery log.
    for noisy in ("httpx", "httpcore", "urllib3", "dramatiq.worker.WorkerThread"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
