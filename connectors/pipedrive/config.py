"""The Pipedrive connector's settings (``connectors.<name>`` with ``type: pipedrive``) and their offline checks.

The Structs reject unknown keys and wrong types when the config is loaded;
:func:`config_problems` adds what a type cannot express (exactly one kind of
credential, an https URL, owner ids or emails, a real time zone, a mapping
that fits the record type), for ``agni-bridge check``. Nothing here touches
the network. Credentials (``api_token``, ``oauth_token``, ``refresh_token``,
``client_secret``) must be written as ``${ENV_VAR}``: the settings loader
refuses literal secrets.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import phonenumbers

from bridge.connector import ConnectorConfig
from bridge.settings import Base

if TYPE_CHECKING:
    from bridge.mapping import CompiledMapping

__all__ = [
    "AssociateConfig",
    "AuthConfig",
    "MatchConfig",
    "PipedriveConfig",
    "RecordingConfig",
    "config_problems",
    "is_local_http",
    "token_is_usable",
]

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
PIPEDRIVE_TOKEN_URL = "https://oauth.pipedrive.com/oauth/token"  # noqa: S105 - a URL, not a secret
MAX_RECORDING_BYTES = 50_000_000
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The fields each record type cannot do without (Pipedrive answers 400 without them), for `check`.
REQUIRED_FIELDS = {
    "call_log": ("outcome", "to_phone_number", "start_time", "end_time"),
    "activity": ("due_date",),
}
# Fields only one of the two record types has: a mapping holding them was written for the other one.
ONLY_IN = {
    "call_log": ("outcome", "to_phone_number", "from_phone_number", "start_time", "end_time", "user_id"),
    "activity": ("due_date", "due_time", "done", "type", "owner_id", "participants", "busy"),
}


class AuthConfig(Base):
    """How the bridge authenticates: an API token, or an OAuth access token (optionally refreshed)."""

    api_token: str = ""
    """A user's personal API token, sent in the `x-api-token` header. Write ${PIPEDRIVE_API_TOKEN}."""
    oauth_token: str = ""
    """An OAuth access token of a Pipedrive app, sent as `Authorization: Bearer`. Write ${ENV_VAR}. Access
    tokens expire after about an hour: give refresh_token, client_id and client_secret so the bridge renews it."""
    refresh_token: str = ""
    """The OAuth refresh token (with client_id and client_secret): on a 401, or when the access token's
    `expires_in` has passed, the bridge asks `token_url` for a new access token. Write ${ENV_VAR}."""
    client_id: str = ""
    """The OAuth app's client id (for refreshing)."""
    client_secret: str = ""
    """The OAuth app's client secret (for refreshing). Write ${ENV_VAR}."""
    token_url: str = PIPEDRIVE_TOKEN_URL
    """Where access tokens are renewed (Pipedrive's OAuth server; any https URL, e.g. a proxy)."""

    @property
    def kind(self) -> str:
        return "oauth" if self.oauth_token or self.refresh_token else "api_token"

    @property
    def refreshable(self) -> bool:
        return bool(self.refresh_token and self.client_id and self.client_secret)


class MatchConfig(Base):
    """How the person on the call is found among Pipedrive persons, and what happens when nobody matches."""

    by: Annotated[list[Literal["email", "phone"]], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["email", "phone"]
    )
    """Identities tried in turn: Agni's `call.caller_email` (exact email search), then `call.phone` (the
    external party: searched as E.164 exactly and as national digits loosely, each hit verified)."""
    on_missing: Literal["unlinked", "create_person", "skip"] = "unlinked"
    """No person matched: `unlinked` logs the call without a person (default), `create_person` creates one
    from the caller's name, number and email (once per person, however many calls), `skip` writes nothing."""
    default_region: str = "US"
    """Region (ISO 3166 alpha-2) for numbers written without a country code."""
    person_fields: dict[str, str | int | bool] = msgspec.field(default_factory=dict)
    """Extra fields for persons the bridge creates (e.g. visible_to: 3); they override the mapping's
    `new_contact` section."""


class AssociateConfig(Base):
    """What besides the person a call is linked to (each costs Pipedrive tokens)."""

    organization: bool = False
    """Also link the call to the person's organization (from the person search; no extra request)."""
    deal: bool = False
    """Also link the call to the person's newest open deal: one deal list request per person, cached like
    person lookups. Skipped when the mapping sets `lead_id` (Pipedrive takes a deal or a lead, not both)."""


