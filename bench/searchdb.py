"""Loading the generated log (bench/searchgen.py) into SQLite or PostgreSQL, and caching it.

The schema comes from the product's own migrations (`bridge.db.migrate.upgrade`); the secondary indexes
are read back from the database, dropped for the load and re-created from those same definitions
afterwards, which is much faster than maintaining them row by row. The result is cached under
bench/.cache/search/ (an SQLite file; a PostgreSQL data folder with one database per size), with a JSON
note of how long each step took, so a rerun reuses it. A load that did not finish leaves no note and is
redone.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.pg import create_database, postgres
from bench.procs import ROOT
from bench.searchgen import GENERATOR_VERSION, STATS_COLUMNS, TABLES, Generator
from bridge.db.engine import build_engine, database_url
from bridge.db.migrate import upgrade

__all__ = ["CACHE", "cached_postgres", "cached_sqlite"]

CACHE = ROOT / "bench" / ".cache" / "search"


def _progress(label: str, done: int, total: int, started: float) -> None:
    if done % 100_000 == 0 or done == total:
        print(f"    {label}: {done:,}/{total:,} calls, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def _note(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _counts(execute: Any) -> dict[str, int]:
    return {name: int(execute(f"SELECT count(*) FROM {name}")) for name in (*TABLES, "delivery_stats")}


# -- SQLite ---------------------------------------------------------------------------------
def build_sqlite(path: Path, total: int) -> dict[str, Any]:
    timings: dict[str, float] = {}
    started = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = build_engine(database_url(f"sqlite:///{path}", path.parent))
    upgrade(engine)
    engine.dispose()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=DELETE")  # no WAL while loading: every page would be written twice
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-400000")
        db.execute("PRAGMA temp_store=MEMORY")
        indexes = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN "
            f"({','.join('?' * (len(TABLES) + 1))})",
            (*TABLES, "delivery_stats"),
        ).fetchall()
        for name, _ in indexes:
            db.execute(f'DROP INDEX "{name}"')
        generator = Generator(total, compress=True)
        statements = {
            name: f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            for name, cols in TABLES.items()
        }
        for done, chunk in generator.chunks():
            db.execute("BEGIN")
            for name, rows in chunk.rows.items():
                db.executemany(statements[name], rows)
            db.execute("COMMIT")
            _progress("sqlite", done, total, started)
        marks = ", ".join("?" * len(STATS_COLUMNS))
        stats = f"INSERT INTO delivery_stats ({', '.join(STATS_COLUMNS)}) VALUES ({marks})"
        db.execute("BEGIN")
        db.executemany(stats, generator.stats_rows())
        db.execute("COMMIT")
        timings["rows_s"] = round(time.monotonic() - started, 1)
        mark = time.monotonic()
        for _, sql in indexes:
            db.execute(sql)
        timings["indexes_s"] = round(time.monotonic() - mark, 1)
        mark = time.monotonic()
        db.execute("INSERT INTO calls_fts(calls_fts) VALUES ('rebuild')")  # one row per call, as the writer adds
        timings["full_text_s"] = round(time.monotonic() - mark, 1)
        db.execute("PRAGMA journal_mode=WAL")  # what the product's engine sets on every connection anyway
        counts = _counts(lambda sql: db.execute(sql).fetchone()[0])
        counts["calls_fts"] = db.execute("SELECT count(*) FROM calls_fts").fetchone()[0]
    finally:
        db.close()
    timings["total_s"] = round(time.monotonic() - started, 1)
    return {"timings": timings, "rows": counts, "bytes": path.stat().st_size, "indexes": [n for n, _ in indexes]}


def cached_sqlite(total: int) -> tuple[Path, dict[str, Any]]:
    """The SQLite log of `total` calls (generated on first use); its path and the note of its generation."""
    path = CACHE / f"sqlite-{total}-v{GENERATOR_VERSION}.db"
    note_path = path.with_suffix(".json")
    note = _note(note_path)
    if note is None or not path.exists():
        print(f"  generating {total:,} calls into SQLite ({path})", file=sys.stderr)
        note = build_sqlite(path, total)
        note_path.write_text(json.dumps(note, indent=2))
        note["cached"] = False
    else:
        note["cached"] = True
    return path, note


# -- PostgreSQL -----------------------------------------------------------------------------
def build_postgres(url: str, total: int) -> dict[str, Any]:
    timings: dict[str, float] = {}
    started = time.monotonic()
    engine = build_engine(database_url(url, Path(".")))
    upgrade(engine)
    raw = engine.raw_connection()
    try:
        pg: Any = raw.driver_connection
        pg.autocommit = True
        indexes = pg.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = indexname)"
        ).fetchall()
        for name, _ in indexes:
            pg.execute(f'DROP INDEX "{name}"')
        pg.autocommit = False
        generator = Generator(total, compress=False)
        for done, chunk in generator.chunks():
            with pg.cursor() as cursor:
                for name, rows in chunk.rows.items():
                    with cursor.copy(f"COPY {name} ({', '.join(TABLES[name])}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
            pg.commit()
            _progress("postgresql", done, total, started)
        with pg.cursor() as cursor, cursor.copy(f"COPY delivery_stats ({', '.join(STATS_COLUMNS)}) FROM STDIN") as copy:
            for row in generator.stats_rows():
                copy.write_row(row)
        pg.commit()
        timings["rows_s"] = round(time.monotonic() - started, 1)
        pg.autocommit = True
        mark = time.monotonic()
        pg.execute("SET maintenance_work_mem = '512MB'")
        for _, sql in indexes:
            pg.execute(sql)
        timings["indexes_s"] = round(time.monotonic() - mark, 1)
        for table in ("calls", "attempts"):  # ids were given explicitly: the writer's next ids follow them
            pg.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        mark = time.monotonic()
        pg.execute("VACUUM ANALYZE")  # what autovacuum does after a bulk load, done now rather than some time later
        timings["vacuum_analyze_s"] = round(time.monotonic() - mark, 1)
        counts = _counts(lambda sql: pg.execute(sql).fetchone()[0])
        size = pg.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    finally:
        raw.close()
        engine.dispose()
    timings["total_s"] = round(time.monotonic() - started, 1)
    return {"timings": timings, "rows": counts, "bytes": int(size), "indexes": [n for n, _ in indexes]}


@contextmanager
def cached_postgres(total: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """A running PostgreSQL holding the log of `total` calls (generated on first use): (URL, note)."""
    name = f"search_{total}_v{GENERATOR_VERSION}"
    note_path = CACHE / f"pg-{name}.json"
    with postgres(CACHE / "pgdata") as server:
        note = _note(note_path)
        url = database_url(server, Path(".")).set(database=name).render_as_string(hide_password=False)
        if note is None:
            print(f"  generating {total:,} calls into PostgreSQL ({name})", file=sys.stderr)
            url = create_database(server, name)
            note = build_postgres(url, total)
            note_path.write_text(json.dumps(note, indent=2))
            note["cached"] = False
        else:
            note["cached"] = True
        yield url, note
