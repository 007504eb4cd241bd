"""Moving the log from the Redis stream into the database, and letting go of finished calls in Redis.

Every worker process runs a :class:`DrainLoop`, but only the one holding the lease
(``{prefix}:log-writer``, renewed while it works) drains, so events are applied in stream order by
one writer at a time; a worker that dies loses the lease within seconds and another takes over.
(The writer's compare-and-set on the stored position keeps a batch from being applied twice even if
two processes ever drain at once.)

One pass (:meth:`LogDrain.drain_once`): read up to `batch` events after the stored position, fetch
the webhook bodies of the calls they (re)ingest, apply them in one transaction, trim them from the
stream, then, for every call all of whose connectors have finished, delete its payload from Redis —
only if no replay has re-ingested it since (the done-marker hash records the latest ingest's event id).
What stays in Redis for a delivered call is its dedupe claim and its small done-marker hash.

While the database is down or slow the stream simply grows: nothing is lost, deliveries go on, and
:meth:`LogDrain.lag` (shown by `/readyz` and `/metrics`) says how far behind the log is.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import redis

from bridge.db.events import INGEST_TYPES, LogEvent, decode_event
from bridge.db.writer import START, LogWriter, StaleCursor
from bridge.errors import SchemaError
from bridge.keys import Keys

__all__ = ["DrainLoop", "LogDrain", "LogLag"]

log = logging.getLogger("bridge.db.drain")

# KEYS: 1 payload, 2 done-marker hash. ARGV: 1 the ingest event id the log saw finish.
_RELEASE = """
if redis.call('hget', KEYS[2], '_ingest') == ARGV[1] then
  redis.call('del', KEYS[1])
  redis.call('hdel', KEYS[2], '_ingest')
  return 1
end
return 0
"""


@dataclass(frozen=True)
class LogLag:
    events: int
    """Events in the stream not yet in the database."""
    seconds: float
    """Age of the oldest of them (0 when there are none)."""


class LogDrain:
    def __init__(self, client: redis.Redis, keys: Keys, writer: LogWriter, *, batch: int = 1000) -> None:
        self.client = client
        self.keys = keys
        self.writer = writer
        self.batch = batch
        self._position: str | None = None
        self._release = client.register_script(_RELEASE)

    def drain_once(self) -> int:
        """Apply the next batch; returns how many events it applied (0: the log is up to date)."""
        start = self._position or self.writer.cursor()
        raw = self.client.xrange(self.keys.events, min=f"({start}" if start != START else "-", count=self.batch)
        if not raw:
            self._position = start
            return 0
        entries: list[tuple[str, LogEvent]] = []
        for entry_id, fields in raw:
            stream_id = entry_id.decode()
            try:
                entries.append((stream_id, decode_event(fields[b"e"])))
            except (KeyError, msgspec.DecodeError) as exc:  # never block the log on one bad entry
                log.error("skipping unreadable log event %s: %s", stream_id, exc)
        end = raw[-1][0].decode()
        try:
            applied = self.writer.apply(entries, self._payloads(entries), start=start, end=end)
        except StaleCursor:
            self._position = None  # someone else got there first; start again from the stored position
            return 0
        self._position = end
        self.client.xtrim(self.keys.events, minid=_after(end), approximate=False)
        self._release_finished(applied.finished)
        return applied.events

    def _payloads(self, entries: list[tuple[str, LogEvent]]) -> dict[str, bytes | None]:
        calls = sorted({event.call for _, event in entries if event.type in INGEST_TYPES})
        if not calls:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            pipe.get(self.keys.payload(call))
        return dict(zip(calls, pipe.execute(), strict=True))

    def _release_finished(self, finished: list[tuple[str, str]]) -> None:
        if not finished:
            return
        pipe = self.client.pipeline(transaction=False)
        for call, ingest_event in finished:
            if ingest_event:
                self._release(keys=[self.keys.payload(call), self.keys.done(call)], args=[ingest_event], client=pipe)
        pipe.execute()

    def lag(self) -> LogLag:
        pipe = self.client.pipeline(transaction=False)
        pipe.xlen(self.keys.events)
        pipe.xrange(self.keys.events, count=1)
        length, oldest = pipe.execute()
        if not length or not oldest:
            return LogLag(0, 0.0)
        oldest_ms = int(oldest[0][0].decode().split("-")[0])
        return LogLag(int(length), max(0.0, time.time() - oldest_ms / 1000))


def _after(stream_id: str) -> str:
    ms, _, seq = stream_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


class DrainLoop:
    """The thread a worker runs: hold the writer lease, drain while there is work, wait briefly when idle."""

    LEASE_MS = 15_000

    def __init__(
        self,
        drain: LogDrain,
        *,
        prepare: Callable[[], None] | None = None,
        maintain: Callable[[], object] | None = None,
        maintain_every: float = 300.0,
        idle_seconds: float = 0.2,
    ) -> None:
        self.drain = drain
        self.maintain = maintain  # retention pruning, run by the leader every `maintain_every` seconds
        self.maintain_every = maintain_every
        self._maintained = time.monotonic() - maintain_every + 30  # first run 30 s after start
        self.prepare = prepare  # schema up to date, older logs imported; retried until the database answers
        self.idle = idle_seconds
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_warning = 0.0
        self._renew = drain.client.register_script(
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end "
            "return redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0"
        )

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bridge-log-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with contextlib.suppress(redis.RedisError):
            self.drain.client.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
                1,
                self.drain.keys.log_writer,
                self.token,
            )

    def _leader(self) -> bool:
        return bool(self._renew(keys=[self.drain.keys.log_writer], args=[self.token, self.LEASE_MS]))

    def _run(self) -> None:
        backoff = self.idle
        while not self._stop.is_set():
            try:
                worked = False
                if self._leader():
                    if self.prepare is not None:
                        self.prepare()
                        self.prepare = None
                    worked = self.drain.drain_once() > 0
                    if not worked and self.maintain is not None:
                        self._maintain()
                backoff = self.idle
            except SchemaError as exc:  # never write to a schema this code does not know
                worked = False
                backoff = 60.0
                self._warn(exc, every=60)
            except Exception as exc:  # the database or Redis is away: the stream keeps everything meanwhile
                worked = False
                backoff = min(5.0, backoff * 2)
                self._warn(exc)
            if not worked:
                self._stop.wait(backoff)

    def _maintain(self) -> None:
        if time.monotonic() - self._maintained < self.maintain_every:
            return
        self._maintained = time.monotonic()
        assert self.maintain is not None
        self.maintain()

    def _warn(self, exc: Any, every: float = 30) -> None:
        now = time.monotonic()
        if now - self._last_warning >= every:
            self._last_warning = now
            log.warning("call log not written (%s: %s); events wait in Redis", type(exc).__name__, exc)
