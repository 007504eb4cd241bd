"""The hot path's one Redis operation: claim the call, store it, enqueue one job per connector.

Everything happens in a single Lua script, so it is atomic and costs one
round trip: either the dedupe claim, the stored payload, the call's "received"
event on the log stream (:mod:`bridge.db.events`; the database is written later,
by the workers) and every connector's job are all written, or none is. That is stronger than
"claim, enqueue, release the claim if enqueueing fails": there is no window in
which a claim exists without its jobs, so a crash can never turn Agni's
retry into a false "duplicate". If the reply is lost after the script ran,
we answer 503, Agni retries, and the retry is (correctly) a duplicate of a
call that is safely queued.

Jobs are written in Dramatiq's own Redis layout (a message hash plus a list
per queue, as its `dispatch.lua` "enqueue" does), so the API needs no broker
round trips of its own; the integration tests prove a real Dramatiq worker
consumes them. This requires a single Redis (or Sentinel), not Redis Cluster:
the keys of one call would live in different slots.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from redis.exceptions import NoScriptError

from bridge.keys import ACTOR_NAME, Keys

__all__ = ["IngestResult", "Ingestor"]

_SCRIPT = """
-- KEYS: 1 dedupe, 2 payload, 3 log event stream, 4 done, then (queue list, queue msgs) per connector
-- ARGV: 1 force, 2 dedupe ttl, 3 retention, 4 payload, 5 now ms (the claim value), 6 log event,
--       then (connector, message id, message data) per connector
if ARGV[1] == '1' then
  redis.call('set', KEYS[1], ARGV[5], 'EX', ARGV[2])
elseif not redis.call('set', KEYS[1], ARGV[5], 'NX', 'EX', ARGV[2]) then
  return 0
end
redis.call('set', KEYS[2], ARGV[4], 'EX', ARGV[3])
local event_id = redis.call('xadd', KEYS[3], '*', 'e', ARGV[6])
redis.call('hset', KEYS[4], '_ingest', event_id)
redis.call('expire', KEYS[4], ARGV[3])
local n = (#KEYS - 4) / 2
for i = 1, n do
  local base = 6 + 3 * (i - 1)
  if ARGV[1] == '1' then redis.call('hdel', KEYS[4], ARGV[base + 1]) end
  redis.call('hset', KEYS[4 + 2 * i], ARGV[base + 2], ARGV[base + 3])
  redis.call('rpush', KEYS[3 + 2 * i], ARGV[base + 2])
end
return 1
"""

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class IngestResult:
    accepted: bool  # False: a duplicate within the dedupe window
    connectors: tuple[str, ...]


def job_message(queue: str, call_id: str, connector: str, now_ms: int) -> tuple[str, bytes]:
    """(redis message id, encoded message) in the exact shape `dramatiq.Message.decode` reads.

    Built directly with msgspec rather than through `dramatiq.Message`: same JSON, a tenth of the cost,
    and this runs for every connector of every webhook. A test checks a real worker consumes it.
    """
    redis_id = os.urandom(16).hex()
    message = {
        "queue_name": queue,
        "actor_name": ACTOR_NAME,
        "args": [call_id, connector],
        "kwargs": {},
        "options": {"redis_message_id": redis_id},
        "message_id": str(uuid.UUID(bytes=os.urandom(16), version=4)),
        "message_timestamp": now_ms,
    }
    return redis_id, _encode(message)


class Ingestor:
    """Accepts calls into Redis; works with a sync or an asyncio redis client (same script).

    With the asyncio client, concurrent `accept` calls are group-committed: every call that arrives while
    a round trip is in flight goes out together in the next pipeline. Each call is still its own atomic
    script; only the round trips are shared, so under load the per-webhook Redis cost drops sharply,
    and a lone webhook is sent at once.
    """

    def __init__(self, client: Any, keys: Keys, *, dedupe_ttl_seconds: float, retention_seconds: float) -> None:
        self.client = client
        self.keys = keys
        self._dedupe_ttl = str(max(1, int(dedupe_ttl_seconds)))
        self._retention = str(max(1, int(retention_seconds)))
        self._script = client.register_script(_SCRIPT)
        self._pending: list[tuple[list[Any], asyncio.Future[Any]]] = []
        self._flushing = False

    def _arguments(
        self, call_id: str, body: bytes, connectors: tuple[str, ...], log_entry: dict[str, Any], force: bool
    ) -> tuple[list[str], list[Any]]:
        keys = self.keys
        now_ms = int(time.time() * 1000)
        key_list = [keys.dedupe(call_id), keys.payload(call_id), keys.events, keys.done(call_id)]
        argv: list[Any] = ["1" if force else "0", self._dedupe_ttl, self._retention, body, str(now_ms)]
        argv.append(_encode({"t": now_ms, "call": call_id, **log_entry}))
        for connector in connectors:
            queue = keys.queue(connector)
            redis_id, data = job_message(queue, call_id, connector, now_ms)
            key_list += [keys.queue_list(queue), keys.queue_messages(queue)]
            argv += [connector, redis_id, data]
        return key_list, argv

    async def accept(
        self, call_id: str, body: bytes, connectors: tuple[str, ...], log_entry: dict[str, Any], *, force: bool = False
    ) -> IngestResult:
        """Claim, store and enqueue atomically (asyncio client). Redis errors propagate to the caller."""
        key_list, argv = self._arguments(call_id, body, connectors, log_entry, force)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(([len(key_list), *key_list, *argv], future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        claimed = await future
        return IngestResult(bool(claimed), connectors)

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    replies = await self._run(batch)
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), reply in zip(batch, replies, strict=True):
                    if future.done():
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            self._flushing = False

    async def _run(self, batch: list[tuple[list[Any], asyncio.Future[Any]]]) -> list[Any]:
        """EVALSHA every call in one pipeline; after a Redis restart lost the script, load it and redo those."""
        calls = [args for args, _ in batch]
        replies = await self._pipeline(calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # the script never ran for these, so running them again is safe
            await self.client.script_load(_SCRIPT)
            for i, reply in zip(missing, await self._pipeline([calls[i] for i in missing]), strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, calls: list[list[Any]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for args in calls:
            pipe.execute_command("EVALSHA", self._script.sha, *args)
        return list(await pipe.execute(raise_on_error=False))

    def accept_sync(
        self, call_id: str, body: bytes, connectors: tuple[str, ...], log_entry: dict[str, Any], *, force: bool = False
    ) -> IngestResult:
        """The same with a synchronous client (backfill, replay)."""
        key_list, argv = self._arguments(call_id, body, connectors, log_entry, force)
        claimed = self._script(keys=key_list, args=argv)
        return IngestResult(bool(claimed), connectors)
