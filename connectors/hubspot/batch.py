"""Batched writes: concurrent deliveries' creates and updates share HubSpot's /batch/create and /batch/update.

HubSpot's ten-second budget (100-190 requests per account) is what limits a busy call floor, and one batch
request carries up to 100 objects. Each worker thread still delivers its own call (its own lock, retries
and history: see :mod:`bridge.batching`); it hands its create or update to a Batcher and blocks until the
request that carried it has been answered.

Exactly once, per object, as :mod:`bridge.ledger` describes: the thread sets the object's intent
marker before it joins a batch; the batch re-stamps every marker in one round trip right before the request
goes out (after any wait for a rate-limit slot), and records every created id in one Redis transaction
before any caller wakes up. A retry that finds an old marker takes the unchanged search-before-create path.

HubSpot does not promise results in input order, so its answer is attributed like this:

    results                      each by the call-id property value it carries (updates: by id); should
                                 HubSpot leave that property out, one batch read of the new ids supplies it
    207 errors[]                 to the input(s) an error's message or context names; a lone error and a lone
                                 missing input pair up; otherwise the failed inputs are retried one by one,
                                 so each caller gets its own error (they certainly were not written)
    missing, unexplained         creates: RetryableError, the marker stays (settle, then search);
                                 updates (idempotent): retried one by one
    whole request 400/404/409/413/422
                                 refused for some input's sake, nothing written: the batch is split in
                                 halves until each failing input stands alone with HubSpot's own error
                                 (one bad input among 64 costs ~12 extra requests; a systemic error ~2x)
    whole request, other errors  every caller gets it (429, timeout, 5xx: creates that may have landed keep
                                 their markers and follow the settle-then-search path)

A batch of one uses the single-object endpoints (POST /calls, PATCH /calls/{id}): a lone call at a quiet
moment costs the same one request as without batching, and gets HubSpot's exact answer.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bridge.batching import Batcher
from bridge.errors import ConnectorError, PermanentError, RetryableError
from bridge.ledger import Ledger
from connectors.hubspot.client import HubSpotClient

__all__ = ["MAX_BATCH_INPUTS", "BatchWriter", "NewObject"]

MAX_BATCH_INPUTS = 100  # REFERENCE.md §1.1
# Whole-batch refusals that may be one input's fault: split the batch to find out whose.
_SPLIT_STATUSES = frozenset({400, 404, 409, 413, 422})
# A 207 error entry carries a category, not an HTTP status.
_CATEGORY_STATUS = {"VALIDATION_ERROR": 400, "OBJECT_NOT_FOUND": 404, "CONFLICT": 409, "RATE_LIMITS": 429}

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("bridge.connector.hubspot.batch")


@dataclass(frozen=True)
class NewObject:
    """One object to create: its ledger entry (`kind`, `key` = its call-id property value) and its body."""

    kind: str
    key: str
    properties: dict[str, str]
    associations: list[dict[str, Any]]
    links: frozenset[str]


@dataclass(frozen=True)
class _Change:
    object_id: str
    properties: dict[str, str]


class BatchWriter:
    """Creates and updates through one Batcher per (operation, object type), each built on first use."""

    def __init__(
        self,
        client: HubSpotClient,
        ledger: Ledger,
        *,
        id_property: str,
        size: int,
        linger: float,
        max_wait: float,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.id_property = id_property
        self.size = min(size, MAX_BATCH_INPUTS)
        self.linger = linger
        self.max_wait = max_wait
        self._batchers: dict[tuple[str, str], Batcher[Any, Any]] = {}
        self._lock = threading.Lock()

    def create(self, object_type: str, item: NewObject) -> str:
        """Create `item` (its marker already set by the caller) and record its id; returns the id."""
        return str(self._batcher("create", object_type).submit(item))

    def update(self, object_type: str, object_id: str, properties: dict[str, str]) -> None:
        """PATCH one object's properties; raises its own error (a 404 when it was deleted in HubSpot)."""
        self._batcher("update", object_type).submit(_Change(object_id, properties))

    def close(self) -> None:
        with self._lock:
            batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            batcher.close()

    def _batcher(self, operation: str, object_type: str) -> Batcher[Any, Any]:
        with self._lock:
            batcher = self._batchers.get((operation, object_type))
            if batcher is None:
                run = self._creates if operation == "create" else self._updates

                def send(items: Sequence[Any]) -> Sequence[Any]:
                    return run(object_type, list(items))

                batcher = Batcher(
                    send,
                    max_size=self.size,
                    linger=self.linger,
                    max_wait=self.max_wait,
                    name=f"hubspot-{operation}-{object_type}",
                )
                self._batchers[(operation, object_type)] = batcher
            return batcher

    # -- creates --------------------------------------------------------------------------
    def _creates(self, object_type: str, items: list[NewObject]) -> list[str | ConnectorError]:
        """One result per item, in order. Items never share a key: only the marker's holder submits one."""
        if len(items) == 1:
            return [self._create_one(object_type, items[0])]
        inputs = [{"properties": i.properties, "associations": i.associations} for i in items]
        markers = [(i.kind, i.key) for i in items]
        try:
            body = self.client.batch(object_type, "create", inputs, on_send=lambda: self.ledger.touch_many(markers))
        except ConnectorError as exc:
            return _split(exc, items, lambda part: self._creates(object_type, part))

        ids = self._created_ids(object_type, {i.key for i in items}, _dicts(body.get("results")))
        outcome: dict[str, str | ConnectorError] = dict(ids)
        try:
            self.ledger.record_many([(i.kind, i.key, ids[i.key], i.links) for i in items if i.key in ids])
        except RetryableError as exc:  # created but unrecorded: their markers lead the retry to the search path
            outcome = dict.fromkeys(ids, exc)

        missing = [i for i in items if i.key not in ids]
        if missing:
            errors, alone = _pair_errors(missing, body, f"create {object_type}", lambda i: i.key, retry_unknown=False)
            outcome.update(errors)
            for item in alone:
                outcome[item.key] = self._create_one(object_type, item)
        return [outcome[i.key] for i in items]

    def _created_ids(self, object_type: str, wanted: set[str], results: list[dict[str, Any]]) -> dict[str, str]:
        """call-id value -> new object id, from the results' echoed properties (or, if HubSpot left the call-id
        property out of some, from one batch read of those ids; if that fails they stay unattributed)."""
        ids: dict[str, str] = {}
        unnamed: list[str] = []
        for result in results:
            object_id = str(result.get("id") or "")
            key = self._key_of(result)
            if object_id and key in wanted:
                ids[key] = object_id
            elif object_id and key is None:
                unnamed.append(object_id)
        if unnamed and len(ids) < len(wanted):
            inputs = [{"id": object_id} for object_id in unnamed]
            try:
                read = self.client.batch(object_type, "read", inputs, properties=[self.id_property])
            except ConnectorError as exc:
                log.warning("HubSpot %s: could not read back %d created id(s): %s", object_type, len(unnamed), exc)
                return ids
            for result in _dicts(read.get("results")):
                key = self._key_of(result)
                if key in wanted and key not in ids and result.get("id"):
                    ids[key] = str(result["id"])
        return ids

    def _key_of(self, result: dict[str, Any]) -> str | None:
        properties = result.get("properties")
        key = properties.get(self.id_property) if isinstance(properties, dict) else None
        return str(key) if key else None

    def _create_one(self, object_type: str, item: NewObject) -> str | ConnectorError:
        try:
            object_id = self.client.create(
                object_type, item.properties, item.associations, on_send=lambda: self.ledger.touch(item.kind, item.key)
            )
            self.ledger.record(item.kind, item.key, object_id, item.links)
        except ConnectorError as exc:
            return exc
        return object_id

    # -- updates --------------------------------------------------------------------------
    def _updates(self, object_type: str, changes: list[_Change]) -> list[ConnectorError | None]:
        # HubSpot refuses a batch naming one id twice (a whole-batch 400): repeats go in a later round.
        seen: set[str] = set()
        now, later = [], []
        for index, change in enumerate(changes):
            (later if change.object_id in seen else now).append(index)
            seen.add(change.object_id)
        results: list[ConnectorError | None] = [None] * len(changes)
        for indexes, send in ((now, self._update_distinct), (later, self._updates)):
            if indexes:
                for index, result in zip(indexes, send(object_type, [changes[i] for i in indexes]), strict=True):
                    results[index] = result
        return results

    def _update_distinct(self, object_type: str, changes: list[_Change]) -> list[ConnectorError | None]:
        if len(changes) == 1:
            return [self._update_one(object_type, changes[0])]
        inputs = [{"id": c.object_id, "properties": c.properties} for c in changes]
        try:
            body = self.client.batch(object_type, "update", inputs)
        except ConnectorError as exc:
            return _split(exc, changes, lambda part: self._update_distinct(object_type, part))
        done = {str(r.get("id")) for r in _dicts(body.get("results"))}
        missing = [c for c in changes if c.object_id not in done]
        errors, alone = _pair_errors(
            missing, body, f"update {object_type}", lambda c: c.object_id, retry_unknown=True
        )  # fmt: skip
        outcome: dict[str, ConnectorError | None] = dict(errors)
        for change in alone:
            outcome[change.object_id] = self._update_one(object_type, change)
        return [outcome.get(c.object_id) for c in changes]

    def _update_one(self, object_type: str, change: _Change) -> ConnectorError | None:
        try:
            self.client.update(object_type, change.object_id, change.properties)
        except ConnectorError as exc:
            return exc
        return None


