"""Shared helpers for the Dynamics 365 connector tests: a running FakeDynamics, connectors pointed at it, deliveries.

Load the fixtures with ``pytest_plugins = ("tests.connectors.dynamics_support",)``.

Connectors are built the way the registry builds them (validate the raw config,
load the default mapping) with the test's real Redis, and deliveries are rendered
from the repository's example webhook by the real default mapping
(``tests.conftest.make_delivery``), so the tests run the shipped mapping end to end.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from bridge.connector import Services
from bridge.mapping import MappingLoader
from bridge.settings import DeliverySettings
from connectors.dynamics import DynamicsConnector
from connectors.dynamics.auth import TokenProvider
from connectors.dynamics.odata import phonecall_id
from tests.conftest import ROOT, make_delivery, make_settings
from tests.fakes.dynamics import CLIENT_ID, CLIENT_SECRET, TENANT, FakeDynamics
from tests.fakes.tls import TestPKI, make_test_pki

__all__ = ["Certificate", "DynHarness", "built", "certificate", "dyn", "fake", "make_certificate", "tls_dyn"]

MAPPINGS = ROOT / "mappings"
OWNER_AGENT = "Support Agent"


@pytest.fixture
def fake() -> Iterator[FakeDynamics]:
    """A fresh environment per test; the process-wide token cache is emptied so no token leaks between tests."""
    TokenProvider.forget_all()
    server = FakeDynamics().start()
    yield server
    server.stop()
    TokenProvider.forget_all()


@pytest.fixture
def built() -> Iterator[list[DynamicsConnector]]:
    """Connectors a test builds with `make_connector(..., registry=built)` are closed at teardown."""
    connectors: list[DynamicsConnector] = []
    yield connectors
    for connector in connectors:
        connector.close()


class DynHarness:
    """Builds connectors against the test's fake and Redis (closed at teardown), and reads what landed."""

    def __init__(self, fake: FakeDynamics, redis_client: redis.Redis, built: list[DynamicsConnector]) -> None:
        self.fake = fake
        self.redis = redis_client
        self.built = built

    def connector(self, *, use_redis: bool = True, **options: Any) -> DynamicsConnector:
        """A connector on this fake (see make_connector for the keyword arguments)."""
        return make_connector(self.fake, self.redis if use_redis else None, registry=self.built, **options)

    def offline(self, **options: Any) -> DynamicsConnector:
        """A connector on a real-looking instance_url and no Redis: for check and preview (no network)."""
        return make_connector(None, None, registry=self.built, **options)

    def options(self, **overrides: Any) -> dict[str, Any]:
        return connector_options(self.fake, **overrides)

    @staticmethod
    def delivery(connector: DynamicsConnector, **data: Any) -> Any:
        return make_delivery(connector, **data)

    def phonecall(self, call_session_id: str) -> dict[str, Any] | None:
        return phonecall_of(self.fake, call_session_id)

    def settings(self, tmp_path: Path, **options: Any) -> Any:
        return worker_settings(tmp_path, self.fake, **options)

    person = staticmethod(lambda i: person(i))
    concurrently = staticmethod(lambda fn, items: concurrently(fn, items))


@pytest.fixture
def tls_dyn(
    tmp_path: Path, redis_client: redis.Redis, built: list[DynamicsConnector]
) -> Iterator[tuple[DynHarness, TestPKI]]:
    """A harness on an environment served over TLS by a private test CA, and that CA."""
    TokenProvider.forget_all()
    pki = make_test_pki(tmp_path / "pki")
    server = FakeDynamics(ssl_context=pki.server_context()).start()
    yield DynHarness(server, redis_client, built), pki
    for connector in built:
        connector.close()
    server.stop()
    TokenProvider.forget_all()


@pytest.fixture
def dyn(fake: FakeDynamics, redis_client: redis.Redis, built: list[DynamicsConnector]) -> DynHarness:
    """The harness: `dyn.connector(**options)`, `dyn.delivery(connector, **data)`, `dyn.phonecall(call_id)`."""
    return DynHarness(fake, redis_client, built)


def connector_options(fake: FakeDynamics | None, **overrides: Any) -> dict[str, Any]:
    """A connector section pointed at `fake` (client secret auth); dict overrides are merged one level deep."""
    options: dict[str, Any] = {
        "type": "dynamics",
        "instance_url": fake.url if fake else "https://contoso.crm.dynamics.com",
        "auth": {
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            **({"token_url": fake.token_url} if fake else {}),
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(options.get(key), dict):
            options[key] = {**options[key], **value}
        elif value is None:
            options.pop(key, None)
        else:
            options[key] = value
    return options


def make_connector(
    fake: FakeDynamics | None,
    redis_client: redis.Redis | None,
    *,
    name: str = "dyn",
    attempts: int = 1,
    max_wait: float = 2.0,
    timeout: float = 5.0,
    mapping: str | Path = "dynamics_phonecall.yaml",
    transport: httpx.BaseTransport | None = None,
    resolve_path: Callable[[str], Path] = Path,
    registry: list[DynamicsConnector] | None = None,
    **options: Any,
) -> DynamicsConnector:
    """A DynamicsConnector built like the registry builds one; `registry` collects it for closing."""
    config = DynamicsConnector.validate(name, connector_options(fake, **options))
    services = Services(
        redis=redis_client,
        prefix="agni",
        delivery=DeliverySettings(http_attempts=attempts, http_max_wait_seconds=max_wait, timeout_seconds=timeout),
        http_transport=transport,
        resolve_path=resolve_path,
    )
    connector = DynamicsConnector(name, config, services, MappingLoader(MAPPINGS).load(str(mapping)))  # type: ignore[arg-type]
    if registry is not None:
        registry.append(connector)
    return connector


def phonecall_of(fake: FakeDynamics, call_session_id: str) -> dict[str, Any] | None:
    """The phone call the bridge writes for a call (its id is the uuid5 of call_session_id)."""
    return fake.get("phonecall", phonecall_id(call_session_id))


def person(i: int) -> dict[str, str]:
    """The i-th caller of a campaign (an outbound call to them): an email and a US number."""
    number = f"+1415555{i:04d}"
    return {"caller_email": f"person{i}@example.com", "phone": number, "callee_number": number}


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


def worker_settings(tmp_path: Path, fake: FakeDynamics, *, threads: int = 4, **options: Any) -> Any:
    """Settings for a real worker delivering to `fake` through the connector `dyn`."""
    return make_settings(
        tmp_path,
        worker={"threads": threads},
        delivery={"http_attempts": 3, "http_max_wait_seconds": 5, "max_retries": 5},
        connectors={"dyn": connector_options(fake, **options)},
    )


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for an app registration: the PEM the bridge holds, and the public part."""

    pem_path: Path  # private key + certificate
    certificate: bytes  # the certificate alone (uploaded to the app registration)


def make_certificate(folder: Path, *, password: str = "") -> Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agni-bridge test app")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    encryption = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"app{'-encrypted' if password else ''}.pem"
    path.write_bytes(key_pem + cert_pem)
    return Certificate(path, cert_pem)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("certificate"))
