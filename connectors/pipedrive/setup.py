"""`agni-bridge setup` for Pipedrive: check, once, what deliveries will need from the account.

Pipedrive needs no custom field for the bridge (the marker lives in the note), so setup only reads:

* ``GET /v1/users/me``: the token works, whose it is, on which company. Pipedrive refuses call logs for another
  `user_id` unless the token's user has account-settings access: an admin (``is_admin``, or ``admin: true`` in
  one of its ``access`` entries) or the ``account_settings`` app. Without it, owner_map users other than the
  token's own cannot own calls, and setup says so. For call logs it also says that reconciliation after a lost
  answer only sees the token user's call logs (:mod:`connectors.pipedrive.reconcile`).
* each owner_map / default_owner_id user: ``GET /v1/users/{id}`` (exists and is active) or, for an email,
  ``GET /v1/users/find``;
* ``GET /v1/activityTypes``: the activity types the mapping uses (`call`, and the follow-up's) exist and are
  active.

Problems come back as lines starting with ``WARNING:``; a token Pipedrive refuses is an error.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import PermanentError
from bridge.mapping import CompiledMapping
from connectors.pipedrive.api import PipedriveApi
from connectors.pipedrive.config import PipedriveConfig
from connectors.pipedrive.owners import OwnerResolver

__all__ = ["can_log_for_others", "check_account"]


def can_log_for_others(me: dict[str, Any]) -> bool:
    """Whether the token's user may set another user as a call log's owner (account-settings access)."""
    if me.get("is_admin") in (True, 1, "1"):
        return True
    for access in me.get("access") or []:
        if isinstance(access, dict) and (access.get("admin") is True or access.get("app") == "account_settings"):
            return True
    return False


def check_account(api: PipedriveApi, config: PipedriveConfig, mapping: CompiledMapping | None) -> list[str]:
    """What setup found, one line each (see the module docstring)."""
    me = api.me()
    me_id = str(me.get("id") or "")
    admin = can_log_for_others(me)
    company = me.get("company_domain") or me.get("company_name") or "?"
    lines = [f"token user: {me.get('name') or '?'} (id {me_id}) on company {company}"]
    lines.append(
        "the token's user may log calls for other users (account settings access)"
        if admin
        else "the token's user has no account settings access: Pipedrive logs its calls for it alone"
    )
    owners = _owner_lines(api, config, me_id, admin)
    lines += owners[0]
    others = owners[1]
    if others and config.record == "call_log":
        lines.append(
            "WARNING: calls owned by other users are call logs the token's user cannot list: after a lost "
            "answer such a call may be logged twice (record: activity has no such gap)"
        )
    lines += _activity_type_lines(api, config, mapping)
    return lines


def _owner_lines(api: PipedriveApi, config: PipedriveConfig, me_id: str, admin: bool) -> tuple[list[str], bool]:
    lines: list[str] = []
    others = False
    wanted = {f"owner_map.{agent}": str(owner).strip() for agent, owner in config.owner_map.items()}
    if config.default_owner is not None:
        wanted["default_owner_id"] = config.default_owner
    resolver = OwnerResolver(api, None, {}, None)
    for key, owner in wanted.items():
        user_id = owner if owner.isdigit() else resolver.user_by_email(owner)
        if user_id is None:
            lines.append(f"WARNING: {key}: no active Pipedrive user has the email {owner}")
            continue
        try:
            user = api.user(user_id)
        except PermanentError as exc:
            if exc.status != 404:
                raise
            lines.append(f"WARNING: {key}: Pipedrive has no user {user_id}")
            continue
        if user.get("active_flag") is False or user.get("is_deleted") is True:
            lines.append(f"WARNING: {key}: user {user_id} ({user.get('name')}) is not active")
            continue
        lines.append(f"{key}: user {user_id} ({user.get('name') or '?'})")
        if user_id != me_id:
            others = True
            if not admin:
                lines.append(f"WARNING: {key}: user {user_id} is not the token's user, who cannot log calls for others")
    return lines, others


def _activity_type_lines(api: PipedriveApi, config: PipedriveConfig, mapping: CompiledMapping | None) -> list[str]:
    wanted: dict[str, str] = {}
    if config.record == "activity":
        wanted[_literal(mapping.spec.fields.get("type") if mapping else None) or "call"] = "the call"
    follow_up = mapping.spec.follow_up if mapping is not None else None
    if follow_up is not None and follow_up.enabled:
        wanted.setdefault(_literal(follow_up.fields.get("type")) or "call", "the follow-up")
    if not wanted:
        return []
    active = {str(t.get("key_string")) for t in api.activity_types() if t.get("active_flag", True) is not False}
    lines = []
    for key, what in wanted.items():
        if key in active:
            lines.append(f"activity type {key!r} ({what}) exists")
        else:
            lines.append(f"WARNING: activity type {key!r} ({what}) is missing or inactive in Pipedrive")
    return lines


def _literal(value: Any) -> str:
    """A mapping field's literal text (a template's value cannot be known before a call)."""
    raw = getattr(value, "value", value)
    return raw.strip() if isinstance(raw, str) and "{" not in raw else ""
