"""What the workers and admin tools keep in Redis about each call (see :mod:`bridge.keys`).

* the stored webhook body (written by ingest; read here),
* the per-connector "done" marker, written only after the CRM confirmed, so a
  redelivered job does not write twice,
* a lease per (connector, call) so two redeliveries of one job never run at
  once: short (seconds), and renewed by its holder's housekeeping thread while
  the delivery runs, so a worker that dies mid-write frees the call within
  seconds instead of holding it for the longest a delivery may take,
* the call's log events (every attempt, its outcome, dead letters) on the stream the workers drain
  into the database (:mod:`bridge.db.drain`).

Writes that record an outcome (done-marker, log event) wait for
Redis through an outage (:func:`bridge.durable.until_redis`): a call the CRM
accepted must be recorded as delivered, or the log lies and a redelivery
writes it twice. Reads that start a delivery raise UnavailableError instead:
nothing has been written yet, so the job is simply put off.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import msgspec
import redis

from bridge.durable import OUTAGE_ERRORS, until_redis
from bridge.errors import DeferredError, UnavailableError
from bridge.keys import Keys

__all__ = ["CallStore"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
# KEYS: the held lease keys. ARGV: 1 lease ms, then one token per key. Returns 1/0 per key: still ours?
_RENEW = """
local kept = {}
for i, key in ipairs(KEYS) do
  if redis.call('get', key) == ARGV[i + 1] then
    redis.call('pexpire', key, ARGV[1])
    kept[i] = 1
  else
    kept[i] = 0
  end
end
return kept
"""


def now_ms() -> int:
    return int(time.time() * 1000)


class CallStore:
    def __init__(
        self, client: redis.Redis, keys: Keys, *, retention_seconds: float, lease_seconds: float = 15.0
    ) -> None:
        self.client = client
        self.keys = keys
        self.retention = max(1, int(retention_seconds))
        self.lease_ms = max(1000, int(lease_seconds * 1000))
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._held: dict[str, str] = {}  # lease key -> token, for the leases this process holds now
        self._held_guard = threading.Lock()

    # -- payload and done markers ---------------------------------------------------------
    def snapshot(self, call_id: str, connector: str) -> tuple[str | None, bytes | None, float | None]:
        """(done outcome, stored body, accepted-at seconds) in one round trip: what a delivery starts from."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.keys.done(call_id), connector)
        pipe.get(self.keys.payload(call_id))
        pipe.get(self.keys.dedupe(call_id))
        done, body, claimed = _read(pipe.execute)
        try:
            received = int(claimed) / 1000 if claimed else None
        except ValueError:
            received = None
        return (done.decode() if done else None), body, received

    def payload(self, call_id: str) -> bytes | None:
        return self.client.get(self.keys.payload(call_id))

    def done(self, call_id: str, connector: str) -> str | None:
        """The connector's outcome for this call (`delivered`, `skipped`) once the CRM confirmed; else None."""
        value = _read(lambda: self.client.hget(self.keys.done(call_id), connector))
        return value.decode() if value else None

    def mark_done(self, call_id: str, connector: str, outcome: str, event: dict[str, Any]) -> None:
        """Record success and its log event in one transaction; waits for Redis through an outage."""

        def write() -> None:
            pipe = self.client.pipeline(transaction=True)
            key = self.keys.done(call_id)
            pipe.hset(key, connector, outcome)
            pipe.expire(key, self.retention)
            self._append(pipe, call_id, event)
            pipe.execute()

        until_redis(write, "recording a delivery")

    # -- lease ------------------------------------------------------------------------
    @contextmanager
    def lock(self, call_id: str, connector: str) -> Iterator[None]:
        """Hold (connector, call) exclusively for the block; another holder means a concurrent redelivery.

        The lease lasts `lease_seconds` and :meth:`renew_held` (the worker's housekeeping) extends it while
        the block runs, so a worker that dies mid-delivery frees the call within one lease."""
        key = self.keys.lock(connector, call_id)
        token = uuid.uuid4().hex
        if not _read(lambda: self.client.set(key, token, nx=True, px=self.lease_ms)):
            raise DeferredError("another worker is delivering this call right now", retry_after=5)
        with self._held_guard:
            self._held[key] = token
        try:
            yield
        finally:
            with self._held_guard:
                self._held.pop(key, None)
            self._release_quietly(key, token)

    def renew_held(self) -> list[str]:
        """Extend every lease this process holds; returns the keys of leases found lost (expired and taken)."""
        with self._held_guard:
            held = list(self._held.items())
        if not held:
            return []
        kept = self._renew(keys=[key for key, _ in held], args=[self.lease_ms, *(token for _, token in held)])
        lost = [key for (key, _), ok in zip(held, kept, strict=True) if not int(ok)]
        with self._held_guard:
            for key in lost:
                self._held.pop(key, None)
        return lost

    def release_held(self) -> int:
        """Give up every lease this process holds; for a worker that is exiting with deliveries unfinished.

        Their jobs are requeued at the same time; without this, the next worker would find each call
        leased and wait for the lease to run out before delivering it. The abandoned attempt never
        reports back, so the next one is an ordinary retry, made safe by the CRM-side upsert."""
        with self._held_guard:
            held, self._held = self._held, {}
        for key, token in held.items():
            self._release_quietly(key, token)
        return len(held)

    def _release_quietly(self, key: str, token: str) -> None:
        """Free a lease; when Redis is unreachable it simply runs out (it is short), so never fail for it."""
        with suppress(OUTAGE_ERRORS):
            self._release(keys=[key], args=[token])

    # -- history ----------------------------------------------------------------------
    def append(self, call_id: str, event: dict[str, Any]) -> None:
        """Add an event to the call's log (a failed attempt, a pause, a dead letter); waits for Redis through an
        outage, since the log is how an admin finds out what happened."""

        def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            self._append(pipe, call_id, event)
            pipe.execute()

        until_redis(write, "recording a call's history")

    def _append(self, pipe: Any, call_id: str, event: dict[str, Any]) -> None:
        pipe.xadd(self.keys.events, {"e": _encode({"t": now_ms(), "call": call_id, **event})})


def _read(fn: Any) -> Any:
    """Run a read that starts a delivery; an outage becomes UnavailableError (nothing written yet: put it off)."""
    try:
        return fn()
    except OUTAGE_ERRORS as exc:
        raise UnavailableError(f"Redis unavailable: {type(exc).__name__}") from exc
