"""The Salesforce connector's settings (``connectors.<name>`` with ``type: salesforce``) and their offline checks.

The Structs reject unknown keys and wrong types when the config is loaded;
:func:`config_problems` adds what types cannot express (which auth keys a
method needs, a private key that must exist and parse, owner ids that must
look like User or queue ids), for ``agni-bridge check``. Nothing here touches
the network. Credentials (``client_secret``, ``password``, ``security_token``,
``private_key``, ``session_id``) must be written as ``${ENV_VAR}``; the
settings loader refuses literal secrets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from bridge.connector import ConnectorConfig
from bridge.settings import Base
from bridge.tls import trust_problems

__all__ = ["AuthConfig", "MatchConfig", "RecordingConfig", "SalesforceConfig", "config_problems", "looks_like_id"]

HTTPS_URL = r"^https://[^\s/?#]+(/[^\s]*)?$"
OPTIONAL_HTTPS_URL = r"^(https://[^\s/?#]+(/[^\s]*)?)?$"
# JSON base64 uploads are capped at 37.5 MB of encoded data (REFERENCE §2.5): 28 MB of file at most.
MAX_ATTACH_BYTES = 28_000_000
_ID = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")
# Client credentials only work against a My Domain login URL; the generic hosts refuse the grant.
_GENERIC_LOGIN_HOSTS = {"login.salesforce.com", "test.salesforce.com"}

AuthMethod = Literal["jwt", "client_credentials", "password", "session"]


class AuthConfig(Base):
    """How the bridge gets an access token; it posts to `{login_url}/services/oauth2/token` itself."""

    method: AuthMethod
    """`jwt` (connected app + certificate: the server-to-server flow most orgs use), `client_credentials`,
    `password` (username + password + security token), or `session` (a given session id: tests, short jobs)."""
    login_url: Annotated[str, msgspec.Meta(pattern=HTTPS_URL)] = "https://login.salesforce.com"
    """Where tokens come from: https://login.salesforce.com, https://test.salesforce.com (sandboxes) or a
    My Domain URL (required for client_credentials). Any https URL, a port included."""
    audience: Annotated[str, msgspec.Meta(pattern=OPTIONAL_HTTPS_URL)] = ""
    """JWT `aud` claim. Empty: https://login.salesforce.com for production hosts (My Domains included),
    https://test.salesforce.com for sandboxes (*.sandbox.my.salesforce.com), and `login_url` itself for any
    other host. Set it for an Experience Cloud site or a gateway that expects something else."""
    client_id: str = ""
    """The connected app's consumer key (jwt, client_credentials, password)."""
    client_secret: str = ""
    """The connected app's consumer secret (client_credentials, password). Write ${ENV_VAR}."""
    username: str = ""
    """The integration user (jwt: the JWT `sub`; password)."""
    password: str = ""
    """The integration user's password (password flow). Write ${ENV_VAR}."""
    security_token: str = ""
    """Appended to the password (password flow) unless the org trusts the bridge's IP. Write ${ENV_VAR}."""
    private_key_file: str = ""
    """PEM file of the RSA key whose certificate is uploaded to the connected app (jwt); relative paths
    resolve against the config file's folder."""
    private_key: str = ""
    """The same key as PEM text, for deployments that pass files as environment variables. Write ${ENV_VAR}."""
    session_id: str = ""
    """An access token to use as is (session). It cannot be renewed: when it expires, calls dead-letter."""


class MatchConfig(Base):
    """How the caller is found in Salesforce, and what happens when nobody matches."""

    order: Annotated[list[Literal["Contact", "Lead"]], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["Contact", "Lead"]
    )
    """Which object wins when both match: the first in this list (converted Leads are never matched)."""
    by: Annotated[list[Literal["email", "phone"]], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["email", "phone"]
    )
    """Identifiers tried in turn: `caller_email` by SOQL, then `phone` by SOSL over phone fields (which finds
    "(415) 555-0100" as well as "+14155550100")."""
    on_missing: Literal["unlinked", "create_lead", "skip"] = "unlinked"
    """No match: `unlinked` writes the Task without WhoId; `create_lead` creates a Lead from the mapping's
    `new_contact` section (deliberately off by default: it fills CRMs with "Unknown caller" records);
    `skip` writes nothing and records why."""
    default_region: str = ""
    """Region (ISO 3166 alpha-2) for numbers without a country code; empty uses the mapping's `default_region`."""
    cache_seconds: Annotated[int, msgspec.Meta(ge=0)] = 600
    """How long a lookup result, "nobody" included, is remembered in Redis (0: always ask Salesforce)."""


