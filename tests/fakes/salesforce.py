"""A fake Salesforce org that simple-salesforce (and the bridge) really talk to over TLS.

It speaks the REST shapes the bridge depends on — OAuth token flows, SOQL/SOSL, sObject CRUD,
upsert by external id, sObject Collections, ContentVersion uploads, limits — with Salesforce's
status codes, error arrays and field rules (create-only fields, lengths, restricted picklists,
unique external ids), so a test fails here the way the bridge would fail against a real org.
REFERENCE.md §2–3 lists the contracts; the query languages live in :mod:`tests.fakes.sfquery`.

Typical use::

    pki = make_test_pki(tmp_path)
    with FakeSalesforce(ssl_context=pki.server_context(), api_version="62.0") as fake:
        contact_id = fake.add_contact(LastName="Ada", Phone="(415) 555-0100")
        token = fake.add_session()
        session = requests.Session(); session.trust_env = False; session.verify = str(pki.ca_path)
        sf = Salesforce(instance_url=fake.url, session_id=token, session=session, version="62.0")

Everything runs under ``self.lock`` (one request at a time), which is what makes the unique
external id hold under concurrent upserts. Faults from the base class apply before this code runs.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
import html
import itertools
import json
import re
import secrets
import ssl
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs, unquote

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.fakes.httpserver import FakeRequest, FakeResponse, FakeServer
from tests.fakes.sfquery import (
    ID_TYPES,
    NUMBER_TYPES,
    TEXT_TYPES,
    Field,
    SfError,
    SObjectSchema,
    is_salesforce_id,
    parse_datetime,
    run_soql,
    run_sosl,
)

__all__ = ["FakeSalesforce", "salesforce_id", "sf_datetime"]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
COLLECTION_LIMIT = 200
_DATA_PATH = re.compile(r"^/services/data(?:/v(?P<version>\d+\.\d+))?(?P<rest>/.*)?$")
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SUFFIX_ALPHABET = string.ascii_uppercase + "012345"
_ID_COUNTER = itertools.count(1)  # shared by all fakes, so ids never repeat within a test run
_SEARCHABLE_BY_DEFAULT = ("Account", "Contact", "Lead")
_PLURALS = {
    "tasks": "Task",
    "contacts": "Contact",
    "leads": "Lead",
    "users": "User",
    "accounts": "Account",
    "content_versions": "ContentVersion",
    "content_documents": "ContentDocument",
    "content_document_links": "ContentDocumentLink",
}


# ---------------------------------------------------------------------------------------------
# Ids and timestamps
# ---------------------------------------------------------------------------------------------


def salesforce_id(prefix: str, number: int) -> str:
    """An 18-character id: 3-char key prefix, pod, 9 base-62 digits, then the case-safe checksum."""
    digits = ""
    while number:
        number, rem = divmod(number, 62)
        digits = _BASE62[rem] + digits
    id15 = f"{prefix}Hn0{digits.rjust(9, '0')}"
    suffix = ""
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        bits = sum(1 << i for i, char in enumerate(chunk) if char in string.ascii_uppercase)
        suffix += _SUFFIX_ALPHABET[bits]
    return id15 + suffix


def sf_datetime(value: dt.datetime, *, millis: bool = False) -> str:
    """Salesforce's wire format for datetimes: ``2026-11-28T19:04:41.000+0000`` (always UTC)."""
    value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)  # naive = UTC
    ms = value.microsecond // 1000 if millis else 0
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}+0000"


# ---------------------------------------------------------------------------------------------
# Schemas (what describe returns and what writes are checked against)
# ---------------------------------------------------------------------------------------------

_RO = {"createable": False, "updateable": False}


def _system_fields() -> list[Field]:
    return [
        Field("Id", "id", 18, label="Record ID", nillable=False, **_RO),
        Field("IsDeleted", "boolean", label="Deleted", nillable=False, **_RO),
        Field("CreatedDate", "datetime", label="Created Date", nillable=False, **_RO),
        Field("CreatedById", "reference", 18, label="Created By ID", reference_to=("User",), nillable=False, **_RO),
        Field("LastModifiedDate", "datetime", label="Last Modified Date", nillable=False, **_RO),
        Field(
            "LastModifiedById",
            "reference",
            18,
            label="Last Modified By ID",
            reference_to=("User",),
            nillable=False,
            **_RO,
        ),
        Field("SystemModstamp", "datetime", label="System Modstamp", nillable=False, **_RO),
    ]


def _owner() -> Field:
    # Not nillable, but defaulted to the calling user, as Salesforce does.
    return Field("OwnerId", "reference", 18, label="Owner ID", reference_to=("User", "Group"), nillable=False)


def _person_fields() -> list[Field]:
    return [
        Field("FirstName", "string", 40, label="First Name"),
        Field("LastName", "string", 80, label="Last Name", nillable=False),
        Field("Name", "string", 121, label="Full Name", name_field=True, **_RO),
        Field("Title", "string", 128),
        Field("Email", "email", 80),
        Field("Phone", "phone", 40, label="Business Phone"),
        Field("MobilePhone", "phone", 40, label="Mobile Phone"),
    ]


