"""Zendesk over HTTP: the one place that sends requests to Zendesk.

Every request waits for a slot in the account's shared per-minute budget
(:mod:`bridge.limiter`; ticket updates also in Zendesk's separate Update Ticket
budget), carries the credentials (never logged, never put in an error), and
comes back as parsed JSON or as one of the bridge's errors
(:mod:`connectors.zendesk.errors`). A 429 sets the account's shared pause for
its Retry-After, so no worker sends into a window Zendesk has closed: a wait no
longer than `delivery.http_max_wait_seconds` is slept out in-call, a longer one
is a PausedError (the calls stay queued). Idempotent requests (reads, searches,
updates, the users upsert) are retried in-call per `delivery.http_attempts`; a
ticket create only when it certainly did not land, because a timed-out create
may have been written (its Idempotency-Key and the exactly-once ledger decide).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import httpx

from bridge import __version__
from bridge.errors import PausedError, PermanentError, RetryableError
from bridge.http import retrying, translate_transport_errors
from bridge.limiter import LOCAL_LIMIT, RollingLimiter, SharedPause
from bridge.settings import DeliverySettings
from bridge.tls import Trust, resolve_trust
from connectors.zendesk.config import AuthConfig, credential_is_usable
from connectors.zendesk.errors import certainly_not_written, error_from_response

__all__ = ["MAX_LIST_PAGES", "Budgets", "ZendeskClient"]

MAX_LIST_PAGES = 10  # 1,000 tickets with one external_id is already a data problem; stop there
log = logging.getLogger("bridge.connector.zendesk")


class _NotReplayable(Exception):
    """Carries a RetryableError out of tenacity without an in-call retry (an ambiguous create)."""

    def __init__(self, error: RetryableError) -> None:
        super().__init__(str(error))
        self.error = error


class Budgets:
    """The account's shared budgets (None members: no Redis, as in `setup`)."""

    def __init__(
        self,
        minute: RollingLimiter | None = None,
        updates: RollingLimiter | None = None,
        pause: SharedPause | None = None,
    ) -> None:
        self.minute, self.updates, self.pause = minute, updates, pause


