"""The `salesforce` connector: each call lands as a completed call Task on the right Contact or Lead, once.

One delivery:

1. find the caller (email, then phone; :mod:`connectors.salesforce.match`); when nobody
   matches, `match.on_missing` decides: a Task without WhoId, a new Lead, or nothing;
2. upsert the Task by the external id field (:mod:`connectors.salesforce.task`): the
   mapped fields (`mappings/salesforce_task.yaml` by default) plus WhoId, WhatId (the
   Contact's Account) and OwnerId (`owner_map`, else `default_owner_id`, else the matched
   record's owner); the mapping may override any of them;
3. when the mapping's `follow_up` section applies, upsert an open follow-up Task under
   ``<call_session_id>:follow_up``;
4. with `recording: attach`, attach the recording to the Task (best effort).

Because every write is an upsert by a key derived from call_session_id (and a created
Lead is remembered per call), running a delivery again — a retry, a redelivery after a
crash, an admin's replay — updates what exists instead of duplicating it.

The instance is shared by all worker threads of a process. Its I/O parts (HTTP session,
token cache, describe cache, batchers) are built on the first delivery, never at import,
in `check` or in `preview`; simple-salesforce itself is imported only then.

Batching (``batch_size`` > 1, the default) is invisible here and to mappings: each worker
thread still delivers one call, but its lookups and Task upserts join those of the other
threads that are waiting at the same moment (:mod:`connectors.salesforce.lookup`,
:mod:`connectors.salesforce.batch`), so a burst of calls costs a few requests per
hundred calls instead of several per call, and each call still gets its own result.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from bridge.connector import Connector, Delivery, DeliveryResult, Preview, Services
from bridge.quota import QuotaRecorder
from connectors.salesforce.config import SalesforceConfig, config_problems

if TYPE_CHECKING:
    from bridge.mapping import CompiledMapping
    from connectors.salesforce.api import SalesforceApi
    from connectors.salesforce.match import Identity, Matcher, Person
    from connectors.salesforce.recording import RecordingAttacher
    from connectors.salesforce.schema import Schema
    from connectors.salesforce.task import TaskWriter

__all__ = ["SalesforceConnector"]

UNKNOWN_COMPANY = "[not provided]"  # what Salesforce's own Web-to-Lead writes when there is no company
COLLECTION_UPSERT_VERSION = 46.0  # sObject Collections upsert exists from this API version on
# DeliveryResult.records kinds -> the sObject of their Lightning record page (record_url)
_RECORD_OBJECTS = {"Task": "Task", "follow_up": "Task", "Lead": "Lead", "ContentVersion": "ContentVersion"}


@dataclass
class _Parts:
    """The connector's I/O objects, built together on first use."""

    api: SalesforceApi
    schema: Schema
    matcher: Matcher
    tasks: TaskWriter
    attacher: RecordingAttacher


