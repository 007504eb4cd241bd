"""Shared helpers for the Zendesk connector tests: a running FakeZendesk, a connector pointed at it, deliveries.

Test modules take the fixtures by name (``fake, seeded = zendesk_support.fake, zendesk_support.seeded``) and
import the helpers; the module is not a pytest plugin, so it needs no assertion rewriting of its own.
Deliveries are built the way the pipeline builds them (tests.conftest.make_delivery: render_context + the
mapping's render), from the repository's example webhook, so the tests run the real default mapping.
The seeded account has the example's caller (John Doe, john@example.com) as an end-user and the agent
"Support Agent" as an agent, both visible to search.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from bridge.connector import Services
from bridge.mapping import MappingLoader
from bridge.settings import DeliverySettings
from connectors.zendesk import ZendeskConnector
from tests.conftest import ROOT, example_payload
from tests.fakes.zendesk import FakeZendesk

MAPPINGS = ROOT / "mappings"
SESSION = "019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d"  # the example's call_session_id
TICKETS = "/api/v2/tickets"


@dataclass(frozen=True)
class Seeded:
    """Who the seeded account holds."""

    john: int  # the example's caller, an end-user
    agent: int  # "Support Agent", an agent


@contextmanager
def running_fake(**kwargs: Any) -> Iterator[FakeZendesk]:
    fake = FakeZendesk(**kwargs)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def seed(fake: FakeZendesk) -> Seeded:
    john = fake.add_user("John Doe", email="john@example.com", phone="+14155550100")
    agent = fake.add_user("Support Agent", email="support@acme.test", role="agent")
    return Seeded(john, agent)


@pytest.fixture
def fake() -> Iterator[FakeZendesk]:
    with running_fake() as server:
        yield server


@pytest.fixture
def seeded(fake: FakeZendesk) -> Seeded:
    return seed(fake)


def make_connector(
    fake: FakeZendesk | None,
    redis_client: redis.Redis | None,
    *,
    name: str = "zd",
    attempts: int = 1,
    max_wait: float = 2.0,
    timeout: float = 5.0,
    mapping: str | Path = "zendesk_ticket.yaml",
    transport: httpx.BaseTransport | None = None,
    **options: Any,
) -> ZendeskConnector:
    """A ZendeskConnector built like the registry builds one (validate the raw config, load the mapping)."""
    raw: dict[str, Any] = {
        "type": "zendesk",
        "base_url": fake.url if fake else "https://acme.zendesk.com",
        "auth": {"email": fake.email if fake else "bridge@example.com", "api_token": "test-api-token"},
    }
    raw.update(options)
    config = ZendeskConnector.validate(name, raw)
    services = Services(
        redis=redis_client,
        prefix="agni",
        delivery=DeliverySettings(http_attempts=attempts, http_max_wait_seconds=max_wait, timeout_seconds=timeout),
        http_transport=transport,
    )
    compiled = MappingLoader(MAPPINGS).load(str(mapping))
    return ZendeskConnector(name, config, services, compiled)  # type: ignore[arg-type]


def analysis(**changes: Any) -> dict[str, Any]:
    """The example's post_call_analysis with `changes`."""
    base = dict(example_payload()["data"]["post_call_analysis"])
    base.update(changes)
    return base


PENDING = {"next_steps": "Send the quote by Friday.", "goals_met": False}
"""A post_call_analysis change that makes the default mapping write a follow-up task."""


def posts(fake: FakeZendesk, path: str = TICKETS) -> int:
    """Requests to `path` that reached the fake's handler (past auth and limits), by method POST."""
    return fake.requests[f"POST {path}"]


def searches(fake: FakeZendesk) -> int:
    return fake.requests["GET /api/v2/users/search"]


def listings(fake: FakeZendesk) -> int:
    return fake.requests[f"GET {TICKETS}"]


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


def worker_settings(tmp_path: Path, fake: FakeZendesk, *, threads: int = 4, **options: Any) -> Any:
    """Settings for a real worker delivering to `fake` through the connector `zd`."""
    from tests.conftest import make_settings

    connector = {
        "type": "zendesk",
        "base_url": fake.url,
        "auth": {"email": fake.email, "api_token": fake.api_token},
        **options,
    }
    return make_settings(
        tmp_path,
        worker={"threads": threads},
        delivery={"http_attempts": 3, "http_max_wait_seconds": 10, "max_retries": 5},
        connectors={"zd": connector},
    )
