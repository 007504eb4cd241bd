"""Writing one Task idempotently: upsert by external id, fitted to the org's field lengths.

``PATCH sobjects/Task/{external_id_field}/{percent-encoded id}`` creates the Task
the first time and updates the same Task on every retry, redelivery or replay.
Three answers need more than translation:

* ``INVALID_FIELD_FOR_INSERT_UPDATE`` on a create-only field (``TaskSubtype``): the
  Task already exists, so this upsert is an update; send it again without those fields.
* ``DUPLICATE_VALUE`` on the external id: two workers upserted the same new id at once
  and the other one created it; send it again (now it is an update).
* 300: several Tasks share the id (the field is not Unique); permanent, with a message
  saying what to fix (:mod:`connectors.salesforce.errors`).

With batching on, :meth:`TaskWriter.write` hands the prepared body to a
:class:`bridge.batching.Batcher` instead, which sends it with the upserts of other
deliveries in flight (:mod:`connectors.salesforce.batch`, which applies the same
two re-sends); the caller still gets its own Task id, or its own error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.errors import ConnectorError, PermanentError
from connectors.salesforce.api import SalesforceApi
from connectors.salesforce.schema import Schema

if TYPE_CHECKING:
    from bridge.batching import Batcher

__all__ = ["MAX_ATTEMPTS", "TaskUpsert", "TaskWriter", "Upserted"]

MAX_ATTEMPTS = 3

Upserted = tuple[str, bool | None]
"""(Task id, created) — created is None when the API version does not say."""


@dataclass(frozen=True)
class TaskUpsert:
    """One Task to upsert: its external id and the prepared body (no Id or external id keys)."""

    external_id: str
    body: dict[str, Any]


class TaskWriter:
    """Upserts Tasks for one connector, alone or through `batcher`."""

    def __init__(self, api: SalesforceApi, schema: Schema, external_id_field: str) -> None:
        self.api = api
        self.schema = schema
        self.external_id_field = external_id_field
        self.batcher: Batcher[TaskUpsert, Upserted] | None = None

    def prepare(self, body: dict[str, Any], label: str = "Task") -> tuple[dict[str, Any], list[str]]:
        """The body as it will be sent (no Id or external id keys, values fitted) and notes on what was cut."""
        reserved = {"id", self.external_id_field.lower()}
        cleaned = {key: value for key, value in body.items() if key.lower() not in reserved}
        fitted, notes = self.schema.fit("Task", cleaned)
        return fitted, [note.replace("Task.", f"{label}.", 1) for note in notes]

    def write(self, external_id: str, body: dict[str, Any], notes: list[str], label: str = "Task") -> str:
        """Upsert the Task with this external id; returns its id and appends notes about truncation."""
        body, cut = self.prepare(body, label)
        notes.extend(cut)
        if self.batcher is not None:
            return self.batcher.submit(TaskUpsert(external_id, body))[0]
        return self.upsert_one(external_id, body)[0]

    def upsert_one(self, external_id: str, body: dict[str, Any]) -> Upserted:
        """One prepared body by the single-record upsert, re-sent when :meth:`retry_body` says so."""
        last: PermanentError | None = None
        for _ in range(MAX_ATTEMPTS):
            try:
                return self.api.upsert("Task", self.external_id_field, external_id, body)
            except PermanentError as exc:
                last = exc
                retry_body = self.retry_body(exc, body)
                if retry_body is None:
                    raise
                body = retry_body
        assert last is not None
        raise last

    def retry_body(self, exc: ConnectorError, body: dict[str, Any]) -> dict[str, Any] | None:
        """The body to send again after `exc`, or None when sending again cannot help."""
        fields = {name.strip().lower() for name in exc.details.get("fields", "").split(",") if name.strip()}
        if exc.code == "INVALID_FIELD_FOR_INSERT_UPDATE":
            drop = fields & self.schema.create_only("Task")
            trimmed = {key: value for key, value in body.items() if key.lower() not in drop}
            return trimmed if drop and len(trimmed) < len(body) else None
        if exc.code == "DUPLICATE_VALUE":
            ext = self.external_id_field.lower()
            if ext in fields or ext in exc.message.lower():
                return body
        return None

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
