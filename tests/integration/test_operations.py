"""What an admin does: ask why a call is not delivered, replay it, work the dead-letter list, backfill."""

import json

import httpx
import pytest
from click.testing import CliRunner

from bridge.cli import main
from tests.conftest import ORG_ID, ROOT, make_settings, payload_bytes, running_api, running_worker, wait_for
from tests.fakes.httpserver import Fault

JSON = {"content-type": "application/json"}


@pytest.fixture
def config_file(tmp_path, sink, monkeypatch, redis_url):
    path = tmp_path / "config.yaml"
    path.write_text(
        f"agni: {{org_ids: ['{ORG_ID}']}}\nmappings_dir: {ROOT / 'mappings'}\ndata_dir: {tmp_path / 'var'}\n"
        "admin: {token: '${ADMIN_TOKEN}'}\n"
        "delivery: {min_backoff_seconds: 0.05, max_backoff_seconds: 0.1, max_retries: 1, http_attempts: 1}\n"
        f"connectors:\n  fwd: {{type: webhook_forward, url: '{sink.url}/in'}}\n"
        f"  out: {{type: jsonl, path: {tmp_path / 'out.jsonl'}}}\n"
    )
    monkeypatch.setenv("ADMIN_TOKEN", "adm1n-t0ken")
    monkeypatch.setenv("AGNI_BRIDGE_REDIS_URL", redis_url)
    return path


@pytest.fixture
def bridge(config_file, redis_url):
    from bridge.settings import load_settings

    settings = load_settings(config_file)
    with running_worker(settings, redis_url), running_api(settings, redis_url) as base:
        yield base


def cli(config_file, *args):
    result = CliRunner().invoke(main, ["--config", str(config_file), *args], catch_exceptions=False)
    return result


def post(base, call_id):
    return httpx.post(f"{base}/webhooks/agni", content=payload_bytes(call_session_id=call_id), headers=JSON).json()


def show(config_file, call_id):
    """`calls show --json`; until the log has the call, a report with no status (the command says why)."""
    result = cli(config_file, "calls", "show", call_id, "--json")
    if result.exit_code != 0:
        assert "is not in the log yet" in result.output, result.output
        return {"status": None, "connectors": [], "history": []}
    return json.loads(result.output)


def test_calls_show_explains_a_delivered_call(config_file, bridge):
    post(bridge, "ok-1")
    report = wait_for(lambda: (r := show(config_file, "ok-1"))["status"] == "delivered" and r, timeout=15)
    states = {c["connector"]: c for c in report["connectors"]}
    assert states["out"]["status"] == "delivered" and states["out"]["mapping"] == "jsonl_record.yaml"
    assert states["fwd"]["records"] == {"http_status": "200"}
    assert report["route"] == "default: all connectors"
    assert report["source_ip"] == "127.0.0.1"
    text = cli(config_file, "calls", "show", "ok-1").output
    assert "Call ok-1: DELIVERED" in text and "fwd" in text and "received" in text


def test_a_dead_letter_is_listed_explained_replayed_and_then_gone(config_file, bridge, sink):
    sink.faults.add(Fault(status=422, body=b'{"error":"unknown field agent"}'), times=1)
    post(bridge, "bad-1")
    report = wait_for(lambda: (r := show(config_file, "bad-1"))["status"] == "dead" and r, timeout=15)
    fwd = next(c for c in report["connectors"] if c["connector"] == "fwd")
    assert "unknown field agent" in fwd["last_error"]
    listed = json.loads(cli(config_file, "calls", "list", "--status", "dead", "--json").output)["calls"]
    assert [c["call_session_id"] for c in listed] == ["bad-1"]
    letters = json.loads(cli(config_file, "dlq", "list", "--json").output)
    assert [(x["connector"], x["call_session_id"], x["status"]) for x in letters] == [("fwd", "bad-1", 422)]

    # The receiver is fixed; replay the dead letter.
    assert "1 dead letter(s) re-enqueued" in cli(config_file, "dlq", "replay", "--all").output
    wait_for(lambda: show(config_file, "bad-1")["status"] == "delivered", timeout=15)
    wait_for(lambda: json.loads(cli(config_file, "dlq", "list", "--json").output) == [], timeout=15)
    assert len(sink.received) == 1  # the 422 never reached `received`; the replay did


def test_replay_redelivers_a_stored_call_to_one_connector(config_file, bridge, sink):
    post(bridge, "again")
    wait_for(lambda: show(config_file, "again")["status"] == "delivered", timeout=15)
    assert post(bridge, "again")["status"] == "duplicate"
    result = cli(config_file, "replay", "again", "--connector", "fwd")
    assert "re-enqueued again for fwd" in result.output
    wait_for(lambda: len(sink.received) == 2, timeout=15)
    history = wait_for(lambda: len(h := show(config_file, "again")["history"]) >= 5 and h, timeout=15)
    assert [e["type"] for e in history].count("replay") == 1


def test_replay_of_an_unknown_call_says_so(config_file, bridge):
    result = CliRunner().invoke(main, ["--config", str(config_file), "replay", "nope"])
    assert result.exit_code == 1
    assert "call nope is not in the log" in result.output


def test_dlq_purge_removes_letters(config_file, bridge, sink):
    sink.faults.add(Fault(status=400), times=1)
    post(bridge, "purge-me")
    wait_for(lambda: show(config_file, "purge-me")["status"] == "dead", timeout=15)
    assert "1 dead letter(s) purged" in cli(config_file, "dlq", "purge", "--connector", "fwd", "purge-me").output
    wait_for(lambda: json.loads(cli(config_file, "dlq", "list", "--json").output) == [], timeout=15)
    report = show(config_file, "purge-me")
    assert {c["connector"]: c["status"] for c in report["connectors"]}["fwd"] == "purged"
    assert "purged" in [e["type"] for e in report["history"]]


