"""Pipedrive connector: offline `check`, `preview` (every request, no network), `setup` against the fake, and
its registration."""

from __future__ import annotations

import msgspec
import pytest

from bridge.checks import run_checks
from bridge.errors import ConfigError, PermanentError
from bridge.registry import connector_class
from bridge.settings import load_settings
from connectors.pipedrive import PipedriveConnector
from tests.conftest import ORG_ID, make_delivery
from tests.connectors.pipedrive_support import MAPPINGS, SESSION, make_connector, pending, running_fake
from tests.fakes.pipedrive import TOKEN

pytest_plugins = ("tests.fakes.pipedrive_fixtures",)  # fixtures: fake

OAUTH = {"oauth_token": "t", "refresh_token": "r", "client_id": "c", "client_secret": "s"}


def test_a_valid_configuration_passes_check_without_any_network():
    connector = make_connector(None, None, owner_map={"Support Agent": 7001, "Ann": "ann@example.com"},
                               default_owner_id="7002", associate={"organization": True, "deal": True})  # fmt: skip
    assert connector.check() == []
    oauth = make_connector(None, None, auth=OAUTH, api_domain="https://acme.pipedrive.com")
    assert oauth.check() == []


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"auth": {}}, "connectors.pd.auth.api_token: required when the connector is enabled"),
        ({"auth": {"api_token": "a", "oauth_token": "b"}}, "connectors.pd.auth: give api_token or oauth_token"),
        ({"auth": {"oauth_token": "t", "refresh_token": "r", "client_id": "c"}},
         "connectors.pd.auth: refreshing an OAuth token needs refresh_token, client_id and client_secret "
         "(missing: client_secret)"),
        ({"auth": {"api_token": "abc\nX-Evil: 1"}}, "connectors.pd.auth.api_token: contains spaces, line breaks"),
        ({"auth": {**OAUTH, "token_url": "http://oauth.example.com/token"}}, "connectors.pd.auth.token_url: must use"),
        ({"base_url": "http://acme.pipedrive.com"}, "connectors.pd.base_url: must use https"),
        ({"base_url": "ftp://acme.pipedrive.com"}, "connectors.pd.base_url: must be an https:// URL"),
        ({"base_url": "https://acme.pipedrive.com/v1"}, "connectors.pd.base_url: give only scheme and host"),
        ({"api_domain": "https://acme.pipedrive.com"}, "connectors.pd.api_domain: only for OAuth"),
        ({"owner_map": {"Support Agent": "ann"}}, "connectors.pd.owner_map.Support Agent: a Pipedrive user id"),
        ({"owner_map": {"Support Agent": 0}}, "connectors.pd.owner_map.Support Agent: a Pipedrive user id"),
        ({"default_owner_id": "ann@example.com"}, "connectors.pd.default_owner_id: user ids are numeric"),
        ({"match": {"default_region": "XX"}}, "connectors.pd.match.default_region: unknown region"),
        ({"daily_reset_timezone": "Mars/Olympus"}, "connectors.pd.daily_reset_timezone: unknown time zone"),
        ({"record": "activity", "recording": {"mode": "attach"}}, "connectors.pd.recording.mode: attach uploads"),
        ({"recording": {"mode": "attach", "recording_hosts": []}}, "connectors.pd.recording.recording_hosts:"),
        ({"ca_bundle": "/no/such/ca.pem"}, "connectors.pd.ca_bundle:"),
    ],
)
def test_check_reports_each_setting_that_cannot_work(options, problem):
    mapping = "pipedrive_activity.yaml" if options.get("record") == "activity" else None
    problems = make_connector(None, None, mapping=mapping, **options).check()
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem)


