"""A real PostgreSQL for the benchmark: pip's pgserver in a folder of the benchmark's own.

Never a server that happens to run on the machine's 5432: pgserver starts its own postmaster (on a
Unix socket) in the given folder. Under root it runs as its own system user, so the folder must be
traversable by others — `tempfile.mkdtemp` under /tmp (not a pytest-style 0700 folder), or the
benchmark's cache folder for the search section's database, which is kept between runs.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bridge.db.engine import database_url

__all__ = ["create_database", "postgres", "temporary_postgres"]


@contextmanager
def postgres(folder: Path) -> Iterator[str]:
    """A PostgreSQL whose data lives in `folder` (created, or reused as it is); yields its server URL."""
    import pgserver

    folder.parent.mkdir(parents=True, exist_ok=True)  # pgserver creates the data folder itself, as 0700
    server: Any = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextmanager
def temporary_postgres() -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="agni-bench-pg-"))
    try:
        with postgres(folder / "data") as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def create_database(server_url: str, name: str | None = None) -> str:
    """CREATE DATABASE (a unique name unless given; dropped first if it exists); the URL the bridge takes."""
    name = name or f"bench_{uuid.uuid4().hex[:12]}"
    base = database_url(server_url, Path("."))
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)
