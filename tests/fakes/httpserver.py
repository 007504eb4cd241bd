"""A small threaded HTTP(S) server that fake CRMs and sinks build on.

Each fake subclasses :class:`FakeServer` and implements :meth:`handle`, which
gets a parsed :class:`FakeRequest` and returns a :class:`FakeResponse`. The
base class gives every fake the same fault-injection controls, so a test can
tell any fake to fail, throttle, hang or reset the connection without knowing
how that fake works inside:

    fake.faults.add(Fault(status=503), times=5)
    fake.faults.add(Fault(hang_seconds=10), times=1, path_prefix="/services")
    fake.faults.fail_for(30.0, Fault(status=500))
    fake.faults.add(Fault(reset=True), times=3)

It is a real socket server (not a mock), so it serves other processes too:
the worker subprocesses in the fault suite reach it by URL.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class FakeRequest:
    method: str
    path: str  # without the query string, still percent-encoded
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class FakeResponse:
    status: int = 200
    body: bytes | str | Any = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> FakeResponse:
        return cls(status, json.dumps(payload).encode(), {"content-type": "application/json", **(headers or {})})

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class Fault:
    """What to do instead of (or before) the normal answer."""

    status: int | None = None  # answer this status with `body`/`headers`
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang_seconds: float = 0.0  # sleep this long first (a hang when longer than the client timeout)
    reset: bool = False  # close the TCP connection with RST, no answer
    after_handling: bool = False  # run the real handler first (the write lands), then misbehave


@dataclass
class _Rule:
    fault: Fault
    remaining: int | None  # None: until `until`
    until: float | None
    path_prefix: str
    method: str | None


class Faults:
    """A thread-safe list of scripted faults, consumed first-match-first."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault, *, times: int = 1, path_prefix: str = "", method: str | None = None) -> None:
        with self._lock:
            self._rules.append(_Rule(fault, times, None, path_prefix, method))

    def fail_for(self, seconds: float, fault: Fault, *, path_prefix: str = "", method: str | None = None) -> None:
        with self._lock:
            self._rules.append(_Rule(fault, None, time.monotonic() + seconds, path_prefix, method))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, method: str, path: str) -> Fault | None:
        now = time.monotonic()
        with self._lock:
            for rule in list(self._rules):
                if rule.until is not None and now >= rule.until:
                    self._rules.remove(rule)
                    continue
                if not path.startswith(rule.path_prefix) or (rule.method and rule.method != method):
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                return rule.fault
        return None


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up (timeouts, resets we inject) are normal here, not tracebacks on stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):
            super().handle_error(request, client_address)


class FakeServer:
    """Base class: start() binds a free port on 127.0.0.1 and serves in a thread."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.faults = Faults()
        self.requests: Counter[str] = Counter()  # "METHOD /path" -> count (path without ids is up to the fake)
        self.request_log: list[FakeRequest] = []
        self.lock = threading.RLock()  # fakes guard their state with this
        self._ssl_context = ssl_context
        self.latency_seconds = 0.0  # added to every answer: a CRM across the internet, for benchmarks
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- to implement -------------------------------------------------------------------
    def handle(self, request: FakeRequest) -> FakeResponse:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- lifecycle --------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes: Nagle would add ~40 ms each

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = FakeRequest(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with fake.lock:
                    fake.request_log.append(request)
                if fake.latency_seconds:
                    time.sleep(fake.latency_seconds)
                fault = fake.faults.take(request.method, request.path)
                response: FakeResponse | None = None
                if fault is not None and fault.after_handling:
                    response = fake._dispatch(request)
                if fault is not None:
                    if fault.hang_seconds:
                        time.sleep(fault.hang_seconds)
                    if fault.reset:
                        self._reset()
                        return
                    if fault.status is not None:
                        response = FakeResponse(fault.status, fault.body, dict(fault.headers))
                        if not isinstance(fault.body, (bytes, str)):
                            response.headers.setdefault("content-type", "application/json")
                if response is None:
                    response = fake._dispatch(request)
                payload = response.encoded()
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                if payload and request.method != "HEAD":
                    self.wfile.write(payload)

            def _reset(self) -> None:
                # SO_LINGER with a zero timeout makes close() send RST: a "connection reset by peer".
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _serve

        server = _QuietServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if self._ssl_context is not None:
            server.socket = self._ssl_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        try:
            return self.handle(request)
        except Exception as exc:  # a bug in the fake must show up as a 599, not a hung client
            return FakeResponse.json(599, {"fake_error": repr(exc)})
