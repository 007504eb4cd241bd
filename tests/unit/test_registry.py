"""Connectors are found through entry points, built-in and third-party alike."""

import pytest

from bridge.connector import Connector
from bridge.errors import ConfigError
from bridge.registry import available_types, connector_class, validate_connector
from tests.conftest import make_settings


def test_built_in_connectors_are_registered_as_entry_points():
    types = available_types()
    assert {"jsonl", "webhook_forward"} <= set(types)
    for name in types:
        assert issubclass(connector_class(name), Connector)


def test_an_unknown_type_fails_with_the_list_of_known_types(tmp_path):
    settings = make_settings(tmp_path, connectors={"crm": {"type": "zoho"}})
    with pytest.raises(ConfigError) as info:
        validate_connector(settings, "crm")
    message = str(info.value)
    assert "connectors.crm.type: unknown connector type 'zoho'" in message
    assert "jsonl" in message and "webhook_forward" in message


def test_connector_settings_are_validated_by_the_connector_with_key_paths(tmp_path):
    settings = make_settings(tmp_path, connectors={"fwd": {"type": "webhook_forward", "ulr": "https://x"}})
    with pytest.raises(ConfigError) as info:
        validate_connector(settings, "fwd")
    assert "connectors.fwd.ulr: unknown key" in str(info.value) or "connectors.fwd.url" in str(info.value)


def test_a_required_connector_key_is_named(tmp_path):
    settings = make_settings(tmp_path, connectors={"fwd": {"type": "webhook_forward"}})
    with pytest.raises(ConfigError) as info:
        validate_connector(settings, "fwd")
    assert "connectors.fwd.url: required key is missing" in str(info.value)
