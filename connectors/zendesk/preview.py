"""`agni-bridge preview` for Zendesk: the requests a delivery would send, without any network. Pure.

In the order a delivery sends them: the users searches (each only while the earlier ones found no
end-user, and only when the lookup cache does not know the answer), the end-user upsert (only when
nobody matched and `match.on_missing` is create), the ticket, and the follow-up task ticket. What the
lookups decide is shown as ``<placeholders>``; credentials never appear.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from bridge.connector import Delivery, Preview
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.people import new_user
from connectors.zendesk.tickets import FOLLOW_UP, call_ticket, follow_up_ticket

if TYPE_CHECKING:
    from bridge.mapping import CompiledMapping
    from connectors.zendesk.match import Identity

__all__ = ["MATCHED", "preview_requests"]

MATCHED = "<the matched end-user's id>"


def _headers(config: ZendeskConfig, key: str | None = None) -> dict[str, str]:
    if config.auth.oauth_token:
        authorization = "Bearer <oauth_token>"
    else:
        authorization = f"Basic <base64 of {config.auth.email or '<email>'}/token:<api_token>>"
    headers = {"authorization": authorization, "content-type": "application/json"}
    if key is not None:
        headers["idempotency-key"] = key
    return headers


def preview_requests(
    delivery: Delivery,
    mapping: CompiledMapping | None,
    config: ZendeskConfig,
    identities: list[Identity],
    owner: int | None,
) -> list[Preview]:
    root = config.api_root
    notes: list[str] = []
    previews = [
        Preview(f"GET {root}/users/search?{urlencode({'query': query})} (until an end-user is found; cached)", None,
                {"authorization": _headers(config)["authorization"]})
        for identity in identities
        for query in identity.queries()
    ]  # fmt: skip
    if config.match.on_missing == "create" and identities:
        rendered = mapping.render_new_contact(delivery.context) if mapping is not None else {}
        previews.append(
            Preview(f"POST {root}/users/create_or_update (only when no end-user matches)",
                    {"user": new_user(delivery.call, identities, rendered)}, _headers(config))
        )  # fmt: skip
    call_id = delivery.call_session_id
    ticket = call_ticket(delivery.record, external_id=call_id, requester_id=MATCHED, owner=owner, notes=notes)
    previews.append(Preview(f"POST {root}/tickets", {"ticket": ticket}, _headers(config, call_id)))
    rendered_task = mapping.render_follow_up(delivery.context) if mapping is not None else None
    if rendered_task is not None:
        key = f"{call_id}:{FOLLOW_UP}"
        task = follow_up_ticket(rendered_task, external_id=key, requester_id=MATCHED, owner=owner,
                                call_ticket_id="<the call's ticket id>", notes=notes)  # fmt: skip
        previews.append(Preview(f"POST {root}/tickets (follow-up task)", {"ticket": task}, _headers(config, key)))
    return previews