class RecordingConfig(Base):
    """Where the call recording goes: a link in the note (default), or the audio file on the call log."""

    mode: Literal["link", "attach"] = "link"
    """`link`: the mapping puts `recording_url` in the note. `attach` (record: call_log only): also download the
    file and upload it to the call log (POST /v1/callLogs/{id}/recordings), so it plays after Agni's link expires;
    any failure leaves the link and adds a note to the delivery."""
    recording_hosts: list[str] = msgspec.field(default_factory=lambda: ["storage.agniai.com", "*.agniai.com"])
    """Hosts recordings may be downloaded from (`*.example.com` for subdomains); anything else is refused."""
    max_bytes: Annotated[int, msgspec.Meta(ge=1, le=MAX_RECORDING_BYTES)] = 25_000_000
    """Larger recordings are not uploaded (the link stays)."""
    allow_private: bool = False
    """Allow downloads from private, loopback and link-local addresses. Only for tests: it opens SSRF."""


class PipedriveConfig(ConnectorConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """`type: pipedrive`: each call becomes a call log (or a done call activity) on the matched person."""

    base_url: str = "https://api.pipedrive.com"
    """The API host: your company domain, https://<company>.pipedrive.com (faster than the default), or a proxy.
    Only scheme, host and port; plain http is accepted only for 127.0.0.1/localhost (tests)."""
    api_domain: str = ""
    """OAuth only: the `api_domain` of your token response (https://<company>.pipedrive.com). When given it is the
    API host instead of base_url; a refresh answering another api_domain moves the bridge there."""
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    """Exactly one of `api_token` or `oauth_token` (the latter with refresh settings, ideally)."""
    record: Literal["call_log", "activity"] = "call_log"
    """`call_log` (POST /v1/callLogs: outcome, numbers, duration, shown by Pipedrive's caller UI) or `activity`
    (POST /api/v2/activities: a done `call` activity). An activity needs an activity mapping
    (`mapping: pipedrive_activity.yaml`)."""
    ca_bundle: str = ""
    """PEM bundle (or hashed-certificate directory) of the CAs to trust (a private CA, a TLS-inspecting proxy), for
    the API, token refreshes and recording downloads. Empty: the rule every connector follows (bridge/tls.py)."""
    match: MatchConfig = msgspec.field(default_factory=MatchConfig)
    owner_map: dict[str, str | int] = msgspec.field(default_factory=dict)
    """Agni `agent_name` (or `agent_email`) -> Pipedrive user id, or the user's login email (looked up once with
    GET /v1/users/find). Owns the call and the follow-up; logging for other users needs an admin token."""
    default_owner_id: str | int | None = None
    """Owner for agents missing from owner_map (after an `agent_email` lookup); None: the token's own user."""
    associate: AssociateConfig = msgspec.field(default_factory=AssociateConfig)
    requests_per_2s: Annotated[int, msgspec.Meta(ge=1, le=2_000)] = 20
    """The token's burst limit per rolling 2 s (API token: Lite 20, Growth 40, Premium 100, Ultimate 120; OAuth
    apps 4x that). Shared by every worker through Redis; the bridge keeps ~10% in reserve."""
    search_per_2s: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    """Search requests per rolling 2 s (Pipedrive allows 10 on every plan)."""
    daily_reset_timezone: str = "UTC"
    """Where the company's daily token budget resets at midnight (Pipedrive's server time zone); when the budget
    is spent the connector pauses until then and calls stay queued."""
    lookup_cache_seconds: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    """How long a person, deal or user lookup (including "no match") is remembered in Redis; 0 disables it."""
    search_settle_seconds: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    """How long a new record may take to show in Pipedrive's listings and search; bounds the exactly-once
    guard's wait after a lost answer before it writes again."""
    reconcile_max_pages: Annotated[int, msgspec.Meta(ge=1, le=1_000)] = 20
    """After a lost answer, how many pages (50 call logs each, 20 tokens a page) of the token user's call logs
    are read looking for the call's marker before it counts as not written."""
    recording: RecordingConfig = msgspec.field(default_factory=RecordingConfig)

    @property
    def api_base(self) -> str:
        """Where API requests go: api_domain (OAuth), else base_url."""
        return (self.api_domain or self.base_url).rstrip("/")

    @property
    def default_owner(self) -> str | None:
        return None if self.default_owner_id in (None, "") else str(self.default_owner_id).strip()


def token_is_usable(token: str) -> bool:
    """A credential must be non-empty printable ASCII without spaces (it travels in a header)."""
    return bool(token) and all(33 <= ord(ch) < 127 for ch in token)


def is_local_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in LOCAL_HOSTS


def config_problems(name: str, config: PipedriveConfig, mapping: CompiledMapping | None) -> list[str]:
    """Problems a type check cannot catch, each as ``connectors.<name>.<key>: reason``. No network."""
    where = f"connectors.{name}"
    problems = _auth_problems(f"{where}.auth", config)
    problems += _url_problem(f"{where}.base_url", config.base_url, host_only=True)
    if config.api_domain:
        problems += _url_problem(f"{where}.api_domain", config.api_domain, host_only=True)
        if config.auth.kind != "oauth":
            problems.append(f"{where}.api_domain: only for OAuth (API tokens use base_url)")
    if config.auth.refresh_token or config.auth.token_url != PIPEDRIVE_TOKEN_URL:
        problems += _url_problem(f"{where}.auth.token_url", config.auth.token_url, host_only=False)
    for agent, owner in config.owner_map.items():
        if not _is_owner(owner):
            problems.append(f"{where}.owner_map.{agent}: a Pipedrive user id (a number) or email, got {owner!r}")
    if config.default_owner is not None and not config.default_owner.isdigit():
        problems.append(f"{where}.default_owner_id: user ids are numeric, got {config.default_owner!r}")
    if config.match.default_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        problems.append(f"{where}.match.default_region: unknown region {config.match.default_region!r} (e.g. US, GB)")
    try:
        ZoneInfo(config.daily_reset_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"{where}.daily_reset_timezone: unknown time zone {config.daily_reset_timezone!r}")
    if config.recording.mode == "attach":
        if config.record != "call_log":
            problems.append(f"{where}.recording.mode: attach uploads to a call log; record: activity keeps links")
        if not config.recording.recording_hosts:
            problems.append(f"{where}.recording.recording_hosts: attach needs at least one allowed host")
    if mapping is None:
        problems.append(f"{where}.mapping: Pipedrive needs a mapping (pipedrive_call.yaml, or pipedrive_activity.yaml "
                        "for record: activity); null gives it no fields")  # fmt: skip
    else:
        problems += mapping_problems(f"{where}.mapping", config.record, mapping)
    return problems


def mapping_problems(where: str, record: str, mapping: CompiledMapping) -> list[str]:
    """A mapping written for the other record type, or missing a field Pipedrive requires."""
    fields = set(mapping.spec.fields)
    other = "activity" if record == "call_log" else "call_log"
    foreign = sorted(fields & set(ONLY_IN[other]) - set(ONLY_IN[record]))
    if foreign:
        hint = "pipedrive_activity.yaml" if record == "activity" else "pipedrive_call.yaml"
        return [
            f"{where}: {mapping.location} has {other} fields ({', '.join(foreign)}) but record is {record}; "
            f"use a mapping written for {record}, such as {hint}"
        ]
    missing = [field for field in REQUIRED_FIELDS[record] if field not in fields]
    problems = [f"{where}: {mapping.location} has no `{field}` field, which a {record} requires" for field in missing]
    if {"deal_id", "lead_id"} <= fields:
        problems.append(f"{where}: {mapping.location} sets both deal_id and lead_id; Pipedrive takes one of them")
    return problems


def _auth_problems(where: str, config: PipedriveConfig) -> list[str]:
    auth = config.auth
    if not config.enabled:
        return []
    if auth.api_token and (auth.oauth_token or auth.refresh_token):
        return [f"{where}: give api_token or oauth_token, not both"]
    if not auth.api_token and not auth.oauth_token and not auth.refresh_token:
        return [f"{where}.api_token: required when the connector is enabled; write ${{PIPEDRIVE_API_TOKEN}} "
                "(or oauth_token for an OAuth app)"]  # fmt: skip
    problems = []
    for key in ("api_token", "oauth_token", "refresh_token", "client_secret"):
        value = getattr(auth, key)
        if value and not token_is_usable(value):
            problems.append(f"{where}.{key}: contains spaces, line breaks or non-ASCII characters")
    refresh = {key: getattr(auth, key) for key in ("refresh_token", "client_id", "client_secret")}
    if any(refresh.values()) and not all(refresh.values()):
        missing = ", ".join(key for key, value in refresh.items() if not value)
        problems.append(f"{where}: refreshing an OAuth token needs refresh_token, client_id and client_secret "
                        f"(missing: {missing})")  # fmt: skip
    return problems


def _url_problem(where: str, url: str, *, host_only: bool) -> list[str]:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return [f"{where}: must be an https:// URL, got {url!r}"]
    if parts.scheme == "http" and parts.hostname not in LOCAL_HOSTS:
        return [f"{where}: must use https (plain http only for 127.0.0.1/localhost)"]
    if host_only and (parts.path.strip("/") or parts.query):
        return [f"{where}: give only scheme and host (the bridge adds /v1 and /api/v2 itself)"]
    return []


def _is_owner(owner: str | int) -> bool:
    text = str(owner).strip()
    return (text.isdigit() and int(text) > 0) or bool(_EMAIL.match(text))
