"""Shared fixtures for the Salesforce connector tests (loaded with ``pytest_plugins``, not imported).

The connector is built the way the worker builds it (entry point, config Struct,
mapping loader, real Redis) and talks, through real simple-salesforce and real TLS
verified against a throw-away CA, to :class:`tests.fakes.salesforce.FakeSalesforce`.
Nothing of the bridge is mocked. Deliveries are prepared exactly as
:class:`bridge.pipeline.Pipeline` prepares them (the same render_context and mapping).

Fixtures: ``pki`` (test CA), ``org`` (the fake Salesforce org), ``salesforce`` (builds connectors against
it: ``salesforce.connector(**config overrides)``, ``salesforce.deliver(connector, **payload overrides)``)
and ``recordings`` (a TLS file server for recording downloads), and ``burst`` (:func:`deliver_burst` on the test's
Redis: queue calls, then drain them with a real worker).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bridge.connector import Connector, Delivery, Services
from bridge.ingest import Ingestor
from bridge.keys import Keys
from bridge.mapping import MappingLoader
from bridge.registry import build_connectors
from bridge.settings import Settings
from connectors.salesforce.auth import Authenticator
from tests.conftest import log_view, make_delivery, make_settings, payload_bytes, running_worker, wait_for
from tests.fakes.httpserver import FakeRequest, FakeResponse, FakeServer
from tests.fakes.salesforce import FakeSalesforce
from tests.fakes.tls import TestPKI, make_test_pki

__all__ = [
    "AUDIO",
    "Recordings",
    "SfHarness",
    "burst",
    "deliver_burst",
    "make_delivery",
    "org",
    "pki",
    "recordings",
    "salesforce",
]

AUDIO = b"ID3\x04\x00" + bytes(range(256)) * 64  # 16 KB that looks like an mp3 to a file browser


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def org(pki: TestPKI) -> Iterator[FakeSalesforce]:
    """A fresh fake org per test; the process-wide token cache is emptied so no token leaks between tests."""
    Authenticator.forget_all()
    with FakeSalesforce(ssl_context=pki.server_context(), api_version="62.0") as server:
        yield server
    Authenticator.forget_all()


class Recordings(FakeServer):
    """Serves a recording over TLS (test CA) and counts downloads."""

    AUDIO = AUDIO

    def recording_url(self, path: str = "/rec/call.mp3") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def handle(self, request: FakeRequest) -> FakeResponse:
        if request.path == "/rec/call.mp3":
            return FakeResponse(200, self.AUDIO, {"content-type": "audio/mpeg"})
        return FakeResponse(404, b"not found")


@pytest.fixture
def recordings(pki: TestPKI) -> Iterator[Recordings]:
    server = Recordings(ssl_context=pki.server_context()).start()
    yield server
    server.stop()


class SfHarness:
    """Builds connectors against the org; every connector it builds is closed at teardown."""

    def __init__(self, tmp_path: Path, org: FakeSalesforce, pki: TestPKI, redis_client: redis.Redis) -> None:
        self.tmp_path = tmp_path
        self.org = org
        self.pki = pki
        self.redis = redis_client
        self.built: list[Connector] = []

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A connector section: session auth against the org, TLS trusting only the test CA.

        Dict overrides are merged into the defaults (`auth` replaces them); None removes a key."""
        config: dict[str, Any] = {
            "type": "salesforce",
            "instance_url": self.org.url,
            "ca_bundle": str(self.pki.ca_path),
            "auth": {"method": "session", "session_id": self.org.add_session()},
            "recording": {"allow_private": True, "recording_hosts": ["127.0.0.1"]},
        }
        for key, value in overrides.items():
            if value is None:
                config.pop(key, None)  # e.g. instance_url=None: take it from the token response
            elif isinstance(value, dict) and isinstance(config.get(key), dict) and key != "auth":
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        return config

    def settings(
        self, *, delivery: dict[str, Any] | None = None, worker: dict[str, Any] | None = None, **overrides: Any
    ) -> Settings:
        extra = {key: value for key, value in (("delivery", delivery), ("worker", worker)) if value}
        return make_settings(self.tmp_path, connectors={"sf": self.config(**overrides)}, **extra)

    def connector(
        self, *, use_redis: bool = True, delivery: dict[str, Any] | None = None, **overrides: Any
    ) -> Connector:
        settings = self.settings(delivery=delivery, **overrides)
        services = Services(
            redis=self.redis if use_redis else None,
            prefix=settings.redis.prefix,
            delivery=settings.delivery,
            resolve_path=settings.resolve,
        )
        connector = build_connectors(settings, services, MappingLoader(settings.resolve(settings.mappings_dir)))["sf"]
        self.built.append(connector)
        return connector

    def delivery(self, connector: Connector, **data: Any) -> Delivery:
        return make_delivery(connector, **data)

    def deliver(self, connector: Connector, **data: Any) -> Any:
        return connector.deliver(make_delivery(connector, **data))

    def mapping_file(self, name: str, text: str) -> str:
        """Write a mapping next to the test and return its absolute path (mapping names may be absolute)."""
        path = self.tmp_path / name
        path.write_text(text)
        return str(path)


@pytest.fixture
def salesforce(tmp_path: Path, org: FakeSalesforce, pki: TestPKI, redis_client: redis.Redis) -> Iterator[SfHarness]:
    built = SfHarness(tmp_path, org, pki, redis_client)
    yield built
    for connector in built.built:
        connector.close()


def deliver_burst(
    settings: Settings, redis_url: str, redis_client: redis.Redis, calls: dict[str, dict[str, Any]]
) -> float:
    """Queue every call (as the API does) for connector "sf", then let a real worker drain the queue (until each
    call is delivered or dead-lettered); returns how long that took."""
    ingestor = Ingestor(redis_client, Keys(), dedupe_ttl_seconds=600, retention_seconds=3600)
    for call_id, data in calls.items():
        body = payload_bytes(call_session_id=call_id, **data)
        assert ingestor.accept_sync(call_id, body, ("sf",), {"type": "received"}).accepted
    calls_store = log_view(settings, redis_client)

    def finished() -> bool:
        dead = calls_store.dead_letters("sf")
        return all(call_id in dead or calls_store.done(call_id, "sf") for call_id in calls)

    started = time.monotonic()
    with running_worker(settings, redis_url):
        wait_for(finished, timeout=40, interval=0.1, message=f"{len(calls)} deliveries")
    return time.monotonic() - started


@pytest.fixture
def burst(redis_url: str, redis_client: redis.Redis) -> Any:
    """``burst(settings, calls)``: :func:`deliver_burst` against this test's Redis."""
    return lambda settings, calls: deliver_burst(settings, redis_url, redis_client, calls)
