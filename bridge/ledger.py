"""Exactly once where the destination has no upsert: a Redis ledger, an intent marker, and search as the fallback.

Some destinations (HubSpot's calls and tasks among them) offer no unique
property to upsert by, and their search is eventually consistent
(a new object is findable only after a few seconds), so neither "upsert by id
property" nor "search before create" alone stops a duplicate. Searching before
every create would also spend a scarce search budget. Instead, for each object a
connector writes, :func:`write_once` does, in one atomic Redis step and then
over HTTP:

1. The ledger has the destination's id → update that object (a retry,
   redelivery or a replay months later updates instead of duplicating). 0 searches.
2. No id and no intent marker → set the marker, create, then record the id.
   0 searches: a new call costs one request.
3. No id but a marker → an earlier attempt may have created the object and
   crashed or timed out before recording it. Search for it (by the property
   that carries the call id, for instance): found → update it and record the id;
   not found and the marker is younger than `stale_after` → DeferredError (try
   later, do not create); older → create.

A batch of creates keeps every step per object: each delivery sets its own
marker before joining a batch, the batch re-stamps all its markers as the
request goes out (:meth:`Ledger.touch_many`) and records all its ids in one Redis
transaction when the answer comes back (:meth:`Ledger.record_many`); a
whole-batch failure leaves each marker to the same rules as a single create's.

The marker is re-stamped the moment a create goes out (after any wait for a
rate-limit slot), and `stale_after` should be the request timeout plus the
destination's index lag (HubSpot: 20 s + 10 s). A create the destination
certainly refused clears the marker, so the next attempt goes straight to
step 2: which errors mean "certainly not written" is the connector's to say
(`certainly_not_written`: HubSpot says any 4xx, or a local rate limit that
sent nothing), since only it knows how its destination answers.

The remaining window: a duplicate needs BOTH a create that landed without its
id being recorded (a crash in the microseconds between the answer and the
Redis write, or a request that timed out on our side yet was written) AND the
destination's search still not showing that object `stale_after` seconds after
the create went out. It takes a crash or lost answer and an indexing delay
several times the usual at once. Ids are kept for 400 days after the call's
last delivery (replays within that time update; a replay after it would create
a second object). Marker ages assume worker clocks agree to within a few
seconds (NTP).

Redis keys: ``{prefix}:{kind}:{key}`` hashes with fields ``id``, ``links`` (the
associations known to exist, space-separated) and ``intent`` (the marker's time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import redis

from bridge.errors import ConnectorError, DeferredError, PermanentError, RetryableError

__all__ = ["LEDGER_TTL_SECONDS", "Claim", "Ledger", "Outcome", "deleted_if_404", "write_once"]

T = TypeVar("T")

LEDGER_TTL_SECONDS = 400 * 86400

# KEYS[1] the entry; ARGV: a new marker, the TTL. One atomic step, so a writer that records its id
# between our read and our claim cannot be missed: {"id", id, links} | {"claimed"} | {"held", marker}.
_CLAIM = """
local id = redis.call('hget', KEYS[1], 'id')
if id then
  redis.call('expire', KEYS[1], ARGV[2])  -- every delivery of the call restarts its 400 days
  return {'id', id, redis.call('hget', KEYS[1], 'links') or ''}
end
if redis.call('hsetnx', KEYS[1], 'intent', ARGV[1]) == 1 then
  redis.call('expire', KEYS[1], ARGV[2])
  return {'claimed', ARGV[1], ''}
end
return {'held', redis.call('hget', KEYS[1], 'intent') or ARGV[1], ''}
"""

# KEYS[1] the entry; ARGV: expected marker, new marker. Re-stamp only if nobody else did meanwhile.
_RESTAMP = """
if redis.call('hget', KEYS[1], 'intent') == ARGV[1] then
  redis.call('hset', KEYS[1], 'intent', ARGV[2])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Claim:
    """The ledger's answer for one object: its id (with the associations made), or who holds the marker."""

    id: str | None = None
    links: frozenset[str] = frozenset()
    held: str | None = None
    """Someone's intent marker (an earlier or concurrent attempt); None when this caller now holds it."""
    age: float = 0.0
    """Seconds since `held` was stamped."""


@dataclass(frozen=True)
class Outcome:
    """How :func:`write_once` ended: the object's id, and which associations are known to exist."""

    id: str
    how: str  # "created" | "updated" | "found"
    links: frozenset[str]


