"""The HubSpot connector's settings (``connectors.<name>`` with ``type: hubspot``) and their offline checks.

Types and ranges are enforced by msgspec when the config is loaded; what a
type cannot express (a token that must be present, a URL scheme, numeric
owner ids, a real time zone) is checked by :func:`config_problems`, which
`agni-bridge check` runs without any network.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import phonenumbers

from bridge.connector import ConnectorConfig
from bridge.settings import Base

__all__ = ["AssociateConfig", "HubSpotConfig", "MatchConfig", "config_problems", "token_is_usable"]

_PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class MatchConfig(Base):
    """How the person on the call is found among HubSpot contacts."""

    by: Annotated[list[Literal["email", "phone"]], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["email", "phone"]
    )
    """Identities to match on, best first: Agni's `call.caller_email` and `call.phone` (the external party)."""
    on_missing: Literal["unassociated", "create_contact", "skip"] = "unassociated"
    """No contact matched: log the call without one (default), create a contact, or write nothing.

    `create_contact` creates a contact for every unknown number. In HubSpot such
    contacts may count as *marketing contacts* (billed per contact on Marketing
    Hub tiers) and a campaign to a cold list can add thousands: choose it deliberately.
    """
    default_region: str = "US"
    """Region (ISO 3166 alpha-2) for numbers written without a country code, for E.164 matching."""
    contact_properties: dict[str, str] = msgspec.field(default_factory=dict)
    """Extra properties for contacts the bridge creates (e.g. lifecyclestage: lead, hs_lead_status: NEW);
    they override the mapping's `new_contact` section."""


class AssociateConfig(Base):
    """Which records besides the contact a call is associated with (each costs HubSpot requests)."""

    company: bool = False
    """Also associate the call with the contact's primary company (type 182); no extra request."""
    deal: bool = False
    """Also associate the call with the contact's most recently created open deal (type 206): one deal search,
    cached like contact lookups."""
    closed_deal_stages: list[str] = msgspec.field(default_factory=lambda: ["closedwon", "closedlost"])
    """Deal stages that count as closed (the default pipeline's; add your custom pipelines' closed stages)."""


