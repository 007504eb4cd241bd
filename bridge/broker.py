"""Dramatiq's Redis broker, made to keep every message through Redis restarts and worker crashes.

Dramatiq's RedisBroker is right about the happy path and three things go
wrong around it, each of which strands or drops a call:

* **Delayed messages live in worker memory.** A retry waiting out its backoff
  (or a deferral) is fetched from the `.DQ` queue into the consumer thread's
  in-memory delay queue, and that queue is thrown away whenever the consumer
  sees a connection error — while the messages stay in the worker's unacked
  set and its heartbeat goes on, so nothing ever gives them back. Here a delayed
  message is never fetched at all: :meth:`BridgeBroker.enqueue` with a delay
  writes the message and a due time into a sorted set in Redis
  (``{namespace}:{queue}.scheduled``), and :meth:`move_due` — run by every
  worker's housekeeping thread — moves due messages onto the queue atomically.
  Nothing waits in memory, so a restart of Redis or of any worker loses nothing,
  and any worker can release a retry when it is due.
* **Writes fail during an outage and the message is acknowledged anyway.** When
  the Retries middleware cannot enqueue the retry, Dramatiq logs it and acks the
  original. Here enqueue, ack, nack and requeue wait for Redis to come back
  (:func:`bridge.durable.until_redis`), holding the message meanwhile.
* **Orphans and slow recovery.** A fetch whose reply was lost leaves messages in
  the worker's unacked set that no thread holds, and a dead worker's messages
  come back only when a random one-in-N command happens to run maintenance.
  Here the broker tracks what this process fetched and has not finished;
  :meth:`sweep` requeues anything in its own unacked sets that it does not hold
  (seen twice, a few seconds apart, so a fetch in flight is never mistaken), and
  :meth:`maintain` runs Dramatiq's dead-worker recovery for each queue on a
  fixed period, so a killed worker's calls return right after the heartbeat
  timeout instead of "eventually".

The Redis layout stays Dramatiq's own (the API writes jobs into it directly,
see :mod:`bridge.ingest`), plus the one sorted set per queue.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from typing import Any
from uuid import uuid4

from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis, q_name
from dramatiq.message import Message

from bridge.durable import until_redis
from bridge.keys import Keys

__all__ = ["BridgeBroker"]

# KEYS: 1 the queue's message hash, 2 its scheduled set. ARGV: message id, data, delay ms.
# Due times use Redis's clock, like the move below, so workers with skewed clocks agree.
_SCHEDULE = """
local t = redis.call('time')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
redis.call('zadd', KEYS[2], due, ARGV[1])
return due
"""

# KEYS: 1 the scheduled set, 2 the queue list. ARGV: how many at most.
_MOVE_DUE = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('zrangebyscore', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #due > 0 then
  redis.call('zrem', KEYS[1], unpack(due))
  redis.call('rpush', KEYS[2], unpack(due))
end
return #due
"""


