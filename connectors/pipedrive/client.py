"""Pipedrive over HTTP: the one place that sends requests to Pipedrive.

Every request first checks the shared pause (a spent daily budget stops every worker), then waits for a slot
in the shared burst budget — and, for searches, in the search budget, taken last so it is fresh when the
request leaves (:mod:`bridge.limiter`) — carries the credential (:mod:`connectors.pipedrive.auth`; never logged,
never in an error) and comes back as the `data` of Pipedrive's envelope, or as one of the bridge's errors
(:mod:`connectors.pipedrive.errors`). A 401 with a refreshable OAuth token renews it once and resends (the 401
wrote nothing). A 2xx that says ``"success": false`` or is not JSON is an error too.

Idempotent requests (reads, searches, updates) are retried in-call per `delivery.http_attempts`; a create is
retried in-call only when it certainly did not land (a 429, a local budget that timed out), because a create
that timed out may have been written: the exactly-once guard decides on the next attempt.

The answers' `x-daily-ratelimit-token-remaining` is watched: at 0 the shared pause is set at once (the next
request would only collect a 429), and below 10% of `x-daily-ratelimit-token-limit` a warning is logged once.
The budget figures also go to the console's overview (:mod:`bridge.quota`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx

from bridge import __version__
from bridge.errors import PausedError, RetryableError
from bridge.http import retrying, translate_transport_errors
from bridge.limiter import RollingLimiter, SharedPause, seconds_until_midnight
from bridge.settings import DeliverySettings
from bridge.tls import Trust
from connectors.pipedrive.auth import Credentials
from connectors.pipedrive.errors import NOT_SENT, certainly_not_written, daily_budget_left, error_from_response

__all__ = ["Envelope", "PipedriveClient", "quota_figures"]

LOW_BUDGET_SHARE = 0.1
_QUOTA_HEADERS = {
    "x-daily-ratelimit-token-limit": "daily_limit",
    "x-daily-ratelimit-token-remaining": "daily_remaining",
    "x-ratelimit-limit": "window_limit",
    "x-ratelimit-remaining": "window_remaining",
}


def quota_figures(headers: httpx.Headers) -> dict[str, int]:
    """The budget figures one answer carries, named as bridge.quota names them (the window is Pipedrive's 2 s)."""
    found = {name: int(raw) for header, name in _QUOTA_HEADERS.items() if (raw := headers.get(header, "")).isdigit()}
    if "window_limit" in found:
        found["window_ms"] = 2000
    return found


@dataclass(frozen=True)
class Envelope:
    """A successful answer: Pipedrive's `data` and `additional_data` (paging)."""

    data: Any
    additional: dict[str, Any]


class _NotReplayable(Exception):
    """Carries a RetryableError out of tenacity without an in-call retry (an ambiguous create)."""

    def __init__(self, error: RetryableError) -> None:
        super().__init__(str(error))
        self.error = error


class PipedriveClient:
    """A thread-safe Pipedrive client; the underlying httpx.Client is created on first use."""

    def __init__(
        self,
        *,
        credentials: Credentials,
        delivery: DeliverySettings,
        trust: Trust,
        timezone: str = "UTC",
        transport: httpx.BaseTransport | None = None,
        limiter: RollingLimiter | None = None,
        search_limiter: RollingLimiter | None = None,
        pause: SharedPause | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.credentials = credentials
        self.delivery = delivery
        self.trust = trust
        self.timezone = timezone
        self._transport = transport
        self._limiter = limiter
        self._search_limiter = search_limiter
        self._pause = pause
        self.log = log or logging.getLogger("bridge.connector.pipedrive")
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()
        self._warned_low = False
        self.quota: Any = None
        """A bridge.quota.QuotaRecorder when the connector has Redis: the console's overview shows the limits."""

    def __repr__(self) -> str:  # never show a token
        return f"PipedriveClient({self.credentials.base_url})"

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                timeout = self.delivery.timeout_seconds
                self._http = httpx.Client(
                    transport=self._transport,
                    verify=self.trust.ssl_context(),  # trust_env stays on: proxy variables keep working
                    timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                    follow_redirects=False,
                    headers={"user-agent": f"agni-bridge/{__version__}", "accept": "application/json"},
                )
            return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: dict[str, Any] | None = None,
        json: Any = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        search: bool = False,
        safe: bool = True,
        on_send: Callable[[], None] | None = None,
    ) -> Envelope:
        """One request (`path` starts with /v1 or /api/v2); retried in-call when `safe` or certainly not sent."""

        def attempt() -> Envelope:
            try:
                return self._once(method, path, what, params, json, files, search, on_send)
            except RetryableError as exc:
                if safe or isinstance(exc, PausedError) or certainly_not_written(exc):
                    raise
                raise _NotReplayable(exc) from exc

        try:
            return retrying(self.delivery, attempt)
        except _NotReplayable as wrapped:
            raise wrapped.error from wrapped.error.__cause__

    # -- plumbing -------------------------------------------------------------------------
    def _once(
        self,
        method: str,
        path: str,
        what: str,
        params: dict[str, Any] | None,
        body: Any,
        files: dict[str, tuple[str, bytes, str]] | None,
        search: bool,
        on_send: Callable[[], None] | None,
    ) -> Envelope:
        if self._pause is not None:
            try:
                self._pause.check()
            except PausedError as exc:  # nothing was sent: say so, for the exactly-once guard
                raise PausedError(exc.message, retry_after=exc.retry_after, code=NOT_SENT) from exc
        with ExitStack() as slots:
            if self._limiter is not None:
                slots.enter_context(self._limiter.slot())
            if search and self._search_limiter is not None:
                slots.enter_context(self._search_limiter.slot())
            response = self._send(method, path, what, params, body, files, on_send)
        self._watch_budget(response)
        if response.status_code < 300:
            return self._envelope(response, what)
        error = error_from_response(response, what, timezone=self.timezone, secrets=self.credentials.secrets())
        if isinstance(error, PausedError) and self._pause is not None and error.retry_after:
            self._pause.pause(error.retry_after)  # every worker stops sending until the daily reset
        raise error

    def _send(
        self,
        method: str,
        path: str,
        what: str,
        params: dict[str, Any] | None,
        body: Any,
        files: dict[str, tuple[str, bytes, str]] | None,
        on_send: Callable[[], None] | None,
    ) -> httpx.Response:
        for renewed in (False, True):
            headers, generation = self.credentials.headers()
            url = self.credentials.base_url + path
            if on_send is not None:
                on_send()
            with translate_transport_errors(f"Pipedrive {what}", self.trust):
                response = self.http.request(
                    method, url, params=params, json=body, files=files, headers=headers
                )
            if response.status_code != 401 or renewed or not self.credentials.refresh(generation):
                return response
            self.log.info("Pipedrive answered 401 to %s; renewed the OAuth access token, sending again", what)
        raise AssertionError("unreachable")

    def _envelope(self, response: httpx.Response, what: str) -> Envelope:
        try:
            found = response.json() if response.content else {}
        except ValueError as exc:
            raise RetryableError(
                f"Pipedrive {what}: answered {response.status_code} with a body that is not JSON",
                status=response.status_code,
            ) from exc
        if not isinstance(found, dict) or found.get("success") is False:
            raise error_from_response(response, what, timezone=self.timezone, secrets=self.credentials.secrets())
        additional = found.get("additional_data")
        return Envelope(found.get("data"), additional if isinstance(additional, dict) else {})

    def _watch_budget(self, response: httpx.Response) -> None:
        if self.quota is not None:
            self.quota.record(quota_figures(response.headers))
        left = daily_budget_left(response.headers)
        if left is None or response.status_code == 429:
            return
        if left <= 0 and self._pause is not None:
            self._pause.pause(seconds_until_midnight(self.timezone))
            self.log.warning("Pipedrive's daily API token budget is spent; pausing until it resets")
            return
        try:
            limit = float(response.headers.get("x-daily-ratelimit-token-limit") or 0)
        except ValueError:
            limit = 0.0
        if limit and left < limit * LOW_BUDGET_SHARE and not self._warned_low:
            self._warned_low = True
            self.log.warning("Pipedrive's daily API token budget is low: %d of %d tokens left", left, int(limit))
