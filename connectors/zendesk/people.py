"""Creating the end-user for an unknown caller (`match.on_missing: create`), once.

The user is written with Zendesk's upsert, ``POST /users/create_or_update``,
which matches an existing user by email or by external_id instead of adding a
second one. So a retry, a redelivery, or two calls from the same new person at
once all end with one user, without a ledger:

* with an email, the upsert is keyed by the email (Zendesk keeps emails unique)
  and carries the number too, so the person is found by either later; no
  external_id is sent, so a customer's own external_id is never overwritten;
* with only a number, it is keyed by ``external_id: agni-phone:<E.164>``, an id
  only the bridge writes (the number itself is not a key Zendesk matches on).

Identities an agent holds are left out (see :mod:`connectors.zendesk.match`).
If Zendesk refuses the number as already used by another user (a user the
search index did not show yet), the user is written without it, once, and a
note says so. The name and any other user attributes come from the mapping's
`new_contact` section (``user_fields.<key>`` for custom user fields; ``tags``
as words); without a name: ``Caller <number>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bridge.errors import PermanentError
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.match import Identity

__all__ = ["EXTERNAL_ID_PREFIX", "OWNED_KEYS", "create_end_user", "new_user"]

EXTERNAL_ID_PREFIX = "agni-phone:"
OWNED_KEYS = frozenset({"email", "phone", "external_id", "role"})
_TAG_SPLIT = re.compile(r"[\s,]+")


def new_user(call: Mapping[str, Any], identities: list[Identity], rendered: Mapping[str, Any]) -> dict[str, Any]:
    """The upsert body for a caller (module docstring); `rendered` is the mapping's new_contact section."""
    email = next((i.value for i in identities if i.by == "email"), None)
    phone = next((i.value for i in identities if i.by == "phone"), None)
    user: dict[str, Any] = {}
    for name, value in rendered.items():
        if value is None or name in OWNED_KEYS:
            continue
        head, _, tail = name.partition(".")
        if head == "user_fields" and tail:
            user.setdefault("user_fields", {})[tail] = value
        elif name == "tags":
            user["tags"] = [t for t in _TAG_SPLIT.split(str(value)) if t]
        elif not tail:
            user[name] = value
    if not str(user.get("name") or "").strip():
        user["name"] = str(call.get("caller_name") or "").strip() or f"Caller {phone or email or ''}".strip()
    user["role"] = "end-user"
    if email:
        user["email"] = email
    if phone:
        user["phone"] = phone
    if not email and phone:
        user["external_id"] = f"{EXTERNAL_ID_PREFIX}{phone}"
    return user


def create_end_user(client: ZendeskClient, user: dict[str, Any], notes: list[str]) -> int:
    """Upsert `user`; returns its id. A number Zendesk says is taken is dropped and the upsert sent again."""
    try:
        return int(client.create_or_update_user(user)["id"])
    except PermanentError as exc:
        taken = exc.status == 422 and "phone" in user and any("phone" in key for key in exc.details)
        if not taken:
            raise
    retry = {k: v for k, v in user.items() if k != "phone"}
    notes.append("the caller's number belongs to another Zendesk user; the new end-user was created without it")
    return int(client.create_or_update_user(retry)["id"])
