"""The `webhook_forward` connector: POSTs each call to another URL, signed per Standard Webhooks.

By default the body is Agni's original webhook, byte for byte (unknown fields
included); with a `mapping`, the mapped record instead. With a `secret`
(`whsec_…`), each request carries `webhook-id` (stable across retries of the
same call, so the receiver can dedupe), `webhook-timestamp` (this attempt)
and `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`, made
with the reference `standardwebhooks` library.

Answers: 2xx → delivered. 408, 429, 5xx, timeouts, resets → retry (honouring
Retry-After). 3xx (redirects are not followed: the URL must be the final one),
410 Gone and other 4xx → permanent, dead-lettered with the receiver's answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import msgspec
from standardwebhooks import Webhook

from bridge import __version__
from bridge.connector import Connector, ConnectorConfig, Delivery, DeliveryResult, Preview, Services
from bridge.http import error_for_status, retrying, translate_transport_errors
from bridge.tls import Trust, resolve_trust, trust_problems

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


class ForwardConfig(ConnectorConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/]+")]
    secret: str = ""
    """`whsec_<base64>`: sign requests per Standard Webhooks. Empty: unsigned."""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Extra static headers (e.g. an API key header for the receiver; use ${ENV} for its value)."""
    timeout_seconds: float | None = None
    """Per request; default: delivery.timeout_seconds."""
    ca_bundle: str = ""
    """PEM bundle (or hashed-certificate directory) of the CAs to trust for an https `url` (a private CA, a
    TLS-inspecting proxy). Empty: the rule every connector follows (bridge/tls.py) — SSL_CERT_FILE (or
    SSL_CERT_DIR), else REQUESTS_CA_BUNDLE, else certifi's public roots. Proxy environment variables keep working."""


def message_id(call_session_id: str) -> str:
    """A webhook-id that is stable for a call and free of '.', which the signature format reserves."""
    if _SAFE_ID.match(call_session_id):
        return f"msg_{call_session_id}"
    return "msg_" + hashlib.sha256(call_session_id.encode()).hexdigest()[:32]


def _check_secret(secret: str) -> str | None:
    """None when the secret is usable, else why not (never echoing the secret)."""
    if not secret:
        return None
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return "secret must be `whsec_` followed by base64 (Standard Webhooks format)"
    if not 24 <= len(key) <= 64:
        return f"secret must decode to 24-64 bytes, got {len(key)}"
    return None


class WebhookForwardConnector(Connector):
    Config = ForwardConfig
    default_mapping = None  # forward the original payload unless a mapping is configured

    def __init__(self, name: str, config: ForwardConfig, services: Services, mapping: Any) -> None:
        super().__init__(name, config, services, mapping)
        problem = _check_secret(config.secret)
        self._signer = Webhook(config.secret) if config.secret and problem is None else None
        self._client: httpx.Client | None = None
        self._trust: Trust | None = None

    def check(self) -> list[str]:
        where = f"connectors.{self.name}"
        problem = _check_secret(self.config.secret)
        problems = [f"{where}.secret: {problem}"] if problem else []
        return problems + trust_problems(where, self.config.ca_bundle, resolve_path=self.services.resolve_path)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            timeout = self.config.timeout_seconds or self.services.delivery.timeout_seconds
            self._trust = resolve_trust(self.config.ca_bundle, resolve_path=self.services.resolve_path)
            self._client = httpx.Client(
                transport=self.services.http_transport,
                verify=self._trust.ssl_context(),  # trust_env stays on: proxy variables keep working
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                follow_redirects=False,
                headers={"user-agent": f"agni-bridge/{__version__}"},
            )
        return self._client

    def _body(self, delivery: Delivery) -> bytes:
        if delivery.record is not None:
            return msgspec.json.encode(delivery.record)
        return delivery.raw_body

    def _headers(self, delivery: Delivery, body: bytes, now: datetime) -> dict[str, str]:
        headers = {"content-type": "application/json", **self.config.headers}
        if self._signer is not None:
            msg_id = message_id(delivery.call_session_id)
            headers["webhook-id"] = msg_id
            headers["webhook-timestamp"] = str(int(now.timestamp()))
            # standardwebhooks signs naive/UTC datetimes correctly only (it replaces tzinfo): pass UTC.
            headers["webhook-signature"] = self._signer.sign(msg_id, now, body.decode("utf-8"))
        return headers

    def preview(self, delivery: Delivery) -> list[Preview]:
        body = self._body(delivery)
        headers = self._headers(delivery, body, datetime.now(UTC))
        shown = {k: ("<signed>" if k == "webhook-signature" else v) for k, v in headers.items()}
        for key in self.config.headers:
            shown[key] = "<configured>"
        return [Preview(target=f"POST {self.config.url}", body=msgspec.json.decode(body), headers=shown)]

    def deliver(self, delivery: Delivery) -> DeliveryResult:
        body = self._body(delivery)
        status = retrying(self.services.delivery, lambda: self._post(delivery, body))
        return DeliveryResult(records={"http_status": str(status)})

    def _post(self, delivery: Delivery, body: bytes) -> int:
        headers = self._headers(delivery, body, datetime.now(UTC))  # fresh timestamp per attempt
        client = self.client
        with translate_transport_errors(f"forward to {httpx.URL(self.config.url).host}", self._trust):
            response = client.post(self.config.url, content=body, headers=headers)
        status = response.status_code
        if 200 <= status < 300:
            return status
        hint = " (redirects are not followed; configure the final URL)" if 300 <= status < 400 else ""
        # A receiver may echo what it was sent; header values shorter than 8 characters cannot be credentials.
        secrets = [self.config.secret, *(value for value in self.config.headers.values() if len(value) >= 8)]
        raise error_for_status(
            "receiver", status, body=response.text, headers=response.headers, secrets=secrets, hint=hint
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
