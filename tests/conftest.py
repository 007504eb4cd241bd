"""Shared fixtures: a real redis-server and a real PostgreSQL for the session, real workers, real HTTP fakes.

Nothing here mocks the bridge's own code. The session starts its own Redis
(through the same EmbeddedRedis the product uses) on a free port, so the
machine's Redis on 6379 is never touched; each test gets a clean database.
The call log's tests run against SQLite and PostgreSQL alike (`log_url`,
parametrized): the PostgreSQL is the one named by TEST_DATABASE_URL when set,
otherwise one the session starts itself (pip's pgserver, in a temporary
folder, never a server that happens to run on 5432), with a fresh database
per test.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis

from bridge.embedded_redis import EmbeddedRedis
from bridge.settings import Settings
from tests.fakes.httpserver import FakeRequest, FakeResponse, FakeServer

# Loaded as a fixture plugin by the HubSpot tests, which also import its helpers first.
pytest.register_assert_rewrite("tests.connectors.hubspot_support")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "call_completed.json"
ORG_ID = "1268c1f0-19f3-47db-aefb-c16a7c3ace6e"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run the long soak/fault variants")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak run: use --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


# -- payloads ------------------------------------------------------------------------


def example_payload(**data_overrides: Any) -> dict[str, Any]:
    payload = json.loads(EXAMPLE.read_text())
    payload["data"].update(data_overrides)
    return payload


def payload_bytes(**data_overrides: Any) -> bytes:
    return json.dumps(example_payload(**data_overrides)).encode()


# -- waiting -------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, message: str = "") -> Any:
    """Poll until `predicate()` is truthy; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


