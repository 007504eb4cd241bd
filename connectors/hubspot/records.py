"""Turning rendered mapping records into the property and association shapes HubSpot accepts. Pure.

HubSpot types every property value as a string, caps text at 65,536
characters, plays recordings only from https URLs, and wants associations as
``{"to": {"id"}, "types": [{"associationCategory", "associationTypeId"}]}``.
The mapping stays free of those rules; they are applied here, once, with a
note for the admin whenever something had to be changed or dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from bridge.templating import truncate

__all__ = [
    "CALL_ASSOCIATION_TYPES",
    "MAX_TEXT",
    "RECORDING_PROPERTY",
    "TASK_ASSOCIATION_TYPES",
    "association",
    "drop_insecure_recording",
    "split_name",
    "to_properties",
]

MAX_TEXT = 65_536
RECORDING_PROPERTY = "hs_call_recording_url"
# HubSpot-defined association type ids (REFERENCE.md §1.4; company/deal for calls from secondary sources).
CALL_ASSOCIATION_TYPES = {"contacts": 194, "companies": 182, "deals": 206}
TASK_ASSOCIATION_TYPES = {"contacts": 204, "companies": 192, "deals": 216}


def to_properties(record: Mapping[str, Any] | None, notes: list[str]) -> dict[str, str]:
    """Every value as HubSpot's string form, text cut to 65,536 characters (noted); None values left out."""
    properties: dict[str, str] = {}
    for name, value in (record or {}).items():
        if value is None:
            continue
        text = _as_text(value)
        if len(text) > MAX_TEXT:
            text = truncate(text, MAX_TEXT)
            notes.append(f"{name} was longer than {MAX_TEXT:,} characters and was truncated")
        properties[name] = text
    return properties


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def drop_insecure_recording(properties: dict[str, str], notes: list[str]) -> str | None:
    """Remove a recording URL HubSpot would not play (not https); returns what to log, or None."""
    url = properties.get(RECORDING_PROPERTY)
    if url is None or url.lower().startswith("https://"):
        return None
    del properties[RECORDING_PROPERTY]
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.hostname}" if parts.scheme and parts.hostname else "a non-URL value"
    # Only scheme and host: recording links are often signed, and the signature is a secret.
    message = f"{RECORDING_PROPERTY} omitted: HubSpot plays only https recordings (got {shown})"
    notes.append(message)
    return message


def association(to_id: str, type_id: int) -> dict[str, Any]:
    """One inline association of a create request."""
    return {"to": {"id": to_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}


def split_name(full_name: Any) -> dict[str, str]:
    """firstname/lastname from Agni's caller_name: the last word is the family name ("Mary Ann Smith")."""
    words = str(full_name or "").split()
    if not words:
        return {}
    if len(words) == 1:
        return {"firstname": words[0]}
    return {"firstname": " ".join(words[:-1]), "lastname": words[-1]}
