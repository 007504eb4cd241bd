"""Who is asking: admin users and their roles, signed session cookies, CSRF tokens, the sign-in rate limit.

Users come from `admin.users` (name, token, role) plus `admin.token`, which stays an admin named `admin`.
A request is authenticated by either

* `Authorization: Bearer <token>` (scripts; no cookie, so no CSRF exposure), or
* the session cookie the console's sign-in sets.

Tokens are compared in constant time, and every user's token is compared on every attempt (no early exit
that would tell which users exist). A user whose token is empty is no user.

**Session cookie.** ``base64url(json).base64url(hmac-sha256)``, holding the user's name, a random session
id, the expiry, and a fingerprint of the user's token: rotating a user's token (or removing the user) ends
their sessions, and the role is read from the current configuration on every request, never from the
cookie. The HMAC key is 32 random bytes generated once per bridge with ``SET NX`` in Redis
(``{prefix}:console:key``), so every API replica signs and verifies alike and nothing secret has to be
configured; deleting the key signs everyone out. Signing out records the session id as revoked (in Redis,
until the session would have expired), so a copied cookie dies with it. The cookie is HttpOnly,
SameSite=Strict, scoped to `server.root_path`, and Secure whenever the browser reached the bridge over https
(directly, or per `X-Forwarded-Proto` from an address in `admin.trusted_proxies`).

**CSRF.** Every state-changing request carried by the cookie must also carry a token derived from the
session (HMAC of its id): the `csrf` form field, or the `X-CSRF-Token` header htmx sends. Sign-in has its
own pre-session token, bound to a short-lived random cookie. A request a browser marks
`Sec-Fetch-Site: cross-site` is refused outright.

**Sign-in rate.** Failed sign-ins are counted per client address and minute in Redis (shared by every API
process); past `admin.login_attempts_per_minute` the form answers 429 without looking at the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from bridge.settings import Settings

__all__ = [
    "MIN_TOKEN_LENGTH",
    "Principal",
    "SessionKeys",
    "Signer",
    "User",
    "client_address",
    "is_https",
    "users_from_settings",
]

log = logging.getLogger("bridge.console")

MIN_TOKEN_LENGTH = 16
SESSION_COOKIE = "agni_console"
PRESESSION_COOKIE = "agni_console_signin"
PRESESSION_SECONDS = 3600
KEY_CACHE_SECONDS = 30.0

Role = Literal["viewer", "admin"]


@dataclass(frozen=True)
class User:
    name: str
    token: bytes
    role: Role


@dataclass(frozen=True)
class Principal:
    """An authenticated request: who, with which role, and how (a `session` carries a CSRF token)."""

    name: str
    role: Role
    via: Literal["bearer", "session"]
    session_id: str = ""
    expires: int = 0
    csrf: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def users_from_settings(settings: Settings) -> list[User]:
    """`admin.users` plus `admin.token` (as an admin named `admin`); users with unusable tokens are left out."""
    users: list[User] = []
    admin = settings.admin
    if admin.token:
        users.append(User("admin", admin.token.encode(), "admin"))
    for user in admin.users:
        if len(user.token) < MIN_TOKEN_LENGTH:
            log.warning(
                "admin.users: %s left out: the token is %s (at least %d characters)",
                user.name,
                "empty" if not user.token else "too short",
                MIN_TOKEN_LENGTH,
            )
            continue
        users.append(User(user.name, user.token.encode(), user.role))
    return users


def find_user(users: list[User], token: str) -> User | None:
    """The user whose token this is; every token is compared, in constant time."""
    offered = token.encode()
    found = None
    for user in users:
        if hmac.compare_digest(offered, user.token) and found is None:
            found = user
    return found if offered else None


class SessionKeys:
    """The HMAC key every API process shares, generated once in Redis (SET NX); cached briefly per process."""

    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}:console:key"
        self._cached: tuple[float, bytes] | None = None

    async def key(self, client: Any) -> bytes:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < KEY_CACHE_SECONDS:
            return self._cached[1]
        await client.set(self.name, secrets.token_hex(32), nx=True)
        raw = await client.get(self.name)
        key = bytes.fromhex(raw.decode() if isinstance(raw, bytes) else str(raw))
        self._cached = (now, key)
        return key

    def key_sync(self, client: Any) -> bytes:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < KEY_CACHE_SECONDS:
            return self._cached[1]
        client.set(self.name, secrets.token_hex(32), nx=True)
        raw = client.get(self.name)
        key = bytes.fromhex(raw.decode() if isinstance(raw, bytes) else str(raw))
        self._cached = (now, key)
        return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and checks session cookies and CSRF tokens with one key."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self.key, purpose.encode() + b"|" + data, hashlib.sha256).digest()

    def fingerprint(self, token: bytes) -> str:
        return _b64(self._mac("token", token)[:12])

    def issue(self, user: User, lifetime_seconds: float) -> tuple[str, Principal]:
        session_id = secrets.token_hex(16)
        expires = int(time.time() + lifetime_seconds)
        body = json.dumps(
            {"u": user.name, "s": session_id, "e": expires, "f": self.fingerprint(user.token)}, separators=(",", ":")
        ).encode()
        cookie = f"{_b64(body)}.{_b64(self._mac('session', body))}"
        return cookie, self.principal(user, session_id, expires)

    def principal(self, user: User, session_id: str, expires: int) -> Principal:
        return Principal(user.name, user.role, "session", session_id, expires, self.csrf_token(session_id))

    def read(self, cookie: str, users: list[User]) -> tuple[User, str, int] | None:
        """(user, session id, expiry) of a valid, unexpired cookie whose user and token still stand; else None."""
        body_text, _, mac_text = cookie.partition(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(mac, self._mac("session", body)):
            return None
        try:
            data = json.loads(body)
            name, session_id, expires, fingerprint = str(data["u"]), str(data["s"]), int(data["e"]), str(data["f"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires < time.time():
            return None
        for user in users:
            if user.name == name and hmac.compare_digest(self.fingerprint(user.token), fingerprint):
                return user, session_id, expires
        return None

    def csrf_token(self, session_id: str) -> str:
        return _b64(self._mac("csrf", session_id.encode())[:18])

    def signin_token(self, nonce: str) -> str:
        return _b64(self._mac("signin", nonce.encode())[:18])


def _networks(entries: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            log.warning("admin.trusted_proxies: %r is not an address or CIDR range; ignored", entry)
    return networks


class Proxies:
    """Which peers' X-Forwarded-* headers are believed (`admin.trusted_proxies`)."""

    def __init__(self, entries: list[str]) -> None:
        self.networks = _networks(entries)

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


def client_address(peer: str, headers: Any, proxies: Proxies) -> str:
    """The client's address: the peer, or — when the peer is a trusted proxy — the nearest untrusted address
    in X-Forwarded-For (read from the right, so a client cannot choose it by sending the header itself)."""
    if not proxies.trusted(peer):
        return peer
    forwarded = [part.strip() for part in (headers.get("x-forwarded-for") or "").split(",") if part.strip()]
    for address in reversed(forwarded):
        if not proxies.trusted(address):
            return address
    return forwarded[0] if forwarded else peer


def is_https(scheme: str, peer: str, headers: Any, proxies: Proxies) -> bool:
    if scheme == "https":
        return True
    if proxies.trusted(peer):
        proto = (headers.get("x-forwarded-proto") or "").split(",")[0].strip().lower()
        return proto == "https"
    return False
