"""The `fake` fixture of the Pipedrive tests: a FakePipedrive on a free port for one test.

A pytest plugin (``pytest_plugins = ("tests.fakes.pipedrive_fixtures",)``) kept apart from the helpers in
tests/connectors/pipedrive_support.py, which test modules import: a plugin module must not be imported
before pytest loads it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.pipedrive import FakePipedrive


@pytest.fixture
def fake() -> Iterator[FakePipedrive]:
    with FakePipedrive() as server:
        yield server  # type: ignore[misc]