class Ledger:
    """Redis hashes ``{prefix}:{kind}:{key}`` with fields id, links and intent (the marker's timestamp).

    `destination` names the system the ids belong to in messages ("HubSpot")."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        destination: str = "the destination",
        ttl_seconds: float = LEDGER_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.destination = destination
        self.ttl = max(1, int(ttl_seconds))
        self.clock = clock
        self._claim = client.register_script(_CLAIM)
        self._restamp = client.register_script(_RESTAMP)

    def key(self, kind: str, key: str) -> str:
        return f"{self.prefix}:{kind}:{key}"

    def claim(self, kind: str, key: str) -> Claim:
        """The recorded id if there is one; otherwise set the intent marker, or report whose marker is there."""
        name = self.key(kind, key)
        stamp = repr(self.clock())
        state, value, links = self._redis(lambda: self._claim(keys=[name], args=[stamp, self.ttl]))
        value = value.decode() if isinstance(value, bytes) else str(value)
        if state == b"id":
            return Claim(id=value, links=frozenset(links.decode().split()))
        if state == b"claimed":
            return Claim()
        return Claim(held=value, age=max(0.0, self.clock() - _float(value)))

    def touch(self, kind: str, key: str) -> None:
        """Re-stamp the marker as a create goes out, so its age counts from the send, not from a rate-limit wait."""
        self.touch_many([(kind, key)])

    def touch_many(self, entries: list[tuple[str, str]]) -> None:
        """:meth:`touch` for every (kind, key) of a batch, in one round trip."""
        stamp = repr(self.clock())

        def run() -> None:
            pipe = self.client.pipeline(transaction=False)
            for kind, key in entries:
                pipe.hset(self.key(kind, key), "intent", stamp)
            pipe.execute()

        self._redis(run)

    def restamp(self, kind: str, key: str, marker: str) -> bool:
        """Renew a stale marker; False when another attempt renewed it first (it is creating now)."""
        name = self.key(kind, key)
        return bool(self._redis(lambda: self._restamp(keys=[name], args=[marker, repr(self.clock())])))

    def record(self, kind: str, key: str, object_id: str, links: frozenset[str]) -> None:
        self.record_many([(kind, key, object_id, links)])

    def record_many(self, entries: list[tuple[str, str, str, frozenset[str]]]) -> None:
        """Store (kind, key, the destination's id, links) for every object of a batch in one transaction; markers
        dropped."""

        def run() -> None:
            pipe = self.client.pipeline(transaction=True)
            for kind, key, object_id, links in entries:
                name = self.key(kind, key)
                pipe.hset(name, mapping={"id": object_id, "links": " ".join(sorted(links))})
                pipe.hdel(name, "intent")
                pipe.expire(name, self.ttl)
            pipe.execute()

        self._redis(run)

    def add_links(self, kind: str, key: str, current: frozenset[str], links: frozenset[str]) -> None:
        """Remember associations made on the update path (a lost update only costs a redundant PUT later)."""
        name = self.key(kind, key)
        self._redis(lambda: self.client.hset(name, "links", " ".join(sorted(current | links))))

    def release(self, kind: str, key: str) -> None:
        """Drop the marker after a create the destination certainly refused."""
        self._redis(lambda: self.client.hdel(self.key(kind, key), "intent"))

    def forget(self, kind: str, key: str) -> None:
        """Drop the entry (its object was deleted in the destination)."""
        self._redis(lambda: self.client.delete(self.key(kind, key)))

    def _redis(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except redis.RedisError as exc:
            error = type(exc).__name__
            raise RetryableError(f"{self.destination} exactly-once ledger unavailable (Redis: {error})") from exc


def deleted_if_404(exc: PermanentError) -> bool:
    """The default `deleted` test of :func:`write_once`: the update answered 404 Not Found."""
    return exc.status == 404


def write_once(
    ledger: Ledger,
    kind: str,
    key: str,
    *,
    create: Callable[[Callable[[], None]], str],
    find: Callable[[], str | None],
    update: Callable[[str], None] | None,
    links: frozenset[str],
    stale_after: float,
    certainly_not_written: Callable[[ConnectorError], bool],
    deleted: Callable[[PermanentError], bool] = deleted_if_404,
    create_records: bool = False,
) -> Outcome:
    """Create the object once, or update the one created before (see the module docstring).

    `create(touch)` makes the object with the associations named in `links`
    inline, calling `touch()` right before each request goes out, and returns
    its id; `find` searches the destination for it (e.g. by the property that
    holds the call id) and returns its id or None; `update(id)` rewrites it
    (None: leave an existing object as it is, e.g. a contact).
    `certainly_not_written(exc)` says whether a failed create certainly wrote
    nothing (then the marker is dropped and the next attempt creates at once);
    when unsure it must say False. `deleted(exc)` says whether an update failed
    because the object was deleted in the destination (then it is created anew).
    With `create_records`, `create` has stamped the marker and recorded the id
    itself (a batch does both for all its objects in one Redis step each).
    """
    name = ledger.destination
    state = ledger.claim(kind, key)
    if state.id is not None:
        try:
            if update is not None:
                update(state.id)
            return Outcome(state.id, "updated", state.links)
        except PermanentError as exc:
            if not deleted(exc):
                raise
        ledger.forget(kind, key)  # deleted in the destination since: write it anew
        state = ledger.claim(kind, key)
        if state.id is not None:
            raise DeferredError(f"{name} {kind}: being rewritten by another attempt", retry_after=1.0)

    if state.held is not None:
        found = find()
        if found is not None:
            if update is not None:
                update(found)
            ledger.record(kind, key, found, frozenset())
            return Outcome(found, "found", frozenset())
        if state.age < stale_after:
            raise DeferredError(
                f"{name} {kind}: an earlier attempt may have created it {state.age:.0f}s ago and search does not "
                f"show it yet; trying again in {stale_after - state.age:.0f}s rather than risk a duplicate",
                retry_after=max(1.0, stale_after - state.age),
            )
        if not ledger.restamp(kind, key, state.held):
            raise DeferredError(f"{name} {kind}: another attempt is creating it right now", retry_after=5.0)

    try:
        object_id = create(lambda: ledger.touch(kind, key))
    except ConnectorError as exc:
        if certainly_not_written(exc):
            ledger.release(kind, key)
        raise
    if not create_records:
        ledger.record(kind, key, object_id, links)
    return Outcome(object_id, "created", links)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
