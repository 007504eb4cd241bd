"""Turning rendered mapping records into the property and association shapes HubSpot accepts. Pure.

HubSpot types every property value as a string, caps text at 65,536
characters, plays recordings only from https URLs, and wants associations as
``{"to": {"id"}, "types": [{"associationCategory", "associationTypeId"}]}``.
The mapping stays free of those rules; they are applied here, once, with a
note for the admin whenever something had to be changed or dropped. The
call's, the follow-up task's and a new contact's properties are assembled
here too: the mapping's fields, the call id, and the owner from `owner_map`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bridge.connector import Delivery, Preview
from bridge.templating import truncate
from connectors.hubspot.config import HubSpotConfig

if TYPE_CHECKING:
    from bridge.mapping import CompiledMapping
    from connectors.hubspot.match import Identity

__all__ = [
    "CALL_ASSOCIATION_TYPES",
    "FOLLOW_UP",
    "MAX_TEXT",
    "RECORDING_PROPERTY",
    "TASK_ASSOCIATION_TYPES",
    "association",
    "call_properties",
    "contact_properties",
    "create_body",
    "drop_insecure_recording",
    "preview_requests",
    "split_name",
    "task_properties",
    "to_properties",
]

MAX_TEXT = 65_536
PLACEHOLDER_CONTACT = "<matched contact>"
FOLLOW_UP = "follow_up"
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


def call_properties(delivery: Delivery, config: HubSpotConfig, notes: list[str]) -> tuple[dict[str, str], str | None]:
    """The Call's properties (mapped fields, call id, owner), and what to log when the recording URL was dropped."""
    properties = to_properties(delivery.record, notes)
    warning = drop_insecure_recording(properties, notes)
    properties[config.call_id_property] = delivery.call_session_id
    _add_owner(properties, delivery, config)
    return properties, warning


def task_properties(
    delivery: Delivery, mapping: CompiledMapping | None, config: HubSpotConfig, notes: list[str]
) -> dict[str, str] | None:
    """The follow-up Task's properties, or None when the mapping's follow_up section does not apply."""
    rendered = mapping.render_follow_up(delivery.context) if mapping is not None else None
    if rendered is None:
        return None
    properties = to_properties(rendered, notes)
    properties[config.call_id_property] = f"{delivery.call_session_id}:{FOLLOW_UP}"
    _add_owner(properties, delivery, config)
    return properties


def contact_properties(
    delivery: Delivery, identities: list[Identity], mapping: CompiledMapping | None, config: HubSpotConfig
) -> dict[str, str]:
    """A new contact: the caller's name and identities, the mapping's new_contact section, match.contact_properties."""
    base: dict[str, Any] = split_name(delivery.call.get("caller_name"))
    for identity in identities:
        base["email" if identity.by == "email" else "phone"] = identity.value
    if mapping is not None:
        base.update(mapping.render_new_contact(delivery.context))
    base.update(config.match.contact_properties)
    return to_properties(base, [])


def create_body(properties: dict[str, str], targets: dict[str, str], types: dict[str, int]) -> dict[str, Any]:
    """A create request's body: the properties and one inline association per target (type name -> id)."""
    associations = [association(to_id, types[to_type]) for to_type, to_id in targets.items()]
    return {"properties": properties, "associations": associations}


def _add_owner(properties: dict[str, str], delivery: Delivery, config: HubSpotConfig) -> None:
    if properties.get("hubspot_owner_id"):
        return  # the mapping decided
    agent = str(delivery.call.get("agent_name") or "")
    owner = config.owners.get(agent) or config.default_owner
    if owner:
        properties["hubspot_owner_id"] = owner


def preview_requests(
    delivery: Delivery, mapping: CompiledMapping | None, config: HubSpotConfig, identities: list[Identity]
) -> list[Preview]:
    """The requests a delivery would send (`agni-bridge preview`), with placeholders for what lookups decide."""
    notes: list[str] = []
    base = f"{config.base_url.rstrip('/')}/{config.objects_path.strip('/')}"
    headers = {"authorization": "Bearer <access_token>", "content-type": "application/json"}
    targets = {"contacts": PLACEHOLDER_CONTACT}
    if config.associate.company:
        targets["companies"] = "<the contact's primary company>"
    if config.associate.deal:
        targets["deals"] = "<the contact's most recent open deal>"
    call, _ = call_properties(delivery, config, notes)
    previews = [Preview(f"POST {base}/calls", create_body(call, targets, CALL_ASSOCIATION_TYPES), headers)]
    task = task_properties(delivery, mapping, config, notes)
    if task is not None:
        body = create_body(task, {"contacts": PLACEHOLDER_CONTACT}, TASK_ASSOCIATION_TYPES)
        previews.append(Preview(target=f"POST {base}/tasks", body=body, headers=headers))
    if config.match.on_missing == "create_contact":
        body = {"properties": contact_properties(delivery, identities, mapping, config), "associations": []}
        previews.append(Preview(target=f"POST {base}/contacts (only when no contact matches)", body=body))
    return previews