class ZendeskClient:
    """A thread-safe Zendesk Support API client; the underlying httpx.Client is created on first use."""

    def __init__(
        self,
        *,
        api_root: str,
        auth: AuthConfig,
        delivery: DeliverySettings,
        requests_per_minute: int,
        transport: httpx.BaseTransport | None = None,
        trust: Trust | None = None,
        budgets: Budgets | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_root = api_root.rstrip("/")
        self.delivery = delivery
        self.requests_per_minute = requests_per_minute
        self.trust = trust or resolve_trust()
        self._auth = auth
        self._transport = transport
        self._budgets = budgets or Budgets()
        self._sleep = sleep
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()
        self._warned_limit = False

    def __repr__(self) -> str:  # never show the credentials
        return f"ZendeskClient({self.api_root})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every form a credential could take in an echoed answer: redacted from error messages."""
        values = [self._auth.api_token, self._auth.oauth_token]
        if self._auth.api_token:
            values.append(self._basic())
        return tuple(v for v in values if v)

    def _basic(self) -> str:
        raw = f"{self._auth.email.strip()}/token:{self._auth.api_token.strip()}"
        return base64.b64encode(raw.encode()).decode()

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(
                    transport=self._transport,
                    verify=self.trust.ssl_context(),  # trust_env stays on: proxy variables keep working
                    timeout=httpx.Timeout(
                        self.delivery.timeout_seconds, connect=min(self.delivery.timeout_seconds, 10)
                    ),
                    follow_redirects=False,
                    headers={
                        "authorization": self._authorization(),
                        "accept": "application/json",
                        "user-agent": f"agni-bridge/{__version__}",
                    },
                )
            return self._http

    def _authorization(self) -> str:
        oauth, token = self._auth.oauth_token.strip(), self._auth.api_token.strip()
        if oauth and credential_is_usable(oauth):
            return f"Bearer {oauth}"
        if token and credential_is_usable(token) and credential_is_usable(self._auth.email.strip()):
            return f"Basic {self._basic()}"
        # Checked here because httpx would echo an illegal header value in its error.
        raise PermanentError("Zendesk auth: give email + api_token or oauth_token (printable, without spaces)")

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    # -- operations -----------------------------------------------------------------------
    def create_ticket(
        self, ticket: dict[str, Any], *, idempotency_key: str, on_send: Callable[[], None] | None = None
    ) -> tuple[dict[str, Any], str]:
        """POST a ticket under `idempotency_key`; returns Zendesk's ticket object and its
        ``x-idempotency-lookup`` answer (`miss`: created now; `hit`: the ticket an earlier request with this
        key created). Not retried in-call unless it certainly did not land; `on_send` runs right before each
        attempt goes out (the intent marker)."""
        headers = {"idempotency-key": idempotency_key}
        found, answered = self._send("POST", "/tickets", {"ticket": ticket}, what="create ticket", safe=False,
                                     headers=headers, on_send=on_send, with_headers=True)  # fmt: skip
        created = found.get("ticket") if isinstance(found, dict) else None
        if not isinstance(created, dict) or not created.get("id"):
            # It may well have landed: the next attempt's external_id listing finds it.
            raise RetryableError("Zendesk create ticket: answer without a ticket id")
        return created, answered.get("x-idempotency-lookup", "").strip().lower()

    def update_ticket(self, ticket_id: str, changes: dict[str, Any]) -> None:
        self._send("PUT", f"/tickets/{ticket_id}", {"ticket": changes}, what=f"update ticket {ticket_id}", update=True)

    def tickets_by_external_id(self, external_id: str) -> list[dict[str, Any]]:
        """Every ticket whose external_id is `external_id` (it is not unique), following pages."""
        tickets: list[dict[str, Any]] = []
        params: dict[str, Any] | None = {"external_id": external_id, "per_page": 100}
        url = "/tickets"
        for _ in range(MAX_LIST_PAGES):
            found = self._send("GET", url, None, what="list tickets by external_id", params=params)
            page = found.get("tickets") if isinstance(found, dict) else None
            tickets += [t for t in page or [] if isinstance(t, dict) and t.get("id")]
            following = found.get("next_page") if isinstance(found, dict) else None
            if not following:
                break
            url, params = str(following), None
        return tickets

    def search_users(self, query: str) -> list[dict[str, Any]]:
        """One page (up to 100) of `GET /users/search?query=…` (the search index: it lags behind writes)."""
        found = self._send("GET", "/users/search", None, what="search users", params={"query": query})
        users = found.get("users") if isinstance(found, dict) else None
        return [u for u in users or [] if isinstance(u, dict) and u.get("id")]

    def create_or_update_user(self, user: dict[str, Any]) -> dict[str, Any]:
        """Zendesk's users upsert (matched by email or external_id): safe to repeat."""
        found = self._send("POST", "/users/create_or_update", {"user": user}, what="create or update user")
        created = found.get("user") if isinstance(found, dict) else None
        if not isinstance(created, dict) or not created.get("id"):
            raise RetryableError("Zendesk create or update user: answer without a user id")
        return created

    def me(self) -> dict[str, Any]:
        found = self._send("GET", "/users/me", None, what="read the token's user")
        user = found.get("user") if isinstance(found, dict) else None
        return user if isinstance(user, dict) else {}

    def users(self, ids: list[int]) -> list[dict[str, Any]]:
        """`GET /users/show_many`: the users among `ids` that exist (up to 100)."""
        params = {"ids": ",".join(str(i) for i in ids)}
        found = self._send("GET", "/users/show_many", None, what="read users", params=params)
        users = found.get("users") if isinstance(found, dict) else None
        return [u for u in users or [] if isinstance(u, dict) and u.get("id")]

    # -- plumbing -------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        *,
        what: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        safe: bool = True,
        update: bool = False,
        on_send: Callable[[], None] | None = None,
        with_headers: bool = False,
    ) -> Any:
        """Send with the in-call retries; the parsed body, or (body, response headers) `with_headers`."""

        def attempt() -> Any:
            try:
                found, answered = self._once(method, path, body, what, params, headers, update, on_send)
                return (found, answered) if with_headers else found
            except RetryableError as exc:
                if safe or isinstance(exc, PausedError) or certainly_not_written(exc):
                    raise
                raise _NotReplayable(exc) from exc

        try:
            return retrying(self.delivery, attempt)
        except _NotReplayable as wrapped:
            raise wrapped.error from wrapped.error.__cause__

    def _once(
        self,
        method: str,
        path: str,
        body: Any,
        what: str,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        update: bool,
        on_send: Callable[[], None] | None,
    ) -> tuple[Any, httpx.Headers]:
        self._wait_out_pause()
        content = None if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        sent = {**(headers or {}), **({"content-type": "application/json"} if content is not None else {})}
        url = path if path.startswith("https://") or path.startswith("http://") else self.api_root + path
        with ExitStack() as slots:
            # The update budget first: its slot would otherwise be spent while waiting for the minute's.
            if update and self._budgets.updates is not None:
                slots.enter_context(self._budgets.updates.slot())
            if self._budgets.minute is not None:
                slots.enter_context(self._budgets.minute.slot())
            if on_send is not None:
                on_send()
            with translate_transport_errors(f"Zendesk {what}", self.trust):
                response = self.http.request(method, url, content=content, params=params, headers=sent)
        self._observe_limit(response)
        if response.status_code < 300:
            if not response.content:
                return {}, response.headers
            try:
                return response.json(), response.headers
            except ValueError as exc:
                raise RetryableError(
                    f"Zendesk {what}: answered {response.status_code} with a body that is not JSON"
                ) from exc
        error = error_from_response(response, what, secrets=self.secrets)
        if response.status_code == 429 and self._budgets.pause is not None and isinstance(error, RetryableError):
            self._budgets.pause.pause(error.retry_after or 60.0)  # every worker stops sending until then
        raise error

    def _wait_out_pause(self) -> None:
        """Sleep out a short shared pause (another worker's 429); a long one hands the call back to the queue."""
        pause = self._budgets.pause
        if pause is None:
            return
        try:
            pause.check()
        except PausedError as exc:
            wait = exc.retry_after or 0.0
            if wait > self.delivery.http_max_wait_seconds:
                raise PausedError(exc.message, retry_after=wait, code=LOCAL_LIMIT) from None  # nothing was sent
            self._sleep(wait)

    def _observe_limit(self, response: httpx.Response) -> None:
        """Warn once when Zendesk reports a smaller per-minute limit than `requests_per_minute` assumes."""
        raw = response.headers.get("x-rate-limit")
        if self._warned_limit or not raw or not raw.strip().isdigit():
            return
        if int(raw) < self.requests_per_minute:
            self._warned_limit = True
            log.warning(
                "Zendesk reports X-Rate-Limit: %s requests per minute, below requests_per_minute (%s): lower the "
                "setting, or calls will meet 429s",
                raw.strip(),
                self.requests_per_minute,
            )
