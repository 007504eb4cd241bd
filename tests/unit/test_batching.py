"""The Batcher: concurrent submissions share a request; each thread gets its own result or error."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bridge.batching import Batcher
from bridge.errors import PermanentError


class Recorder:
    def __init__(self, delay: float = 0.0):
        self.batches: list[list[int]] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, items):
        with self.lock:
            self.batches.append(list(items))
        time.sleep(self.delay)
        return [PermanentError(f"rejected {i}") if i % 10 == 7 else i * 2 for i in items]


def test_concurrent_items_go_out_together_and_each_thread_gets_its_own_result():
    recorder = Recorder(delay=0.05)
    batcher = Batcher(recorder, max_size=50, name="t")
    with ThreadPoolExecutor(40) as pool:
        futures = {i: pool.submit(batcher.submit, i) for i in range(40)}
    for i, future in futures.items():
        if i % 10 == 7:
            with pytest.raises(PermanentError, match=f"rejected {i}"):
                future.result()
        else:
            assert future.result() == i * 2
    assert sum(len(b) for b in recorder.batches) == 40
    assert len(recorder.batches) < 10  # far fewer requests than items
    batcher.close()


def test_batches_never_exceed_max_size():
    recorder = Recorder(delay=0.02)
    batcher = Batcher(recorder, max_size=8, name="t")
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: batcher.submit(i) if i % 10 != 7 else None, range(32)))
    assert max(len(b) for b in recorder.batches) <= 8
    batcher.close()


def test_a_lone_item_is_sent_without_waiting_for_a_window():
    batcher = Batcher(Recorder(), max_size=100, linger=0.02, max_wait=30, name="t")
    started = time.monotonic()
    assert batcher.submit(3) == 6
    assert time.monotonic() - started < 10  # it lingered 20 ms; waiting for the window would take 30 s
    batcher.close()


def test_a_failing_batch_fails_every_item_in_it():
    def boom(items):
        raise ConnectionError("CRM unreachable")

    batcher = Batcher(boom, max_size=10, name="t")
    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(batcher.submit, i) for i in range(5)]
    for future in futures:
        with pytest.raises(ConnectionError):
            future.result()
    batcher.close()