def test_backfill_pushes_lines_through_the_normal_path_and_reports_bad_lines(config_file, bridge, tmp_path, sink):
    post(bridge, "bf-0")
    lines = [
        payload_bytes(call_session_id="bf-1").decode(),
        payload_bytes(call_session_id="bf-0").decode(),  # already accepted: duplicate
        "{not json",
        json.dumps({"event": "call.completed", "org_id": ORG_ID, "data": {"call_session_id": "x", "attempt": "1"}}),
        "",
        json.dumps({"event": "call.started", "org_id": ORG_ID, "data": {}}),
        payload_bytes(call_session_id="bf-2").decode(),
    ]
    source = tmp_path / "history.jsonl"
    source.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(main, ["--config", str(config_file), "backfill", str(source)])
    assert result.exit_code == 0, result.output
    assert "6 line(s): 2 accepted, 1 duplicate, 1 ignored, 2 invalid" in result.output
    assert f"{source}:3: body is not valid JSON" in result.output
    assert f"{source}:4: Expected `int | null`, got `str` at $.data.attempt" in result.output
    wait_for(
        lambda: {json.loads(r.body)["data"]["call_session_id"] for r in sink.received} == {"bf-0", "bf-1", "bf-2"},
        timeout=15,
    )

    forced = CliRunner().invoke(main, ["--config", str(config_file), "backfill", "--force", str(source)])
    assert "3 accepted, 0 duplicate" in forced.output


def test_the_admin_api_needs_its_token_and_answers_json(config_file, bridge, redis_url):
    post(bridge, "adm-1")
    wait_for(lambda: show(config_file, "adm-1")["status"] == "delivered", timeout=15)
    assert httpx.get(f"{bridge}/admin/calls/adm-1").status_code == 401
    assert httpx.get(f"{bridge}/admin/calls/adm-1", headers={"authorization": "Bearer nope"}).status_code == 401
    auth = {"authorization": "Bearer adm1n-t0ken"}
    report = httpx.get(f"{bridge}/admin/calls/adm-1", headers=auth).json()
    assert report["status"] == "delivered" and report["history"]
    listed = httpx.get(f"{bridge}/admin/calls", params={"status": "delivered", "since": "1h"}, headers=auth).json()
    assert [c["call_session_id"] for c in listed["calls"]] == ["adm-1"]
    assert httpx.get(f"{bridge}/admin/calls", params={"status": "nope"}, headers=auth).status_code == 400
    assert httpx.get(f"{bridge}/admin/calls/missing", headers=auth).status_code == 404


def test_the_admin_api_is_off_without_a_token(tmp_path, redis_url):
    settings = make_settings(tmp_path, connectors={"out": {"type": "jsonl", "path": str(tmp_path / "o.jsonl")}})
    with running_api(settings, redis_url) as base:
        response = httpx.get(f"{base}/admin/calls", headers={"authorization": "Bearer x"})
    assert response.status_code == 404
    assert "disabled" in response.json()["error"]


def test_human_output_keeps_square_brackets_from_crm_errors(config_file, bridge, sink):
    sink.faults.add(Fault(status=400, body=b'[{"errorCode":"INVALID_FIELD","message":"No such column [X]"}]'), times=1)
    post(bridge, "brackets")
    states = {"fwd": "dead", "out": "delivered"}
    wait_for(
        lambda: {c["connector"]: c["status"] for c in show(config_file, "brackets")["connectors"]} == states, timeout=15
    )
    text = cli(config_file, "calls", "show", "brackets").output
    assert "No such column [X]" in text
    assert "[mapping jsonl_record.yaml@" in " ".join(text.split())  # (a long cell may be wrapped)
    assert "[X]" in cli(config_file, "dlq", "list").output


def test_a_report_taken_while_the_log_writer_commits_is_one_snapshot(tmp_path, redis_client, log_url):
    """The report reads the call, then its deliveries: a batch committed in between must not mix into it."""
    import sqlalchemy as sa

    from bridge.calls import CallLog
    from bridge.db.engine import build_engine, database_url
    from bridge.ingest import Ingestor
    from bridge.keys import Keys
    from tests.conftest import call_store, drain_log

    settings = make_settings(tmp_path, database={"url": log_url})
    keys = Keys(settings.redis.prefix)
    ingestor = Ingestor(redis_client, keys, dedupe_ttl_seconds=3600, retention_seconds=3600)
    received = {"type": "received", "connectors": ["fwd"]}
    assert ingestor.accept_sync("race-1", payload_bytes(call_session_id="race-1"), ("fwd",), received).accepted
    drain_log(settings, redis_client)
    event = {"type": "attempt", "connector": "fwd", "attempt": 3, "outcome": "dead", "error": "HTTP 422: no agent"}
    call_store(redis_client, settings).append("race-1", event)

    engine = build_engine(database_url(log_url, tmp_path))
    reads = []

    def between_reads(conn, cursor, statement, *args):
        if not statement.lstrip().upper().startswith("SELECT"):
            return
        reads.append(statement)
        if len(reads) == 1:  # the call's row has been read: now the writer commits the dead letter
            drain_log(settings, redis_client)

    sa.event.listen(engine, "after_cursor_execute", between_reads)
    try:
        report = CallLog(engine).report("race-1")
    finally:
        engine.dispose()
    assert len(reads) > 1
    (fwd,) = report.connectors
    assert (report.status, fwd.status, fwd.last_error) == ("pending", "pending", "")  # all before the commit
    later = build_engine(database_url(log_url, tmp_path))
    try:
        assert CallLog(later).report("race-1").status == "dead"  # and the commit did happen
    finally:
        later.dispose()
