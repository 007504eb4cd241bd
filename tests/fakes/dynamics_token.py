"""The fake's Microsoft Entra ID token endpoint: OAuth 2.0 client credentials, by secret or by certificate.

``POST /{tenant}/oauth2/v2.0/token`` (form-encoded) with ``grant_type=client_credentials``,
``client_id``, ``scope=<resource>/.default`` and either ``client_secret`` or
``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``
+ ``client_assertion``. An assertion is checked as Entra ID documents
("Microsoft identity platform certificate credentials"): RS256 or PS256, an
``x5t`` (SHA-1) or ``x5t#S256`` (SHA-256) thumbprint naming a certificate
registered for the app, a valid signature by it, ``aud`` = this token endpoint,
``iss`` = ``sub`` = the client id, a ``jti``, and ``nbf`` ≤ now < ``exp``.

Errors have Entra's shape ``{"error", "error_description": "AADSTS…: …", "error_codes"}``:
a wrong secret is 401 invalid_client AADSTS7000215, an unknown app 400
unauthorized_client AADSTS700016, a bad scope 400 invalid_scope AADSTS70011, a bad
assertion 401 invalid_client AADSTS700027 (the exact AADSTS numbers of each
assertion fault are UNCONFIRMED).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from .httpserver import FakeRequest, FakeResponse

__all__ = ["ASSERTION_TYPE", "TokenIssuer"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class TokenIssuer:
    """Issues bearer tokens for one app registration of one tenant."""

    tenant: str
    client_id: str
    resource: str
    client_secret: str | None = None
    certificates: list[bytes] = field(default_factory=list)
    """PEM certificates registered for the app (their public keys verify assertions)."""
    lifetime: int = 3599
    requests: int = 0
    assertions: list[dict[str, Any]] = field(default_factory=list)
    """Decoded header and claims of every accepted assertion (for tests)."""

    def path(self) -> str:
        return f"/{self.tenant}/oauth2/v2.0/token"

    def handle(self, request: FakeRequest, token_url: str, now: float) -> tuple[FakeResponse, str | None]:
        """The answer, and the new access token when one was issued."""
        self.requests += 1
        if request.method != "POST":
            return _error(405, "invalid_request", 900561, "The endpoint only accepts POST requests."), None
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return _error(
                400, "invalid_request", 900144, "The request body must contain the parameter 'grant_type'."
            ), None
        form = {k: v[0] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()}
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."), None
        if form.get("client_id") != self.client_id:
            message = (
                f"Application with identifier '{form.get('client_id')}' was not found in the directory '{self.tenant}'."
            )
            return _error(400, "unauthorized_client", 700016, message), None
        if form.get("scope") != f"{self.resource}/.default":
            scope = form.get("scope")
            message = f"The provided value for the input parameter 'scope' is not valid. The scope {scope} is invalid."
            return _error(400, "invalid_scope", 70011, message), None
        if "client_secret" in form and "client_assertion" in form:
            return _error(400, "invalid_request", 90101, "Only one client credential may be sent."), None
        if "client_secret" in form:
            if self.client_secret is None or not secrets.compare_digest(form["client_secret"], self.client_secret):
                message = (
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                    f"secret value, not the client secret ID, for a secret added to app '{self.client_id}'."
                )
                return _error(401, "invalid_client", 7000215, message), None
        elif form.get("client_assertion_type") == ASSERTION_TYPE and form.get("client_assertion"):
            problem = self._assertion_problem(form["client_assertion"], token_url, now)
            if problem:
                return _error(
                    401, "invalid_client", 700027, f"Client assertion failed signature validation. {problem}"
                ), None
        else:
            message = "The request body must contain the parameter 'client_assertion' or 'client_secret'."
            return _error(401, "invalid_client", 7000218, message), None
        token = secrets.token_urlsafe(32)
        body = {
            "token_type": "Bearer",
            "expires_in": self.lifetime,
            "ext_expires_in": self.lifetime,
            "access_token": token,
        }
        return FakeResponse.json(200, body), token

    def _assertion_problem(self, assertion: str, token_url: str, now: float) -> str | None:
        import jwt
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return "The assertion is not a JWT."
        if header.get("alg") not in ("RS256", "PS256"):
            return f"Unsupported algorithm {header.get('alg')!r}."
        chosen = None
        for pem in self.certificates:
            certificate = x509.load_pem_x509_certificate(pem)
            der = certificate.public_bytes(Encoding.DER)
            sha1 = _b64url(hashlib.sha1(der).digest())
            sha256 = _b64url(hashlib.sha256(der).digest())
            if header.get("x5t") == sha1 or header.get("x5t#S256") == sha256:
                chosen = certificate
        if chosen is None:
            shown = header.get("x5t#S256") or header.get("x5t")
            return f"[Reason - The key was not found., Thumbprint of key used by client: '{shown}']"
        try:
            claims = jwt.decode(
                assertion,
                chosen.public_key(),  # type: ignore[arg-type]
                algorithms=["RS256", "PS256"],
                audience=token_url,
                options={"require": ["aud", "iss", "sub", "jti", "exp", "nbf"], "verify_iat": False},
                leeway=300,
            )
        except jwt.PyJWTError as exc:
            return f"[Reason - {type(exc).__name__}: {exc}]"
        if claims["iss"] != self.client_id or claims["sub"] != self.client_id:
            return "[Reason - iss and sub must be the client id.]"
        if not claims["nbf"] - 300 <= now < claims["exp"] + 300:
            return "[Reason - The assertion is not within its valid time range.]"
        self.assertions.append({"header": header, "claims": claims})
        return None


def _error(status: int, error: str, code: int, message: str) -> FakeResponse:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace, correlation = uuid.uuid4(), uuid.uuid4()
    description = f"AADSTS{code}: {message} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {now}"
    body = {
        "error": error,
        "error_description": description,
        "error_codes": [code],
        "timestamp": now,
        "trace_id": str(trace),
        "correlation_id": str(correlation),
    }
    return FakeResponse.json(status, body)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
