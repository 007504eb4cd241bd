"""The mapping playground: render an edited mapping for a call, diff it against the current one, save it.

A connector's mapping is compiled from the editor's text exactly as `check` compiles the file (same checks,
same wording: errors start with the file's location and name the field, e.g.
``mappings/salesforce_task.yaml: fields.Subject: TemplateSyntaxError (line 1): …``), then rendered field by
field against a call from the log or a pasted webhook, so every failing field shows its own error. The
records the current mapping renders for the same call are shown beside it, and the edit is tried on the last
100 calls routed to the connector ("this change alters 37 of the last 100 records"). Redaction applies as
in the worker: what you see is what the connector would receive.

Saving (admins, with `admin.mappings_writable: true`) validates like `check` (compiles, renders the example
payload when one sits next to the config file), keeps the previous version under
``mappings_dir/.history/``, and replaces the file atomically (write, fsync, rename). Workers compare the
file's size and time before each delivery (:meth:`bridge.mapping.MappingLoader.load`), so the next delivery
uses it — and the log records its digest — without a restart. Every API and worker process must see the
same `mappings_dir` (one machine, or a shared volume).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bridge.console.state import ConsoleState
from bridge.db import schema as t
from bridge.db.engine import translate_errors
from bridge.db.queries import CallSearch, decode_payload
from bridge.errors import BridgeError, ConfigError, MappingError, OperationError
from bridge.mapping import BUILTIN, CompiledMapping, MappingLoader, compile_text, render_context
from bridge.registry import validate_connector
from bridge.templating import make_environment

__all__ = [
    "MappingSource",
    "connector_mapping",
    "load_payload",
    "render_playground",
    "sample_contexts",
    "save_mapping",
]

SAMPLE_SIZE = 100
SAMPLE_CACHE_SECONDS = 30.0
SECTIONS = ("fields", "follow_up", "new_contact")
_cache_lock = threading.Lock()


class MappingSource:
    """A connector's mapping as the workers load it: name, where it comes from, its text and compiled form."""

    def __init__(self, connector: str, name: str, compiled: CompiledMapping, text: str, target: Path) -> None:
        self.connector = connector
        self.name = name
        self.compiled = compiled
        self.text = text
        self.target = target
        """Where saving writes: the admin's file, or mappings_dir/<name> over a built-in."""

    @property
    def origin(self) -> str:
        return self.compiled.origin

    @property
    def location(self) -> str:
        return self.compiled.location


def _loader(state: ConsoleState) -> MappingLoader:
    loader = state.extras.get("loader")
    if loader is None:
        loader = state.extras["loader"] = MappingLoader(state.settings.resolve(state.settings.mappings_dir))
    return loader


def connector_mapping(state: ConsoleState, connector: str) -> MappingSource | None:
    """The connector's current mapping (None: the connector has none); BridgeError when it cannot be loaded."""
    settings = state.settings
    if connector not in settings.connectors:
        raise OperationError(f"no connector named {connector!r}")
    cls, config = validate_connector(settings, connector)
    name = config.mapping or cls.default_mapping
    if not name:
        return None
    loader = _loader(state)
    compiled = loader.load(name)
    if compiled.builtin:
        text = (loader.builtins / name).read_text(encoding="utf-8")
        target = loader.directory / name
    else:
        target = Path(compiled.origin)
        text = target.read_text(encoding="utf-8")
    return MappingSource(connector, name, compiled, text, target)


def _compile(source: MappingSource, text: str) -> CompiledMapping:
    origin = BUILTIN if source.compiled.builtin and text == source.text else str(source.target)
    return compile_text(text, source.name, origin, make_environment())


# -- payloads -------------------------------------------------------------------------------


