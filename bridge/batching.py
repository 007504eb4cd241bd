"""Coalescing concurrent single-call work into batch requests, transparently to the pipeline.

Each queued (call, connector) job still runs on its own worker thread, with its own done-marker, lock,
history and retries. A connector that can write in batches (HubSpot batch create, Salesforce sObject
Collections) hands each record to a :class:`Batcher` and blocks; the batcher sends every record that
is waiting in one request and gives each thread its own result — or its own exception, so a record the
CRM rejected inside a batch is retried or dead-lettered alone.

Latency stays low at quiet moments: a batch goes out as soon as no new item has arrived for `linger`
seconds (default 20 ms), when it is full, or at the latest `max_wait` after its first item (default
200 ms), so a lone call waits a few milliseconds, not a fixed window. Up to `concurrency` batches may be
in flight at once, so a slow CRM answer does not stall the next batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

__all__ = ["Batcher"]

I = TypeVar("I")  # noqa: E741 - an item
O = TypeVar("O")  # noqa: E741 - its result

log = logging.getLogger("bridge.batching")


class Batcher(Generic[I, O]):
    def __init__(
        self,
        run: Callable[[Sequence[I]], Sequence[O | BaseException]],
        *,
        max_size: int,
        linger: float = 0.02,
        max_wait: float = 0.2,
        concurrency: int = 2,
        name: str = "batch",
    ) -> None:
        """`run(items)` returns one result or exception per item, in order; if it raises, every item gets it."""
        self._run = run
        self.max_size = max_size
        self.linger = linger
        self.max_wait = max_wait
        self.name = name
        self._cond = threading.Condition()
        self._items: list[tuple[I, Future[O]]] = []
        self._first_at = 0.0
        self._last_at = 0.0
        self._slots = threading.Semaphore(concurrency)
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, item: I) -> O:
        """Queue `item`, wait for its batch, and return its result (or raise its exception)."""
        future: Future[O] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError(f"batcher {self.name} is closed")
            now = time.monotonic()
            if not self._items:
                self._first_at = now
            self._last_at = now
            self._items.append((item, future))
            self._cond.notify()
        return future.result()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(5)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    self._cond.wait()
                if self._closed and not self._items:
                    return
                # Wait for the batch to fill, for a lull, or for the deadline, whichever comes first.
                while len(self._items) < self.max_size and not self._closed:
                    now = time.monotonic()
                    deadline = min(self._last_at + self.linger, self._first_at + self.max_wait)
                    if now >= deadline:
                        break
                    self._cond.wait(deadline - now)
                batch, self._items = self._items[: self.max_size], self._items[self.max_size :]
                if self._items:
                    self._first_at = self._last_at = time.monotonic()
            self._slots.acquire()
            threading.Thread(target=self._send, args=(batch,), name=f"batch-{self.name}", daemon=True).start()

    def _send(self, batch: list[tuple[I, Future[O]]]) -> None:
        try:
            try:
                results = self._run([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch {self.name}: {len(results)} results for {len(batch)} items")
            except BaseException as exc:  # every waiting thread must wake up, whatever happened
                for _, future in batch:
                    future.set_exception(exc)
                return
            for (_, future), result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            self._slots.release()
