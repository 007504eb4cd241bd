"""Schema migrations (Alembic), run automatically on start and by `agni-bridge db upgrade|current`.

Many processes may start at once (API replicas, workers), so an upgrade holds a lock for its duration:
PostgreSQL's advisory lock, or a file lock beside the SQLite file. A database whose schema is newer than
this code (a rollback of the bridge after an upgrade) is refused with a clear message rather than used:
an older bridge writing to a newer schema could lose data.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from bridge.db.engine import is_sqlite, safe_url, translate_errors
from bridge.errors import SchemaError

__all__ = ["SchemaState", "current_revision", "ensure_schema", "head_revision", "upgrade"]

log = logging.getLogger("bridge.db")

MIGRATIONS = Path(__file__).parent / "migrations"
_ADVISORY_LOCK_ID = 0x41474E49  # "AGNI"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(MIGRATIONS / "versions"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _known(revision: str) -> bool:
    script = ScriptDirectory.from_config(_config())
    return any(rev.revision == revision for rev in script.walk_revisions())


def current_revision(engine: Engine) -> str | None:
    with translate_errors("reading the schema version", engine), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


class SchemaState:
    """Where a database stands against this code: up to date, behind (upgradable) or ahead (refused)."""

    def __init__(self, current: str | None) -> None:
        self.current = current
        self.head = head_revision()

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def newer_than_code(self) -> bool:
        return self.current is not None and not _known(self.current)

    def refuse_if_newer(self, engine: Engine) -> None:
        if self.newer_than_code:
            raise SchemaError(
                f"the call log database ({safe_url(engine)}) has schema revision {self.current}, newer than this "
                f"version of the bridge knows (up to {self.head}): upgrade the bridge, or point database.url "
                "at another database"
            )


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to this code's head (under a lock); returns (revision before, revision after)."""
    with _migration_lock(engine), translate_errors("migrating the schema", engine):
        before = current_revision(engine)
        state = SchemaState(before)
        state.refuse_if_newer(engine)
        if not state.up_to_date:
            with engine.begin() as connection:
                command.upgrade(_config(connection), "head")
            log.info("call log schema upgraded: %s -> %s (%s)", before or "empty", state.head, safe_url(engine))
        return before, state.head


def ensure_schema(engine: Engine) -> None:
    """What every process does on start: upgrade when behind, refuse when ahead, nothing when current."""
    state = SchemaState(current_revision(engine))
    state.refuse_if_newer(engine)
    if not state.up_to_date:
        upgrade(engine)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if is_sqlite(engine):
        database = engine.url.database
        if not database or database == ":memory:":
            yield
            return
        with open(Path(database).with_suffix(".migrate.lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    with translate_errors("locking for a migration", engine), engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _ADVISORY_LOCK_ID})
            connection.commit()
