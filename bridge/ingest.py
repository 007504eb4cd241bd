"""The hot path's one Redis operation: claim the call, store it, enqueue one job per connector.

Everything happens in a single Lua script, so it is atomic and costs one
round trip: either the dedupe claim, the stored payload, the history entry
and every connector's job are all written, or none is. That is stronger than
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

import time
import uuid
from dataclasses import dataclass
from typing import Any

import dramatiq
import msgspec

from bridge.keys import ACTOR_NAME, Keys

__all__ = ["IngestResult", "Ingestor"]

_SCRIPT = """
-- KEYS: 1 dedupe, 2 payload, 3 log, 4 done, 5 index, then (queue list, queue msgs) per connector
-- ARGV: 1 force, 2 dedupe ttl, 3 retention, 4 payload, 5 now ms (the claim value), 6 log entry,
--       then (connector, message id, message data) per connector
if ARGV[1] == '1' then
  redis.call('set', KEYS[1], ARGV[5], 'EX', ARGV[2])
elseif not redis.call('set', KEYS[1], ARGV[5], 'NX', 'EX', ARGV[2]) then
  return 0
end
redis.call('set', KEYS[2], ARGV[4], 'EX', ARGV[3])
redis.call('rpush', KEYS[3], ARGV[6])
redis.call('expire', KEYS[3], ARGV[3])
redis.call('zadd', KEYS[5], ARGV[5], ARGV[7])
redis.call('zremrangebyscore', KEYS[5], '-inf', '(' .. (tonumber(ARGV[5]) - 1000 * tonumber(ARGV[3])))
local n = (#KEYS - 5) / 2
for i = 1, n do
  local base = 7 + 3 * (i - 1)
  if ARGV[1] == '1' then redis.call('hdel', KEYS[4], ARGV[base + 1]) end
  redis.call('hset', KEYS[5 + 2 * i], ARGV[base + 2], ARGV[base + 3])
  redis.call('rpush', KEYS[4 + 2 * i], ARGV[base + 2])
end
return 1
"""

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class IngestResult:
    accepted: bool  # False: a duplicate within the dedupe window
    connectors: tuple[str, ...]


class Ingestor:
    """Accepts calls into Redis; works with a sync or an asyncio redis client (same script)."""

    def __init__(self, client: Any, keys: Keys, *, dedupe_ttl_seconds: float, retention_seconds: float) -> None:
        self.client = client
        self.keys = keys
        self._dedupe_ttl = str(max(1, int(dedupe_ttl_seconds)))
        self._retention = str(max(1, int(retention_seconds)))
        self._script = client.register_script(_SCRIPT)

    def _arguments(
        self, call_id: str, body: bytes, connectors: tuple[str, ...], log_entry: dict[str, Any], force: bool
    ) -> tuple[list[str], list[Any]]:
        keys = self.keys
        now_ms = int(time.time() * 1000)
        key_list = [keys.dedupe(call_id), keys.payload(call_id), keys.log(call_id), keys.done(call_id), keys.index]
        argv: list[Any] = ["1" if force else "0", self._dedupe_ttl, self._retention, body, str(now_ms)]
        argv += [_encode({"t": now_ms, **log_entry}), call_id]
        for connector in connectors:
            queue = keys.queue(connector)
            redis_id = str(uuid.uuid4())
            message = dramatiq.Message(
                queue_name=queue,
                actor_name=ACTOR_NAME,
                args=(call_id, connector),
                kwargs={},
                options={"redis_message_id": redis_id},
            )
            key_list += [keys.queue_list(queue), keys.queue_messages(queue)]
            argv += [connector, redis_id, message.encode()]
        return key_list, argv

    async def accept(
        self, call_id: str, body: bytes, connectors: tuple[str, ...], log_entry: dict[str, Any], *, force: bool = False
    ) -> IngestResult:
        """Claim, store and enqueue atomically (asyncio client). Redis errors propagate to the caller."""
        key_list, argv = self._arguments(call_id, body, connectors, log_entry, force)
        claimed = await self._script(keys=key_list, args=argv)
        return IngestResult(bool(claimed), connectors)

    def accept_sync(
        self, call_id: str, body: bytes, connectors: tuple[str, ...], log_entry: dict[str, Any], *, force: bool = False
    ) -> IngestResult:
        """The same with a synchronous client (backfill, replay)."""
        key_list, argv = self._arguments(call_id, body, connectors, log_entry, force)
        claimed = self._script(keys=key_list, args=argv)
        return IngestResult(bool(claimed), connectors)
