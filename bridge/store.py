"""What the workers and admin tools keep in Redis about each call (see :mod:`bridge.keys`).

* the stored webhook body (written by ingest; read here),
* the per-connector "done" marker, written only after the CRM confirmed, so a
  redelivered job does not write twice,
* a short lock per (connector, call) so two redeliveries of one job never run
  at once,
* the call's history (received, every attempt, the outcome), and
* dead letters, which never expire on their own.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import redis

from bridge.errors import DeferredError
from bridge.keys import Keys

__all__ = ["CallStore"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def now_ms() -> int:
    return int(time.time() * 1000)


class CallStore:
    def __init__(self, client: redis.Redis, keys: Keys, *, retention_seconds: float) -> None:
        self.client = client
        self.keys = keys
        self.retention = max(1, int(retention_seconds))
        self._release = client.register_script(_RELEASE)
        self._held: dict[str, str] = {}  # lock key -> token, for the locks this process holds now
        self._held_guard = threading.Lock()

    # -- payload and done markers ---------------------------------------------------------
    def snapshot(self, call_id: str, connector: str) -> tuple[dict[str, Any] | None, bytes | None, float | None]:
        """(done-marker, stored body, accepted-at seconds) in one round trip: what a delivery starts from."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.keys.done(call_id), connector)
        pipe.get(self.keys.payload(call_id))
        pipe.get(self.keys.dedupe(call_id))
        done, body, claimed = pipe.execute()
        try:
            received = int(claimed) / 1000 if claimed else None
        except ValueError:
            received = None
        return (_decode(done) if done else None), body, received

    def payload(self, call_id: str) -> bytes | None:
        return self.client.get(self.keys.payload(call_id))

    def done(self, call_id: str, connector: str) -> dict[str, Any] | None:
        value = self.client.hget(self.keys.done(call_id), connector)
        return _decode(value) if value else None

    def mark_done(self, call_id: str, connector: str, result: dict[str, Any], event: dict[str, Any]) -> None:
        """Record success and its history entry in one round trip."""
        pipe = self.client.pipeline(transaction=True)
        key = self.keys.done(call_id)
        pipe.hset(key, connector, _encode(result))
        pipe.expire(key, self.retention)
        self._append(pipe, call_id, event)
        pipe.hdel(self.keys.dlq(connector), call_id)
        pipe.execute()

    # -- lock -------------------------------------------------------------------------
    @contextmanager
    def lock(self, call_id: str, connector: str, ttl_seconds: float) -> Iterator[None]:
        """Hold (connector, call) exclusively; another holder means a concurrent redelivery: retry shortly."""
        key = self.keys.lock(connector, call_id)
        token = uuid.uuid4().hex
        if not self.client.set(key, token, nx=True, px=max(1000, int(ttl_seconds * 1000))):
            raise DeferredError("another worker is delivering this call right now", retry_after=5)
        with self._held_guard:
            self._held[key] = token
        try:
            yield
        finally:
            with self._held_guard:
                self._held.pop(key, None)
            self._release(keys=[key], args=[token])

    def release_held(self) -> int:
        """Give up every lock this process holds; for a worker that is exiting with deliveries unfinished.

        Their jobs are requeued at the same time; without this, the next worker would find each call
        locked and wait out the lock's TTL (minutes) before delivering it. The abandoned attempt never
        reports back, so the next one is an ordinary retry, made safe by the CRM-side upsert."""
        with self._held_guard:
            held, self._held = self._held, {}
        for key, token in held.items():
            self._release(keys=[key], args=[token])
        return len(held)

    # -- history ----------------------------------------------------------------------
    def append(self, call_id: str, event: dict[str, Any]) -> None:
        pipe = self.client.pipeline(transaction=False)
        self._append(pipe, call_id, event)
        pipe.execute()

    def _append(self, pipe: Any, call_id: str, event: dict[str, Any]) -> None:
        key = self.keys.log(call_id)
        pipe.rpush(key, _encode({"t": now_ms(), **event}))
        pipe.ltrim(key, -500, -1)  # a call retried for days keeps its latest 500 entries
        pipe.expire(key, self.retention)

    def history(self, call_id: str) -> list[dict[str, Any]]:
        return [_decode(item) for item in self.client.lrange(self.keys.log(call_id), 0, -1)]

    # -- dead letters -----------------------------------------------------------------
    def dead_letter(self, connector: str, call_id: str, entry: dict[str, Any], event: dict[str, Any]) -> None:
        """Keep the call (with its payload) for an admin; one entry per (connector, call), newest wins."""
        body = self.payload(call_id)
        record = {"call_session_id": call_id, "connector": connector, "t": now_ms(), **entry}
        record["payload"] = body.decode("utf-8", "replace") if body is not None else None
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.dlq(connector), call_id, _encode(record))
        self._append(pipe, call_id, event)
        pipe.execute()

    def dead_letters(self, connector: str) -> dict[str, dict[str, Any]]:
        raw = self.client.hgetall(self.keys.dlq(connector))
        return {k.decode(): _decode(v) for k, v in raw.items()}