def test_check_says_when_the_mapping_was_written_for_the_other_record_type():
    activity_with_call_mapping = make_connector(None, None, record="activity", mapping="pipedrive_call.yaml")
    [problem] = activity_with_call_mapping.check()
    assert problem.startswith("connectors.pd.mapping: ")
    assert "pipedrive_call.yaml has call_log fields (end_time, from_phone_number, outcome, start_time, " in problem
    assert problem.endswith("record is activity; use a mapping written for activity, such as pipedrive_activity.yaml")
    # And a delivery refuses it too, before any request.
    with pytest.raises(PermanentError, match="has call_log fields"):
        activity_with_call_mapping.deliver(make_delivery(activity_with_call_mapping))


def test_check_says_pipedrive_needs_a_mapping():
    connector = make_connector(None, None)
    connector.mapping = None  # `mapping: null` in the config
    assert connector.check() == [
        "connectors.pd.mapping: Pipedrive needs a mapping (pipedrive_call.yaml, or pipedrive_activity.yaml for "
        "record: activity); null gives it no fields"
    ]


def test_plain_http_is_accepted_for_a_local_base_url_and_a_disabled_connector_needs_no_token():
    assert make_connector(None, None, base_url="http://127.0.0.1:8089").check() == []
    assert make_connector(None, None, enabled=False, auth={}).check() == []


def test_unknown_keys_are_rejected_when_the_config_is_validated():
    with pytest.raises(msgspec.ValidationError, match="requests_per_2"):
        PipedriveConnector.validate("pd", {"type": "pipedrive", "requests_per_2": 10})
    with pytest.raises(msgspec.ValidationError, match="record"):
        PipedriveConnector.validate("pd", {"type": "pipedrive", "record": "note"})


def test_credentials_must_come_from_the_environment(tmp_path):
    path = tmp_path / "config.yaml"
    body = f"agni: {{org_ids: ['{ORG_ID}']}}\nconnectors:\n  pd: {{type: pipedrive, auth: {{api_token: {{}}}}}}\n"
    path.write_text(body.replace("{}", "literal-secret"))
    with pytest.raises(ConfigError, match=r"connectors\.pd\.auth\.api_token: secrets must come from the environment"):
        load_settings(path, env={})
    path.write_text(body.replace("{}", "'${PIPEDRIVE_API_TOKEN}'"))
    settings = load_settings(path, env={"PIPEDRIVE_API_TOKEN": "from-env"})
    assert settings.connectors["pd"]["auth"]["api_token"] == "from-env"


def test_agni_bridge_check_runs_the_connectors_checks(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        f"agni: {{org_ids: ['{ORG_ID}']}}\nmappings_dir: {MAPPINGS}\nconnectors:\n"
        "  pd: {type: pipedrive, record: activity, auth: {api_token: '${PD_TOKEN:-}'}}\n"
    )
    problems, report = run_checks(path)
    assert any("connectors.pd.auth.api_token: required" in p for p in problems)
    assert any("connectors.pd.mapping: " in p and "pipedrive_call.yaml has call_log fields" in p for p in problems)
    assert f"connector pd: type pipedrive, enabled, mapping {MAPPINGS / 'pipedrive_call.yaml'}" in report


