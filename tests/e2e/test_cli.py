"""`agni-bridge check` and `preview`, run as the console script."""

import json
import subprocess
import sys

from tests.conftest import EXAMPLE, ROOT


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
