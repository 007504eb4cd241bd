"""The console's fixtures: Debian's Chromium driven by Playwright (launched once per session), and a real
`agni-bridge run` (embedded Redis, API and worker processes) delivering to a fake Salesforce (over TLS with a
test CA) and a fake HubSpot, once per test module.

No browser is ever downloaded: Playwright launches /usr/bin/chromium by path (`make test` installs Debian's
package when it is missing). Each browser test saves a screenshot of the page it checked under
var/test-artifacts/console/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.embedded_redis import free_port
from tests.conftest import ORG_ID, ROOT, payload_bytes, wait_for
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.salesforce import FakeSalesforce
from tests.fakes.tls import make_test_pki

CHROMIUM = Path(os.environ.get("AGNI_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "var" / "test-artifacts" / "console"
ADMIN_TOKEN = "alice-console-token-0123456789"
VIEWER_TOKEN = "victor-console-token-0123456789"
HS_TOKEN = "hs-console-token"

CONFIG = """
server: {{host: 127.0.0.1, port: {port}}}
agni: {{org_ids: ["{org}"]}}
data_dir: {data}
mappings_dir: {mappings}
logging: {{level: WARNING}}
delivery:
  max_retries: 3
  min_backoff_seconds: 0.2
  max_backoff_seconds: 1
  http_attempts: 1
  timeout_seconds: 5
  circuit_failures: 1000
worker: {{threads: 8, shutdown_timeout_seconds: 5}}
admin:
  users:
    - {{name: alice, token: "${{ALICE_TOKEN}}", role: admin}}
    - {{name: victor, token: "${{VICTOR_TOKEN}}", role: viewer}}
  mappings_writable: true
connectors:
  salesforce:
    type: salesforce
    instance_url: "{sf_url}"
    ca_bundle: "{ca}"
    auth: {{method: session, session_id: "${{SF_SESSION}}"}}
  hubspot:
    type: hubspot
    access_token: "${{HS_TOKEN}}"
    base_url: "{hs_url}"
    requests_per_10s: 400
    search_per_second: 50
"""


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the whole session (Debian's, by path)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class ConsoleBridge:
    """A running `agni-bridge run` with its fake CRMs, and the handles a test needs."""

    url: str
    config: Path
    home: Path
    salesforce: FakeSalesforce
    hubspot: FakeHubSpot
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    def send(self, call_id: str, **overrides: Any) -> None:
        response = httpx.post(
            f"{self.url}/webhooks/agni",
            content=payload_bytes(call_session_id=call_id, **overrides),
            headers={"content-type": "application/json"},
            timeout=10,
        )
        assert response.json()["status"] == "accepted", response.text

    def api(self, path: str, token: str = ADMIN_TOKEN, **kwargs: Any) -> httpx.Response:
        method = kwargs.pop("method", "GET")
        headers = {"authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=20, **kwargs)

    def report(self, call_id: str) -> dict[str, Any] | None:
        response = self.api(f"/admin/calls/{call_id}")
        return response.json() if response.status_code == 200 else None

    def state_of(self, call_id: str, connector: str) -> dict[str, Any]:
        report = self.report(call_id) or {"connectors": []}
        return next((c for c in report["connectors"] if c["connector"] == connector), {})

    def wait_status(self, call_id: str, connector: str, status: str, timeout: float = 30) -> dict[str, Any]:
        return wait_for(
            lambda: (s := self.state_of(call_id, connector)).get("status") == status and s,
            timeout=timeout,
            interval=0.2,
            message=f"{call_id} to be {status} for {connector} in the log",
        )

    def log_output(self) -> str:
        return (self.home / "bridge.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleBridge]:
    home = tmp_path_factory.mktemp("console")
    pki = make_test_pki(home / "pki")
    salesforce = FakeSalesforce(ssl_context=pki.server_context())
    hubspot = FakeHubSpot(token=HS_TOKEN, requests_per_10s=400)
    hubspot.define_property("calls", "agni_call_session_id")
    hubspot.define_property("tasks", "agni_call_session_id")
    salesforce.start()
    hubspot.start()
    salesforce.add_contact(LastName="Doe", FirstName="John", Email="john@example.com", Phone="(415) 555-0100")
    port = free_port()
    (home / "mappings").mkdir()
    config = home / "config.yaml"
    config.write_text(
        CONFIG.format(
            port=port,
            org=ORG_ID,
            data=home / "var",
            mappings=home / "mappings",
            sf_url=salesforce.url,
            ca=pki.ca_path,
            hs_url=hubspot.url,
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "AGNI_BRIDGE_REDIS_URL")}
    env.update(
        ALICE_TOKEN=ADMIN_TOKEN, VICTOR_TOKEN=VIEWER_TOKEN, SF_SESSION=salesforce.add_session(), HS_TOKEN=HS_TOKEN
    )
    log = open(home / "bridge.log", "wb")  # noqa: SIM115 - the child keeps writing to it
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "--config", str(config), "run"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    running = ConsoleBridge(url, config, home, salesforce, hubspot, process, env)
    try:
        wait_for(lambda: ready() or process.poll() is not None, timeout=60, message="agni-bridge run to be ready")
        assert process.poll() is None, running.log_output()
        yield running
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
        salesforce.stop()
        hubspot.stop()


# -- pages --------------------------------------------------------------------------------------


def sign_in(page: Any, base: str, token: str) -> None:
    """Sign in through the form, as a person does."""
    page.goto(f"{base}/console/")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/console/?$"))


def shot(page: Any, name: str) -> Path:
    """The one screenshot of a test: var/test-artifacts/console/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def context_factory(chromium: Any, bridge: ConsoleBridge) -> Iterator[Any]:
    """New browser contexts (fresh cookies) that record every request their pages make."""
    made: list[Any] = []

    def make(**options: Any) -> Any:
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = chromium.new_context(base_url=bridge.url, **options)
        context.requested = []  # type: ignore[attr-defined]
        context.on("request", lambda request: context.requested.append(request.url))
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


def outside_origin(context: Any, base: str) -> list[str]:
    return [url for url in context.requested if not url.startswith(base + "/")]


def csrf_of(page: Any) -> str:
    """The page's CSRF token (from the sign-out form every signed-in page has)."""
    return page.locator("form.whoami input[name=csrf]").get_attribute("value")


def admin_json(bridge: ConsoleBridge, path: str) -> Any:
    response = bridge.api(path)
    assert response.status_code == 200, response.text
    return json.loads(response.text)


def clean_artifacts() -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)


def serving(settings: Any, redis_url: str, **uvicorn_options: Any) -> Any:
    """Like tests.conftest.running_api, with uvicorn options (e.g. proxy_headers=False: by default uvicorn
    itself believes X-Forwarded-* from 127.0.0.1, before admin.trusted_proxies is asked)."""
    import socket
    import threading
    from contextlib import contextmanager

    import uvicorn

    from bridge.app import create_app

    @contextmanager
    def run() -> Iterator[str]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(create_app(settings, redis_url=redis_url), log_level="warning", **uvicorn_options)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        wait_for(lambda: server.started, timeout=10, message="uvicorn to start")
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()

    return run()
