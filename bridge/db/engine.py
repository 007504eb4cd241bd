"""From `database.url` to a SQLAlchemy engine, the same code path for SQLite and PostgreSQL.

* No URL: an SQLite file under `data_dir` (``calls.db``), so one box needs nothing else. It runs in
  WAL mode (readers — the CLI, the console — never block the log writer or each other) with a busy
  timeout, and `synchronous=NORMAL`, which in WAL mode loses at most the last transactions on a power
  cut — events the Redis stream still holds until they are applied, so nothing is lost.
* ``postgresql://…`` (or ``postgres://``): psycopg 3, a small pool with pre-ping, so a restarted
  server is reconnected to instead of failing the next query.

Database errors are translated once, here (:func:`translate_errors`), into :class:`DatabaseError`.
URLs are shown only with their password hidden.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from bridge.errors import ConfigError, DatabaseError
from bridge.settings import Settings

__all__ = ["build_engine", "database_url", "is_sqlite", "log_engine", "safe_url", "translate_errors"]

SQLITE_FILE = "calls.db"


def database_url(url: str, data_dir: Path) -> URL:
    """The configured URL (postgres → psycopg 3), or the default SQLite file under `data_dir`."""
    if not url:
        return URL.create("sqlite", database=str(Path(data_dir) / SQLITE_FILE))
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database.url: not a database URL ({exc})") from exc
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(f"database.url: {parsed.get_backend_name()!r} is not supported (use sqlite or postgresql)")
    return parsed


def log_engine(settings: Settings) -> Engine:
    """The engine of the configured call log (nothing is connected until first use)."""
    return build_engine(database_url(settings.database.url, settings.resolve(settings.data_dir)))


def safe_url(url: URL | Engine) -> str:
    """For messages and logs: the URL with its password hidden."""
    target = url.url if isinstance(url, Engine) else url
    return target.render_as_string(hide_password=True)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def build_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30}, pool_pre_ping=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        # SQLAlchemy's recipe for real SQLite transactions: the driver's own half-transactions never BEGIN
        # before a SELECT, so several reads (a call's report) would not see one consistent snapshot.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        return engine
    return sa.create_engine(
        url,
        pool_size=5,
        max_overflow=10,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5, "application_name": "agni-bridge"},
    )


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    connection.isolation_level = None  # transactions are begun explicitly (see build_engine)
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@contextmanager
def translate_errors(what: str, engine: Engine | None = None) -> Iterator[None]:
    """SQLAlchemy/driver errors → DatabaseError naming what was being done (and the URL, password hidden)."""
    try:
        yield
    except SQLAlchemyError as exc:
        where = f" ({safe_url(engine)})" if engine is not None else ""
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DatabaseError(f"call log database{where}: {what} failed: {reason}") from exc
