"""Real processes for the fault suite: a Redis that can be stopped and restarted, `agni-bridge api` and
`agni-bridge worker` subprocesses that can be SIGKILLed or SIGTERMed, a receiver that keeps one record
per webhook-id (as a Standard Webhooks receiver or a CRM upsert does), and an Agni-like sender that
retries until it gets a 200.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bridge.embedded_redis import free_port
from tests.conftest import ORG_ID, ROOT, payload_bytes, wait_for
from tests.fakes.httpserver import FakeRequest, FakeResponse, FakeServer

CONFIG = """
server: {{host: 127.0.0.1, port: {port}}}
agni: {{org_ids: ["{org}"]}}
data_dir: {data}
mappings_dir: {mappings}
logging: {{level: WARNING, format: json}}
delivery:
  max_retries: 40
  min_backoff_seconds: 0.2
  max_backoff_seconds: 2
  http_attempts: 2
  http_max_wait_seconds: 1
  timeout_seconds: {timeout}
  circuit_failures: 20
  circuit_cooldown_seconds: 1
  circuit_max_cooldown_seconds: 3
worker:
  threads: 8
  shutdown_timeout_seconds: {shutdown}
  heartbeat_timeout_seconds: 5
  maintenance_chance: 200000
connectors:
{connectors}
"""


PROCESS_VARIABLE = "AGNI_TEST_PROCESS"  # each harness process's name (its log's name: worker-3, api-0…)
PROCESS_HEADER = "x-agni-test-process"


@dataclass
class Write:
    """One write that reached the receiver: when it landed, which process sent it, when it was answered."""

    arrived: float
    sender: str  # the PROCESS_HEADER value ("" when the connector does not send it)
    answered: float | None = None


class Receiver(FakeServer):
    """Keeps one record per webhook-id (an upsert), and counts every request that reached it.

    `landed` keeps every write (when, from which process — see `connector_yaml` — and when it was
    answered), so a soak can tell which fault a second write of the same call followed. `slow_answers`
    makes the receiver answer late for a while, after the write landed (a CRM under load)."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.records: dict[str, bytes] = {}
        self.writes: Counter[str] = Counter()
        self.landed: dict[str, list[Write]] = {}
        self.delay = delay
        self._slow_until = 0.0
        self._slow_seconds = 0.0

    def slow_answers(self, seconds: float, answer_after: float) -> None:
        """For the next `seconds`, answer each write `answer_after` seconds after it lands."""
        with self.lock:
            self._slow_until, self._slow_seconds = time.monotonic() + seconds, answer_after

    def handle(self, request: FakeRequest) -> FakeResponse:
        if self.delay:
            time.sleep(self.delay)
        key = request.headers.get("webhook-id") or request.json()["data"]["call_session_id"]
        write = Write(time.time(), request.headers.get(PROCESS_HEADER, ""))
        with self.lock:
            self.records[key] = request.body
            self.writes[key] += 1
            self.landed.setdefault(key, []).append(write)
            slow = self._slow_seconds if time.monotonic() < self._slow_until else 0.0
        if slow:
            time.sleep(slow)
        write.answered = time.time()
        return FakeResponse.json(200, {"ok": True})

    def call_ids(self) -> set[str]:
        with self.lock:
            return {key.removeprefix("msg_") for key in self.records}


def connector_yaml(name: str, url: str, *, tag_process: bool = False) -> str:
    """A webhook_forward connector; `tag_process`: each request names the harness process that sent it."""
    headers = f", headers: {{{PROCESS_HEADER}: '${{{PROCESS_VARIABLE}:-}}'}}" if tag_process else ""
    return f"  {name}: {{type: webhook_forward, url: '{url}', secret: '${{FWD_SECRET}}'{headers}}}\n"


class Bridge:
    """A config, plus api and worker subprocesses started from it."""

    def __init__(self, tmp: Path, redis_url: str, connectors: str, *, timeout: float = 10.0, shutdown: float = 10.0):
        self.port = free_port()
        self.config = tmp / "config.yaml"
        self.config.write_text(
            CONFIG.format(
                port=self.port,
                org=ORG_ID,
                data=tmp / "var",
                mappings=ROOT / "mappings",
                timeout=timeout,
                shutdown=shutdown,
                connectors=connectors,
            )
        )
        self.env = {
            **os.environ,
            "AGNI_BRIDGE_REDIS_URL": redis_url,
            "FWD_SECRET": "whsec_" + "A" * 43 + "=",
        }
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.log_paths: dict[int, Path] = {}  # pid -> that process's log
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, kind: str) -> subprocess.Popen[bytes]:
        process = self.spawn(kind)
        if kind == "api":
            wait_for(self.ready, timeout=20, message="the API to listen")
        return process

    def spawn(self, kind: str, *, port: int | None = None) -> subprocess.Popen[bytes]:
        """Start `kind` without waiting for it (as a supervisor restarts a process); `port`: an extra API."""
        config = self.config if port is None or port == self.port else self.config_for_port(port)
        log_path = self.logs / f"{kind}-{len(self.processes)}.log"
        with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                [sys.executable, "-m", "bridge", "--config", str(config), kind],
                env={**self.env, PROCESS_VARIABLE: log_path.stem},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.processes.append(process)
        self.log_paths[process.pid] = log_path
        return process

    def config_for_port(self, port: int) -> Path:
        """The same config with another server port, for a second API process."""
        path = self.config.with_name(f"config-{port}.yaml")
        if not path.exists():
            path.write_text(self.config.read_text().replace(f"port: {self.port}}}", f"port: {port}}}"))
        return path

    def ready(self, url: str | None = None) -> bool:
        try:
            return httpx.get(f"{url or self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log_text(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.logs.glob("*.log")))

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Agni:
    """Sends webhooks like Agni does: retries any non-200 answer (here quickly) until it gets one.

    With `fallbacks` (more API replicas behind a load balancer), each retry goes to the next URL."""

    def __init__(self, url: str, *, fallbacks: tuple[str, ...] = (), timeout: float = 10.0) -> None:
        self.url = url
        self.urls = (url, *fallbacks)
        self.answers: Counter[str] = Counter()
        self._lock = threading.Lock()
        # One pooled client: creating an httpx client costs ~50 ms (TLS setup), far more than a webhook.
        self.client = httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=64))

    def send(self, body: bytes, *, give_up_after: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + give_up_after
        first = zlib.crc32(body)  # spread calls over the replicas, the same way on every run
        for attempt in itertools.count():
            url = self.urls[(first + attempt) % len(self.urls)]
            try:
                response = self.client.post(
                    f"{url}/webhooks/agni", content=body, headers={"content-type": "application/json"}
                )
                with self._lock:
                    self.answers[str(response.status_code)] += 1
                if response.status_code == 200:
                    return response.json()
            except httpx.HTTPError as exc:
                with self._lock:
                    self.answers[type(exc).__name__] += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"Agni gave up on a webhook after {give_up_after}s")
            time.sleep(0.1)
        raise AssertionError("unreachable")

    def send_calls(self, call_ids: list[str], *, copies: int = 1, threads: int = 16) -> list[dict[str, Any]]:
        bodies = [payload_bytes(call_session_id=call_id) for call_id in call_ids for _ in range(copies)]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(self.send, bodies))
