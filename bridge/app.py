"""The Litestar application: wiring only.

`create_app(settings)` builds everything the API needs inside the lifespan
(Redis clients, the ingestor, the router, metrics), so importing this module
creates nothing. The logic lives in :mod:`bridge.webhook`; this module maps
it, and the error tree, onto HTTP.
"""

from __future__ import annotations

import hmac
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

from bridge.calls import STATUSES, CallLog, parse_since
from bridge.errors import UnavailableError
from bridge.ingest import Ingestor
from bridge.keys import Keys
from bridge.metrics import ApiMetrics
from bridge.routing import Router
from bridge.settings import Settings, load_settings
from bridge.webhook import WebhookIntake, bearer_token

__all__ = ["create_app"]

log = logging.getLogger("bridge.app")
_encode = msgspec.json.Encoder().encode
DAY = 86400


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


@get("/readyz")
async def readyz(request: Request) -> Response[bytes]:
    try:
        await request.app.state.redis.ping()
    except (redis.RedisError, OSError) as exc:
        return _json(503, {"status": "unavailable", "error": f"Redis: {type(exc).__name__}"})
    return _json(200, {"status": "ready"})


@get("/metrics", sync_to_thread=True)
def metrics(request: Request) -> Response[bytes]:
    payload = generate_latest(request.app.state.metrics.registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)


def _admin_guard(request: Request) -> Response[bytes] | None:
    """The admin API is off without `admin.token` (404), and needs `Authorization: Bearer <token>` (401)."""
    token: bytes = request.app.state.admin_token
    if not token:
        return _json(404, {"status": "error", "error": "the admin API is disabled (set admin.token)"})
    if not hmac.compare_digest(bearer_token(request.headers).encode(), token):
        return _json(401, {"status": "unauthorized", "error": "missing or wrong admin token"})
    return None


@get("/admin/calls/{call_id:str}", sync_to_thread=True)
def admin_call(request: Request) -> Response[bytes]:
    refused = _admin_guard(request)
    if refused is not None:
        return refused
    call_id = request.path_params["call_id"]
    report = request.app.state.call_log.report(call_id)
    if report is None:
        return _json(404, {"status": "error", "error": f"no record of call {call_id}"})
    return _json(200, report.to_dict())


@get("/admin/calls", sync_to_thread=True)
def admin_calls(request: Request) -> Response[bytes]:
    """?status=&connector=&since=2h&limit=100"""
    refused = _admin_guard(request)
    if refused is not None:
        return refused
    query = request.query_params
    status, since = query.get("status"), query.get("since")
    try:
        window = parse_since(since) if since else None
        limit = max(1, min(int(query.get("limit", 100)), 1000))
    except ValueError as exc:
        return _json(400, {"status": "invalid", "error": str(exc)})
    if status is not None and status not in STATUSES:
        return _json(400, {"status": "invalid", "error": f"status must be one of {', '.join(STATUSES)}"})
    reports = request.app.state.call_log.list(
        status=status, connector=query.get("connector"), since_seconds=window, limit=limit
    )
    return _json(200, {"calls": [r.to_dict(history=False) for r in reports]})


def _unavailable(request: Request, exc: UnavailableError) -> Response[bytes]:
    request.app.state.metrics.webhooks.labels("unavailable").inc()
    return _json(503, {"status": "unavailable", "error": str(exc)}, {"retry-after": "5"})


def _http_error(request: Request, exc: HTTPException) -> Response[bytes]:
    if request.url.path == "/webhooks/agni":
        request.app.state.metrics.webhooks.labels("rejected").inc()
    return _json(exc.status_code, {"status": "error", "error": exc.detail}, exc.headers)


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
        app.state.intake = WebhookIntake(
            ingestor=ingestor, router=router, org_ids=settings.agni.org_ids, token=settings.agni.token
        )
        app.state.metrics = ApiMetrics(sync_client, keys, settings.enabled_connectors())
        app.state.call_log = CallLog(sync_client, keys)
        app.state.admin_token = settings.admin.token.encode()
        try:
            yield
        finally:
            await async_client.aclose()
            sync_client.close()

    return Litestar(
        route_handlers=[agni_webhook, healthz, readyz, metrics, admin_call, admin_calls],
        lifespan=[lifespan],
        request_max_body_size=settings.server.max_body_bytes,
        exception_handlers={
            UnavailableError: _unavailable,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        openapi_config=None,
        debug=False,
    )
