"""Access tokens: the bridge runs the OAuth flows itself and caches one token per identity per process.

simple-salesforce can log in too, but its logins build ``https://{domain}.salesforce.com``
URLs (no My Domain or sandbox URL with a port, no local fake) and its refresh on
401 recurses without bound (REFERENCE §0.2). So the bridge posts to
``{login_url}/services/oauth2/token`` itself —

* ``jwt``: a JWT bearer assertion signed RS256 (iss = client_id, sub = username,
  aud = `audience`, by default the login host Salesforce documents, exp = now + 3 min);
* ``client_credentials``: HTTP Basic client_id:client_secret;
* ``password``: client id/secret + username + password + security token;
* ``session``: the configured session id, used as is (it cannot be renewed) —

and hands instance_url + access token to simple-salesforce. Tokens live in a
class-level cache keyed by (method, login_url, client_id, username), shared by
every job and thread of the worker process: a token is fetched once, not per call.
When Salesforce answers 401, :meth:`Authenticator.refresh` replaces the token —
once for all the threads that saw the same stale token — and the caller retries once.

Secrets never appear in exceptions, logs or reprs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests

from bridge.errors import PermanentError, RetryableError
from bridge.tls import Trust
from connectors.salesforce.config import AuthConfig, rsa_key_problem
from connectors.salesforce.errors import translate_errors

__all__ = ["JWT_BEARER", "Authenticator", "Token", "default_audience"]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME_SECONDS = 180  # Salesforce accepts at most 3 minutes


@dataclass(frozen=True)
class Token:
    """An access token and the org URL it is valid for (the token is left out of repr)."""

    access_token: str = field(repr=False)
    instance_url: str


class Authenticator:
    """Gets, caches and renews the token of one auth configuration."""

    _tokens: ClassVar[dict[str, Token]] = {}
    _locks: ClassVar[dict[str, threading.Lock]] = {}
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        auth: AuthConfig,
        session: requests.Session,
        *,
        instance_url: str = "",
        resolve_path: Callable[[str], Path] = Path,
        clock: Callable[[], float] = time.time,
        trust: Trust | None = None,
    ) -> None:
        self.auth = auth
        self.trust = trust
        self.session = session
        self.instance_url = instance_url.rstrip("/")
        self.resolve_path = resolve_path
        self.clock = clock
        self.key = "|".join((auth.method, auth.login_url.rstrip("/"), auth.client_id, auth.username))
        with self._guard:
            self._lock = self._locks.setdefault(self.key, threading.Lock())

    @classmethod
    def forget_all(cls) -> None:
        """Drop every cached token of this process (tests; a credentials rotation)."""
        with cls._guard:
            cls._tokens.clear()

    def token(self) -> Token:
        """The cached token, fetching one first when there is none."""
        if self.auth.method == "session":
            return Token(self.auth.session_id, self.instance_url)
        cached = self._tokens.get(self.key)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._tokens.get(self.key)
            if cached is None:
                cached = self._tokens[self.key] = self._request_token()
            return cached

    def refresh(self, stale: Token) -> Token:
        """A new token after Salesforce rejected `stale`; threads that saw the same stale token share one login."""
        if self.auth.method == "session":
            raise PermanentError(
                "Salesforce rejected the configured session id (expired or invalid); auth.method session cannot "
                "re-authenticate: configure jwt, client_credentials or password",
                status=401,
                code="INVALID_SESSION_ID",
            )
        with self._lock:
            current = self._tokens.get(self.key)
            if current is not None and current.access_token != stale.access_token:
                return current  # another thread already renewed it
            self._tokens.pop(self.key, None)
            fresh = self._tokens[self.key] = self._request_token()
            return fresh

    # -- the flows ------------------------------------------------------------------------
    def _request_token(self) -> Token:
        auth = self.auth
        url = auth.login_url.rstrip("/") + "/services/oauth2/token"
        basic: tuple[str, str] | None = None
        if auth.method == "jwt":
            form = {"grant_type": JWT_BEARER, "assertion": self._assertion()}
        elif auth.method == "client_credentials":
            form, basic = {"grant_type": "client_credentials"}, (auth.client_id, auth.client_secret)
        else:
            form = {
                "grant_type": "password",
                "client_id": auth.client_id,
                "client_secret": auth.client_secret,
                "username": auth.username,
                "password": auth.password + auth.security_token,
            }
        what = f"Salesforce login ({auth.method}) at {auth.login_url}"
        with translate_errors(what, trust=self.trust):
            response = self.session.post(url, data=form, auth=basic, headers={"Accept": "application/json"})
            body = _json_or_none(response)
        if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            raise _login_error(what, response.status_code, body)
        instance_url = self.instance_url or str(body.get("instance_url") or "").rstrip("/")
        if not instance_url.startswith("https://"):
            raise PermanentError(f"{what}: the token response names no https instance_url; set instance_url")
        return Token(str(body["access_token"]), instance_url)

    def _assertion(self) -> str:
        import jwt

        auth = self.auth
        if auth.private_key:
            pem = auth.private_key.encode()
        else:
            path = self.resolve_path(auth.private_key_file)
            try:
                pem = path.read_bytes()
            except OSError as exc:
                raise PermanentError(f"cannot read auth.private_key_file {path}: {exc.strerror or exc}") from None
        problem = rsa_key_problem(pem)
        if problem:
            raise PermanentError(f"auth.{'private_key' if auth.private_key else 'private_key_file'}: {problem}")
        claims = {
            "iss": auth.client_id,
            "sub": auth.username,
            "aud": auth.audience or default_audience(auth.login_url),
            "exp": int(self.clock()) + JWT_LIFETIME_SECONDS,
        }
        return jwt.encode(claims, pem, algorithm="RS256")


def default_audience(login_url: str) -> str:
    """The JWT `aud` Salesforce expects: its login host (production, My Domains included) or test.salesforce.com
    (sandboxes); for any other host (a test server, a gateway) the login URL itself."""
    host = (urlsplit(login_url).hostname or "").lower()
    if host in ("login.salesforce.com", "test.salesforce.com"):
        return f"https://{host}"
    if host.endswith(".sandbox.my.salesforce.com"):
        return "https://test.salesforce.com"
    if host.endswith(".my.salesforce.com"):
        return "https://login.salesforce.com"
    return login_url.rstrip("/")


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _login_error(what: str, status: int, body: Any) -> Exception:
    """OAuth errors are `{"error", "error_description"}`; bad credentials are permanent, overload is not."""
    error = str(body.get("error") or "") if isinstance(body, dict) else ""
    description = str(body.get("error_description") or "") if isinstance(body, dict) else ""
    message = f"{what} failed: {description or error or f'HTTP {status}'}"
    if status == 429 or status >= 500:
        return RetryableError(message, status=status, code=error or None)
    return PermanentError(message, status=status, code=error or "LOGIN_FAILED")
