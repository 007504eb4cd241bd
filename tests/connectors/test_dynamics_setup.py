"""Dynamics 365 connector: offline `check`, `preview` of the exact requests, `setup` against the fake, registration."""

from __future__ import annotations

import json

import pytest

from bridge.registry import connector_class
from connectors.dynamics import DynamicsConnector
from connectors.dynamics.odata import phonecall_id
from tests.conftest import ROOT, example_payload

pytest_plugins = ("tests.connectors.dynamics_support",)  # fixtures: fake, dyn, certificate

CALL_ID = example_payload()["data"]["call_session_id"]
USER = "11111111-2222-4333-8444-555555555555"


def test_the_entry_point_names_the_connector():
    assert connector_class("dynamics") is DynamicsConnector


def test_a_valid_configuration_passes_check(dyn, certificate):
    assert dyn.offline(owner_map={"Support Agent": USER}, default_owner_id=USER).check() == []
    with_certificate = {"client_secret": "", "certificate_file": str(certificate.pem_path)}
    assert dyn.offline(auth=with_certificate, instance_url="https://contoso.crm4.dynamics.com:8443/proxy").check() == []
    sovereign = {"token_url": "https://login.microsoftonline.us/{tenant_id}/oauth2/v2.0/token"}
    assert dyn.offline(instance_url="https://contoso.crm9.dynamics.com", auth=sovereign).check() == []


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"instance_url": ""}, "connectors.dyn.instance_url: required"),
        ({"instance_url": "http://contoso.crm.dynamics.com"}, "connectors.dyn.instance_url: must use https"),
        ({"instance_url": "ftp://contoso"}, "connectors.dyn.instance_url: must be an https:// URL"),
        ({"instance_url": "https://contoso.crm.dynamics.com/api/data/v9.2"}, "without /api/data"),
        ({"instance_url": "https://contoso.crm.dynamics.com/?x=1"}, "no query string"),
        ({"auth": {"client_id": "my-app"}}, "connectors.dyn.auth.client_id: required"),
        ({"auth": {"tenant_id": ""}}, "connectors.dyn.auth.tenant_id: required"),
        ({"auth": {"client_secret": ""}}, "connectors.dyn.auth: give exactly one of client_secret"),
        ({"auth": {"certificate_file": "app.pem"}}, "connectors.dyn.auth: give exactly one of client_secret"),
        ({"auth": {"client_secret": "", "certificate_file": "/nope.pem"}}, "auth.certificate_file: /nope.pem: cannot"),
        ({"auth": {"token_url": "http://login.example.com/t"}}, "connectors.dyn.auth.token_url: must use https"),
        ({"auth": {"scope": "https://contoso.crm.dynamics.com"}}, "connectors.dyn.auth.scope: client credentials"),
        ({"auth": {"certificate_password": "x"}}, "connectors.dyn.auth.certificate_password: set, but there is no"),
        ({"owner_map": {"Support Agent": "sam@acme.example"}}, "connectors.dyn.owner_map.Support Agent: 'sam@"),
        ({"default_owner_id": "42"}, "connectors.dyn.default_owner_id: '42' is not a systemuserid"),
        ({"match": {"default_region": "XX"}}, "connectors.dyn.match.default_region: unknown region"),
        ({"match": {"order": ["contact", "contact"]}}, "connectors.dyn.match.order: lists an entry twice"),
        ({"match": {"phone_fields": []}}, "connectors.dyn.match.phone_fields: empty, but match.by includes phone"),
        ({"match": {"email_fields": ["Email Address"]}}, "'Email Address' is not a column name"),
        ({"match": {"on_missing": "create_lead", "order": ["contact"]}}, "create_lead, but order does not search"),
        ({"daily_reset_timezone": "Mars/Olympus"}, "connectors.dyn.daily_reset_timezone: unknown time zone"),
        ({"ca_bundle": "/nope/ca.pem"}, "connectors.dyn.ca_bundle: file /nope/ca.pem does not exist"),
    ],
)
def test_check_names_the_key_and_the_reason(dyn, options, problem):
    problems = dyn.offline(**options).check()
    assert any(problem in line for line in problems), problems


def test_check_refuses_a_certificate_file_without_its_certificate(dyn, tmp_path, certificate):
    key_only = tmp_path / "key.pem"
    key_only.write_bytes(certificate.pem_path.read_bytes().split(b"-----BEGIN CERTIFICATE-----")[0])
    problems = dyn.offline(auth={"client_secret": "", "certificate_file": str(key_only)}).check()
    assert problems == [
        f"connectors.dyn.auth.certificate_file: {key_only}: holds no PEM certificate (the file must "
        "contain the key and the certificate)"
    ]


def test_check_points_at_mapping_fields_the_connector_owns(dyn, tmp_path):
    text = (ROOT / "mappings" / "dynamics_phonecall.yaml").read_text()
    broken = text.replace("\nfields:\n", "\nfields:\n  statecode: 1\n  note.body: x\n  task.subject: y\n", 1)
    path = tmp_path / "broken.yaml"
    path.write_text(broken)
    problems = dyn.offline(mapping=str(path)).check()
    assert f"connectors.dyn.mapping ({path}): fields.statecode: set by the connector; remove it" in problems
    assert any("fields.note.body: unknown; note.* fields are note.notetext, note.subject" in p for p in problems)
    assert any("fields.task.subject: no `task.` fields in this section" in p for p in problems)


