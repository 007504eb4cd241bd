"""The previous Redis layout's ingest, kept as the baseline the current ingest is measured against.

Before the call log moved into a database, the ingest script also appended the call's first history
entry to a per-call list (``{prefix}:log:{call}``) and indexed the call in a sorted set
(``{prefix}:calls``, trimmed to the retention window on every call); the current script appends one
event to the ``{prefix}:events`` stream instead. The script and argument layout below are copied
verbatim from ``git show f5ac251:bridge/ingest.py`` (the last commit before the move; the file did not
change between f5ac251 and the move itself), with the key names the current code gives them
(``Keys.legacy_log`` and ``Keys.legacy_index``). Only the benchmark uses this: nothing drains it.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from bridge.ingest import Ingestor, job_message

__all__ = ["PREVIOUS_LAYOUT_COMMIT", "PreviousLayoutIngestor"]

PREVIOUS_LAYOUT_COMMIT = "f5ac251"

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


class PreviousLayoutIngestor(Ingestor):
    """The current Ingestor (same group commit, same job messages) running the previous layout's script."""

    def __init__(self, client: Any, keys: Any, *, dedupe_ttl_seconds: float, retention_seconds: float) -> None:
        super().__init__(client, keys, dedupe_ttl_seconds=dedupe_ttl_seconds, retention_seconds=retention_seconds)
        self._script = client.register_script(_SCRIPT)

    def _arguments(
        self, call_id: str, body: bytes, connectors: tuple[str, ...], log_entry: dict[str, Any], force: bool
    ) -> tuple[list[str], list[Any]]:
        keys = self.keys
        now_ms = int(time.time() * 1000)
        key_list = [
            keys.dedupe(call_id),
            keys.payload(call_id),
            keys.legacy_log(call_id),
            keys.done(call_id),
            keys.legacy_index,
        ]
        argv: list[Any] = ["1" if force else "0", self._dedupe_ttl, self._retention, body, str(now_ms)]
        argv += [_encode({"t": now_ms, **log_entry}), call_id]
        for connector in connectors:
            queue = keys.queue(connector)
            redis_id, data = job_message(queue, call_id, connector, now_ms)
            key_list += [keys.queue_list(queue), keys.queue_messages(queue)]
            argv += [connector, redis_id, data]
        return key_list, argv

    async def load(self) -> None:
        """Load the script before the first webhook: the base class, after a Redis restart, reloads only the
        current script (the benchmark never restarts Redis under a running server)."""
        await self.client.script_load(_SCRIPT)
