"""The example third-party connector (examples/agni-bridge-notes) works the way docs/connectors.md says.

It is installed as a user would install a plug-in — ``pip install --no-deps --target <tmp>`` of its own
pyproject — into a temporary folder, never into the project's venv. Then `agni-bridge check` and
`agni-bridge run` run as subprocesses with that folder on PYTHONPATH, so the bridge finds the connector only
through the entry point in the installed dist-info. A call posted to the running bridge lands as one note in
a fake notes service; replaying the call updates that note instead of creating another (the core ledger).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from bridge.embedded_redis import free_port
from tests.conftest import EXAMPLE, ORG_ID, ROOT, wait_for
from tests.fakes.httpserver import FakeRequest, FakeResponse, FakeServer

EXAMPLE_PACKAGE = ROOT / "examples" / "agni-bridge-notes"
API_KEY = "notes-test-key-1234"
CALL_ID = "019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d"

CONFIG = """
server: {{host: 127.0.0.1, port: {port}}}
agni: {{org_ids: ["{org}"]}}
redis: {{url: "${{TEST_REDIS_URL}}"}}  # a URL with a password comes from the environment
data_dir: {data}
mappings_dir: {mappings}
worker: {{threads: 2, shutdown_timeout_seconds: 5}}
delivery: {{http_attempts: 1, timeout_seconds: 5}}
connectors:
  notes: {{type: notes, base_url: "{notes}", api_key: "${{NOTES_API_KEY:-}}", requests_per_minute: 600}}
"""


class NotesService(FakeServer):
    """The notes service the example's docstring describes: no upsert, bearer auth."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: dict[str, dict[str, object]] = {}
        self._ids = count(1)

    def handle(self, request: FakeRequest) -> FakeResponse:
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return FakeResponse.json(401, {"error": "unauthorized"})
        with self.lock:
            path = request.path.rsplit("/", 1)[0] if request.method == "PATCH" else request.path
            self.requests[f"{request.method} {path}"] += 1  # PATCHes counted without the note id
            if request.method == "POST" and request.path == "/api/notes":
                note_id = str(next(self._ids))
                self.notes[note_id] = request.json()
                return FakeResponse.json(201, {"id": note_id})
            if request.method == "PATCH" and request.path.startswith("/api/notes/"):
                note_id = unquote(request.path.rsplit("/", 1)[1])
                if note_id not in self.notes:
                    return FakeResponse.json(404, {"error": "no such note"})
                self.notes[note_id].update(request.json())
                return FakeResponse.json(200, {"id": note_id})
            if request.method == "GET" and request.path == "/api/notes":
                wanted = request.query.get("external_id", [""])[0]
                found = [{"id": i, **n} for i, n in self.notes.items() if n.get("external_id") == wanted]
                return FakeResponse.json(200, {"notes": found})
        return FakeResponse.json(404, {"error": "not found"})


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed with pip into its own folder (a copy is built, so the checkout stays clean)."""
    base = tmp_path_factory.mktemp("plugin")
    source = base / "src"
    shutil.copytree(EXAMPLE_PACKAGE, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    target = base / "site"
    # Built in pip's isolated build environment (setuptools from the index or pip's cache), like the project's
    # own wheel in tests/e2e/test_wheel.py; --no-deps: agni-bridge itself comes from this environment.
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(target.glob("agni_bridge_notes-*.dist-info/entry_points.txt"))
    return target


@pytest.fixture
def notes() -> Iterator[NotesService]:
    with NotesService() as server:
        yield server


def environment(plugin_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTES_API_KEY", "REDIS_URL", "AGNI_BRIDGE_REDIS_URL")}
    env["PYTHONPATH"] = str(plugin_dir)
    env.update(extra)
    return env


def write_config(tmp_path: Path, notes: NotesService, redis_url: str, port: int = 0) -> Path:
    config = tmp_path / "config.yaml"
    text = CONFIG.format(
        port=port or free_port(),
        org=ORG_ID,
        data=tmp_path / "var",
        mappings=ROOT / "mappings",
        notes=f"{notes.url}/api",
    )
    config.write_text(text)
    return config


def bridge(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bridge", "--config", str(config), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def test_the_project_venv_does_not_have_the_example_installed(tmp_path):
    # Otherwise the tests below would prove nothing about discovery from the installed dist-info.
    command = [sys.executable, "-c", "import bridge_notes"]
    assert subprocess.run(command, capture_output=True, env=environment(tmp_path)).returncode != 0


def test_check_finds_the_installed_connector_by_its_entry_point_and_runs_its_own_checks(
    plugin_dir, notes, redis_url, tmp_path
):
    config = write_config(tmp_path, notes, redis_url)

    ok = bridge(config, environment(plugin_dir, NOTES_API_KEY=API_KEY, TEST_REDIS_URL=redis_url), "check")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "connector notes: type notes" in ok.stdout

    missing_key = bridge(config, environment(plugin_dir, TEST_REDIS_URL=redis_url), "check")
    assert missing_key.returncode == 1
    assert "connectors.notes.api_key: required; write ${NOTES_API_KEY}" in missing_key.stdout + missing_key.stderr

    not_installed = bridge(config, environment(tmp_path, NOTES_API_KEY=API_KEY, TEST_REDIS_URL=redis_url), "check")
    assert not_installed.returncode == 1
    assert "unknown connector type 'notes'" in not_installed.stdout + not_installed.stderr


def test_a_call_becomes_one_note_and_a_replay_updates_it(plugin_dir, notes, redis_url, tmp_path):
    port = free_port()
    config = write_config(tmp_path, notes, redis_url, port)
    env = environment(plugin_dir, NOTES_API_KEY=API_KEY, TEST_REDIS_URL=redis_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "--config", str(config), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: ready(base) or process.poll() is not None, timeout=60, message="the bridge to be ready")
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""

        answer = httpx.post(
            f"{base}/webhooks/agni", content=EXAMPLE.read_bytes(), headers={"content-type": "application/json"}
        )
        assert answer.json()["status"] == "accepted"
        wait_for(lambda: len(notes.notes) == 1, timeout=30, message="the note")
        [note] = notes.notes.values()
        assert note["external_id"] == CALL_ID and note["phone"] == "+14155550100"

        replayed = bridge(config, env, "replay", CALL_ID)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        wait_for(lambda: notes.requests["PATCH /api/notes"] == 1, timeout=30, message="the replay's update")
        assert len(notes.notes) == 1 and notes.requests["POST /api/notes"] == 1
        assert notes.requests["GET /api/notes"] == 0  # the ledger knew the id: no search needed

        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