def test_preview_shows_the_lookups_and_the_calls_change_set_without_secrets(dyn):
    connector = dyn.offline(owner_map={"Support Agent": USER})
    previews = connector.preview(dyn.delivery(connector))

    targets = [p.target for p in previews]
    base = "https://contoso.crm.dynamics.com/api/data/v9.2"
    assert targets[0].startswith(
        f"GET {base}/contacts?$select=contactid,fullname,modifiedon&$filter=statecode%20eq%200"
    )
    assert "emailaddress1%20eq%20'john@example.com'" in targets[0]
    assert targets[1].startswith(f"GET {base}/leads?")
    assert "telephone1%20eq%20'%2B14155550100'" in targets[2] and "'(415)%20555-0100'" in targets[2]
    batch = previews[-1]
    assert batch.target.startswith(f"POST {base}/$batch")
    assert batch.headers["Content-Type"].startswith("multipart/mixed; boundary=batch_")
    assert batch.headers["Prefer"] == "odata.continue-on-error"
    assert batch.headers["OData-Version"] == batch.headers["OData-MaxVersion"] == "4.0"
    assert (
        batch.headers["Authorization"] == "Bearer <access token from https://login.microsoftonline.com/"
        "7d1c2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b/oauth2/v2.0/token>"
    )
    lines = batch.body
    call = phonecall_id(CALL_ID)
    assert f"PATCH {base}/phonecalls({call}) HTTP/1.1" in lines
    assert lines.count("If-None-Match: *") == 1 and lines.count("If-Match: *") == 1
    created = json.loads(lines[lines.index(f"PATCH {base}/phonecalls({call}) HTTP/1.1") + 4])
    assert created["subject"] == "Agni call with John Doe (Support Agent)"
    assert created["ownerid@odata.bind"] == f"/systemusers({USER})"
    assert created["regardingobjectid_contact_phonecall@odata.bind"] == "/contacts(<the matched contact or lead id>)"
    assert '{"statecode":1,"statuscode":2}' in lines
    shown = json.dumps([p.__dict__ for p in previews])
    assert "fake-client-secret" not in shown and "client_secret" not in shown


def test_preview_without_batching_lists_each_request(dyn):
    connector = dyn.offline(batch_size=1, match={"on_missing": "create_contact"})
    previews = connector.preview(
        dyn.delivery(connector, post_call_analysis={"next_steps": "Call back", "goals_met": False})
    )
    writes = [p for p in previews if p.target.startswith("PATCH")]
    assert [p.target.split("/api/data/v9.2/")[1].split("(")[0] for p in writes] == [
        "contacts",
        "phonecalls",
        "tasks",
        "phonecalls",
    ]
    assert writes[0].target.endswith("(only when nobody matches)")
    assert writes[0].headers["If-None-Match"] == "*"
    assert writes[-1].headers["If-Match"] == "*" and writes[-1].body == {"statecode": 1, "statuscode": 2}


def test_setup_verifies_the_application_user_and_its_privileges_without_writing(dyn, fake):
    owner = fake.add("systemuser", USER, fullname="Sam Agent", isdisabled=False)
    lines = dyn.connector(owner_map={"Support Agent": owner}).setup()

    assert lines[0] == f"✓ token from {fake.token_url} for {fake.url}/.default"
    assert lines[1].startswith(f"✓ WhoAmI: application user {fake.app_user}")
    assert "✓ prvCreateActivity (Global): create phone calls and follow-up tasks" in lines
    assert "✓ prvAssignActivity (Global): create phone calls owned by the agents in owner_map" in lines
    assert "✓ read contacts: allowed" in lines and "✓ read leads: allowed" in lines
    assert lines[-1] == f"✓ owner {owner}: Sam Agent"
    assert not any(line.startswith("✗") for line in lines)
    assert {key.split()[0] for key in fake.requests} == {"GET"}  # read-only


def test_setup_names_a_missing_privilege_and_a_disabled_owner(dyn, fake):
    owner = fake.add("systemuser", USER, fullname="Sam Agent", isdisabled=True)
    fake.privileges -= {"prvCreateActivity", "prvReadLead"}
    lines = dyn.connector(default_owner_id=owner).setup()
    assert any(line.startswith("✗ prvCreateActivity is missing, needed to create phone calls") for line in lines)
    assert any(line.startswith("✗ prvReadLead is missing, needed to find leads") for line in lines)
    assert any(line.startswith("✗ read leads: HTTP 403 0x80040220") for line in lines)
    assert f"✗ owner {owner} (Sam Agent) is disabled: records cannot be assigned to them" in lines


def test_setup_reports_a_wrong_secret_and_stops(dyn, fake):
    lines = dyn.connector(auth={"client_secret": "wrong"}).setup()
    assert len(lines) == 1
    assert lines[0].startswith(f"✗ no token from {fake.token_url}: HTTP 401 AADSTS7000215")
