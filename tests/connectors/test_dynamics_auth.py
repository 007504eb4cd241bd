"""Dynamics 365 connector: Entra ID client credentials (secret or certificate), the shared token, renewals, 401s."""

from __future__ import annotations

import base64
import hashlib
import uuid

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from bridge.errors import PermanentError, RetryableError
from connectors.dynamics.auth import TokenProvider
from connectors.dynamics.config import AuthConfig
from tests.fakes.dynamics import CLIENT_ID, CLIENT_SECRET, TENANT
from tests.fakes.httpserver import Fault

pytest_plugins = ("tests.connectors.dynamics_support",)  # fixtures: fake, dyn, certificate


def thumbprints(pem: bytes) -> tuple[str, str]:
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    encode = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # noqa: E731
    return encode(hashlib.sha1(der).digest()), encode(hashlib.sha256(der).digest())


def test_one_token_serves_every_thread_and_every_delivery_of_the_process(dyn, fake):
    connector = dyn.connector()
    calls = [dyn.delivery(connector, call_session_id=f"c-{i}") for i in range(10)]

    dyn.concurrently(connector.deliver, calls)
    other = dyn.connector(name="second")  # another connector instance of the same app, same process
    other.deliver(dyn.delivery(other, call_session_id="c-10"))

    assert fake.issuer.requests == 1
    assert fake.count("phonecall") == 11


def test_a_certificate_signs_the_client_assertion_entra_id_expects(dyn, fake, certificate):
    fake.issuer.client_secret = None  # the app registration has only the certificate
    fake.issuer.certificates.append(certificate.certificate)
    connector = dyn.connector(auth={"client_secret": "", "certificate_file": str(certificate.pem_path)})

    connector.deliver(dyn.delivery(connector))

    assert fake.count("phonecall") == 1
    [assertion] = fake.issuer.assertions
    sha1, sha256 = thumbprints(certificate.certificate)
    assert assertion["header"]["alg"] == "RS256"
    assert (assertion["header"]["x5t"], assertion["header"]["x5t#S256"]) == (sha1, sha256)
    claims = assertion["claims"]
    assert claims["aud"] == fake.token_url
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["exp"] - claims["nbf"] == 600
    uuid.UUID(claims["jti"])


def test_a_certificate_the_app_registration_does_not_know_is_refused_permanently(dyn, fake, certificate):
    fake.issuer.client_secret = None
    connector = dyn.connector(auth={"client_secret": "", "certificate_file": str(certificate.pem_path)})
    with pytest.raises(PermanentError) as caught:
        connector.deliver(dyn.delivery(connector))
    assert caught.value.code == "AADSTS700027"
    assert caught.value.status == 401
    assert "The key was not found" in caught.value.message


def test_an_encrypted_key_is_read_with_certificate_password(dyn, fake, tmp_path):
    from tests.connectors.dynamics_support import make_certificate

    encrypted = make_certificate(tmp_path, password="correct horse")
    fake.issuer.certificates.append(encrypted.certificate)
    auth = {"client_secret": "", "certificate_file": str(encrypted.pem_path)}
    without = dyn.connector(name="without", auth=auth)
    assert any("the private key is encrypted: set certificate_password" in line for line in without.check())

    connector = dyn.connector(auth={**auth, "certificate_password": "correct horse"})
    assert connector.check() == []
    connector.deliver(dyn.delivery(connector))
    assert fake.count("phonecall") == 1


def test_the_token_is_renewed_ahead_of_its_expiry(fake):
    now = [1_000_000.0]
    with httpx.Client() as http:
        auth = AuthConfig(tenant_id=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        provider = TokenProvider(
            auth, token_url=fake.token_url, scope=f"{fake.url}/.default", http=lambda: http, clock=lambda: now[0]
        )
        first = provider.token()
        now[0] += 3599 - 301  # five minutes and a second before it expires
        assert provider.token() is first
        now[0] += 2  # less than five minutes left
        second = provider.token()
    assert second.access_token != first.access_token
    assert fake.issuer.requests == 2


def test_a_revoked_token_is_renewed_once_on_401_and_the_request_sent_again(dyn, fake):
    connector = dyn.connector()
    connector.deliver(dyn.delivery(connector, call_session_id="before"))
    fake.revoke_tokens()

    connector.deliver(dyn.delivery(connector, call_session_id="after"))

    assert fake.issuer.requests == 2
    assert fake.count("phonecall") == 2


def test_a_second_401_after_renewing_is_permanent_and_says_what_to_fix(dyn, fake):
    connector = dyn.connector()
    fake.faults.add(
        Fault(status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}),
        times=2,
        path_prefix="/api/data/",
    )
    with pytest.raises(PermanentError) as caught:
        connector.deliver(dyn.delivery(connector))
    assert caught.value.status == 401
    assert "refused a fresh token too" in caught.value.message
    assert "Application users" in caught.value.message
    assert fake.issuer.requests == 2


def test_a_wrong_secret_is_permanent_with_entra_ids_code_and_never_shows_the_secret(dyn, fake):
    connector = dyn.connector(auth={"client_secret": "wrong-secret-1234567"})
    with pytest.raises(PermanentError) as caught:
        connector.deliver(dyn.delivery(connector))
    assert (caught.value.status, caught.value.code) == (401, "AADSTS7000215")
    assert "Invalid client secret provided" in caught.value.message
    assert "wrong-secret-1234567" not in caught.value.describe()


def test_tokens_and_secrets_an_answer_echoes_are_redacted_from_errors(dyn, fake):
    connector = dyn.connector()
    connector.deliver(dyn.delivery(connector, call_session_id="first"))
    [token] = list(fake.tokens)
    echo = f"<html>proxy error: Authorization: Bearer {token} client_secret={CLIENT_SECRET}</html>"
    fake.faults.add(Fault(status=503, body=echo), path_prefix="/api/data/")

    with pytest.raises(RetryableError) as caught:
        connector.deliver(dyn.delivery(connector, call_session_id="second"))

    shown = caught.value.describe()
    assert "proxy error" in shown
    assert token not in shown and CLIENT_SECRET not in shown
    assert "<redacted>" in shown


def test_https_to_the_environment_and_the_token_endpoint_trusts_the_ca_bundle(tls_dyn):
    dyn, pki = tls_dyn
    trusted = dyn.connector(name="trusted", ca_bundle=str(pki.ca_path), instance_url=dyn.fake.url)
    assert dyn.fake.url.startswith("https://127.0.0.1:") and trusted.check() == []

    trusted.deliver(dyn.delivery(trusted))

    assert dyn.fake.count("phonecall") == 1
    untrusted = dyn.connector(name="untrusted", use_redis=False)
    with pytest.raises(RetryableError) as caught:
        untrusted.deliver(dyn.delivery(untrusted, call_session_id="other"))
    assert "TLS failed (certificate verify failed" in caught.value.message
    assert "set the connector's ca_bundle" in caught.value.message
