"""One trust rule for every outbound HTTPS client: ca_bundle, else SSL_CERT_FILE, else REQUESTS_CA_BUNDLE, else certifi.

Each of the four clients — Salesforce (requests inside simple-salesforce), HubSpot and webhook_forward
(httpx), the recording download (bridge.fetch) — talks to a TLS fake whose certificate comes from a private
test CA. Given that CA by `ca_bundle`, or only by SSL_CERT_FILE or REQUESTS_CA_BUNDLE, each connects; given it
nowhere, each fails with a TLS error that names the CAs it trusted. The environment is set with monkeypatch,
so nothing leaks into other tests; the variables the machine itself sets are removed first.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import Any

import certifi
import pytest

from bridge.connector import Services
from bridge.errors import RetryableError
from bridge.fetch import fetch_limited
from bridge.settings import DeliverySettings
from bridge.tls import resolve_trust
from connectors.webhook_forward import ForwardConfig, WebhookForwardConnector
from tests.conftest import Sink, make_delivery
from tests.connectors.hubspot_support import make_connector, running_fake
from tests.fakes.tls import TestPKI, make_test_pki

pytest_plugins = ("tests.connectors.salesforce_support",)  # fixtures: pki, org, salesforce, recordings

TRUST_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
PROXY_VARIABLES += ("NO_PROXY", "no_proxy")


@pytest.fixture(autouse=True)
def bare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CA or proxy variable from the machine (this one sets SSL_CERT_FILE and REQUESTS_CA_BUNDLE)."""
    for name in TRUST_VARIABLES + PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


class TlsSink(Sink):
    """The webhook receiver of the other tests, over TLS."""

    def __init__(self, pki: TestPKI) -> None:
        super().__init__()
        self._ssl_context = pki.server_context()


# -- the four clients, each reduced to "reach your TLS fake with this ca_bundle" -------------------------------


class Clients:
    def __init__(self, salesforce: Any, org: Any, recordings: Any, pki: TestPKI, redis_client: Any) -> None:
        self.salesforce, self.org, self.recordings = salesforce, org, recordings
        self.pki, self.redis = pki, redis_client
        self._calls = 0

    def call_id(self) -> str:
        self._calls += 1
        return f"trust-{self._calls}"

    def salesforce_client(self, ca_bundle: str) -> None:
        before = self.org.count("Task")
        connector = self.salesforce.connector(ca_bundle=ca_bundle)
        self.salesforce.deliver(connector, call_session_id=self.call_id())
        assert self.org.count("Task") == before + 1

    def hubspot_client(self, ca_bundle: str) -> None:
        with running_fake(ssl_context=self.pki.server_context()) as fake:
            connector = make_connector(fake, self.redis, ca_bundle=ca_bundle)
            try:
                connector.deliver(make_delivery(connector))
            finally:
                connector.close()
            assert fake.count("calls") == 1

    def webhook_forward_client(self, ca_bundle: str) -> None:
        with TlsSink(self.pki) as sink:
            config = ForwardConfig(type="webhook_forward", url=f"{sink.url}/hook", ca_bundle=ca_bundle)
            services = Services(delivery=DeliverySettings(http_attempts=1, timeout_seconds=5))
            connector = WebhookForwardConnector("fwd", config, services, None)
            try:
                connector.deliver(make_delivery(connector))
            finally:
                connector.close()
            assert len(sink.received) == 1

    def recording_fetch(self, ca_bundle: str) -> None:
        fetched = fetch_limited(
            self.recordings.recording_url(),
            allowed_hosts=["127.0.0.1"],
            max_bytes=1_000_000,
            allow_private=True,  # the fake listens on loopback, which the SSRF rules otherwise refuse
            timeout=5,
            trust=resolve_trust(ca_bundle),
        )
        assert fetched.content == self.recordings.AUDIO


CLIENTS = ["salesforce_client", "hubspot_client", "webhook_forward_client", "recording_fetch"]


@pytest.fixture
def clients(salesforce, org, recordings, pki, redis_client) -> Clients:
    return Clients(salesforce, org, recordings, pki, redis_client)


def reach(clients: Clients, client: str) -> Callable[[str], None]:
    return getattr(clients, client)


