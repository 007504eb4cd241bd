"""The `dynamics` connector: each call becomes one completed phone call in Dataverse, exactly once.

One delivery:

1. find the caller (:mod:`connectors.dynamics.match`: email, then phone, in contacts
   then leads, cached in Redis); when nobody matches, ``match.on_missing`` decides:
   a phone call regarding nobody, a new contact or lead (created once), or nothing;
2. build the call's writes (:mod:`connectors.dynamics.records`): the phone call
   with its Regarding, owner and activity parties, a note with the transcript when
   the description cannot hold it, the follow-up task, and the close;
3. write them exactly once (:mod:`connectors.dynamics.writer`): create-only
   requests under ids derived from call_session_id, then the close, batched as one
   change set per call.

When Dataverse refuses a write because a person taken from the lookup cache no
longer exists (deleted or merged since), the caller is looked up afresh and the
delivery runs once more.

The instance is shared by all worker threads of a process; its I/O parts (HTTP
client, token cache, budgets, batchers) are built on the first delivery (or
setup), never at import, in `check` or in `preview`.

Redis keys, under ``{prefix}:dynamics:``:
    {name}:lookup:{email|phone}:{hash}          who a caller is (lookup_cache_seconds; the value hashed)
    budget:{account}:{5min|inflight|paused|daily:<date>}   the application user's shared budgets
where {account} hashes instance URL, tenant and client id, so two connectors on one
application user share one budget (no credential is stored).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from bridge.connector import Connector, Delivery, DeliveryResult, Preview, Services
from bridge.errors import PermanentError
from bridge.lookup_cache import LookupCache
from bridge.mapping import CompiledMapping
from connectors.dynamics.client import DataverseClient
from connectors.dynamics.config import DynamicsConfig, config_problems
from connectors.dynamics.limits import Limits, account_key
from connectors.dynamics.lookup import Lookups
from connectors.dynamics.match import Identity, PersonFinder
from connectors.dynamics.preview import preview_requests
from connectors.dynamics.records import RESERVED, Person, build_plan, owner_for, person_body
from connectors.dynamics.setup import run_setup
from connectors.dynamics.writer import CallWriter

__all__ = ["DynamicsConnector"]

SECTION_PREFIXES = {"fields": ("note", "close"), "new_contact": ("contact", "lead")}
PREFIXED = {"note": {"subject", "notetext"}, "close": {"statuscode"}}


@dataclass
class _Parts:
    """The connector's I/O objects, built together on first use."""

    client: DataverseClient
    lookups: Lookups
    finder: PersonFinder
    writer: CallWriter

    def close(self) -> None:
        self.writer.close()  # lets batches in flight finish before the client goes
        self.lookups.close()
        self.client.close()