class SalesforceConnector(Connector):
    """Completed call Tasks (and follow-ups, Leads, recordings) in Salesforce; see the module docstring."""

    Config = SalesforceConfig
    default_mapping = "salesforce_task.yaml"

    def __init__(
        self, name: str, config: SalesforceConfig, services: Services, mapping: CompiledMapping | None
    ) -> None:
        super().__init__(name, config, services, mapping)
        self._parts: _Parts | None = None
        self._lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------
    def _build(self) -> _Parts:
        if self._parts is not None:
            return self._parts
        with self._lock:
            if self._parts is None:
                from connectors.salesforce.api import SalesforceApi
                from connectors.salesforce.batch import task_batcher
                from connectors.salesforce.lookup import Lookups
                from connectors.salesforce.match import Matcher
                from connectors.salesforce.recording import RecordingAttacher
                from connectors.salesforce.schema import Schema
                from connectors.salesforce.task import TaskWriter

                config: SalesforceConfig = self.config
                services = self.services
                api = SalesforceApi(
                    config, delivery=services.delivery, resolve_path=services.resolve_path, log=self.log
                )
                if services.redis is not None:
                    api.usage.quota = QuotaRecorder(services.redis, services.prefix, self.name)
                schema = Schema(api.describe, self.log)
                prefix = f"{services.prefix}:salesforce:{self.name}"
                name = f"salesforce-{self.name}"
                timing = {"linger": config.batch_linger_seconds, "max_wait": config.batch_max_wait_seconds}
                lookups = Lookups(api, config.match, schema, batch_size=config.batch_size, name=name, **timing)
                tasks = TaskWriter(api, schema, config.external_id_field)
                if config.batch_size > 1 and float(config.api_version) >= COLLECTION_UPSERT_VERSION:
                    tasks.batcher = task_batcher(
                        api,
                        tasks,
                        batch_size=config.batch_size,
                        limit_pause=config.limit_pause_seconds,
                        name=name,
                        **timing,
                    )
                redis_client = services.redis
                matcher = Matcher(lookups, config.match, redis_client=redis_client, key_prefix=prefix, log=self.log)
                self._parts = _Parts(
                    api=api,
                    schema=schema,
                    matcher=matcher,
                    tasks=tasks,
                    attacher=RecordingAttacher(
                        api,
                        config.recording,
                        trust=api.trust,  # the same CAs as the API calls
                        timeout=services.delivery.timeout_seconds,
                        redis_client=services.redis,
                        key_prefix=prefix,
                        log=self.log,
                    ),
                )
        return self._parts

    def _region(self) -> str:
        region = self.config.match.default_region or (self.mapping.spec.default_region if self.mapping else "")
        return (region or "US").upper()

    def _owner(self, agent_name: Any, person: Person | None) -> str:
        config: SalesforceConfig = self.config
        owner = config.owner_map.get(str(agent_name or "")) or config.default_owner_id
        if not owner and person is not None and person.owner_id.startswith("005"):
            owner = person.owner_id  # a User; a Lead queue (00G) cannot own Tasks in most orgs
        return owner

    def _links(self, person: Person | None, call: dict[str, Any]) -> dict[str, Any]:
        links: dict[str, Any] = {}
        if person is not None:
            links["WhoId"] = person.id
            if person.type == "Contact" and person.account_id and self.config.link_account:
                links["WhatId"] = person.account_id
        owner = self._owner(call.get("agent_name"), person)
        if owner:
            links["OwnerId"] = owner
        return links

    # -- the interface ------------------------------------------------------------------------
    def record_url(self, kind: str, record_id: str) -> str | None:
        """The record's Lightning page ({instance}/lightning/r/{sObject}/{id}/view): the console's deep link."""
        sobject = _RECORD_OBJECTS.get(kind)
        if sobject is None or not record_id.isalnum() or len(record_id) not in (15, 18):
            return None
        base = self.config.instance_url or (self._parts.api.auth.token().instance_url if self._parts else "")
        return f"{base.rstrip('/')}/lightning/r/{sobject}/{record_id}/view" if base else None

    def check(self) -> list[str]:
        return config_problems(self.name, self.config, self.services.resolve_path)

    def deliver(self, delivery: Delivery) -> DeliveryResult:
        from connectors.salesforce.match import Identity

        parts = self._build()
        config: SalesforceConfig = self.config
        result = DeliveryResult()
        identity = Identity.of(delivery.call, self._region())
        person = parts.matcher.find(identity)
        if person is None and config.match.on_missing == "skip":
            result.match = "none (on_missing=skip)"
            result.skipped = "no Contact or Lead matched the caller (match.on_missing=skip)"
            return result
        if person is None and config.match.on_missing == "create_lead":
            person = self._create_lead(parts, delivery, identity, result)
        result.match = person.describe() if person is not None else f"none (on_missing={config.match.on_missing})"

        links = self._links(person, delivery.call)
        call_id = delivery.call_session_id
        task_id = parts.tasks.write(call_id, {**links, **(delivery.record or {})}, result.notes)
        result.records["Task"] = task_id
        follow_up = self.mapping.render_follow_up(delivery.context) if self.mapping is not None else None
        if follow_up is not None:
            body = {**links, **follow_up}
            result.records["follow_up"] = parts.tasks.write(f"{call_id}:follow_up", body, result.notes, "follow_up")
        if config.recording.mode == "attach":
            attached = parts.attacher.attach(delivery.call, call_id, task_id)
            if attached.content_version_id:
                result.records["ContentVersion"] = attached.content_version_id
            if attached.note:
                result.notes.append(attached.note)
        return result

    def _create_lead(self, parts: _Parts, delivery: Delivery, identity: Identity, result: DeliveryResult) -> Person:
        from connectors.salesforce.match import Person

        matcher = parts.matcher
        with matcher.creating(identity):
            person = matcher.find(identity)  # another call from this person may have created it meanwhile
            if person is not None:
                return person
            earlier = matcher.created_for_call(delivery.call_session_id)
            if earlier:
                return Person("Lead", earlier, by="created")
            body, notes = parts.schema.fit("Lead", self._lead_body(delivery, identity))
            result.notes.extend(notes)
            lead_id = parts.api.create("Lead", body, what="create Lead (on_missing=create_lead)")
            person = Person("Lead", lead_id, by="created")
            matcher.remember_created(delivery.call_session_id, identity, person)
        result.records["Lead"] = lead_id
        return person

    def _lead_body(self, delivery: Delivery, identity: Identity) -> dict[str, Any]:
        """The mapping's `new_contact` fields; Salesforce requires LastName and Company, so those always get a value."""
        body = self.mapping.render_new_contact(delivery.context) if self.mapping is not None else {}
        if not body:  # no new_contact section: enough for the next call from this person to match
            body = {"Phone": identity.e164 or None, "Email": identity.email or None}
        body = {key: value for key, value in body.items() if value not in (None, "")}
        call = delivery.call
        unknown = f"Unknown caller {identity.e164 or call.get('phone') or ''}".strip()
        body.setdefault("LastName", str(call.get("caller_name") or unknown))
        body.setdefault("Company", UNKNOWN_COMPANY)
        return body

    def preview(self, delivery: Delivery) -> list[Preview]:
        from connectors.salesforce.match import Identity
        from connectors.salesforce.recording import path_on_client, recording_title
        from connectors.salesforce.schema import Schema
        from connectors.salesforce.task import TaskWriter

        config: SalesforceConfig = self.config
        offline = TaskWriter(None, Schema(None), config.external_id_field)  # type: ignore[arg-type]  # no I/O
        base = f"{config.instance_url or '<instance_url from the token response>'}/services/data/v{config.api_version}"
        upsert = f"PATCH {base}/sobjects/Task/{config.external_id_field}/"
        links: dict[str, Any] = {"WhoId": "<matched Contact/Lead>"}
        if config.link_account:
            links["WhatId"] = "<the matched Contact's Account>"
        owner = self._owner(delivery.call.get("agent_name"), None)
        if owner:
            links["OwnerId"] = owner
        call_id = delivery.call_session_id
        task, _ = offline.prepare({**links, **(delivery.record or {})})
        previews = [Preview(target=upsert + quote(call_id, safe=""), body=task)]
        follow_up = self.mapping.render_follow_up(delivery.context) if self.mapping is not None else None
        if follow_up is not None:
            body, _ = offline.prepare({**links, **follow_up})
            previews.append(Preview(target=upsert + quote(f"{call_id}:follow_up", safe=""), body=body))
        if config.match.on_missing == "create_lead":
            lead = self._lead_body(delivery, Identity.of(delivery.call, self._region()))
            target = f"POST {base}/sobjects/Lead/ (only when no Contact or Lead matches)"
            previews.append(Preview(target=target, body=lead))
        url = str(delivery.call.get("recording_url") or "")
        if config.recording.mode == "attach" and url:
            version = {
                "Title": recording_title(delivery.call),
                "PathOnClient": path_on_client(call_id, url),
                "VersionData": f"<base64 of the recording downloaded from {urlsplit(url).hostname}>",
                "FirstPublishLocationId": "<the Task>",
            }
            previews.append(Preview(target=f"POST {base}/sobjects/ContentVersion/ (recording: attach)", body=version))
        return previews

    def setup(self) -> list[str]:
        """Check (never create) the external id field and the mapped fields against the org's describe."""
        config: SalesforceConfig = self.config
        api = self._build().api
        fields = {str(f.get("name", "")).lower(): f for f in api.describe("Task").get("fields", [])}
        ext_name = config.external_id_field
        ext = fields.get(ext_name.lower())
        lines = []
        if ext is None:
            lines.append(
                f"✗ Task.{ext_name} does not exist. Create it once (Setup → Object Manager → Activity → Fields & "
                f"Relationships → New): Text(255) named {ext_name.removesuffix('__c')}, with 'Unique' and "
                "'External ID' checked. The bridge does not create metadata."
            )
        elif not (ext.get("externalId") and ext.get("unique")):
            lines.append(
                f"✗ Task.{ext_name} exists but is not External ID + Unique: edit the field and check both, or "
                "concurrent deliveries can create duplicate Tasks"
            )
        else:
            lines.append(f"✓ Task.{ext_name} is an External ID + Unique field: Tasks are upserted by it")
        lines += _mapping_field_lines(self.mapping, fields, ext_name)
        usage = api.usage
        if usage.used is not None:
            lines.append(f"API usage today: {usage.used}/{usage.total}")
        return lines

    def close(self) -> None:
        if self._parts is not None:
            self._parts.tasks.close()  # lets batches in flight finish before the session goes
            self._parts.matcher.lookups.close()
            self._parts.api.close()


def _mapping_field_lines(mapping: CompiledMapping | None, fields: dict[str, Any], ext_name: str) -> list[str]:
    if mapping is None:
        return []
    names = list(mapping.spec.fields)
    if mapping.spec.follow_up is not None and mapping.spec.follow_up.enabled:
        names += list(mapping.spec.follow_up.fields)
    lines = []
    for name in dict.fromkeys(names):
        info = fields.get(name.lower())
        if name.lower() == ext_name.lower():
            lines.append(f"✗ mapping {mapping.name}: {name} is the external id; it is set from the URL, remove it")
        elif info is None:
            lines.append(f"✗ mapping {mapping.name}: Task has no field {name} (deliveries would dead-letter)")
        elif not info.get("createable"):
            lines.append(f"✗ mapping {mapping.name}: Task.{name} is not writable by the integration user")
    if not lines:
        lines.append(f"✓ mapping {mapping.name}: every field exists on Task and is writable")
    return lines
