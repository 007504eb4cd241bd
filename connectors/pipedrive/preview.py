"""`agni-bridge preview` for Pipedrive: every request a delivery would send, without any network. Pure.

In the order a delivery sends them: the lookups (skipped when Redis has the answer cached), the person it
would create when nobody matches (on_missing: create_person), the call log or activity, the follow-up, and
the recording upload. What lookups decide shows as ``<placeholders>``; credentials as ``<api_token>`` or
``<oauth_token>``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from bridge.connector import Delivery, Preview
from bridge.mapping import CompiledMapping
from connectors.pipedrive.config import PipedriveConfig
from connectors.pipedrive.match import Identity
from connectors.pipedrive.records import FOLLOW_UP, Links, activity_body, call_log_body, person_body

__all__ = ["preview_requests"]

PERSON = "<matched person>"
LOOKUP = " (a lookup: skipped while its answer is cached)"


def preview_requests(
    delivery: Delivery, mapping: CompiledMapping | None, config: PipedriveConfig, identities: list[Identity]
) -> list[Preview]:
    base = config.api_base
    headers = _auth_headers(config)
    reads = {k: v for k, v in headers.items() if k != "content-type"}
    previews = [_get(base, "/api/v2/persons/search", params, reads) for params in _searches(identities)]
    owner = _owner(delivery, config)
    if owner.startswith("<user by email"):
        email = owner.removeprefix("<user by email ").removesuffix(">")
        previews.append(_get(base, "/v1/users/find", {"term": email, "search_by_email": 1}, reads))
    if config.associate.deal:
        params = {"person_id": PERSON, "status": "open", "sort_by": "add_time", "sort_direction": "desc", "limit": 1}
        previews.append(_get(base, "/api/v2/deals", params, reads))
    if config.match.on_missing == "create_person" and identities:
        email = next((i.value for i in identities if i.by == "email"), None)
        phone = next((i.value for i in identities if i.by == "phone"), None)
        extra = mapping.render_new_contact(delivery.context) if mapping is not None else {}
        body = person_body(delivery.call.get("caller_name"), email, phone, extra, config.match.person_fields)
        previews.append(Preview(f"POST {base}/api/v2/persons (only when no person matches)", body, headers))

    notes: list[str] = []
    links = _placeholders(config, owner)
    key = delivery.call_session_id
    if config.record == "call_log":
        body = call_log_body(delivery.record, key, links, notes)
        previews.append(Preview(f"POST {base}/v1/callLogs", body, headers))
    else:
        body = activity_body(delivery.record, key, links, notes, done=True)
        previews.append(Preview(f"POST {base}/api/v2/activities", body, headers))
    follow_up = mapping.render_follow_up(delivery.context) if mapping is not None else None
    if follow_up is not None:
        task = activity_body(follow_up, f"{key}:{FOLLOW_UP}", links, notes, done=False)
        previews.append(Preview(f"POST {base}/api/v2/activities (follow-up)", task, headers))
    if config.recording.mode == "attach" and config.record == "call_log" and delivery.call.get("recording_url"):
        upload = {"file": "<the recording, downloaded from its host>"}
        previews.append(Preview(f"POST {base}/v1/callLogs/<new call log id>/recordings (multipart)", upload, reads))
    return previews


def _placeholders(config: PipedriveConfig, owner: str) -> Links:
    """What lookups would decide, as placeholders where ids would be."""
    return Links(
        person_id=PERSON,
        org_id="<the person's organization>" if config.associate.organization else None,
        deal_id="<the person's newest open deal>" if config.associate.deal else None,
        owner_id=owner or None,
    )


def _owner(delivery: Delivery, config: PipedriveConfig) -> str:
    agent = str(delivery.call.get("agent_name") or "").strip().lower()
    agent_email = str(delivery.call.get("agent_email") or "").strip().lower()
    mapped = {str(k).strip().lower(): str(v).strip() for k, v in config.owner_map.items()}
    for key in (agent, agent_email):
        if key and key in mapped:
            value = mapped[key]
            return value if value.isdigit() else f"<user by email {value}>"
    if agent_email:
        return f"<user by email {agent_email}>"
    return config.default_owner or ""


def _searches(identities: list[Identity]) -> list[dict[str, Any]]:
    searches: list[dict[str, Any]] = []
    for identity in identities:
        if identity.by == "email":
            searches.append({"term": identity.value, "fields": "email", "exact_match": "true", "limit": 100})
        else:
            searches.append({"term": identity.value, "fields": "phone", "exact_match": "true", "limit": 100})
            searches.append({"term": identity.national, "fields": "phone", "exact_match": "false", "limit": 100})
    return searches


def _get(base: str, path: str, params: dict[str, Any], headers: dict[str, str]) -> Preview:
    return Preview(f"GET {base}{path}?{urlencode(params)}{LOOKUP}", None, headers)


def _auth_headers(config: PipedriveConfig) -> dict[str, str]:
    if config.auth.kind == "api_token":
        return {"x-api-token": "<api_token>", "content-type": "application/json"}
    return {"authorization": "Bearer <oauth_token>", "content-type": "application/json"}
