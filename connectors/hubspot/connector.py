"""The `hubspot` connector: each call becomes one Call engagement on the right Contact, plus a follow-up Task.

Per call it (1) finds the contact (:mod:`connectors.hubspot.match`: one
search at most, usually none thanks to the shared cache), (2) writes the
Call with the mapping's properties, the call id in `call_id_property`, the
owner from `owner_map` and the contact association inline, exactly once
(:mod:`bridge.ledger`), and (3) when the mapping's `follow_up`
condition holds, writes a Task the same way. A lone new call therefore costs
one request; a retried or replayed one a PATCH (plus an association PUT if the
contact changed). When HubSpot refuses a write naming a contact id that came
from the lookup cache (deleted or merged since), the contact is looked up
afresh and the delivery runs once more.

Batching (`batch_size`, default 100; 1 turns it off) is invisible to mappings
and to the pipeline: deliveries running at the same moment on the worker's
threads share their requests. Creates and updates go out as /batch/create and
/batch/update requests of up to 100 objects (:mod:`connectors.hubspot.batch`)
and cache misses as one search with IN filters (:mod:`connectors.hubspot.lookup`),
so a burst costs a few hundredths of a request per call. Each delivery still
gets its own result or error, and a batch of one is sent as a single-object
request, at once.

With no matching contact, `match.on_missing` decides: `unassociated` (the
default) logs the call without a contact, `create_contact` creates one (which
may count as a billed marketing contact: see MatchConfig), `skip` writes
nothing. Requests share per-account budgets in Redis across every worker
(:mod:`bridge.limiter`) and HubSpot's answers are translated into
bridge errors in one place (:mod:`connectors.hubspot.errors`).

Redis keys, under ``{prefix}:hubspot:``:
    {name}:ledger:{call|follow_up|contact}:{key}   HubSpot ids + intent markers (400 days)
    {name}:lookup:contact:{email|phone}:{hash}     contact lookups (lookup_cache_seconds; the value hashed)
    {name}:lookup:deal:{hash of the contact id}    open-deal lookups
    budget:{account}:{10s|search|paused}           shared rate budgets and the daily pause
where {account} is a short hash of base URL and token, so two connectors on
one HubSpot account share one budget (the token itself is never stored).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from bridge.connector import Connector, Delivery, DeliveryResult, Preview, Services
from bridge.errors import PermanentError
from bridge.ledger import Ledger, Outcome, write_once
from bridge.mapping import CompiledMapping
from bridge.quota import QuotaRecorder
from bridge.tls import trust_problems
from connectors.hubspot.batch import NewObject
from connectors.hubspot.client import HubSpotClient
from connectors.hubspot.config import HubSpotConfig, config_problems
from connectors.hubspot.errors import certainly_not_written, existing_id_from_conflict
from connectors.hubspot.match import ContactFinder, ContactMatch, Identity, identities_of
from connectors.hubspot.properties import ensure_call_id_property
from connectors.hubspot.records import (
    CALL_ASSOCIATION_TYPES,
    FOLLOW_UP,
    TASK_ASSOCIATION_TYPES,
    call_properties,
    contact_properties,
    create_body,
    preview_requests,
    task_properties,
)
from connectors.hubspot.wiring import Stores, build_client, build_stores

__all__ = ["HubSpotConnector"]

class HubSpotConnector(Connector):
    """Delivers calls to HubSpot (see the module docstring); one instance serves every worker thread."""

    Config = HubSpotConfig
    default_mapping = "hubspot_call.yaml"

    def __init__(self, name: str, config: HubSpotConfig, services: Services, mapping: CompiledMapping | None) -> None:
        super().__init__(name, config, services, mapping)
        self.config: HubSpotConfig = config
        self._keys = f"{services.prefix}:hubspot:{name}"
        account = hashlib.sha256(f"{config.base_url}|{config.access_token}".encode()).hexdigest()[:16]
        self._budget = f"{services.prefix}:hubspot:budget:{account}"
        self._stale_after = config.search_settle_seconds + services.delivery.timeout_seconds
        self._client: HubSpotClient | None = None
        self._stores_built: Stores | None = None
        self._lock = threading.RLock()

    # -- wiring (lazy: nothing is built by check, preview or import) -----------------------
    @property
    def client(self) -> HubSpotClient:
        with self._lock:
            if self._client is None:
                self._client = build_client(self.config, self.services, self._budget)
                if self.services.redis is not None:
                    self._client.quota = QuotaRecorder(self.services.redis, self.services.prefix, self.name)
            return self._client

    def _stores(self) -> Stores:
        """Ledgers, contact finder and (unless batch_size is 1) the batchers, built on first delivery."""
        redis = self.services.redis
        if redis is None:
            raise PermanentError("the HubSpot connector needs Redis (its exactly-once ledger lives there)")
        with self._lock:
            if self._stores_built is None:
                self._stores_built = build_stores(self.config, self.client, redis, self._keys)
            return self._stores_built

    # -- the plug-in interface ------------------------------------------------------------
    def check(self) -> list[str]:
        where = f"connectors.{self.name}"
        trust = trust_problems(where, self.config.ca_bundle, resolve_path=self.services.resolve_path)
        return config_problems(self.name, self.config) + trust

    def setup(self) -> list[str]:
        return ensure_call_id_property(self.client, self.config.call_id_property)

    def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Write the call (and its follow-up task) exactly once; see the module docstring."""
        try:
            try:
                return self._deliver(delivery, fresh=False)
            except _StaleContact as stale:
                # A cached contact HubSpot no longer has (deleted or merged since): look it up again, once.
                # (A genuine validation error with a cached contact costs one extra search before failing.)
                self.log.info("cached contact %s was refused (%s); searching again", stale.contact, stale.reason)
                return self._deliver(delivery, fresh=True)
        except PermanentError as exc:
            raise self._explained(exc) from exc

    def _deliver(self, delivery: Delivery, *, fresh: bool) -> DeliveryResult:
        stores = self._stores()
        finder = stores.finder
        notes: list[str] = []
        call_fields = self._call_properties(delivery, notes, log=True)
        task_fields = task_properties(delivery, self.mapping, self.config, notes)
        contact, match = self._contact(delivery, finder, stores.contacts, fresh=fresh)
        if contact is None and self.config.match.on_missing == "skip":
            return DeliveryResult(match=match, skipped="no contact matched (on_missing=skip)", notes=notes)

        try:
            targets = self._call_targets(contact, finder)
            call = self._write(stores, "call", delivery.call_session_id, "calls", call_fields, targets)
            records = {"call": call.id}
            if task_fields is not None:
                task_targets = {"contacts": contact.id} if contact is not None else {}
                key = f"{delivery.call_session_id}:{FOLLOW_UP}"
                task = self._write(stores, FOLLOW_UP, key, "tasks", task_fields, task_targets)
                records[FOLLOW_UP] = task.id
        except PermanentError as exc:
            if contact is not None and contact.cached and exc.status in (400, 404):
                raise _StaleContact(contact.id, exc.message) from exc
            raise
        if contact is not None:
            records["contact"] = contact.id
        return DeliveryResult(records=records, match=match, notes=notes)

    def _explained(self, exc: PermanentError) -> PermanentError:
        """Add the fix to HubSpot's message when the call-id property is missing (setup was not run)."""
        name = self.config.call_id_property
        if exc.status != 400 or name not in exc.message:
            return exc
        hint = f"{exc.message} (create the {name} property with `agni-bridge setup --connector {self.name}`)"
        return PermanentError(hint, status=exc.status, code=exc.code, details=exc.details)

    def preview(self, delivery: Delivery) -> list[Preview]:
        return preview_requests(delivery, self.mapping, self.config, self._identities(delivery))

    def close(self) -> None:
        with self._lock:
            stores, self._stores_built = self._stores_built, None
            if stores is not None:
                stores.close()
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- properties -----------------------------------------------------------------------
    def _call_properties(self, delivery: Delivery, notes: list[str], *, log: bool = False) -> dict[str, str]:
        properties, warning = call_properties(delivery, self.config, notes)
        if warning and log:
            self.log.warning("%s (call %s)", warning, delivery.call_session_id)
        return properties

    # -- the contact ----------------------------------------------------------------------
    def _identities(self, delivery: Delivery) -> list[Identity]:
        return identities_of(delivery.call, list(self.config.match.by), self.config.match.default_region)

    def _contact(
        self, delivery: Delivery, finder: ContactFinder, contacts: Ledger, *, fresh: bool
    ) -> tuple[ContactMatch | None, str]:
        identities = self._identities(delivery)
        found = finder.find(identities, fresh=fresh) if identities else None
        if found is not None:
            return found, f"contact {found.id} by {found.by}"
        on_missing = self.config.match.on_missing
        if on_missing != "create_contact":
            return None, f"none (on_missing={on_missing})"
        if not identities:
            return None, "none (no email or phone to create a contact from)"
        created = self._create_contact(delivery, identities, finder, contacts)
        return created, f"contact {created.id} created (on_missing=create_contact)"

    def _create_contact(
        self, delivery: Delivery, identities: list[Identity], finder: ContactFinder, contacts: Ledger
    ) -> ContactMatch:
        properties = contact_properties(delivery, identities, self.mapping, self.config)

        def create(touch: Any) -> str:
            try:
                return self.client.create("contacts", properties, [], on_send=touch)
            except PermanentError as exc:
                existing = existing_id_from_conflict(exc)  # the email is taken: that contact is the one
                if existing is None:
                    raise
                return existing

        def find() -> str | None:
            match = finder.find(identities, fresh=True)
            return match.id if match is not None else None

        # Keyed by the person, not the call: two calls from one new number must not create two contacts.
        key = f"{identities[0].by}:{identities[0].value}"
        outcome = write_once(
            contacts, "contact", key, create=create, find=find, update=None, links=frozenset(),
            stale_after=self._stale_after, certainly_not_written=certainly_not_written,
        )  # fmt: skip
        created = ContactMatch(outcome.id, "created")
        finder.remember(identities, created)
        return created

    def _call_targets(self, contact: ContactMatch | None, finder: ContactFinder) -> dict[str, str]:
        if contact is None:
            return {}
        targets = {"contacts": contact.id}
        if self.config.associate.company and contact.company_id:
            targets["companies"] = contact.company_id
        if self.config.associate.deal:
            deal = finder.open_deal(contact.id, list(self.config.associate.closed_deal_stages))
            if deal is not None:
                targets["deals"] = deal
        return targets

    # -- writing --------------------------------------------------------------------------
    def _write(
        self,
        stores: Stores,
        kind: str,
        key: str,
        object_type: str,
        properties: dict[str, str],
        targets: dict[str, str],
    ) -> Outcome:
        ledger, writer = stores.ledger, stores.writer
        types = CALL_ASSOCIATION_TYPES if object_type == "calls" else TASK_ASSOCIATION_TYPES
        links = frozenset(f"{to_type}:{to_id}" for to_type, to_id in targets.items())
        body = create_body(properties, targets, types)
        # Updating a task must not reopen one the rep has completed since.
        update_properties = {k: v for k, v in properties.items() if k != "hs_task_status"}

        def create(touch: Any) -> str:
            if writer is not None:  # the batch stamps and records every marker of its request itself
                return writer.create(object_type, NewObject(kind, key, body["properties"], body["associations"], links))
            return self.client.create(object_type, body["properties"], body["associations"], on_send=touch)

        def update(object_id: str) -> None:
            if writer is not None:
                writer.update(object_type, object_id, update_properties)
            else:
                self.client.update(object_type, object_id, update_properties)

        outcome = write_once(
            ledger,
            kind,
            key,
            create=create,
            find=lambda: self._find_by_call_id(object_type, key),
            update=update,
            links=links,
            stale_after=self._stale_after,
            certainly_not_written=certainly_not_written,
            create_records=writer is not None,
        )
        missing = links - outcome.links
        for link in sorted(missing):  # e.g. a replay after the contact was created or changed
            to_type, to_id = link.split(":", 1)
            self.client.associate(object_type, outcome.id, to_type, to_id)
        if missing:
            ledger.add_links(kind, key, outcome.links, missing)
        return outcome

    def _find_by_call_id(self, object_type: str, key: str) -> str | None:
        name = self.config.call_id_property
        results = self.client.search(
            object_type, [[{"propertyName": name, "operator": "EQ", "value": key}]], [name], limit=1
        )
        return str(results[0]["id"]) if results else None


class _StaleContact(Exception):
    """HubSpot refused a write that named a contact id taken from the lookup cache."""

    def __init__(self, contact: str, reason: str) -> None:
        super().__init__(reason)
        self.contact = contact
        self.reason = reason
