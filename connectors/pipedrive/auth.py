"""Who the bridge is to Pipedrive: an API token, or an OAuth access token renewed with its refresh token.

An API token travels in the `x-api-token` header and never expires (until a user regenerates it). An OAuth
access token travels as `Authorization: Bearer` and lives about an hour; with `refresh_token`, `client_id` and
`client_secret` the bridge renews it like Pipedrive's own SDK does: ``POST {token_url}`` with
``grant_type=refresh_token`` (form-encoded, the client id and secret as HTTP Basic). That happens before a
request once `expires_in` has passed, and on a 401, once per token generation however many threads saw the
401 (the others wait, then use the new token). The answer's `api_domain` becomes the API host.

Each worker process renews on its own and keeps the token in memory only (no secret is written to Redis). The
newest refresh token Pipedrive returns is kept too, in case Pipedrive rotates them; whether it does, and so
whether two processes renewing with one refresh token can lock each other out, is not documented (see the
README). A refusal (400/401, e.g. a revoked app) is a PermanentError naming the fix; a timeout or 5xx is
retryable. Tokens never appear in errors, logs or reprs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx

from bridge.errors import PermanentError, RetryableError
from bridge.http import excerpt, parse_retry_after, translate_transport_errors
from bridge.tls import Trust
from connectors.pipedrive.config import AuthConfig, is_local_http, token_is_usable
from connectors.pipedrive.errors import TOKEN_REFRESH

__all__ = ["Credentials"]

# Renew a little before Pipedrive's expiry, so a request does not leave with a token about to die.
EXPIRY_MARGIN_SECONDS = 60.0


class Credentials:
    """The headers every request carries, and the API host; thread-safe."""

    def __init__(
        self,
        auth: AuthConfig,
        api_base: str,
        *,
        timeout: float,
        trust: Trust,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kind = auth.kind
        self._auth = auth
        self._token = auth.api_token if self.kind == "api_token" else auth.oauth_token
        self._refresh_token = auth.refresh_token
        self._base = api_base.rstrip("/")
        self._expires_at: float | None = None
        self._generation = 0
        self._lock = threading.Lock()
        self._timeout = timeout
        self._trust = trust
        self._transport = transport
        self._clock = clock

    def __repr__(self) -> str:  # never show a token
        return f"Credentials({self.kind}, {self._base})"

    @property
    def base_url(self) -> str:
        with self._lock:
            return self._base

    @property
    def refreshable(self) -> bool:
        return self.kind == "oauth" and self._auth.refreshable

    def secrets(self) -> tuple[str, ...]:
        """Everything an error excerpt must never show."""
        with self._lock:
            values = (self._token, self._refresh_token, self._auth.client_secret, self._auth.api_token)
        return tuple(value for value in values if value)

    def headers(self) -> tuple[dict[str, str], int]:
        """The auth header for the next request, and the token generation it belongs to (for :meth:`refresh`)."""
        with self._lock:
            expired = self._expires_at is not None and self._clock() >= self._expires_at
            generation = self._generation
        if (expired or not self._token) and self.refreshable:
            self.refresh(generation)
        with self._lock:
            token, generation = self._token, self._generation
        if not token_is_usable(token):
            # Checked here because httpx would echo an illegal header value in its error.
            raise PermanentError(f"Pipedrive {self.kind.replace('_', ' ')} is empty or contains spaces or non-ASCII")
        if self.kind == "api_token":
            return {"x-api-token": token}, generation
        return {"authorization": f"Bearer {token}"}, generation

    def refresh(self, generation: int) -> bool:
        """Renew the access token unless another thread already did since `generation`; False when it cannot be
        renewed (no refresh settings), so the 401 stands."""
        if not self.refreshable:
            return False
        with self._lock:
            if self._generation != generation:
                return True  # someone renewed it meanwhile: use theirs
            answer = self._ask_for_token()
            self._token = str(answer["access_token"])
            self._refresh_token = str(answer.get("refresh_token") or self._refresh_token)
            expires_in = answer.get("expires_in")
            if isinstance(expires_in, int | float) and expires_in > 0:
                self._expires_at = self._clock() + max(0.0, float(expires_in) - EXPIRY_MARGIN_SECONDS)
            domain = answer.get("api_domain")
            if isinstance(domain, str) and self._usable_domain(domain):
                self._base = domain.rstrip("/")
            self._generation += 1
            return True

    def _usable_domain(self, domain: str) -> bool:
        parts = urlsplit(domain)
        if not parts.hostname or parts.path.strip("/"):
            return False
        return parts.scheme == "https" or (is_local_http(domain) and is_local_http(self._base))

    def _ask_for_token(self) -> dict[str, Any]:
        auth = self._auth
        form = {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
        secrets = (self._refresh_token, auth.client_secret, self._token)
        with (
            _refresh_errors(),
            translate_transport_errors("Pipedrive token refresh", self._trust),
            httpx.Client(
                verify=self._trust.ssl_context(), transport=self._transport, timeout=self._timeout
            ) as client,
        ):
            response = client.post(auth.token_url, data=form, auth=(auth.client_id, auth.client_secret))
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code < 300 and isinstance(answer, dict) and answer.get("access_token"):
            return answer
        shown = _oauth_error(answer) or excerpt(response.text, secrets=secrets) or f"HTTP {response.status_code}"
        message = f"Pipedrive token refresh answered {response.status_code}: {excerpt(shown, secrets=secrets)}"
        if response.status_code in (400, 401, 403):
            raise PermanentError(
                f"{message}; the refresh token or client credentials are no longer valid: reinstall or re-authorize "
                "the Pipedrive app and update auth.refresh_token",
                status=response.status_code,
                code=TOKEN_REFRESH,
            )
        if response.status_code < 300:
            raise RetryableError(f"{message} (no access_token in the answer)", status=response.status_code,
                                 code=TOKEN_REFRESH)  # fmt: skip
        wait = parse_retry_after(response.headers.get("retry-after"))
        raise RetryableError(message, status=response.status_code, retry_after=wait, code=TOKEN_REFRESH)


@contextmanager
def _refresh_errors() -> Iterator[None]:
    """A renewal that could not reach the token endpoint: retryable, and nothing reached the API."""
    try:
        yield
    except RetryableError as exc:
        raise RetryableError(exc.message, retry_after=exc.retry_after, code=TOKEN_REFRESH) from exc


def _oauth_error(answer: Any) -> str:
    if not isinstance(answer, dict):
        return ""
    parts = [answer.get(key) for key in ("error", "error_description", "message")]
    return ": ".join(str(part) for part in parts if isinstance(part, str) and part)
