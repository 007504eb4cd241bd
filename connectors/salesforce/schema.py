"""What the org's describe says about the fields the connector writes, read once per process.

Two facts matter for writing: a text field's maximum length (a value one
character too long makes Salesforce reject the whole Task with
STRING_TOO_LONG, so values are cut to fit, with a visible "…(truncated)"
marker) and whether a field is create-only (TaskSubtype: an upsert that
updates must leave it out). Both come from ``sobjects/<Type>/describe``,
fetched on first use and kept for the life of the process. When describe
fails (a network blip, a profile without describe permission) the documented
defaults apply and describe is tried again later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.errors import BridgeError
from bridge.templating import truncate

__all__ = ["DEFAULT_LENGTHS", "FieldInfo", "Schema"]

# Lengths used when describe is unavailable (Object Reference; Description 32,000 is the usual figure).
DEFAULT_LENGTHS: dict[str, dict[str, int]] = {
    "Task": {"Subject": 255, "CallDisposition": 255, "CallObject": 255, "Description": 32000},
    "Lead": {"FirstName": 40, "LastName": 80, "Company": 255, "Email": 80, "Phone": 40, "Title": 128},
}
DEFAULT_CREATE_ONLY: dict[str, frozenset[str]] = {"Task": frozenset({"TaskSubtype"})}
TEXT_TYPES = frozenset(
    {"string", "textarea", "combobox", "picklist", "multipicklist", "email", "phone", "url", "encryptedstring"}
)
RETRY_DESCRIBE_SECONDS = 600.0


@dataclass(frozen=True)
class FieldInfo:
    """The describe facts of one field that the connector uses."""

    name: str
    type: str
    length: int
    createable: bool
    updateable: bool
    external_id: bool
    unique: bool

    @classmethod
    def from_describe(cls, raw: dict[str, Any]) -> FieldInfo:
        return cls(
            name=str(raw.get("name", "")),
            type=str(raw.get("type", "")),
            length=int(raw.get("length") or 0),
            createable=bool(raw.get("createable", True)),
            updateable=bool(raw.get("updateable", True)),
            external_id=bool(raw.get("externalId", False)),
            unique=bool(raw.get("unique", False)),
        )


class Schema:
    """Field facts per sObject, from `describe(sobject)` (None: offline, defaults only)."""

    def __init__(
        self,
        describe: Callable[[str], dict[str, Any]] | None,
        log: logging.Logger | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._describe = describe
        self._log = log or logging.getLogger("bridge.connector.salesforce")
        self._clock = clock
        self._fields: dict[str, dict[str, FieldInfo]] = {}
        self._failed_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def fields(self, sobject: str) -> dict[str, FieldInfo] | None:
        """Lower-cased field name -> FieldInfo, or None when describe is unavailable right now."""
        cached = self._fields.get(sobject)
        if cached is not None or self._describe is None:
            return cached
        with self._lock:
            cached = self._fields.get(sobject)
            if cached is not None:
                return cached
            failed = self._failed_at.get(sobject)
            if failed is not None and self._clock() - failed < RETRY_DESCRIBE_SECONDS:
                return None
            try:
                described = self._describe(sobject)
            except BridgeError as exc:
                self._failed_at[sobject] = self._clock()
                self._log.warning("describe %s failed (%s); using default field lengths", sobject, exc)
                return None
            infos = [FieldInfo.from_describe(raw) for raw in described.get("fields", []) if isinstance(raw, dict)]
            cached = self._fields[sobject] = {info.name.lower(): info for info in infos}
            return cached

    def field(self, sobject: str, name: str) -> FieldInfo | None:
        fields = self.fields(sobject)
        return fields.get(name.lower()) if fields else None

    def max_length(self, sobject: str, name: str) -> int | None:
        fields = self.fields(sobject)
        if fields is None:
            return _ci_get(DEFAULT_LENGTHS.get(sobject, {}), name)
        info = fields.get(name.lower())
        if info is None or info.type not in TEXT_TYPES or info.length <= 0:
            return None
        return info.length

    def create_only(self, sobject: str) -> frozenset[str]:
        """Fields that may be set on create but not on update (lower-cased names)."""
        fields = self.fields(sobject)
        if fields is None:
            return frozenset(name.lower() for name in DEFAULT_CREATE_ONLY.get(sobject, frozenset()))
        return frozenset(key for key, info in fields.items() if info.createable and not info.updateable)

    def fit(self, sobject: str, record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """`record` with every text value cut to its field's length, and a note per field that was cut."""
        fitted: dict[str, Any] = {}
        notes: list[str] = []
        for name, value in record.items():
            limit = self.max_length(sobject, name) if isinstance(value, str) else None
            if limit is not None and len(value) > limit:
                fitted[name] = truncate(value, limit)
                notes.append(f"{sobject}.{name} truncated to {limit} characters (was {len(value)})")
            else:
                fitted[name] = value
        return fitted, notes


def _ci_get(table: dict[str, int], name: str) -> int | None:
    return next((value for key, value in table.items() if key.lower() == name.lower()), None)
