"""The console's actions (POST, admins only — the gate refuses viewers and requests without the CSRF token):
replay a call, replay or purge failures (after a confirmation that says how many calls), render and save
a mapping, run a connector's setup.

Each action is also a JSON endpoint under /admin (:mod:`bridge.admin_api`), built on the same functions
(:func:`failure_target`, :class:`~bridge.console.jobs.Jobs`, :mod:`~bridge.console.playground`,
:mod:`~bridge.console.configview`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Request, post
from litestar.params import FromPath, RawBody

from bridge.console import playground
from bridge.console.configview import run_setup
from bridge.console.jobs import JobTarget
from bridge.console.pages import playground_page
from bridge.console.state import ConsoleState
from bridge.console.web import console_state, error_page, first, form, is_partial, page, principal, redirect
from bridge.errors import BridgeError, MappingError, OperationError

__all__ = ["ACTION_HANDLERS", "failure_target", "replay_call"]


def replay_call(state: ConsoleState, call_id: str, connector: str | None, actor: str) -> tuple[str, ...]:
    """Deliver one call again, on purpose (to one connector or wherever its route sends it now); audited."""
    targets = state.ops.replay(call_id, [connector] if connector else None, actor=actor)
    state.audit.record(actor, "replay", call_id, calls=1, detail={"connectors": list(targets)})
    return targets


def failure_target(state: ConsoleState, connector: str, group: str | None, ids: list[str] | None) -> JobTarget:
    """The calls a bulk action works on: a whole failure group (or connector), or the chosen ids of it. Chosen
    calls that are no longer failing in the log are kept with status `gone` (a replay skips them)."""
    if connector not in state.settings.connectors:
        raise OperationError(f"no connector named {connector!r}")
    failing = dict(state.queries.failing_calls(connector, group if not ids else None))
    if ids:
        calls = [(call_id, failing.get(call_id, "gone")) for call_id in dict.fromkeys(ids)]
        describe = f"{connector}: {len(calls)} chosen call(s)"
    else:
        calls = list(failing.items())
        describe = f"{connector}: {group}" if group is not None else f"{connector}: every failure"
    return JobTarget(connector=connector, calls=calls, group=group, describe=describe)


@post("/calls/{call_id:str}/replay", sync_to_thread=True, status_code=303)
def replay(request: Request[Any, Any, Any], call_id: FromPath[str], body: RawBody) -> Any:
    state = console_state(request)
    connector = first(form(body), "connector") or None
    try:
        targets = replay_call(state, call_id, connector, principal(request).name)
    except BridgeError as exc:
        return error_page(request, 400, "Not replayed", str(exc))
    return redirect(state.url(f"/console/calls/{quote(call_id, safe='')}?replayed={quote(','.join(targets))}"))


def _bulk(request: Request[Any, Any, Any], action: str, body: bytes) -> Any:
    state = console_state(request)
    fields = form(body)
    connector = first(fields, "connector")
    group = first(fields, "group") if "group" in fields else None
    ids = [value for value in fields.get("ids", []) if value]
    try:
        target = failure_target(state, connector, group, ids or None)
    except BridgeError as exc:
        return error_page(request, 400, "Nothing to do", str(exc))
    if first(fields, "confirmed") != "yes":
        return page(request, "confirm.html", nav="failures", action=action, target=target, ids=ids, group=group)
    if not target.calls:
        return error_page(request, 400, "Nothing to do", "No calls are failing in this group any more.")
    job = state.jobs.start(action, target, principal(request).name)
    return redirect(state.url(f"/console/jobs/{job.id}"))


@post("/failures/replay", sync_to_thread=True, status_code=200)
def failures_replay(request: Request[Any, Any, Any], body: RawBody) -> Any:
    return _bulk(request, "replay", body)


@post("/failures/purge", sync_to_thread=True, status_code=200)
def failures_purge(request: Request[Any, Any, Any], body: RawBody) -> Any:
    return _bulk(request, "purge", body)


@post("/mappings/{connector:str}/render", sync_to_thread=True, status_code=200)
def mapping_render(request: Request[Any, Any, Any], connector: FromPath[str], body: RawBody) -> Any:
    state = console_state(request)
    fields = form(body)
    text, call_id, pasted = first(fields, "mapping"), first(fields, "call"), first(fields, "payload")
    try:
        source = playground.connector_mapping(state, connector)
    except (BridgeError, MappingError) as exc:
        return error_page(request, 409, "The mapping cannot be loaded", str(exc))
    if source is None:
        return error_page(request, 404, "No mapping", f"Connector {connector} writes without a mapping.")
    if not is_partial(request):
        return playground_page(request, connector, source, text, call_id, pasted)
    document, payload_error = None, ""
    if call_id or pasted.strip():
        try:
            document = playground.load_payload(state, call_id=call_id, pasted=pasted)
        except BridgeError as exc:
            payload_error = str(exc)
    result = playground.render_playground(state, connector, text, document)
    return page(request, "_playground_result.html", result=result, payload_error=payload_error, source=source)


@post("/mappings/{connector:str}/save", sync_to_thread=True, status_code=200)
def mapping_save(request: Request[Any, Any, Any], connector: FromPath[str], body: RawBody) -> Any:
    state = console_state(request)
    fields = form(body)
    text, call_id, pasted = first(fields, "mapping"), first(fields, "call"), first(fields, "payload")
    try:
        source = playground.connector_mapping(state, connector)
        if source is None:
            raise OperationError(f"connector {connector} writes without a mapping")
        saved = playground.save_mapping(state, connector, text, principal(request).name)
    except (BridgeError, MappingError) as exc:
        source = playground.connector_mapping(state, connector)
        return playground_page(request, connector, source, text, call_id, pasted, status_code=422, save_error=str(exc))
    notice = quote(f"Saved {saved['path']} (digest {saved['digest']})")
    return redirect(state.url(f"/console/mappings/{quote(connector)}?call={quote(call_id)}&saved={notice}"))


@post("/settings/setup/{connector:str}", sync_to_thread=True, status_code=303)
def setup(request: Request[Any, Any, Any], connector: FromPath[str]) -> Any:
    state = console_state(request)
    try:
        outcome = run_setup(state, connector, principal(request).name)
    except BridgeError as exc:
        return error_page(request, 400, "Setup not run", str(exc))
    verdict = "done" if outcome["ok"] else "failed"
    return redirect(state.url(f"/console/settings?setup={quote(f'{connector}: setup {verdict}')}"))


ACTION_HANDLERS = [replay, failures_replay, failures_purge, mapping_render, mapping_save, setup]
