"""The `zendesk` connector: each call becomes a Zendesk Support ticket with a voice comment, exactly once.

Per call it (1) finds the end-user who requests the ticket (:mod:`connectors.zendesk.match`:
email, then the number in the spellings Zendesk holds; cached), or, by `match.on_missing`,
creates one (:mod:`connectors.zendesk.people`), uses `match.fallback_requester_id`, or writes
nothing; (2) creates the ticket (:mod:`connectors.zendesk.tickets`): the mapping's subject,
tags and custom fields, a voice comment that plays the recording, `external_id` = the call id,
the assignee from `owner_map`; (3) when the mapping's `follow_up` condition holds, creates a
follow-up **task ticket** (`type: task`, `due_at`) for the same requester, whose private comment
names the call's ticket. Both are written exactly once by :mod:`connectors.zendesk.writer`
(ledger + Idempotency-Key + the external_id listing).

Why a task ticket and not a private comment on the call's ticket: a comment cannot carry a due
date, would not show up in agents' task views, and comments are append-only and have no key —
a retried comment after a lost answer could only be de-duplicated by reading the ticket's whole
comment list, and every comment counts against Zendesk's 30-updates-per-ticket limit. A task
ticket is created under its own Idempotency-Key and external_id, exactly like the call's ticket.

A lone new call costs one request (the create) plus the requester lookup, which the shared
cache usually answers. When Zendesk refuses a requester id that came from the cache (deleted or
merged since), the requester is looked up afresh and the delivery runs once more.

Redis keys, under ``{prefix}:zendesk:``:
    {name}:ledger:{ticket|follow_up}:{key}        ticket ids + intent markers (400 days)
    {name}:ledger:sent:{kind}:{key}                when the Idempotency-Key was first sent (its window)
    {name}:lookup:user:{email|phone}:{hash}        users search answers (lookup_cache_seconds)
    budget:{account}:{minute|updates|paused}       the account's shared budgets and its 429 pause
"""

from __future__ import annotations

import threading
from typing import Any

from bridge.connector import Connector, Delivery, DeliveryResult, Preview, Services
from bridge.errors import PermanentError
from bridge.mapping import CompiledMapping
from bridge.tls import trust_problems
from connectors.zendesk.account import verify_account
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import ZendeskConfig, config_problems
from connectors.zendesk.errors import stale_user
from connectors.zendesk.match import Identity, Lookup, Requester, RequesterFinder, identities_of
from connectors.zendesk.people import create_end_user, new_user
from connectors.zendesk.tickets import FOLLOW_UP, call_ticket, follow_up_ticket, update_of
from connectors.zendesk.wiring import Parts, build_client, build_parts

__all__ = ["ZendeskConnector"]

TICKET = "ticket"


