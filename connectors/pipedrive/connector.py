"""The `pipedrive` connector: each call becomes a call log (or a done call activity) on the right person.

Per call it (1) finds the person (:mod:`connectors.pipedrive.match`: searches only on a cache miss), and the
owner (:mod:`connectors.pipedrive.owners`), the person's organization and newest open deal when `associate`
asks; (2) writes the call — ``POST /v1/callLogs`` (`record: call_log`, the default) or a done `call` activity
``POST /api/v2/activities`` (`record: activity`) — with every field from the mapping, exactly once; (3) when
the mapping's `follow_up` condition holds (next steps left, goals not met), writes an open activity with a due
date the same way; (4) with `recording: attach`, uploads the audio file to the call log.

Exactly once, without an idempotency key or upsert in Pipedrive: the core ledger (:func:`bridge.ledger.write_once`)
sets an intent marker before each create and records the id after; a retry, redelivery or replay finds the id
and does not create again. When an earlier attempt may have created the record without recording it (a crash
or lost answer), the reconciliation lookup (:mod:`connectors.pipedrive.reconcile`) looks for the
``agni:<call_session_id>`` marker every note ends with; until `search_settle_seconds` plus the request timeout
have passed since that attempt, a retry waits rather than risk a duplicate. On a replay an activity is updated
(a follow-up is never reopened: `done` is not re-sent); a call log cannot be edited through Pipedrive's API, so
a replay checks it still exists (and logs it anew if it was deleted) and keeps it as first written.

With no matching person, `match.on_missing` decides: `unlinked` (default) logs the call without one,
`create_person` creates one (once per person, through the ledger), `skip` writes nothing. When Pipedrive refuses
a write naming a person id that came from the lookup cache, the person is looked up afresh and the delivery
runs once more.

Redis keys, under ``{prefix}:pipedrive:``:
    {name}:ledger:{call|follow_up|person}:{key}    Pipedrive ids + intent markers (400 days; persons 1 h+)
    {name}:lookup:{person:email|person:phone|deal|user}:{hash}   lookups (lookup_cache_seconds; values hashed)
    budget:{account}:{2s|search|paused}            shared burst budgets and the daily pause
where {account} is a short hash of API host and credential (the credential itself is never stored).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from bridge.connector import Connector, Delivery, DeliveryResult, Preview, Services
from bridge.errors import PermanentError
from bridge.ledger import Ledger, Outcome, write_once
from bridge.mapping import CompiledMapping
from bridge.quota import QuotaRecorder
from bridge.tls import resolve_trust, trust_problems
from connectors.pipedrive.api import PipedriveApi
from connectors.pipedrive.config import PipedriveConfig, config_problems, mapping_problems
from connectors.pipedrive.errors import LINK_MISSING, certainly_not_written, gone
from connectors.pipedrive.match import Identity, PersonMatch, identities_of
from connectors.pipedrive.preview import preview_requests
from connectors.pipedrive.reconcile import find_activity, find_call_log
from connectors.pipedrive.recording import RecordingUploader
from connectors.pipedrive.records import FOLLOW_UP, Links, activity_body, call_log_body, person_body
from connectors.pipedrive.setup import check_account
from connectors.pipedrive.wiring import Stores, account_key, build_api, build_stores

__all__ = ["PipedriveConnector"]


class PipedriveConnector(Connector):
    """Delivers calls to Pipedrive (see the module docstring); one instance serves every worker thread."""

    Config = PipedriveConfig
    default_mapping = "pipedrive_call.yaml"

    def __init__(self, name: str, config: PipedriveConfig, services: Services, mapping: CompiledMapping | None) -> None:
        super().__init__(name, config, services, mapping)
        self.config: PipedriveConfig = config
        self._keys = f"{services.prefix}:pipedrive:{name}"
        self._budget = f"{services.prefix}:pipedrive:budget:{account_key(config)}"
        self._stale_after = config.search_settle_seconds + services.delivery.timeout_seconds
        self._api: PipedriveApi | None = None
        self._stores_built: Stores | None = None
        self._uploader: RecordingUploader | None = None
        self._lock = threading.RLock()

    # -- wiring (lazy: nothing is built by check, preview or import) -----------------------
    @property
    def api(self) -> PipedriveApi:
        with self._lock:
            if self._api is None:
                self._api = build_api(self.config, self.services, self._budget, f"bridge.connector.{self.name}")
                if self.services.redis is not None:
                    self._api.client.quota = QuotaRecorder(self.services.redis, self.services.prefix, self.name)
            return self._api

    def _stores(self) -> Stores:
        redis = self.services.redis
        if redis is None:
            raise PermanentError("the Pipedrive connector needs Redis (its exactly-once ledger lives there)")
        with self._lock:
            if self._stores_built is None:
                self._stores_built = build_stores(self.config, self.api, redis, self._keys)
            return self._stores_built

    # -- the plug-in interface ------------------------------------------------------------
    def check(self) -> list[str]:
        where, resolve = f"connectors.{self.name}", self.services.resolve_path
        trust = trust_problems(where, self.config.ca_bundle, resolve_path=resolve)
        return config_problems(self.name, self.config, self.mapping) + trust

    def setup(self) -> list[str]:
        return check_account(self.api, self.config, self.mapping)

    def preview(self, delivery: Delivery) -> list[Preview]:
        return preview_requests(delivery, self.mapping, self.config, self._identities(delivery))

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                self._api.client.close()
                self._api = None
            self._stores_built = self._uploader = None

    def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Write the call (and its follow-up) exactly once; see the module docstring."""
        problems = mapping_problems("mapping", self.config.record, self.mapping) if self.mapping else []
        if problems:
            raise PermanentError(f"connectors.{self.name}.{problems[0]}")
        try:
            return self._deliver(delivery, fresh=False)
        except _StalePerson as stale:
            # A cached person Pipedrive no longer has (deleted or merged since): look them up again, once.
            self.log.info("cached person %s was refused (%s); searching again", stale.person, stale.reason)
            return self._deliver(delivery, fresh=True)

    def record_url(self, kind: str, record_id: str) -> str | None:
        """The record's page in Pipedrive's web app, for the call log's links (a call log opens on its person).
        Only with `base_url` set to the company domain: the shared API host serves no web pages."""
        base = self.config.base_url.rstrip("/")
        if base.endswith("//api.pipedrive.com"):
            return None
        pages = {"activity": "activities", FOLLOW_UP: "activities", "person": "person"}
        return f"{base}/{pages[kind]}/{record_id}" if kind in pages and str(record_id).isdigit() else None

    # -- one delivery ---------------------------------------------------------------------
    def _deliver(self, delivery: Delivery, *, fresh: bool) -> DeliveryResult:
        stores = self._stores()
        notes: list[str] = []
        identities = self._identities(delivery)
        person, match = self._person(delivery, identities, stores, fresh=fresh)
        if person is None and self.config.match.on_missing == "skip":
            return DeliveryResult(match=match, skipped="no person matched (on_missing=skip)")
        owner, owner_how = stores.owners.resolve(delivery.call)
        links = self._links(person, owner, stores)
        kind = "call_log" if self.config.record == "call_log" else "activity"
        try:
            call = self._write_call(delivery, links, stores.ledger, notes)
            records = {kind: call.id}
            follow_up = self._write_follow_up(delivery, links, stores.ledger, notes)
            if follow_up is not None:
                records[FOLLOW_UP] = follow_up.id
        except PermanentError as exc:
            if person is not None and person.cached and exc.status in (400, 404, 410):
                raise _StalePerson(person.id, exc.message) from exc
            explained = self._explained(exc, owner)
            if explained is exc:
                raise
            raise explained from exc
        if person is not None:
            records["person"] = person.id
        if kind == "call_log" and self.config.recording.mode == "attach":
            note = self._uploader_for().attach(delivery.call, delivery.call_session_id, call.id)
            if note:
                notes.append(note)
        return DeliveryResult(records=records, match=f"{match}; owner: {owner_how}", notes=notes)

    def _write_call(self, delivery: Delivery, links: Links, ledger: Ledger, notes: list[str]) -> Outcome:
        key = delivery.call_session_id
        if self.config.record == "call_log":
            body = call_log_body(delivery.record, key, links, notes)
            outcome = self._once(
                ledger, "call", key,
                create=lambda touch: self.api.create_call_log(body, on_send=touch),
                find=lambda: find_call_log(self.api, key, max_pages=self.config.reconcile_max_pages),
                update=self.api.call_log,  # call logs cannot be edited: a replay checks it still exists
            )  # fmt: skip
            if outcome.how == "updated":
                notes.append(f"call log {outcome.id} kept as first written (Pipedrive's API cannot edit call logs)")
            return outcome
        body = activity_body(delivery.record, key, links, notes, done=True)
        return self._once(
            ledger, "call", key,
            create=lambda touch: self.api.create_activity(body, on_send=touch),
            find=self._activity_finder(ledger, "call", key, links),
            update=lambda activity_id: self._update_activity(activity_id, body),
        )  # fmt: skip

    def _write_follow_up(self, delivery: Delivery, links: Links, ledger: Ledger, notes: list[str]) -> Outcome | None:
        rendered = self.mapping.render_follow_up(delivery.context) if self.mapping is not None else None
        if rendered is None:
            return None
        key = f"{delivery.call_session_id}:{FOLLOW_UP}"
        body = activity_body(rendered, key, links, notes, done=False)
        # A replay must not reopen a follow-up the rep has completed since.
        changes = {field: value for field, value in body.items() if field != "done"}
        return self._once(
            ledger, FOLLOW_UP, key,
            create=lambda touch: self.api.create_activity(body, on_send=touch),
            find=self._activity_finder(ledger, FOLLOW_UP, key, links),
            update=lambda activity_id: self._update_activity(activity_id, changes),
        )  # fmt: skip

    def _update_activity(self, activity_id: str, body: dict[str, Any]) -> None:
        """PATCH it; a 404 means "deleted" only when the activity itself is gone, not a person it names."""
        try:
            self.api.update_activity(activity_id, body)
        except PermanentError as exc:
            if exc.status not in (404, 410) or not self.api.activity_exists(activity_id):
                raise
            raise PermanentError(exc.message, status=exc.status, code=LINK_MISSING, details=exc.details) from exc

    def _once(
        self,
        ledger: Ledger,
        kind: str,
        key: str,
        *,
        create: Callable[[Callable[[], None]], str],
        find: Callable[[], str | None],
        update: Callable[[str], Any] | None,
    ) -> Outcome:
        return write_once(
            ledger, kind, key, create=create, find=find, update=update, links=frozenset(),
            stale_after=self._stale_after, certainly_not_written=certainly_not_written, deleted=gone,
        )  # fmt: skip

    def _activity_finder(self, ledger: Ledger, kind: str, key: str, links: Links) -> Callable[[], str | None]:
        def since() -> float | None:  # when the earlier attempt went out (its intent marker)
            raw = ledger.client.hget(ledger.key(kind, key), "intent")
            try:
                return float(raw) if raw else None
            except ValueError:
                return None

        return lambda: find_activity(self.api, key, person_id=links.person_id, owner_id=links.owner_id, since=since)

    # -- the person, the owner, the links -------------------------------------------------
    def _identities(self, delivery: Delivery) -> list[Identity]:
        return identities_of(delivery.call, list(self.config.match.by), self.config.match.default_region)

    def _person(
        self, delivery: Delivery, identities: list[Identity], stores: Stores, *, fresh: bool
    ) -> tuple[PersonMatch | None, str]:
        found = stores.finder.find(identities, fresh=fresh) if identities else None
        if found is not None:
            return found, f"person {found.id} by {found.by}"
        on_missing = self.config.match.on_missing
        if on_missing != "create_person":
            return None, f"none (on_missing={on_missing})"
        if not identities:
            return None, "none (no email or phone to create a person from)"
        created = self._create_person(delivery, identities, stores)
        return created, f"person {created.id} created (on_missing=create_person)"

    def _create_person(self, delivery: Delivery, identities: list[Identity], stores: Stores) -> PersonMatch:
        email = next((i.value for i in identities if i.by == "email"), None)
        phone = next((i.value for i in identities if i.by == "phone"), None)
        extra = self.mapping.render_new_contact(delivery.context) if self.mapping is not None else {}
        body = person_body(delivery.call.get("caller_name"), email, phone, extra, self.config.match.person_fields)

        def find() -> str | None:
            match = stores.finder.find(identities, fresh=True)
            return match.id if match is not None else None

        # Keyed by the person, not the call: two calls from one new number must not create two persons.
        outcome = self._once(
            stores.persons, "person", f"{identities[0].by}:{identities[0].value}",
            create=lambda touch: self.api.create_person(body, on_send=touch), find=find, update=None,
        )  # fmt: skip
        org = body.get("org_id")
        created = PersonMatch(outcome.id, "created", str(org) if org else None)
        stores.finder.remember(identities, created)
        return created

    def _links(self, person: PersonMatch | None, owner: str | None, stores: Stores) -> Links:
        if person is None:
            return Links(owner_id=owner)
        associate = self.config.associate
        org = person.org_id if associate.organization else None
        deal = stores.finder.open_deal(person.id) if associate.deal else None
        return Links(person_id=person.id, org_id=org, deal_id=deal, owner_id=owner)

    def _uploader_for(self) -> RecordingUploader:
        with self._lock:
            if self._uploader is None:
                trust = resolve_trust(self.config.ca_bundle, resolve_path=self.services.resolve_path)
                timeout = self.services.delivery.timeout_seconds
                self._uploader = RecordingUploader(self.api, self.config.recording, trust=trust, timeout=timeout,
                                                   log=self.log)  # fmt: skip
            return self._uploader

    def _explained(self, exc: PermanentError, owner: str | None) -> PermanentError:
        """Add the fix to Pipedrive's message where the cause is known."""
        if exc.status == 403 and owner is not None and self.config.record == "call_log":
            hint = (f"{exc.message} (logging calls for another user needs a token whose user has account settings "
                    f"access; see `agni-bridge setup --connector {self.name}`)")  # fmt: skip
            return PermanentError(hint, status=exc.status, code=exc.code, details=exc.details)
        return exc


class _StalePerson(Exception):
    """Pipedrive refused a write that named a person id taken from the lookup cache."""

    def __init__(self, person: str, reason: str) -> None:
        super().__init__(reason)
        self.person = person
        self.reason = reason
