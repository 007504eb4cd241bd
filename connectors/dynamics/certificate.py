"""Certificate credentials for Entra ID: the signed client assertion that replaces a client secret.

The app registration holds the certificate's public part; the bridge holds a PEM
file with the private key and the certificate (``certificate_file``, the key
optionally encrypted with ``certificate_password``). For each token request it
signs a short-lived JWT (Microsoft identity platform, "certificate credentials"):

* header: ``alg`` RS256, ``typ`` JWT, ``x5t`` (base64url SHA-1 thumbprint of the
  certificate's DER encoding) and ``x5t#S256`` (the SHA-256 one), so Entra ID can
  tell which of the app's certificates signed it;
* claims: ``aud`` the token endpoint, ``iss`` = ``sub`` = the client id, a fresh
  ``jti``, ``nbf``/``iat`` now, ``exp`` ten minutes later.

The key is read when a token is needed, never at import; errors name the file and
never echo key material.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.errors import PermanentError

__all__ = [
    "ASSERTION_TYPE",
    "Certificate",
    "certificate_problem",
    "client_assertion",
    "load_certificate",
    "read_certificate",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 600


@dataclass(frozen=True)
class Certificate:
    """A private key with the certificate that matches it."""

    key: Any = field(repr=False)
    sha1: str
    """x5t: base64url SHA-1 thumbprint of the DER certificate."""
    sha256: str
    """x5t#S256: base64url SHA-256 thumbprint."""
    thumbprint: str
    """The SHA-1 thumbprint in hex, as the Azure portal shows it."""


def load_certificate(pem: bytes, password: str = "") -> Certificate:
    """The RSA key and its certificate from one PEM file; ValueError (a reason, no key material) otherwise."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    if b"PRIVATE KEY-----" not in pem:
        raise ValueError("holds no PEM private key (the file must contain the key and the certificate)")
    try:
        key = serialization.load_pem_private_key(pem, password=password.encode() if password else None)
    except TypeError as exc:  # encrypted without a password, or a password for a plain key
        raise ValueError(
            "the private key is encrypted: set certificate_password"
            if not password
            else "certificate_password is given but the key is not encrypted"
        ) from exc
    except ValueError as exc:
        raise ValueError("the private key cannot be read (a wrong certificate_password, or not a PEM key)") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the key is not an RSA key (Entra ID certificate credentials are signed RS256)")
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ValueError("holds no PEM certificate (the file must contain the key and the certificate)") from exc
    mine = key.public_key().public_numbers()
    for certificate in certificates:
        if certificate.public_key().public_numbers() == mine:
            der = certificate.public_bytes(serialization.Encoding.DER)
            return Certificate(
                key=key,
                sha1=_b64url(hashlib.sha1(der).digest()),  # noqa: S324 - x5t is defined as a SHA-1 thumbprint
                sha256=_b64url(hashlib.sha256(der).digest()),
                thumbprint=hashlib.sha1(der).hexdigest().upper(),  # noqa: S324 - the portal's thumbprint
            )
    raise ValueError("none of its certificates matches the private key")


def read_certificate(path: Path, password: str = "") -> Certificate:
    """:func:`load_certificate` of a file; PermanentError naming the file when it cannot be used."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise PermanentError(f"auth.certificate_file {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        return load_certificate(pem, password)
    except ValueError as exc:
        raise PermanentError(f"auth.certificate_file {path}: {exc}") from None


def certificate_problem(path: Path, password: str = "") -> str | None:
    """For `check`: None when the file holds a usable key and certificate, else why not."""
    try:
        read_certificate(path, password)
    except PermanentError as exc:
        return exc.message.split(": ", 1)[1]
    return None


def client_assertion(
    certificate: Certificate, *, client_id: str, token_url: str, clock: Callable[[], float] = time.time
) -> str:
    """The signed JWT sent as ``client_assertion`` with grant_type client_credentials."""
    import jwt

    now = int(clock())
    claims = {
        "aud": token_url,
        "iss": client_id,
        "sub": client_id,
        "jti": str(uuid.uuid4()),
        "nbf": now,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECONDS,
    }
    headers = {"x5t": certificate.sha1, "x5t#S256": certificate.sha256}
    return jwt.encode(claims, certificate.key, algorithm="RS256", headers=headers)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
