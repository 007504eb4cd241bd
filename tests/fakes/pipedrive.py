"""An in-memory fake of the Pipedrive API (v1 call logs and users, v2 persons, activities, deals), over real HTTP.

It answers the way Pipedrive documents (REFERENCE.md §9.3; the official SDK pipedrive/client-nodejs for
shapes), strictly:

* auth: the `x-api-token` header of a known user, or `Authorization: Bearer` with an OAuth access token that
  has not expired; anything else is Pipedrive's gateway 401 ``{"success": false, "error": "unauthorized
  access", "errorCode": 401}``. ``POST /oauth/token`` renews OAuth tokens (grant_type=refresh_token, HTTP Basic
  client credentials) and answers `api_domain` (this server);
* limits, per company: a daily token budget charged per request (v1: single GET 2, list 20, write 10, search
  40; v2 about half), and per token a burst limit in a rolling 2 s window plus 10 searches per 2 s. Refusals are
  429 with `x-ratelimit-limit/-remaining/-reset`, and for the daily budget `x-daily-ratelimit-token-remaining: 0`
  (the undocumented headers the live API sends; the 429 body's wording is the fake's choice). A refused request
  costs nothing;
* the endpoints Pipedrive moved to v2 (v1 persons, activities, deals, itemSearch) answer 410: they are out of
  support since 1 Aug 2026 and the bridge must not use them (fake's choice: the real ones "may remain
  functional");
* call logs (v1): required fields and formats, one outcome of six, `deal_id` or `lead_id`, another user's
  `user_id` only for an admin token (403), ``GET /v1/callLogs`` lists the *token user's* call logs only (in
  creation order; Pipedrive documents no order), 50 a page at most; recordings are uploaded as multipart files;
* activities (v2): strict JSON types, an existing active activity type, `person_id` read-only (the primary
  participant decides it), cursor paging of at most 500, `updated_since` filtering;
* persons (v2): search by email/phone/name, exact or loose (see :func:`tests.fakes.pipedrive_records.search_hit`),
  with an optional index lag; create; read by ids, newest first.

No idempotency key, no upsert, no external id: exactly what makes the connector's ledger and reconciliation
lookup necessary. State is public for tests (guard with ``fake.lock`` while requests run).
"""

from __future__ import annotations

import base64
import itertools
import secrets as secrets_module
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs

from .httpserver import FakeRequest, FakeResponse, FakeServer
from .pipedrive_records import ApiError
from .pipedrive_routes import Routes

TOKEN = "pd-api-token"


class Window:
    """At most `limit` hits in any rolling `seconds` (Pipedrive's burst limits are rolling 2 s windows)."""

    def __init__(self, limit: int, seconds: float = 2.0) -> None:
        self.limit, self.seconds = limit, seconds
        self.hits: deque[float] = deque()

    def take(self, now: float) -> bool:
        self._expire(now)
        if len(self.hits) >= self.limit:
            return False
        self.hits.append(now)
        return True

    def remaining(self, now: float) -> int:
        self._expire(now)
        return max(0, self.limit - len(self.hits))

    def reset(self, now: float) -> int:
        self._expire(now)
        return max(1, round(self.hits[0] + self.seconds - now + 0.499)) if self.hits else 0

    def _expire(self, now: float) -> None:
        while self.hits and self.hits[0] <= now - self.seconds:
            self.hits.popleft()


