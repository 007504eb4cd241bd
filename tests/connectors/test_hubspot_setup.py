"""HubSpot connector: `setup` (the call-id property), offline `check`, `preview`, and its registration."""

from __future__ import annotations

import msgspec
import pytest

from bridge.errors import PermanentError
from bridge.registry import connector_class
from connectors.hubspot import HubSpotConnector
from tests.conftest import make_delivery
from tests.connectors.hubspot_support import CALL_ID_PROPERTY, analysis, make_connector, running_fake


def test_setup_creates_the_call_id_property_on_calls_and_tasks_once(redis_client):
    with running_fake(define_call_id=False) as fake:
        connector = make_connector(fake, None)

        first = connector.setup()
        second = connector.setup()

        for object_type in ("calls", "tasks"):
            definition = fake.property_definitions[object_type][CALL_ID_PROPERTY]
            assert definition["type"] == "string"
            assert definition["hasUniqueValue"] is False
        assert fake.requests["POST /crm/v3/properties/calls"] == 1
        assert fake.requests["POST /crm/v3/properties/tasks"] == 1
    assert first == [
        f"calls: created property {CALL_ID_PROPERTY} (group callinformation)",
        f"tasks: created property {CALL_ID_PROPERTY} (group taskinformation)",
    ]
    assert second == [
        f"calls: property {CALL_ID_PROPERTY} already exists",
        f"tasks: property {CALL_ID_PROPERTY} already exists",
    ]


def test_setup_puts_the_property_in_the_group_of_hubspots_own_call_title(redis_client):
    with running_fake(define_call_id=False) as fake:
        fake.property_definitions["calls"]["hs_call_title"]["groupName"] = "call_info"
        make_connector(fake, None).setup()
        assert fake.property_definitions["calls"][CALL_ID_PROPERTY]["groupName"] == "call_info"


def test_delivering_before_setup_fails_with_hubspots_message_and_the_command_that_fixes_it(redis_client):
    with running_fake(define_call_id=False) as fake:
        connector = make_connector(fake, redis_client)
        with pytest.raises(PermanentError) as caught:
            connector.deliver(make_delivery(connector))
    assert caught.value.status == 400
    assert f'Property \\"{CALL_ID_PROPERTY}\\" does not exist' in caught.value.message
    assert "`agni-bridge setup --connector hs`" in caught.value.message
    assert caught.value.details["correlationId"]


def test_deliveries_work_right_after_setup(redis_client):
    with running_fake(define_call_id=False) as fake:
        connector = make_connector(fake, redis_client)
        connector.setup()
        connector.deliver(make_delivery(connector))
        assert fake.count("calls") == 1


def test_a_valid_configuration_passes_check():
    connector = make_connector(None, None, owner_map={"Support Agent": 7001}, default_owner_id="7002")
    assert connector.check() == []


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"access_token": ""}, "connectors.hs.access_token: required when the connector is enabled"),
        ({"base_url": "http://api.hubapi.com"}, "connectors.hs.base_url: must use https"),
        ({"base_url": "ftp://api.hubapi.com"}, "connectors.hs.base_url: must be an https:// URL"),
        ({"base_url": "https://api.hubapi.com/crm/v3"}, "connectors.hs.base_url: give only scheme and host"),
        ({"objects_path": "crm/v3"}, "connectors.hs.objects_path: must start with /"),
        ({"owner_map": {"Support Agent": "jane@example.com"}}, "connectors.hs.owner_map.Support Agent: owner ids"),
        ({"default_owner_id": "jane"}, "connectors.hs.default_owner_id: owner ids are numeric"),
        ({"daily_reset_timezone": "Mars/Olympus"}, "connectors.hs.daily_reset_timezone: unknown time zone"),
        ({"match": {"default_region": "XX"}}, "connectors.hs.match.default_region: unknown region"),
        ({"call_id_property": "Agni Call"}, "connectors.hs.call_id_property: HubSpot property names"),
        ({"access_token": "pat-na1-abc\nX-Evil: 1"}, "connectors.hs.access_token: contains spaces, line breaks"),
    ],
)
def test_check_reports_settings_that_cannot_work(options, problem):
    connector = make_connector(None, None, **options)
    problems = connector.check()
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_plain_http_is_accepted_for_a_local_base_url():
    assert make_connector(None, None, base_url="http://127.0.0.1:8089").check() == []


def test_a_disabled_connector_needs_no_token():
    assert make_connector(None, None, enabled=False, access_token="").check() == []


def test_unknown_keys_are_rejected_when_the_config_is_validated():
    with pytest.raises(msgspec.ValidationError, match="requests_per_10"):
        HubSpotConnector.validate("hs", {"type": "hubspot", "requests_per_10": 100})


def test_preview_shows_the_call_and_task_bodies_without_any_network():
    # No fake and no Redis: the base URL is unreachable, and preview must not try it.
    connector = make_connector(None, None, base_url="https://unreachable.invalid", owner_map={"Support Agent": 7001})
    delivery = make_delivery(connector, post_call_analysis=analysis(goals_met=False))

    previews = connector.preview(delivery)

    call, task = previews
    assert call.target == "POST https://unreachable.invalid/crm/v3/objects/calls"
    assert call.body["properties"]["hs_call_status"] == "COMPLETED"
    assert call.body["properties"][CALL_ID_PROPERTY] == delivery.call_session_id
    assert call.body["properties"]["hubspot_owner_id"] == "7001"
    assert call.body["associations"] == [
        {
            "to": {"id": "<matched contact>"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}],
        }
    ]
    assert call.headers["authorization"] == "Bearer <access_token>"
    assert task.target == "POST https://unreachable.invalid/crm/v3/objects/tasks"
    assert task.body["properties"]["hs_task_status"] == "NOT_STARTED"
    assert task.body["associations"][0]["types"][0]["associationTypeId"] == 204


def test_preview_has_no_task_when_no_follow_up_applies_and_shows_the_contact_it_would_create():
    connector = make_connector(None, None, match={"on_missing": "create_contact"})
    previews = connector.preview(make_delivery(connector))
    assert [p.target for p in previews] == [
        "POST https://api.hubapi.com/crm/v3/objects/calls",
        "POST https://api.hubapi.com/crm/v3/objects/contacts (only when no contact matches)",
    ]
    assert previews[1].body["properties"] == {
        "firstname": "John",
        "lastname": "Doe",
        "email": "john@example.com",
        "phone": "+14155550100",
        "lifecyclestage": "lead",
    }


def test_the_hubspot_type_is_registered_through_the_entry_point():
    assert connector_class("hubspot") is HubSpotConnector
