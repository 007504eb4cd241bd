"""`agni-bridge setup` for HubSpot: create the call-id property on calls and tasks if it is missing.

The exactly-once guard searches calls and tasks by this property, and HubSpot
rejects writes to properties that do not exist, so deliveries need it first.
Idempotent: an existing property (or one created concurrently, HubSpot's 409)
is reported and left alone. The property is a plain text field, not a unique
one: HubSpot does not document unique properties on activities.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import PermanentError
from connectors.hubspot.client import HubSpotClient

__all__ = ["ensure_call_id_property"]

# Put the new property next to HubSpot's own title property; the fallbacks are only used when the
# portal reports no group for it (unverified names: HubSpot does not document its activity groups).
_ANCHORS = {"calls": ("hs_call_title", "callinformation"), "tasks": ("hs_task_subject", "taskinformation")}


def ensure_call_id_property(client: HubSpotClient, name: str) -> list[str]:
    lines = []
    for object_type, (anchor, fallback) in _ANCHORS.items():
        existing = {str(p.get("name")): p for p in client.list_properties(object_type)}
        if name in existing:
            lines.append(f"{object_type}: property {name} already exists")
            continue
        group = _group(existing, anchor) or fallback
        try:
            client.create_property(object_type, _definition(name, object_type, group))
        except PermanentError as exc:
            if exc.status != 409:
                raise
            lines.append(f"{object_type}: property {name} already exists")
            continue
        lines.append(f"{object_type}: created property {name} (group {group})")
    return lines


def _group(existing: dict[str, dict[str, Any]], anchor: str) -> str:
    group = existing.get(anchor, {}).get("groupName")
    if not group:
        group = next((p.get("groupName") for p in existing.values() if p.get("groupName")), "")
    return str(group or "")


def _definition(name: str, object_type: str, group: str) -> dict[str, Any]:
    what = "call" if object_type == "calls" else "follow-up task"
    return {
        "name": name,
        "label": "Agni call session id",
        "type": "string",
        "fieldType": "text",
        "groupName": group,
        "description": f"Set by agni-bridge: the Agni call_session_id this {what} came from. Do not edit.",
        "hasUniqueValue": False,
        "formField": False,
    }
