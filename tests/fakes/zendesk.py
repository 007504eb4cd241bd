"""An in-memory fake of the Zendesk Support API (tickets and users), served over real HTTP.

Facts come from REFERENCE.md §9.2 and developer.zendesk.com; where Zendesk's docs are silent the
choice is marked "fake's choice". Strict where Zendesk is strict, so a request the real API refuses
is refused here the same way:

* requests: paths with or without `.json`; a body is read only when sent as ``application/json``;
* auth: HTTP Basic ``{email}/token:{api_token}`` of a known agent/admin, or ``Bearer <oauth token>``;
  anything else 401 ``{"error": "Couldn't authenticate you"}``; no credentials at all: ``/users/me``
  describes the anonymous end-user (as Zendesk does), everything else 401; an end-user's token 403;
* rate limits per account per minute (``X-Rate-Limit``, ``X-Rate-Limit-Remaining`` on every answer;
  429 ``text/plain`` "Number of allowed API requests per minute exceeded" with ``Retry-After``; a
  refused request uses no quota), the Update Ticket limit per account per minute, and 30 updates per
  ticket per 10 minutes;
* the Idempotency-Key on ticket creation: first use ``x-idempotency-lookup: miss``; the same key with
  the same body (compared as parsed JSON) within the window returns the original answer with
  ``x-idempotency-lookup: hit``; the same key with another body: 400 ``IdempotentRequestError``; keys
  expire after `idempotency_window_seconds` (2 h by secondary sources: unconfirmed). Only 2xx answers
  are kept (fake's choice: whether Zendesk keeps a failed answer under the key is undocumented);
* ticket validation: a comment or voice comment is required; a voice comment needs from, to,
  recording_url, started_at (ISO 8601) and call_duration (integer seconds); requester, assignee and
  answered_by_id must exist (the last two as agents); drop-down custom fields take one of their
  option tags (ids the account does not have are ignored, as Zendesk does); closed tickets refuse
  updates. Errors are 422 ``{"error": "RecordInvalid", "description": …, "details": {field: [...]}}``;
* the users search is an index: users written through the API show up `search_lag_seconds` later
  (Zendesk: minutes); ``external_id=`` lookups and the ticket listing by ``external_id`` are not lagged.
  The listing returns tickets newest-updated first (fake's choice: Zendesk documents no order), so a
  client must pick among duplicates itself.

    fake = FakeZendesk(requests_per_minute=200).start()
    user = fake.add_user("Jane", email="jane@example.com", phone="+1 415-555-0100")
    ...  # point the bridge at fake.url with auth {email: fake.email, api_token: fake.api_token}
    assert len(fake.tickets) == 1
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from . import zendesk_search
from .httpserver import FakeRequest, FakeResponse, FakeServer
from .zendesk_tickets import AGENT_ROLES, ApiError, TicketRules, invalid, iso

API = "/api/v2"
RATE_LIMITED = "Number of allowed API requests per minute exceeded"
PER_TICKET_UPDATES, PER_TICKET_WINDOW = 30, 600.0
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ManualClock:
    """A settable clock: ``FakeZendesk(clock=clock)`` makes windows and key expiry testable without sleeping."""

    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class _Kept:
    """An answer kept under an Idempotency-Key."""

    body: str
    status: int
    payload: bytes
    expires: float


class FakeZendesk(FakeServer):
    """The fake account. State is public so tests can seed and inspect it (guard with ``fake.lock``).

    ``users[id]`` (with ``identities[id]``: [{type, value}]), ``tickets[id]``, ``comments[id]`` (a
    ticket's comments, voice comments included), ``ticket_fields[id]``, ``idempotency[key]``;
    ``throttled`` (Counter: minute, updates, ticket); ``requests`` (Counter of "METHOD /path/{id}" for
    requests that passed auth and limits); ``total_requests``.
    """

    def __init__(
        self,
        email: str = "bridge@example.com",
        api_token: str = "test-api-token",
        oauth_token: str = "test-oauth-token",
        *,
        requests_per_minute: int | None = None,
        ticket_updates_per_minute: int | None = None,
        idempotency_window_seconds: float = 7200.0,
        clock: Callable[[], float] = time.time,
        **server_kwargs: Any,
    ) -> None:
        super().__init__(**server_kwargs)
        self.email, self.api_token, self.oauth_token = email, api_token, oauth_token
        self.requests_per_minute = requests_per_minute
        self.ticket_updates_per_minute = ticket_updates_per_minute
        self.idempotency_window_seconds = idempotency_window_seconds
        self.clock = clock
        self.search_lag_seconds = 0.0
        self.users: dict[int, dict[str, Any]] = {}
        self.identities: dict[int, list[dict[str, Any]]] = {}
        self.tickets: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.ticket_fields: dict[int, dict[str, Any]] = {}
        self.idempotency: dict[str, _Kept] = {}
        self.throttled: Counter[str] = Counter()
        self._ids = itertools.count(360_000_001)
        self._indexed_at: dict[int, float] = {}
        self._minute: dict[str, tuple[int, int]] = {}  # budget -> (window number, used)
        self._ticket_updates: dict[int, deque[float]] = {}
        self.rules = TicketRules(self)
        self.agent_id = self.add_user("Bridge Integration", email=email, role="admin")

    # -- test helpers -------------------------------------------------------------------------
    @property
    def total_requests(self) -> int:
        return len(self.request_log)

    def add_user(
        self,
        name: str,
        *,
        email: str | None = None,
        phone: str | None = None,
        role: str = "end-user",
        external_id: str | None = None,
        updated_at: float | None = None,
        extra_phones: tuple[str, ...] = (),
        searchable: bool = True,
        shared_phone: bool = False,
    ) -> int:
        """Seed a user (visible to search at once; never with `searchable` False); returns its id. With
        `shared_phone` the number may also be another user's (Zendesk's shared_phone_number)."""
        with self.lock:
            data = {"name": name, "email": email, "phone": phone, "role": role, "external_id": external_id}
            user = self._new_user(data, indexed=True, shared_phone=shared_phone)
            if not searchable:
                self._indexed_at[user["id"]] = float("inf")  # a user the search index has not caught up with
            for number in extra_phones:
                self.identities[user["id"]].append({"type": "phone_number", "value": number})
            if updated_at is not None:
                user["updated_at"] = iso(updated_at)
            return int(user["id"])

    def add_ticket(self, **fields: Any) -> int:
        """Seed a ticket without HTTP, validation or limits (e.g. a duplicate external_id); returns its id."""
        with self.lock:
            now = self.clock()
            ticket_id = next(self._ids)
            self.tickets[ticket_id] = {
                "id": ticket_id, "status": "open", "tags": [], "custom_fields": [], "created_at": iso(now),
                "updated_at": iso(now), "requester_id": self.agent_id, **fields,
            }  # fmt: skip
            self.comments[ticket_id] = []
            return ticket_id

    def add_ticket_field(self, field_id: int, field_type: str = "text", options: tuple[str, ...] = ()) -> None:
        """Define a custom ticket field (`tagger` = drop-down with option tags)."""
        with self.lock:
            self.ticket_fields[field_id] = {"id": field_id, "type": field_type, "options": list(options)}

    def tickets_with(self, external_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(t) for t in self.tickets.values() if t.get("external_id") == external_id]

    def only_ticket(self, external_id: str) -> dict[str, Any]:
        found = self.tickets_with(external_id)
        assert len(found) == 1, f"expected one ticket with external_id {external_id}, found {len(found)}"
        return found[0]

    def comments_of(self, ticket_id: int) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(c) for c in self.comments.get(int(ticket_id), [])]

    def user_by_email(self, email: str) -> dict[str, Any] | None:
        with self.lock:
            found = self._find_identity("email", email.lower())
            return dict(self.users[found]) if found else None

    # -- request entry ------------------------------------------------------------------------
    def handle(self, request: FakeRequest) -> FakeResponse:
        with self.lock:
            path = re.sub(r"\.json$", "", request.path.rstrip("/"))
            who = self._authenticate(request)
            if who is None and not (path == f"{API}/users/me" and "authorization" not in request.headers):
                return ApiError(401, "Couldn't authenticate you").response()
            now = self.clock()
            update_id = _ticket_id(path) if request.method == "PUT" else None
            throttled = self._throttle(now, update_id)
            if throttled is not None:
                return throttled
            self.requests[f"{request.method} {_normalized(path)}"] += 1
            try:
                response = self._route(request, path, who, now)
            except ApiError as error:
                response = error.response()
            response.headers.update(self._rate_headers(now))
            response.headers["X-Request-Id"] = uuid.uuid4().hex[:16]
            return response

    def _authenticate(self, request: FakeRequest) -> dict[str, Any] | None:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credential == self.oauth_token:
            return self.users[self.agent_id]
        if scheme.lower() != "basic":
            return None
        try:
            login, _, secret = base64.b64decode(credential, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        email, slash_token, _ = login.partition("/token")
        if slash_token != "/token" or secret != self.api_token:
            return None  # an API token is `{email}/token:{token}`; a password login is not accepted here
        found = self._find_identity("email", email.lower())
        return self.users[found] if found else None

    # -- rate limits --------------------------------------------------------------------------
    def _throttle(self, now: float, update_id: int | None) -> FakeResponse | None:
        """The account's per-minute budget, the Update Ticket budget, the per-ticket update window; a refused
        request uses none of them."""
        if not self._available("minute", self.requests_per_minute, now):
            return self._limited("minute", now, math.ceil(60 - now % 60))
        recent: deque[float] | None = None
        if update_id is not None:
            if not self._available("updates", self.ticket_updates_per_minute, now):
                return self._limited("updates", now, math.ceil(60 - now % 60))
            recent = self._ticket_updates.setdefault(update_id, deque())
            while recent and recent[0] <= now - PER_TICKET_WINDOW:
                recent.popleft()
            if len(recent) >= PER_TICKET_UPDATES:
                return self._limited("ticket", now, math.ceil(recent[0] + PER_TICKET_WINDOW - now))
            recent.append(now)
            self._use("updates", now)
        self._use("minute", now)
        return None

    def _used(self, budget: str, now: float) -> int:
        number, used = self._minute.get(budget, (int(now // 60), 0))
        return used if number == int(now // 60) else 0

    def _available(self, budget: str, limit: int | None, now: float) -> bool:
        return limit is None or self._used(budget, now) < limit

    def _use(self, budget: str, now: float) -> None:
        self._minute[budget] = (int(now // 60), self._used(budget, now) + 1)

    def _limited(self, budget: str, now: float, retry_after: int) -> FakeResponse:
        self.throttled[budget] += 1
        headers = {"Retry-After": str(max(1, retry_after)), "content-type": "text/plain", **self._rate_headers(now)}
        return FakeResponse(429, RATE_LIMITED, headers)

    def _rate_headers(self, now: float) -> dict[str, str]:
        if self.requests_per_minute is None:
            return {}
        used = self._used("minute", now)
        return {"X-Rate-Limit": str(self.requests_per_minute),
                "X-Rate-Limit-Remaining": str(max(0, self.requests_per_minute - used))}  # fmt: skip

    # -- routing ------------------------------------------------------------------------------
    def _route(self, request: FakeRequest, path: str, who: dict[str, Any] | None, now: float) -> FakeResponse:
        method = request.method
        if path == f"{API}/users/me" and method == "GET":
            return FakeResponse.json(200, {"user": self._show(who) if who else _anonymous()})
        assert who is not None
        if who["role"] not in AGENT_ROLES:
            raise ApiError(403, "Forbidden", "You do not have access to this page. Please contact the account "
                           "owner of this help desk for further help.")  # fmt: skip
        if path == f"{API}/tickets" and method == "POST":
            return self._create_ticket(request, who, now)
        if path == f"{API}/tickets" and method == "GET":
            return self._list_tickets(request)
        ticket_id = _ticket_id(path)
        if ticket_id is not None and method == "GET":
            return FakeResponse.json(200, {"ticket": dict(self._ticket(ticket_id))})
        if ticket_id is not None and method == "PUT":
            ticket = self.rules.update(self._ticket(ticket_id), _body(request, "ticket")["ticket"], who, now)
            return FakeResponse.json(200, {"ticket": ticket, "audit": {"ticket_id": ticket_id}})
        if path == f"{API}/users/search" and method == "GET":
            return self._search_users(request, now)
        if path == f"{API}/users/show_many" and method == "GET":
            ids = [int(i) for i in ",".join(request.query.get("ids", [])).split(",") if i.strip().isdigit()]
            return FakeResponse.json(200, {"users": [self._show(self.users[i]) for i in ids if i in self.users]})
        if path == f"{API}/users/create_or_update" and method == "POST":
            return self._create_or_update_user(_body(request, "user"))
        found = re.fullmatch(rf"{API}/users/(\d+)", path)
        if found and method == "GET":
            user = self.users.get(int(found[1]))
            if user is None:
                raise ApiError(404, "RecordNotFound", "Not found")
            return FakeResponse.json(200, {"user": self._show(user)})
        raise ApiError(404, "InvalidEndpoint", "Not found")

    # -- tickets ------------------------------------------------------------------------------
    def _create_ticket(self, request: FakeRequest, who: dict[str, Any], now: float) -> FakeResponse:
        body = _body(request, "ticket")
        key = request.headers.get("idempotency-key")
        canonical = json.dumps(body, sort_keys=True)
        if key:
            kept = self.idempotency.get(key)
            if kept is not None and kept.expires <= now:
                del self.idempotency[key]
                kept = None
            if kept is not None:
                if kept.body != canonical:
                    raise ApiError(400, "IdempotentRequestError", "Request parameters do not match the original "
                                   "request with this Idempotency-Key")  # fmt: skip
                headers = {"content-type": "application/json", "x-idempotency-lookup": "hit"}
                return FakeResponse(kept.status, kept.payload, headers)
        ticket = self.rules.create(body["ticket"], who, now)
        response = FakeResponse.json(201, {"ticket": ticket, "audit": {"ticket_id": ticket["id"]}})
        response.headers["Location"] = f"{self.url}{API}/tickets/{ticket['id']}.json"
        if key:
            self.idempotency[key] = _Kept(canonical, 201, response.encoded(), now + self.idempotency_window_seconds)
            response.headers["x-idempotency-lookup"] = "miss"
        return response

    def _ticket(self, ticket_id: int) -> dict[str, Any]:
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            raise ApiError(404, "RecordNotFound", "Not found")
        return ticket

    def _list_tickets(self, request: FakeRequest) -> FakeResponse:
        external_id = (request.query.get("external_id") or [None])[0]
        per_page = min(100, int((request.query.get("per_page") or ["100"])[0]))
        page = max(1, int((request.query.get("page") or ["1"])[0]))
        found = [t for t in self.tickets.values() if external_id is None or t.get("external_id") == external_id]
        found.sort(key=lambda t: (t["updated_at"], t["id"]), reverse=True)
        chunk = found[(page - 1) * per_page : page * per_page]
        following = None
        if page * per_page < len(found):
            query = {**({"external_id": external_id} if external_id else {}), "page": page + 1, "per_page": per_page}
            following = f"{self.url}{API}/tickets.json?{urlencode(query)}"
        body = {"tickets": [dict(t) for t in chunk], "next_page": following, "previous_page": None,
                "count": len(found)}  # fmt: skip
        return FakeResponse.json(200, body)

    # -- users --------------------------------------------------------------------------------
    def _search_users(self, request: FakeRequest, now: float) -> FakeResponse:
        external_id = (request.query.get("external_id") or [None])[0]
        query = (request.query.get("query") or [None])[0]
        if external_id is not None:
            found = [u for u in self.users.values() if str(u.get("external_id") or "").lower() == external_id.lower()]
        elif query is not None:
            try:
                terms = zendesk_search.parse(query)
            except zendesk_search.SearchError as exc:
                raise ApiError(400, "InvalidQuery", str(exc)) from None
            visible = [u for u in self.users.values() if now - self._indexed_at[u["id"]] >= self.search_lag_seconds]
            found = [u for u in visible if zendesk_search.matches(u, self.identities[u["id"]], terms)]
        else:
            raise ApiError(400, "InvalidParameter", "Provide a query or an external_id")
        users = [self._show(u) for u in sorted(found, key=lambda u: u["id"])[:100]]
        return FakeResponse.json(200, {"users": users, "next_page": None, "previous_page": None, "count": len(found)})

    def _create_or_update_user(self, body: dict[str, Any]) -> FakeResponse:
        data = body["user"]
        if not isinstance(data, dict):
            raise ApiError(400, "InvalidParameter", "user must be an object")
        email = str(data.get("email") or "").strip().lower()
        external_id = str(data.get("external_id") or "").strip()
        existing = self._find_identity("email", email) if email else None
        if existing is None and external_id:
            existing = next((i for i, u in self.users.items() if str(u.get("external_id") or "").lower()
                             == external_id.lower()), None)  # fmt: skip
        if existing is not None:
            user = self.users[existing]
            self._check_phone(data.get("phone"), existing)
            for key in ("name", "tags", "user_fields"):
                if key in data:
                    user[key] = data[key]
            if data.get("phone") and not any(i["value"] == data["phone"] for i in self.identities[existing]):
                self.identities[existing].append({"type": "phone_number", "value": str(data["phone"])})
                user["phone"] = user.get("phone") or str(data["phone"])
            user["updated_at"] = iso(self.clock())
            return FakeResponse.json(200, {"user": self._show(user)})
        user = self._new_user(data, indexed=False)
        return FakeResponse.json(201, {"user": self._show(user)})

    def _new_user(self, data: dict[str, Any], *, indexed: bool, shared_phone: bool = False) -> dict[str, Any]:
        name = str(data.get("name") or "").strip()
        if not name:
            raise invalid("name", "Name: cannot be blank", "BlankValue")
        email = str(data.get("email") or "").strip().lower()
        if email and not _EMAIL.match(email):
            raise invalid("email", f"Email: {email} is not properly formatted", "InvalidFormat")
        if email and self._find_identity("email", email):
            raise invalid("email", f"Email: {email} is already being used by another user", "DuplicateValue")
        if not shared_phone:
            self._check_phone(data.get("phone"), None)
        role = str(data.get("role") or "end-user")
        if role not in ("end-user", *AGENT_ROLES):
            raise invalid("role", f"Role: {role} is not valid")
        now = self.clock()
        user_id = next(self._ids)
        user = {
            "id": user_id, "name": name, "email": email or None, "phone": data.get("phone") or None, "role": role,
            "external_id": data.get("external_id") or None, "active": True, "suspended": False,
            "shared_phone_number": shared_phone, "tags": list(data.get("tags") or []),
            "user_fields": dict(data.get("user_fields") or {}), "created_at": iso(now), "updated_at": iso(now),
        }  # fmt: skip
        self.users[user_id] = user
        self.identities[user_id] = [{"type": "email", "value": email}] if email else []
        if user["phone"]:
            self.identities[user_id].append({"type": "phone_number", "value": str(user["phone"])})
        self._indexed_at[user_id] = float("-inf") if indexed else now
        return user

    def _check_phone(self, phone: Any, owner: int | None) -> None:
        """A number may belong to one user (unless shared: fake's choice, Zendesk's message is unconfirmed)."""
        if not phone:
            return
        holder = self._find_identity("phone_number", str(phone))
        if holder is not None and holder != owner and not self.users[holder].get("shared_phone_number"):
            raise invalid("phone", f"Phone: {phone} is already being used by another user", "DuplicateValue")

    def _find_identity(self, kind: str, value: str) -> int | None:
        for user_id, identities in self.identities.items():
            for identity in identities:
                stored = str(identity["value"])
                if identity["type"] == kind and (stored.lower() == value if kind == "email" else stored == value):
                    return user_id
        return None

    def _show(self, user: dict[str, Any]) -> dict[str, Any]:
        return {**user, "url": f"{self.url}{API}/users/{user['id']}.json"}


def _anonymous() -> dict[str, Any]:
    return {"id": None, "name": "Anonymous user", "email": "invalid@example.com", "role": "end-user"}


def _normalized(path: str) -> str:
    """``/api/v2/tickets/123`` -> ``/api/v2/tickets/{id}``: stable keys for ``fake.requests``."""
    return re.sub(r"/\d+(?=/|$)", "/{id}", path)


def _ticket_id(path: str) -> int | None:
    found = re.fullmatch(rf"{API}/tickets/(\d+)", path)
    return int(found[1]) if found else None


def _body(request: FakeRequest, root: str) -> dict[str, Any]:
    """The JSON body's `root` object. Like Zendesk (a Rails app), a body not sent as application/json is not read."""
    if "application/json" not in request.headers.get("content-type", "").lower():
        raise ApiError(400, "InvalidParameter", f"Expected a {root} object")  # fake's choice of wording
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        raise ApiError(400, "InvalidJSON", "The request body is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get(root), dict):
        raise ApiError(400, "InvalidParameter", f"Expected a {root} object")  # fake's choice of wording
    return body