class ZendeskConnector(Connector):
    """Delivers calls to Zendesk Support (see the module docstring); one instance serves every worker thread."""

    Config = ZendeskConfig
    default_mapping = "zendesk_ticket.yaml"

    def __init__(self, name: str, config: ZendeskConfig, services: Services, mapping: CompiledMapping | None) -> None:
        super().__init__(name, config, services, mapping)
        self.config: ZendeskConfig = config
        self._keys = f"{services.prefix}:zendesk:{name}"
        self._stale_after = config.reconcile_settle_seconds + services.delivery.timeout_seconds
        self._client: ZendeskClient | None = None
        self._parts: Parts | None = None
        self._lock = threading.RLock()

    # -- wiring (lazy: nothing is built by check, preview or import) -----------------------
    @property
    def client(self) -> ZendeskClient:
        with self._lock:
            if self._client is None:
                self._client = build_client(self.config, self.services)
            return self._client

    def _built(self) -> Parts:
        store = self.services.redis
        if store is None:
            raise PermanentError("the Zendesk connector needs Redis (its exactly-once ledger lives there)")
        with self._lock:
            if self._parts is None:
                self._parts = build_parts(self.config, self.client, store, self._keys, self._stale_after)
            return self._parts

    # -- the plug-in interface ------------------------------------------------------------
    def check(self) -> list[str]:
        where = f"connectors.{self.name}"
        trust = trust_problems(where, self.config.ca_bundle, resolve_path=self.services.resolve_path)
        return config_problems(self.name, self.config, self.mapping) + trust

    def setup(self) -> list[str]:
        return verify_account(self.client, self.config)

    def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Write the call's ticket (and its follow-up task) exactly once; see the module docstring."""
        try:
            return self._deliver(delivery, fresh=False)
        except _StaleRequester as stale:
            self.log.info("cached requester %s was refused (%s); searching again", stale.user, stale.reason)
            return self._deliver(delivery, fresh=True)

    def _deliver(self, delivery: Delivery, *, fresh: bool) -> DeliveryResult:
        parts = self._built()
        notes: list[str] = []
        identities = self._identities(delivery)
        requester, match = self._requester(delivery, identities, parts.finder, notes, fresh=fresh)
        if requester is None:
            return DeliveryResult(match=match, skipped=match, notes=notes)
        owner = self._owner(delivery)
        call_id = delivery.call_session_id
        try:
            ticket = call_ticket(delivery.record, external_id=call_id, requester_id=requester.id, owner=owner,
                                 notes=notes)  # fmt: skip
            written = parts.writer.write(TICKET, call_id, ticket, update_of(ticket), notes)
            records = {TICKET: written.id, "requester": str(requester.id)}
            rendered = self.mapping.render_follow_up(delivery.context) if self.mapping is not None else None
            if rendered is not None:
                key = f"{call_id}:{FOLLOW_UP}"
                task = follow_up_ticket(rendered, external_id=key, requester_id=requester.id, owner=owner,
                                        call_ticket_id=written.id, notes=notes)  # fmt: skip
                records[FOLLOW_UP] = parts.writer.write(FOLLOW_UP, key, task, update_of(task, follow_up=True), notes).id
        except PermanentError as exc:
            if requester.cached and stale_user(exc):
                raise _StaleRequester(requester.id, exc.message) from exc
            raise
        return DeliveryResult(records=records, match=match, notes=notes)

    def record_url(self, kind: str, record_id: str) -> str | None:
        """The agent-interface link of a ticket or requester this connector wrote."""
        if not str(record_id).isdigit():
            return None
        base = self.config.base_url.rstrip("/")
        if kind in (TICKET, FOLLOW_UP):
            return f"{base}/agent/tickets/{record_id}"
        return f"{base}/agent/users/{record_id}" if kind == "requester" else None

    def preview(self, delivery: Delivery) -> list[Preview]:
        from connectors.zendesk.preview import preview_requests  # only `agni-bridge preview` needs it

        return preview_requests(delivery, self.mapping, self.config, self._identities(delivery), self._owner(delivery))

    def close(self) -> None:
        with self._lock:
            self._parts = None
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- the requester and the owner ------------------------------------------------------
    def _identities(self, delivery: Delivery) -> list[Identity]:
        match = self.config.match
        return identities_of(delivery.call, list(match.by), match.default_region, list(match.phone_spellings))

    def _requester(
        self, delivery: Delivery, identities: list[Identity], finder: RequesterFinder, notes: list[str], *, fresh: bool
    ) -> tuple[Requester | None, str]:
        """The end-user who requests the ticket, and how it was decided (the call's `match` line)."""
        lookup = finder.find(identities, fresh=fresh) if identities else Lookup(None)
        if lookup.requester is not None:
            return lookup.requester, f"end-user {lookup.requester.id} by {lookup.requester.by}"
        on_missing = self.config.match.on_missing
        held = lookup.describe()
        if on_missing == "skip":
            return None, f"no end-user matched (on_missing=skip){held}"
        usable = [i for i in identities if i not in lookup.agents]
        if on_missing == "create" and usable:
            rendered = self.mapping.render_new_contact(delivery.context) if self.mapping is not None else {}
            user_id = create_end_user(self.client, new_user(delivery.call, usable, rendered), notes)
            finder.remember(usable, user_id)
            return Requester(user_id, "created"), f"end-user {user_id} created (on_missing=create){held}"
        fallback = self.config.fallback_requester
        if fallback is not None:
            return Requester(fallback, "fallback"), f"fallback requester {fallback} (on_missing={on_missing}){held}"
        return None, f"no end-user matched and no email or phone to create one from{held}"

    def _owner(self, delivery: Delivery) -> int | None:
        owners = self.config.owners
        for key in ("agent_name", "agent_email"):
            agent = str(delivery.call.get(key) or "").strip().lower()
            if agent and agent in owners:
                return owners[agent]
        return self.config.default_owner


class _StaleRequester(Exception):
    """Zendesk refused a write naming a requester id taken from the lookup cache."""

    def __init__(self, user: Any, reason: str) -> None:
        super().__init__(reason)
        self.user = user
        self.reason = reason