class RecordingConfig(Base):
    """Where the call recording goes: a link (default) or a file attached to the Task."""

    mode: Literal["link", "attach"] = "link"
    """`link`: the mapping puts `recording_url` in Description (and/or a URL field). `attach`: download it and
    upload it as a ContentVersion on the Task, so it still plays after Agni's link expires; any failure falls
    back to the link."""
    recording_hosts: list[str] = msgspec.field(default_factory=lambda: ["storage.agniai.com", "*.agniai.com"])
    """Hosts recordings may be downloaded from (`*.example.com` for subdomains); anything else is refused."""
    max_bytes: Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTACH_BYTES)] = 25_000_000
    """Larger recordings are not attached (the link stays). Salesforce caps JSON uploads at ~28 MB of file."""
    allow_private: bool = False
    """Allow downloads from private, loopback and link-local addresses. Only for tests: it opens SSRF."""


class SalesforceConfig(ConnectorConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """`type: salesforce`: each call becomes a completed call Task on the matched Contact or Lead."""

    auth: AuthConfig
    """How to authenticate (see AuthConfig)."""
    instance_url: Annotated[str, msgspec.Meta(pattern=OPTIONAL_HTTPS_URL)] = ""
    """The org's API URL, e.g. https://acme.my.salesforce.com. Required for `auth.method: session`; otherwise
    empty means "the instance_url the token response names"."""
    api_version: Annotated[str, msgspec.Meta(pattern=r"^\d{2,3}\.\d$")] = "62.0"
    """REST API version, without a leading `v`."""
    ca_bundle: str = ""
    """PEM bundle (or hashed-certificate directory) of the CAs to trust (a private CA, a TLS-inspecting proxy),
    for the API, the logins and recording downloads alike, so it must hold every CA they need. Empty: the rule
    every connector follows (bridge/tls.py) — SSL_CERT_FILE (or SSL_CERT_DIR), else REQUESTS_CA_BUNDLE, else
    certifi's public roots. Proxy environment variables keep working."""
    external_id_field: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")] = "Agni_Call_Session_Id__c"
    """Task field holding call_session_id. Create it once: a Text(255) custom field on Activity with
    "External ID" and "Unique" checked. Tasks are upserted by it, so a replayed call updates the same Task."""
    match: MatchConfig = msgspec.field(default_factory=MatchConfig)
    """How the caller is matched to a Contact or Lead."""
    link_account: bool = True
    """Set WhatId to the matched Contact's Account, so the call also shows on the Account's timeline."""
    owner_map: dict[str, str] = msgspec.field(default_factory=dict)
    """Agni `agent_name` -> Salesforce User (005…) or queue (00G…) id that owns the Task."""
    default_owner_id: str = ""
    """Owner when `owner_map` has no entry for the agent. Empty: the matched record's owner (a User), else the
    integration user."""
    recording: RecordingConfig = msgspec.field(default_factory=RecordingConfig)
    """What to do with the call recording."""
    limit_warning_share: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.9
    """Above this share of the org's daily API allocation (Sforce-Limit-Info), log a warning and slow down."""
    limit_pause_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    """When Salesforce refuses with REQUEST_LIMIT_EXCEEDED, calls stay queued and are retried after this long."""
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=200)] = 200
    """Most Task upserts sent in one sObject Collections request when several calls are delivered at once (the
    lookups of concurrent calls share a query too, up to 50 values each). A lone call at a quiet moment still goes
    out at once, alone; a batch leaves `batch_linger_seconds` after the last call joined it, `batch_max_wait_seconds`
    after the first at the latest. Each call keeps its own result: a record Salesforce rejects fails only its own
    call. `1` turns batching off (one request per Task and per lookup). API versions before 46.0 have no collection
    upsert: Tasks then go one by one whatever this says."""
    batch_linger_seconds: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.02
    """A batch (of Task upserts, or of lookups) goes out once no call has joined it for this long, or when full.
    A lone call waits this long at each step; a longer lull fills batches better under load."""
    batch_max_wait_seconds: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.2
    """...and at the latest this long after its first call joined, however busy it is."""


