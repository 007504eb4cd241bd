"""What `agni-bridge check`, `preview` and `setup` get from the Salesforce connector.

check and preview must work without any network (no token, no describe); setup reads the org's
describe and reports, without creating metadata.
"""

from __future__ import annotations

import pytest

from bridge.errors import ConfigError
from bridge.registry import validate_connector
from tests.conftest import make_settings
from tests.fakes.tls import make_rsa_keypair

pytest_plugins = ("tests.connectors.salesforce_support",)  # fixtures: pki, org, salesforce, recordings

EXT = "Agni_Call_Session_Id__c"
USER_ID = "005Hn00000001AbIAA"


def test_check_accepts_a_complete_jwt_configuration_without_touching_the_network(salesforce, org, tmp_path):
    key, _ = make_rsa_keypair(tmp_path / "jwt")
    auth = {"method": "jwt", "login_url": org.url, "client_id": "k", "username": "u@x", "private_key_file": str(key)}
    connector = salesforce.connector(
        auth=auth, owner_map={"Support Agent": USER_ID}, default_owner_id="00GHn0000001AbC"
    )

    assert connector.check() == []
    assert org.request_log == []


def test_check_names_every_missing_or_malformed_setting(salesforce, tmp_path):
    bad_key = tmp_path / "not-a-key.pem"
    bad_key.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    jwt = salesforce.connector(
        auth={"method": "jwt", "private_key_file": str(bad_key)},
        owner_map={"Support Agent": "0031234567890AB"},
        default_owner_id="005short",
        ca_bundle=str(tmp_path / "missing-ca.pem"),
        match={"default_region": "XX"},
    )
    problems = jwt.check()

    assert "connectors.sf.auth.client_id: required for auth.method jwt" in problems
    assert "connectors.sf.auth.username: required for auth.method jwt" in problems
    assert "connectors.sf.auth.private_key_file: not an unencrypted PEM private key" in problems
    assert any(p.startswith("connectors.sf.owner_map.Support Agent: '0031234567890AB' is not a User") for p in problems)
    assert any(p.startswith("connectors.sf.default_owner_id: '005short'") for p in problems)
    assert any(p.startswith("connectors.sf.ca_bundle: file") for p in problems)
    assert "connectors.sf.match.default_region: 'XX' is not a region code" in problems
    assert "nope" not in "\n".join(problems)  # key material is never echoed

    cc = salesforce.connector(auth={"method": "client_credentials", "client_id": "k", "client_secret": "s"})
    assert cc.check() == [
        "connectors.sf.auth.login_url: client_credentials needs your My Domain URL "
        "(https://<domain>.my.salesforce.com); login/test.salesforce.com refuse this grant"
    ]
    session = salesforce.connector(auth={"method": "session", "session_id": "x"}, instance_url=None)
    assert session.check() == [
        "connectors.sf.instance_url: required for auth.method session (there is no token response)"
    ]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"instance_url": "http://acme.my.salesforce.com"}, "connectors.sf.instance_url"),
        ({"auth": {"method": "password", "login_url": "http://login.example.com"}}, "connectors.sf.auth.login_url"),
        ({"auth": {"method": "oauth"}}, "connectors.sf.auth.method"),
        ({"match": {"on_missing": "create_contact"}}, "connectors.sf.match.on_missing"),
        ({"recording": {"mode": "attach", "max_bytes": 50_000_000}}, "connectors.sf.recording.max_bytes"),
        ({"extrenal_id_field": "X__c"}, "connectors.sf.extrenal_id_field"),
    ],
)
def test_invalid_settings_are_config_errors_naming_the_key(salesforce, overrides, key):
    settings = salesforce.settings(**overrides)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_connector(settings, "sf")


def test_preview_shows_the_task_follow_up_lead_and_attachment_it_would_write_without_any_network(
    salesforce, org, tmp_path
):
    connector = salesforce.connector(
        match={"on_missing": "create_lead"}, recording={"mode": "attach"}, owner_map={"Support Agent": USER_ID}
    )
    call = {"goals_met": False, "next_steps": "Send pricing", "disposition": "callback_requested"}
    delivery = salesforce.delivery(connector, post_call_analysis=call, summary="s" * 40000)

    previews = connector.preview(delivery)

    assert org.request_log == []  # no token, no describe, no lookup
    base = f"{org.url}/services/data/v62.0/sobjects"
    task, follow_up, lead, version = previews
    assert task.target == f"PATCH {base}/Task/{EXT}/019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d"
    assert task.body["WhoId"] == "<matched Contact/Lead>" and task.body["OwnerId"] == USER_ID
    assert task.body["CallDisposition"] == "Callback requested" and task.body["TaskSubtype"] == "Call"
    assert len(task.body["Description"]) == 32000 and task.body["Description"].endswith("…(truncated)")
    assert follow_up.target.endswith(f"/Task/{EXT}/019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d%3Afollow_up")
    assert follow_up.body["Status"] == "Not Started" and follow_up.body["ActivityDate"] == "2026-03-26"
    assert lead.target.startswith(f"POST {base}/Lead/") and lead.body["LastName"] == "Doe"
    assert version.body["FirstPublishLocationId"] == "<the Task>"


def test_setup_confirms_the_external_id_field_and_flags_mapping_fields_the_org_lacks(salesforce, org):
    mapping = salesforce.mapping_file("typo.yaml", 'fields:\n  Subject: "Call"\n  Sentimnet__c: "x"\n')

    lines = salesforce.connector(mapping=mapping).setup()

    assert lines[0] == f"✓ Task.{EXT} is an External ID + Unique field: Tasks are upserted by it"
    assert "✗ mapping typo.yaml: Task has no field Sentimnet__c (deliveries would dead-letter)" in lines
    assert org.count("Task") == 0  # setup only reads


def test_setup_explains_how_to_create_a_missing_or_non_unique_external_id_field(salesforce, org):
    org.schema("Task").field(EXT).unique = False
    [line, *_] = salesforce.connector().setup()
    assert line.startswith(f"✗ Task.{EXT} exists but is not External ID + Unique")

    [line, *_] = salesforce.connector(external_id_field="Call_Id__c").setup()
    assert line.startswith("✗ Task.Call_Id__c does not exist. Create it once")
    assert "'Unique' and 'External ID' checked" in line


def test_the_connector_module_imports_nothing_heavy_and_creates_nothing(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, connectors.salesforce\n"
        "heavy = [m for m in ('simple_salesforce', 'requests', 'jwt') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    settings = make_settings(tmp_path, connectors={"sf": {"type": "salesforce", "auth": {"method": "session"}}})
    assert validate_connector(settings, "sf")[1].external_id_field == EXT
