"""Shared helpers for the HubSpot connector tests: a running FakeHubSpot, a connector pointed at it, deliveries.

The `fake` fixture is loaded with ``pytest_plugins = ("tests.connectors.hubspot_support",)``, not imported.

Deliveries are built the way the pipeline builds them (render_context + the
mapping's render), from the repository's example webhook, so the tests run
the real default mapping end to end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from bridge.connector import Services
from bridge.mapping import MappingLoader
from bridge.settings import DeliverySettings
from connectors.hubspot import HubSpotConnector
from tests.conftest import ROOT, example_payload
from tests.fakes.hubspot import FakeHubSpot

TOKEN = "test-token"
MAPPINGS = ROOT / "mappings"
CALL_ID_PROPERTY = "agni_call_session_id"
CONNECTED = "f240bbac-87c9-4f6e-bf70-924b57d47db7"
TEN_SECONDLY = {
    "status": "error",
    "message": "You have reached your ten_secondly_rolling limit.",
    "errorType": "RATE_LIMIT",
    "correlationId": "c0ffee00-0000-4000-8000-000000000001",
    "policyName": "TEN_SECONDLY_ROLLING",
}
"""HubSpot's 429 body for the ten-second rolling limit, for scripted faults."""


@contextmanager
def running_fake(*, define_call_id: bool = True, **kwargs: Any) -> Iterator[FakeHubSpot]:
    """A FakeHubSpot on a free port; by default with the call-id property defined (as after `setup`)."""
    fake = FakeHubSpot(token=TOKEN, **kwargs)
    if define_call_id:
        fake.define_property("calls", CALL_ID_PROPERTY)
        fake.define_property("tasks", CALL_ID_PROPERTY)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    with running_fake() as server:
        yield server


def make_connector(
    fake: FakeHubSpot | None,
    redis_client: redis.Redis | None,
    *,
    name: str = "hs",
    attempts: int = 1,
    max_wait: float = 2.0,
    timeout: float = 5.0,
    mapping: str | Path = "hubspot_call.yaml",
    transport: httpx.BaseTransport | None = None,
    **options: Any,
) -> HubSpotConnector:
    """A HubSpotConnector built like the registry builds one (validate the raw config, load the mapping).

    `transport` is the HTTP seam (Services.http_transport), e.g. to reorder HubSpot's answers."""
    raw = {"type": "hubspot", "access_token": TOKEN, "base_url": fake.url if fake else "https://api.hubapi.com"}
    raw.update(options)
    config = HubSpotConnector.validate(name, raw)
    services = Services(
        redis=redis_client,
        prefix="agni",
        delivery=DeliverySettings(http_attempts=attempts, http_max_wait_seconds=max_wait, timeout_seconds=timeout),
        http_transport=transport,
    )
    compiled = MappingLoader(MAPPINGS).load(str(mapping))
    return HubSpotConnector(name, config, services, compiled)  # type: ignore[arg-type]


def analysis(**changes: Any) -> dict[str, Any]:
    """The example's post_call_analysis with `changes`."""
    base = dict(example_payload()["data"]["post_call_analysis"])
    base.update(changes)
    return base


def searches(fake: FakeHubSpot, object_type: str = "contacts") -> int:
    return fake.requests[f"POST /crm/v3/objects/{object_type}/search"]


def creates(fake: FakeHubSpot, object_type: str = "calls") -> int:
    return fake.requests[f"POST /crm/v3/objects/{object_type}"]


def batch_requests(fake: FakeHubSpot, operation: str, object_type: str = "calls") -> int:
    return fake.requests[f"POST /crm/v3/objects/{object_type}/batch/{operation}"]


def only(fake: FakeHubSpot, object_type: str) -> tuple[str, dict[str, str]]:
    """The single object of a type (asserting there is exactly one) and its properties."""
    with fake.lock:
        objects = dict(fake.objects[object_type])
    assert len(objects) == 1, f"expected one {object_type}, found {len(objects)}"
    object_id = next(iter(objects))
    return object_id, fake.properties_of(object_type, object_id)


def association_types(fake: FakeHubSpot, from_type: str, from_id: str, to_type: str) -> dict[str, int]:
    """to id -> the association type id stored (as written from `from_type`)."""
    with fake.lock:
        return {
            a.to_id: a.type_id
            for a in fake.associations
            if (a.from_type, a.from_id, a.to_type) == (from_type, from_id, to_type)
        }


def together(count: int) -> dict[str, Any]:
    """Connector options under which `count` concurrent deliveries share each batch on any machine.

    A batch goes out the moment it is full, so `count` deliveries leave together without waiting on a
    timer; the long lull (the configurable maximum) only matters when fewer than `count` reach a step,
    and keeps a thread that a loaded machine starts late from missing its batch."""
    return {"batch_size": count, "batch_linger_seconds": 1, "batch_max_wait_seconds": 1}


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


def person(i: int) -> dict[str, str]:
    """The i-th caller of a campaign: an email and a US number, as Agni sends them."""
    return {"caller_email": f"person{i}@example.com", "phone": f"+1415555{i:04d}", "callee_number": f"+1415555{i:04d}"}


def worker_settings(tmp_path: Path, fake: FakeHubSpot, *, threads: int = 4, **options: Any) -> Any:
    """Settings for a real worker delivering to `fake` through the connector `hs`."""
    from tests.conftest import make_settings

    connector = {"type": "hubspot", "access_token": TOKEN, "base_url": fake.url, **options}
    return make_settings(
        tmp_path,
        worker={"threads": threads},
        delivery={"http_attempts": 3, "http_max_wait_seconds": 10, "max_retries": 5},
        connectors={"hs": connector},
    )
