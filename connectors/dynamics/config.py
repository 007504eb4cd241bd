"""The Dynamics 365 connector's settings (``connectors.<name>`` with ``type: dynamics``) and their offline checks.

msgspec rejects unknown keys and wrong types when the config is loaded;
:func:`config_problems` adds what a type cannot express (https URLs, GUIDs, one
credential of two, a certificate file that must hold a matching key and
certificate, region and time-zone names), for ``agni-bridge check``. Nothing here
touches the network. ``auth.client_secret`` and ``auth.certificate_password``
must be written as ``${ENV_VAR}``: the settings loader refuses literal secrets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from bridge.connector import ConnectorConfig
from bridge.settings import Base
from bridge.tls import trust_problems
from connectors.dynamics.certificate import certificate_problem
from connectors.dynamics.odata import GUID

__all__ = ["AuthConfig", "DynamicsConfig", "MatchConfig", "config_problems", "default_token_url"]

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_TOKEN_URL = "https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token"  # noqa: S105 - a URL
_ATTRIBUTE = re.compile(r"^[a-z_][a-z0-9_]*$")
_TENANT = re.compile(r"^([0-9a-fA-F-]{36}|[A-Za-z0-9.-]+\.[A-Za-z]{2,}|organizations)$")


class AuthConfig(Base):
    """Microsoft Entra ID client credentials of the app registration linked to the Dataverse application user."""

    tenant_id: str = ""
    """The Entra tenant (directory) id, or its domain (contoso.onmicrosoft.com)."""
    client_id: str = ""
    """The app registration's application (client) id."""
    client_secret: str = ""
    """A client secret of the app registration. Write ${ENV_VAR}. Give this or certificate_file, not both."""
    certificate_file: str = ""
    """PEM file holding the private key and the certificate uploaded to the app registration (the assertion is
    signed RS256 with x5t/x5t#S256 thumbprints); relative paths resolve against the config file's folder."""
    certificate_password: str = ""
    """Password of an encrypted private key in certificate_file. Write ${ENV_VAR}."""
    token_url: str = ""
    """Token endpoint; empty: https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token. Set it for a
    sovereign cloud (login.microsoftonline.us, login.chinacloudapi.cn) or a proxy; `{tenant_id}` is replaced."""
    scope: str = ""
    """OAuth scope; empty: `{instance_url}/.default`. Set it when instance_url is a proxy in front of the org."""


class MatchConfig(Base):
    """How the person on the call is found among contacts and leads, and what happens when nobody matches."""

    by: Annotated[list[Literal["email", "phone"]], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["email", "phone"]
    )
    """Identities tried in turn: Agni's `caller_email`, then `phone` (the external party) in every spelling."""
    order: Annotated[list[Literal["contact", "lead"]], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["contact", "lead"]
    )
    """Which table wins when both match: the first in this list. Only active contacts and open leads match."""
    on_missing: Literal["unlinked", "create_contact", "create_lead", "skip"] = "unlinked"
    """Nobody matched: `unlinked` logs the phone call regarding nobody (default); `create_contact` /
    `create_lead` create one from the mapping's new_contact section (once per caller); `skip` writes nothing."""
    default_region: str = "US"
    """Region (ISO 3166 alpha-2) for numbers written without a country code."""
    email_fields: list[str] = msgspec.field(default_factory=lambda: ["emailaddress1", "emailaddress2", "emailaddress3"])
    """Email columns searched (on contacts and leads alike)."""
    phone_fields: list[str] = msgspec.field(
        default_factory=lambda: ["telephone1", "mobilephone", "telephone2", "telephone3"]
    )
    """Phone columns searched, each for the E.164, national, digits-only and formatted spellings of the number."""


