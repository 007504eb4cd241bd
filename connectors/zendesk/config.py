"""The Zendesk connector's settings (``connectors.<name>`` with ``type: zendesk``) and their offline checks.

Types and ranges are enforced by msgspec when the config is loaded; what a
type cannot express (exactly one way to authenticate, an https URL, numeric
Zendesk ids, a real region, mapping field names the ticket body knows) is
checked by :func:`config_problems`, which `agni-bridge check` runs without
any network. `auth.api_token` and `auth.oauth_token` must be written as
``${ENV_VAR}``: the settings loader refuses literal secrets.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlsplit

import msgspec
import phonenumbers

from bridge.connector import ConnectorConfig
from bridge.settings import Base

if TYPE_CHECKING:
    from bridge.mapping import CompiledMapping

__all__ = [
    "PHONE_SPELLINGS",
    "AuthConfig",
    "MatchConfig",
    "ZendeskConfig",
    "config_problems",
    "credential_is_usable",
]

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PhoneSpelling = Literal["e164", "international", "national", "digits"]
PHONE_SPELLINGS: tuple[PhoneSpelling, ...] = ("e164", "international", "national", "digits")


class AuthConfig(Base):
    """How the bridge signs in: an API token (with the agent's email) or an OAuth access token; exactly one."""

    email: str = ""
    """The agent or admin the API token belongs to; sent as HTTP Basic `{email}/token:{api_token}`."""
    api_token: str = ""
    """An API token (Admin Center > Apps and integrations > Zendesk API). Write ${ZENDESK_API_TOKEN}."""
    oauth_token: str = ""
    """An OAuth access token, sent as `Authorization: Bearer` (what an app installed in many Zendesk
    accounts uses: Zendesk requires global OAuth for those). Write ${ZENDESK_OAUTH_TOKEN}."""


class MatchConfig(Base):
    """How the caller is found among Zendesk users, and who requests the ticket when nobody matches."""

    by: Annotated[list[Literal["email", "phone"]], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["email", "phone"]
    )
    """Identities tried in turn: Agni's `call.caller_email`, then `call.phone` (the external party)."""
    phone_spellings: Annotated[list[PhoneSpelling], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: list(PHONE_SPELLINGS)
    )
    """How a number is searched for, one users search each until one finds somebody: `e164` (+14155550100),
    `international` (+1 415-555-0100, how Zendesk shows numbers), `national` ((415) 555-0100) and `digits`
    (4155550100). Drop the spellings your account does not use to save requests."""
    on_missing: Literal["create", "fallback", "skip"] = "create"
    """No end-user matched: `create` one from the caller's name, email and phone (what Zendesk Talk does
    for an unknown caller; end-users are not billed), use `fallback_requester_id`, or write nothing."""
    fallback_requester_id: int | str | None = None
    """Requester for calls nobody matched with on_missing `fallback` (e.g. an "Unknown caller" end-user);
    also used by `create` when the call carries no email or phone to create a user from."""
    default_region: str = "US"
    """Region (ISO 3166 alpha-2) for numbers written without a country code."""


class ZendeskConfig(ConnectorConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """`type: zendesk`: each call becomes a ticket with a voice comment, requested by the matched end-user."""

    base_url: str
    """`https://{subdomain}.zendesk.com`, or any https URL in front of it (a proxy, a host-mapped domain).
    The connector adds `/api/v2/...`. Plain http only for 127.0.0.1/localhost (tests)."""
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    ca_bundle: str = ""
    """PEM bundle (or hashed-certificate directory) of the CAs to trust (a private CA, a TLS-inspecting proxy).
    Empty: the rule every connector follows (bridge/tls.py) — SSL_CERT_FILE (or SSL_CERT_DIR), else
    REQUESTS_CA_BUNDLE, else certifi's public roots. Proxy environment variables keep working."""
    match: MatchConfig = msgspec.field(default_factory=MatchConfig)
    owner_map: dict[str, int | str] = msgspec.field(default_factory=dict)
    """Agni `agent_name` (or an agent email, if your agents are named by email) -> Zendesk agent id: the
    ticket's assignee and the voice comment's `answered_by_id`, unless the mapping sets them."""
    default_owner_id: int | str | None = None
    """Agent id for agents missing from owner_map; None leaves the ticket unassigned."""
    requests_per_minute: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 200
    """Your account's API limit per minute: 200 (Team), 400 (Growth, Professional), 700 (Enterprise),
    2,500 (Enterprise Plus or the High Volume add-on). Shared by every worker and every connector on the
    same account through Redis; the bridge keeps ~5% in reserve for other integrations' bursts."""
    ticket_updates_per_minute: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 100
    """Zendesk's own limit on the Update Ticket endpoint (100 per account per minute, 300 with High Volume).
    Updates happen only on replays and after a lost answer."""
    lookup_cache_seconds: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    """How long a users search answer (including "nobody") is remembered in Redis; 0 disables the cache."""
    reconcile_settle_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 5.0
    """How long the `GET /tickets?external_id=` listing may lag behind a create (unconfirmed; the listing is
    not the search index). Bounds how long a retry waits for an earlier attempt's ticket to show up."""
    idempotency_window_seconds: Annotated[float, msgspec.Meta(ge=60, le=7 * 86400)] = 7200.0
    """How long Zendesk keeps an Idempotency-Key (about 2 hours by secondary sources; unconfirmed)."""
    batch_size: Annotated[int, msgspec.Meta(ge=1)] = 1
    """Tickets per create request. Only 1: Zendesk's bulk `tickets/create_many` runs as an asynchronous job
    without a documented Idempotency-Key, so a lost answer could not be reconciled (see the README)."""

    @property
    def owners(self) -> dict[str, int]:
        """owner_map with lower-cased keys and integer ids (check() reports the ones that are not)."""
        return {k.strip().lower(): int(v) for k, v in self.owner_map.items() if _as_id(v) is not None}

    @property
    def default_owner(self) -> int | None:
        return _as_id(self.default_owner_id)

    @property
    def fallback_requester(self) -> int | None:
        return _as_id(self.match.fallback_requester_id)

    @property
    def api_root(self) -> str:
        """`{base_url}/api/v2`."""
        return self.base_url.rstrip("/") + "/api/v2"


def _as_id(value: int | str | None) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def credential_is_usable(value: str) -> bool:
    """A credential travels in a header: non-empty printable ASCII without spaces."""
    return bool(value) and all(33 <= ord(ch) < 127 for ch in value)


def config_problems(name: str, config: ZendeskConfig, mapping: CompiledMapping | None = None) -> list[str]:
    """Problems a type check cannot catch, each as ``connectors.<name>.<key>: reason``. No network."""
    where = f"connectors.{name}"
    problems = _auth_problems(where, config.auth) + _url_problems(where, config.base_url)
    for agent, owner in config.owner_map.items():
        if _as_id(owner) is None:
            problems.append(f"{where}.owner_map.{agent}: Zendesk agent ids are positive integers, got {owner!r}")
    if config.default_owner_id not in (None, "") and config.default_owner is None:
        problems.append(f"{where}.default_owner_id: Zendesk agent ids are positive integers")
    match = config.match
    if match.fallback_requester_id not in (None, "") and config.fallback_requester is None:
        problems.append(f"{where}.match.fallback_requester_id: Zendesk user ids are positive integers")
    elif match.on_missing == "fallback" and config.fallback_requester is None:
        problems.append(f"{where}.match.fallback_requester_id: required when match.on_missing is fallback")
    if match.default_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        problems.append(f"{where}.match.default_region: unknown region {match.default_region!r} (e.g. US, GB)")
    if config.batch_size != 1:
        problems.append(
            f"{where}.batch_size: only 1 is supported: Zendesk's tickets/create_many is an asynchronous job "
            "without an Idempotency-Key, which would break exactly-once delivery"
        )
    if mapping is not None:
        from connectors.zendesk.tickets import mapping_field_problems  # the ticket shape lives there

        problems += [f"{where}.mapping: {p}" for p in mapping_field_problems(mapping)]
    return problems


def _auth_problems(where: str, auth: AuthConfig) -> list[str]:
    token, oauth = auth.api_token.strip(), auth.oauth_token.strip()
    if token and oauth:
        return [f"{where}.auth: give either email + api_token or oauth_token, not both"]
    if not token and not oauth:
        return [f"{where}.auth: required: email + api_token (${{ZENDESK_API_TOKEN}}) or oauth_token"]
    if oauth:
        if auth.email.strip():
            return [f"{where}.auth.email: only used with api_token; an OAuth token names its user itself"]
        if not credential_is_usable(oauth):
            return [f"{where}.auth.oauth_token: contains spaces, line breaks or non-ASCII characters"]
        return []
    problems = []
    if not _EMAIL.match(auth.email.strip()):
        problems.append(f"{where}.auth.email: the email of the agent the api_token belongs to, got {auth.email!r}")
    if not credential_is_usable(token):
        problems.append(f"{where}.auth.api_token: contains spaces, line breaks or non-ASCII characters")
    return problems


def _url_problems(where: str, base_url: str) -> list[str]:
    url = urlsplit(base_url)
    if url.scheme not in ("https", "http") or not url.hostname:
        return [f"{where}.base_url: must be an https:// URL such as https://acme.zendesk.com, got {base_url!r}"]
    if url.scheme == "http" and url.hostname not in _LOCAL_HOSTS:
        return [f"{where}.base_url: must use https (plain http only for 127.0.0.1/localhost)"]
    if url.query or url.fragment or url.username or url.password:
        return [f"{where}.base_url: give scheme, host and an optional path only (no query, fragment or user)"]
    if url.path.rstrip("/").endswith("/api/v2"):
        return [f"{where}.base_url: leave out /api/v2; the connector adds it"]
    return []
