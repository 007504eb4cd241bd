"""The generic exactly-once ledger (bridge.ledger) with a destination other than HubSpot.

The destination is a small in-memory store reached through the callbacks write_once takes (create, find,
update), as a connector would pass its HTTP calls; the ledger itself runs on the test's real Redis. The HubSpot
connector's own exactly-once tests (tests/connectors/test_hubspot_exactly_once.py) run it end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bridge.errors import ConnectorError, DeferredError, PermanentError, RetryableError
from bridge.ledger import Ledger, write_once


class Desk:
    """A destination without upsert: objects by id, an eventually consistent search, scripted failures."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.created = 0
        self.indexed = True
        self.fail_next: ConnectorError | None = None
        self.lose_next_answer = False

    def create(self, body: dict[str, Any]) -> Callable[[Callable[[], None]], str]:
        def run(touch: Callable[[], None]) -> str:
            touch()
            if self.fail_next is not None:
                error, self.fail_next = self.fail_next, None
                raise error
            self.created += 1
            object_id = str(self.created)
            self.objects[object_id] = dict(body)
            if self.lose_next_answer:
                self.lose_next_answer = False
                raise RetryableError("Desk: timed out")  # written, but the id never came back
            return object_id

        return run

    def find(self, external_id: str) -> Callable[[], str | None]:
        def run() -> str | None:
            if not self.indexed:
                return None
            return next((i for i, o in self.objects.items() if o["external_id"] == external_id), None)

        return run

    def update(self, body: dict[str, Any]) -> Callable[[str], None]:
        def run(object_id: str) -> None:
            if object_id not in self.objects:
                raise PermanentError("Desk: gone", status=410)
            self.objects[object_id].update(body)

        return run


def refused(exc: ConnectorError) -> bool:
    """This destination's reading of its errors: a 422 certainly wrote nothing."""
    return exc.status == 422


def deliver(ledger: Ledger, desk: Desk, key: str, body: dict[str, Any], **options: Any) -> Any:
    body = {"external_id": key, **body}
    return write_once(
        ledger,
        "ticket",
        key,
        create=desk.create(body),
        find=desk.find(key),
        update=desk.update(body),
        links=frozenset(),
        stale_after=options.pop("stale_after", 30.0),
        certainly_not_written=refused,
        deleted=lambda exc: exc.status == 410,
        **options,
    )


@pytest.fixture
def ledger(redis_client) -> Ledger:
    return Ledger(redis_client, "agni:desk:test:ledger", destination="Desk")


def test_the_first_delivery_creates_and_every_later_one_updates_the_same_object(ledger):
    desk = Desk()
    first = deliver(ledger, desk, "call-1", {"subject": "one"})
    again = deliver(ledger, desk, "call-1", {"subject": "two"})
    assert (first.how, again.how) == ("created", "updated")
    assert first.id == again.id and desk.objects == {first.id: {"external_id": "call-1", "subject": "two"}}


def test_a_create_the_destination_certainly_refused_releases_the_marker_so_the_next_attempt_creates(ledger):
    desk = Desk()
    desk.fail_next = PermanentError("Desk: invalid", status=422)
    with pytest.raises(PermanentError):
        deliver(ledger, desk, "call-1", {})
    assert deliver(ledger, desk, "call-1", {}).how == "created"  # no settle wait, no search


def test_an_ambiguous_failure_keeps_the_marker_and_the_retry_searches_instead_of_creating(ledger):
    desk = Desk()
    desk.lose_next_answer = True
    with pytest.raises(RetryableError):
        deliver(ledger, desk, "call-1", {})
    desk.indexed = False  # the destination's search lags behind its create
    with pytest.raises(DeferredError, match=r"^Desk ticket: an earlier attempt may have created it"):
        deliver(ledger, desk, "call-1", {})
    desk.indexed = True
    found = deliver(ledger, desk, "call-1", {"subject": "found"})
    assert found.how == "found" and len(desk.objects) == 1
    assert desk.objects[found.id]["subject"] == "found"


def test_an_object_deleted_in_the_destination_is_created_anew_by_the_connector_s_deleted_test(ledger):
    desk = Desk()
    first = deliver(ledger, desk, "call-1", {})
    del desk.objects[first.id]  # an agent deleted it; this destination answers 410 Gone
    again = deliver(ledger, desk, "call-1", {})
    assert again.how == "created" and again.id != first.id and list(desk.objects) == [again.id]


def test_a_ledger_without_redis_says_so_naming_the_destination():
    gone = unreachable_redis()
    with pytest.raises(RetryableError, match=r"^Desk exactly-once ledger unavailable \(Redis: ConnectionError\)"):
        Ledger(gone, "agni:desk", destination="Desk").claim("ticket", "call-1")


def unreachable_redis() -> redis.Redis:
    """A client for a port nothing listens on, failing at once (no reconnect attempts)."""
    return redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
