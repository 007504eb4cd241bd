"""`agni-bridge preview`: the exact requests a delivery would send, without any network.

Lookups (each only until one matches, and only when the cache does not know the
caller), the person the connector would create for ``on_missing``, then the
call's writes: one ``POST $batch`` holding the call's change set (``batch_size`` >
1; its boundaries are random per request) or each write as its own request. Ids
are the real ones (they derive from call_session_id); what a lookup decides is a
``<placeholder>``; the token is never shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.connector import Delivery, Preview
from connectors.dynamics import batch
from connectors.dynamics.client import CONTINUE_ON_ERROR, ODATA_HEADERS
from connectors.dynamics.config import DynamicsConfig
from connectors.dynamics.lookup import Query
from connectors.dynamics.match import Identity
from connectors.dynamics.odata import ENTITY_SETS, encode_query, person_id
from connectors.dynamics.records import CallPlan, Person, build_plan, owner_for, person_body
from connectors.dynamics.writer import changeset

if TYPE_CHECKING:
    from bridge.mapping import CompiledMapping

__all__ = ["preview_requests"]


def preview_requests(delivery: Delivery, config: DynamicsConfig, mapping: CompiledMapping | None) -> list[Preview]:
    base = config.base_url
    auth = {"Authorization": f"Bearer <access token from {config.token_url}>"}
    read = {**ODATA_HEADERS, **auth}
    identity = Identity.of(delivery.call, config.match.default_region)
    lookup = "GET {base}/{path}?{query} (only until one matches, unless cached)"
    previews = [
        Preview(lookup.format(base=base, path=q.path, query=encode_query(q.params)), None, read)
        for q in _queries(config, identity)
    ]
    on_missing = config.match.on_missing
    if on_missing in ("create_contact", "create_lead") and identity.key():
        entity = on_missing.removeprefix("create_")
        body = person_body(entity, delivery, identity.values(), owner_for(delivery.call, config), mapping)
        target = f"PATCH {base}/{ENTITY_SETS[entity]}({person_id(entity, identity.key())}) (only when nobody matches)"
        previews.append(Preview(target, body, {**read, "Content-Type": "application/json", "If-None-Match": "*"}))
    entity = config.match.order[0]
    person = Person(entity, f"<the matched {' or '.join(config.match.order)} id>", by="preview")
    plan = build_plan(delivery, person, config, mapping, [])
    return previews + _writes(plan, config, read)


def _queries(config: DynamicsConfig, identity: Identity) -> list[Query]:
    queries = []
    for kind in config.match.by:
        fields = config.match.email_fields if kind == "email" else config.match.phone_fields
        values = (identity.email,) if kind == "email" else identity.phones
        if fields and any(values):
            queries += [Query(entity, tuple(fields), values) for entity in config.match.order]
    return queries


def _writes(plan: CallPlan, config: DynamicsConfig, read: dict[str, str]) -> list[Preview]:
    base = config.base_url
    creates = [(f"{base}/{w.entity_set}({w.record_id})", w.body, {"If-None-Match": "*"}) for w in plan.creates()]
    close = (f"{base}/phonecalls({plan.phonecall.record_id})", plan.close, {"If-Match": "*"})
    if config.batch_size > 1:
        content_type, body = batch.encode([changeset(base, plan)])
        headers = {**read, "Content-Type": content_type, "Prefer": CONTINUE_ON_ERROR}
        lines: Any = body.decode().split("\r\n")
        return [
            Preview(
                f"POST {base}/$batch (one change set: the call's writes land together or not at all)", lines, headers
            )
        ]
    previews = [
        Preview(f"PATCH {url}", body, {**read, "Content-Type": "application/json", **headers})
        for url, body, headers in creates
    ]
    url, body, headers = close
    target = f"PATCH {url} (only while the phone call is open)"
    return [*previews, Preview(target, body, {**read, "Content-Type": "application/json", **headers})]