def _default_schemas() -> dict[str, SObjectSchema]:
    task = SObjectSchema("Task", "00T", "Task", searchable=True)
    task.add(
        *_system_fields(),
        Field("Subject", "combobox", 255, picklist_values=("Call", "Send Letter", "Send Quote", "Other")),
        Field("Description", "textarea", 32000, label="Comments"),
        Field(
            "TaskSubtype",
            "picklist",
            40,
            label="Task Subtype",
            updateable=False,
            restricted_picklist=True,
            picklist_values=("Task", "Email", "LinkedIn", "ListEmail", "Cadence", "Call"),
            default="Task",
        ),
        Field(
            "Status",
            "picklist",
            40,
            nillable=False,
            default="Not Started",
            picklist_values=("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"),
        ),
        Field("Priority", "picklist", 40, nillable=False, default="Normal", picklist_values=("High", "Normal", "Low")),
        Field("IsClosed", "boolean", label="Closed", nillable=False, **_RO),
        Field("CallDurationInSeconds", "int", label="Call Duration"),
        Field(
            "CallType",
            "picklist",
            40,
            label="Call Type",
            restricted_picklist=True,
            picklist_values=("Inbound", "Internal", "Outbound"),
        ),
        Field("CallDisposition", "string", 255, label="Call Result"),
        Field("CallObject", "string", 255, label="Call Object Identifier"),
        Field("ActivityDate", "date", label="Due Date Only"),
        Field("WhoId", "reference", 18, label="Name ID", reference_to=("Contact", "Lead")),
        Field("WhatId", "reference", 18, label="Related To ID", reference_to=("Account", "Opportunity", "Case")),
        Field("OwnerId", "reference", 18, label="Assigned To ID", reference_to=("User", "Group"), nillable=False),
        Field("Type", "picklist", 40, picklist_values=("Call", "Email", "Meeting", "Other")),
        Field("Agni_Call_Session_Id__c", "string", 255, label="Agni Call Session Id", external_id=True, unique=True),
        Field("Agni_Recording_URL__c", "url", 255, label="Agni Recording URL"),
        Field("Sentiment__c", "string", 40, label="Sentiment"),
    )
    contact = SObjectSchema("Contact", "003", "Contact")
    contact.add(
        *_system_fields(),
        *_person_fields(),
        _owner(),
        Field("HomePhone", "phone", 40, label="Home Phone"),
        Field("OtherPhone", "phone", 40, label="Other Phone"),
        Field("AccountId", "reference", 18, label="Account ID", reference_to=("Account",)),
    )
    lead = SObjectSchema("Lead", "00Q", "Lead")
    lead.add(
        *_system_fields(),
        *_person_fields(),
        _owner(),
        Field("Company", "string", 255, nillable=False),
        Field(
            "Status",
            "picklist",
            40,
            nillable=False,
            default="Open - Not Contacted",
            picklist_values=(
                "Open - Not Contacted",
                "Working - Contacted",
                "Closed - Converted",
                "Closed - Not Converted",
            ),
        ),
        Field("IsConverted", "boolean", label="Converted", nillable=False, default=False, updateable=False),
        Field("ConvertedContactId", "reference", 18, label="Converted Contact ID", reference_to=("Contact",), **_RO),
    )
    account = SObjectSchema("Account", "001", "Account")
    account.add(
        *_system_fields(),
        _owner(),
        Field("Name", "string", 255, label="Account Name", nillable=False, name_field=True),
        Field("Phone", "phone", 40, label="Account Phone"),
        Field("Website", "url", 255),
    )
    user = SObjectSchema("User", "005", "User")
    user.add(
        *_system_fields(),
        *_person_fields(),
        Field("Username", "string", 80, nillable=False, unique=True),
        Field("IsActive", "boolean", label="Active", nillable=False, default=True),
    )
    version = SObjectSchema("ContentVersion", "068", "Content Version", searchable=False)
    version.add(
        *_system_fields(),
        _owner(),
        Field("Title", "string", 255),
        Field("PathOnClient", "string", 500, label="Path On Client", nillable=False, updateable=False),
        Field("VersionData", "base64", label="Version Data", nillable=False, updateable=False),
        Field("Description", "textarea", 1000),
        Field(
            "FirstPublishLocationId",
            "reference",
            18,
            label="First Publish Location ID",
            updateable=False,
            reference_to=("Account", "Contact", "Lead", "Task", "User", "Opportunity", "Case"),
        ),
        Field(
            "ContentDocumentId", "reference", 18, label="ContentDocument ID", reference_to=("ContentDocument",), **_RO
        ),
        Field("FileExtension", "string", 40, label="File Extension", **_RO),
        Field("FileType", "string", 20, label="File Type", **_RO),
        Field("ContentSize", "int", label="Size", **_RO),
        Field("VersionNumber", "string", 20, label="Version Number", **_RO),
        Field("IsLatest", "boolean", label="Is Latest", **_RO),
    )
    document = SObjectSchema("ContentDocument", "069", "Content Document", searchable=False)
    document.add(
        *_system_fields(),
        _owner(),
        Field("Title", "string", 255),
        Field("LatestPublishedVersionId", "reference", 18, reference_to=("ContentVersion",), **_RO),
        Field("FileExtension", "string", 40, **_RO),
        Field("ContentSize", "int", **_RO),
    )
    link = SObjectSchema("ContentDocumentLink", "06A", "Content Document Link", searchable=False)
    link.add(
        *_system_fields(),
        Field("ContentDocumentId", "reference", 18, reference_to=("ContentDocument",), nillable=False),
        Field(
            "LinkedEntityId",
            "reference",
            18,
            reference_to=("Account", "Contact", "Lead", "Task", "User"),
            nillable=False,
        ),
        Field("ShareType", "picklist", 40, picklist_values=("V", "C", "I"), default="V"),
        Field("Visibility", "picklist", 40, picklist_values=("AllUsers", "InternalUsers"), default="AllUsers"),
    )
    return {s.name.lower(): s for s in (task, contact, lead, account, user, version, document, link)}


# ---------------------------------------------------------------------------------------------
# Auth state
# ---------------------------------------------------------------------------------------------


@dataclass
class _Session:
    user_id: str
    expires_at: float | None


@dataclass
class _Client:
    consumer_key: str
    consumer_secret: str | None = None
    public_key: Any = None  # for the JWT bearer flow
    run_as: str | None = None  # user id for client_credentials


class _OAuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description = error, description


class _Source:
    """The :class:`~tests.fakes.sfquery.RecordSource` view of the store for one request's API version."""

    def __init__(self, fake: FakeSalesforce, version: str) -> None:
        self.fake, self.version = fake, version

    def schema(self, sobject: str) -> SObjectSchema | None:
        return self.fake._schemas.get(sobject.lower())

    def rows(self, schema: SObjectSchema) -> list[dict[str, Any]]:
        rows = self.fake._store[schema.name].values()
        return sorted(rows, key=lambda r: self.fake._modseq[r["Id"]])  # oldest change first: a stable tie order

    def attributes(self, schema: SObjectSchema, record: dict[str, Any]) -> dict[str, str]:
        return {"type": schema.name, "url": f"/services/data/v{self.version}/sobjects/{schema.name}/{record['Id']}"}


# ---------------------------------------------------------------------------------------------
# The fake
# ---------------------------------------------------------------------------------------------


