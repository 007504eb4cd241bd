"""An in-memory fake of the HubSpot CRM API, served over real HTTP.

Why a fake and not mocks: the bridge's HubSpot client (retries, 429 handling, 207 parsing,
search-then-create) must be tested against something that answers like HubSpot, including its
error bodies, rate limits and eventually consistent search. Facts come from REFERENCE.md §1; where
HubSpot's docs are silent the choice is marked "fake's choice".

Covers contacts, companies, deals, calls, tasks and notes under ``/crm/v3/objects`` and a
configurable date-versioned prefix (e.g. ``/crm/objects/2026-03``), the properties API, v3/v4
associations and the three rate limits. Search semantics live in :mod:`tests.fakes.hssearch`.

    fake = FakeHubSpot(requests_per_10s=5).start()
    contact_id = fake.add_contact(email="jane@example.com", phone="+14155550100")
    ...  # point the bridge at fake.url with token "test-token"
    assert fake.count("calls") == 1
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import unquote

from . import hssearch
from .httpserver import FakeRequest, FakeResponse, FakeServer

V3_OBJECTS = "/crm/v3/objects"
V3_PROPERTIES = "/crm/v3/properties"
V4_OBJECTS = "/crm/v4/objects"
V4_ASSOCIATIONS = "/crm/v4/associations"

MAX_BATCH_INPUTS = 100  # REFERENCE.md §1.1
MAX_TEXT_LENGTH = 65_536  # REFERENCE.md §1.2
MAX_UNIQUE_PROPERTIES = 10  # REFERENCE.md §1.3

OBJECT_TYPE_IDS = {
    "contacts": "0-1", "companies": "0-2", "deals": "0-3", "calls": "0-48", "tasks": "0-27", "notes": "0-46",
}  # fmt: skip
SINGULAR = {
    "contacts": "contact", "companies": "company", "deals": "deal", "calls": "call", "tasks": "task", "notes": "note",
}  # fmt: skip
_TYPE_ALIASES = {
    **{name: name for name in OBJECT_TYPE_IDS},
    **{type_id: name for name, type_id in OBJECT_TYPE_IDS.items()},
    **{single: name for name, single in SINGULAR.items()},
}

# Activities can't exist without a timeline position (REFERENCE.md §1.2, §1.6, §1.7).
REQUIRED_ON_CREATE = {"calls": ("hs_timestamp",), "tasks": ("hs_timestamp",), "notes": ("hs_timestamp",)}

# Returned when a read names no properties (REFERENCE.md §1.5 for contacts; the others as seen in HubSpot).
_ACTIVITY_DEFAULTS = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id")
DEFAULT_PROPERTIES = {
    "contacts": ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    "companies": ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
    "deals": ("amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate", "hs_object_id",
              "pipeline"),
    "calls": _ACTIVITY_DEFAULTS,
    "tasks": _ACTIVITY_DEFAULTS,
    "notes": _ACTIVITY_DEFAULTS,
}  # fmt: skip
# Always returned, even when the caller lists properties.
ALWAYS_RETURNED = {
    t: ("hs_object_id", "createdate", "lastmodifieddate") if t == "contacts"
    else ("hs_object_id", "hs_createdate", "hs_lastmodifieddate")
    for t in OBJECT_TYPE_IDS
}  # fmt: skip

# (from, to, typeId, inverse typeId, label). REFERENCE.md §1.4; call->company/deal are secondary sources.
_ASSOCIATION_TABLE = [
    ("calls", "contacts", 194, 193, None), ("calls", "companies", 182, 181, None), ("calls", "deals", 206, 205, None),
    ("tasks", "contacts", 204, 203, None), ("tasks", "companies", 192, 191, None), ("tasks", "deals", 216, 215, None),
    ("notes", "contacts", 202, 201, None), ("notes", "companies", 190, 189, None), ("notes", "deals", 214, 213, None),
    ("contacts", "companies", 279, 280, None), ("contacts", "companies", 1, 2, "Primary"),
    ("deals", "contacts", 3, 4, None), ("deals", "companies", 341, 342, None), ("deals", "companies", 5, 6, "Primary"),
]  # fmt: skip
# (from, to) -> [(typeId, label)], the default type first
ASSOCIATION_TYPES: dict[tuple[str, str], list[tuple[int, str | None]]] = {}
INVERSE_TYPE: dict[int, int] = {}
for _from, _to, _id, _inverse, _label in _ASSOCIATION_TABLE:
    ASSOCIATION_TYPES.setdefault((_from, _to), []).append((_id, _label))
    ASSOCIATION_TYPES.setdefault((_to, _from), []).append((_inverse, _label))
    INVERSE_TYPE[_id], INVERSE_TYPE[_inverse] = _inverse, _id
ASSOCIATION_CATEGORIES = ("HUBSPOT_DEFINED", "INTEGRATOR_DEFINED", "USER_DEFINED", "WORK")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Association(NamedTuple):
    """One stored edge. Reads work from either end (HubSpot associations are two-way)."""

    from_type: str
    from_id: str
    to_type: str
    to_id: str
    type_id: int


class ManualClock:
    """A settable clock for time-window tests, so they need no sleeping: ``FakeHubSpot(clock=clock)``."""

    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RollingWindow:
    """At most ``limit`` hits in any ``seconds``-long window (HubSpot's TEN_SECONDLY_ROLLING is rolling)."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.seconds = limit, seconds
        self._hits: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._hits and self._hits[0] <= now - self.seconds:
            self._hits.popleft()

    def try_acquire(self, now: float) -> bool:
        self._expire(now)
        if len(self._hits) >= self.limit:
            return False
        self._hits.append(now)
        return True

    def remaining(self, now: float) -> int:
        self._expire(now)
        return max(0, self.limit - len(self._hits))


class ApiError(Exception):
    """An error answer in HubSpot's shape: ``{status, message, correlationId, category, ...extra}``."""

    def __init__(self, status: int, category: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.category, self.message, self.extra = status, category, message, extra

    def body(self) -> dict[str, Any]:
        return {
            "status": "error",
            "message": self.message,
            "correlationId": str(uuid.uuid4()),
            "category": self.category,
            **self.extra,
        }

    def response(self) -> FakeResponse:
        return FakeResponse.json(self.status, self.body())

    def batch_entry(self) -> dict[str, Any]:
        """The StandardError form used inside 207 bodies."""
        return {
            "status": "error",
            "category": self.category,
            "message": self.message,
            "context": self.extra.get("context", {}),
            "errors": [],
            "links": {},
        }


def _property(
    name: str,
    type_: str = "string",
    field: str = "text",
    *,
    options: tuple[str, ...] = (),
    read_only: bool = False,
    unique: bool = False,
    external_options: bool = False,
    label: str | None = None,
    group: str = "",
) -> dict[str, Any]:
    """A property definition as the properties API returns it."""
    return {
        "name": name,
        "label": label or name.replace("_", " ").title(),
        "type": type_,
        "fieldType": field,
        "groupName": group,
        "description": "",
        "hidden": False,
        "hasUniqueValue": unique,
        "options": [
            {"label": o.replace("_", " ").title(), "value": o, "displayOrder": i, "hidden": False}
            for i, o in enumerate(options)
        ],
        "externalOptions": external_options,
        "calculated": read_only,
        "modificationMetadata": {"archivable": not read_only, "readOnlyDefinition": True, "readOnlyValue": read_only},
    }


def _text(names: str) -> list[dict[str, Any]]:
    return [_property(n) for n in names.split()]


def _enum(name: str, options: str) -> dict[str, Any]:
    return _property(name, "enumeration", "select", options=tuple(options.split()))


def _standard_properties(object_type: str) -> list[dict[str, Any]]:
    """The seeded properties of each type (REFERENCE.md §1.2, §1.5-1.7)."""
    system = [
        _property("hs_object_id", "number", "number", read_only=True),
        _property("hs_createdate", "datetime", "date", read_only=True),
        _property("hs_lastmodifieddate", "datetime", "date", read_only=True),
        _property("hubspot_owner_id", "enumeration", "select", external_options=True),  # owners live elsewhere
    ]
    timestamp = _property("hs_timestamp", "datetime", "date")
    createdate = _property("createdate", "datetime", "date")
    if object_type == "contacts":
        return [
            *system,
            *_text("email hs_additional_emails firstname lastname"),
            _property("phone", field="phonenumber"),
            _property("mobilephone", field="phonenumber"),
            _enum("lifecyclestage", "subscriber lead marketingqualifiedlead salesqualifiedlead opportunity customer "
                  "evangelist other"),
            _enum("hs_lead_status", "NEW OPEN IN_PROGRESS OPEN_DEAL UNQUALIFIED ATTEMPTED_TO_CONTACT CONNECTED "
                  "BAD_TIMING"),
            _property("lastmodifieddate", "datetime", "date", read_only=True),
            createdate,
            _property("associatedcompanyid", "number", "number"),
            _property("hs_searchable_calculated_phone_number", read_only=True),
            _property("hs_searchable_calculated_mobile_number", read_only=True),
        ]  # fmt: skip
    if object_type == "calls":
        return [
            *system,
            timestamp,
            *_text("hs_call_title hs_call_body hs_call_disposition hs_call_recording_url hs_call_from_number "
                   "hs_call_to_number hs_call_callee_object_id hs_call_callee_object_type_id hs_activity_type "
                   "hs_attachment_ids"),
            _property("hs_call_duration", "number", "number"),  # milliseconds (REFERENCE.md §0.6)
            _enum("hs_call_status", "BUSY CALLING_CRM_USER CANCELED COMPLETED CONNECTING FAILED IN_PROGRESS "
                  "NO_ANSWER QUEUED RINGING"),
            _enum("hs_call_direction", "INBOUND OUTBOUND"),
            _enum("hs_call_source", "INTEGRATIONS_PLATFORM"),
            _property("hs_call_has_voicemail", "bool", "booleancheckbox", options=("true", "false")),
        ]  # fmt: skip
    if object_type == "tasks":
        return [
            *system,
            timestamp,
            *_text("hs_task_subject hs_task_body hs_task_reminders"),
            _enum("hs_task_status", "NOT_STARTED COMPLETED IN_PROGRESS WAITING DEFERRED"),
            _enum("hs_task_type", "EMAIL CALL TODO"),
            _enum("hs_task_priority", "NONE LOW MEDIUM HIGH"),
        ]
    if object_type == "notes":
        return [*system, timestamp, *_text("hs_note_body hs_attachment_ids")]
    if object_type == "companies":
        return [*system, *_text("name domain phone website city country industry description"), createdate]
    if object_type == "deals":
        return [
            *system,
            *_text("dealname dealstage pipeline description"),
            _property("amount", "number", "number"),
            _property("closedate", "datetime", "date"),
            createdate,
        ]
    raise KeyError(object_type)


def _iso(epoch_seconds: float) -> str:
    return _iso_ms(round(epoch_seconds * 1000))


def _iso_ms(epoch_ms: int) -> str:
    """HubSpot's timestamp format, e.g. ``2026-11-20T10:00:00.123Z`` (exact: no float rounding)."""
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _normalize_path(path: str) -> str:
    """``/crm/v3/objects/calls/123`` -> ``/crm/v3/objects/calls/{id}``: stable keys for ``fake.requests``."""
    return re.sub(r"/\d+(?=/|$)", "/{id}", path.rstrip("/") or "/")


def _invalid(name: str, error: str, message: str) -> dict[str, Any]:
    return {"isValid": False, "message": message, "error": error, "name": name}


class FakeHubSpot(FakeServer):
    """The fake HubSpot portal. All state is public so tests can seed and inspect it.

    State (guard with ``fake.lock`` when touching it from a test while requests run):
      ``objects[type][id]`` -> ``{"id","properties","createdAt","updatedAt","archived"}``;
      ``associations`` (list of :class:`Association`); ``property_definitions[type][name]``;
      ``throttled`` (Counter by policy: TEN_SECONDLY_ROLLING, SECONDLY, DAILY);
      ``requests`` (Counter of "METHOD /normalized/{id}" for requests that passed auth and rate
      limits); ``total_requests`` (every request the socket saw, faults, 401s and 429s included).
    Knobs: ``token``, ``search_lag_seconds`` (indexing delay), ``strict_properties`` (False makes
    unknown properties ignored, as the calls doc claims, instead of a 400).
    """

    def __init__(
        self,
        token: str = "test-token",
        objects_path: str = V3_OBJECTS,
        requests_per_10s: int | None = None,
        search_per_second: int | None = None,
        daily_limit: int | None = None,
        *,
        properties_path: str | None = None,
        clock: Callable[[], float] = time.time,
        **server_kwargs: Any,
    ) -> None:
        super().__init__(**server_kwargs)
        self.token = token
        self.objects_path = objects_path.rstrip("/")
        # /crm/objects/2026-03 pairs with /crm/properties/2026-03.
        self.properties_path = (properties_path or self.objects_path.replace("/objects", "/properties", 1)).rstrip("/")
        self.clock = clock
        self.search_lag_seconds = 0.0
        self.strict_properties = True
        self.requests_per_10s, self.search_per_second = requests_per_10s, search_per_second
        self.daily_limit = daily_limit
        self._ten_second = RollingWindow(requests_per_10s, 10.0) if requests_per_10s else None
        self._secondly = RollingWindow(search_per_second, 1.0) if search_per_second else None
        self._daily_used, self._daily_day = 0, None
        self.throttled: Counter[str] = Counter()
        self.objects: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in OBJECT_TYPE_IDS}
        self.associations: list[Association] = []
        self.property_definitions = {t: {p["name"]: p for p in _standard_properties(t)} for t in OBJECT_TYPE_IDS}
        self._ids = itertools.count(1001)  # one sequence for all types, so a mixed-up id 404s instead of hitting
        self._indexed_at: dict[str, float] = {}  # id -> clock time of creation (search lag)

    def start(self) -> FakeHubSpot:
        super().start()
        # The base handler writes headers and body separately; with Nagle on, every answer then
        # waits ~40 ms for a delayed ACK. The handler class is made per start(), so this is local.
        assert self._server is not None
        self._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        return self

    # -- test helpers -------------------------------------------------------------------------
    @property
    def total_requests(self) -> int:
        return len(self.request_log)

    def add_object(self, object_type: str, **props: Any) -> str:
        """Seed an object without HTTP or rate limits; returns its id.

        Values are normalised as on a write (so a bad enum value still raises), but unknown
        properties are defined as strings on the fly instead of failing: seeding should be terse.
        """
        object_type = self._type(object_type)
        with self.lock:
            clean: dict[str, str] = {}
            for name, raw in props.items():
                if name not in self.property_definitions[object_type]:
                    self.define_property(object_type, name)
                clean[name] = self._coerce(self.property_definitions[object_type][name], raw)
            return self._store_new(object_type, clean, [])["id"]

    def add_contact(self, **props: Any) -> str:
        return self.add_object("contacts", **props)

    def add_company(self, **props: Any) -> str:
        return self.add_object("companies", **props)

    def add_deal(self, **props: Any) -> str:
        return self.add_object("deals", **props)

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str, type_id: int | None = None) -> None:
        """Seed an association (default type when ``type_id`` is None)."""
        from_type, to_type = self._type(from_type), self._type(to_type)
        with self.lock:
            self._add_association(
                from_type, str(from_id), to_type, str(to_id), type_id or ASSOCIATION_TYPES[(from_type, to_type)][0][0]
            )

    def associated_ids(self, from_type: str, from_id: str, to_type: str) -> list[str]:
        with self.lock:
            return list(self._associated(self._type(from_type), str(from_id), self._type(to_type)))

    def properties_of(self, object_type: str, object_id: str) -> dict[str, str]:
        with self.lock:
            return dict(self.objects[self._type(object_type)][str(object_id)]["properties"])

    def count(self, object_type: str) -> int:
        with self.lock:
            return len(self.objects[self._type(object_type)])

    def define_property(
        self,
        object_type: str,
        name: str,
        unique: bool = False,
        type_: str = "string",
        field_type: str = "text",
        options: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Define (or redefine) a custom property, e.g. a unique ``agni_call_session_id`` for upserts."""
        definition = _property(name, type_, field_type, options=options, unique=unique)
        with self.lock:
            self.property_definitions[self._type(object_type)][name] = definition
        return definition

    # -- request entry ------------------------------------------------------------------------
    def handle(self, request: FakeRequest) -> FakeResponse:
        with self.lock:
            if not self._authorized(request):
                return ApiError(
                    401,
                    "INVALID_AUTHENTICATION",
                    "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                    "and you can find more details at https://developers.hubspot.com/docs/methods/auth/"
                    "oauth-overview",
                ).response()
            is_search = request.method == "POST" and request.path.rstrip("/").endswith("/search")
            now = self.clock()
            throttled = self._throttle(is_search, now)
            if throttled is not None:
                return throttled
            self.requests[f"{request.method} {_normalize_path(request.path)}"] += 1
            try:
                response = self._route(request)
            except ApiError as error:
                response = error.response()
            if not is_search:  # HubSpot sends no rate-limit headers on search (REFERENCE.md §1.9)
                response.headers.update(self._rate_headers(now))
            return response

    def _authorized(self, request: FakeRequest) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token == self.token

    # -- rate limits --------------------------------------------------------------------------
    def _throttle(self, is_search: bool, now: float) -> FakeResponse | None:
        """Apply the daily, search-secondly and ten-secondly limits; a refused request uses no quota."""
        if self.daily_limit is not None:
            day = int(now // 86_400)  # the fake resets at UTC midnight; HubSpot uses the portal's time zone
            if day != self._daily_day:
                self._daily_day, self._daily_used = day, 0
            if self._daily_used >= self.daily_limit:
                return self._rate_limited("DAILY", "You have reached your daily limit.", now)
        if is_search and self._secondly is not None and not self._secondly.try_acquire(now):
            return self._rate_limited("SECONDLY", "You have reached your secondly limit.", now)
        if not is_search and self._ten_second is not None and not self._ten_second.try_acquire(now):
            return self._rate_limited("TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit.", now)
        self._daily_used += 1
        return None

    def _rate_limited(self, policy: str, message: str, now: float) -> FakeResponse:
        self.throttled[policy] += 1
        body: dict[str, Any] = {
            "status": "error",
            "message": message,
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
        }
        if policy != "SECONDLY":  # the search limit's body has no policyName (REFERENCE.md §1.5)
            body.update(policyName=policy, requestId=uuid.uuid4().hex)
        # No Retry-After: HubSpot documents none for API 429s (REFERENCE.md §1.9).
        return FakeResponse.json(429, body, {} if policy == "SECONDLY" else self._rate_headers(now))

    def _rate_headers(self, now: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._ten_second is not None:
            headers["X-HubSpot-RateLimit-Max"] = str(self._ten_second.limit)
            headers["X-HubSpot-RateLimit-Remaining"] = str(self._ten_second.remaining(now))
            headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = "10000"
        if self.daily_limit is not None:
            headers["X-HubSpot-RateLimit-Daily"] = str(self.daily_limit)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(max(0, self.daily_limit - self._daily_used))
        return headers

    # -- routing ------------------------------------------------------------------------------
    def _route(self, request: FakeRequest) -> FakeResponse:
        path = request.path.rstrip("/")
        for prefix in dict.fromkeys((V3_OBJECTS, self.objects_path, V4_OBJECTS)):
            if path.startswith(prefix + "/"):
                segments = [unquote(s) for s in path[len(prefix) + 1 :].split("/")]
                return self._route_objects(request, segments, prefix)
        for prefix in dict.fromkeys((V3_PROPERTIES, self.properties_path)):
            if path.startswith(prefix + "/"):
                return self._route_properties(request, [unquote(s) for s in path[len(prefix) + 1 :].split("/")])
        match = re.fullmatch(V4_ASSOCIATIONS + r"/([^/]+)/([^/]+)/batch/associate/default", path)
        if match and request.method == "POST":
            return self._batch_associate(self._type(match[1]), self._type(match[2]), self._body(request))
        raise ApiError(404, "OBJECT_NOT_FOUND", f"No route for {request.method} {request.path}")

    def _route_objects(self, request: FakeRequest, seg: list[str], prefix: str) -> FakeResponse:
        object_type, method, n = self._type(seg[0]), request.method, len(seg)
        if n >= 4 and seg[2] == "associations":
            return self._route_associations(request, object_type, seg, v3=prefix == V3_OBJECTS)
        if prefix == V4_OBJECTS:
            raise ApiError(404, "OBJECT_NOT_FOUND", "v4 object paths serve associations only")
        query = request.query
        if n == 1 and method == "POST":
            return self._create(object_type, self._body(request))
        if n == 1 and method == "GET":
            return self._list(object_type, query)
        if n == 2 and seg[1] == "search" and method == "POST":
            return self._search(object_type, self._body(request))
        if n == 3 and seg[1] == "batch" and method == "POST":
            return self._batch(object_type, seg[2], self._body(request))
        if n == 2 and method in ("GET", "PATCH", "DELETE"):
            obj = self._find(object_type, seg[1], (query.get("idProperty") or [None])[0])
            if method == "GET":
                payload = self._serialize(object_type, obj, _query_list(query, "properties"))
                wanted = _query_list(query, "associations")
                if wanted:
                    payload["associations"] = self._v3_associations_block(object_type, obj["id"], wanted)
                return FakeResponse.json(200, payload)
            if method == "PATCH":
                return FakeResponse.json(200, self._update(object_type, obj, self._body(request)))
            self._archive(object_type, obj["id"])
            return FakeResponse(204)
        raise ApiError(405 if n <= 3 else 404, "VALIDATION_ERROR", f"{method} is not supported on {request.path}")

    @staticmethod
    def _body(request: FakeRequest) -> Any:
        try:
            return request.json()
        except ValueError as exc:
            raise ApiError(400, "VALIDATION_ERROR", f"Invalid input JSON: {exc}") from None

    @staticmethod
    def _type(name: str) -> str:
        object_type = _TYPE_ALIASES.get(name.lower())
        if object_type is None:
            raise ApiError(400, "VALIDATION_ERROR", f"Unable to infer object type from: {name}")
        return object_type

    def _find(self, object_type: str, key: str, id_property: str | None = None) -> dict[str, Any]:
        if id_property and id_property != "hs_object_id":
            for obj in self.objects[object_type].values():
                if _same_value(id_property, obj["properties"].get(id_property), key):
                    return obj
        elif key in self.objects[object_type]:
            return self.objects[object_type][key]
        raise ApiError(404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.")

    # -- property validation ------------------------------------------------------------------
    def _coerce(self, definition: dict[str, Any], raw: Any) -> str:
        """HubSpot stores every value as a string; None clears, bools become "true"/"false"."""
        if raw is None:
            return ""
        if isinstance(raw, bool):
            return "true" if raw else "false"
        if isinstance(raw, float) and raw.is_integer():
            return str(int(raw))
        if isinstance(raw, (int, float, str)):
            value = str(raw)
        else:
            raise ValueError("INVALID_TYPE", f"{definition['name']} must be a string, number or boolean")
        if value == "":
            return value
        kind = definition["type"]
        if len(value) > MAX_TEXT_LENGTH:
            raise ValueError(
                "INVALID_PROPERTY_LENGTH",  # fake's choice of code; the limit is documented
                f"{definition['name']} is {len(value)} characters; the maximum is {MAX_TEXT_LENGTH}",
            )
        if kind == "number" and not re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", value):
            raise ValueError("INVALID_FLOAT", f"{value!r} is not a valid number")  # no stray spaces since 2025
        if kind in ("datetime", "date"):
            ms = hssearch.to_epoch_ms(value)
            try:
                # An epoch in *seconds* lands in January 1970, as it does on HubSpot.
                value = _iso_ms(ms)  # type: ignore[arg-type]
            except (TypeError, OverflowError):
                raise ValueError("INVALID_LONG", f"{value!r} is not a datetime (epoch ms or ISO-8601 UTC)") from None
            if kind == "date":
                value = value[:10]
        if kind == "bool":
            if value.lower() not in ("true", "false"):
                raise ValueError("INVALID_BOOLEAN", f"{value!r} is not a valid boolean")
            value = value.lower()
        allowed = [o["value"] for o in definition["options"]]
        if kind == "enumeration" and allowed and not definition["externalOptions"] and value not in allowed:
            raise ValueError("INVALID_OPTION", f"{value} was not one of the allowed options: {allowed}")
        return value

    def _validate(self, object_type: str, props: Any) -> dict[str, str]:
        """Clean property values, or raise HubSpot's 400 "Property values were not valid" error."""
        if props is None:
            return {}
        if not isinstance(props, dict):
            raise ApiError(400, "VALIDATION_ERROR", "Invalid input JSON: properties must be an object")
        definitions, clean, errors = self.property_definitions[object_type], {}, []
        for name, raw in props.items():
            definition = definitions.get(name)
            if definition is None:
                if self.strict_properties:
                    errors.append(_invalid(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
                continue
            if definition["modificationMetadata"]["readOnlyValue"]:
                continue  # "HubSpot will ignore values for read-only ... properties" (REFERENCE.md §1.2)
            try:
                clean[name] = self._coerce(definition, raw)
            except ValueError as exc:
                errors.append(_invalid(name, exc.args[0], exc.args[1]))
        if errors:
            raise ApiError(
                400, "VALIDATION_ERROR", "Property values were not valid: " + json.dumps(errors, separators=(",", ":"))
            )
        return clean

    @staticmethod
    def _require(object_type: str, props: dict[str, str]) -> None:
        missing = [name for name in REQUIRED_ON_CREATE.get(object_type, ()) if not props.get(name)]
        if missing:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"Error creating {SINGULAR[object_type].upper()}. Some required properties were not set.",
                context={"properties": missing},
            )

    def _check_unique(self, object_type: str, props: dict[str, str], own_id: str | None) -> None:
        """Unique values: contact email (HubSpot's 409) and hasUniqueValue properties (fake's choice: 409 too)."""
        for name, value in props.items():
            unique = self.property_definitions[object_type][name]["hasUniqueValue"]
            if not value or not (unique or (object_type == "contacts" and name == "email")):
                continue
            for other in self.objects[object_type].values():
                if other["id"] != own_id and _same_value(name, other["properties"].get(name), value):
                    if name == "email":
                        raise ApiError(409, "CONFLICT", f"Contact already exists. Existing ID: {other['id']}")
                    raise ApiError(
                        409,
                        "CONFLICT",
                        f'{value} already has a value for unique property "{name}" on object {other["id"]}',
                    )

    # -- writes -------------------------------------------------------------------------------
    def _prepare_create(self, object_type: str, item: Any) -> tuple[dict[str, str], list[tuple[str, str, int]]]:
        """Checks that fail a whole request (or a whole batch): bad values, missing required, bad type ids."""
        if not isinstance(item, dict):
            raise ApiError(400, "VALIDATION_ERROR", "Invalid input JSON: expected an object")
        props = self._validate(object_type, item.get("properties"))
        self._require(object_type, props)
        links = []
        for association in item.get("associations") or []:
            if not isinstance(association, dict):
                raise ApiError(400, "VALIDATION_ERROR", "Invalid input JSON: each association must be an object")
            to_id = str((association.get("to") or {}).get("id", ""))
            for spec in association.get("types") or []:
                to_type = self._type_for_id(to_id)
                links.append((to_type, to_id, self._check_type_id(object_type, to_type, spec)))
        return props, links

    def _type_for_id(self, object_id: str) -> str:
        for object_type, objects in self.objects.items():
            if object_id in objects:
                return object_type
        # Ids are unique across types here, so an unknown id means a missing target.
        raise ApiError(400, "VALIDATION_ERROR", f"One or more associations are invalid: {object_id} does not exist")

    @staticmethod
    def _check_type_id(from_type: str, to_type: str, spec: Any) -> int:
        spec = spec if isinstance(spec, dict) else {}
        category, type_id = spec.get("associationCategory"), spec.get("associationTypeId")
        valid = [tid for tid, _ in ASSOCIATION_TYPES.get((from_type, to_type), [])]
        if category not in ASSOCIATION_CATEGORIES or type_id not in valid:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"{category} {type_id} is not a valid association type between {from_type} and {to_type}; "
                f"valid HUBSPOT_DEFINED ids: {valid}",
            )
        return int(type_id)

    def _store_new(self, object_type: str, props: dict[str, str], links: list[tuple[str, str, int]]) -> dict[str, Any]:
        object_id, now = str(next(self._ids)), self.clock()
        stamp = _iso(now)
        props = {name: value for name, value in props.items() if value != ""}
        props.update(hs_object_id=object_id, hs_createdate=stamp, hs_lastmodifieddate=stamp)
        if object_type == "contacts":
            props.setdefault("createdate", stamp)
            props["lastmodifieddate"] = stamp
        elif object_type in ("companies", "deals"):
            props.setdefault("createdate", stamp)
        obj = {"id": object_id, "properties": props, "createdAt": stamp, "updatedAt": stamp, "archived": False}
        self._computed(object_type, props)
        self.objects[object_type][object_id] = obj
        self._indexed_at[object_id] = now
        for to_type, to_id, type_id in links:
            self._add_association(object_type, object_id, to_type, to_id, type_id)
        return obj

    def _apply_update(self, object_type: str, obj: dict[str, Any], props: dict[str, str]) -> dict[str, Any]:
        for name, value in props.items():
            if value == "":
                obj["properties"].pop(name, None)  # "" clears (REFERENCE.md §1.2)
            else:
                obj["properties"][name] = value
        stamp = _iso(self.clock())
        obj["updatedAt"] = obj["properties"]["hs_lastmodifieddate"] = stamp
        if object_type == "contacts":
            obj["properties"]["lastmodifieddate"] = stamp
        self._computed(object_type, obj["properties"])
        return obj

    @staticmethod
    def _computed(object_type: str, props: dict[str, str]) -> None:
        """HubSpot-calculated contact properties used for phone lookups (REFERENCE.md §1.5)."""
        if object_type != "contacts":
            return
        for source, target in (
            ("phone", "hs_searchable_calculated_phone_number"),
            ("mobilephone", "hs_searchable_calculated_mobile_number"),
        ):
            digits = hssearch.national_digits(props.get(source))
            if digits:
                props[target] = digits
            else:
                props.pop(target, None)

    def _create(self, object_type: str, body: Any) -> FakeResponse:
        props, links = self._prepare_create(object_type, body)
        self._check_unique(object_type, props, None)
        created = self._store_new(object_type, props, links)
        return FakeResponse.json(201, self._serialize(object_type, created, full=True))

    def _update(self, object_type: str, obj: dict[str, Any], body: Any) -> dict[str, Any]:
        props = self._validate(object_type, (body or {}).get("properties") if isinstance(body, dict) else body)
        self._check_unique(object_type, props, obj["id"])
        return self._serialize(object_type, self._apply_update(object_type, obj, props), full=True)

    def _archive(self, object_type: str, object_id: str) -> None:
        del self.objects[object_type][object_id]
        self.associations = [a for a in self.associations if object_id not in (a.from_id, a.to_id)]

    # -- batch --------------------------------------------------------------------------------
    def _batch(self, object_type: str, operation: str, body: Any) -> FakeResponse:
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
            raise ApiError(400, "VALIDATION_ERROR", "Invalid input JSON: inputs must be a list of objects")
        if len(inputs) > MAX_BATCH_INPUTS:
            raise ApiError(
                400, "VALIDATION_ERROR", f"Batch input size {len(inputs)} exceeds the limit of {MAX_BATCH_INPUTS}"
            )
        if operation in ("update", "upsert", "archive"):
            ids = [str(i.get("id")) for i in inputs]
            if len(set(ids)) != len(ids):
                raise ApiError(400, "VALIDATION_ERROR", "Duplicate IDs found in batch input")
        handler = {
            "create": self._batch_create,
            "update": self._batch_update,
            "read": self._batch_read,
            "upsert": self._batch_upsert,
            "archive": self._batch_archive,
        }.get(operation)
        if handler is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unknown batch operation {operation!r}")
        return handler(object_type, body, inputs)

    def _batch_response(
        self, ok_status: int, results: list[Any], errors: list[ApiError], missing: list[str], object_type: str
    ) -> FakeResponse:
        entries = [e.batch_entry() for e in errors]
        if missing:  # HubSpot reports all unknown ids of a batch in one error
            entries.append(
                ApiError(
                    404,
                    "OBJECT_NOT_FOUND",
                    f"Could not get some {object_type} objects, they may be deleted or not exist. "
                    "Check that ids are valid.",
                    context={"ids": missing},
                ).batch_entry()
            )
        stamp = _iso(self.clock())
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": stamp, "completedAt": stamp}
        if entries:
            body.update(numErrors=len(entries), errors=entries)
            return FakeResponse.json(207, body)
        return FakeResponse.json(ok_status, body)

    def _batch_create(self, object_type: str, body: Any, inputs: list[dict[str, Any]]) -> FakeResponse:
        prepared = [self._prepare_create(object_type, item) for item in inputs]  # any invalid input fails all
        results, errors = [], []
        for props, links in prepared:
            try:
                self._check_unique(object_type, props, None)
            except ApiError as error:
                errors.append(error)
                continue
            results.append(self._serialize(object_type, self._store_new(object_type, props, links), full=True))
        return self._batch_response(201, results, errors, [], object_type)

    def _batch_update(self, object_type: str, body: Any, inputs: list[dict[str, Any]]) -> FakeResponse:
        prepared = [(str(item.get("id")), self._validate(object_type, item.get("properties"))) for item in inputs]
        id_property = body.get("idProperty") or (inputs[0].get("idProperty") if inputs else None)
        results, errors, missing = [], [], []
        for key, props in prepared:
            try:
                obj = self._find(object_type, key, id_property)
            except ApiError:
                missing.append(key)
                continue
            try:
                self._check_unique(object_type, props, obj["id"])
            except ApiError as error:
                errors.append(error)
                continue
            results.append(self._serialize(object_type, self._apply_update(object_type, obj, props), full=True))
        return self._batch_response(200, results, errors, missing, object_type)

    def _batch_read(self, object_type: str, body: Any, inputs: list[dict[str, Any]]) -> FakeResponse:
        results, missing = [], []
        for item in inputs:
            try:
                obj = self._find(object_type, str(item.get("id")), body.get("idProperty"))
            except ApiError:
                missing.append(str(item.get("id")))
                continue
            results.append(self._serialize(object_type, obj, body.get("properties")))
        return self._batch_response(200, results, [], missing, object_type)

    def _batch_upsert(self, object_type: str, body: Any, inputs: list[dict[str, Any]]) -> FakeResponse:
        """Create-or-update keyed by a unique property, sent per input (REFERENCE.md §1.1, §1.3)."""
        prepared = []
        for item in inputs:
            id_property = item.get("idProperty") or body.get("idProperty")
            definition = self.property_definitions[object_type].get(id_property or "")
            by_email = (object_type, id_property) == ("contacts", "email")  # contacts upsert by email too
            if definition is None or not (definition["hasUniqueValue"] or by_email):
                raise ApiError(
                    400, "VALIDATION_ERROR", f"idProperty {id_property!r} is not a unique property of {object_type}"
                )
            props = self._validate(object_type, item.get("properties"))
            key = self._coerce(definition, item.get("id"))
            if not key:
                raise ApiError(400, "VALIDATION_ERROR", "Each upsert input needs an id")
            prepared.append((id_property, key, props))
        results, errors = [], []
        for id_property, key, props in prepared:
            try:
                try:
                    obj, new = self._find(object_type, key, id_property), False
                except ApiError:
                    obj, new = None, True
                if obj is None:
                    props = {**props, id_property: key}
                    self._require(object_type, props)
                    self._check_unique(object_type, props, None)
                    obj = self._store_new(object_type, props, [])
                else:
                    self._check_unique(object_type, props, obj["id"])
                    self._apply_update(object_type, obj, props)
            except ApiError as error:
                errors.append(error)
                continue
            results.append({**self._serialize(object_type, obj, full=True), "new": new})
        return self._batch_response(200, results, errors, [], object_type)

    def _batch_archive(self, object_type: str, body: Any, inputs: list[dict[str, Any]]) -> FakeResponse:
        for item in inputs:
            if str(item.get("id")) in self.objects[object_type]:
                self._archive(object_type, str(item.get("id")))
        return FakeResponse(204)

    # -- reads --------------------------------------------------------------------------------
    def _serialize(
        self, object_type: str, obj: dict[str, Any], names: list[str] | None = None, *, full: bool = False
    ) -> dict[str, Any]:
        """A SimplePublicObject. Writes echo every stored value; reads return the asked-for (or default)
        properties, unset ones as null, unknown names left out."""
        stored = obj["properties"]
        if full:
            props = dict(stored)
        else:
            wanted = dict.fromkeys([*(names or DEFAULT_PROPERTIES[object_type]), *ALWAYS_RETURNED[object_type]])
            defined = self.property_definitions[object_type]
            props = {name: stored.get(name) for name in wanted if name in defined or name in stored}
        return {
            "id": obj["id"],
            "properties": props,
            "createdAt": obj["createdAt"],
            "updatedAt": obj["updatedAt"],
            "archived": False,
        }

    def _list(self, object_type: str, query: dict[str, list[str]]) -> FakeResponse:
        limit = int((query.get("limit") or ["10"])[0])
        offset = int((query.get("after") or ["0"])[0])
        objects = list(self.objects[object_type].values())
        names = _query_list(query, "properties")
        page = [self._serialize(object_type, o, names) for o in objects[offset : offset + limit]]
        body: dict[str, Any] = {"results": page}
        if offset + limit < len(objects):
            body["paging"] = {"next": {"after": str(offset + limit)}}
        return FakeResponse.json(200, body)

    def _search(self, object_type: str, body: Any) -> FakeResponse:
        def prop_type(name: str) -> str | None:
            definition = self.property_definitions[object_type].get(name)
            return definition["type"] if definition else None

        try:
            query = hssearch.parse_request(body, prop_type)
        except hssearch.SearchError as exc:
            raise ApiError(400, "VALIDATION_ERROR", str(exc)) from None
        now = self.clock()
        visible = [
            (object_id, obj["properties"])
            for object_id, obj in self.objects[object_type].items()
            if now - self._indexed_at.get(object_id, float("-inf")) >= self.search_lag_seconds
        ]  # objects younger than search_lag_seconds are not indexed yet

        def associated(object_id: str, to_type: str) -> set[str]:
            return set(self._associated(object_type, object_id, self._type(to_type)))

        total, ids, next_offset = hssearch.run(visible, query, prop_type, associated)
        payload: dict[str, Any] = {
            "total": total,
            "results": [self._serialize(object_type, self.objects[object_type][i], query.properties) for i in ids],
        }
        if next_offset is not None:
            payload["paging"] = {"next": {"after": str(next_offset)}}
        return FakeResponse.json(200, payload)

    # -- associations -------------------------------------------------------------------------
    def _add_association(self, from_type: str, from_id: str, to_type: str, to_id: str, type_id: int) -> None:
        edge = Association(from_type, from_id, to_type, to_id, type_id)
        reverse = Association(to_type, to_id, from_type, from_id, INVERSE_TYPE.get(type_id, type_id))
        if edge not in self.associations and reverse not in self.associations:
            self.associations.append(edge)

    def _associated(self, from_type: str, from_id: str, to_type: str) -> dict[str, list[int]]:
        """to id -> type ids, read from either end of each stored edge."""
        found: dict[str, list[int]] = {}
        for a in self.associations:
            if (a.from_type, a.from_id, a.to_type) == (from_type, from_id, to_type):
                found.setdefault(a.to_id, []).append(a.type_id)
            elif (a.to_type, a.to_id, a.from_type) == (from_type, from_id, to_type):
                found.setdefault(a.from_id, []).append(INVERSE_TYPE.get(a.type_id, a.type_id))
        return found

    def _route_associations(self, request: FakeRequest, from_type: str, seg: list[str], *, v3: bool) -> FakeResponse:
        from_id, method, n = seg[1], request.method, len(seg)
        self._find(from_type, from_id)
        if n == 4 and method == "GET":
            to_type = self._type(seg[3])
            found = self._associated(from_type, from_id, to_type)
            if v3:
                block = self._v3_associations_block(from_type, from_id, [seg[3]])
                return FakeResponse.json(200, block.get(seg[3], {"results": []}))
            results = [
                {
                    "toObjectId": int(to_id),
                    "associationTypes": [
                        {"category": "HUBSPOT_DEFINED", "typeId": t, "label": self._label(from_type, to_type, t)}
                        for t in types
                    ],
                }
                for to_id, types in found.items()
            ]
            return FakeResponse.json(200, {"results": results})
        if n == 6 and seg[3] == "default" and method == "PUT":  # v4 (and 2026-03) default association
            to_type, to_id = self._type(seg[4]), seg[5]
            self._find(to_type, to_id)
            type_id = ASSOCIATION_TYPES.get((from_type, to_type), [(None, None)])[0][0]
            if type_id is None:
                raise ApiError(400, "VALIDATION_ERROR", f"No default association from {from_type} to {to_type}")
            self._add_association(from_type, from_id, to_type, to_id, type_id)
            stamp = _iso(self.clock())
            spec = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}
            return FakeResponse.json(
                200,
                {
                    "status": "COMPLETE",
                    "results": [{"from": {"id": from_id}, "to": {"id": to_id}, "associationSpec": spec}],
                    "startedAt": stamp,
                    "completedAt": stamp,
                },
            )
        if n in (5, 6) and method == "PUT":  # v4 labelled (body: [AssociationSpec]) or v3 .../{toId}/{typeId}
            to_type, to_id = self._type(seg[3]), seg[4]
            self._find(to_type, to_id)
            if n == 6:
                specs: Any = [
                    {
                        "associationCategory": "HUBSPOT_DEFINED",
                        "associationTypeId": int(seg[5]) if seg[5].isdigit() else seg[5],
                    }
                ]
            else:
                specs = self._body(request)
            if not isinstance(specs, list) or not specs:
                raise ApiError(400, "VALIDATION_ERROR", "Expected a non-empty list of association specs")
            for spec in specs:
                self._add_association(from_type, from_id, to_type, to_id, self._check_type_id(from_type, to_type, spec))
            return FakeResponse.json(
                201 if n == 5 else 200,
                {
                    "fromObjectTypeId": OBJECT_TYPE_IDS[from_type],
                    "fromObjectId": int(from_id),
                    "toObjectTypeId": OBJECT_TYPE_IDS[to_type],
                    "toObjectId": int(to_id),
                    "labels": [],
                },
            )
        if n == 5 and method == "DELETE":
            pair = {(from_type, from_id), (self._type(seg[3]), seg[4])}
            self.associations = [
                a for a in self.associations if {(a.from_type, a.from_id), (a.to_type, a.to_id)} != pair
            ]
            return FakeResponse(204)
        raise ApiError(404, "OBJECT_NOT_FOUND", f"No route for {method} {request.path}")

    @staticmethod
    def _label(from_type: str, to_type: str, type_id: int) -> str | None:
        return dict(ASSOCIATION_TYPES.get((from_type, to_type), [])).get(type_id)

    def _v3_associations_block(self, from_type: str, from_id: str, to_names: list[str]) -> dict[str, Any]:
        block = {}
        for name in to_names:
            to_type = self._type(name)
            results = [
                {"id": to_id, "type": f"{SINGULAR[from_type]}_to_{SINGULAR[to_type]}"}
                for to_id in self._associated(from_type, from_id, to_type)
            ]
            if results:
                block[name] = {"results": results}
        return block

    def _batch_associate(self, from_type: str, to_type: str, body: Any) -> FakeResponse:
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
            raise ApiError(400, "VALIDATION_ERROR", "Invalid input JSON: inputs must be a list of objects")
        type_id = ASSOCIATION_TYPES.get((from_type, to_type), [(None, None)])[0][0]
        if type_id is None:
            raise ApiError(400, "VALIDATION_ERROR", f"No default association from {from_type} to {to_type}")
        results, missing = [], []
        for item in inputs:
            from_id, to_id = str((item.get("from") or {}).get("id")), str((item.get("to") or {}).get("id"))
            absent = [i for i, t in ((from_id, from_type), (to_id, to_type)) if i not in self.objects[t]]
            if absent:
                missing.extend(absent)
                continue
            self._add_association(from_type, from_id, to_type, to_id, type_id)
            spec = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}
            results.append({"from": {"id": from_id}, "to": {"id": to_id}, "associationSpec": spec})
        return self._batch_response(200, results, [], missing, from_type)

    # -- properties API -----------------------------------------------------------------------
    def _route_properties(self, request: FakeRequest, seg: list[str]) -> FakeResponse:
        object_type, method = self._type(seg[0]), request.method
        definitions = self.property_definitions[object_type]
        if len(seg) == 1 and method == "GET":
            return FakeResponse.json(200, {"results": list(definitions.values())})
        if len(seg) == 2 and method == "GET":
            if seg[1] not in definitions:
                raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property {seg[1]} on {object_type}")
            return FakeResponse.json(200, definitions[seg[1]])
        if len(seg) == 1 and method == "POST":
            return FakeResponse.json(201, self._create_property(object_type, self._body(request)))
        raise ApiError(405, "VALIDATION_ERROR", f"{method} is not supported on {request.path}")

    def _create_property(self, object_type: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "VALIDATION_ERROR", "Invalid input JSON: expected an object")
        missing = [f for f in ("name", "label", "type", "fieldType", "groupName") if not body.get(f)]
        if missing:
            raise ApiError(400, "VALIDATION_ERROR", f"Missing required fields: {missing}", context={"fields": missing})
        name = body["name"]
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ApiError(400, "VALIDATION_ERROR", f"Property name {name!r} must be lowercase letters, digits and _")
        if body["type"] not in ("string", "number", "date", "datetime", "enumeration", "bool"):
            raise ApiError(400, "VALIDATION_ERROR", f"Unknown property type {body['type']!r}")
        definitions = self.property_definitions[object_type]
        if name in definitions:
            raise ApiError(409, "CONFLICT", f"A property named '{name}' already exists.")
        unique = bool(body.get("hasUniqueValue"))
        if unique and sum(d["hasUniqueValue"] for d in definitions.values()) >= MAX_UNIQUE_PROPERTIES:
            raise ApiError(400, "VALIDATION_ERROR", f"too many unique properties on {object_type}")
        options = tuple(o["value"] for o in body.get("options") or [] if isinstance(o, dict) and "value" in o)
        definition = _property(
            name,
            body["type"],
            body["fieldType"],
            options=options,
            unique=unique,
            label=body["label"],
            group=body["groupName"],
        )
        definition["description"] = body.get("description", "")
        definitions[name] = definition
        return definition


def _query_list(query: dict[str, list[str]], name: str) -> list[str] | None:
    """``?properties=a,b`` and ``?properties=a&properties=b`` both work, as on HubSpot."""
    values = [part for value in query.get(name, []) for part in value.split(",") if part]
    return values or None


def _same_value(name: str, stored: str | None, wanted: Any) -> bool:
    if stored is None:
        return False
    if name in ("email", "hs_additional_emails", "domain"):  # compared case-insensitively by HubSpot
        return stored.casefold() == str(wanted).casefold()
    return stored == str(wanted)
