"""Validation errors name the key as written in the file, fill in dict keys, and list the choices."""

from pathlib import Path

import pytest

from bridge.errors import ConfigError, MappingError
from bridge.mapping import compile_mapping
from bridge.registry import validate_connector
from bridge.settings import load_settings
from bridge.templating import make_environment

CONFIG = "agni: {org_ids: [org-1]}\nconnectors:\n  out: {type: jsonl}\n"


def mapping_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(MappingError) as err:
        compile_mapping(path, make_environment())
    return str(err.value).removeprefix(f"{path}: ")


def test_a_wrong_choice_in_the_config_lists_the_right_ones(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG + "redis: {embedded_fsync: sometimes}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert str(err.value) == (
        f"{path}: redis.embedded_fsync: Invalid enum value 'sometimes' (expected one of: always, everysec)"
    )


def test_a_mapping_field_is_named_by_its_crm_field_not_by_dots(tmp_path):
    text = "fields:\n  Subject: ok\n  Priority: {value: High, type: text}\n"
    assert mapping_error(tmp_path, text) == (
        "fields.Priority.type: Invalid enum value 'text' (expected one of: str, int, float, bool, date, datetime)"
    )


def test_a_field_name_with_spaces_is_quoted(tmp_path):
    text = "fields:\n  Subject: ok\n  Next Step: {value: x, template: y}\n"
    assert mapping_error(tmp_path, text) == (
        "fields['Next Step'].template: unknown key (check the spelling against the mappings/ that ship with the bridge)"
    )


def test_a_follow_up_field_is_located_too(tmp_path):
    text = "fields: {Subject: ok}\nfollow_up:\n  enabled: true\n  fields: {Subject: ok, ActivityDate: {type: day}}\n"
    assert mapping_error(tmp_path, text).startswith("follow_up.fields.ActivityDate.type: Invalid enum value 'day'")


def test_a_wrong_choice_in_a_connectors_settings_lists_the_right_ones(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "agni: {org_ids: [org-1]}\nconnectors:\n"
        "  sf: {type: salesforce, instance_url: 'https://x.my.salesforce.com', match: {on_missing: create}}\n"
    )
    settings = load_settings(path, env={})
    with pytest.raises(ConfigError) as err:
        validate_connector(settings, "sf")
    assert str(err.value) == (
        f"{path}: connectors.sf.match.on_missing: Invalid enum value 'create' "
        "(expected one of: unlinked, create_lead, skip)"
    )
