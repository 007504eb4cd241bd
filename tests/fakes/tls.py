"""Throw-away PKI for tests: a CA, a server certificate for 127.0.0.1/localhost, and JWT keys.

Why a real CA instead of ``verify=False``: simple-salesforce hard-codes ``https://`` in every URL
it builds (REFERENCE.md §0.1), so fakes it talks to must speak TLS, and tests should exercise the
same certificate verification the bridge does in production. Pointing a ``requests.Session`` at
``ca_path`` gives exactly that, without touching the system trust store.

The TLS keys are EC P-256 (generated in microseconds, so every test can have its own PKI); the JWT
key pair is RSA because Salesforce's JWT bearer flow only accepts RS256.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TestPKI", "make_rsa_keypair", "make_test_pki"]


@dataclass(frozen=True)
class TestPKI:
    """Paths of a freshly generated CA and server certificate (all PEM)."""

    __test__ = False  # the name starts with "Test"; stop pytest from trying to collect it

    ca_path: Path  # give this to clients: requests' ``verify=``, ``ssl.create_default_context(cafile=)``
    cert_path: Path  # the server certificate (leaf only; the CA is the trust anchor)
    key_path: Path  # the server's private key, unencrypted

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the test certificate, for ``FakeServer(ssl_context=...)``."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only the test CA (for clients other than requests)."""
        return ssl.create_default_context(cafile=str(self.ca_path))


def make_test_pki(directory: Path, *, valid_days: int = 2) -> TestPKI:
    """Create a CA and a server certificate for 127.0.0.1, ::1 and localhost in ``directory``.

    The certificates carry the extensions a strict verifier wants (critical basic constraints,
    key usages, subject/authority key identifiers), so they also pass Python 3.13's
    ``VERIFY_X509_STRICT`` default should the project move there.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(hours=1), now + dt.timedelta(days=valid_days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Agni CRM Bridge test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    )
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(san, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    pki = TestPKI(
        ca_path=directory / "test-ca.pem",
        cert_path=directory / "server-cert.pem",
        key_path=directory / "server-key.pem",
    )
    pki.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_private_key(pki.key_path, server_key)
    return pki


def make_rsa_keypair(directory: Path, *, name: str = "jwt", bits: int = 2048) -> tuple[Path, bytes]:
    """Generate an RSA key pair for JWT-bearer tests.

    Returns ``(private_key_pem_path, public_key_pem_bytes)``: the bridge (like simple-salesforce's
    ``privatekey_file=``) reads the private key from a file, while the fake only needs the public
    half, e.g. ``fake.register_jwt_client(consumer_key, public_pem)``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_path = directory / f"{name}-private-key.pem"
    _write_private_key(private_path, key)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_path, public_pem


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(0o600)