class DynamicsConnector(Connector):
    """Completed phone calls (and notes, follow-up tasks, new contacts or leads) in Dataverse."""

    Config = DynamicsConfig
    default_mapping = "dynamics_phonecall.yaml"

    def __init__(self, name: str, config: DynamicsConfig, services: Services, mapping: CompiledMapping | None) -> None:
        super().__init__(name, config, services, mapping)
        self.config: DynamicsConfig = config
        self._parts: _Parts | None = None
        self._lock = threading.Lock()

    # -- wiring -------------------------------------------------------------------------------
    def _build(self) -> _Parts:
        with self._lock:
            if self._parts is None:
                config, services = self.config, self.services
                limits = None
                if services.redis is not None:
                    account = account_key(config.instance_url, config.auth.client_id, config.auth.tenant_id)
                    limits = Limits(
                        services.redis,
                        f"{services.prefix}:dynamics:budget:{account}",
                        requests_per_window=config.requests_per_5_minutes,
                        max_concurrent=config.max_concurrent_requests,
                        lease_seconds=2 * services.delivery.timeout_seconds + 10,
                        max_inline_pause=services.delivery.http_max_wait_seconds,
                        daily_limit=config.daily_request_limit,
                        timezone=config.daily_reset_timezone,
                    )
                client = DataverseClient(config, services, limits=limits)
                timing = {"linger": config.batch_linger_seconds, "max_wait": config.batch_max_wait_seconds}
                name = f"dynamics-{self.name}"
                lookups = Lookups(client, batch_size=config.batch_size, name=name, **timing)
                cache = LookupCache(
                    services.redis,
                    f"{services.prefix}:dynamics:{self.name}:lookup",
                    config.lookup_cache_seconds,
                    destination="Dataverse",
                    log=self.log,
                )
                finder = PersonFinder(client, lookups, cache, config.match)
                writer = CallWriter(client, batch_size=config.batch_size, name=name, log=self.log, **timing)
                self._parts = _Parts(client, lookups, finder, writer)
            return self._parts

    # -- the plug-in interface ----------------------------------------------------------------
    def check(self) -> list[str]:
        return config_problems(self.name, self.config, self.services.resolve_path) + self._mapping_problems()

    def setup(self) -> list[str]:
        writes_notes = self.mapping is not None and any(k.startswith("note.") for k in self.mapping.spec.fields)
        return run_setup(self._build().client, self.config, writes_notes=writes_notes)

    def record_url(self, kind: str, record_id: str) -> str | None:
        """The record's page in the Dynamics 365 app (`main.aspx?pagetype=entityrecord`), for the call log's links."""
        entity = {"phonecall": "phonecall", "note": "annotation", "follow_up": "task", "contact": "contact",
                  "lead": "lead"}.get(kind)  # fmt: skip
        if entity is None:
            return None
        base = self.config.instance_url.rstrip("/")
        return f"{base}/main.aspx?pagetype=entityrecord&etn={entity}&id={record_id}"

    def preview(self, delivery: Delivery) -> list[Preview]:
        return preview_requests(delivery, self.config, self.mapping)

    def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Write the call exactly once; see the module docstring."""
        parts = self._build()
        try:
            return self._deliver(parts, delivery, fresh=False)
        except _StalePerson as stale:
            self.log.info(
                "cached %s %s no longer exists (%s); looking the caller up again",
                stale.person.entity,
                stale.person.id,
                stale.reason,
            )
            return self._deliver(parts, delivery, fresh=True)

    def close(self) -> None:
        with self._lock:
            parts, self._parts = self._parts, None
        if parts is not None:
            parts.close()

    # -- one delivery -------------------------------------------------------------------------
    def _deliver(self, parts: _Parts, delivery: Delivery, *, fresh: bool) -> DeliveryResult:
        notes: list[str] = []
        identity = Identity.of(delivery.call, self.config.match.default_region)
        person = parts.finder.find(identity, fresh=fresh) if identity.key() else None
        on_missing = self.config.match.on_missing
        match = person.describe() if person is not None else f"none (on_missing={on_missing})"
        if person is None and on_missing == "skip":
            return DeliveryResult(match=match, skipped="no contact or lead matched the caller (match.on_missing=skip)")
        if person is None and on_missing in ("create_contact", "create_lead"):
            if identity.key():
                person = self._create_person(parts, on_missing.removeprefix("create_"), delivery, identity)
                match = person.describe()
            else:
                match = "none (no email or phone number to create a person from)"
        plan = build_plan(delivery, person, self.config, self.mapping, notes)
        try:
            how = parts.writer.write(plan)
        except PermanentError as exc:
            if person is not None and person.cached and exc.status in (400, 404) and "not exist" in exc.message.lower():
                raise _StalePerson(person, exc.message) from exc
            raise
        records = plan.records()
        if person is not None:
            records[person.entity] = person.id
        if how == "completed":
            notes.append("already in Dataverse from an earlier attempt; completed what was missing")
        return DeliveryResult(records=records, match=match, notes=notes)

    def _create_person(self, parts: _Parts, entity: str, delivery: Delivery, identity: Identity) -> Person:
        owner = owner_for(delivery.call, self.config)
        body = person_body(entity, delivery, identity.values(), owner, self.mapping)
        return parts.finder.create(entity, body, identity)

    def _mapping_problems(self) -> list[str]:
        """Mapping fields the connector sets itself, or prefixed fields it does not know."""
        if self.mapping is None:
            return []
        spec, where = self.mapping.spec, f"connectors.{self.name}.mapping ({self.mapping.location})"
        sections: list[tuple[str, Any]] = [("fields", spec.fields), ("new_contact", spec.new_contact)]
        if spec.follow_up is not None:
            sections.append(("follow_up.fields", spec.follow_up.fields))
        problems = []
        for section, fields in sections:
            for key in fields:
                prefix, dot, name = key.partition(".")
                if key.lower() in RESERVED:
                    problems.append(f"{where}: {section}.{key}: set by the connector; remove it")
                elif dot and prefix not in SECTION_PREFIXES.get(section, ()):
                    problems.append(f"{where}: {section}.{key}: no `{prefix}.` fields in this section")
                elif dot and prefix in PREFIXED and name not in PREFIXED[prefix]:
                    known = ", ".join(f"{prefix}.{n}" for n in sorted(PREFIXED[prefix]))
                    problems.append(f"{where}: {section}.{key}: unknown; {prefix}.* fields are {known}")
        return problems


class _StalePerson(Exception):
    """Dataverse refused a write naming a person taken from the lookup cache."""

    def __init__(self, person: Person, reason: str) -> None:
        super().__init__(reason)
        self.person = person
        self.reason = reason
