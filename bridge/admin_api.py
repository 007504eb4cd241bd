"""The admin JSON API under /admin: the same answers as `agni-bridge calls …`, for scripts and the console.

Off unless `admin.token` (or `admin.users`) is configured (404), and every request needs
`Authorization: Bearer <token>` (401), compared in constant time. Reads come from the call log's
database; when it cannot be reached the answer is 503 with the reason, never a 500.

    GET /admin/calls/{id}      one call's report (route, facts, per-connector state, records, history)
    GET /admin/calls           search: status, connector, since, until, phone, email, agent,
                               disposition, text, cursor, limit → {"calls": [...], "next_cursor": …}
"""

from __future__ import annotations

import hmac
from typing import Any

import msgspec
from litestar import MediaType, Request, Response, get

from bridge.calls import STATUSES, CallSearch, parse_when
from bridge.webhook import bearer_token

__all__ = ["ADMIN_HANDLERS", "json_response"]

_encode = msgspec.json.Encoder(enc_hook=str).encode


def json_response(status_code: int, body: object, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(_encode(body), status_code=status_code, media_type=MediaType.JSON, headers=headers)


def admin_guard(request: Request[Any, Any, Any]) -> Response[bytes] | None:
    """The admin API is off without `admin.token` (404), and needs `Authorization: Bearer <token>` (401)."""
    token: bytes = request.app.state.admin_token
    if not token:
        return json_response(404, {"status": "error", "error": "the admin API is disabled (set admin.token)"})
    if not hmac.compare_digest(bearer_token(request.headers).encode(), token):
        return json_response(401, {"status": "unauthorized", "error": "missing or wrong admin token"})
    return None


@get("/admin/calls/{call_id:str}", sync_to_thread=True)
def admin_call(request: Request[Any, Any, Any]) -> Response[bytes]:
    refused = admin_guard(request)
    if refused is not None:
        return refused
    call_id = request.path_params["call_id"]
    report = request.app.state.call_log.report(call_id)
    if report is None:
        return json_response(404, {"status": "error", "error": f"no record of call {call_id} in the log"})
    return json_response(200, report.to_dict())


def search_from_query(query: Any) -> CallSearch:
    """A CallSearch from query parameters; ValueError names the parameter that is wrong."""
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    try:
        limit = max(1, min(int(query.get("limit", 50)), 1000))
    except ValueError as exc:
        raise ValueError("limit must be a number") from exc
    since, until = query.get("since") or None, query.get("until") or None
    return CallSearch(
        status=status,
        connector=query.get("connector") or None,
        since_ms=parse_when(since) if since else None,
        until_ms=parse_when(until) if until else None,
        phone=query.get("phone") or None,
        email=query.get("email") or None,
        agent=query.get("agent") or None,
        disposition=query.get("disposition") or None,
        text=query.get("text") or None,
        cursor=query.get("cursor") or None,
        limit=limit,
    )


@get("/admin/calls", sync_to_thread=True)
def admin_calls(request: Request[Any, Any, Any]) -> Response[bytes]:
    refused = admin_guard(request)
    if refused is not None:
        return refused
    try:
        page = request.app.state.call_log.search(search_from_query(request.query_params))
    except ValueError as exc:
        return json_response(400, {"status": "invalid", "error": str(exc)})
    return json_response(
        200, {"calls": [r.to_dict(history=False) for r in page.calls], "next_cursor": page.next_cursor}
    )


ADMIN_HANDLERS = [admin_call, admin_calls]
