"""Access tokens from Microsoft Entra ID (OAuth 2.0 client credentials), one per app and environment per process.

The bridge posts to the token endpoint itself (``grant_type=client_credentials``,
``scope={instance_url}/.default``), authenticating the app registration either
with its client secret or with a certificate: a signed client assertion
(:mod:`connectors.dynamics.certificate`).

Tokens live in a class-level cache keyed by (token endpoint, client id, scope,
credential fingerprint), shared by every thread and delivery of the worker
process. A token is renewed ahead of time — ``refresh_margin`` seconds (5 minutes)
before it expires — by the first thread that notices, while the others wait for
it rather than asking too. When Dataverse nevertheless answers 401, the client
calls :meth:`TokenProvider.renew` with the token it used: threads that saw the
same stale token share one renewal, and the request is tried once more.

Secrets (the client secret, the assertion, the access token) never appear in
exceptions, logs or reprs.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import httpx

from bridge.errors import PermanentError, RetryableError
from bridge.http import translate_transport_errors
from bridge.tls import Trust
from connectors.dynamics.certificate import ASSERTION_TYPE, Certificate, client_assertion, read_certificate
from connectors.dynamics.config import AuthConfig
from connectors.dynamics.errors import token_error

__all__ = ["Token", "TokenProvider"]

REFRESH_MARGIN_SECONDS = 300.0
DEFAULT_LIFETIME_SECONDS = 3599.0


@dataclass(frozen=True)
class Token:
    """An access token and when it expires (epoch seconds); the token itself is left out of repr."""

    access_token: str = field(repr=False)
    expires_at: float
    renew_at: float
    """When to renew it: `refresh_margin` before it expires (halfway through a lifetime shorter than twice that)."""


class TokenProvider:
    """Gets, caches and renews the token of one app registration for one environment."""

    _tokens: ClassVar[dict[str, Token]] = {}
    _locks: ClassVar[dict[str, threading.Lock]] = {}
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        auth: AuthConfig,
        *,
        token_url: str,
        scope: str,
        http: Callable[[], httpx.Client],
        resolve_path: Callable[[str], Path] = Path,
        trust: Trust | None = None,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = REFRESH_MARGIN_SECONDS,
    ) -> None:
        self.auth = auth
        self.token_url = token_url
        self.scope = scope
        self._http = http
        self._resolve_path = resolve_path
        self._trust = trust
        self._clock = clock
        self.refresh_margin = refresh_margin
        self._certificate: Certificate | None = None
        credential = auth.client_secret or f"{auth.certificate_file}|{auth.certificate_password}"
        fingerprint = hashlib.sha256(credential.encode()).hexdigest()[:16]  # never the credential itself
        self.key = "|".join((token_url, auth.client_id, scope, fingerprint))
        with self._guard:
            self._lock = self._locks.setdefault(self.key, threading.Lock())

    def __repr__(self) -> str:
        return f"TokenProvider({self.token_url}, client_id={self.auth.client_id})"

    @classmethod
    def forget_all(cls) -> None:
        """Drop every cached token of this process (tests; a credential rotation)."""
        with cls._guard:
            cls._tokens.clear()

    def token(self) -> Token:
        """A token valid for at least `refresh_margin` more seconds, fetched or renewed when needed."""
        cached = self._tokens.get(self.key)
        if cached is not None and self._clock() < cached.renew_at:
            return cached
        with self._lock:
            cached = self._tokens.get(self.key)
            if cached is None or self._clock() >= cached.renew_at:
                cached = self._tokens[self.key] = self._request()
            return cached

    def renew(self, stale: Token) -> Token:
        """A new token after Dataverse refused `stale`; threads that saw the same stale token share one request."""
        with self._lock:
            current = self._tokens.get(self.key)
            if current is not None and current.access_token != stale.access_token:
                return current  # another thread renewed it already
            self._tokens.pop(self.key, None)
            fresh = self._tokens[self.key] = self._request()
            return fresh

    # -- the request ------------------------------------------------------------------------
    def _request(self) -> Token:
        auth = self.auth
        form = {"grant_type": "client_credentials", "client_id": auth.client_id, "scope": self.scope}
        secrets = [auth.client_secret] if auth.client_secret else []
        if auth.client_secret:
            form["client_secret"] = auth.client_secret
            method = "client secret"
        else:
            assertion = client_assertion(self._cert(), client_id=auth.client_id, token_url=self.token_url)
            form["client_assertion_type"] = ASSERTION_TYPE
            form["client_assertion"] = assertion
            secrets.append(assertion)
            method = "certificate"
        what = f"Entra ID token request ({method}) at {self.token_url}"
        started = self._clock()
        with translate_transport_errors(what, self._trust):
            response = self._http().post(self.token_url, data=form, headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise token_error(what, response.status_code, response.content, secrets=secrets)
        try:
            body = response.json()
        except ValueError as exc:
            raise RetryableError(f"{what}: the answer is not JSON") from exc
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or not token.isascii() or " " in token:
            raise PermanentError(f"{what}: the answer holds no usable access_token")
        try:
            lifetime = float(body.get("expires_in") or DEFAULT_LIFETIME_SECONDS)
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME_SECONDS
        renew_after = max(lifetime / 2, lifetime - self.refresh_margin)
        return Token(token, started + lifetime, started + renew_after)

    def _cert(self) -> Certificate:
        if self._certificate is None:
            path = self._resolve_path(self.auth.certificate_file)
            self._certificate = read_certificate(path, self.auth.certificate_password)
        return self._certificate
