"""The Litestar application: wiring only.

`create_app(settings)` builds everything the API needs inside the lifespan
(Redis clients, the ingestor, the router, metrics), so importing this module
creates nothing. The logic lives in :mod:`bridge.webhook`; this module maps
it, and the error tree, onto HTTP.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import redis
import redis.asyncio as aioredis
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.params import RawBody
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.admin_api import ADMIN_HANDLERS
from bridge.calls import CallLog
from bridge.console import console_router, template_config
from bridge.console.prefix import under_root_path
from bridge.console.state import build_state
from bridge.db.drain import LogDrain
from bridge.db.engine import log_engine
from bridge.db.queries import LogQueries
from bridge.db.writer import LogWriter
from bridge.errors import DatabaseError, UnavailableError
from bridge.ingest import Ingestor
from bridge.keys import Keys
from bridge.metrics import ApiMetrics
from bridge.routing import Router
from bridge.settings import Settings, load_settings
from bridge.webhook import WebhookIntake

__all__ = ["create_app"]

log = logging.getLogger("bridge.app")
_encode = msgspec.json.Encoder().encode
DAY = 86400
LOG_LAG_WARNING_SECONDS = 10.0


def _json(status_code: int, body: object, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(_encode(body), status_code=status_code, media_type=MediaType.JSON, headers=headers)


@post("/webhooks/agni", status_code=200)
async def agni_webhook(request: Request, body: RawBody) -> Response[bytes]:
    state = request.app.state
    intake: WebhookIntake = state.intake
    client = request.client
    outcome = await intake.handle(
        content_type=request.headers.get("content-type", ""),
        headers=request.headers,
        query=request.query_params,
        body=body,
        source_ip=client.host if client else "",
    )
    state.metrics.webhooks.labels(outcome.result).inc()
    return _json(outcome.status_code, outcome.body)


@get("/healthz", sync_to_thread=False)
def healthz() -> Response[bytes]:
    return _json(200, {"status": "ok"})


@get("/readyz", sync_to_thread=True)
def readyz(request: Request) -> Response[bytes]:
    """503 while Redis is unreachable (webhooks cannot be accepted). A lagging call log does not make the API
    unready — webhooks are still accepted and delivered — but the answer says how far behind it is."""
    state = request.app.state
    try:
        state.sync_redis.ping()
        lag = state.log_lag()
    except (redis.RedisError, OSError) as exc:
        return _json(503, {"status": "unavailable", "error": f"Redis: {type(exc).__name__}"})
    log_state = {
        "status": "lagging" if lag.seconds > LOG_LAG_WARNING_SECONDS else "ok",
        "lag_events": lag.events,
        "lag_seconds": round(lag.seconds, 1),
    }
    return _json(200, {"status": "ready", "log": log_state})


@get("/metrics", sync_to_thread=True)
def metrics(request: Request) -> Response[bytes]:
    payload = generate_latest(request.app.state.metrics.registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)


def _unavailable(request: Request, exc: UnavailableError) -> Response[bytes]:
    request.app.state.metrics.webhooks.labels("unavailable").inc()
    return _json(503, {"status": "unavailable", "error": str(exc)}, {"retry-after": "5"})


def _http_error(request: Request, exc: HTTPException) -> Response[bytes]:
    if request.url.path == "/webhooks/agni":
        request.app.state.metrics.webhooks.labels("rejected").inc()
    return _json(exc.status_code, {"status": "error", "error": exc.detail}, exc.headers)


def _database(request: Request, exc: DatabaseError) -> Response[bytes]:
    return _json(503, {"status": "unavailable", "error": str(exc)}, {"retry-after": "5"})


def _unexpected(request: Request, exc: Exception) -> Response[bytes]:
    # Never a 500: an unexpected failure is answered like an outage, so Agni retries and nothing is lost.
    log.exception("unexpected error handling %s", request.url.path)
    return _json(503, {"status": "unavailable", "error": "internal error; retry later"}, {"retry-after": "5"})


def create_app(settings: Settings | None = None, *, redis_url: str | None = None) -> Litestar:
    """Build the API. Without arguments it loads $AGNI_BRIDGE_CONFIG (for `uvicorn --factory`)."""
    if settings is None:
        settings = load_settings(os.environ.get("AGNI_BRIDGE_CONFIG", "config.yaml"))
    url = redis_url or os.environ.get("AGNI_BRIDGE_REDIS_URL") or settings.redis.url
    if not url:
        raise UnavailableError("no Redis URL: set redis.url, or start with `agni-bridge run` (embedded Redis)")
    keys = Keys(settings.redis.prefix)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async_client = aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        sync_client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        router = Router(settings)
        ingestor = Ingestor(
            async_client,
            keys,
            dedupe_ttl_seconds=settings.dedupe_ttl_days * DAY,
            retention_seconds=settings.retention_days * DAY,
        )
        app.state.redis = async_client
        app.state.sync_redis = sync_client
        engine = log_engine(settings)
        region = settings.database.phone_region
        drain = LogDrain(sync_client, keys, LogWriter(engine, region=region))
        app.state.log_lag = drain.lag
        app.state.intake = WebhookIntake(
            ingestor=ingestor, router=router, org_ids=settings.agni.org_ids, token=settings.agni.token
        )
        queries = LogQueries(engine, region=region)
        app.state.metrics = ApiMetrics(sync_client, keys, settings.enabled_connectors(), queries, drain.lag)
        app.state.call_log = CallLog(engine, region=region)
        app.state.admin_token = settings.admin.token.encode()
        app.state.console = build_state(
            settings,
            sync_client=sync_client,
            async_client=async_client,
            engine=engine,
            call_log=app.state.call_log,
            log_lag=drain.lag,
        )
        try:
            yield
        finally:
            await async_client.aclose()
            sync_client.close()
            engine.dispose()

    app = Litestar(
        route_handlers=[agni_webhook, healthz, readyz, metrics, *ADMIN_HANDLERS, console_router()],
        lifespan=[lifespan],
        request_max_body_size=settings.server.max_body_bytes,
        exception_handlers={
            UnavailableError: _unavailable,
            DatabaseError: _database,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        openapi_config=None,
        template_config=template_config(),
        debug=False,
    )
    app.asgi_handler = under_root_path(app.asgi_handler, settings.server.root_path)
    return app
