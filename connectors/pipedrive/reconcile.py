"""Finding a record an earlier attempt may have written without recording its id: the reconciliation lookup.

Pipedrive has no idempotency key, no upsert and no external id on call logs or activities, so the exactly-once
guard (:func:`bridge.ledger.write_once`) sets an intent marker before each create and, when it finds one left by
an earlier attempt (a crash, a timeout, a lost answer), asks these functions whether that attempt's record
exists. Each record's note ends with ``agni:<key>`` (:mod:`connectors.pipedrive.records`), and only listings
Pipedrive really has are read — no lookup the real API lacks:

* activities (the call with `record: activity`, and follow-ups):
  ``GET /api/v2/activities?person_id=<person>&updated_since=<the marker's time - 10 min>`` — by the owner
  instead when there is no person, by time alone when there is neither — cursor pages of 500, every page read;
* call logs: ``GET /v1/callLogs?start=…&limit=50``, which lists the call logs *assigned to the token's user*
  (Pipedrive documents no filter, no order and no person listing for call logs), page after page up to
  `reconcile_max_pages`. A call log logged for another user (owner_map) is not in that listing: after a lost
  answer such a call can be logged twice. `setup` says so when owner_map names other users, and
  `record: activity` has no such gap.

The marker's time comes from the ledger entry (when the earlier attempt went out); `updated_since` only ever
narrows the listing to records touched after it, which includes the one we look for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from connectors.pipedrive.api import PipedriveApi
from connectors.pipedrive.records import has_marker

__all__ = ["CLOCK_SKEW", "find_activity", "find_call_log"]

CLOCK_SKEW = timedelta(minutes=10)
MAX_ACTIVITY_PAGES = 50  # 25,000 activities of one person since the marker: far beyond any real case

log = logging.getLogger("bridge.connector.pipedrive.reconcile")


def find_call_log(api: PipedriveApi, key: str, *, max_pages: int) -> str | None:
    """The id of the token user's call log whose note carries `key`'s marker, or None."""
    start: int | None = 0
    pages = 0
    while start is not None and pages < max_pages:
        items, start = api.call_logs_page(start)
        pages += 1
        for item in items:
            if has_marker(item.get("note"), key):
                return str(item.get("id"))
    if start is not None:
        log.warning(
            "reconciliation read %d pages of call logs without finding %s and stopped (reconcile_max_pages)",
            pages, key,
        )  # fmt: skip
    return None


def find_activity(
    api: PipedriveApi,
    key: str,
    *,
    person_id: str | None,
    owner_id: str | None,
    since: Callable[[], float | None],
) -> str | None:
    """The id of the activity whose note carries `key`'s marker, among the person's (or owner's) activities
    updated since the earlier attempt (`since()`: its epoch seconds, None when unknown: two days back)."""
    stamp = since()
    moment = datetime.fromtimestamp(stamp, UTC) if stamp else datetime.now(UTC) - timedelta(days=2)
    params: dict[str, str] = {"updated_since": (moment - CLOCK_SKEW).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if person_id is not None:
        params["person_id"] = person_id
    elif owner_id is not None:
        params["owner_id"] = owner_id
    cursor: str | None = None
    for _ in range(MAX_ACTIVITY_PAGES):
        items, cursor = api.activities_page(params, cursor)
        for item in items:
            if has_marker(item.get("note"), key) and not item.get("is_deleted"):
                return str(item.get("id"))
        if cursor is None:
            return None
    return None
