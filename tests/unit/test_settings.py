"""Loading config.yaml: interpolation, validation, and error messages that name the key."""

from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.settings import load_settings
from tests.conftest import ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


MINIMAL = """
agni:
  org_ids: [org-1]
connectors:
  out: {type: jsonl}
"""


def test_the_example_config_loads():
    settings = load_settings(ROOT / "config.example.yaml", env={})
    assert settings.agni.org_ids == ["1268c1f0-19f3-47db-aefb-c16a7c3ace6e"]
    assert settings.redis.url == ""
    assert settings.enabled_connectors().keys() == {"outbox"}
    assert settings.resolve(settings.data_dir) == ROOT / "var"


def test_defaults_apply_to_a_minimal_config(tmp_path):
    settings = load_settings(write(tmp_path, MINIMAL), env={})
    assert settings.server.port == 8080
    assert settings.server.max_body_bytes == 2 * 1024 * 1024
    assert settings.dedupe_ttl_days == 30
    assert settings.delivery.max_retries >= 30
    assert settings.redis.embedded_fsync == "always"


def test_environment_variables_are_interpolated_with_defaults(tmp_path):
    path = write(
        tmp_path,
        MINIMAL + "redis: {url: '${REDIS_URL}', prefix: '${PREFIX:-bridge1}'}\nserver: {port: '${PORT:-9000}'}\n",
    )
    settings = load_settings(path, env={"REDIS_URL": "redis://r:6379/2"})
    assert settings.redis.url == "redis://r:6379/2"
    assert settings.redis.prefix == "bridge1"
    assert settings.server.port == 9000  # a string from the environment still becomes a port


def test_dollar_dollar_escapes_a_literal_reference(tmp_path):
    settings = load_settings(write(tmp_path, MINIMAL + "data_dir: '$${HOME}/x'\n"), env={"HOME": "/root"})
    assert settings.data_dir == "${HOME}/x"


def test_an_unset_variable_without_default_names_the_key_and_variable(tmp_path):
    path = write(tmp_path, MINIMAL + "redis: {url: '${REDIS_URL}'}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == (
        f"{path}: redis.url: environment variable REDIS_URL is not set (use ${{REDIS_URL:-}} for optional)"
    )


def test_environment_values_cannot_inject_yaml(tmp_path):
    path = write(tmp_path, MINIMAL + "redis: {url: '${REDIS_URL}'}\n")
    settings = load_settings(path, env={"REDIS_URL": "x}\nadmin: {token: evil}"})
    assert settings.redis.url == "x}\nadmin: {token: evil}"
    assert settings.admin.token == ""


def test_a_literal_secret_in_the_file_is_refused(tmp_path):
    path = write(tmp_path, MINIMAL + "agni: {org_ids: [o], token: hunter2}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert "agni.token: secrets must come from the environment" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_unknown_keys_are_rejected_with_their_path(tmp_path):
    path = write(tmp_path, MINIMAL + "server: {prot: 8080}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value).startswith(f"{path}: server.prot: unknown key")


def test_wrong_types_name_the_key(tmp_path):
    path = write(tmp_path, MINIMAL + "server: {port: eighty}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == f"{path}: server.port: Expected `int`, got `str`"


def test_missing_required_keys_are_named(tmp_path):
    path = write(tmp_path, "connectors: {}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == f"{path}: agni: required key is missing"


def test_org_ids_must_not_be_empty(tmp_path):
    path = write(tmp_path, "agni: {org_ids: []}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert "agni.org_ids" in str(info.value)


def test_routes_must_name_configured_connectors(tmp_path):
    path = write(tmp_path, MINIMAL + "routes: [{connectors: [out, crm]}]\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert "routes[0].connectors: unknown connector 'crm' (configured: out)" in str(info.value)


def test_invalid_yaml_names_the_file(tmp_path):
    path = write(tmp_path, "agni: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value).startswith(f"{path}: not valid YAML")


def test_connector_names_are_restricted_to_queue_safe_characters(tmp_path):
    path = write(tmp_path, "agni: {org_ids: [o]}\nconnectors: {'my crm': {type: jsonl}}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert "connectors" in str(info.value)


def test_an_unknown_fsync_policy_is_refused_with_its_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, MINIMAL + "redis: {embedded_fsync: sometimes}\n"), env={})
    assert "redis.embedded_fsync" in str(err.value) and "everysec" in str(err.value)
