"""Whom the bridge trusts: one rule for the CA certificates of every outbound HTTPS client.

Every client the bridge opens towards the outside — Salesforce (requests, inside
simple-salesforce), HubSpot and webhook_forward (httpx), the recording download
(:mod:`bridge.fetch`) and third-party connectors — verifies server certificates
against the CAs :func:`resolve_trust` picks, the first of:

1. the connector's ``ca_bundle`` setting (a PEM file, or a directory of hashed certificates);
2. ``SSL_CERT_FILE``, else ``SSL_CERT_DIR`` (OpenSSL's own variables);
3. ``REQUESTS_CA_BUNDLE``;
4. certifi's bundle (the public roots requests and httpx both use by default).

Why ``SSL_CERT_FILE`` before ``REQUESTS_CA_BUNDLE``: both are machine-wide, but
SSL_CERT_FILE is the one every TLS stack on the machine reads (OpenSSL itself,
curl, httpx, Python's ``ssl`` default paths), while REQUESTS_CA_BUNDLE is the private
setting of one library, which in the bridge serves one client out of four. When
the two disagree, the library-neutral one is what the rest of the machine trusts,
so the bridge trusts the same; the "most specific setting wins" rule is already
served by ``ca_bundle``, which beats both. Requests' other variable,
``CURL_CA_BUNDLE``, is not read.

The rule holds whatever each library would do by itself: requests lets
REQUESTS_CA_BUNDLE override a session's ``verify`` (psf/requests#3829), so the
Salesforce adapter sets ``verify`` on every request; httpx gets an explicit
:class:`ssl.SSLContext`. Neither turns ``trust_env`` off, so proxy variables
(HTTPS_PROXY, NO_PROXY) keep working where they did — except for the recording
download, which never used a proxy: it connects to the address it vetted.

The environment is read when a client is built (on a connector's first delivery),
not at import.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bridge.errors import PermanentError

__all__ = ["ENV_VARIABLES", "Trust", "resolve_trust", "ssl_error_in", "ssl_reason", "tls_failure", "trust_problems"]

ENV_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")
"""The environment variables of the rule, in the order they are consulted."""
HOW_TO_TRUST = "set the connector's ca_bundle (or SSL_CERT_FILE / REQUESTS_CA_BUNDLE) to the CA that signed it"


@dataclass(frozen=True)
class Trust:
    """The CA certificates one client verifies against, and which step of the rule chose them."""

    source: str
    """``ca_bundle``, ``SSL_CERT_FILE``, ``SSL_CERT_DIR``, ``REQUESTS_CA_BUNDLE`` or ``certifi``."""
    path: str
    """A PEM file, or a directory of certificates named by their hashes (``c_rehash``)."""

    def describe(self) -> str:
        """E.g. ``SSL_CERT_FILE (/etc/ssl/certs/ca-certificates.crt)``."""
        return f"{self.source} ({self.path})"

    def requests_verify(self) -> str:
        """The value for requests' ``verify=`` (a file or a directory path)."""
        self._check_exists()
        return self.path

    def ssl_context(self) -> ssl.SSLContext:
        """A client context verifying certificates and host names against these CAs (httpx's ``verify=``)."""
        return self._context

    @cached_property
    def _context(self) -> ssl.SSLContext:
        self._check_exists()
        try:
            if os.path.isdir(self.path):
                return ssl.create_default_context(capath=self.path)
            return ssl.create_default_context(cafile=self.path)
        except (OSError, ssl.SSLError) as exc:
            raise PermanentError(f"cannot load the CA certificates of {self.describe()}: {exc}") from exc

    def _check_exists(self) -> None:
        if not os.path.exists(self.path):
            raise PermanentError(f"TLS trust: {self.describe()} does not exist")


def resolve_trust(
    ca_bundle: str = "",
    *,
    resolve_path: Callable[[str], Path] = Path,
    environ: Mapping[str, str] | None = None,
) -> Trust:
    """The rule in the module docstring, for a connector's `ca_bundle` setting as written (empty: none).

    `resolve_path` makes a relative `ca_bundle` relative to the config file (``Services.resolve_path``);
    `environ` defaults to the process environment."""
    if ca_bundle:
        return Trust("ca_bundle", str(resolve_path(ca_bundle)))
    env = os.environ if environ is None else environ
    for name in ENV_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return Trust(name, value)
    import certifi

    return Trust("certifi", certifi.where())


def trust_problems(
    where: str,
    ca_bundle: str = "",
    *,
    resolve_path: Callable[[str], Path] = Path,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """For `agni-bridge check` (no network): the CAs the rule picks cannot be found (`where`: ``connectors.<name>``)."""
    trust = resolve_trust(ca_bundle, resolve_path=resolve_path, environ=environ)
    if trust.source == "certifi" or os.path.exists(trust.path):
        return []
    if trust.source == "ca_bundle":
        return [f"{where}.ca_bundle: file {trust.path} does not exist"]
    return [f"{where}: {trust.source} names {trust.path}, which does not exist (it decides which CAs are trusted)"]


def tls_failure(what: str, reason: str, trust: Trust | None) -> str:
    """The message of a failed certificate check: what failed, why, which CAs were trusted, and the fix."""
    trusted = f"; trusted CAs: {trust.describe()}" if trust is not None else ""
    return f"{what}: TLS failed ({reason}){trusted}. For a private CA or a TLS-inspecting proxy, {HOW_TO_TRUST}"


def ssl_error_in(exc: BaseException) -> ssl.SSLError | None:
    """The ssl.SSLError somewhere in `exc`'s chain (httpx and urllib3 wrap it two or three levels deep)."""
    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            return None
        if isinstance(current, ssl.SSLError):
            return current
        current = current.__cause__ or current.__context__
    return None


def ssl_reason(error: ssl.SSLError) -> str:
    """A short reason, e.g. ``certificate verify failed: unable to get local issuer certificate``."""
    verify = getattr(error, "verify_message", None)
    if isinstance(error, ssl.SSLCertVerificationError) and verify:
        return f"certificate verify failed: {verify}"
    return " ".join(str(error.reason or error).split())[:200]
