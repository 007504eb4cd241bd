"""Deep links into each CRM for the records a delivery wrote (what the call log and console link to)."""

from __future__ import annotations

import pytest

from bridge.connector import Services
from bridge.mapping import MappingLoader
from bridge.registry import build_connectors
from bridge.settings import load_settings
from tests.conftest import ROOT

ENV = {
    "DYNAMICS_TENANT_ID": "00000000-0000-0000-0000-000000000001",
    "DYNAMICS_CLIENT_ID": "00000000-0000-0000-0000-000000000002",
    "DYNAMICS_CLIENT_SECRET": "s3cret-value",
    "ZENDESK_API_TOKEN": "zendesk-token",
    "PIPEDRIVE_API_TOKEN": "pipedrive-token",
}


@pytest.fixture(scope="module")
def connectors():
    settings = load_settings(ROOT / "config.example.yaml", env=ENV)
    loader = MappingLoader(settings.resolve(settings.mappings_dir))
    return build_connectors(settings, Services.offline(settings), loader, names=["dynamics", "zendesk", "pipedrive"])


@pytest.mark.parametrize(
    ("name", "kind", "record_id", "expected"),
    [
        ("dynamics", "phonecall", "5d2f", "https://your-org.crm.dynamics.com/main.aspx?pagetype=entityrecord&etn=phonecall&id=5d2f"),
        ("dynamics", "follow_up", "77aa", "https://your-org.crm.dynamics.com/main.aspx?pagetype=entityrecord&etn=task&id=77aa"),
        ("zendesk", "ticket", "123", "https://your-subdomain.zendesk.com/agent/tickets/123"),
        ("pipedrive", "person", "42", None),  # the example's base_url is the shared API host: no web page there
    ],
)  # fmt: skip
def test_each_crm_links_the_records_it_wrote(connectors, name, kind, record_id, expected):
    assert connectors[name].record_url(kind, record_id) == expected


def test_a_kind_a_connector_cannot_link_gets_no_link(connectors):
    assert connectors["dynamics"].record_url("something_else", "1") is None
    assert connectors["zendesk"].record_url("ticket", "not-a-number") is None
