"""The `agni-bridge` command line run as a user runs it (a subprocess): check, preview, and `--config` anywhere."""

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from bridge.settings import load_settings
from tests.conftest import EXAMPLE, ORG_ID, ROOT, drain_log, enqueue, make_settings, payload_bytes


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_check_passes_on_the_example_config():
    result = cli("--config", "config.example.yaml", "check")
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout


def test_check_names_file_key_and_reason_and_exits_1(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        f"agni: {{org_ids: [o]}}\nmappings_dir: {tmp_path}\n"
        "connectors:\n  fwd: {type: webhook_forward, url: 'https://x', secret: '${FWD_SECRET:-whsec_@@@}'}\n"
        "  out: {type: jsonl, mapping: broken.yaml}\n"
    )
    (tmp_path / "broken.yaml").write_text('fields:\n  Subject: "{{ call.caller_name | nope }}"\n')
    result = cli("--config", str(config), "check")
    assert result.returncode == 1
    assert f"{config}: connectors.fwd.secret: secret must be `whsec_` followed by base64" in result.stderr
    assert "broken.yaml: fields.Subject" in result.stderr
    assert "whsec_@@@" not in result.stderr + result.stdout


def test_check_reports_an_unknown_connector_type_with_known_types(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("agni: {org_ids: [o]}\nconnectors:\n  crm: {type: zoho}\n")
    result = cli("--config", str(config), "check")
    assert result.returncode == 1
    assert "connectors.crm.type: unknown connector type 'zoho'; known types:" in result.stderr


def test_preview_prints_the_records_without_delivering(tmp_path):
    result = cli("--config", "config.example.yaml", "preview", "--payload", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    previews = json.loads(result.stdout)
    assert list(previews) == ["outbox"]
    assert previews["outbox"][0]["body"]["subject"] == "Call with John Doe"


def test_preview_of_a_disabled_forward_shows_the_unchanged_payload():
    result = cli("--config", "config.example.yaml", "preview", "--payload", str(EXAMPLE), "--connector", "forward")
    assert result.returncode == 0, result.stderr
    preview = json.loads(result.stdout)["forward"][0]
    assert preview["target"] == "POST https://example.com/agni-calls"
    assert preview["body"] == json.loads(EXAMPLE.read_text())


def test_check_and_preview_never_print_secrets(tmp_path):
    import os

    secrets = {
        "HS_TOKEN": "pat-na1-super-secret-token-value",
        "FWD_SECRET": "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cy0xMjM=",
        "SF_SECRET": "sf-client-secret-value-42",
        "AGNI_TOKEN": "agni-shared-secret-99",
    }
    config = tmp_path / "config.yaml"
    config.write_text(
        f"agni: {{org_ids: ['1268c1f0-19f3-47db-aefb-c16a7c3ace6e'], token: '${{AGNI_TOKEN}}'}}\n"
        f"mappings_dir: {ROOT / 'mappings'}\n"
        "connectors:\n"
        "  hs: {type: hubspot, access_token: '${HS_TOKEN}'}\n"
        "  fwd: {type: webhook_forward, url: 'https://example.com/in', secret: '${FWD_SECRET}',"
        " headers: {x-api-key: '${HS_TOKEN}'}}\n"
        "  sf: {type: salesforce, auth: {method: client_credentials, login_url: 'https://acme.my.salesforce.com',"
        " client_id: abc, client_secret: '${SF_SECRET}'}}\n"
    )
    env = {**os.environ, **secrets}
    outputs = []
    for args in (["check"], ["preview", "--payload", str(EXAMPLE)]):
        result = subprocess.run(
            [sys.executable, "-m", "bridge", "--config", str(config), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    everything = "\n".join(outputs)
    assert '"hs"' in everything and '"fwd"' in everything and '"sf"' in everything
    for value in secrets.values():
        assert value not in everything
        assert value.removeprefix("whsec_") not in everything


# -- `--config` where people type it ------------------------------------------------------

AGNI_BRIDGE = Path(sys.executable).with_name("agni-bridge")  # the console script of this environment


def agni_bridge(*args, cwd=ROOT, env=None):
    return subprocess.run([str(AGNI_BRIDGE), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


def write_config(folder, extra=""):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(
        f"agni: {{org_ids: ['{ORG_ID}']}}\ndata_dir: {folder / 'var'}\n"
        f"connectors:\n  outbox: {{type: jsonl, path: {folder / 'out.jsonl'}}}\n{extra}"
    )
    return path


def command_paths(group=None, prefix=()):
    """The words that name every command and group of the CLI, the root group as ()."""
    from bridge.cli import main

    group = group or main
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += command_paths(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


def leaf_paths():
    from bridge.cli import main

    def is_group(path):
        command = main
        for word in path:
            command = command.commands[word]
        return isinstance(command, click.Group)

    return [path for path in command_paths() if path and not is_group(path)]


# What a command needs besides --config to get as far as reading its config.
REQUIRED_ARGS = {
    ("preview",): ["--payload", str(EXAMPLE)],
    ("replay",): ["c1"],
    ("backfill",): [str(EXAMPLE)],
    ("calls", "show"): ["c1"],
    ("dlq", "show"): ["c1"],
    ("dlq", "replay"): ["c1"],
    ("dlq", "purge"): ["c1"],
}


def test_check_takes_config_after_the_subcommand(tmp_path):
    config = write_config(tmp_path)
    result = agni_bridge("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert f"config: {config}" in result.stdout


def test_the_config_given_after_the_subcommand_wins_over_the_one_before(tmp_path):
    before = write_config(tmp_path / "a")
    after = write_config(tmp_path / "b")
    result = agni_bridge("--config", str(before), "check", "--config", str(after))
    assert result.returncode == 0, result.stderr
    assert f"config: {after}" in result.stdout
    assert str(before) not in result.stdout


def test_AGNI_BRIDGE_CONFIG_names_the_config_and_an_explicit_option_beats_it(tmp_path):
    from_env = write_config(tmp_path / "etc")
    elsewhere = tmp_path / "cwd"  # no config.yaml here: only the variable can lead to the file
    elsewhere.mkdir()
    env = {**os.environ, "AGNI_BRIDGE_CONFIG": str(from_env)}

    result = agni_bridge("check", cwd=elsewhere, env=env)
    assert result.returncode == 0, result.stderr
    assert f"config: {from_env}" in result.stdout

    explicit = write_config(tmp_path / "explicit")
    for args in (["check", "--config", str(explicit)], ["--config", str(explicit), "check"]):
        result = agni_bridge(*args, cwd=elsewhere, env=env)
        assert result.returncode == 0, result.stderr
        assert f"config: {explicit}" in result.stdout


@pytest.mark.parametrize("path", leaf_paths(), ids=" ".join)
def test_every_command_reads_the_config_given_after_it(tmp_path, path):
    missing = tmp_path / "nowhere" / "bridge.yaml"
    env = {k: v for k, v in os.environ.items() if k not in ("AGNI_BRIDGE_CONFIG", "AGNI_BRIDGE_REDIS_URL")}
    result = agni_bridge(*path, *REQUIRED_ARGS.get(path, []), "--config", str(missing), env=env)
    assert result.returncode != 0
    assert f"{missing}: cannot read config file" in result.stderr


def test_a_group_takes_config_between_its_name_and_its_subcommand(tmp_path):
    missing = tmp_path / "bridge.yaml"
    result = agni_bridge("dlq", "--config", str(missing), "list")
    assert result.returncode == 1
    assert f"{missing}: cannot read config file" in result.stderr


@pytest.mark.parametrize("path", command_paths(), ids=lambda path: " ".join(path) or "agni-bridge")
def test_every_help_shows_the_config_option(path):
    result = agni_bridge(*path, "--help")
    assert result.returncode == 0, result.stderr
    assert "--config FILE" in result.stdout
    assert "AGNI_BRIDGE_CONFIG" in result.stdout


def test_calls_list_reads_the_redis_prefix_of_the_config_after_it(tmp_path, redis_url, redis_client):
    # Given a call stored under the prefix of one config ...
    settings = make_settings(tmp_path, redis={"prefix": "elsewhere"})
    enqueue(redis_client, settings, [("call-under-elsewhere", payload_bytes())], ("outbox",))
    config = write_config(tmp_path / "cfg", "redis: {prefix: elsewhere}\n")
    drain_log(load_settings(config), redis_client)  # into that config's call log (its data_dir)
    other = write_config(tmp_path / "other", "redis: {prefix: other}\n")
    env = {**os.environ, "AGNI_BRIDGE_REDIS_URL": redis_url}
    # ... `calls list` finds it when that config follows the nested command (and beats one before it),
    result = agni_bridge("--config", str(other), "calls", "list", "--json", "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    assert [call["call_session_id"] for call in json.loads(result.stdout)["calls"]] == ["call-under-elsewhere"]
    # ... and the other config sees no call.
    result = agni_bridge("calls", "list", "--json", "--config", str(other), env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["calls"] == []


# -- built-in mappings ------------------------------------------------------------------


def test_check_and_preview_use_the_built_in_mappings_when_there_is_no_mappings_folder(tmp_path):
    config = write_config(
        tmp_path,
        "  sf: {type: salesforce, enabled: false, auth: {method: client_credentials,"
        " login_url: 'https://acme.my.salesforce.com', client_id: abc, client_secret: '${SF_SECRET:-}'}}\n",
    )
    assert not (tmp_path / "mappings").exists()
    result = agni_bridge("check", "--config", str(config), "--payload", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "connector outbox: type jsonl, enabled, mapping jsonl_record.yaml (built-in)" in result.stdout
    assert "mapping salesforce_task.yaml (built-in)" in result.stdout
    assert f"mappings_dir: {tmp_path / 'mappings'} does not exist" in result.stdout

    result = agni_bridge("preview", "--config", str(config), "--payload", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outbox"][0]["body"]["subject"] == "Call with John Doe"


def test_an_admins_mapping_wins_over_the_built_in_of_the_same_name(tmp_path):
    config = write_config(tmp_path)
    mine = tmp_path / "mappings" / "jsonl_record.yaml"
    mine.parent.mkdir()
    mine.write_text('fields:\n  subject: "Mine: {{ call.caller_name }}"\n')
    result = agni_bridge("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert f"connector outbox: type jsonl, enabled, mapping {mine}" in result.stdout

    result = agni_bridge("preview", "--config", str(config), "--payload", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outbox"][0]["body"] == {"subject": "Mine: John Doe"}


def test_a_mapping_found_nowhere_names_the_connector_the_file_and_both_places(tmp_path):
    config = write_config(tmp_path, "  crm: {type: jsonl, path: out2.jsonl, mapping: acme_task.yaml}\n")
    result = agni_bridge("check", "--config", str(config))
    assert result.returncode == 1
    assert (
        f"{config}: connectors.crm.mapping: acme_task.yaml: no such file in mappings_dir "
        f"({tmp_path / 'mappings'}, a folder that does not exist) nor among the built-in mappings ("
    ) in result.stderr
    for builtin in ("hubspot_call.yaml", "jsonl_record.yaml", "salesforce_task.yaml"):
        assert builtin in result.stderr  # the built-ins are listed
    assert "connectors.outbox" not in result.stderr  # the connector that needs no file from the folder is fine
