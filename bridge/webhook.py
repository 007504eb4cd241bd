"""POST /webhooks/agni: check, decode, route, and accept one webhook.

The order is deliberate: cheap refusals first (content type, token), then one
decode of the raw body, then the org check, then the single Redis operation
of :mod:`bridge.ingest`. Nothing here maps, calls a CRM, or logs the payload:
that is the worker's job, and the sender is waiting.

Answers (Agni retries anything but 200):
    200 accepted | duplicate | ignored     400 undecodable (with the JSON path)
    401 token missing/wrong                403 org_id not allowed
    413 too large (Litestar)               415 not JSON
    503 Redis unavailable: nothing was recorded, so the retry will be processed
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from redis.exceptions import RedisError

from bridge.errors import EventDecodeError, UnavailableError
from bridge.events import CALL_COMPLETED, decode_call, decode_envelope
from bridge.ingest import Ingestor
from bridge.mapping import render_context
from bridge.routing import RouteDecision, Router

__all__ = ["Prepared", "WebhookIntake", "WebhookOutcome", "bearer_token"]

log = logging.getLogger("bridge.webhook")


@dataclass(frozen=True)
class WebhookOutcome:
    status_code: int
    body: dict[str, Any]

    @property
    def result(self) -> str:
        """The metric label: accepted, duplicate, ignored, invalid, unauthorized, forbidden, unsupported…"""
        return str(self.body.get("status", "error"))


@dataclass(frozen=True)
class Prepared:
    """A valid call.completed webhook, routed, ready to be ingested."""

    call_session_id: str
    org_id: str
    decision: RouteDecision

    def log_entry(self, source: str, kind: str = "received") -> dict[str, Any]:
        return {
            "type": kind,
            "org_id": self.org_id,
            "source_ip": source,
            "route": self.decision.rule,
            "connectors": list(self.decision.connectors),
        }


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an `Authorization: Bearer <token>` header, or ""."""
    auth = headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else ""


def _error(status_code: int, result: str, message: str, **extra: Any) -> WebhookOutcome:
    return WebhookOutcome(status_code, {"status": result, "error": message, **extra})


class WebhookIntake:
    def __init__(self, *, ingestor: Ingestor, router: Router, org_ids: list[str], token: str) -> None:
        self.ingestor = ingestor
        self.router = router
        self.org_ids = frozenset(org_ids)
        self._token = token.encode() if token else b""

    def authorized(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        """Constant-time comparison of the Bearer header or ?token= against the configured token."""
        if not self._token:
            return True
        presented = bearer_token(headers) or query.get("token", "")
        return hmac.compare_digest(presented.encode(), self._token)

    def prepare(self, body: bytes) -> Prepared | WebhookOutcome:
        """Decode, check the org and route one body: the part shared by the endpoint and `backfill`.

        Returns what to ingest, or the answer to give when there is nothing to ingest.
        """
        try:
            envelope = decode_envelope(body)
        except EventDecodeError as exc:
            return _error(400, "invalid", exc.message, path=exc.path)
        if envelope.org_id not in self.org_ids:
            return _error(403, "forbidden", f"org_id {envelope.org_id!r} is not accepted by this bridge")
        if envelope.event != CALL_COMPLETED:
            return WebhookOutcome(200, {"status": "ignored", "event": envelope.event})
        try:
            call = decode_call(envelope)
        except EventDecodeError as exc:
            return _error(400, "invalid", exc.message, path=exc.path)
        # Conditions see the call as plain data (`to_builtins` of the validated Struct holds every field
        # they can name); without conditions there is nothing to build.
        context = (
            render_context(call=msgspec.to_builtins(call), event=envelope.event, org_id=envelope.org_id)
            if self.router.needs_call
            else {}
        )
        return Prepared(call.call_session_id, envelope.org_id, self.router.route(context))

    async def handle(
        self, *, content_type: str, headers: Mapping[str, str], query: Mapping[str, str], body: bytes, source_ip: str
    ) -> WebhookOutcome:
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            return _error(415, "unsupported", f"Content-Type must be application/json, got {media or 'none'!r}")
        if not self.authorized(headers, query):
            return _error(401, "unauthorized", "missing or wrong token (Authorization: Bearer <token> or ?token=)")
        prepared = self.prepare(body)
        if isinstance(prepared, WebhookOutcome):
            if prepared.result == "ignored":
                log.info("ignored webhook event %r", prepared.body.get("event"))
            return prepared
        try:
            result = await self.ingestor.accept(
                prepared.call_session_id, body, prepared.decision.connectors, prepared.log_entry(source_ip)
            )
        except (RedisError, OSError) as exc:
            raise UnavailableError(f"Redis unavailable: {type(exc).__name__}") from exc
        status = "accepted" if result.accepted else "duplicate"
        return WebhookOutcome(200, {"status": status, "call_session_id": prepared.call_session_id})
