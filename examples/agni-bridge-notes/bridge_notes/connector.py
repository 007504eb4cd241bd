"""The `notes` connector: each call becomes one note in a notes service, exactly once.

The service is an imaginary REST API without upsert, like many CRMs' activity objects:

    POST  {base_url}/notes                        {"external_id", "title", "body", "phone"}  → 201 {"id"}
    PATCH {base_url}/notes/{id}                   {"title", "body", "phone"}                 → 200
    GET   {base_url}/notes?external_id={call id}  → 200 {"notes": [{"id", …}]}  (lags a few seconds behind creates)
    Authorization: Bearer <api_key>; 429 with Retry-After above its rate limit.

What the bridge's core gives it, so this file only says what is particular to the service:

* exactly once: :func:`bridge.ledger.write_once` (a Redis ledger call → note id, an intent marker, and the
  search above when an earlier attempt may have created the note without recording it);
* pacing: one :class:`bridge.limiter.RollingLimiter` shared by every worker process, so a burst waits for
  `requests_per_minute` instead of collecting 429s;
* trust: :func:`bridge.tls.resolve_trust` (`ca_bundle`, else SSL_CERT_FILE, else REQUESTS_CA_BUNDLE, else certifi);
* errors: :func:`bridge.http.translate_transport_errors` and :func:`bridge.http.error_for_status` turn httpx's
  exceptions and the service's answers into RetryableError / PermanentError; :func:`bridge.http.retrying`
  retries idempotent requests in-call.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

import httpx
import msgspec

from bridge import (
    Connector,
    ConnectorConfig,
    ConnectorError,
    Delivery,
    DeliveryResult,
    PermanentError,
    Preview,
    RetryableError,
    Services,
)
from bridge.http import error_for_status, retrying, translate_transport_errors
from bridge.ledger import Ledger, write_once
from bridge.limiter import LOCAL_LIMIT, RollingLimiter
from bridge.phones import phone_spellings
from bridge.tls import Trust, resolve_trust, trust_problems

__all__ = ["NotesConfig", "NotesConnector", "certainly_not_written"]


class NotesConfig(ConnectorConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """`type: notes`: each call becomes one note."""

    base_url: Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/]+")]
    """The service's API root, e.g. https://notes.example.com/api."""
    api_key: str = ""
    """Sent as `Authorization: Bearer`. Write ${NOTES_API_KEY}: the bridge refuses literal secrets."""
    ca_bundle: str = ""
    """CAs to trust (a private CA, a TLS-inspecting proxy); empty: the bridge's rule (docs/connectors.md)."""
    requests_per_minute: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 60
    """The service's rate limit, shared by every worker of every machine through Redis."""
    search_settle_seconds: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    """How long a new note may take to show up in the service's search."""
    default_region: str = "US"
    """Region for phone numbers written without a country code."""


def certainly_not_written(exc: ConnectorError) -> bool:
    """The service refused the create outright (a 4xx), or the rate limiter never sent it."""
    return exc.code == LOCAL_LIMIT or (exc.status is not None and 400 <= exc.status < 500)