class HubSpotConfig(ConnectorConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Settings of one HubSpot connector."""

    access_token: str = ""
    """Private-app token or service key, sent as `Authorization: Bearer`. Must come from ${ENV}."""
    base_url: str = "https://api.hubapi.com"
    """HubSpot's API host; plain http is accepted only for 127.0.0.1/localhost (tests, a local proxy)."""
    ca_bundle: str = ""
    """PEM bundle (or hashed-certificate directory) of the CAs to trust (a private CA, a TLS-inspecting proxy).
    Empty: the rule every connector follows (bridge/tls.py) — SSL_CERT_FILE (or SSL_CERT_DIR), else
    REQUESTS_CA_BUNDLE, else certifi's public roots. Proxy environment variables keep working."""
    objects_path: str = "/crm/v3/objects"
    """CRM objects path; date-versioned portals use e.g. `/crm/objects/2026-03`. The properties path is derived
    (`/objects` → `/properties`), and so is the associations path (v3 → v4; date-versioned paths serve both)."""
    call_id_property: str = "agni_call_session_id"
    """Custom text property holding Agni's call_session_id on calls, and `<id>:follow_up` on tasks.
    `agni-bridge setup` creates it on both object types."""
    match: MatchConfig = msgspec.field(default_factory=MatchConfig)
    owner_map: dict[str, str | int] = msgspec.field(default_factory=dict)
    """Agni `agent_name` → HubSpot owner id, used for calls and tasks unless the mapping sets hubspot_owner_id."""
    default_owner_id: str | int | None = None
    """Owner for agents missing from owner_map; None leaves the owner unset."""
    associate: AssociateConfig = msgspec.field(default_factory=AssociateConfig)
    requests_per_10s: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    """The app's ten-second budget (100 on Free/Starter, 190 on Pro/Enterprise). Shared by every worker through
    Redis; the bridge keeps ~5% and half a second in reserve."""
    search_per_second: Annotated[int, msgspec.Meta(ge=1, le=100)] = 4
    """Search budget per second (HubSpot allows 5 per account; 4 leaves room for other integrations)."""
    lookup_cache_seconds: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    """How long a contact lookup (including "no match") is remembered in Redis; 0 disables the cache."""
    daily_reset_timezone: str = "UTC"
    """The HubSpot account's time zone: its daily request cap resets at midnight there, and a DAILY 429
    pauses this connector until then."""
    search_settle_seconds: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    """How long HubSpot's search index may lag behind a create; bounds the exactly-once guard's wait."""
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 100
    """Most calls (or tasks) per batch create/update request, and most deliveries per shared contact search.
    Deliveries running at the same time share requests, so a burst costs a small fraction of a request per
    call; a lone call is still sent at once, as a single-object request. 1 turns batching off."""
    batch_linger_seconds: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.05
    """A batch goes out once no delivery has joined it for this long (or when it is full). A lone call waits
    this long at each step (lookup, call, task); under load a longer lull fills batches better, and HubSpot's
    quota, not this wait, is what limits throughput."""
    batch_max_wait_seconds: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.2
    """...and at the latest this long after its first delivery joined, however busy it is."""

    @property
    def owners(self) -> dict[str, str]:
        return {agent: str(owner).strip() for agent, owner in self.owner_map.items()}

    @property
    def default_owner(self) -> str | None:
        return None if self.default_owner_id in (None, "") else str(self.default_owner_id).strip()


def token_is_usable(token: str) -> bool:
    """A bearer token must be non-empty printable ASCII without spaces (it travels in a header)."""
    return bool(token) and all(33 <= ord(ch) < 127 for ch in token)


def config_problems(name: str, config: HubSpotConfig) -> list[str]:
    """Problems a type check cannot catch, each as ``connectors.<name>.<key>: reason``. No network."""
    where = f"connectors.{name}"
    problems: list[str] = []
    if config.enabled and not config.access_token.strip():
        problems.append(f"{where}.access_token: required when the connector is enabled; write ${{HUBSPOT_TOKEN}}")
    elif config.access_token and not token_is_usable(config.access_token):
        problems.append(f"{where}.access_token: contains spaces, line breaks or non-ASCII characters")
    url = urlsplit(config.base_url)
    if url.scheme not in ("https", "http") or not url.hostname:
        problems.append(f"{where}.base_url: must be an https:// URL, got {config.base_url!r}")
    elif url.scheme == "http" and url.hostname not in _LOCAL_HOSTS:
        problems.append(f"{where}.base_url: must use https (plain http only for 127.0.0.1/localhost)")
    if url.path.strip("/") or url.query:
        problems.append(f"{where}.base_url: give only scheme and host; the path belongs in objects_path")
    if not config.objects_path.startswith("/") or "/objects" not in config.objects_path:
        problems.append(f"{where}.objects_path: must start with / and contain /objects, e.g. /crm/v3/objects")
    if not _PROPERTY_NAME.match(config.call_id_property):
        problems.append(f"{where}.call_id_property: HubSpot property names are lowercase letters, digits and _")
    for agent, owner in config.owners.items():
        if not owner.isdigit():
            problems.append(f"{where}.owner_map.{agent}: owner ids are numeric, got {owner!r}")
    if config.default_owner is not None and not config.default_owner.isdigit():
        problems.append(f"{where}.default_owner_id: owner ids are numeric, got {config.default_owner!r}")
    if config.match.default_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        problems.append(f"{where}.match.default_region: unknown region {config.match.default_region!r} (e.g. US, GB)")
    try:
        ZoneInfo(config.daily_reset_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"{where}.daily_reset_timezone: unknown time zone {config.daily_reset_timezone!r}")
    for key in config.match.contact_properties:
        if not _PROPERTY_NAME.match(key):
            problems.append(f"{where}.match.contact_properties.{key}: not a HubSpot property name")
    return problems