class FakePipedrive(Routes, FakeServer):
    """The fake company. Knobs: ``requests_per_2s`` / ``search_per_2s`` (None: unlimited), ``daily_tokens``
    (None: unlimited), ``search_lag_seconds``, ``access_token_seconds`` and ``rotate_refresh_tokens`` (OAuth)."""

    def __init__(
        self,
        *,
        api_token: str = TOKEN,
        admin: bool = True,
        requests_per_2s: int | None = None,
        search_per_2s: int | None = None,
        daily_tokens: int | None = None,
        clock: Callable[[], float] = time.time,
        **server_kwargs: Any,
    ) -> None:
        super().__init__(**server_kwargs)
        self.clock = clock
        self.requests_per_2s, self.search_per_2s, self.daily_tokens = requests_per_2s, search_per_2s, daily_tokens
        self.tokens_used = 0
        self.search_lag_seconds = 0.0
        self.access_token_seconds = 3600
        self.rotate_refresh_tokens = False
        self.throttled: Counter[str] = Counter()
        self._ids = itertools.count(101)
        self._windows: dict[str, Window] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.api_tokens: dict[str, int] = {}
        self.oauth_tokens: dict[str, tuple[int, float]] = {}  # access token -> (user id, expiry)
        self.refresh_tokens: dict[str, int] = {}
        self.oauth_clients: dict[str, str] = {}  # client id -> secret
        self.persons: dict[int, dict[str, Any]] = {}
        self.organizations: dict[int, dict[str, Any]] = {}
        self.deals: dict[int, dict[str, Any]] = {}
        self.activities: dict[int, dict[str, Any]] = {}
        self.call_logs: dict[str, dict[str, Any]] = {}
        self.recordings: dict[str, bytes] = {}
        self.activity_types = [
            {"id": 1, "key_string": "call", "name": "Call", "active_flag": True},
            {"id": 2, "key_string": "meeting", "name": "Meeting", "active_flag": True},
            {"id": 3, "key_string": "task", "name": "Task", "active_flag": True},
        ]
        self.me = self.add_user("Integration User", "integration@example.com", admin=admin, api_token=api_token)

    # -- seeding ------------------------------------------------------------------------------
    def add_user(
        self, name: str, email: str, *, admin: bool = False, active: bool = True, api_token: str | None = None
    ) -> int:
        with self.lock:
            user_id = next(self._ids)
            self.users[user_id] = {"id": user_id, "name": name, "email": email, "active_flag": active,
                                   "is_admin": admin}  # fmt: skip
            if api_token:
                self.api_tokens[api_token] = user_id
            return user_id

    def add_oauth_client(self, client_id: str, client_secret: str, user_id: int | None = None) -> tuple[str, str]:
        """Register an app for `user_id` (default: the token's user); returns (access token, refresh token)."""
        with self.lock:
            self.oauth_clients[client_id] = client_secret
            user = user_id or self.me
            refresh = secrets_module.token_hex(16)
            self.refresh_tokens[refresh] = user
            return self._issue(user), refresh

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.oauth_tokens = {token: (user, 0.0) for token, (user, _) in self.oauth_tokens.items()}

    def add_organization(self, name: str) -> int:
        with self.lock:
            org_id = next(self._ids)
            self.organizations[org_id] = {"id": org_id, "name": name}
            return org_id

    def add_person(
        self,
        name: str,
        *,
        emails: tuple[str, ...] = (),
        phones: tuple[str, ...] = (),
        org_id: int | None = None,
        updated: float | None = None,
    ) -> int:
        """Seed a person (searchable at once); `updated` is its update time (epoch seconds)."""
        with self.lock:
            person_id = next(self._ids)
            stamp = self.clock() if updated is None else updated
            self.persons[person_id] = {
                "id": person_id, "name": name, "owner_id": self.me, "org_id": org_id,
                "emails": [{"value": e, "primary": i == 0, "label": "work"} for i, e in enumerate(emails)],
                "phones": [{"value": p, "primary": i == 0, "label": "work"} for i, p in enumerate(phones)],
                "visible_to": 3, "add_time": stamp, "update_time": stamp, "indexed_at": float("-inf"),
                "is_deleted": False,
            }  # fmt: skip
            return person_id

    def add_deal(self, title: str, person_id: int, *, status: str = "open", added: float | None = None) -> int:
        with self.lock:
            deal_id = next(self._ids)
            stamp = self.clock() if added is None else added
            self.deals[deal_id] = {"id": deal_id, "title": title, "person_id": person_id, "status": status,
                                   "add_time": stamp, "update_time": stamp, "is_deleted": False}  # fmt: skip
            return deal_id

    def delete_person(self, person_id: int) -> None:
        with self.lock:
            del self.persons[person_id]

    # -- reading state ------------------------------------------------------------------------
    @property
    def total_requests(self) -> int:
        return len(self.request_log)

    def live_call_logs(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(c) for c in self.call_logs.values() if not c["deleted"]]

    def live_activities(self, *, done: bool | None = None) -> list[dict[str, Any]]:
        with self.lock:
            found = [dict(a) for a in self.activities.values() if not a["is_deleted"]]
        return [a for a in found if done is None or a["done"] is done]

    def live_persons(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(p) for p in self.persons.values() if not p["is_deleted"]]

    # -- the entry ----------------------------------------------------------------------------
    def handle(self, request: FakeRequest) -> FakeResponse:
        with self.lock:
            if request.path == "/oauth/token":
                return self._oauth_token(request)
            now = self.clock()
            user, token, kind = self._authenticate(request, now)
            if user is None:
                return self._error(ApiError(401, "unauthorized access", info="Please check developers.pipedrive.com"))
            cost, search = self._cost(request)
            refused = self._throttle(token, search, cost, now)
            if refused is not None:
                return refused
            self.requests[f"{request.method} {_normalize(request.path)}"] += 1
            try:
                response = self._route(request, user, now)
            except ApiError as error:
                response = self._error(error)
            response.headers.update(self._rate_headers(token, search, now, request.method, kind))
            return response

    def _error(self, error: ApiError, headers: dict[str, str] | None = None) -> FakeResponse:
        extra = {"x-correlation-id": str(uuid.uuid4()), **(headers or {})}
        return FakeResponse.json(error.status, error.body(), extra)

    # -- auth ---------------------------------------------------------------------------------
    def _authenticate(self, request: FakeRequest, now: float) -> tuple[int | None, str, str]:
        api_token = request.headers.get("x-api-token", "")
        if api_token:
            return self.api_tokens.get(api_token), api_token, "api_token"
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        found = self.oauth_tokens.get(bearer) if scheme.lower() == "bearer" else None
        if found is None or found[1] <= now:
            return None, "", "oauth"
        return found[0], bearer, "oauth"

    def _issue(self, user: int) -> str:
        token = f"oauth-{secrets_module.token_hex(12)}"
        self.oauth_tokens[token] = (user, self.clock() + self.access_token_seconds)
        return token

    def _oauth_token(self, request: FakeRequest) -> FakeResponse:
        """POST /oauth/token, grant_type=refresh_token (form-encoded, client credentials as HTTP Basic)."""
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            client_id, secret = "", ""
        if scheme.lower() != "basic" or self.oauth_clients.get(client_id) != secret or not secret:
            return FakeResponse.json(401, {"error": "invalid_client", "error_description": "Invalid client"})
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        user = self.refresh_tokens.get(form.get("refresh_token", ""))
        if form.get("grant_type") != "refresh_token" or user is None:
            return FakeResponse.json(400, {"error": "invalid_grant", "error_description": "Invalid refresh token"})
        refresh = form["refresh_token"]
        if self.rotate_refresh_tokens:
            del self.refresh_tokens[refresh]
            refresh = secrets_module.token_hex(16)
            self.refresh_tokens[refresh] = user
        self.requests["POST /oauth/token"] += 1
        return FakeResponse.json(200, {
            "access_token": self._issue(user), "token_type": "Bearer", "refresh_token": refresh,
            "scope": "base,phone-integration,contacts:full,activities:full,deals:read,users:read",
            "expires_in": self.access_token_seconds, "api_domain": self.url,
        })  # fmt: skip

    # -- limits -------------------------------------------------------------------------------
    def _cost(self, request: FakeRequest) -> tuple[int, bool]:
        """Tokens a request costs, and whether it is a search (REFERENCE.md §9.3; v2 half of v1)."""
        path, method = request.path, request.method
        search = path.endswith("/search")
        v2 = path.startswith("/api/v2/")
        single = any(part.isdigit() or len(part) == 32 for part in path.split("/")[3:]) or path.endswith("/me")
        if search:
            cost = 40
        elif method == "GET":
            cost = 2 if single else 20
        elif method == "DELETE":
            cost = 6
        else:
            cost = 10
        return (max(1, cost // 2) if v2 else cost), search

    def _throttle(self, token: str, search: bool, cost: int, now: float) -> FakeResponse | None:
        if self.daily_tokens is not None and self.tokens_used + cost > self.daily_tokens:
            self.throttled["daily"] += 1
            error = ApiError(429, "Daily API token budget exceeded. The budget resets at midnight.")
            headers = {"x-daily-ratelimit-token-limit": str(self.daily_tokens),
                       "x-daily-ratelimit-token-remaining": "0"}  # fmt: skip
            return self._error(error, headers)
        for name, limit, applies in (("burst", self.requests_per_2s, True), ("search", self.search_per_2s, search)):
            if limit is None or not applies:
                continue
            window = self._windows.setdefault(f"{name}:{token}", Window(limit))
            if not window.take(now):
                self.throttled[name] += 1
                headers = {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": "0",
                           "x-ratelimit-reset": str(window.reset(now))}  # fmt: skip
                return self._error(ApiError(429, "Request over limit"), headers)
        self.tokens_used += cost
        return None

    def _rate_headers(self, token: str, search: bool, now: float, method: str, kind: str) -> dict[str, str]:
        headers: dict[str, str] = {}
        window = self._windows.get(f"burst:{token}")
        if window is not None:
            headers["x-ratelimit-limit"] = str(window.limit)
            headers["x-ratelimit-remaining"] = str(window.remaining(now))
            headers["x-ratelimit-reset"] = str(window.reset(now))
        if self.daily_tokens is not None:
            headers["x-daily-ratelimit-token-limit"] = str(self.daily_tokens)
            headers["x-daily-ratelimit-token-remaining"] = str(max(0, self.daily_tokens - self.tokens_used))
        return headers

    # -- multipart (recordings) -----------------------------------------------------------------
    @staticmethod
    def _multipart_file(request: FakeRequest) -> tuple[str, bytes] | None:
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            return None
        message = BytesParser(policy=policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + request.body
        )
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                return str(part.get_filename() or ""), part.get_payload(decode=True) or b""
        return None


def _normalize(path: str) -> str:
    """``/v1/callLogs/3f2a…`` -> ``/v1/callLogs/{id}``: stable keys for ``fake.requests``."""
    parts = ["{id}" if part.isdigit() or len(part) == 32 else part for part in path.rstrip("/").split("/")]
    return "/".join(parts) or "/"
