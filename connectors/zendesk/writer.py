"""Each ticket exactly once: the core ledger, Zendesk's Idempotency-Key, and the external_id listing.

Zendesk has no upsert for tickets, and `external_id` is not unique, so the
connector combines three guards (the call's ticket under the call id; the
follow-up task under ``<call id>:follow_up``):

1. **The ledger** (:func:`bridge.ledger.write_once`): the ticket id once known,
   and an intent marker set before the create goes out. A known id means an
   update (a replay), never a second ticket; no id and no marker means a
   create; a marker without an id means an earlier attempt may have created
   it, so the connector first looks:
2. **The reconciliation lookup**, ``GET /api/v2/tickets?external_id=<key>``:
   a plain listing, not the search API (whose index lags by minutes). When it
   returns several tickets (external ids are not unique: an import, another
   integration) the oldest wins (earliest `created_at`, then lowest id), the
   same one every time. Found: update it and record its id. Not found: a marker
   younger than `stale_after` (request timeout + `reconcile_settle_seconds`)
   means an attempt may still be in flight, so the call is deferred; an older
   one leads to a create.
3. **The Idempotency-Key** on every create (the key itself): within Zendesk's
   window (about 2 h, `idempotency_window_seconds`), the same key with the same
   body returns the ticket the first request created (``x-idempotency-lookup:
   hit``), and the same key with another body is refused (400
   IdempotentRequestError). Either way no second ticket. A refusal means an
   earlier request went out under the key with another body (the caller matched
   differently, the mapping changed): the writer looks the ticket up again and,
   if it is still not listed, defers until the key expires, counting from when
   the key was first sent (kept in Redis).

So a duplicate needs a create that landed without its id recorded, AND the
listing not showing it for longer than the key's window. Left open: a replay
after the ledger forgot the call (400 days, or a lost Redis) creates without
looking first, as for HubSpot; and a ticket deleted in Zendesk and replayed
within the key window with an unchanged body is answered with the deleted
ticket's id until the key expires.

Updates send only what a replay may rewrite (:func:`connectors.zendesk.tickets.update_of`).
A closed ticket is read-only in Zendesk: its update is skipped with a note.
Redis keys: ``{prefix}:{kind}:{key}`` (the ledger) and ``{prefix}:sent:{kind}:{key}``
(when the key was first sent; expires with the window).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from bridge.errors import ConnectorError, DeferredError, PermanentError
from bridge.ledger import Ledger, Outcome, write_once
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.errors import certainly_not_written, closed_ticket, is_idempotency_conflict

__all__ = ["TicketWriter", "oldest"]

log = logging.getLogger("bridge.connector.zendesk")


def oldest(tickets: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The deterministic pick among tickets sharing an external_id: earliest created_at, then lowest id."""
    if not tickets:
        return None
    return min(tickets, key=lambda t: (str(t.get("created_at") or ""), int(t["id"])))


class TicketWriter:
    """Writes one ticket kind at a time under the ledger; shared by every worker thread."""

    def __init__(
        self,
        client: ZendeskClient,
        ledger: Ledger,
        store: redis.Redis,
        *,
        stale_after: float,
        window_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.store = store
        self.stale_after = stale_after
        self.window = window_seconds
        self.clock = clock

    def write(
        self, kind: str, key: str, ticket: dict[str, Any], changes: dict[str, Any] | None, notes: list[str]
    ) -> Outcome:
        """Create `ticket` once under `key`, or apply `changes` to the one created before."""

        def create(touch: Callable[[], None]) -> str:
            def going_out() -> None:
                touch()
                self._stamp(kind, key)

            try:
                created, lookup = self.client.create_ticket(ticket, idempotency_key=key, on_send=going_out)
            except ConnectorError as exc:
                if not is_idempotency_conflict(exc):
                    raise
                return self._reconcile_conflict(kind, key, exc, update, notes)
            if lookup == "hit":
                notes.append(f"{kind}: Zendesk answered from its Idempotency-Key cache (created by an earlier attempt)")
            return str(created["id"])

        def update(ticket_id: str) -> None:
            if changes is None:
                return
            try:
                self.client.update_ticket(ticket_id, changes)
            except PermanentError as exc:
                if not closed_ticket(exc):
                    raise
                notes.append(f"{kind}: ticket {ticket_id} is closed in Zendesk and was left as it is")

        return write_once(
            self.ledger,
            kind,
            key,
            create=create,
            find=lambda: self.find(key),
            update=update,
            links=frozenset(),
            stale_after=self.stale_after,
            certainly_not_written=certainly_not_written,
        )

    def find(self, key: str) -> str | None:
        """The reconciliation lookup: the oldest ticket listed under external_id `key`."""
        found = oldest(self.client.tickets_by_external_id(key))
        return str(found["id"]) if found is not None else None

    def _reconcile_conflict(
        self, kind: str, key: str, exc: ConnectorError, update: Callable[[str], None], notes: list[str]
    ) -> str:
        found = self.find(key)
        if found is not None:
            update(found)
            notes.append(f"{kind}: an earlier attempt had created ticket {found} (Idempotency-Key conflict)")
            return found
        since = self._sent_at(kind, key)
        wait = max(5.0, (since + self.window - self.clock()) if since is not None else self.stale_after)
        raise DeferredError(
            f"Zendesk {kind}: an earlier request under Idempotency-Key {key} had another body and its ticket is "
            f"not listed; waiting {wait:.0f}s for the key to expire rather than risk a duplicate",
            retry_after=wait,
            status=exc.status,
            code=exc.code,
            details=exc.details,
        ) from exc

    # -- when the key was first sent -------------------------------------------------------
    def _sent_key(self, kind: str, key: str) -> str:
        return f"{self.ledger.prefix}:sent:{kind}:{key}"

    def _stamp(self, kind: str, key: str) -> None:
        # Best effort: without it a conflict waits `stale_after` at a time instead of the key's remaining life.
        with contextlib.suppress(redis.RedisError):
            self.store.set(self._sent_key(kind, key), repr(self.clock()), nx=True, ex=max(1, int(self.window)))

    def _sent_at(self, kind: str, key: str) -> float | None:
        try:
            raw = self.store.get(self._sent_key(kind, key))
        except redis.RedisError:
            return None
        try:
            return float(raw) if raw is not None else None
        except ValueError:
            return None
