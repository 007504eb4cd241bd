"""Who owns the call in Pipedrive: the agent's user, found through owner_map, then by email, then the default.

In order:

1. `owner_map[agent_name]` (or `owner_map[agent_email]`, compared case-insensitively): a user id is used as
   is; an email is looked up once (step 2) — admins know their colleagues' logins better than their ids;
2. an email (from owner_map, or Agni's `agent_email` when the call carries one) is found with
   ``GET /v1/users/find?term=<email>&search_by_email=1``; only an active user whose address is exactly that
   email counts. Answers, "nobody" included, are cached like person lookups;
3. `default_owner_id`;
4. nobody: Pipedrive makes the token's own user the owner.

Logging calls for another user needs a token whose user has account-settings (admin) access; `setup` checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.lookup_cache import MISSING, LookupCache
from connectors.pipedrive.api import PipedriveApi

__all__ = ["OwnerResolver"]


class OwnerResolver:
    """Resolves an agent to a Pipedrive user id (see the module docstring)."""

    def __init__(
        self,
        api: PipedriveApi,
        cache: LookupCache | None,
        owner_map: Mapping[str, str | int],
        default_owner: str | None,
    ) -> None:
        self.api = api
        self.cache = cache
        self.owner_map = {str(agent).strip().lower(): str(owner).strip() for agent, owner in owner_map.items()}
        self.default_owner = default_owner

    def resolve(self, call: Mapping[str, Any]) -> tuple[str | None, str]:
        """The owner's user id (None: the token's user) and how it was found, for the delivery record."""
        agent = str(call.get("agent_name") or "").strip()
        agent_email = str(call.get("agent_email") or "").strip().lower()
        for key in (agent, agent_email):
            mapped = self.owner_map.get(key.lower()) if key else None
            if mapped is None:
                continue
            if mapped.isdigit():
                return mapped, f"user {mapped} from owner_map"
            user = self.user_by_email(mapped)
            if user is not None:
                return user, f"user {user} by owner_map email"
            break  # mapped to an email nobody has: fall through to the default, not to agent_email
        else:
            if agent_email:
                user = self.user_by_email(agent_email)
                if user is not None:
                    return user, f"user {user} by agent_email"
        if self.default_owner is not None:
            return self.default_owner, f"user {self.default_owner} (default_owner_id)"
        return None, "the token's user"

    def user_by_email(self, email: str) -> str | None:
        """The id of the active user whose login is `email` (cached, "nobody" included)."""
        email = email.strip().lower()
        cached = self.cache.get("user", email) if self.cache is not None else MISSING
        if cached is not MISSING:
            return str(cached["id"]) if isinstance(cached, dict) and cached.get("id") else None
        found = None
        for user in self.api.find_users_by_email(email):
            if str(user.get("email") or "").strip().lower() == email and user.get("active_flag", True) is not False:
                found = str(user["id"])
                break
        if self.cache is not None:
            self.cache.put("user", email, {"id": found})
        return found
