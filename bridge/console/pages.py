"""The console's pages (GET): Overview, Calls, Call detail, Failures, Mappings, Settings, Audit, jobs.

Each handler asks its read function (:mod:`bridge.console.reads` and friends) for the page's data and renders
one template; an htmx request gets the page's partial (`_*.html`) instead, so live filtering, polling and
the playground swap the same markup a plain link loads. Every URL is shareable and the back button works:
filters live in the query string (htmx pushes it), nothing in browser storage.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath

from bridge.admin_api import search_from_query
from bridge.console import playground, reads
from bridge.console.configview import settings_page
from bridge.console.render import ASSETS, asset_bytes
from bridge.console.security import SECURITY_HEADERS
from bridge.console.web import console_state, error_page, is_partial, page
from bridge.errors import BridgeError
from bridge.mapping import MappingError

__all__ = ["PAGE_HANDLERS"]

FILTERS = ("status", "connector", "since", "until", "phone", "email", "agent", "disposition", "text", "limit")
RECENT_CALLS = 20


@get("/", sync_to_thread=True)
def overview(request: Request[Any, Any, Any]) -> Any:
    state = console_state(request)
    days = 7 if request.query_params.get("range") == "7d" else 1
    data = reads.overview(state, days=days)
    return page(request, "_overview_body.html" if is_partial(request) else "overview.html", nav="overview", **data)


@get("/calls", sync_to_thread=True)
def calls(request: Request[Any, Any, Any]) -> Any:
    state = console_state(request)
    params = {name: request.query_params.get(name, "") for name in FILTERS}
    error = ""
    try:
        data = reads.calls_page(state, search_from_query(request.query_params))
    except ValueError as exc:
        error = str(exc)
        data = {"calls": [], "next_cursor": None, "connectors": list(state.settings.connectors)}
    template = "_calls_table.html" if is_partial(request) else "calls.html"
    cursor = request.query_params.get("cursor", "")
    return page(request, template, nav="calls", params=params, error=error, paged=bool(cursor), **data)


@get("/calls/{call_id:str}", sync_to_thread=True)
def call(request: Request[Any, Any, Any], call_id: FromPath[str]) -> Any:
    state = console_state(request)
    data = reads.call_detail(state, call_id)
    if data is None:
        lag = state.log_lag()
        behind = f" The log is {lag.events} event(s) behind." if lag.events else ""
        return error_page(request, 404, "No such call", f"No record of call {call_id} in the log.{behind}")
    enabled = list(state.settings.enabled_connectors())
    replayed = request.query_params.get("replayed", "")
    return page(request, "call.html", nav="calls", enabled=enabled, replayed=replayed, **data)


@get("/calls/{call_id:str}/preview", sync_to_thread=True)
def call_preview(request: Request[Any, Any, Any], call_id: FromPath[str]) -> Any:
    state = console_state(request)
    try:
        data = playground.preview_call(state, call_id)
    except BridgeError as exc:
        return error_page(request, 404, "Nothing to preview", str(exc))
    return page(request, "preview.html", nav="calls", **data)


@get("/failures", sync_to_thread=True)
def failures(request: Request[Any, Any, Any]) -> Any:
    state = console_state(request)
    data = reads.failures_page(state, request.query_params.get("connector") or None)
    return page(request, "failures.html", nav="failures", **data)


@get("/failures/group", sync_to_thread=True)
def failure_group(request: Request[Any, Any, Any]) -> Any:
    state = console_state(request)
    connector = request.query_params.get("connector", "")
    if connector not in state.settings.connectors:
        return error_page(request, 404, "No such connector", f"No connector named {connector!r}.")
    group = request.query_params.get("group")
    data = reads.failure_group(state, connector, group)
    return page(request, "failure_group.html", nav="failures", **data)


@get("/jobs/{job_id:str}", sync_to_thread=True)
def job(request: Request[Any, Any, Any], job_id: FromPath[str]) -> Any:
    state = console_state(request)
    found = state.jobs.get(job_id)
    if found is None:
        return error_page(request, 404, "No such job", "This bulk action is unknown or older than a day.")
    return page(request, "_job.html" if is_partial(request) else "job.html", nav="failures", job=found)


@get("/mappings", sync_to_thread=True)
def mappings(request: Request[Any, Any, Any]) -> Any:
    state = console_state(request)
    rows = []
    for name in state.settings.connectors:
        row: dict[str, Any] = {"connector": name, "source": None, "error": "", "digests": []}
        try:
            row["source"] = playground.connector_mapping(state, name)
        except (BridgeError, MappingError) as exc:
            row["error"] = str(exc)
        if row["source"] is not None:
            row["digests"] = playground.recent_digests(state, name)
        rows.append(row)
    return page(request, "mappings.html", nav="mappings", rows=rows)


@get("/mappings/{connector:str}", sync_to_thread=True)
def mapping_playground(request: Request[Any, Any, Any], connector: FromPath[str]) -> Any:
    state = console_state(request)
    if connector not in state.settings.connectors:
        return error_page(request, 404, "No such connector", f"No connector named {connector!r}.")
    try:
        source = playground.connector_mapping(state, connector)
    except (BridgeError, MappingError) as exc:
        return error_page(request, 409, "The mapping cannot be loaded", str(exc))
    if source is None:
        return error_page(request, 404, "No mapping", f"Connector {connector} writes without a mapping.")
    return playground_page(request, connector, source, source.text, request.query_params.get("call", ""), "")


def playground_page(
    request: Request[Any, Any, Any],
    connector: str,
    source: Any,
    text: str,
    call_id: str,
    pasted: str,
    *,
    notice: str = "",
    status_code: int = 200,
    save_error: str = "",
) -> Any:
    """The playground (full page), rendered for the chosen call, or the first recent one."""
    state = console_state(request)
    recent = playground.recent_calls(state, connector, RECENT_CALLS)
    if not call_id and not pasted.strip() and recent:
        call_id = recent[0].call_session_id
    result, payload_error = _render(state, connector, text, call_id, pasted)
    return page(
        request,
        "playground.html",
        status_code=status_code,
        nav="mappings",
        connector=connector,
        source=source,
        text=text,
        call_id=call_id,
        pasted=pasted,
        recent=recent,
        result=result,
        payload_error=payload_error,
        notice=notice or request.query_params.get("saved", ""),
        save_error=save_error,
    )


def _render(state: Any, connector: str, text: str, call_id: str, pasted: str) -> tuple[dict[str, Any], str]:
    document, payload_error = None, ""
    if call_id or pasted.strip():
        try:
            document = playground.load_payload(state, call_id=call_id, pasted=pasted)
        except BridgeError as exc:
            payload_error = str(exc)
    return playground.render_playground(state, connector, text, document), payload_error


@get("/settings", sync_to_thread=True)
def settings(request: Request[Any, Any, Any]) -> Any:
    state = console_state(request)
    data = settings_page(state)
    return page(request, "settings.html", nav="settings", notice=request.query_params.get("setup", ""), **data)


@get("/audit", sync_to_thread=True)
def audit(request: Request[Any, Any, Any]) -> Any:
    state = console_state(request)
    before = request.query_params.get("before", "")
    entries = state.audit.entries(limit=100, before_id=int(before) if before.isdigit() else None)
    return page(request, "audit.html", nav="audit", entries=entries)


@get("/static/{name:str}", opt={"public": True}, sync_to_thread=False)
def static(name: FromPath[str]) -> Response[bytes]:
    if name not in ASSETS:
        return Response(b"not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
    headers = {**SECURITY_HEADERS, "cache-control": "public, max-age=86400"}
    return Response(asset_bytes(name), media_type=ASSETS[name], headers=headers)


PAGE_HANDLERS = [
    overview,
    calls,
    call,
    call_preview,
    failures,
    failure_group,
    job,
    mappings,
    mapping_playground,
    settings,
    audit,
    static,
]
