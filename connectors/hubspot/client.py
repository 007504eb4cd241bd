"""HubSpot over HTTP: the one place that sends requests to HubSpot.

Every request waits for a slot in the shared budgets (:mod:`bridge.limiter`),
carries the bearer token (never logged, never put in an error), and comes back
either as parsed JSON or as one of the bridge's errors (translated by
:mod:`connectors.hubspot.errors`; a DAILY 429 also sets the shared pause, so
every worker stops until the reset). A 207 multi-status is returned as parsed,
for the caller to attribute (:mod:`connectors.hubspot.batch`). Idempotent requests (search,
PATCH, associations, reads, batch updates) are retried in-call per
`delivery.http_attempts`; a create (single or batch) is retried in-call only when
it certainly did not land (a 429, or the local budget timed out), because a
timed-out create may have been written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import httpx

from bridge import __version__
from bridge.errors import PausedError, PermanentError, RetryableError
from bridge.http import retrying, translate_transport_errors
from bridge.limiter import RollingLimiter, SharedPause
from bridge.settings import DeliverySettings
from bridge.tls import Trust, resolve_trust
from connectors.hubspot.config import token_is_usable
from connectors.hubspot.errors import CORRELATION_HEADER, certainly_not_written, error_from_response

__all__ = ["HubSpotClient"]


class _NotReplayable(Exception):
    """Carries a RetryableError out of tenacity without an in-call retry (an ambiguous create)."""

    def __init__(self, error: RetryableError) -> None:
        super().__init__(str(error))
        self.error = error


class HubSpotClient:
    """A thread-safe HubSpot API client; the underlying httpx.Client is created on first use."""

    def __init__(
        self,
        *,
        base_url: str,
        objects_path: str,
        token: str,
        delivery: DeliverySettings,
        timezone: str = "UTC",
        transport: httpx.BaseTransport | None = None,
        trust: Trust | None = None,
        limiter: RollingLimiter | None = None,
        search_limiter: RollingLimiter | None = None,
        pause: SharedPause | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.objects_path = "/" + objects_path.strip("/")
        self.properties_path = self.objects_path.replace("/objects", "/properties", 1)
        # v3 objects pair with v4 associations; date-versioned paths (/crm/objects/2026-03) serve them directly.
        self.associations_path = self.objects_path.replace("/v3/", "/v4/", 1)
        self.delivery = delivery
        self.timezone = timezone
        self._token = token
        self._transport = transport
        self.trust = trust or resolve_trust()
        self._limiter = limiter
        self._search_limiter = search_limiter
        self._pause = pause
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()
        self.quota: Any = None
        """A bridge.quota.QuotaRecorder when the connector has Redis: the console's overview shows the limits."""

    def __repr__(self) -> str:  # never show the token
        return f"HubSpotClient({self.base_url}{self.objects_path})"

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                if not token_is_usable(self._token):
                    # Checked here because httpx would echo an illegal header value in its error.
                    raise PermanentError("HubSpot access_token is empty or contains spaces or non-ASCII characters")
                timeout = self.delivery.timeout_seconds
                self._http = httpx.Client(
                    base_url=self.base_url,
                    transport=self._transport,
                    verify=self.trust.ssl_context(),  # trust_env stays on: proxy variables keep working
                    timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                    follow_redirects=False,
                    headers={"authorization": f"Bearer {self._token}", "user-agent": f"agni-bridge/{__version__}"},
                )
            return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    # -- operations -----------------------------------------------------------------------
    def create(
        self,
        object_type: str,
        properties: dict[str, str],
        associations: list[dict[str, Any]],
        *,
        on_send: Callable[[], None] | None = None,
    ) -> str:
        """POST a new object; returns its id. Not retried in-call unless it certainly did not land.

        `on_send` runs right before each attempt goes out (after any wait for a
        rate-limit slot): the exactly-once guard stamps its intent marker there.
        """
        body = {"properties": properties, "associations": associations}
        path = f"{self.objects_path}/{object_type}"
        found = self._send("POST", path, body, what=f"create {object_type}", safe=False, on_send=on_send)
        object_id = found.get("id") if isinstance(found, dict) else None
        if not object_id:
            # It may well have landed: the exactly-once guard's search finds it on the next attempt.
            raise RetryableError(f"HubSpot create {object_type}: answer without an object id")
        return str(object_id)

    def update(self, object_type: str, object_id: str, properties: dict[str, str]) -> None:
        path = f"{self.objects_path}/{object_type}/{object_id}"
        self._send("PATCH", path, {"properties": properties}, what=f"update {object_type} {object_id}")

    def batch(
        self,
        object_type: str,
        operation: str,
        inputs: list[dict[str, Any]],
        *,
        on_send: Callable[[], None] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """One ``/batch/{operation}`` request (create, update, read); returns HubSpot's body, a 207's errors[]
        included. `fields` go next to `inputs` (e.g. a read's `properties`).

        A batch create is not retried in-call unless it certainly did not land (like :meth:`create`);
        updates and reads are idempotent and are. Attributing results to inputs is the caller's job.
        """
        path = f"{self.objects_path}/{object_type}/batch/{operation}"
        what = f"batch {operation} {object_type}"
        body = {"inputs": inputs, **fields}
        found = self._send("POST", path, body, what=what, safe=operation != "create", on_send=on_send)
        return found if isinstance(found, dict) else {}

    def search(
        self,
        object_type: str,
        filter_groups: list[list[dict[str, Any]]],
        properties: list[str],
        *,
        sorts: list[dict[str, str]] | None = None,
        limit: int = 10,
    ) -> list[dict[str, Any]]:
        """One page of search results (each `{"id", "properties": {...}}`), in HubSpot's order."""
        return self.search_page(object_type, filter_groups, properties, sorts=sorts, limit=limit)[0]

    def search_page(
        self,
        object_type: str,
        filter_groups: list[list[dict[str, Any]]],
        properties: list[str],
        *,
        sorts: list[dict[str, str]] | None = None,
        limit: int = 10,
        after: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of results and the `after` cursor of the next page (None on the last one)."""
        body: dict[str, Any] = {
            "filterGroups": [{"filters": filters} for filters in filter_groups],
            "properties": properties,
            "limit": limit,
        }
        if sorts:
            body["sorts"] = sorts
        if after:
            body["after"] = after
        path = f"{self.objects_path}/{object_type}/search"
        found = self._send("POST", path, body, what=f"search {object_type}", search=True)
        found = found if isinstance(found, dict) else {}
        results = [r for r in found.get("results") or [] if isinstance(r, dict) and r.get("id")]
        paging = found.get("paging")
        following = paging.get("next") if isinstance(paging, dict) else None
        following = following.get("after") if isinstance(following, dict) else None
        return results, str(following) if following else None

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        """Ensure the default association exists (v4 PUT: idempotent, no type id needed)."""
        path = f"{self.associations_path}/{from_type}/{from_id}/associations/default/{to_type}/{to_id}"
        self._send("PUT", path, None, what=f"associate {from_type} {from_id} with {to_type} {to_id}")

    def list_properties(self, object_type: str) -> list[dict[str, Any]]:
        found = self._send("GET", f"{self.properties_path}/{object_type}", None, what=f"list {object_type} properties")
        results = found.get("results") if isinstance(found, dict) else None
        return [p for p in results or [] if isinstance(p, dict)]

    def create_property(self, object_type: str, definition: dict[str, Any]) -> None:
        path = f"{self.properties_path}/{object_type}"
        self._send("POST", path, definition, what=f"create {object_type} property {definition.get('name')}")

    # -- plumbing -------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        *,
        what: str,
        search: bool = False,
        safe: bool = True,
        on_send: Callable[[], None] | None = None,
    ) -> Any:
        def attempt() -> Any:
            try:
                return self._once(method, path, body, what=what, search=search, on_send=on_send)
            except RetryableError as exc:
                if safe or isinstance(exc, PausedError) or certainly_not_written(exc):
                    raise
                raise _NotReplayable(exc) from exc

        try:
            return retrying(self.delivery, attempt)
        except _NotReplayable as wrapped:
            raise wrapped.error from wrapped.error.__cause__

    def _once(
        self, method: str, path: str, body: Any, *, what: str, search: bool, on_send: Callable[[], None] | None
    ) -> Any:
        if self._pause is not None:
            self._pause.check()
        # Searches count against both budgets (HubSpot does not say they are exempt from the ten-second one).
        # The short search slot is taken last, right before sending: a slot taken before a long wait for the
        # ten-second budget would be spent by the time the request arrives, and HubSpot would see a burst.
        with ExitStack() as slots:
            if self._limiter is not None:
                slots.enter_context(self._limiter.slot())
            if search and self._search_limiter is not None:
                slots.enter_context(self._search_limiter.slot())
            if on_send is not None:
                on_send()
            with translate_transport_errors(f"HubSpot {what}", self.trust):
                response = self.http.request(method, path, json=body)
        if self.quota is not None:
            self.quota.hubspot(response.headers)
        if response.status_code < 300:
            if not response.content:
                return {}
            try:
                found = response.json()
            except ValueError as exc:
                raise RetryableError(
                    f"HubSpot {what}: answered {response.status_code} with a body that is not JSON"
                ) from exc
            correlation = response.headers.get(CORRELATION_HEADER)
            if response.status_code == 207 and correlation and isinstance(found, dict):
                found.setdefault("correlationId", correlation)  # for the per-input errors of a multi-status
            return found
        error = error_from_response(response, what, search=search, timezone=self.timezone, token=self._token)
        if isinstance(error, PausedError) and self._pause is not None and error.retry_after:
            self._pause.pause(error.retry_after)  # every worker stops sending until the daily reset
        raise error