def looks_like_id(value: str, prefixes: tuple[str, ...] = ("005", "00G")) -> bool:
    """A 15- or 18-character Salesforce id with one of the key prefixes (User 005, queue 00G by default)."""
    return bool(_ID.match(value)) and value[:3] in prefixes


def config_problems(name: str, config: SalesforceConfig, resolve_path: Callable[[str], Path]) -> list[str]:
    """Everything wrong with `config` that can be known offline, one line each, naming the key."""
    where = f"connectors.{name}"
    auth = config.auth
    problems = [f"{where}.auth.{key}: required for auth.method {auth.method}" for key in _missing_auth_keys(auth)]
    if auth.method == "jwt":
        problems += _private_key_problems(f"{where}.auth", auth, resolve_path)
    if auth.method == "client_credentials" and urlsplit(auth.login_url).hostname in _GENERIC_LOGIN_HOSTS:
        problems.append(
            f"{where}.auth.login_url: client_credentials needs your My Domain URL "
            "(https://<domain>.my.salesforce.com); login/test.salesforce.com refuse this grant"
        )
    if auth.method == "session" and not config.instance_url:
        problems.append(f"{where}.instance_url: required for auth.method session (there is no token response)")
    problems += trust_problems(where, config.ca_bundle, resolve_path=resolve_path)
    for agent, user_id in config.owner_map.items():
        if not looks_like_id(user_id):
            problems.append(f"{where}.owner_map.{agent}: {user_id!r} is not a User (005…) or queue (00G…) id")
    if config.default_owner_id and not looks_like_id(config.default_owner_id):
        problems.append(f"{where}.default_owner_id: {config.default_owner_id!r} is not a User (005…) or queue id")
    if config.match.default_region and not _known_region(config.match.default_region):
        problems.append(f"{where}.match.default_region: {config.match.default_region!r} is not a region code")
    if config.recording.mode == "attach" and not config.recording.recording_hosts:
        problems.append(f"{where}.recording.recording_hosts: attach needs at least one allowed host")
    return problems


def _missing_auth_keys(auth: AuthConfig) -> list[str]:
    needed = {
        "jwt": ("client_id", "username"),
        "client_credentials": ("client_id", "client_secret"),
        "password": ("client_id", "client_secret", "username", "password"),
        "session": ("session_id",),
    }[auth.method]
    return [key for key in needed if not getattr(auth, key).strip()]


def _private_key_problems(where: str, auth: AuthConfig, resolve_path: Callable[[str], Path]) -> list[str]:
    if bool(auth.private_key_file) == bool(auth.private_key):
        return [f"{where}.private_key_file: give exactly one of private_key_file or private_key for jwt"]
    if auth.private_key_file:
        path = resolve_path(auth.private_key_file)
        try:
            pem = path.read_bytes()
        except OSError as exc:
            return [f"{where}.private_key_file: cannot read {path}: {exc.strerror or exc}"]
        key = "private_key_file"
    else:
        pem, key = auth.private_key.encode(), "private_key"
    problem = rsa_key_problem(pem)
    return [f"{where}.{key}: {problem}"] if problem else []


def rsa_key_problem(pem: bytes) -> str | None:
    """None when `pem` is an unencrypted RSA private key (what RS256 needs), else why not — never echoing it."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return "not an unencrypted PEM private key"
    except Exception:  # cryptography raises its own UnsupportedAlgorithm for exotic keys
        return "not a usable PEM private key"
    if not isinstance(key, rsa.RSAPrivateKey):
        return "the JWT bearer flow needs an RSA key (RS256)"
    return None


def _known_region(region: str) -> bool:
    import phonenumbers

    return region.upper() in phonenumbers.SUPPORTED_REGIONS