class FakeSalesforce(FakeServer):
    """A Salesforce org over HTTP(S). See the module docstring; public helpers are listed below.

    State a test may read: ``tasks``, ``contacts``, ``leads``, ``accounts``, ``users``,
    ``content_versions`` (copies, creation order; ``VersionData`` is the decoded ``bytes``),
    ``api_usage`` (data requests counted against ``daily_limit``), ``requests`` (a Counter keyed by
    normalised routes such as ``"PATCH /sobjects/Task/{ext}"``), ``default_user_id``.
    Knobs: ``daily_limit``, ``session_seconds`` (None = sessions never expire), ``jwt_audiences``,
    ``clock`` (a callable returning an aware datetime).
    """

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, api_version: str = "62.0", daily_limit: int = 15000
    ) -> None:
        super().__init__(ssl_context=ssl_context)
        self.api_version = api_version
        self.daily_limit = daily_limit
        self.api_usage = 0
        self.session_seconds: float | None = None
        self.jwt_audiences = {"https://login.salesforce.com", "https://test.salesforce.com"}
        self.clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
        self.org_id = salesforce_id("00D", next(_ID_COUNTER))
        self._schemas = _default_schemas()
        self._store: dict[str, dict[str, dict[str, Any]]] = {s.name: {} for s in self._schemas.values()}
        self._blobs: dict[str, bytes] = {}  # ContentVersion id -> VersionData
        self._modseq: dict[str, int] = {}  # record id -> sequence number of its last change
        self._seq = itertools.count()
        self._sessions: dict[str, _Session] = {}
        self._clients: dict[str, _Client] = {}
        self._passwords: dict[str, tuple[str, str | None]] = {}  # user id -> (password, security token)
        # The API user every session runs as by default; it created itself.
        self.default_user_id = ""
        self.default_user_id = self.add_user("integration@agni.test", FirstName="Integration", LastName="User")
        self._store["User"][self.default_user_id].update(
            CreatedById=self.default_user_id, LastModifiedById=self.default_user_id
        )

    # =========================================================================================
    # Test-facing helpers
    # =========================================================================================

    def add_record(self, sobject: str, **fields: Any) -> str:
        """Seed a record directly, bypassing API validation (so tests can create duplicates or set
        ``CreatedDate``/``LastModifiedDate``). Unknown field names still raise ``ValueError``."""
        with self.lock:
            schema = self._schema_or_raise(sobject)
            record = self._new_record(schema, self.default_user_id)
            record.update(_seed_values(schema, fields))
            self._finish(schema, record)
            return record["Id"]

    def add_contact(self, **fields: Any) -> str:
        return self.add_record("Contact", **{"LastName": "Test", **fields})

    def add_lead(self, **fields: Any) -> str:
        return self.add_record("Lead", **{"LastName": "Test", "Company": "Acme", **fields})

    def add_account(self, **fields: Any) -> str:
        return self.add_record("Account", **{"Name": "Acme", **fields})

    def add_task(self, **fields: Any) -> str:
        """Seed a Task without validation — e.g. two with the same external id, for the 300 case."""
        return self.add_record("Task", **fields)

    def add_user(
        self,
        username: str | None = None,
        *,
        password: str | None = None,
        security_token: str | None = None,
        **fields: Any,
    ) -> str:
        """Add a User; ``password`` (+ ``security_token``) enable the password and SOAP logins."""
        with self.lock:
            username = username or f"user{next(_ID_COUNTER)}@agni.test"
            local = username.split("@")[0]
            fields = {"LastName": local, "Email": username, **fields}
            user_id = self.add_record("User", Username=username, **fields)
            if password is not None:
                self._passwords[user_id] = (password, security_token)
            return user_id

    def add_field(self, sobject: str, name: str, type: str, length: int = 0, **props: Any) -> Field:
        """Add a (custom) field to an sObject's describe; ``props`` are :class:`Field` attributes."""
        with self.lock:
            schema = self._schema_or_raise(sobject)
            new = Field(name, type, length, **props)
            schema.add(new)
            for record in self._store[schema.name].values():
                record.setdefault(new.name, new.default)
            return new

    def add_task_field(self, name: str, type: str, length: int = 0, **props: Any) -> Field:
        return self.add_field("Task", name, type, length, **props)

    def schema(self, sobject: str) -> SObjectSchema:
        """The live schema of an sObject (mutating it changes what describe and writes accept)."""
        return self._schema_or_raise(sobject)

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Copies of the stored records of one type, in creation order."""
        with self.lock:
            schema = self._schema_or_raise(_PLURALS.get(sobject, sobject))
            out = [dict(r) for r in self._store[schema.name].values()]
            if schema.name == "ContentVersion":
                for record in out:
                    record["VersionData"] = self._blobs.get(record["Id"])
            return out

    def record(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        """A copy of one stored record (15- or 18-character id), or None."""
        return next((r for r in self.records(sobject) if r["Id"][:15] == record_id[:15]), None)

    def find(self, sobject: str, **fields: Any) -> list[dict[str, Any]]:
        """Stored records whose fields equal all the given values (exact comparison)."""
        return [r for r in self.records(sobject) if all(r.get(k) == v for k, v in fields.items())]

    def update_record(self, sobject: str, record_id: str, **fields: Any) -> None:
        """Change a record as a person in the Salesforce UI would (bumps LastModifiedDate unless given)."""
        with self.lock:
            schema = self._schema_or_raise(sobject)
            record = self._find_by_id(schema, record_id)
            if record is None:
                raise KeyError(record_id)
            now = sf_datetime(self.clock())
            record.update({"LastModifiedDate": now, "SystemModstamp": now, **_seed_values(schema, fields)})
            self._touch(schema, record)

    def count(self, kind: str) -> int:
        """How many records of an sObject type are stored: ``count("Task")`` (or ``count("tasks")``)."""
        with self.lock:
            return len(self._store[self._schema_or_raise(_PLURALS.get(kind, kind)).name])

    @property
    def tasks(self) -> list[dict[str, Any]]:
        return self.records("Task")

    @property
    def contacts(self) -> list[dict[str, Any]]:
        return self.records("Contact")

    @property
    def leads(self) -> list[dict[str, Any]]:
        return self.records("Lead")

    @property
    def accounts(self) -> list[dict[str, Any]]:
        return self.records("Account")

    @property
    def users(self) -> list[dict[str, Any]]:
        return self.records("User")

    @property
    def content_versions(self) -> list[dict[str, Any]]:
        return self.records("ContentVersion")

    # -- auth helpers ---------------------------------------------------------------------------

    def add_session(self, token: str | None = None, *, user_id: str | None = None) -> str:
        """Accept ``token`` (or a new one) as a valid session of ``user_id`` (default: the integration user)."""
        with self.lock:
            token = token or self._new_token()
            expires = time.monotonic() + self.session_seconds if self.session_seconds else None
            self._sessions[token] = _Session(user_id or self.default_user_id, expires)
            return token

    def expire_sessions(self) -> None:
        """Invalidate every session issued so far; the next data request answers 401 INVALID_SESSION_ID."""
        with self.lock:
            self._sessions.clear()

    @property
    def sessions(self) -> list[str]:
        with self.lock:
            return list(self._sessions)

    def register_client(
        self,
        consumer_key: str,
        consumer_secret: str | None = None,
        *,
        public_key_pem: bytes | str | None = None,
        run_as: str | None = None,
    ) -> None:
        """Register a connected app. ``public_key_pem`` (a public key or an X.509 certificate, as
        uploaded to Salesforce) enables the JWT flow; ``run_as`` (a username or user id) enables
        client credentials."""
        with self.lock:
            key = _load_public_key(public_key_pem) if public_key_pem else None
            run_as_id = self._user_id(run_as) if run_as else None
            if run_as and run_as_id is None:
                raise ValueError(f"unknown run-as user {run_as!r}")
            self._clients[consumer_key] = _Client(consumer_key, consumer_secret, key, run_as_id)

    def register_jwt_client(self, consumer_key: str, public_key_pem: bytes | str) -> None:
        self.register_client(consumer_key, public_key_pem=public_key_pem)

    # =========================================================================================
    # Dispatch
    # =========================================================================================

    def handle(self, request: FakeRequest) -> FakeResponse:
        with self.lock:
            self.requests[route_key(request.method, request.path)] += 1
            try:
                if request.path == "/services/oauth2/token":
                    return self._oauth_token(request)
                if request.path.startswith("/services/Soap/u/"):
                    return self._soap_login(request)
                match = _DATA_PATH.match(request.path)
                if match is None:
                    raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
                if match["version"] is None:
                    if (match["rest"] or "/") != "/":
                        raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
                    return self._versions()
                return self._data_request(request, match["version"], match["rest"] or "/")
            except SfError as error:
                return FakeResponse.json(error.status, error.body())

    def _data_request(self, request: FakeRequest, version: str, rest: str) -> FakeResponse:
        if float(version) > float(self.api_version):
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        user_id = self._authenticate(request)
        if self.api_usage >= self.daily_limit:
            raise SfError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        self.api_usage += 1
        limit_header = {"Sforce-Limit-Info": f"api-usage={self.api_usage}/{self.daily_limit}"}
        try:
            response = self._route(request, version, rest, user_id)
        except SfError as error:
            return FakeResponse.json(error.status, error.body(), limit_header)
        response.headers.update(limit_header)
        return response

    def _route(self, request: FakeRequest, version: str, rest: str, user_id: str) -> FakeResponse:
        segments = [unquote(s) for s in rest.strip("/").split("/")] if rest.strip("/") else []
        method, source = request.method, _Source(self, version)
        match segments:
            case ["query" | "queryAll"]:
                _allow(method, "GET")
                return _ok(run_soql(_param(request, "q", "MALFORMED_QUERY"), source))
            case ["search"]:
                _allow(method, "GET")
                return _ok(run_sosl(_param(request, "q", "MALFORMED_SEARCH"), source, _SEARCHABLE_BY_DEFAULT))
            case ["limits"]:
                _allow(method, "GET")
                return _ok(self._limits())
            case ["sobjects"]:
                _allow(method, "GET")
                return _ok(
                    {
                        "encoding": "UTF-8",
                        "maxBatchSize": COLLECTION_LIMIT,
                        "sobjects": [self._object_summary(s, version) for s in self._schemas.values()],
                    }
                )
            case ["sobjects", sobject]:
                schema = self._schema_or_404(sobject)
                if _allow(method, "GET", "POST") == "GET":
                    return _ok({"objectDescribe": self._object_summary(schema, version), "recentItems": []})
                record = self._create(schema, self._write_body(request, schema), user_id)
                return FakeResponse.json(201, {"id": record["Id"], "success": True, "errors": []})
            case ["sobjects", sobject, "describe"]:
                _allow(method, "GET")
                return _ok(self._schema_or_404(sobject).describe(version))
            case ["sobjects", sobject, record_id]:
                return self._record_by_id(request, self._schema_or_404(sobject), record_id, user_id, source)
            case ["sobjects", "ContentVersion", record_id, "VersionData"]:
                _allow(method, "GET")
                record = self._find_by_id(self._schemas["contentversion"], record_id)
                if record is None:
                    raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
                return FakeResponse(200, self._blobs[record["Id"]], {"content-type": "application/octetstream"})
            case ["sobjects", sobject, field_name, value]:
                schema = self._schema_or_404(sobject)
                if _allow(method, "GET", "PATCH") == "GET":
                    matches = self._match_external_id(schema, field_name, value)
                    if len(matches) != 1:
                        return self._not_exactly_one(matches, version, schema)
                    return _ok(_project_all(source, schema, matches[0]))
                return self._upsert(request, schema, field_name, value, version, user_id)
            case ["composite", "sobjects"]:
                kind = "create" if _allow(method, "POST", "PATCH") == "POST" else "update"
                return _ok(self._collection(request, kind, None, None, user_id))
            case ["composite", "sobjects", sobject, field_name]:
                _allow(method, "PATCH")
                schema = self._schema_or_404(sobject)
                self._external_id_field(schema, field_name)
                return _ok(self._collection(request, "upsert", schema, field_name, user_id))
        raise SfError(404, "NOT_FOUND", "The requested resource does not exist")

    # =========================================================================================
    # Authentication
    # =========================================================================================

    def _authenticate(self, request: FakeRequest) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        session = self._sessions.get(token.strip()) if scheme.lower() in ("bearer", "oauth") else None
        if session is not None and session.expires_at is not None and time.monotonic() > session.expires_at:
            del self._sessions[token.strip()]
            session = None
        if session is None:
            raise SfError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return session.user_id

    def _new_token(self) -> str:
        return f"{self.org_id[:15]}!AQ{secrets.token_urlsafe(72)}"

    def _oauth_token(self, request: FakeRequest) -> FakeResponse:
        try:
            if request.method != "POST":
                raise _OAuthError("invalid_request", "must use HTTP POST")
            form = {k: v[-1] for k, v in {**request.query, **parse_qs(request.body.decode())}.items()}
            grant = form.get("grant_type")
            if grant == JWT_BEARER:
                user_id, secret = self._jwt_grant(form.get("assertion", "")), "jwt"
            elif grant == "client_credentials":
                client = self._client_from_credentials(request, form)
                if client.run_as is None:
                    raise _OAuthError("invalid_grant", "no client credentials user enabled")
                user_id, secret = client.run_as, client.consumer_secret or ""
            elif grant == "password":
                client = self._client_from_credentials(request, form)
                user_id = self._check_password(form.get("username", ""), form.get("password", ""))
                if user_id is None:
                    raise _OAuthError("invalid_grant", "authentication failure")
                secret = client.consumer_secret or ""
            else:
                raise _OAuthError("unsupported_grant_type", "grant type not supported")
        except _OAuthError as error:
            return FakeResponse.json(400, {"error": error.error, "error_description": error.description})
        token = self.add_session(user_id=user_id)
        issued_at = str(int(time.time() * 1000))
        identity = f"https://login.salesforce.com/id/{self.org_id}/{user_id}"
        signature = hmac.new(secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        return FakeResponse.json(
            200,
            {
                "access_token": token,
                "instance_url": self.url,
                "id": identity,
                "token_type": "Bearer",
                "issued_at": issued_at,
                "signature": base64.b64encode(signature).decode(),
                "scope": "api",
            },
        )

    def _jwt_grant(self, assertion: str) -> str:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _OAuthError("invalid_grant", "invalid assertion") from None
        client = self._clients.get(str(unverified.get("iss")))
        if client is None or client.public_key is None:
            raise _OAuthError("invalid_client_id", "client identifier invalid")
        try:
            claims = jwt.decode(
                assertion,
                client.public_key,
                algorithms=["RS256"],
                audience=sorted(self.jwt_audiences | {self.url}),
                options={"require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.InvalidAudienceError:
            raise _OAuthError("invalid_grant", "audience is invalid") from None
        except jwt.ExpiredSignatureError:
            raise _OAuthError("invalid_grant", "expired authorization code") from None
        except jwt.PyJWTError:
            raise _OAuthError("invalid_grant", "invalid assertion") from None
        user_id = self._user_id(str(claims["sub"]))
        if user_id is None:
            raise _OAuthError("invalid_grant", "user hasn't approved this consumer")
        return user_id

    def _client_from_credentials(self, request: FakeRequest, form: dict[str, str]) -> _Client:
        """The connected app named by client_id/client_secret in the form or HTTP Basic credentials."""
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
            except ValueError:
                raise _OAuthError("invalid_client", "invalid client credentials") from None
        client = self._clients.get(client_id or "")
        if client is None:
            raise _OAuthError("invalid_client_id", "client identifier invalid")
        if client.consumer_secret is None or not hmac.compare_digest(client.consumer_secret, client_secret or ""):
            raise _OAuthError("invalid_client", "invalid client credentials")
        return client

    def _check_password(self, username: str, password: str) -> str | None:
        """Salesforce wants password + security token appended; plain password when no token is set."""
        user_id = self._user_id(username)
        if user_id is None or user_id not in self._passwords:
            return None
        expected, token = self._passwords[user_id]
        return user_id if password == expected + (token or "") else None

    def _user_id(self, username_or_id: str) -> str | None:
        for user in self._store["User"].values():
            if user["Id"][:15] == username_or_id[:15] or user["Username"].casefold() == username_or_id.casefold():
                return user["Id"]
        return None

    def _soap_login(self, request: FakeRequest) -> FakeResponse:
        """The partner-API ``login`` call, as simple-salesforce's username/password/token login sends it."""
        body = request.body.decode(errors="replace")

        def element(name: str) -> str:
            found = re.search(rf"<(?:\w+:)?{name}>(.*?)</(?:\w+:)?{name}>", body, re.DOTALL)
            return html.unescape(found.group(1)) if found else ""

        user_id = self._check_password(element("username"), element("password"))
        if user_id is None:
            message = "INVALID_LOGIN: Invalid username, password, security token; or user locked out."
            fault = (
                f"<soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode><faultstring>{message}</faultstring>"
                f'<detail><sf:LoginFault xmlns:sf="urn:fault.partner.soap.sforce.com"><sf:exceptionCode>'
                f"INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>{message}</sf:exceptionMessage>"
                f"</sf:LoginFault></detail></soapenv:Fault>"
            )
            return FakeResponse(500, _soap_envelope(fault), {"content-type": "text/xml;charset=UTF-8"})
        version = request.path.rstrip("/").split("/")[-1]
        result = (
            f"<loginResponse><result><passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
            f"<serverUrl>{self.url}/services/Soap/u/{version}/{self.org_id[:15]}</serverUrl>"
            f"<sessionId>{self.add_session(user_id=user_id)}</sessionId><userId>{user_id}</userId>"
            f"</result></loginResponse>"
        )
        return FakeResponse(200, _soap_envelope(result), {"content-type": "text/xml;charset=UTF-8"})

    # =========================================================================================
    # Data endpoints
    # =========================================================================================

    def _versions(self) -> FakeResponse:
        top = int(float(self.api_version))
        return _ok(
            [
                {"label": f"v{v}.0", "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
                for v in range(top - 3, top + 1)
            ]
        )

    def _limits(self) -> dict[str, Any]:
        return {
            "DailyApiRequests": {"Max": self.daily_limit, "Remaining": max(self.daily_limit - self.api_usage, 0)},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DataStorageMB": {"Max": 5, "Remaining": 5},
            "FileStorageMB": {"Max": 20, "Remaining": 20},
        }

    def _object_summary(self, schema: SObjectSchema, version: str) -> dict[str, Any]:
        summary = schema.describe(version)
        summary.pop("fields")
        return summary

    def _record_by_id(
        self, request: FakeRequest, schema: SObjectSchema, record_id: str, user_id: str, source: _Source
    ) -> FakeResponse:
        method = _allow(request.method, "GET", "PATCH", "DELETE")
        record = self._find_by_id(schema, record_id)
        if record is None:
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        if method == "GET":
            wanted = _param(request, "fields", "", required=False)
            if not wanted:
                return _ok(_project_all(source, schema, record))
            fields = [self._field_or_400(schema, name.strip()) for name in wanted.split(",")]
            return _ok({"attributes": source.attributes(schema, record), **{f.name: record[f.name] for f in fields}})
        if method == "DELETE":
            del self._store[schema.name][record["Id"]]
            self._modseq.pop(record["Id"], None)
            self._blobs.pop(record["Id"], None)
            return FakeResponse(204)
        self._update(schema, record, self._clean(schema, self._write_body(request, schema), creating=False), user_id)
        return FakeResponse(204)

    def _upsert(
        self, request: FakeRequest, schema: SObjectSchema, field_name: str, value: str, version: str, user_id: str
    ) -> FakeResponse:
        """PATCH sobjects/{Type}/{ExternalIdField}/{value}: update the one match or create (REFERENCE §2.2)."""
        ext = self._external_id_field(schema, field_name)
        body = _json_body(request)
        if isinstance(body, dict):
            for forbidden in ("Id", ext.name):
                if any(key.lower() == forbidden.lower() for key in body):
                    raise SfError(
                        400,
                        "INVALID_FIELD",
                        f"The {forbidden} field should not be specified in the sobject data.",
                        [forbidden],
                    )
        matches = self._match_external_id(schema, ext.name, value)
        if len(matches) > 1:
            return self._not_exactly_one(matches, version, schema)
        modern = float(version) >= 46.0  # `created` and a 200 body on update arrived in v46
        if matches:
            self._update(schema, matches[0], self._clean(schema, body, creating=False), user_id)
            if not modern:
                return FakeResponse(204)
            return FakeResponse.json(200, {"id": matches[0]["Id"], "success": True, "errors": [], "created": False})
        if request.query.get("updateOnly", ["false"])[-1].lower() == "true":
            raise SfError(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {value}")
        values = self._clean(schema, body, creating=True)
        values[ext.name] = self._coerce(schema, ext, value)
        record = self._create(schema, values, user_id, cleaned=True)
        result = {"id": record["Id"], "success": True, "errors": []}
        return FakeResponse.json(201, {**result, "created": True} if modern else result)

    def _not_exactly_one(self, matches: list[dict[str, Any]], version: str, schema: SObjectSchema) -> FakeResponse:
        if not matches:
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        return FakeResponse.json(300, [f"/services/data/v{version}/sobjects/{schema.name}/{r['Id']}" for r in matches])

    def _external_id_field(self, schema: SObjectSchema, field_name: str) -> Field:
        """The field named in an upsert URL; unknown or not an external id -> 404 NOT_FOUND, as Salesforce does."""
        found = schema.field(field_name)
        if found is None or not (found.external_id or found.type == "id"):
            raise SfError(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field_name}"
            )
        return found

    def _match_external_id(self, schema: SObjectSchema, field_name: str, value: str) -> list[dict[str, Any]]:
        ext = self._external_id_field(schema, field_name)
        wanted = _unique_key(ext, value)
        return [r for r in self._store[schema.name].values() if _unique_key(ext, r.get(ext.name)) == wanted]

    def _collection(
        self, request: FakeRequest, kind: str, schema: SObjectSchema | None, field_name: str | None, user_id: str
    ) -> list[dict[str, Any]]:
        """sObject Collections create/update/upsert: per-record results, HTTP 200 even when records fail."""
        body = _json_body(request)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise SfError(400, "JSON_PARSER_ERROR", "Expected a JSON object with a 'records' array")
        if len(records) > COLLECTION_LIMIT:
            raise SfError(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {COLLECTION_LIMIT} records into this call",
            )
        all_or_none = bool(body.get("allOrNone", False))
        snapshot = copy.deepcopy((self._store, self._blobs, self._modseq)) if all_or_none else None
        duplicates: set[Any] = set()
        if kind == "upsert" and schema is not None and field_name is not None:
            ext = self._external_id_field(schema, field_name)
            keys = [_unique_key(ext, _get_ci(r, ext.name)) for r in records]
            duplicates = {k for k in keys if k is not None and keys.count(k) > 1}
        results: list[dict[str, Any]] = []
        for record in records:
            try:
                results.append(self._collection_one(kind, record, schema, field_name, duplicates, user_id))
            except SfError as error:
                results.append({"success": False, "errors": [error.save_error()]})
        if snapshot is not None and not all(r["success"] for r in results):
            self._store, self._blobs, self._modseq = snapshot
            rolled_back = SfError(
                400,
                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "Record rolled back because not all records were valid and the request was using AllOrNone header",
            )
            results = [
                r if not r["success"] else {"success": False, "errors": [rolled_back.save_error()]} for r in results
            ]
        return results

    def _collection_one(
        self,
        kind: str,
        item: dict[str, Any],
        schema: SObjectSchema | None,
        field_name: str | None,
        duplicates: set[Any],
        user_id: str,
    ) -> dict[str, Any]:
        # Every record needs attributes.type, even on the typed upsert URL (api_rest collections docs).
        attributes = item.get("attributes") if isinstance(item.get("attributes"), dict) else {}
        type_name = attributes.get("type")
        if not type_name:
            raise SfError(400, "INVALID_TYPE", "Must specify a type in attributes", [])
        item_schema = self._schemas.get(str(type_name).lower())
        if item_schema is None or (schema is not None and item_schema is not schema):
            raise SfError(400, "INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
        fields = {k: v for k, v in item.items() if k != "attributes"}
        if kind == "create":
            record = self._create(item_schema, fields, user_id)
            return {"id": record["Id"], "success": True, "errors": []}
        if kind == "update":
            record_id = _get_ci(fields, "Id")
            existing = self._find_by_id(item_schema, str(record_id)) if record_id else None
            if record_id is None:
                raise SfError(400, "MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
            if existing is None:
                raise SfError(400, "ENTITY_IS_DELETED", "entity is deleted", [])
            values = {k: v for k, v in fields.items() if k.lower() != "id"}
            self._update(item_schema, existing, self._clean(item_schema, values, creating=False), user_id)
            return {"id": existing["Id"], "success": True, "errors": []}
        ext = self._external_id_field(item_schema, field_name or "")
        value = _get_ci(fields, ext.name)
        if value is None:
            raise SfError(
                400, "MISSING_ARGUMENT", f"Upsert failed: no value given for External ID field {ext.name}", [ext.name]
            )
        if _unique_key(ext, value) in duplicates:
            raise SfError(400, "DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {value}", [ext.name])
        values = {k: v for k, v in fields.items() if k.lower() != ext.name.lower()}
        matches = self._match_external_id(item_schema, ext.name, str(value))
        if len(matches) > 1:
            raise SfError(300, "DUPLICATE_EXTERNAL_ID", f"Multiple records found with external id {value}", [ext.name])
        if matches:
            self._update(item_schema, matches[0], self._clean(item_schema, values, creating=False), user_id)
            return {"id": matches[0]["Id"], "success": True, "errors": [], "created": False}
        cleaned = self._clean(item_schema, values, creating=True)
        cleaned[ext.name] = self._coerce(item_schema, ext, value)
        record = self._create(item_schema, cleaned, user_id, cleaned=True)
        return {"id": record["Id"], "success": True, "errors": [], "created": True}

    # =========================================================================================
    # Writes: validation, create, update
    # =========================================================================================

    def _write_body(self, request: FakeRequest, schema: SObjectSchema) -> dict[str, Any]:
        """The JSON body of a create/update; multipart (entity_content + binary part) for blobs."""
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/"):
            body = _json_body(request)
            if not isinstance(body, dict):
                raise SfError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from a non-object")
            return body
        message = BytesParser(policy=policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + request.body
        )
        body: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if name == "entity_content":
                body.update(json.loads(payload))
            elif isinstance(name, str) and schema.field(name) is not None:
                body[name] = payload  # raw bytes: no base64 on the multipart path
        return body

    def _clean(self, schema: SObjectSchema, body: Any, *, creating: bool) -> dict[str, Any]:
        """Validate a write body against the describe: names, create/update permission, types, lengths."""
        if not isinstance(body, dict):
            raise SfError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from a non-object")
        values: dict[str, Any] = {}
        for name, value in body.items():
            if name == "attributes":
                continue
            f = self._field_or_400(schema, name, write=True)
            if not (f.createable if creating else f.updateable):
                raise SfError(
                    400,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {f.name}. "
                    "Please check the security settings of this field and verify that it is read/write "
                    "for your profile or permission set.",
                    [f.name],
                )
            values[f.name] = self._coerce(schema, f, value)
        return values

    def _coerce(self, schema: SObjectSchema, f: Field, value: Any) -> Any:
        if value is None:
            if not f.nillable:
                raise SfError(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{f.name}]", [f.name])
            return None
        kind, ftype = _json_kind(value), f.type
        if ftype in TEXT_TYPES:
            if kind not in ("VALUE_STRING", "VALUE_NUMBER"):
                raise _parse_error(ftype, kind, value)
            text = str(value)
            if f.length and len(text) > f.length:
                shown = text if len(text) <= 300 else text[:300] + "..."
                raise SfError(
                    400,
                    "STRING_TOO_LONG",
                    f"{f.label}: data value too large: {shown} (max length={f.length})",
                    [f.name],
                )
            if f.restricted_picklist and text not in f.picklist_values:
                raise SfError(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{f.label}: bad value for restricted picklist field: {text}",
                    [f.name],
                )
            if ftype == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
                raise SfError(400, "INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {text}", [f.name])
            return text
        if ftype == "boolean":
            if isinstance(value, bool) or (kind == "VALUE_STRING" and value.lower() in ("true", "false")):
                return value if isinstance(value, bool) else value.lower() == "true"
            raise _parse_error("boolean", kind, value)
        if ftype in NUMBER_TYPES:
            try:
                number = float(value) if kind in ("VALUE_NUMBER", "VALUE_STRING") else None
            except ValueError:
                number = None
            if number is None or (ftype == "int" and not number.is_integer()):
                raise _parse_error(ftype, kind, value)
            if ftype == "int":
                return value if isinstance(value, int) else int(number)
            return number
        if ftype in ("date", "datetime"):
            try:
                if kind == "VALUE_STRING" and ftype == "date":
                    return dt.date.fromisoformat(value).isoformat()
                if kind == "VALUE_STRING":
                    return sf_datetime(parse_datetime(value), millis=True)
            except ValueError:
                pass
            raise _parse_error(ftype, kind, value)
        if ftype in ID_TYPES:
            return self._check_reference(f, value)
        if ftype == "base64":
            if isinstance(value, bytes):
                return value
            try:
                return base64.b64decode(value, validate=True)
            except (ValueError, TypeError):
                raise SfError(
                    400,
                    "JSON_PARSER_ERROR",
                    f"Cannot deserialize instance of base64 from {kind}: illegal base64 data",
                    [f.name],
                ) from None
        return value

    def _check_reference(self, f: Field, value: Any) -> str:
        if not is_salesforce_id(value):
            raise SfError(400, "MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name])
        target = next((s for s in self._schemas.values() if s.key_prefix == value[:3]), None)
        if target is None:
            return value  # a type the fake does not model (Opportunity, a queue...): trust it
        if target.name not in f.reference_to:
            raise SfError(400, "FIELD_INTEGRITY_EXCEPTION", f"{f.label}: id value of incorrect type: {value}", [f.name])
        record = self._find_by_id(target, value)
        if record is None:
            raise SfError(400, "INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {value}", [f.name])
        return record["Id"]

    def _create(
        self, schema: SObjectSchema, body: dict[str, Any], user_id: str, *, cleaned: bool = False
    ) -> dict[str, Any]:
        values = body if cleaned else self._clean(schema, body, creating=True)
        record = self._new_record(schema, user_id)
        record.update(values)
        missing = [f.name for f in schema.fields.values() if not f.nillable and f.createable and record[f.name] is None]
        if missing:
            raise SfError(
                400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        self._check_unique(schema, record)
        return self._finish(schema, record)

    def _update(self, schema: SObjectSchema, record: dict[str, Any], values: dict[str, Any], user_id: str) -> None:
        self._check_unique(schema, {**record, **values})
        now = sf_datetime(self.clock())
        record.update(values, LastModifiedDate=now, SystemModstamp=now, LastModifiedById=user_id)
        self._touch(schema, record)

    def _new_record(self, schema: SObjectSchema, user_id: str) -> dict[str, Any]:
        record: dict[str, Any] = {f.name: f.default for f in schema.fields.values()}
        now = sf_datetime(self.clock())
        record.update(
            Id=salesforce_id(schema.key_prefix, next(_ID_COUNTER)),
            IsDeleted=False,
            CreatedDate=now,
            LastModifiedDate=now,
            SystemModstamp=now,
            CreatedById=user_id,
            LastModifiedById=user_id,
        )
        if "OwnerId" in record:
            record["OwnerId"] = user_id
        return record

    def _finish(self, schema: SObjectSchema, record: dict[str, Any]) -> dict[str, Any]:
        """Store a new record, filling derived fields (Name, IsClosed, ContentVersion's document)."""
        self._store[schema.name][record["Id"]] = record
        if schema.name == "ContentVersion":
            self._finish_content_version(record)
        self._touch(schema, record)
        return record

    def _touch(self, schema: SObjectSchema, record: dict[str, Any]) -> None:
        if "FirstName" in record and "LastName" in record:
            record["Name"] = " ".join(p for p in (record["FirstName"], record["LastName"]) if p)
        if schema.name == "Task":
            record["IsClosed"] = record.get("Status") == "Completed"
        self._modseq[record["Id"]] = next(self._seq)

    def _finish_content_version(self, record: dict[str, Any]) -> None:
        data = record["VersionData"]
        self._blobs[record["Id"]] = data if isinstance(data, bytes) else str(data or "").encode()
        path = record.get("PathOnClient") or ""
        stem, _, extension = path.rpartition(".") if "." in path else (path, "", "")
        record.update(
            VersionData=f"/services/data/v{self.api_version}/sobjects/ContentVersion/{record['Id']}/VersionData",
            Title=record.get("Title") or stem,
            FileExtension=extension.lower() or None,
            FileType=(extension.upper() or "UNKNOWN"),
            ContentSize=len(self._blobs[record["Id"]]),
            VersionNumber="1",
            IsLatest=True,
        )
        owner = record.get("OwnerId") or self.default_user_id
        document = self._new_record(self._schemas["contentdocument"], owner)
        document.update(
            Title=record["Title"],
            LatestPublishedVersionId=record["Id"],
            FileExtension=record["FileExtension"],
            ContentSize=record["ContentSize"],
        )
        self._finish(self._schemas["contentdocument"], document)
        record["ContentDocumentId"] = document["Id"]
        if record.get("FirstPublishLocationId"):
            link = self._new_record(self._schemas["contentdocumentlink"], owner)
            link.update(ContentDocumentId=document["Id"], LinkedEntityId=record["FirstPublishLocationId"])
            self._finish(self._schemas["contentdocumentlink"], link)

    def _check_unique(self, schema: SObjectSchema, candidate: dict[str, Any]) -> None:
        for f in schema.fields.values():
            key = _unique_key(f, candidate.get(f.name)) if f.unique else None
            if key is None:
                continue
            for other in self._store[schema.name].values():
                if other["Id"] != candidate.get("Id") and _unique_key(f, other.get(f.name)) == key:
                    raise SfError(
                        400,
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {f.name} duplicates value on record with id: {other['Id']}",
                        [f.name],
                    )

    # -- lookups --------------------------------------------------------------------------------

    def _schema_or_raise(self, sobject: str) -> SObjectSchema:
        schema = self._schemas.get(sobject.lower())
        if schema is None:
            raise ValueError(f"the fake has no sObject {sobject!r}")
        return schema

    def _schema_or_404(self, sobject: str) -> SObjectSchema:
        schema = self._schemas.get(sobject.lower())
        if schema is None:
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        return schema

    def _field_or_400(self, schema: SObjectSchema, name: str, *, write: bool = False) -> Field:
        found = schema.field(name)
        if found is None:
            where = f"sobject of type {schema.name}" if write else f"entity '{schema.name}'"
            raise SfError(400, "INVALID_FIELD", f"No such column '{name}' on {where}", [name])
        return found

    def _find_by_id(self, schema: SObjectSchema, record_id: str) -> dict[str, Any] | None:
        if not is_salesforce_id(record_id):
            return None
        return next((r for r in self._store[schema.name].values() if r["Id"][:15] == record_id[:15]), None)


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def route_key(method: str, path: str) -> str:
    """Normalise a request to a Counter key without ids: ``"PATCH /sobjects/Task/{ext}"``, ``"GET /query"``."""
    if path.startswith("/services/oauth2/"):
        return f"{method} /oauth2/{path.rstrip('/').rsplit('/', 1)[-1]}"
    if path.startswith("/services/Soap/"):
        return f"{method} /soap/login"
    match = _DATA_PATH.match(path)
    if match is None or match["version"] is None:
        return f"{method} {path}"
    segments = [s for s in (match["rest"] or "").split("/") if s]
    if segments[:1] == ["sobjects"] and len(segments) == 3 and segments[2] != "describe":
        segments[2] = "{id}"
    elif segments[:1] == ["sobjects"] and len(segments) == 4:
        segments[2:] = ["{id}", "VersionData"] if segments[3] == "VersionData" else ["{ext}"]
    elif segments[:2] == ["composite", "sobjects"] and len(segments) == 4:
        segments[3:] = ["{ext}"]
    return f"{method} /" + "/".join(segments)


def _ok(payload: Any) -> FakeResponse:
    return FakeResponse.json(200, payload, {"content-type": "application/json;charset=UTF-8"})


def _allow(method: str, *allowed: str) -> str:
    if method not in allowed:
        raise SfError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {','.join(allowed)}")
    return method


def _param(request: FakeRequest, name: str, error_code: str, *, required: bool = True) -> str:
    values = request.query.get(name)
    if not values:
        if required:
            raise SfError(400, error_code, f"A {name} parameter has to be specified")
        return ""
    return values[-1]


def _json_body(request: FakeRequest) -> Any:
    if not request.body:
        raise SfError(400, "JSON_PARSER_ERROR", "No content to map due to end-of-input")
    try:
        return json.loads(request.body)
    except ValueError as error:
        raise SfError(
            400,
            "JSON_PARSER_ERROR",
            f"Unexpected character at [line:{getattr(error, 'lineno', 1)}, column:{getattr(error, 'colno', 1)}]",
        ) from None


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, (int, float)):
        return "VALUE_NUMBER"
    if isinstance(value, (str, bytes)):
        return "VALUE_STRING"
    return "START_ARRAY" if isinstance(value, list) else "START_OBJECT"


def _parse_error(ftype: str, kind: str, value: Any) -> SfError:
    return SfError(
        400,
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {ftype} from {kind} value {value} or "
        "request may be missing a required field at [line:1, column:1]",
    )


def _unique_key(f: Field, value: Any) -> Any:
    """What uniqueness and external-id matching compare: case-insensitive unless the field says otherwise."""
    if value is None or value == "":
        return None
    if f.type in ID_TYPES:
        return str(value)[:15]
    return str(value) if f.case_sensitive else str(value).casefold()


def _get_ci(values: dict[str, Any], name: str) -> Any:
    return next((v for k, v in values.items() if k.lower() == name.lower()), None)


def _project_all(source: _Source, schema: SObjectSchema, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "attributes": source.attributes(schema, record),
        **{f.name: record.get(f.name) for f in schema.fields.values()},
    }


def _seed_values(schema: SObjectSchema, fields: dict[str, Any]) -> dict[str, Any]:
    """Seeded values keyed by canonical field name; datetimes/dates become Salesforce strings."""
    values: dict[str, Any] = {}
    for name, value in fields.items():
        f = schema.field(name)
        if f is None:
            raise ValueError(f"{schema.name} has no field {name!r}; add it with add_field() first")
        if isinstance(value, dt.datetime):
            value = sf_datetime(value)
        elif isinstance(value, dt.date):
            value = value.isoformat()
        values[f.name] = value
    return values


def _soap_envelope(body: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )


def _load_public_key(pem: bytes | str) -> Any:
    data = pem.encode() if isinstance(pem, str) else pem
    if b"BEGIN CERTIFICATE" in data:
        return x509.load_pem_x509_certificate(data).public_key()
    return serialization.load_pem_public_key(data)
