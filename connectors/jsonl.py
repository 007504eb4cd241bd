"""The `jsonl` connector: appends each mapped record to a JSON-lines file.

The example config enables it so a fresh `make run` shows a delivered record
without any CRM credentials, and admins use it to see exactly what a mapping
produces for real calls. Each line is
``{"call_session_id", "connector", "delivered_at", "record"}``.

Appends are serialised with an exclusive file lock, so several worker
threads or processes on one machine never interleave lines. The worker's
done-marker stops a redelivered job from appending twice; the only window is a
crash between the write and that marker (microseconds), which a file sink,
unlike a CRM upsert, cannot close.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime

from bridge.connector import Connector, ConnectorConfig, Delivery, DeliveryResult
from bridge.errors import PermanentError, RetryableError


class JsonlConfig(ConnectorConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    path: str = "./var/outbox.jsonl"
    """Relative paths resolve against the config file's folder."""
    include_payload: bool = False
    """Also write the whole webhook `data` next to the record (for debugging mappings)."""


class JsonlConnector(Connector):
    Config = JsonlConfig
    default_mapping = "jsonl_record.yaml"

    def deliver(self, delivery: Delivery) -> DeliveryResult:
        config: JsonlConfig = self.config
        path = self.services.resolve_path(config.path)
        entry = {
            "call_session_id": delivery.call_session_id,
            "connector": self.name,
            "delivered_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "record": delivery.record if delivery.record is not None else delivery.call,
        }
        if config.include_payload:
            entry["call"] = delivery.call
        line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    handle.write(line)
                    handle.flush()
                    os.fsync(handle.fileno())
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        except PermissionError as exc:
            raise PermanentError(f"cannot write {path}: permission denied") from exc
        except OSError as exc:  # disk full, NFS hiccup: worth retrying
            raise RetryableError(f"cannot write {path}: {exc.strerror or exc}") from exc
        return DeliveryResult(records={"line": str(path)})