class NotesConnector(Connector):
    """Notes in the notes service; one instance serves every worker thread of a process."""

    Config = NotesConfig
    default_mapping = None  # the note is built from the call; a `mapping` adds or overrides fields

    def __init__(self, name: str, config: NotesConfig, services: Services, mapping: Any) -> None:
        super().__init__(name, config, services, mapping)
        self.config: NotesConfig = config
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._trust: Trust | None = None
        self._ledger: Ledger | None = None
        self._limiter: RollingLimiter | None = None

    # -- the plug-in interface ------------------------------------------------------------------
    def check(self) -> list[str]:
        where = f"connectors.{self.name}"
        problems = []
        if not self.config.api_key.strip():
            problems.append(f"{where}.api_key: required; write ${{NOTES_API_KEY}}")
        return problems + trust_problems(where, self.config.ca_bundle, resolve_path=self.services.resolve_path)

    def preview(self, delivery: Delivery) -> list[Preview]:
        body = {"external_id": delivery.call_session_id, **self._note(delivery)}
        target = f"POST {self.config.base_url.rstrip('/')}/notes (PATCH /notes/<id> once it exists)"
        return [Preview(target=target, body=body, headers={"authorization": "Bearer <api_key>"})]

    def deliver(self, delivery: Delivery) -> DeliveryResult:
        ledger = self._build()
        call_id, note = delivery.call_session_id, self._note(delivery)
        outcome = write_once(
            ledger,
            "note",
            call_id,
            create=lambda touch: self._create({"external_id": call_id, **note}, touch),
            find=lambda: self._find(call_id),
            update=lambda note_id: self._send("PATCH", f"/notes/{note_id}", note),
            links=frozenset(),
            stale_after=self.config.search_settle_seconds + self.services.delivery.timeout_seconds,
            certainly_not_written=certainly_not_written,
        )
        return DeliveryResult(records={"note": outcome.id}, match=f"note {outcome.how}")

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    # -- the service ------------------------------------------------------------------------------
    def _note(self, delivery: Delivery) -> dict[str, Any]:
        call = delivery.call
        phone = phone_spellings(call.get("phone"), self.config.default_region)
        note = {
            "title": f"Call with {call.get('caller_name') or (phone.e164 if phone else 'an unknown caller')}",
            "body": str(call.get("summary") or ""),
            "phone": phone.e164 if phone else None,
        }
        return {**note, **(delivery.record or {})}

    def _build(self) -> Ledger:
        """The HTTP client, the ledger and the limiter, on the first delivery (never at import, check or preview)."""
        redis = self.services.redis
        if redis is None:
            raise PermanentError("the notes connector needs Redis (its exactly-once ledger lives there)")
        with self._lock:
            if self._ledger is None:
                keys = f"{self.services.prefix}:notes:{self.name}"
                self._trust = resolve_trust(self.config.ca_bundle, resolve_path=self.services.resolve_path)
                timeout = self.services.delivery.timeout_seconds
                self._http = httpx.Client(
                    base_url=self.config.base_url.rstrip("/"),
                    transport=self.services.http_transport,
                    verify=self._trust.ssl_context(),
                    timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                    headers={"authorization": f"Bearer {self.config.api_key}"},
                )
                self._limiter = RollingLimiter(
                    redis, f"{keys}:budget", self.config.requests_per_minute, 60.0, destination="notes service"
                )
                self._ledger = Ledger(redis, f"{keys}:ledger", destination="notes service")
            return self._ledger

    def _create(self, note: dict[str, Any], touch: Any) -> str:
        # Not retried in-call: a create that timed out may have landed; the ledger's next attempt searches first.
        created = self._once("POST", "/notes", note, on_send=touch)
        if not isinstance(created, dict) or not created.get("id"):
            raise RetryableError("notes service: create answered without an id")
        return str(created["id"])

    def _find(self, call_id: str) -> str | None:
        found = self._send("GET", "/notes", None, params={"external_id": call_id})
        notes = found.get("notes") if isinstance(found, dict) else None
        return str(notes[0]["id"]) if notes else None

    def _send(self, method: str, path: str, body: Any, **kwargs: Any) -> Any:
        """An idempotent request, retried in-call on transient failures (per the delivery settings)."""
        return retrying(self.services.delivery, lambda: self._once(method, path, body, **kwargs))

    def _once(self, method: str, path: str, body: Any, *, params: Any = None, on_send: Any = None) -> Any:
        assert self._http is not None and self._limiter is not None
        with self._limiter.slot():
            if on_send is not None:
                on_send()  # the ledger re-stamps its intent marker as the create goes out
            with translate_transport_errors(f"notes service {method} {path}", self._trust):
                response = self._http.request(method, path, json=body, params=params)
        if response.is_success:
            return response.json() if response.content else {}
        raise error_for_status(
            f"notes service {method} {path}",
            response.status_code,
            body=response.text,
            headers=response.headers,
            secrets=[self.config.api_key],  # never in an error, should the service echo it
        )