# -- the rule, client by client --------------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_the_ca_bundle_setting_is_trusted(clients, client, monkeypatch):
    # Even against environment variables that name only public roots.
    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    reach(clients, client)(str(clients.pki.ca_path))


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
@pytest.mark.parametrize("client", CLIENTS)
def test_without_ca_bundle_a_ca_named_only_by_the_environment_is_trusted(clients, client, variable, monkeypatch):
    monkeypatch.setenv(variable, str(clients.pki.ca_path))
    reach(clients, client)("")


@pytest.mark.parametrize("client", CLIENTS)
def test_ssl_cert_file_wins_over_requests_ca_bundle(clients, client, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(clients.pki.ca_path))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    reach(clients, client)("")

    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(clients.pki.ca_path))
    with pytest.raises(RetryableError, match=r"TLS failed \(certificate verify failed"):
        reach(clients, client)("")


@pytest.mark.parametrize("client", CLIENTS)
def test_with_the_ca_named_nowhere_the_client_fails_with_a_tls_error_naming_the_trusted_cas(clients, client):
    with pytest.raises(RetryableError) as caught:
        reach(clients, client)("")
    message = caught.value.message
    assert "TLS failed (certificate verify failed: unable to get local issuer certificate)" in message
    assert f"trusted CAs: certifi ({certifi.where()})" in message
    assert "set the connector's ca_bundle" in message


# -- what the rule means for a whole delivery -------------------------------------------------------------------


def test_a_salesforce_recording_is_attached_when_only_requests_ca_bundle_names_the_ca(
    salesforce, org, recordings, pki, monkeypatch
):
    # Issue 9: the CRM writes worked behind a TLS-inspecting proxy while `recording: attach` fell back to links.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca_path))
    connector = salesforce.connector(ca_bundle="", recording={"mode": "attach"})
    result = salesforce.deliver(connector, recording_url=recordings.recording_url())
    assert result.notes == []
    assert org.count("ContentVersion") == 1 and result.records["ContentVersion"]


def test_a_recording_host_signed_by_another_ca_is_not_attached_and_the_note_says_why(
    salesforce, org, recordings, pki, tmp_path
):
    other = make_test_pki(tmp_path / "other")  # the recording host's CA is not the one the connector trusts
    connector = salesforce.connector(recording={"mode": "attach"})
    with type(recordings)(ssl_context=other.server_context()) as host:
        result = salesforce.deliver(connector, recording_url=host.recording_url())
        assert not host.request_log  # the handshake failed before any request
    assert org.count("Task") == 1 and org.count("ContentVersion") == 0
    [note] = result.notes
    assert note.startswith("recording not attached (fetching from 127.0.0.1: TLS failed (certificate verify failed")
    assert f"trusted CAs: ca_bundle ({pki.ca_path})" in note


# -- proxies keep working where they worked --------------------------------------------------------------------


class ConnectProxy(socketserver.ThreadingTCPServer):
    """A minimal HTTPS_PROXY: answers CONNECT, tunnels the bytes, and records each target."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.targets: list[str] = []
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()


class _Tunnel(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            self.request.sendall(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            return
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=10)
        self.server.targets.append(target)  # type: ignore[attr-defined]
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pump = threading.Thread(target=_copy, args=(upstream, self.request), daemon=True)
        pump.start()
        _copy(self.request, upstream)
        pump.join(10)
        upstream.close()


def _copy(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):  # either side hanging up ends the tunnel
        while chunk := source.recv(65536):
            target.sendall(chunk)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    server = ConnectProxy()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("client", ["salesforce_client", "hubspot_client", "webhook_forward_client"])
def test_crm_clients_still_go_through_https_proxy_with_the_ca_of_the_rule(clients, client, proxy, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(clients.pki.ca_path))  # a TLS-inspecting proxy's CA, say
    reach(clients, client)("")
    assert proxy.targets and all(target.startswith("127.0.0.1:") for target in proxy.targets)


def test_the_recording_download_never_uses_a_proxy_it_connects_to_the_address_it_vetted(clients, proxy, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    clients.recording_fetch(str(clients.pki.ca_path))
    assert proxy.targets == []
