"""The call log over time: retention, schema migrations, and moving an older version's log out of Redis."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic import command

from bridge.calls import CallLog, CallSearch
from bridge.db import schema as t
from bridge.db.engine import build_engine, database_url
from bridge.db.importer import import_from_redis, legacy_log_present
from bridge.db.migrate import _config, current_revision, ensure_schema, head_revision, upgrade
from bridge.db.prune import prune
from bridge.errors import SchemaError
from bridge.keys import Keys
from tests.conftest import ORG_ID, ROOT, payload_bytes
from tests.db.conftest import body

# -- retention ---------------------------------------------------------------------------------


def test_old_calls_are_pruned_in_batches_and_dead_letters_are_kept(calls, engine, queries):
    for i in range(7):
        calls.delivered(f"old-{i}", ["sf"], summary="an old invoice call")
    calls.apply([calls.received("old-dead", ["sf"]), calls.attempt("old-dead", "sf", "dead", error="HTTP 400: x")])
    cutoff = calls.tick(3_600_000 * 24)
    calls.delivered("new", ["sf"], summary="a new invoice call")

    removed = prune(engine, cutoff, batch=3)

    assert removed == 7
    log = CallLog(engine)
    assert [r.call_session_id for r in log.search(CallSearch()).calls] == ["new", "old-dead"]
    assert [r.call_session_id for r in log.search(CallSearch(text="invoice")).calls] == ["new"]  # index follows
    assert [letter["call_session_id"] for letter in queries.dead_letters()] == ["old-dead"]
    with engine.connect() as conn:
        for table in (t.attempts, t.deliveries, t.records, t.parties):
            orphans = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(~table.c.call_id.in_(sa.select(t.calls.c.id)))
            ).scalar()
            assert orphans == 0, table.name
        assert conn.execute(sa.select(sa.func.count()).select_from(t.delivery_stats)).scalar() == 1
    assert prune(engine, cutoff) == 0


# -- migrations --------------------------------------------------------------------------------


def test_an_older_schema_is_upgraded_on_start_and_a_newer_one_is_refused(log_url, tmp_path):
    engine = build_engine(database_url(log_url, tmp_path))
    try:
        with engine.begin() as conn:
            command.upgrade(_config(conn), "0001_call_log")  # as an earlier release left it
        assert current_revision(engine) == "0001_call_log"
        ensure_schema(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(t.delivery_stats)).scalar() == 0
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '2099_12_31_future'"))
        with pytest.raises(SchemaError, match="2099_12_31_future, newer than this version of the bridge knows"):
            ensure_schema(engine)
        with pytest.raises(SchemaError):
            upgrade(engine)
    finally:
        engine.dispose()


def test_db_current_and_db_upgrade_tell_an_operator_where_the_schema_stands(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"agni: {{org_ids: ['{ORG_ID}']}}\ndata_dir: {tmp_path / 'var'}\n")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bridge", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )

    assert "empty (this bridge: " in cli("db", "current").stdout
    upgraded = cli("db", "upgrade")
    assert upgraded.returncode == 0 and f"upgraded from an empty database to {head_revision()}" in upgraded.stdout
    assert "up to date" in cli("db", "current").stdout
    assert f"already at {head_revision()}" in cli("db", "upgrade").stdout
    engine = build_engine(database_url("", tmp_path / "var"))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'zzz_future'"))
    engine.dispose()
    assert "NEWER than this bridge: refused" in cli("db", "current").stdout
    refused = cli("db", "upgrade")
    assert refused.returncode == 1 and "zzz_future, newer than this version" in refused.stderr


# -- an older version's log, in Redis ------------------------------------------------------------


def write_legacy_log(client, keys: Keys) -> None:
    """What a bridge before the database left in Redis: history lists, the index, dead letters, payloads."""
    t0 = 1_764_000_000_000
    for i, (call, outcome) in enumerate([("legacy-ok", "delivered"), ("legacy-dead", "dead"), ("legacy-open", None)]):
        received = {
            "t": t0 + i,
            "type": "received",
            "org_id": ORG_ID,
            "source_ip": "10.0.0.1",
            "route": "r",
            "connectors": ["sf"],
        }
        history = [received]
        if outcome == "delivered":
            history.append(
                {
                    "t": t0 + i + 50,
                    "type": "attempt",
                    "connector": "sf",
                    "attempt": 1,
                    "outcome": "delivered",
                    "records": {"Task": "00T9"},
                    "mapping": "salesforce_task.yaml",
                    "mapping_digest": "0123456789ab",
                }
            )
            client.hset(keys.done(call), "sf", json.dumps({"outcome": "delivered", "records": {"Task": "00T9"}}))
        if outcome == "dead":
            history.append(
                {
                    "t": t0 + i + 50,
                    "type": "attempt",
                    "connector": "sf",
                    "attempt": 1,
                    "outcome": "dead",
                    "error": "HTTP 400 INVALID_FIELD: nope",
                    "status": 400,
                    "code": "INVALID_FIELD",
                }
            )
            client.hset(
                keys.legacy_dlq("sf"),
                call,
                json.dumps(
                    {
                        "call_session_id": call,
                        "connector": "sf",
                        "t": t0 + i + 50,
                        "attempts": 1,
                        "error": "HTTP 400 INVALID_FIELD: nope",
                    }
                ),
            )
        client.rpush(keys.legacy_log(call), *[json.dumps(e) for e in history])
        client.zadd(keys.legacy_index, {call: t0 + i})
        client.set(keys.payload(call), payload_bytes(call_session_id=call))
    # A dead letter whose history had already expired
    client.hset(
        keys.legacy_dlq("hs"),
        "legacy-lost",
        json.dumps(
            {
                "call_session_id": "legacy-lost",
                "connector": "hs",
                "t": t0,
                "attempts": 5,
                "error": "HTTP 401: expired",
                "payload": body(call_session_id="legacy-lost").decode(),
            }
        ),
    )


def test_an_older_versions_log_moves_into_the_database_once(redis_client, engine):
    keys = Keys()
    write_legacy_log(redis_client, keys)
    assert legacy_log_present(redis_client, keys)

    summary = import_from_redis(redis_client, keys, engine)

    assert (summary.calls, summary.events, summary.dead_letters) == (3, 5, 1)
    log = CallLog(engine)
    ok = log.report("legacy-ok")
    assert ok.status == "delivered" and ok.connectors[0].records == {"Task": "00T9"} and ok.source_ip == "10.0.0.1"
    dead = log.report("legacy-dead")
    assert dead.status == "dead" and dead.connectors[0].last_error == "HTTP 400 INVALID_FIELD: nope"
    assert log.report("legacy-open").status == "pending"
    lost = log.report("legacy-lost")
    assert lost.status == "dead" and lost.connectors[0].attempts == 5
    assert log.payload("legacy-lost") == body(call_session_id="legacy-lost")
    # Redis lets go of what the log now holds, and keeps what is still in flight
    assert not legacy_log_present(redis_client, keys)
    assert not redis_client.exists(keys.legacy_log("legacy-ok"), keys.payload("legacy-ok"))
    assert redis_client.exists(keys.payload("legacy-open"))
    # Run again: nothing doubles
    assert import_from_redis(redis_client, keys, engine).calls == 0
    write_legacy_log(redis_client, keys)
    again = import_from_redis(redis_client, keys, engine)
    assert (again.calls, again.skipped) == (0, 3)
    assert len(log.report("legacy-ok").history) == 2
