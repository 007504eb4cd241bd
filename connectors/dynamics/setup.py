"""`agni-bridge setup --connector <name>`: can the application user do what deliveries need? Read-only.

Dataverse needs no schema change (the bridge chooses record ids itself), so setup
only verifies, without writing anything:

1. a token can be had (the app registration's credential and tenant are right);
2. ``WhoAmI`` answers (the app registration has an application user in this
   environment, and it is enabled);
3. ``RetrieveUserPrivileges`` on that user lists the privileges deliveries use —
   read contacts (and leads), create/write/append activities, append to contacts
   (and leads), create notes, and create contacts or leads for ``on_missing``, and
   assign activities when records are owned by someone else. Dataverse has no
   harmless "try a create" (a created record would be real), so privileges are
   read, not probed;
4. one real read of each searched table (``$top=1``): the read privilege at work;
5. each owner in ``owner_map`` / ``default_owner_id`` exists and is enabled.

Each line starts with ✓ or ✗; a ✗ says what to change in Dynamics.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import ConnectorError
from connectors.dynamics.client import DataverseClient
from connectors.dynamics.config import DynamicsConfig
from connectors.dynamics.odata import ENTITY_SETS, GUID

__all__ = ["needed_privileges", "run_setup"]

ROLE_HINT = "give the application user a security role with it (Power Platform admin center → Application users)"


def needed_privileges(config: DynamicsConfig, *, writes_notes: bool = True) -> dict[str, str]:
    """Privilege name -> why deliveries need it."""
    needed = {
        "prvCreateActivity": "create phone calls and follow-up tasks",
        "prvWriteActivity": "complete phone calls",
        "prvReadActivity": "read a phone call's state when a call is delivered again",
        "prvAppendActivity": "set a phone call's Regarding",
    }
    for entity in config.match.order:
        title = entity.capitalize()
        needed[f"prvRead{title}"] = f"find {entity}s"
        needed[f"prvAppendTo{title}"] = f"link phone calls to {entity}s"
    if writes_notes:
        needed["prvCreateNote"] = "add the transcript as a note when it does not fit the description"
        needed["prvAppendToActivity"] = "attach notes to phone calls"
    on_missing = config.match.on_missing
    if on_missing in ("create_contact", "create_lead"):
        entity = on_missing.removeprefix("create_")
        needed[f"prvCreate{entity.capitalize()}"] = f"create {entity}s (match.on_missing: {on_missing})"
    if config.owner_map or config.default_owner_id:
        needed["prvAssignActivity"] = "create phone calls owned by the agents in owner_map"
    return needed


def run_setup(client: DataverseClient, config: DynamicsConfig, *, writes_notes: bool = True) -> list[str]:
    """The checks of the module docstring, one line each."""
    lines: list[str] = []
    try:
        client.tokens.token()
    except ConnectorError as exc:
        return [f"✗ no token from {client.tokens.token_url}: {exc.describe()}"]
    lines.append(f"✓ token from {client.tokens.token_url} for {config.scope}")
    try:
        me = client.get("WhoAmI", what="WhoAmI")
    except ConnectorError as exc:
        return [*lines, f"✗ WhoAmI failed: {exc.describe()}"]
    user = str((me or {}).get("UserId") or "")
    lines.append(f"✓ WhoAmI: application user {user} (organization {(me or {}).get('OrganizationId')})")
    lines += _privilege_lines(client, config, user, writes_notes)
    for entity in config.match.order:
        try:
            client.get(ENTITY_SETS[entity], {"$select": f"{entity}id", "$top": "1"}, what=f"read {entity}s")
            lines.append(f"✓ read {ENTITY_SETS[entity]}: allowed")
        except ConnectorError as exc:
            lines.append(f"✗ read {ENTITY_SETS[entity]}: {exc.describe()}")
    owners = dict.fromkeys([*config.owner_map.values(), config.default_owner_id])
    for owner in (o.strip() for o in owners if o and GUID.match(o.strip())):
        lines.append(_owner_line(client, owner))
    return lines


def _privilege_lines(client: DataverseClient, config: DynamicsConfig, user: str, writes_notes: bool) -> list[str]:
    path = f"systemusers({user})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()"
    try:
        found = client.get(path, what="RetrieveUserPrivileges")
    except ConnectorError as exc:
        return [f"✗ cannot list the application user's privileges: {exc.describe()}"]
    held: dict[str, str] = {}
    for item in (found or {}).get("RolePrivileges") or []:
        if isinstance(item, dict) and item.get("PrivilegeName"):
            held[str(item["PrivilegeName"]).lower()] = str(item.get("Depth") or "")
    if not held:
        return ["✗ RetrieveUserPrivileges named no privileges (an older API version?): check the role by hand"]
    lines = []
    for name, why in needed_privileges(config, writes_notes=writes_notes).items():
        depth = held.get(name.lower())
        if depth:
            lines.append(f"✓ {name} ({depth}): {why}")
        else:
            lines.append(f"✗ {name} is missing, needed to {why}: {ROLE_HINT}")
    return lines


def _owner_line(client: DataverseClient, owner: str) -> str:
    try:
        user: Any = client.get(f"systemusers({owner})", {"$select": "fullname,isdisabled"}, what=f"read user {owner}")
    except ConnectorError as exc:
        return f"✗ owner {owner}: {exc.describe()}"
    name = (user or {}).get("fullname") or owner
    if (user or {}).get("isdisabled"):
        return f"✗ owner {owner} ({name}) is disabled: records cannot be assigned to them"
    return f"✓ owner {owner}: {name}"
