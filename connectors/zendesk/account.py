"""`agni-bridge setup` for Zendesk: check that the account can take the bridge's tickets. Changes nothing.

* the credentials belong to an agent or admin (``GET /users/me``; with credentials Zendesk does not
  know, it answers 401, and without any it describes an anonymous end-user);
* `match.fallback_requester_id` names a user that exists;
* every `owner_map` id and `default_owner_id` names an agent or admin (assignees must be agents).

Problems are raised together as one PermanentError, so `setup` exits non-zero and names each of them.
"""

from __future__ import annotations

from bridge.errors import PermanentError
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import ZendeskConfig

__all__ = ["AGENT_ROLES", "verify_account"]

AGENT_ROLES = ("agent", "admin")
_SHOW_MANY_LIMIT = 100


def verify_account(client: ZendeskClient, config: ZendeskConfig) -> list[str]:
    """What setup found, one line each; raises PermanentError naming every problem."""
    lines: list[str] = []
    problems: list[str] = []
    me = client.me()
    role, user_id = str(me.get("role") or ""), me.get("id")
    if not user_id:
        problems.append("Zendesk answered as an anonymous user: the credentials were not sent or not recognised")
    elif role not in AGENT_ROLES:
        problems.append(f"the credentials belong to user {user_id}, a(n) {role}: tickets need an agent or admin")
    else:
        lines.append(f"signed in as {role} {user_id}; can create tickets and end-users")
    if problems:  # the reads below need an agent's rights: they would only repeat the problem as a 403
        raise PermanentError("Zendesk setup: " + problems[0])

    owners = {f"owner_map.{agent}": int(owner) for agent, owner in config.owner_map.items() if str(owner).isdigit()}
    if config.default_owner is not None:
        owners["default_owner_id"] = config.default_owner
    wanted = sorted({*owners.values(), *([config.fallback_requester] if config.fallback_requester else [])})
    known = {}
    for start in range(0, len(wanted), _SHOW_MANY_LIMIT):
        known.update({int(u["id"]): u for u in client.users(wanted[start : start + _SHOW_MANY_LIMIT])})

    fallback = config.fallback_requester
    if fallback is not None:
        if fallback in known:
            lines.append(f"match.fallback_requester_id: user {fallback} exists ({known[fallback].get('role')})")
        else:
            problems.append(f"match.fallback_requester_id: no user {fallback} in this Zendesk account")
    for key, owner in owners.items():
        user = known.get(owner)
        if user is None:
            problems.append(f"{key}: no user {owner} in this Zendesk account")
        elif user.get("role") not in AGENT_ROLES:
            problems.append(f"{key}: user {owner} is a(n) {user.get('role')}; assignees must be agents or admins")
        else:
            lines.append(f"{key}: {user.get('role')} {owner} ({user.get('name') or 'no name'})")
    if problems:
        raise PermanentError("Zendesk setup: " + "; ".join(problems))
    return lines
