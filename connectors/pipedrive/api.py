"""The Pipedrive endpoints the connector uses, each as one method over :class:`PipedriveClient`.

API v2 wherever Pipedrive moved an endpoint (persons, search, activities, deals: their v1 versions are out of
support since 1 Aug 2026); v1 where v2 has nothing (call logs, users, activity types). Costs in tokens, as
Pipedrive charges them against the company's daily budget (v1 list 20 / single 2 / write 10; v2 about half):

    POST /v1/callLogs                     create a call log (10)
    GET  /v1/callLogs?start&limit<=50     the token user's call logs, for reconciliation (20 a page)
    GET  /v1/callLogs/{id}                one call log: does it still exist, has it a recording (2)
    POST /v1/callLogs/{id}/recordings     upload the audio file (multipart)
    POST/PATCH /api/v2/activities[/{id}]  call and follow-up activities (5)
    GET  /api/v2/activities/{id}          after a 404 on an update: is the activity itself gone? (1)
    GET  /api/v2/activities               a person's (or owner's) recent activities, cursor pages of 500 (10)
    GET  /api/v2/persons/search           email / phone search (search budget: 10 per 2 s)
    GET  /api/v2/persons?ids=…            update times, when several persons match (10)
    POST /api/v2/persons                  on_missing: create_person (5)
    GET  /api/v2/deals?person_id&status=open   the newest open deal (10)
    GET  /v1/users/me | /v1/users/find | /v1/users/{id} | /v1/activityTypes   owners and `setup`
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bridge.errors import PermanentError, RetryableError
from connectors.pipedrive.client import PipedriveClient

__all__ = ["CALL_LOG_PAGE", "PipedriveApi"]

CALL_LOG_PAGE = 50  # GET /v1/callLogs: "The upper limit is 50"
ACTIVITY_PAGE = 500  # v2 lists: at most 500 per page
SEARCH_LIMIT = 100


class PipedriveApi:
    """Typed-ish access to the endpoints above; every error is already a bridge error."""

    def __init__(self, client: PipedriveClient) -> None:
        self.client = client

    # -- call logs (v1) --------------------------------------------------------------------
    def create_call_log(self, body: dict[str, Any], *, on_send: Callable[[], None] | None = None) -> str:
        found = self.client.call("POST", "/v1/callLogs", json=body, what="create call log", safe=False,
                                 on_send=on_send)  # fmt: skip
        return _new_id(found.data, "call log")

    def call_log(self, call_log_id: str) -> dict[str, Any]:
        found = self.client.call("GET", f"/v1/callLogs/{call_log_id}", what=f"read call log {call_log_id}")
        return found.data if isinstance(found.data, dict) else {}

    def call_logs_page(self, start: int) -> tuple[list[dict[str, Any]], int | None]:
        """One page of the token user's call logs, and where the next page starts (None: the last page)."""
        found = self.client.call(
            "GET", "/v1/callLogs", params={"start": start, "limit": CALL_LOG_PAGE}, what="list call logs"
        )
        items = [item for item in found.data or [] if isinstance(item, dict)]
        paging = found.additional.get("pagination")
        more = isinstance(paging, dict) and paging.get("more_items_in_collection") is True
        if not more or not items:
            return items, None
        following = paging.get("next_start") if isinstance(paging, dict) else None
        return items, int(following) if isinstance(following, int) else start + len(items)

    def attach_recording(self, call_log_id: str, file_name: str, content: bytes, content_type: str) -> None:
        self.client.call(
            "POST",
            f"/v1/callLogs/{call_log_id}/recordings",
            files={"file": (file_name, content, content_type)},
            what=f"attach recording to call log {call_log_id}",
            safe=False,
        )

    # -- activities (v2) -------------------------------------------------------------------
    def create_activity(self, body: dict[str, Any], *, on_send: Callable[[], None] | None = None) -> str:
        found = self.client.call("POST", "/api/v2/activities", json=body, what="create activity", safe=False,
                                 on_send=on_send)  # fmt: skip
        return _new_id(found.data, "activity")

    def update_activity(self, activity_id: str, body: dict[str, Any]) -> None:
        self.client.call("PATCH", f"/api/v2/activities/{activity_id}", json=body,
                         what=f"update activity {activity_id}")  # fmt: skip

    def activity_exists(self, activity_id: str) -> bool:
        """Whether the activity is still there (False: deleted), to tell a missing activity from a missing link."""
        try:
            found = self.client.call("GET", f"/api/v2/activities/{activity_id}", what=f"read activity {activity_id}")
        except PermanentError as exc:
            if exc.status in (404, 410):
                return False
            raise
        return not (isinstance(found.data, dict) and found.data.get("is_deleted") is True)

    def activities_page(self, params: dict[str, Any], cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        query = {**params, "limit": ACTIVITY_PAGE, **({"cursor": cursor} if cursor else {})}
        found = self.client.call("GET", "/api/v2/activities", params=query, what="list activities")
        items = [item for item in found.data or [] if isinstance(item, dict)]
        following = found.additional.get("next_cursor")
        return items, str(following) if following else None

    # -- persons, deals (v2) ---------------------------------------------------------------
    def search_persons(self, term: str, field: str, *, exact: bool) -> list[dict[str, Any]]:
        """The items of one search (each `{"id", "name", "emails", "phones", "organization"}`), best first."""
        params = {"term": term, "fields": field, "exact_match": "true" if exact else "false", "limit": SEARCH_LIMIT}
        found = self.client.call("GET", "/api/v2/persons/search", params=params, what=f"search persons by {field}",
                                 search=True)  # fmt: skip
        items = found.data.get("items") if isinstance(found.data, dict) else None
        results = [entry.get("item") for entry in items or [] if isinstance(entry, dict)]
        return [item for item in results if isinstance(item, dict) and item.get("id") is not None]

    def persons_newest_first(self, ids: list[str]) -> list[dict[str, Any]]:
        params = {"ids": ",".join(ids), "sort_by": "update_time", "sort_direction": "desc", "limit": len(ids)}
        found = self.client.call("GET", "/api/v2/persons", params=params, what="read persons")
        return [item for item in found.data or [] if isinstance(item, dict)]

    def create_person(self, body: dict[str, Any], *, on_send: Callable[[], None] | None = None) -> str:
        found = self.client.call("POST", "/api/v2/persons", json=body, what="create person", safe=False,
                                 on_send=on_send)  # fmt: skip
        return _new_id(found.data, "person")

    def newest_open_deal(self, person_id: str) -> str | None:
        params = {"person_id": person_id, "status": "open", "sort_by": "add_time", "sort_direction": "desc",
                  "limit": 1}  # fmt: skip
        found = self.client.call("GET", "/api/v2/deals", params=params, what=f"list open deals of person {person_id}")
        deals = [item for item in found.data or [] if isinstance(item, dict) and item.get("id") is not None]
        return str(deals[0]["id"]) if deals else None

    # -- users, activity types (v1) --------------------------------------------------------
    def me(self) -> dict[str, Any]:
        found = self.client.call("GET", "/v1/users/me", what="read the token's user")
        return found.data if isinstance(found.data, dict) else {}

    def find_users_by_email(self, email: str) -> list[dict[str, Any]]:
        params = {"term": email, "search_by_email": 1}
        found = self.client.call("GET", "/v1/users/find", params=params, what="find user by email")
        return [item for item in found.data or [] if isinstance(item, dict)]

    def user(self, user_id: str) -> dict[str, Any]:
        found = self.client.call("GET", f"/v1/users/{user_id}", what=f"read user {user_id}")
        return found.data if isinstance(found.data, dict) else {}

    def activity_types(self) -> list[dict[str, Any]]:
        found = self.client.call("GET", "/v1/activityTypes", what="list activity types")
        return [item for item in found.data or [] if isinstance(item, dict)]


def _new_id(data: Any, what: str) -> str:
    object_id = data.get("id") if isinstance(data, dict) else None
    if object_id in (None, ""):
        # It may well have landed: the exactly-once guard's reconciliation finds it on the next attempt.
        raise RetryableError(f"Pipedrive create {what}: answer without an id")
    return str(object_id)
