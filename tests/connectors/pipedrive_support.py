"""Shared helpers for the Pipedrive connector tests: a running FakePipedrive, a connector pointed at it, deliveries.

The `fake` fixture lives in tests/fakes/pipedrive_fixtures.py (``pytest_plugins``).
Deliveries are built the way the pipeline builds them (render_context + the mapping's render), from the
repository's example webhook, so the tests run the real default mappings end to end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from bridge.connector import Services
from bridge.errors import RetryableError
from bridge.mapping import MappingLoader
from bridge.settings import DeliverySettings
from connectors.pipedrive import PipedriveConnector
from tests.conftest import ROOT, example_payload, make_delivery
from tests.fakes.pipedrive import TOKEN, FakePipedrive

MAPPINGS = ROOT / "mappings"
SESSION = "019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d"
JOHN_EMAIL = "john@example.com"


@contextmanager
def running_fake(**kwargs: Any) -> Iterator[FakePipedrive]:
    fake = FakePipedrive(**kwargs)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def make_connector(
    fake: FakePipedrive | None,
    redis_client: redis.Redis | None,
    *,
    name: str = "pd",
    attempts: int = 1,
    max_wait: float = 2.0,
    timeout: float = 5.0,
    mapping: str | Path | None = None,
    **options: Any,
) -> PipedriveConnector:
    """A PipedriveConnector built like the registry builds one (validate the raw config, load the mapping)."""
    raw: dict[str, Any] = {
        "type": "pipedrive",
        "base_url": fake.url if fake else "https://acme.pipedrive.com",
        "auth": {"api_token": TOKEN},
        "search_settle_seconds": 1,
    }
    raw.update(options)
    config = PipedriveConnector.validate(name, raw)
    services = Services(
        redis=redis_client,
        prefix="agni",
        delivery=DeliverySettings(http_attempts=attempts, http_max_wait_seconds=max_wait, timeout_seconds=timeout),
    )
    default = "pipedrive_activity.yaml" if raw.get("record") == "activity" else "pipedrive_call.yaml"
    compiled = MappingLoader(MAPPINGS).load(str(mapping or default))
    return PipedriveConnector(name, config, services, compiled)  # type: ignore[arg-type]


def deliver(connector: PipedriveConnector, **data: Any) -> Any:
    return connector.deliver(make_delivery(connector, **data))


def analysis(**changes: Any) -> dict[str, Any]:
    """The example's post_call_analysis with `changes`."""
    base = dict(example_payload()["data"]["post_call_analysis"])
    base.update(changes)
    return base


def pending() -> dict[str, Any]:
    """A call that left next steps and did not meet its goals: it gets a follow-up."""
    return analysis(goals_met=False, next_steps="Send the return label by Friday.")


def only_call_log(fake: FakePipedrive) -> dict[str, Any]:
    logs = fake.live_call_logs()
    assert len(logs) == 1, f"expected one call log, found {len(logs)}"
    return logs[0]


def requests_to(fake: FakePipedrive, method: str, path: str) -> int:
    with fake.lock:
        return sum(1 for r in fake.request_log if r.method == method and r.path == path)


def concurrently(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """fn(item) for every item on its own thread, all released at once; each result, or the exception raised."""
    barrier = threading.Barrier(len(items))

    def run(item: Any) -> Any:
        barrier.wait()
        try:
            return fn(item)
        except Exception as exc:  # returned, so one failure does not hide the others
            return exc

    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(run, items))


def deliver_until_done(connector: PipedriveConnector, timeout: float = 30.0, **data: Any) -> Any:
    """Deliver, retrying RetryableErrors (another thread is creating it: the queue would retry) until it lands."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return deliver(connector, **data)
        except RetryableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def worker_settings(tmp_path: Path, fake: FakePipedrive, *, threads: int = 4, **options: Any) -> Any:
    """Settings for a real worker delivering to `fake` through the connector `pd`."""
    from tests.conftest import make_settings

    connector = {"type": "pipedrive", "base_url": fake.url, "auth": {"api_token": TOKEN}, **options}
    return make_settings(
        tmp_path,
        worker={"threads": threads},
        delivery={"http_attempts": 3, "http_max_wait_seconds": 10, "max_retries": 5},
        connectors={"pd": connector},
    )
