"""Everything the console and the admin API share in one API process, built once in the app's lifespan.

Nothing here is created at import time; :func:`build_state` is called by :func:`bridge.app.create_app`'s
lifespan with the Redis clients and the log engine it already made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.audit import AuditLog
from bridge.calls import CallLog
from bridge.console.auth import Proxies, SessionKeys, User, users_from_settings
from bridge.console.jobs import Jobs
from bridge.db.queries import LogQueries
from bridge.ingest import Ingestor
from bridge.keys import Keys
from bridge.redaction import Redactor
from bridge.replay import Operations
from bridge.routing import Router
from bridge.settings import Settings
from bridge.webhook import WebhookIntake

__all__ = ["ConsoleState", "build_state"]

DAY = 86400


@dataclass
class ConsoleState:
    settings: Settings
    keys: Keys
    redis: Any
    """Synchronous client (handlers run in worker threads)."""
    aredis: Any
    """Asynchronous client (the auth gate runs on the event loop)."""
    engine: Any
    call_log: CallLog
    queries: LogQueries
    ops: Operations
    audit: AuditLog
    jobs: Jobs
    log_lag: Callable[[], Any]
    users: list[User]
    session_keys: SessionKeys
    proxies: Proxies
    redactor: Redactor | None
    root: str
    """`server.root_path`: every link and cookie path starts with it."""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.users)

    def url(self, path: str) -> str:
        """An absolute path under the bridge's root: url('/console/calls')."""
        return f"{self.root}{path}"


def build_state(
    settings: Settings,
    *,
    sync_client: Any,
    async_client: Any,
    engine: Any,
    call_log: CallLog,
    log_lag: Callable[[], Any],
) -> ConsoleState:
    keys = Keys(settings.redis.prefix)
    region = settings.database.phone_region
    queries = LogQueries(engine, region=region)
    ingestor = Ingestor(
        sync_client,
        keys,
        dedupe_ttl_seconds=settings.dedupe_ttl_days * DAY,
        retention_seconds=settings.retention_days * DAY,
    )
    intake = WebhookIntake(ingestor=ingestor, router=Router(settings), org_ids=settings.agni.org_ids, token="")
    ops = Operations(sync_client, keys, intake, ingestor, settings.enabled_connectors(), queries)
    redactor = Redactor(settings.redaction, source=settings.config_path) if settings.redaction.enabled else None
    audit = AuditLog(engine)
    return ConsoleState(
        settings=settings,
        keys=keys,
        redis=sync_client,
        aredis=async_client,
        engine=engine,
        call_log=call_log,
        queries=queries,
        ops=ops,
        audit=audit,
        jobs=Jobs(sync_client, keys.prefix, ops, queries, audit),
        log_lag=log_lag,
        users=users_from_settings(settings),
        session_keys=SessionKeys(keys.prefix),
        proxies=Proxies(settings.admin.trusted_proxies),
        redactor=redactor,
        root=settings.server.root_path,
    )