def _split(exc: ConnectorError, items: list[T], again: Callable[[list[T]], list[R]]) -> list[R | ConnectorError]:
    """A whole-batch failure: halve the batch when an input may be to blame, else everyone gets the error."""
    if len(items) > 1 and exc.status in _SPLIT_STATUSES:
        log.info("HubSpot refused a batch of %d (%s); splitting it to find the input(s) at fault", len(items), exc)
        half = len(items) // 2
        return [*again(items[:half]), *again(items[half:])]
    return [exc] * len(items)


def _pair_errors(
    missing: list[T], body: dict[str, Any], what: str, name: Callable[[T], str], *, retry_unknown: bool
) -> tuple[dict[str, ConnectorError], list[T]]:
    """Errors for the inputs missing from a batch's results, and the inputs to retry alone to find out."""
    errors: dict[str, ConnectorError] = {}
    unclaimed = []
    for entry in _dicts(body.get("errors")):
        named = [m for m in missing if name(m) not in errors and _mentions(entry, name(m))]
        for item in named:
            errors[name(item)] = _entry_error(entry, body, what)
        if not named:
            unclaimed.append(entry)
    rest = [m for m in missing if name(m) not in errors]
    if len(rest) == 1 and len(unclaimed) == 1:
        errors[name(rest[0])] = _entry_error(unclaimed[0], body, what)
    elif rest and (retry_unknown or len(rest) == len(unclaimed)):
        return errors, rest  # each one failed (or may be safely re-sent): alone, each gets its own answer
    else:
        for item in rest:
            errors[name(item)] = RetryableError(
                f"HubSpot {what}: missing from the batch answer ({len(unclaimed)} unexplained error(s)); "
                "it may have been written, so the retry looks for it first"
            )
    return errors, []


def _mentions(entry: dict[str, Any], token: str) -> bool:
    """Whether a 207 error names `token` (a call-id value or an object id) in its context or message."""
    context = entry.get("context")
    if isinstance(context, dict):
        for values in context.values():
            if token in (values if isinstance(values, list) else [values]):
                return True
    message = entry.get("message")
    pattern = rf"(?<![\w:.-]){re.escape(token)}(?![\w:.-])"
    return isinstance(message, str) and re.search(pattern, message) is not None


def _entry_error(entry: dict[str, Any], body: dict[str, Any], what: str) -> ConnectorError:
    """One 207 error entry as the bridge error a single request would have raised."""
    message = _text(entry.get("message")) or json.dumps(entry)[:300]
    category = _text(entry.get("category")) or None
    status = _CATEGORY_STATUS.get(category or "", 400)
    correlation = _text(entry.get("correlationId")) or _text(body.get("correlationId"))
    details = {"correlationId": correlation} if correlation else {}
    text = f"HubSpot {what}: {message}"
    if status == 429:
        return RetryableError(text, status=status, code=category, details=details)
    return PermanentError(text, status=status, code=category, details=details)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