def test_preview_shows_every_request_with_placeholders_and_no_secret():
    connector = make_connector(
        None, None, owner_map={"Support Agent": "agent@example.com"}, associate={"organization": True, "deal": True},
        match={"on_missing": "create_person"}, recording={"mode": "attach"},
    )  # fmt: skip
    delivery = make_delivery(connector, post_call_analysis=pending())

    previews = connector.preview(delivery)

    base = "https://acme.pipedrive.com"
    assert [p.target.split(" (")[0] for p in previews] == [
        f"GET {base}/api/v2/persons/search?term=john%40example.com&fields=email&exact_match=true&limit=100",
        f"GET {base}/api/v2/persons/search?term=%2B14155550100&fields=phone&exact_match=true&limit=100",
        f"GET {base}/api/v2/persons/search?term=4155550100&fields=phone&exact_match=false&limit=100",
        f"GET {base}/v1/users/find?term=agent%40example.com&search_by_email=1",
        f"GET {base}/api/v2/deals?person_id=%3Cmatched+person%3E&status=open&sort_by=add_time&sort_direction=desc"
        "&limit=1",
        f"POST {base}/api/v2/persons",
        f"POST {base}/v1/callLogs",
        f"POST {base}/api/v2/activities",
        f"POST {base}/v1/callLogs/<new call log id>/recordings",
    ]
    call, task = previews[6].body, previews[7].body
    assert call["outcome"] == "connected"
    assert call["start_time"] == "2026-03-24 18:30:00"
    assert call["duration"] == "125"
    assert (call["person_id"], call["org_id"]) == ("<matched person>", "<the person's organization>")
    assert call["deal_id"] == "<the person's newest open deal>"
    assert call["user_id"] == "<user by email agent@example.com>"
    assert call["note"].endswith(f"<p>agni:{SESSION}</p>")
    assert task["done"] is False and task["due_date"] == "2026-03-26"
    assert task["participants"] == [{"person_id": "<matched person>", "primary": True}]
    assert previews[5].body["emails"] == [{"value": "john@example.com", "primary": True, "label": "work"}]
    for preview in previews:
        assert TOKEN not in str(preview.headers)
    assert previews[6].headers == {"x-api-token": "<api_token>", "content-type": "application/json"}


def test_preview_of_an_activity_with_an_oauth_token():
    connector = make_connector(None, None, record="activity", auth=OAUTH)
    [*_, call] = connector.preview(make_delivery(connector))
    assert call.target == "POST https://acme.pipedrive.com/api/v2/activities"
    assert call.headers["authorization"] == "Bearer <oauth_token>"
    assert (call.body["due_date"], call.body["due_time"], call.body["duration"]) == ("2026-03-24", "18:30", "00:03")


def test_setup_reports_the_token_user_its_rights_the_owners_and_the_activity_types(fake):
    ann = fake.add_user("Ann", "ann@example.com")
    bob = fake.add_user("Bob", "bob@example.com", active=False)
    connector = make_connector(fake, None, owner_map={"Ann": ann, "Bob": bob, "Cid": "cid@example.com",
                                                      "Dee": "ann@example.com"}, default_owner_id=999)  # fmt: skip

    lines = connector.setup()

    assert lines == [
        f"token user: Integration User (id {fake.me}) on company fakeco",
        "the token's user may log calls for other users (account settings access)",
        f"owner_map.Ann: user {ann} (Ann)",
        f"WARNING: owner_map.Bob: user {bob} (Bob) is not active",
        "WARNING: owner_map.Cid: no active Pipedrive user has the email cid@example.com",
        f"owner_map.Dee: user {ann} (Ann)",
        "WARNING: default_owner_id: Pipedrive has no user 999",
        "WARNING: calls owned by other users are call logs the token's user cannot list: after a lost answer such "
        "a call may be logged twice (record: activity has no such gap)",
        "activity type 'call' (the follow-up) exists",
    ]


def test_setup_warns_when_the_token_cannot_log_calls_for_the_mapped_owners():
    with running_fake(admin=False) as fake:
        ann = fake.add_user("Ann", "ann@example.com")
        with fake.lock:
            fake.activity_types[0]["active_flag"] = False  # someone deactivated "Call"
        lines = make_connector(fake, None, record="activity", owner_map={"Ann": ann}).setup()
    assert "the token's user has no account settings access: Pipedrive logs its calls for it alone" in lines
    assert f"WARNING: owner_map.Ann: user {ann} is not the token's user, who cannot log calls for others" in lines
    assert "WARNING: activity type 'call' (the call) is missing or inactive in Pipedrive" in lines


def test_setup_with_a_refused_token_fails_with_pipedrives_answer(fake):
    with pytest.raises(PermanentError) as caught:
        make_connector(fake, None, auth={"api_token": "wrong"}).setup()
    assert caught.value.status == 401


def test_the_pipedrive_type_is_registered_through_the_entry_point():
    assert connector_class("pipedrive") is PipedriveConnector