class BridgeBroker(RedisBroker):
    """A RedisBroker whose delayed messages live in Redis and whose writes survive Redis outages."""

    def __init__(self, *, keys: Keys, **kwargs: Any) -> None:
        super().__init__(namespace=keys.namespace, **kwargs)
        self.keys = keys
        self._schedule = self.client.register_script(_SCHEDULE)
        self._move_due = self.client.register_script(_MOVE_DUE)
        self._held: defaultdict[str, set[str]] = defaultdict(set)  # queue -> redis ids fetched, not yet done
        self._held_guard = threading.Lock()
        self._suspects: dict[str, set[str]] = {}  # queue -> unheld ids seen by the previous sweep

    # -- keys --------------------------------------------------------------------------
    def scheduled_key(self, queue_name: str) -> str:
        return self.keys.queue_scheduled(q_name(queue_name))

    def _acks_key(self, queue_name: str) -> str:
        return f"{self.namespace}:__acks__.{self.broker_id}.{queue_name}"

    # -- enqueue -----------------------------------------------------------------------
    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        """Put a message on its queue now, or in the queue's scheduled set for `delay` ms; waits out outages."""
        if delay is None:
            return until_redis(lambda: super(BridgeBroker, self).enqueue(message), "enqueueing a job")
        queue_name = q_name(message.queue_name)
        message = message.copy(queue_name=queue_name, options={"redis_message_id": str(uuid4())})
        message.options.pop("eta", None)  # an eta would send it through Dramatiq's in-memory delay queue
        self.emit_before("enqueue", message, delay)
        until_redis(
            lambda: self._schedule(
                keys=[self.keys.queue_messages(queue_name), self.scheduled_key(queue_name)],
                args=[message.options["redis_message_id"], message.encode(), max(0, int(delay))],
            ),
            "scheduling a retry",
        )
        self.emit_after("enqueue", message, delay)
        return message

    def move_due(self, batch: int = 500) -> int:
        """Move every scheduled message whose time has come onto its queue; returns how many moved."""
        moved = 0
        for queue_name in list(self.queues):
            while True:
                count = int(
                    self._move_due(
                        keys=[self.scheduled_key(queue_name), self.keys.queue_list(queue_name)], args=[batch]
                    )
                )
                moved += count
                if count < batch:
                    break
        return moved

    def flush(self, queue_name: str) -> None:
        super().flush(queue_name)
        self.client.delete(self.scheduled_key(queue_name))

    # -- what this process holds ----------------------------------------------------------
    def do_fetch(self, queue_name: str, prefetch: int) -> list[bytes]:
        """Dramatiq's fetch, remembering which messages this process now holds (errors propagate: the
        consumer thread restarts on them)."""
        messages = self._dispatch("fetch")(queue_name, prefetch)
        ids = {_redis_id(data) for data in messages if data is not None}
        with self._held_guard:
            self._held[queue_name].update(ids)
        return messages

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        if queue_name.endswith(".DQ"):
            # A consumer thread builds a new consumer after every failure, and throws its in-memory delay
            # queue away when it does: nothing fetched from a delay queue before now is held any more.
            with self._held_guard:
                self._held.pop(queue_name, None)
        return super().consume(queue_name, prefetch, timeout)

    def _done(self, queue_name: str, ids: tuple[str, ...]) -> None:
        with self._held_guard:
            held = self._held.get(queue_name)
            if held:
                held.difference_update(ids)

    def do_ack(self, queue_name: str, redis_id: str) -> Any:
        result = until_redis(lambda: self._dispatch("ack")(queue_name, redis_id), "acknowledging a job")
        self._done(queue_name, (redis_id,))
        return result

    def do_nack(self, queue_name: str, redis_id: str) -> Any:
        result = until_redis(lambda: self._dispatch("nack")(queue_name, redis_id), "rejecting a job")
        self._done(queue_name, (redis_id,))
        return result

    def do_requeue(self, queue_name: str, *redis_ids: str) -> Any:
        result = until_redis(lambda: self._dispatch("requeue")(queue_name, *redis_ids), "requeueing jobs")
        self._done(queue_name, redis_ids)
        return result

    # -- recovery -------------------------------------------------------------------------
    def sweep(self) -> int:
        """Requeue messages in this process's unacked sets that no thread of it holds any more.

        An id is requeued only when two consecutive sweeps found it unheld, so a fetch whose reply is
        still on its way is never taken for an orphan. Returns how many were requeued."""
        requeued = 0
        for queue_name in sorted(self.queues | self.delay_queues):
            members = {m.decode() for m in self.client.smembers(self._acks_key(queue_name))}
            with self._held_guard:
                unheld = members - self._held.get(queue_name, set())
            orphans = unheld & self._suspects.get(queue_name, set())
            self._suspects[queue_name] = unheld - orphans
            if orphans:
                self.do_requeue(queue_name, *sorted(orphans))
                self.logger.warning(
                    "requeued %d message(s) of %s that this worker no longer held", len(orphans), queue_name
                )
                requeued += len(orphans)
        return requeued

    def maintain(self) -> None:
        """Run Dramatiq's maintenance (dead workers' messages back to their queues) on every queue now."""
        for queue_name in sorted(self.queues | self.delay_queues):
            self.scripts["dispatch"](
                args=[
                    "qsize",  # a read-only command: only the maintenance part does anything
                    current_millis(),
                    queue_name,
                    self.broker_id,
                    self.heartbeat_timeout,
                    self.dead_message_ttl,
                    "1",
                    self._max_unpack_size(),
                ],
                keys=[self.namespace],
            )


def _redis_id(data: bytes) -> str:
    return str(json.loads(data)["options"]["redis_message_id"])