# -- Redis ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# -- the call log's database -----------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server for the session: TEST_DATABASE_URL, or a private one started here."""
    import os

    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def fresh_postgres_database(server_url: str) -> str:
    """CREATE DATABASE with a unique name on the session's server; the URL of it."""
    import uuid

    import sqlalchemy as sa

    from bridge.db.engine import database_url

    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(database_url(server_url, Path(".")), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return database_url(server_url, Path(".")).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty call-log database: SQLite, then PostgreSQL (every test using it runs on both)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log' / 'calls.db'}"
    return fresh_postgres_database(request.getfixturevalue("postgres_url"))


class LogView:
    """The call log as a test reads it: every read first catches the log up (as a worker's log writer
    would), then asks the database — so a test never waits on the writer's timing, only on the bridge."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        from bridge.calls import CallLog
        from bridge.db.drain import LogDrain
        from bridge.db.engine import log_engine
        from bridge.db.migrate import ensure_schema
        from bridge.db.queries import LogQueries
        from bridge.db.writer import LogWriter
        from bridge.keys import Keys
        from bridge.store import CallStore

        self.engine = log_engine(settings)
        ensure_schema(self.engine)
        region = settings.database.phone_region
        self.drain = LogDrain(client, Keys(settings.redis.prefix), LogWriter(self.engine, region=region))
        self.queries = LogQueries(self.engine, region=region)
        self.log = CallLog(self.engine, region=region)
        self.store = CallStore(client, Keys(settings.redis.prefix), retention_seconds=3600)

    def catch_up(self) -> int:
        total = 0
        while (applied := self.drain.drain_once()) > 0:
            total += applied
        return total

    def report(self, call_id: str) -> Any:
        self.catch_up()
        return self.log.report(call_id)

    def history(self, call_id: str) -> list[dict[str, Any]]:
        report = self.report(call_id)
        return report.history if report is not None else []

    def dead_letters(self, connector: str | None = None) -> dict[str, dict[str, Any]]:
        """call id -> dead letter (with the call's payload)."""
        self.catch_up()
        letters = {}
        for row in self.queries.dead_letters(connector):
            body = self.queries.payload(row["call_session_id"])
            letters[row["call_session_id"]] = {
                **row,
                "status": row["http_status"],
                "payload": body.decode() if body else None,
            }
        return letters

    def records(self, call_id: str, connector: str) -> dict[str, str]:
        report = self.report(call_id)
        state = next((c for c in report.connectors if c.connector == connector), None) if report else None
        return state.records if state is not None else {}

    def done(self, call_id: str, connector: str) -> str | None:
        """The done-marker in Redis (no lag): `delivered`/`skipped` once the CRM confirmed."""
        return self.store.done(call_id, connector)

    def close(self) -> None:
        self.engine.dispose()


def log_view(settings: Settings, client: redis.Redis) -> LogView:
    return LogView(settings, client)


def drain_log(settings: Settings, client: redis.Redis) -> int:
    """Apply every event waiting in the stream to the settings' call log now (as a worker's log writer does)."""
    view = LogView(settings, client)
    try:
        return view.catch_up()
    finally:
        view.close()


def call_report(settings: Settings, client: redis.Redis, call_id: str) -> Any:
    """What `calls show` says of a call once the log has caught up (None: not in the log)."""
    view = LogView(settings, client)
    try:
        return view.report(call_id)
    finally:
        view.close()


def history(settings: Settings, client: redis.Redis, call_id: str) -> list[dict[str, Any]]:
    """The call's history as the log holds it (empty when the call is not in the log)."""
    view = LogView(settings, client)
    try:
        return view.history(call_id)
    finally:
        view.close()


def dead_letters(settings: Settings, client: redis.Redis, connector: str | None = None) -> dict[str, dict[str, Any]]:
    """call id -> dead letter (with the call's payload), as the log holds them once it has caught up."""
    view = LogView(settings, client)
    try:
        return view.dead_letters(connector)
    finally:
        view.close()


# -- settings ------------------------------------------------------------------------


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test: fast retries, files under tmp_path, the repo's mappings."""
    tree: dict[str, Any] = {
        "agni": {"org_ids": [ORG_ID]},
        "data_dir": str(tmp_path / "var"),
        "mappings_dir": str(ROOT / "mappings"),
        "delivery": {
            "min_backoff_seconds": 0.05,
            "max_backoff_seconds": 0.2,
            "max_retries": 5,
            "http_attempts": 1,
            "timeout_seconds": 5,
        },
        "worker": {"threads": 4, "shutdown_timeout_seconds": 5, "heartbeat_timeout_seconds": 5},
        "connectors": {},
        "config_path": str(tmp_path / "config.yaml"),
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict) and key != "connectors":
            tree[key] = {**tree[key], **value}
        else:
            tree[key] = value
    return msgspec.convert(tree, type=Settings)


@contextmanager
def running_worker(settings: Settings, url: str) -> Iterator[None]:
    """A real Dramatiq worker (threads, real Redis broker) for the duration of the block."""
    from bridge.worker import run_worker

    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_worker(settings, url, stop=stop)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=target, name="test-worker", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
        if errors:
            raise errors[0]


# -- a webhook receiver ----------------------------------------------------------------


class Sink(FakeServer):
    """Records every request; answers 200 unless a fault says otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[FakeRequest] = []

    def handle(self, request: FakeRequest) -> FakeResponse:
        with self.lock:
            self.received.append(request)
        return FakeResponse.json(200, {"ok": True})

    def bodies(self) -> list[Any]:
        with self.lock:
            return [r.json() for r in self.received]


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink().start()
    yield server
    server.stop()


# -- the API, served for real ------------------------------------------------------------


@contextmanager
def running_api(settings: Settings, url: str) -> Iterator[str]:
    """The Litestar app under uvicorn on a free port, in a thread; yields its base URL.

    The socket is bound here and handed to uvicorn, so no other process can take the port in between."""
    import socket

    import uvicorn

    from bridge.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings, redis_url=url), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-api", daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10, message="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# -- helpers shared by the connector tests -----------------------------------------------


def make_delivery(connector: Any, **data: Any) -> Any:
    """The Delivery the pipeline would hand `connector` for the example call with `data` overrides."""
    from bridge.connector import Delivery
    from bridge.mapping import render_context

    payload = example_payload(**data)
    call = payload["data"]
    context = render_context(call=call, event=payload["event"], org_id=payload["org_id"], connector=connector.name)
    record = connector.mapping.render(context) if connector.mapping is not None else None
    return Delivery(
        call_session_id=str(call["call_session_id"]),
        connector=connector.name,
        event=payload["event"],
        org_id=payload["org_id"],
        call=call,
        raw_body=json.dumps(payload).encode(),
        record=record,
        context=context,
    )


def enqueue(redis_client: redis.Redis, settings: Settings, calls: Any, connectors: tuple[str, ...]) -> None:
    """Queue (call_id, body) pairs for `connectors` through the real ingest script, as the endpoint would."""
    from bridge.ingest import Ingestor
    from bridge.keys import Keys

    ingestor = Ingestor(redis_client, Keys(settings.redis.prefix), dedupe_ttl_seconds=3600, retention_seconds=3600)
    for call_id, body in calls:
        assert ingestor.accept_sync(call_id, body, connectors, {"type": "received"}).accepted


def call_store(redis_client: redis.Redis, settings: Settings) -> Any:
    from bridge.keys import Keys
    from bridge.store import CallStore

    return CallStore(redis_client, Keys(settings.redis.prefix), retention_seconds=3600)
