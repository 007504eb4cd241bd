"""The one trust rule: ca_bundle, else SSL_CERT_FILE/DIR, else REQUESTS_CA_BUNDLE, else certifi.

The environment is passed in as a dict, so nothing here reads or changes the process's own.
"""

from __future__ import annotations

import ssl

import certifi
import pytest

from bridge.errors import PermanentError
from bridge.tls import resolve_trust, tls_failure, trust_problems
from tests.fakes.tls import make_test_pki

EVERYTHING = {"SSL_CERT_FILE": "/env/ssl.pem", "SSL_CERT_DIR": "/env/certs", "REQUESTS_CA_BUNDLE": "/env/requests.pem"}


def test_the_ca_bundle_setting_wins_over_every_environment_variable(tmp_path):
    trust = resolve_trust("private-ca.pem", resolve_path=lambda p: tmp_path / p, environ=EVERYTHING)
    assert (trust.source, trust.path) == ("ca_bundle", str(tmp_path / "private-ca.pem"))


@pytest.mark.parametrize(
    ("environ", "source"),
    [
        (EVERYTHING, "SSL_CERT_FILE"),
        ({"SSL_CERT_DIR": "/env/certs", "REQUESTS_CA_BUNDLE": "/env/requests.pem"}, "SSL_CERT_DIR"),
        ({"REQUESTS_CA_BUNDLE": "/env/requests.pem"}, "REQUESTS_CA_BUNDLE"),
        ({"SSL_CERT_FILE": "  ", "REQUESTS_CA_BUNDLE": "/env/requests.pem"}, "REQUESTS_CA_BUNDLE"),
    ],
)
def test_without_ca_bundle_the_environment_decides_ssl_cert_file_first(environ, source):
    trust = resolve_trust("", environ=environ)
    assert trust.source == source
    assert trust.path == environ[source]


def test_with_nothing_set_the_public_roots_of_certifi_are_trusted_and_curl_ca_bundle_is_not_read():
    trust = resolve_trust(environ={"CURL_CA_BUNDLE": "/env/curl.pem"})
    assert (trust.source, trust.path) == ("certifi", certifi.where())


def test_the_context_verifies_certificates_and_host_names_against_exactly_the_chosen_cas(tmp_path):
    pki = make_test_pki(tmp_path)
    context = resolve_trust(str(pki.ca_path), environ={}).ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    [ca] = context.get_ca_certs()
    assert ca["subject"] == ((("commonName", "Agni CRM Bridge test CA"),),)


def test_a_directory_of_hashed_certificates_is_accepted(tmp_path):
    trust = resolve_trust(environ={"SSL_CERT_DIR": str(tmp_path)})
    assert trust.requests_verify() == str(tmp_path)
    assert trust.ssl_context().verify_mode == ssl.CERT_REQUIRED


def test_a_missing_ca_file_is_a_permanent_error_naming_where_it_came_from(tmp_path):
    trust = resolve_trust(environ={"REQUESTS_CA_BUNDLE": str(tmp_path / "gone.pem")})
    with pytest.raises(PermanentError, match=r"REQUESTS_CA_BUNDLE \(.*gone.pem\) does not exist"):
        trust.ssl_context()
    with pytest.raises(PermanentError, match="REQUESTS_CA_BUNDLE"):
        trust.requests_verify()


def test_a_file_that_holds_no_certificate_is_a_permanent_error(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(PermanentError, match=r"cannot load the CA certificates of ca_bundle"):
        resolve_trust(str(junk)).ssl_context()


def test_check_reports_a_missing_ca_bundle_or_a_dangling_environment_variable(tmp_path):
    resolve = lambda p: tmp_path / p  # noqa: E731
    assert trust_problems("connectors.x", "ca.pem", resolve_path=resolve, environ={}) == [
        f"connectors.x.ca_bundle: file {tmp_path / 'ca.pem'} does not exist"
    ]
    [problem] = trust_problems("connectors.x", environ={"SSL_CERT_FILE": "/nowhere.pem"})
    assert problem.startswith("connectors.x: SSL_CERT_FILE names /nowhere.pem, which does not exist")
    # ca_bundle wins, so a dangling variable does not matter then
    (tmp_path / "ca.pem").write_text("")
    assert trust_problems("connectors.x", "ca.pem", resolve_path=resolve, environ={"SSL_CERT_FILE": "/nowhere"}) == []
    assert trust_problems("connectors.x", environ={}) == []


def test_a_tls_failure_says_which_cas_were_trusted_and_how_to_trust_another():
    message = tls_failure("HubSpot search contacts", "certificate verify failed", resolve_trust(environ={}))
    assert message.startswith("HubSpot search contacts: TLS failed (certificate verify failed); trusted CAs: certifi (")
    assert "ca_bundle" in message and "SSL_CERT_FILE" in message
