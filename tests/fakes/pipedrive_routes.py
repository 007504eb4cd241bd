"""FakePipedrive's endpoints: one method each, mixed into :class:`tests.fakes.pipedrive.FakePipedrive`.

Every handler runs under the server's lock, after auth and limits; it raises
:class:`tests.fakes.pipedrive_records.ApiError` for Pipedrive's error answers.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from .httpserver import FakeRequest, FakeResponse
from .pipedrive_records import (
    ACTIVITY_FIELDS,
    CALL_LOG_FIELDS,
    CALL_LOG_REQUIRED,
    PERSON_FIELDS,
    SEARCH_FIELDS,
    ApiError,
    check_body,
    now_v2,
    parse_rfc3339,
    search_hit,
    search_item,
)

OUT_OF_SUPPORT = ("/persons", "/activities", "/deals", "/itemSearch", "/organizations", "/products")
CALL_LOG_PAGE_MAX = 50
V2_PAGE_MAX = 500


def ok(data: Any, additional: dict[str, Any] | None = None, status: int = 200) -> FakeResponse:
    body: dict[str, Any] = {"success": True, "data": data}
    if additional is not None:
        body["additional_data"] = additional
    return FakeResponse.json(status, body)


class Routes:
    """The endpoints; relies on FakePipedrive's state attributes (users, persons, activities, call_logs, …)."""

    users: dict[int, dict[str, Any]]
    persons: dict[int, dict[str, Any]]
    organizations: dict[int, dict[str, Any]]
    deals: dict[int, dict[str, Any]]
    activities: dict[int, dict[str, Any]]
    call_logs: dict[str, dict[str, Any]]
    recordings: dict[str, bytes]
    activity_types: list[dict[str, Any]]
    search_lag_seconds: float
    _ids: Any

    def _route(self, request: FakeRequest, user: int, now: float) -> FakeResponse:
        path = request.path.rstrip("/")
        if path.startswith("/api/v2/"):
            return self._v2(request, path[len("/api/v2") :], user, now)
        for prefix in ("/api/v1", "/v1"):
            if path.startswith(prefix + "/"):
                return self._v1(request, path[len(prefix) :], user, now)
        raise ApiError(404, f"Unknown method {request.method} {request.path}")

    # -- v1 ------------------------------------------------------------------------------------
    def _v1(self, request: FakeRequest, path: str, user: int, now: float) -> FakeResponse:
        method, seg = request.method, path.strip("/").split("/")
        if path.startswith(OUT_OF_SUPPORT):
            raise ApiError(410, f"API v1 {seg[0]} endpoints are out of support since 2026-08-01: use API v2")
        if seg == ["users", "me"] and method == "GET":
            return ok(self._user_json(user, me=True))
        if seg == ["users", "find"] and method == "GET":
            return ok(self._find_users(request.query))
        if len(seg) == 2 and seg[0] == "users" and method == "GET":
            found = self.users.get(int(seg[1])) if seg[1].isdigit() else None
            if found is None:
                raise ApiError(404, "User not found")
            return ok(self._user_json(found["id"]))
        if seg == ["activityTypes"] and method == "GET":
            return ok([dict(t) for t in self.activity_types])
        if seg[0] == "callLogs":
            return self._call_logs(request, seg[1:], user, now)
        raise ApiError(404, f"Unknown method {method} /v1{path}")

    def _user_json(self, user_id: int, *, me: bool = False) -> dict[str, Any]:
        user = self.users[user_id]
        found = {**user, "access": [{"app": "sales", "admin": user["is_admin"], "permission_set_id": "ps-1"}],
                 "timezone_name": "UTC", "is_you": me}  # fmt: skip
        if me:
            found.update(company_id=1, company_name="Fake Co", company_domain="fakeco")
        return found

    def _find_users(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        term = (query.get("term") or [""])[0].strip().lower()
        if not term:
            raise ApiError(400, "Parameter 'term' is required")
        by_email = (query.get("search_by_email") or ["0"])[0] == "1"
        key = "email" if by_email else "name"
        return [self._user_json(u["id"]) for u in self.users.values() if term in str(u[key]).lower()]

    def _call_logs(self, request: FakeRequest, seg: list[str], user: int, now: float) -> FakeResponse:
        method = request.method
        if not seg and method == "POST":
            return ok(self._create_call_log(self._json(request), user, now))
        if not seg and method == "GET":
            return self._list_call_logs(request.query, user)
        log = self.call_logs.get(seg[0]) if seg else None
        if log is None or not (log["user_id"] == user or self.users[user]["is_admin"]):
            raise ApiError(404, "Call log not found")
        if log["deleted"]:
            raise ApiError(410, "Call log was deleted")
        if len(seg) == 1 and method == "GET":
            return ok(_public(log))
        if len(seg) == 1 and method == "DELETE":
            log["deleted"] = True
            self.recordings.pop(log["id"], None)
            return ok(None)
        if seg[1:] == ["recordings"] and method == "POST":
            upload = self._multipart_file(request)  # type: ignore[attr-defined]
            if upload is None or not upload[1]:
                raise ApiError(400, "Audio file is required (multipart/form-data, field 'file')")
            if log["has_recording"]:
                raise ApiError(409, "Call log already has a recording")
            self.recordings[log["id"]] = upload[1]
            log["has_recording"] = True
            return ok(True)
        raise ApiError(404, f"Unknown method {method} {request.path}")

    def _create_call_log(self, body: Any, user: int, now: float) -> dict[str, Any]:
        values = check_body(body, CALL_LOG_FIELDS, "call log")
        missing = [name for name in CALL_LOG_REQUIRED if values.get(name) in (None, "")]
        if missing:
            raise ApiError(400, f"Missing required field(s): {', '.join(missing)}")
        if values.get("deal_id") is not None and values.get("lead_id") is not None:
            raise ApiError(400, "A call log can be associated with either a deal or a lead, but not both at once")
        owner = values.get("user_id") or user
        if owner not in self.users:
            raise ApiError(400, f"User {owner} not found")
        if owner != user and not self.users[user]["is_admin"]:
            raise ApiError(403, "You do not have permission to create call logs for other users")
        self._require_links(values)
        log = {**values, "id": uuid.uuid4().hex, "user_id": owner, "company_id": 1, "has_recording": False,
               "deleted": False, "created": now}  # fmt: skip
        self.call_logs[log["id"]] = log
        return _public(log)

    def _list_call_logs(self, query: dict[str, list[str]], user: int) -> FakeResponse:
        start, limit = _int_param(query, "start", 0), _int_param(query, "limit", CALL_LOG_PAGE_MAX)
        if limit > CALL_LOG_PAGE_MAX or limit < 1 or start < 0:
            raise ApiError(400, "Parameter 'limit' must be between 1 and 50")
        mine = [log for log in self.call_logs.values() if log["user_id"] == user and not log["deleted"]]
        page = mine[start : start + limit]
        more = start + limit < len(mine)
        pagination: dict[str, Any] = {"start": start, "limit": limit, "more_items_in_collection": more}
        if more:
            pagination["next_start"] = start + limit
        return ok([_public(log) for log in page], {"pagination": pagination})

    # -- v2 ------------------------------------------------------------------------------------
    def _v2(self, request: FakeRequest, path: str, user: int, now: float) -> FakeResponse:
        method, seg, query = request.method, path.strip("/").split("/"), request.query
        if seg == ["persons", "search"] and method == "GET":
            return self._search_persons(query, now)
        if seg == ["persons"] and method == "POST":
            return ok(self._create_person(self._json(request), user, now))
        if seg == ["persons"] and method == "GET":
            found = [p for p in self.persons.values() if not p["is_deleted"]]
            ids = _id_list(query)
            if ids is not None:
                found = [p for p in found if p["id"] in ids]
            return self._page(query, found, self._person_json, ("id", "update_time", "add_time"))
        if len(seg) == 2 and seg[0] == "persons" and method == "GET":
            person = self.persons.get(int(seg[1])) if seg[1].isdigit() else None
            if person is None or person["is_deleted"]:
                raise ApiError(404, "Person not found")
            return ok(self._person_json(person))
        if seg == ["activities"] and method == "POST":
            return ok(self._write_activity(None, self._json(request), user, now))
        if seg == ["activities"] and method == "GET":
            return self._page(query, self._filtered_activities(query), _activity_json,
                              ("id", "update_time", "add_time", "due_date"))  # fmt: skip
        if len(seg) == 2 and seg[0] == "activities":
            activity = self.activities.get(int(seg[1])) if seg[1].isdigit() else None
            if activity is None or activity["is_deleted"]:
                raise ApiError(404, "Activity not found")
            if method == "GET":
                return ok(_activity_json(activity))
            if method == "PATCH":
                return ok(self._write_activity(activity, self._json(request), user, now))
            if method == "DELETE":
                activity["is_deleted"] = True
                return ok({"id": activity["id"]})
        if seg == ["deals"] and method == "GET":
            return self._page(query, self._filtered_deals(query), _deal_json, ("id", "update_time", "add_time"))
        raise ApiError(404, f"Unknown method {method} /api/v2{path}")

    def _search_persons(self, query: dict[str, list[str]], now: float) -> FakeResponse:
        term = (query.get("term") or [""])[0]
        exact = _bool_param(query, "exact_match", False)
        if len(term.strip()) < (1 if exact else 2):
            raise ApiError(400, "Parameter 'term' must be at least 2 characters long (1 with exact_match)")
        fields = set((query.get("fields") or [",".join(sorted(SEARCH_FIELDS))])[0].split(","))
        if not fields <= SEARCH_FIELDS:
            raise ApiError(400, f"Invalid search fields: {', '.join(sorted(fields - SEARCH_FIELDS))}")
        visible = [p for p in self.persons.values()
                   if not p["is_deleted"] and now - p["indexed_at"] >= self.search_lag_seconds]  # fmt: skip
        scored = [(search_hit(p, term, fields, exact), p) for p in visible]
        hits = sorted(((s, p) for s, p in scored if s), key=lambda sp: (-sp[0], sp[1]["id"]))
        offset, limit = _cursor(query), _limit(query)
        items = [search_item(p, self.organizations, s) for s, p in hits[offset : offset + limit]]
        following = _encode_cursor(offset + limit) if offset + limit < len(hits) else None
        return ok({"items": items}, {"next_cursor": following})

    def _create_person(self, body: Any, user: int, now: float) -> dict[str, Any]:
        values = check_body(body, PERSON_FIELDS, "person")
        if not str(values.get("name") or "").strip():
            raise ApiError(400, "Field 'name' is required")
        self._require_links(values)
        for kind in ("emails", "phones"):
            entries = [{"value": e["value"], "primary": bool(e.get("primary")), "label": e.get("label", "work")}
                       for e in values.get(kind) or []]  # fmt: skip
            if entries and not any(e["primary"] for e in entries):
                entries[0]["primary"] = True  # "If no item is primary, the first one becomes primary"
            values[kind] = entries
        person_id = next(self._ids)
        person = {"visible_to": 3, **values, "id": person_id, "owner_id": values.get("owner_id") or user,
                  "org_id": values.get("org_id"), "add_time": now, "update_time": now, "indexed_at": now,
                  "is_deleted": False}  # fmt: skip
        self.persons[person_id] = person
        return self._person_json(person)

    def _person_json(self, person: dict[str, Any]) -> dict[str, Any]:
        hidden = ("indexed_at", "add_time", "update_time")
        return {**{k: v for k, v in person.items() if k not in hidden}, "label_ids": [], "custom_fields": {},
                "add_time": now_v2(person["add_time"]), "update_time": now_v2(person["update_time"])}  # fmt: skip

    def _write_activity(self, activity: dict[str, Any] | None, body: Any, user: int, now: float) -> dict[str, Any]:
        values = check_body(body, ACTIVITY_FIELDS, "activity")
        values.pop("person_id", None)  # read-only in API v2: the primary participant is the person
        merged = {**(activity or {}), **values}
        if merged.get("deal_id") is not None and merged.get("lead_id") is not None:
            raise ApiError(400, "An activity can be linked to either a deal or a lead, but not both")
        kind = merged.setdefault("type", "call")
        if kind not in {t["key_string"] for t in self.activity_types if t["active_flag"]}:
            raise ApiError(400, f"Activity type '{kind}' does not exist or is not active")
        owner = merged.get("owner_id") or user
        if owner not in self.users or not self.users[owner]["active_flag"]:
            raise ApiError(400, f"User {owner} not found or not active")
        self._require_links(values)  # what this request links; links stored before are not checked again
        participants = merged.get("participants") or []
        primary = next((p for p in participants if p.get("primary")), participants[0] if participants else None)
        if activity is None:
            activity = {"id": next(self._ids), "add_time": now, "creator_user_id": user, "is_deleted": False,
                        "done": False, "marked_as_done_time": None}  # fmt: skip
            self.activities[activity["id"]] = activity
        if merged.get("done") and not activity.get("done"):
            activity["marked_as_done_time"] = now
        activity.update(merged)
        activity.update(owner_id=owner, person_id=primary["person_id"] if primary else None, update_time=now)
        return _activity_json(activity)

    def _filtered_activities(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        found = [a for a in self.activities.values() if not a["is_deleted"]]
        for name in ("person_id", "owner_id", "deal_id", "org_id"):
            if name in query:
                value = _int_param(query, name, 0)
                found = [a for a in found if a.get(name) == value]
        if "done" in query:
            done = _bool_param(query, "done", False)
            found = [a for a in found if bool(a.get("done")) is done]
        if "updated_since" in query:
            since = parse_rfc3339(query["updated_since"][0], "updated_since")
            found = [a for a in found if a["update_time"] >= since]
        if "updated_until" in query:
            until = parse_rfc3339(query["updated_until"][0], "updated_until")
            found = [a for a in found if a["update_time"] < until]
        return found

    def _filtered_deals(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        found = [d for d in self.deals.values() if not d["is_deleted"]]
        if "person_id" in query:
            person = _int_param(query, "person_id", 0)
            found = [d for d in found if d["person_id"] == person]
        statuses = set((query.get("status") or ["open,won,lost"])[0].split(","))
        if not statuses <= {"open", "won", "lost", "deleted"}:
            raise ApiError(400, "Parameter 'status' must be open, won, lost or deleted")
        return [d for d in found if d["status"] in statuses]

    # -- shared ---------------------------------------------------------------------------------
    def _page(
        self, query: dict[str, list[str]], items: list[dict[str, Any]], show: Any, sorts: tuple[str, ...]
    ) -> FakeResponse:
        sort_by = (query.get("sort_by") or ["id"])[0]
        direction = (query.get("sort_direction") or ["asc"])[0]
        if sort_by not in sorts or direction not in ("asc", "desc"):
            raise ApiError(400, f"Invalid sorting: sort_by must be one of {', '.join(sorts)}, direction asc or desc")
        ordered = sorted(items, key=lambda i: (i.get(sort_by) or "", i["id"]), reverse=direction == "desc")
        offset, limit = _cursor(query), _limit(query)
        following = _encode_cursor(offset + limit) if offset + limit < len(ordered) else None
        return ok([show(i) for i in ordered[offset : offset + limit]], {"next_cursor": following})

    def _require_links(self, values: dict[str, Any]) -> None:
        """Linked records must exist (the status and wording are the fake's choice)."""
        checks = [("person_id", self.persons, "Person"), ("org_id", self.organizations, "Organization"),
                  ("deal_id", self.deals, "Deal")]  # fmt: skip
        for name, table, label in checks:
            value = values.get(name)
            if value is not None and (value not in table or table[value].get("is_deleted")):
                raise ApiError(404, f"{label} with id {value} not found")
        for participant in values.get("participants") or []:
            person = self.persons.get(participant["person_id"])
            if person is None or person["is_deleted"]:
                raise ApiError(404, f"Person with id {participant['person_id']} not found")

    @staticmethod
    def _json(request: FakeRequest) -> Any:
        if "application/json" not in request.headers.get("content-type", ""):
            raise ApiError(415, "Content-Type must be application/json")
        try:
            return json.loads(request.body or b"null")
        except ValueError:
            raise ApiError(400, "Request body is not valid JSON") from None


def _public(log: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in log.items() if k not in ("deleted", "created")}


def _activity_json(activity: dict[str, Any]) -> dict[str, Any]:
    shown = dict(activity)
    for name in ("add_time", "update_time", "marked_as_done_time"):
        if shown.get(name) is not None:
            shown[name] = now_v2(shown[name])
    for name in ("subject", "note", "due_date", "due_time", "duration", "deal_id", "org_id", "lead_id"):
        shown.setdefault(name, None)
    shown.setdefault("participants", [])
    return shown


def _deal_json(deal: dict[str, Any]) -> dict[str, Any]:
    return {**deal, "add_time": now_v2(deal["add_time"]), "update_time": now_v2(deal["update_time"])}


def _int_param(query: dict[str, list[str]], name: str, default: int) -> int:
    raw = (query.get(name) or [None])[0]
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"Parameter '{name}' must be an integer") from None


def _bool_param(query: dict[str, list[str]], name: str, default: bool) -> bool:
    raw = (query.get(name) or [None])[0]
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise ApiError(400, f"Parameter '{name}' must be true or false")
    return raw == "true"


def _limit(query: dict[str, list[str]]) -> int:
    limit = _int_param(query, "limit", 100)
    if not 1 <= limit <= V2_PAGE_MAX:
        raise ApiError(400, "Parameter 'limit' must be between 1 and 500")
    return limit


def _cursor(query: dict[str, list[str]]) -> int:
    raw = (query.get("cursor") or [None])[0]
    if raw is None:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(raw.encode()))["offset"])
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "Parameter 'cursor' is invalid") from None


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _id_list(query: dict[str, list[str]]) -> set[int] | None:
    raw = (query.get("ids") or [None])[0]
    if raw is None:
        return None
    try:
        ids = {int(part) for part in raw.split(",") if part}
    except ValueError:
        raise ApiError(400, "Parameter 'ids' must be a comma-separated list of ids") from None
    if len(ids) > 100:
        raise ApiError(400, "Parameter 'ids' takes up to 100 ids")
    return ids