def load_payload(state: ConsoleState, *, call_id: str = "", pasted: str = "") -> dict[str, Any]:
    """The webhook document to render: a call from the log, or pasted JSON (a whole webhook, or its `data`)."""
    if pasted.strip():
        try:
            document = json.loads(pasted)
        except ValueError as exc:
            raise OperationError(f"the pasted payload is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise OperationError("the pasted payload must be a JSON object (a webhook, or its data)")
        if not isinstance(document.get("data"), dict):
            document = {"event": "call.completed", "org_id": "", "data": document}
        return document
    if call_id:
        body = state.call_log.payload(call_id.strip())
        if body is None:
            raise OperationError(f"call {call_id} is not in the log")
        return json.loads(body)
    raise OperationError("pick a call or paste a payload")


def _context(state: ConsoleState, connector: str, document: dict[str, Any]) -> dict[str, Any]:
    call = document.get("data") if isinstance(document.get("data"), dict) else {}
    raw = state.settings.connectors.get(connector, {})
    if state.redactor is not None and raw.get("redact_pii", True) is not False:
        call = state.redactor.call(call)
    return render_context(
        call=call, event=str(document.get("event", "")), org_id=str(document.get("org_id", "")), connector=connector
    )


def sample_contexts(state: ConsoleState, connector: str) -> list[tuple[str, dict[str, Any]]]:
    """(call id, render context) of the last SAMPLE_SIZE calls routed to the connector; cached briefly, read in
    two queries (the page of calls, then their payloads in one statement)."""
    cache = state.extras.setdefault("samples", {})
    with _cache_lock:
        hit = cache.get(connector)
        if hit is not None and time.monotonic() - hit[0] < SAMPLE_CACHE_SECONDS:
            return hit[1]
    page = state.call_log.search(CallSearch(connector=connector, limit=SAMPLE_SIZE))
    ids = [report.call_session_id for report in page.calls]
    payloads: dict[str, bytes] = {}
    if ids:
        statement = sa.select(t.calls.c.call_session_id, t.calls.c.payload, t.calls.c.payload_codec).where(
            t.calls.c.call_session_id.in_(ids)
        )
        with translate_errors("reading sample payloads", state.engine), state.engine.connect() as conn:
            for call_id, stored, codec in conn.execute(statement):
                body = decode_payload(stored, codec)
                if body:
                    payloads[call_id] = body
    contexts = []
    for call_id in ids:
        try:
            document = json.loads(payloads[call_id])
        except (KeyError, ValueError):
            continue
        contexts.append((call_id, _context(state, connector, document)))
    with _cache_lock:
        cache[connector] = (time.monotonic(), contexts)
    return contexts


# -- rendering ------------------------------------------------------------------------------


def _records(mapping: CompiledMapping, context: dict[str, Any]) -> dict[str, Any]:
    """Every section's record, or the error that stops a delivery ({"error": …})."""
    try:
        return {
            "fields": mapping.render(context),
            "follow_up": mapping.render_follow_up(context),
            "new_contact": mapping.render_new_contact(context) if mapping.spec.new_contact else None,
        }
    except MappingError as exc:
        return {"error": str(exc)}


def _sections(mapping: CompiledMapping, context: dict[str, Any]) -> dict[str, Any]:
    """Per section: its fields (value or error each) and whether it applies."""
    out: dict[str, Any] = {"fields": {"applies": True, "fields": mapping.render_fields("fields", context)}}
    follow_up = mapping.spec.follow_up
    if follow_up is not None and follow_up.enabled:
        try:
            applies, why = mapping.follow_up_applies(context), ""
        except MappingError as exc:
            applies, why = False, str(exc)
        out["follow_up"] = {"applies": applies, "error": why, "fields": mapping.render_fields("follow_up", context)}
    if mapping.spec.new_contact:
        out["new_contact"] = {"applies": True, "fields": mapping.render_fields("new_contact", context)}
    return out


def _error_where(message: str, label: str) -> dict[str, Any]:
    """The field (`fields.Subject`) and line an error message names, for showing it at its place."""
    rest = message[len(label) + 2 :] if message.startswith(label + ": ") else message
    where, _, reason = rest.partition(": ")
    field = where if where.split(".", 1)[0] in SECTIONS else ""
    line = None
    if "line " in message:
        try:
            line = int(message.split("line ", 1)[1].split(",")[0].split(")")[0].split(":")[0])
        except ValueError:
            line = None
    return {"message": message, "field": field, "reason": reason if field else rest, "line": line}


def _diff(current: dict[str, Any], edited: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for section in SECTIONS:
        before = current.get(section) or {}
        after = edited.get(section) or {}
        for name in list(dict.fromkeys([*before, *after])):
            old, new = before.get(name), after.get(name)
            rows.append({"field": f"{section}.{name}", "current": old, "edited": new, "changed": old != new})
    return rows


def render_playground(
    state: ConsoleState, connector: str, text: str, document: dict[str, Any] | None, *, sample: bool = True
) -> dict[str, Any]:
    """What the editor's mapping renders for the call, field by field; the diff against the current mapping;
    how many of the last calls it changes. Compile errors come back instead of records."""
    source = connector_mapping(state, connector)
    if source is None:
        raise OperationError(f"connector {connector} has no mapping")
    result: dict[str, Any] = {"connector": connector, "name": source.name, "location": source.location}
    try:
        edited = _compile(source, text)
    except MappingError as exc:
        label = str(source.target) if not (source.compiled.builtin and text == source.text) else source.location
        result["compile_error"] = _error_where(str(exc), label)
        return result
    result["digest"] = edited.digest
    result["current_digest"] = source.compiled.digest
    result["unchanged"] = edited.digest == source.compiled.digest
    if document is not None:
        context = _context(state, connector, document)
        result["sections"] = _sections(edited, context)
        result["errors"] = [
            _error_where(f.error, edited.name)
            for part in result["sections"].values()
            for f in part["fields"]
            if f.error
        ]
        current_records, edited_records = _records(source.compiled, context), _records(edited, context)
        result["diff"] = _diff(current_records, edited_records)
        result["current_error"] = current_records.get("error", "")
        result["edited_error"] = edited_records.get("error", "")
    if sample:
        contexts = sample_contexts(state, connector)
        changed = 0
        for _, context in contexts:
            if _records(source.compiled, context) != _records(edited, context):
                changed += 1
        result["sample"] = {"changed": changed, "total": len(contexts)}
    return result


# -- saving -------------------------------------------------------------------------------


def save_mapping(state: ConsoleState, connector: str, text: str, actor: str) -> dict[str, Any]:
    """Validate like `check`, keep the previous version, replace the file atomically, audit it."""
    if not state.settings.admin.mappings_writable:
        raise OperationError("saving mappings is off (admin.mappings_writable: false)")
    source = connector_mapping(state, connector)
    if source is None:
        raise OperationError(f"connector {connector} has no mapping")
    target = source.target
    compiled = compile_text(text, source.name, str(target), make_environment())  # MappingError: not saved
    example = Path(state.settings.config_path).parent / "examples" / "call_completed.json"
    if example.is_file():
        document = json.loads(example.read_bytes())
        try:
            _records_or_raise(compiled, _context(state, connector, document))
        except MappingError as exc:
            raise MappingError(f"{exc} (rendering {example.name})") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    kept = ""
    if target.exists():
        history = target.parent / ".history"
        history.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        previous = history / f"{target.name}.{stamp}.{source.compiled.digest}"
        shutil.copy2(target, previous)
        kept = str(previous)
    _write_atomically(target, text.encode("utf-8"))
    _loader(state).load(str(target))  # our own loader sees it at once too
    state.extras.get("samples", {}).pop(connector, None)
    detail = {"connector": connector, "from": source.compiled.digest, "to": compiled.digest, "previous": kept}
    state.audit.record(actor, "save-mapping", str(target), calls=0, detail=detail)
    return {"path": str(target), "digest": compiled.digest, "previous_digest": source.compiled.digest, "kept": kept}


def _records_or_raise(mapping: CompiledMapping, context: dict[str, Any]) -> None:
    mapping.render(context)
    mapping.render_follow_up(context)
    if mapping.spec.new_contact:
        mapping.render_new_contact(context)


def _write_atomically(target: Path, data: bytes) -> None:
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise OperationError(f"{target}: cannot write the mapping: {exc.strerror or exc}") from exc
    try:
        folder = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def preview_call(state: ConsoleState, call_id: str) -> dict[str, Any]:
    """What each connector the call is routed to would write now with the current mappings (nothing is sent):
    the requests `agni-bridge preview` prints, per connector, or the error that would stop the delivery."""
    from bridge.checks import preview_payload

    report = state.call_log.report(call_id)
    body = state.call_log.payload(call_id)
    if report is None or body is None:
        raise OperationError(f"call {call_id} is not in the log (or its payload was pruned)")
    document = json.loads(body)
    names = [c.connector for c in report.connectors if c.connector in state.settings.enabled_connectors()]
    previews: dict[str, Any] = {}
    for name in names:
        context = _context(state, name, document)
        redacted = json.dumps({**document, "data": context["call"]}).encode()
        try:
            previews[name] = {"requests": preview_payload(state.settings, redacted, [name])[name]}
        except (BridgeError, ConfigError) as exc:
            previews[name] = {"error": str(exc)}
    return {"call_id": call_id, "previews": previews}


def recent_calls(state: ConsoleState, connector: str, limit: int) -> list[Any]:
    """The newest calls routed to the connector (the playground's call picker)."""
    return state.call_log.search(CallSearch(connector=connector, limit=limit)).calls


def recent_digests(state: ConsoleState, connector: str, limit: int = 200) -> list[dict[str, Any]]:
    """Which mapping versions wrote the connector's last `limit` calls: digest, how many, the newest such call."""
    found: dict[str, dict[str, Any]] = {}
    for report in recent_calls(state, connector, limit):
        for delivery in report.connectors:
            if delivery.connector != connector or not delivery.mapping_digest:
                continue
            entry = found.setdefault(
                delivery.mapping_digest,
                {"digest": delivery.mapping_digest, "mapping": delivery.mapping, "calls": 0,
                 "newest": report.call_session_id, "newest_at": report.received_at},
            )  # fmt: skip
            entry["calls"] += 1
    return sorted(found.values(), key=lambda e: -(e["newest_at"] or 0))
