"""Fixtures for the call log's tests: a migrated database (SQLite and PostgreSQL, via `log_url`) and its writer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.db.engine import build_engine, database_url
from bridge.db.events import LogEvent
from bridge.db.migrate import upgrade
from bridge.db.queries import LogQueries
from bridge.db.writer import LogWriter
from tests.conftest import example_payload


@pytest.fixture
def engine(log_url: str, tmp_path: Path) -> Iterator[Any]:
    engine = build_engine(database_url(log_url, tmp_path))
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def writer(engine: Any) -> LogWriter:
    return LogWriter(engine)


@pytest.fixture
def queries(engine: Any) -> LogQueries:
    return LogQueries(engine)


def body(**data: Any) -> bytes:
    return json.dumps(example_payload(**data)).encode()


class Calls:
    """Builds log events the way the API and workers write them, and applies them (no stream position)."""

    def __init__(self, writer: LogWriter) -> None:
        self.writer = writer
        self.clock = 1_765_000_000_000
        self.seq = 0

    def tick(self, ms: int = 1000) -> int:
        self.clock += ms
        return self.clock

    def apply(self, events: list[LogEvent], payloads: dict[str, bytes | None] | None = None) -> Any:
        entries = []
        for event in events:
            self.seq += 1
            entries.append((f"{event.t}-{self.seq}", event))
        return self.writer.apply(entries, payloads or {}, start=None, end=None)

    def received(self, call: str, connectors: list[str], t: int | None = None, **extra: Any) -> LogEvent:
        return LogEvent(type="received", call=call, t=t or self.tick(), connectors=connectors, org_id="org", **extra)

    def attempt(self, call: str, connector: str, outcome: str, t: int | None = None, **extra: Any) -> LogEvent:
        extra.setdefault("attempt", 1)
        return LogEvent(type="attempt", call=call, connector=connector, outcome=outcome, t=t or self.tick(), **extra)

    def delivered(self, call: str, connectors: list[str], **data: Any) -> None:
        """A call received with `data` in its payload and delivered to every connector."""
        events = [self.received(call, connectors)]
        events += [self.attempt(call, c, "delivered", records={"Task": f"{call}-{c}"}) for c in connectors]
        self.apply(events, {call: body(call_session_id=call, **data)})


@pytest.fixture
def calls(writer: LogWriter) -> Calls:
    return Calls(writer)
