"""The admin JSON API under /admin: everything the console does, for scripts (and the same answers as the CLI).

Off unless `admin.token` or `admin.users` is configured (404). Every request needs
`Authorization: Bearer <token>` (a user's token from `admin.users`, or `admin.token`), compared in constant
time, or the console's session cookie (401 otherwise). Viewers read; every POST needs an admin (403), and a
POST carried by the session cookie also needs its CSRF token in `X-CSRF-Token` (403). Reads come from the
call log's database; when it cannot be reached the answer is 503 with the reason, never a 500.

    GET  /admin/calls/{id}            one call's report (route, facts, per-connector state, records + links, history)
    GET  /admin/calls                 search: status, connector, since, until, phone, email, agent, disposition,
                                      text, cursor, limit → {"calls": [...], "next_cursor": …}
    POST /admin/calls/{id}/replay     deliver again, on purpose: {"connector": "…"} (optional; default: where its
                                      route sends it now) → {"replayed": [connectors]}
    GET  /admin/calls/{id}/preview    what each connector would write now with the current mapping (nothing sent)
    GET  /admin/overview              per connector: state, queue depth, delivered/failed 1 h/24 h, latency, quota;
                                      log lag; top failure groups (?range=7d: daily series)
    GET  /admin/failures              failure groups (?connector=): connector, error_group, count, dead,
                                      first_seen, last_seen, sample_call, sample_error
    GET  /admin/failures/calls        ?connector=&group= → the group's calls and their status
    POST /admin/failures/replay       {"connector", "group"} or {"connector", "ids": [...]} → the job (200 when it
    POST /admin/failures/purge        finished within 2 s, else 202; poll GET /admin/jobs/{id})
    GET  /admin/jobs/{id}             a bulk action's progress and result (re-queued, already delivered, purged…)
    GET  /admin/mappings              each connector's mapping: name, location, digest
    POST /admin/mappings/preview      {"connector", "mapping": YAML, "call_id" | "payload"} → rendered records
                                      (field by field, errors at their field), diff against the current mapping,
                                      how many of the last 100 calls it changes; or {"compile_error": …}
    POST /admin/mappings/{connector}  {"mapping": YAML} → saved (admin.mappings_writable: true), atomically,
                                      previous version kept; 422 with the error otherwise
    GET  /admin/settings              effective configuration (secrets masked), `check` problems, setup status
    POST /admin/connectors/{name}/setup   run the connector's setup (what `agni-bridge setup` does)
    GET  /admin/audit                 the audit log (?limit=, ?before= an id), newest first
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec
from litestar import MediaType, Request, Response, Router, get, post
from litestar.params import FromPath, RawBody

from bridge.calls import STATUSES, CallSearch, parse_when
from bridge.errors import BridgeError, MappingError, OperationError

__all__ = ["ADMIN_HANDLERS", "json_response", "search_from_query"]

_encode = msgspec.json.Encoder(enc_hook=str).encode
JOB_WAIT_SECONDS = 2.0
JSON_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


def json_response(status_code: int, body: object, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(
        _encode(body), status_code=status_code, media_type=MediaType.JSON, headers={**JSON_HEADERS, **(headers or {})}
    )


def _error(status_code: int, message: str, status: str = "error") -> Response[bytes]:
    return json_response(status_code, {"status": status, "error": message})


async def admin_gate(request: Request[Any, Any, Any]) -> Response[bytes] | None:
    """Off → 404; no valid token or session → 401; a POST by a viewer, or by a session without its CSRF
    token → 403."""
    from bridge.console.security import authenticate, refuse_post

    state = request.app.state.console
    if not state.enabled:
        return _error(404, "the admin API is disabled (set admin.token or admin.users)")
    me = await authenticate(request, state)
    if me is None:
        return _error(401, "missing or wrong admin token", "unauthorized")
    if request.method == "POST":
        refused = await refuse_post(request, me)
        if refused is not None:
            return _error(refused[0], refused[1], "forbidden")
    request.state.principal = me
    return None


def _body(data: bytes) -> dict[str, Any]:
    if not data.strip():
        return {}
    try:
        found = json.loads(data)
    except ValueError as exc:
        raise OperationError(f"the body is not JSON: {exc}") from exc
    if not isinstance(found, dict):
        raise OperationError("the body must be a JSON object")
    return found


def search_from_query(query: Any) -> CallSearch:
    """A CallSearch from query parameters; ValueError names the parameter that is wrong."""
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    try:
        limit = max(1, min(int(query.get("limit") or 50), 1000))
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


# -- calls ------------------------------------------------------------------------------------


@get("/calls/{call_id:str}", sync_to_thread=True)
def admin_call(request: Request[Any, Any, Any], call_id: FromPath[str]) -> Response[bytes]:
    report = request.app.state.console.call_log.report(call_id)
    if report is None:
        return _error(404, f"no record of call {call_id} in the log")
    return json_response(200, report.to_dict())


@get("/calls", sync_to_thread=True)
def admin_calls(request: Request[Any, Any, Any]) -> Response[bytes]:
    try:
        page = request.app.state.console.call_log.search(search_from_query(request.query_params))
    except ValueError as exc:
        return _error(400, str(exc), "invalid")
    return json_response(
        200, {"calls": [r.to_dict(history=False) for r in page.calls], "next_cursor": page.next_cursor}
    )


@post("/calls/{call_id:str}/replay", sync_to_thread=True, status_code=200)
def admin_replay(request: Request[Any, Any, Any], call_id: FromPath[str], body: RawBody) -> Response[bytes]:
    from bridge.console.actions import replay_call

    state = request.app.state.console
    try:
        connector = _body(body).get("connector") or request.query_params.get("connector") or None
        targets = replay_call(state, call_id, connector, request.state.principal.name)
    except BridgeError as exc:
        return _error(400, str(exc))
    return json_response(200, {"status": "replayed", "call_session_id": call_id, "replayed": list(targets)})


@get("/calls/{call_id:str}/preview", sync_to_thread=True)
def admin_preview(request: Request[Any, Any, Any], call_id: FromPath[str]) -> Response[bytes]:
    from bridge.console.playground import preview_call

    try:
        return json_response(200, preview_call(request.app.state.console, call_id))
    except BridgeError as exc:
        return _error(404, str(exc))


# -- overview and failures ---------------------------------------------------------------------


@get("/overview", sync_to_thread=True)
def admin_overview(request: Request[Any, Any, Any]) -> Response[bytes]:
    from bridge.console.reads import overview

    days = 7 if request.query_params.get("range") == "7d" else 1
    data = overview(request.app.state.console, days=days)
    for connector in data["connectors"]:
        connector.pop("chart")  # the console's drawing; `series` has the numbers
    return json_response(200, data)


@get("/failures", sync_to_thread=True)
def admin_failures(request: Request[Any, Any, Any]) -> Response[bytes]:
    groups = request.app.state.console.queries.failure_groups(request.query_params.get("connector") or None)
    return json_response(200, {"groups": groups})


@get("/failures/calls", sync_to_thread=True)
def admin_failure_calls(request: Request[Any, Any, Any]) -> Response[bytes]:
    state = request.app.state.console
    connector = request.query_params.get("connector", "")
    if connector not in state.settings.connectors:
        return _error(404, f"no connector named {connector!r}")
    group = request.query_params.get("group")
    calls = state.queries.failing_calls(connector, group)
    return json_response(200, {"connector": connector, "group": group, "calls": [
        {"call_session_id": call_id, "status": status} for call_id, status in calls
    ]})  # fmt: skip


def _bulk(request: Request[Any, Any, Any], action: str, body: bytes) -> Response[bytes]:
    from bridge.console.actions import failure_target

    state = request.app.state.console
    try:
        data = _body(body)
        connector = str(data.get("connector") or "")
        ids = data.get("ids")
        if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
            raise OperationError("ids must be a list of call ids")
        if ids is None and "group" not in data:
            raise OperationError('name the calls: "group" (a failure group; null for every failure) or "ids"')
        target = failure_target(state, connector, data.get("group"), ids or None)
    except BridgeError as exc:
        return _error(400, str(exc))
    job = state.jobs.start(action, target, request.state.principal.name)
    finished = state.jobs.wait(job.id, JOB_WAIT_SECONDS) or job
    return json_response(200 if not finished.running else 202, finished.to_dict())


@post("/failures/replay", sync_to_thread=True, status_code=200)
def admin_failures_replay(request: Request[Any, Any, Any], body: RawBody) -> Response[bytes]:
    return _bulk(request, "replay", body)


@post("/failures/purge", sync_to_thread=True, status_code=200)
def admin_failures_purge(request: Request[Any, Any, Any], body: RawBody) -> Response[bytes]:
    return _bulk(request, "purge", body)


@get("/jobs/{job_id:str}", sync_to_thread=True)
def admin_job(request: Request[Any, Any, Any], job_id: FromPath[str]) -> Response[bytes]:
    job = request.app.state.console.jobs.get(job_id)
    if job is None:
        return _error(404, f"no job {job_id} (unknown, or older than a day)")
    return json_response(200, job.to_dict())


# -- mappings ------------------------------------------------------------------------------------


@get("/mappings", sync_to_thread=True)
def admin_mappings(request: Request[Any, Any, Any]) -> Response[bytes]:
    from bridge.console.playground import connector_mapping

    state = request.app.state.console
    found = []
    for name in state.settings.connectors:
        entry: dict[str, Any] = {"connector": name}
        try:
            source = connector_mapping(state, name)
        except (BridgeError, MappingError) as exc:
            entry["error"] = str(exc)
        else:
            if source is not None:
                entry.update(mapping=source.name, location=source.location, digest=source.compiled.digest)
        found.append(entry)
    return json_response(200, {"mappings": found})


@post("/mappings/preview", sync_to_thread=True, status_code=200)
def admin_mapping_preview(request: Request[Any, Any, Any], body: RawBody) -> Response[bytes]:
    from bridge.console.playground import connector_mapping, load_payload, render_playground

    state = request.app.state.console
    try:
        data = _body(body)
        connector = str(data.get("connector") or "")
        text = data.get("mapping")
        if text is None:
            source = connector_mapping(state, connector)
            text = source.text if source is not None else ""
        payload = data.get("payload")
        pasted = json.dumps(payload) if isinstance(payload, dict) else str(payload or "")
        document = None
        if data.get("call_id") or pasted.strip():
            document = load_payload(state, call_id=str(data.get("call_id") or ""), pasted=pasted)
        result = render_playground(state, connector, str(text), document, sample=bool(data.get("sample", True)))
    except (BridgeError, MappingError) as exc:
        return _error(400, str(exc))
    for part in (result.get("sections") or {}).values():
        part["fields"] = [
            {"field": f.where, "value": f.value, **({"error": f.error} if f.error else {})} for f in part["fields"]
        ]
    return json_response(200, result)


@post("/mappings/{connector:str}", sync_to_thread=True, status_code=200)
def admin_mapping_save(request: Request[Any, Any, Any], connector: FromPath[str], body: RawBody) -> Response[bytes]:
    from bridge.console.playground import save_mapping

    state = request.app.state.console
    try:
        text = _body(body).get("mapping")
        if not isinstance(text, str):
            raise OperationError('send {"mapping": "<the YAML>"}')
        saved = save_mapping(state, connector, text, request.state.principal.name)
    except (BridgeError, MappingError) as exc:
        status = 403 if "mappings_writable" in str(exc) else 422
        return _error(status, str(exc), "invalid" if status == 422 else "forbidden")
    return json_response(200, {"status": "saved", **saved})


# -- settings and audit -------------------------------------------------------------------------


@get("/settings", sync_to_thread=True)
def admin_settings(request: Request[Any, Any, Any]) -> Response[bytes]:
    from bridge.console.configview import settings_page

    data = settings_page(request.app.state.console)
    data["config"] = json.loads(data["config"])
    return json_response(200, data)


@post("/connectors/{name:str}/setup", sync_to_thread=True, status_code=200)
def admin_setup(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    from bridge.console.configview import run_setup

    try:
        outcome = run_setup(request.app.state.console, name, request.state.principal.name)
    except BridgeError as exc:
        return _error(400, str(exc))
    return json_response(200 if outcome["ok"] else 502, {"connector": name, **outcome})


@get("/audit", sync_to_thread=True)
def admin_audit(request: Request[Any, Any, Any]) -> Response[bytes]:
    query = request.query_params
    try:
        limit = int(query.get("limit") or 100)
        before = int(query["before"]) if query.get("before") else None
    except ValueError:
        return _error(400, "limit and before must be numbers", "invalid")
    entries = request.app.state.console.audit.entries(limit=limit, before_id=before, actor=query.get("actor") or None)
    return json_response(200, {"entries": [e.to_dict() for e in entries], "now": int(time.time() * 1000)})


ADMIN_HANDLERS = [
    Router(
        path="/admin",
        route_handlers=[
            admin_calls,
            admin_call,
            admin_replay,
            admin_preview,
            admin_overview,
            admin_failures,
            admin_failure_calls,
            admin_failures_replay,
            admin_failures_purge,
            admin_job,
            admin_mappings,
            admin_mapping_preview,
            admin_mapping_save,
            admin_settings,
            admin_setup,
            admin_audit,
        ],
        before_request=admin_gate,
        include_in_schema=False,
    )
]
