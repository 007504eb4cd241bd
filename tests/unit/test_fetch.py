"""Fetching recordings: https only, host allowlist, no private addresses (SSRF), size cap, vetted redirects."""

import pytest

from bridge.errors import RetryableError, UnsafeURLError
from bridge.fetch import fetch_limited, host_allowed, vet_address
from bridge.tls import resolve_trust
from tests.fakes.httpserver import FakeRequest, FakeResponse, FakeServer
from tests.fakes.tls import make_test_pki

AUDIO = b"ID3" + bytes(range(256)) * 40


class Files(FakeServer):
    def handle(self, request: FakeRequest) -> FakeResponse:
        if request.path == "/rec/call.mp3":
            return FakeResponse(200, AUDIO, {"content-type": "audio/mpeg"})
        if request.path == "/redirect-home":
            return FakeResponse(302, b"", {"location": "/rec/call.mp3"})
        if request.path == "/redirect-away":
            return FakeResponse(302, b"", {"location": "https://metadata.internal/latest"})
        return FakeResponse(404, b"no")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def files(pki):
    server = Files(ssl_context=pki.server_context()).start()
    yield server
    server.stop()


def local(host, port):
    return ["127.0.0.1"]


def fetch(files, pki, path="/rec/call.mp3", **kwargs):
    options = {
        "allowed_hosts": ["localhost"],
        "max_bytes": 1_000_000,
        "allow_private": True,
        "trust": resolve_trust(str(pki.ca_path)),
        "resolver": local,
        "timeout": 5,
    }
    options.update(kwargs)
    return fetch_limited(f"https://localhost:{files.port}{path}", **options)


def test_an_allowed_https_recording_is_downloaded_with_tls_verified_against_the_host_name(files, pki):
    fetched = fetch(files, pki)
    assert fetched.content == AUDIO
    assert fetched.content_type == "audio/mpeg"
    assert fetched.filename == "call.mp3"
    assert files.request_log[0].headers["host"] == f"localhost:{files.port}"


def test_a_certificate_from_an_untrusted_ca_is_a_tls_error_naming_the_trusted_cas(files, pki):
    expected = r"fetching from localhost: TLS failed \(certificate verify failed"
    with pytest.raises(RetryableError, match=expected) as caught:
        fetch(files, pki, trust=resolve_trust(environ={}))
    assert "trusted CAs: certifi (" in caught.value.message


def test_plain_http_is_refused():
    with pytest.raises(UnsafeURLError, match="https only"):
        fetch_limited("http://storage.agniai.com/rec/a.mp3", allowed_hosts=["storage.agniai.com"], max_bytes=10)


def test_hosts_off_the_allowlist_are_refused(files, pki):
    with pytest.raises(UnsafeURLError, match="not in recording_hosts"):
        fetch(files, pki, allowed_hosts=["storage.agniai.com"])
    assert not files.request_log


def test_a_host_resolving_to_a_private_address_is_refused_without_connecting(files, pki):
    with pytest.raises(UnsafeURLError, match="private, loopback or link-local"):
        fetch(files, pki, allow_private=False)
    assert not files.request_log


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
    ],
)
def test_internal_addresses_are_refused(address):
    with pytest.raises(UnsafeURLError):
        vet_address(address, allow_private=False)


def test_public_addresses_pass():
    vet_address("93.184.216.34", allow_private=False)
    vet_address("2606:2800:220:1:248:1893:25c8:1946", allow_private=False)


def test_the_size_cap_stops_the_download(files, pki):
    with pytest.raises(UnsafeURLError, match="limit"):
        fetch(files, pki, max_bytes=1000)


def test_redirects_are_followed_only_to_vetted_places(files, pki):
    assert fetch(files, pki, path="/redirect-home").content == AUDIO
    with pytest.raises(UnsafeURLError, match="not in recording_hosts"):
        fetch(files, pki, path="/redirect-away")


def test_a_missing_file_is_permanent_and_a_server_error_retryable(files, pki):
    with pytest.raises(UnsafeURLError, match="404"):
        fetch(files, pki, path="/nope")
    from tests.fakes.httpserver import Fault

    files.faults.add(Fault(status=503))
    with pytest.raises(RetryableError):
        fetch(files, pki)


def test_host_patterns():
    assert host_allowed("storage.agniai.com", ["storage.agniai.com"])
    assert host_allowed("eu.storage.agniai.com", ["*.agniai.com"])
    assert not host_allowed("agniai.com.evil.io", ["*.agniai.com"])
    assert not host_allowed("evilagniai.com", [".agniai.com"])