class DynamicsConfig(ConnectorConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """`type: dynamics`: each call becomes a completed phone call activity regarding the matched contact or lead."""

    instance_url: str = ""
    """The environment's URL, e.g. https://contoso.crm.dynamics.com (any region or sovereign cloud, a port or a
    proxy path included). Plain http only for 127.0.0.1/localhost (tests)."""
    api_version: Annotated[str, msgspec.Meta(pattern=r"^v?\d{1,2}\.\d{1,2}$")] = "v9.2"
    """Web API version: requests go to {instance_url}/api/data/{api_version}/."""
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    ca_bundle: str = ""
    """PEM bundle (or hashed-certificate directory) of the CAs to trust, for the Web API and the token endpoint.
    Empty: the bridge's rule (bridge/tls.py): SSL_CERT_FILE/DIR, else REQUESTS_CA_BUNDLE, else certifi."""
    match: MatchConfig = msgspec.field(default_factory=MatchConfig)
    owner_map: dict[str, str] = msgspec.field(default_factory=dict)
    """Agni agent name (or agent email) -> systemuserid (GUID) owning the phone call and follow-up task; that user
    is also the call's From (outgoing) or To (incoming) party."""
    default_owner_id: str = ""
    """systemuserid for agents missing from owner_map; empty: the application user owns the records."""
    description_max_length: Annotated[int, msgspec.Meta(ge=100, le=1_048_576)] = 2000
    """phonecall.description's length in your org (2,000 by default). A longer description is cut with a visible
    marker and the mapping's `note.*` fields (the full text) are added as a note on the phone call."""
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    """Most calls per $batch request. Each call's writes (phone call, note, task, close) form one change set, so
    they land together or not at all; concurrent calls share a $batch, and concurrent lookups another. 1 sends
    each write as its own request (no $batch)."""
    batch_linger_seconds: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.03
    """A batch goes out once no call has joined it for this long (or when it is full)."""
    batch_max_wait_seconds: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.2
    """...and at the latest this long after its first call joined."""
    requests_per_5_minutes: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 5700
    """The application user's request budget per sliding 5 minutes, shared by every worker through Redis.
    Dataverse allows 6,000 per user (a $batch counts once); the default leaves 5% to other clients of the user."""
    max_concurrent_requests: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50
    """Requests in flight at once across every worker (Dataverse refuses more than 52 per user)."""
    daily_request_limit: Annotated[int, msgspec.Meta(ge=0)] = 0
    """Operations per day this connector may spend of the tenant's Power Platform request allocation (a $batch
    counts each operation); when it is used up the connector pauses until midnight in daily_reset_timezone and
    calls stay queued. 0: no daily cap."""
    daily_reset_timezone: str = "UTC"
    """Where "midnight" is for daily_request_limit."""
    lookup_cache_seconds: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    """How long a lookup answer (a contact, a lead, or nobody) is remembered in Redis; 0 turns the cache off."""

    @property
    def base_url(self) -> str:
        version = self.api_version if self.api_version.startswith("v") else f"v{self.api_version}"
        return f"{self.instance_url.rstrip('/')}/api/data/{version}"

    @property
    def token_url(self) -> str:
        return default_token_url(self.auth)

    @property
    def scope(self) -> str:
        return self.auth.scope or f"{self.instance_url.rstrip('/')}/.default"


def default_token_url(auth: AuthConfig) -> str:
    """The token endpoint: `auth.token_url` (with `{tenant_id}` filled in), else the public cloud's."""
    return (auth.token_url or DEFAULT_TOKEN_URL).replace("{tenant_id}", auth.tenant_id.strip())


def config_problems(name: str, config: DynamicsConfig, resolve_path: Callable[[str], Path]) -> list[str]:
    """Everything wrong with `config` that can be known offline, one line each, naming the key."""
    where = f"connectors.{name}"
    problems = _url_problems(f"{where}.instance_url", config.instance_url, required=config.enabled)
    problems += _auth_problems(f"{where}.auth", config, resolve_path)
    problems += trust_problems(where, config.ca_bundle, resolve_path=resolve_path)
    for agent, owner in config.owner_map.items():
        if not GUID.match(owner.strip()):
            problems.append(f"{where}.owner_map.{agent}: {owner!r} is not a systemuserid (a GUID)")
    if config.default_owner_id and not GUID.match(config.default_owner_id.strip()):
        problems.append(f"{where}.default_owner_id: {config.default_owner_id!r} is not a systemuserid (a GUID)")
    match = config.match
    if not _known_region(match.default_region):
        problems.append(f"{where}.match.default_region: unknown region {match.default_region!r} (e.g. US, GB)")
    for key, values in (("order", match.order), ("by", match.by)):
        if len(set(values)) != len(values):
            problems.append(f"{where}.match.{key}: lists an entry twice")
    for kind, fields in (("email", match.email_fields), ("phone", match.phone_fields)):
        if not fields and kind in match.by:
            problems.append(f"{where}.match.{kind}_fields: empty, but match.by includes {kind}")
        bad = [f for f in fields if not _ATTRIBUTE.match(f)]
        problems += [f"{where}.match.{kind}_fields: {f!r} is not a column name" for f in bad]
    if match.on_missing == "create_lead" and "lead" not in match.order:
        problems.append(f"{where}.match.on_missing: create_lead, but order does not search leads (add lead)")
    try:
        ZoneInfo(config.daily_reset_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"{where}.daily_reset_timezone: unknown time zone {config.daily_reset_timezone!r}")
    return problems


def _auth_problems(where: str, config: DynamicsConfig, resolve_path: Callable[[str], Path]) -> list[str]:
    auth = config.auth
    problems: list[str] = []
    if not GUID.match(auth.client_id.strip()):
        problems.append(f"{where}.client_id: required, the app registration's application id (a GUID)")
    needs_tenant = not auth.token_url or "{tenant_id}" in auth.token_url
    if needs_tenant and not _TENANT.match(auth.tenant_id.strip()):
        problems.append(f"{where}.tenant_id: required, the directory id (a GUID) or its domain")
    if auth.token_url:
        problems += _url_problems(f"{where}.token_url", auth.token_url.replace("{tenant_id}", "t"), required=True)
    if auth.scope and not auth.scope.endswith("/.default"):
        problems.append(f"{where}.scope: client credentials need a `<resource>/.default` scope")
    if bool(auth.client_secret.strip()) == bool(auth.certificate_file.strip()):
        if config.enabled or auth.client_secret or auth.certificate_file:
            problems.append(f"{where}: give exactly one of client_secret (${{ENV}}) or certificate_file")
    elif auth.certificate_file:
        path = resolve_path(auth.certificate_file)
        problem = certificate_problem(path, auth.certificate_password)
        if problem:
            problems.append(f"{where}.certificate_file: {path}: {problem}")
    if auth.certificate_password and not auth.certificate_file:
        problems.append(f"{where}.certificate_password: set, but there is no certificate_file")
    return problems


def _url_problems(where: str, url: str, *, required: bool) -> list[str]:
    if not url:
        return [f"{where}: required, e.g. https://contoso.crm.dynamics.com"] if required else []
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return [f"{where}: must be an https:// URL, got {url!r}"]
    if parts.scheme == "http" and parts.hostname not in LOCAL_HOSTS:
        return [f"{where}: must use https (plain http only for 127.0.0.1/localhost)"]
    if parts.query or parts.fragment:
        return [f"{where}: no query string or fragment, got {url!r}"]
    if parts.path.rstrip("/").endswith("/api/data") or "/api/data/" in parts.path:
        return [f"{where}: give the environment URL without /api/data (api_version picks the version)"]
    return []


def _known_region(region: str) -> bool:
    import phonenumbers

    return region.upper() in phonenumbers.SUPPORTED_REGIONS
