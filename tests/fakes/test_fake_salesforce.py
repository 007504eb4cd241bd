"""Contract tests for FakeSalesforce: the real simple-salesforce client, over real TLS, against the fake.

These pin down that the fake answers the way simple-salesforce expects Salesforce to answer
(REFERENCE.md §2–3): status codes, error arrays mapped to the right exception classes, the
``Sforce-Limit-Info`` header, upsert created/updated semantics, sObject Collections results and the
OAuth token flows. If one of these fails, the bridge's own tests against the fake mean nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import jwt
import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from simple_salesforce.util import getUniqueElementValueFromXmlString

from tests.fakes.httpserver import Fault
from tests.fakes.salesforce import JWT_BEARER, FakeSalesforce
from tests.fakes.tls import TestPKI, make_rsa_keypair, make_test_pki

EXT = "Agni_Call_Session_Id__c"
SF_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
SOSL_RESERVED = frozenset("?&|!{}[]()^~*:\\\"'+-")
INTEGRATION_USER = "integration@agni.test"


def sosl_escape(term: str) -> str:
    return "".join("\\" + char if char in SOSL_RESERVED else char for char in term)


def soql_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def error_code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.content[0]["errorCode"]


# -------------------------------------------------------------------------------------------------
# Fixtures
# -------------------------------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return make_test_pki(tmp_path / "pki")


@pytest.fixture
def fake(pki: TestPKI):
    with FakeSalesforce(ssl_context=pki.server_context(), api_version="62.0") as server:
        yield server


def make_http(pki: TestPKI) -> requests.Session:
    session = requests.Session()
    # With trust_env on, REQUESTS_CA_BUNDLE silently overrides session.verify (see the test below).
    session.trust_env = False
    session.verify = str(pki.ca_path)
    return session


@pytest.fixture
def http(pki: TestPKI):
    session = make_http(pki)
    yield session
    session.close()


@pytest.fixture
def sf(fake: FakeSalesforce, http: requests.Session) -> Salesforce:
    return Salesforce(instance_url=fake.url, session_id=fake.add_session(), session=http, version="62.0")


# -------------------------------------------------------------------------------------------------
# TLS
# -------------------------------------------------------------------------------------------------


def test_certificate_is_valid_for_ip_and_localhost(fake, http):
    assert http.get(f"https://127.0.0.1:{fake.port}/services/data").status_code == 200
    assert http.get(f"https://localhost:{fake.port}/services/data").status_code == 200


def test_requests_ca_bundle_overrides_session_verify_unless_trust_env_is_off(fake, pki, monkeypatch):
    """Documents a requests pitfall: a per-session ``verify`` loses to REQUESTS_CA_BUNDLE."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    session = requests.Session()
    session.verify = str(pki.ca_path)
    with pytest.raises(requests.exceptions.SSLError):
        session.get(f"{fake.url}/services/data")
    session.trust_env = False
    assert session.get(f"{fake.url}/services/data").status_code == 200


# -------------------------------------------------------------------------------------------------
# SOQL
# -------------------------------------------------------------------------------------------------


def test_query_finds_contact_by_email_case_insensitively(sf, fake):
    account_id = fake.add_account(Name="Acme")
    contact_id = fake.add_contact(LastName="Lovelace", Email="ada@example.com", AccountId=account_id)
    fake.add_contact(LastName="Other", Email="other@example.com")

    result = sf.query("SELECT Id, AccountId FROM Contact WHERE Email = 'ADA@example.com' LIMIT 2")

    assert result["totalSize"] == 1 and result["done"] is True
    record = result["records"][0]
    assert record == {
        "attributes": {"type": "Contact", "url": f"/services/data/v62.0/sobjects/Contact/{contact_id}"},
        "Id": contact_id,
        "AccountId": account_id,
    }
    assert len(contact_id) == 18 and contact_id.startswith("003")
    assert sf.api_usage["api-usage"].used == fake.api_usage
    assert sf.api_usage["api-usage"].total == 15000


def test_query_decodes_soql_escapes(sf, fake):
    email = "o'brien\\x@example.com"  # a quote and a backslash, both escaped in SOQL
    contact_id = fake.add_contact(LastName="O'Brien", Email=email)
    result = sf.query(f"SELECT Id, LastName FROM Contact WHERE Email = {soql_quote(email)}")
    assert [r["Id"] for r in result["records"]] == [contact_id]
    assert result["records"][0]["LastName"] == "O'Brien"


def test_query_lead_filters_in_and_order_by(sf, fake):
    old = fake.add_lead(Email="a@example.com", LastModifiedDate=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    new = fake.add_lead(Email="b@example.com", LastModifiedDate=dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    fake.add_lead(Email="a@example.com", IsConverted=True)
    fake.add_lead(Email="c@example.com")

    result = sf.query(
        "SELECT Id, OwnerId, LastModifiedDate FROM Lead "
        "WHERE IsConverted = false AND Email IN ('a@example.com', 'b@example.com') "
        "ORDER BY LastModifiedDate DESC LIMIT 5"
    )

    assert [r["Id"] for r in result["records"]] == [new, old]
    assert result["records"][0]["OwnerId"] == fake.default_user_id
    assert SF_DATETIME.match(result["records"][0]["LastModifiedDate"])


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM Contact WHERE Email = 'o'brien@example.com'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY"),
        ("SELECT FROM Contact", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE IsConverted = false AND Email = 'a' OR Phone = 'b'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE IsConverted = 'false'", "INVALID_QUERY_FILTER_OPERATOR"),
        ("SELECT Id, Bogus__c FROM Contact", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunity__x", "INVALID_TYPE"),
    ],
)
def test_bad_soql_is_a_400_with_salesforce_error_codes(sf, soql, code):
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query(soql)
    assert exc.value.status == 400
    assert error_code(exc) == code


# -------------------------------------------------------------------------------------------------
# SOSL
# -------------------------------------------------------------------------------------------------


@pytest.fixture
def phone_people(fake):
    return {
        "contact": fake.add_contact(LastName="Ada", Phone="(415) 555-0100", AccountId=fake.add_account()),
        "lead": fake.add_lead(LastName="Lin", MobilePhone="415.555.0100"),
        "converted": fake.add_lead(LastName="Old", Phone="4155550100", IsConverted=True),
        "other": fake.add_contact(LastName="Other", Phone="(415) 555-0199"),
    }


@pytest.mark.parametrize("term", ["+14155550100", "4155550100", "(415) 555-0100", "+1 415-555-0100"])
def test_sosl_phone_search_matches_on_digits(sf, phone_people, term):
    sosl = (
        f"FIND {{{sosl_escape(term)}}} IN PHONE FIELDS "
        "RETURNING Contact(Id, AccountId, OwnerId, LastModifiedDate), Lead(Id, OwnerId WHERE IsConverted = false)"
    )
    records = sf.search(sosl)["searchRecords"]
    assert [(r["attributes"]["type"], r["Id"]) for r in records] == [
        ("Contact", phone_people["contact"]),
        ("Lead", phone_people["lead"]),
    ]
    assert set(records[0]) == {"attributes", "Id", "AccountId", "OwnerId", "LastModifiedDate"}


def test_sosl_or_terms_match_any_of_the_numbers(sf, phone_people):
    sosl = 'FIND {"4155550100" OR "4155550199"} IN PHONE FIELDS RETURNING Contact(Id)'
    ids = {r["Id"] for r in sf.search(sosl)["searchRecords"]}
    assert ids == {phone_people["contact"], phone_people["other"]}


def test_sosl_phone_search_needs_ten_digits_for_suffix_match(sf, phone_people):
    assert sf.search("FIND {5550100} IN PHONE FIELDS RETURNING Contact(Id), Lead(Id)")["searchRecords"] == []


def test_sosl_email_search(sf, fake):
    ada = fake.add_contact(Email="ada@example.com")
    fake.add_contact(Email="ada.other@example.com")
    lead = fake.add_lead(Email="ADA@example.com")
    sosl = "FIND {ada@example.com} IN EMAIL FIELDS RETURNING Contact(Id), Lead(Id WHERE IsConverted = false)"
    result = sf.search(sosl)
    assert [r["Id"] for r in result["searchRecords"]] == [ada, lead]


@pytest.mark.parametrize(
    ("sosl", "code"),
    [
        ("FIND {4155550100 IN PHONE FIELDS", "MALFORMED_SEARCH"),
        ("FIND {a{b} IN ALL FIELDS", "MALFORMED_SEARCH"),
        ("FIND {4155550100} IN WRONG FIELDS", "MALFORMED_SEARCH"),
        ("FIND {x}", "INVALID_SEARCH"),
        ("FIND {4155550100} RETURNING Contact(Bogus__c)", "INVALID_FIELD"),
    ],
)
def test_bad_sosl_is_a_400(sf, sosl, code):
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.search(sosl)
    assert error_code(exc) == code


def test_sosl_escaped_braces_stay_in_the_term(sf, fake):
    fake.add_account(Name="a}b")
    result = sf.search(r"FIND {a\}b} IN NAME FIELDS RETURNING Account(Name)")
    assert [r["Name"] for r in result["searchRecords"]] == ["a}b"]


# -------------------------------------------------------------------------------------------------
# Upsert by external id
# -------------------------------------------------------------------------------------------------


def test_upsert_creates_then_updates(sf, fake):
    contact_id = fake.add_contact(LastName="Ada")
    first = {
        "Subject": "Call with Ada",
        "TaskSubtype": "Call",
        "CallDurationInSeconds": 42,
        "WhoId": contact_id,
        "CallType": "Inbound",
        "Status": "Completed",
        "ActivityDate": "2026-11-28",
    }

    assert sf.Task.upsert(f"{EXT}/abc", first) == 201
    created = fake.tasks[0]
    assert sf.Task.upsert(f"{EXT}/abc", {"Description": "transcript", "CallDurationInSeconds": 43}) == 200

    assert fake.count("Task") == 1
    task = fake.tasks[0]
    assert task["Id"].startswith("00T") and len(task["Id"]) == 18
    assert task[EXT] == "abc" and task["TaskSubtype"] == "Call" and task["IsClosed"] is True
    assert task["CallDurationInSeconds"] == 43 and task["Description"] == "transcript"
    assert task["OwnerId"] == fake.default_user_id and task["Priority"] == "Normal"
    assert SF_DATETIME.match(task["CreatedDate"]) and SF_DATETIME.match(task["LastModifiedDate"])
    assert task["CreatedDate"] == created["CreatedDate"]
    assert fake.requests["PATCH /sobjects/Task/{ext}"] == 2


def test_upsert_raw_response_bodies(sf):
    created = sf.Task.upsert(f"{EXT}/raw", {"Subject": "x"}, raw_response=True)
    updated = sf.Task.upsert(f"{EXT}/raw", {"Subject": "y"}, raw_response=True)
    assert created.status_code == 201 and created.json() == {
        "id": created.json()["id"],
        "success": True,
        "errors": [],
        "created": True,
    }
    assert updated.status_code == 200 and updated.json() == {
        "id": created.json()["id"],
        "success": True,
        "errors": [],
        "created": False,
    }
    assert "api-usage=" in updated.headers["Sforce-Limit-Info"]


def test_upsert_before_v46_answers_204_on_update(fake, http):
    old = Salesforce(instance_url=fake.url, session_id=fake.add_session(), session=http, version="45.0")
    assert old.Task.upsert(f"{EXT}/v45", {"Subject": "x"}) == 201
    assert old.Task.upsert(f"{EXT}/v45", {"Subject": "y"}) == 204


def test_upsert_value_must_be_percent_encoded_by_the_caller(sf, fake):
    value = "session/with space?and#hash"
    assert sf.Task.upsert(f"{EXT}/{quote(value, safe='')}", {"Subject": "x"}) == 201
    assert fake.tasks[0][EXT] == value


def test_task_subtype_is_create_only(sf):
    sf.Task.upsert(f"{EXT}/sub", {"Subject": "x", "TaskSubtype": "Call"})
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Task.upsert(f"{EXT}/sub", {"Subject": "y", "TaskSubtype": "Call"})
    assert exc.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert exc.value.content[0]["fields"] == ["TaskSubtype"]


@pytest.mark.parametrize(
    ("body", "code", "fields"),
    [
        ({"Subject": "x", "Bogus__c": "y"}, "INVALID_FIELD", ["Bogus__c"]),
        ({"Subject": "x" * 256}, "STRING_TOO_LONG", ["Subject"]),
        ({"Sentiment__c": "x" * 41}, "STRING_TOO_LONG", ["Sentiment__c"]),
        ({"Subject": "x", EXT: "bad"}, "INVALID_FIELD", [EXT]),
        ({"Id": "00THn0000000001AAA"}, "INVALID_FIELD", ["Id"]),
        ({"CallType": "Sideways"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["CallType"]),
        ({"WhoId": "not-an-id"}, "MALFORMED_ID", ["WhoId"]),
        ({"WhoId": "003Hn0000009zzzAAA"}, "INVALID_CROSS_REFERENCE_KEY", ["WhoId"]),
        ({"CallDurationInSeconds": "forty"}, "JSON_PARSER_ERROR", None),
    ],
)
def test_upsert_validation_errors(sf, fake, body, code, fields):
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Task.upsert(f"{EXT}/invalid", body)
    assert exc.value.status == 400
    assert exc.value.content[0]["errorCode"] == code
    assert exc.value.content[0].get("fields") == fields
    assert fake.count("Task") == 0


def test_no_such_column_message_matches_salesforce(sf):
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Task.upsert(f"{EXT}/x", {"X": 1})
    assert exc.value.content == [
        {"message": "No such column 'X' on sobject of type Task", "errorCode": "INVALID_FIELD", "fields": ["X"]}
    ]


@pytest.mark.parametrize("field", ["Nope__c", "Subject"])  # unknown, and known but not an external id
def test_unusable_external_id_field_is_404(sf, field):
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Task.upsert(f"{field}/abc", {"Description": "x"})
    assert error_code(exc) == "NOT_FOUND"


def test_several_matches_are_300(sf, fake):
    first, second = fake.add_task(**{EXT: "dup"}), fake.add_task(**{EXT: "DUP"})
    with pytest.raises(SalesforceMoreThanOneRecord) as exc:
        sf.Task.upsert(f"{EXT}/dup", {"Subject": "x"})
    assert exc.value.status == 300
    assert exc.value.content == [
        f"/services/data/v62.0/sobjects/Task/{first}",
        f"/services/data/v62.0/sobjects/Task/{second}",
    ]


def test_concurrent_upserts_of_one_external_id_make_one_task(fake, pki):
    token, barrier = fake.add_session(), threading.Barrier(20)

    def upsert(i: int) -> int:
        client = Salesforce(instance_url=fake.url, session_id=token, session=make_http(pki), version="62.0")
        barrier.wait()
        return client.Task.upsert(f"{EXT}/same-call", {"Subject": f"attempt {i}"})

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(upsert, range(20)))

    assert sorted(statuses) == [200] * 19 + [201]
    assert fake.count("Task") == 1


def test_unique_external_id_blocks_duplicates_on_create(sf):
    sf.Task.create({"Subject": "x", EXT: "u1"})
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Task.create({"Subject": "y", EXT: "U1"})
    assert error_code(exc) == "DUPLICATE_VALUE"


def test_custom_task_field_can_be_added(sf, fake):
    fake.add_task_field("Agni_Transcript_URL__c", "url", 255)
    assert "Agni_Transcript_URL__c" in {f["name"] for f in sf.Task.describe()["fields"]}
    assert sf.Task.upsert(f"{EXT}/custom", {"Agni_Transcript_URL__c": "https://x.test/t"}) == 201


# -------------------------------------------------------------------------------------------------
# Plain CRUD, describe, ContentVersion
# -------------------------------------------------------------------------------------------------


def test_create_get_update_delete_by_id(sf, fake):
    result = sf.Task.create({"Subject": "Call", "Status": "Not Started"})
    assert result["success"] is True and result["errors"] == [] and result["id"].startswith("00T")
    assert sf.Task.update(result["id"], {"Status": "Completed"}) == 204
    record = sf.Task.get(result["id"])
    assert record["attributes"]["type"] == "Task" and record["Status"] == "Completed"
    assert sf.Task.get(result["id"][:15])["Id"] == result["id"]  # 15-char ids work too
    assert sf.Task.delete(result["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Task.get(result["id"])


def test_describe_task(sf):
    described = sf.Task.describe()
    fields = {f["name"]: f for f in described["fields"]}
    assert described["name"] == "Task" and described["keyPrefix"] == "00T"
    assert fields["Subject"]["length"] == 255
    assert fields["Description"]["type"] == "textarea" and fields["Description"]["length"] == 32000
    assert fields["TaskSubtype"]["createable"] is True and fields["TaskSubtype"]["updateable"] is False
    assert [p["value"] for p in fields["CallType"]["picklistValues"]] == ["Inbound", "Internal", "Outbound"]
    assert fields["CallDurationInSeconds"]["type"] == "int"
    assert fields["WhoId"]["referenceTo"] == ["Contact", "Lead"]
    assert fields[EXT]["externalId"] is True and fields[EXT]["unique"] is True
    assert fields["Agni_Recording_URL__c"]["type"] == "url"
    assert fields["Sentiment__c"]["length"] == 40
    for name in ("Contact", "Lead"):
        phone_types = {f["name"]: f["type"] for f in getattr(sf, name).describe()["fields"]}
        assert phone_types["Phone"] == "phone" and phone_types["Email"] == "email"


def test_content_version_upload_and_link(sf, fake, http):
    task_id = sf.Task.create({"Subject": "Call"})["id"]
    audio = bytes(range(256)) * 10
    result = sf.ContentVersion.create(
        {
            "Title": "Call recording",
            "PathOnClient": "call.mp3",
            "VersionData": base64.b64encode(audio).decode(),
            "FirstPublishLocationId": task_id,
        }
    )
    assert result["success"] is True and result["id"].startswith("068")

    [version] = fake.content_versions
    assert version["VersionData"] == audio and version["FirstPublishLocationId"] == task_id
    assert version["ContentDocumentId"].startswith("069") and version["FileType"] == "MP3"
    links = sf.query(f"SELECT ContentDocumentId FROM ContentDocumentLink WHERE LinkedEntityId = '{task_id}'")
    assert links["records"][0]["ContentDocumentId"] == version["ContentDocumentId"]
    blob = http.get(
        f"{fake.url}/services/data/v62.0/sobjects/ContentVersion/{result['id']}/VersionData",
        headers={"Authorization": f"Bearer {sf.session_id}"},
    )
    assert blob.content == audio


def test_content_version_multipart_upload(sf, fake, http):
    entity = json.dumps({"Title": "big", "PathOnClient": "call.wav"})
    response = http.post(
        f"{fake.url}/services/data/v62.0/sobjects/ContentVersion/",
        headers={"Authorization": f"Bearer {sf.session_id}"},
        files={
            "entity_content": (None, entity, "application/json"),
            "VersionData": ("call.wav", b"RIFF....WAVE", "application/octet-stream"),
        },
    )
    assert response.status_code == 201
    assert fake.content_versions[0]["VersionData"] == b"RIFF....WAVE"


# -------------------------------------------------------------------------------------------------
# sObject Collections
# -------------------------------------------------------------------------------------------------


def test_collection_upsert_reports_per_record_results(sf, fake):
    sf.Task.upsert(f"{EXT}/existing", {"Subject": "old"})
    records = [
        {"attributes": {"type": "Task"}, EXT: "new", "Subject": "created"},
        {"attributes": {"type": "Task"}, EXT: "bad", "Bogus__c": 1},
        {"attributes": {"type": "Task"}, EXT: "existing", "Subject": "updated"},
    ]
    results = sf.restful(
        f"composite/sobjects/Task/{EXT}", method="PATCH", json={"allOrNone": False, "records": records}
    )

    assert [r["success"] for r in results] == [True, False, True]
    assert results[0]["created"] is True and results[2]["created"] is False
    assert results[1]["errors"] == [
        {
            "statusCode": "INVALID_FIELD",
            "fields": ["Bogus__c"],
            "message": "No such column 'Bogus__c' on sobject of type Task",
        }
    ]
    assert {t[EXT]: t["Subject"] for t in fake.tasks} == {"existing": "updated", "new": "created"}
    assert fake.requests["PATCH /composite/sobjects/Task/{ext}"] == 1


def test_collection_all_or_none_rolls_back(sf, fake):
    records = [
        {"attributes": {"type": "Task"}, EXT: "a", "Subject": "ok"},
        {"attributes": {"type": "Task"}, EXT: "b", "Subject": "x" * 300},
    ]
    results = sf.restful(f"composite/sobjects/Task/{EXT}", method="PATCH", json={"allOrNone": True, "records": records})
    assert [r["errors"][0]["statusCode"] for r in results] == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "STRING_TOO_LONG"]
    assert fake.count("Task") == 0


def test_collection_create_and_limit(sf, fake):
    records = [{"attributes": {"type": "Task"}, "Subject": f"t{i}"} for i in range(3)]
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": records})
    assert all(r["success"] and r["id"].startswith("00T") for r in results) and fake.count("Task") == 3

    too_many = [{"attributes": {"type": "Task"}, "Subject": "x"}] * 201
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.restful("composite/sobjects", method="POST", json={"records": too_many})
    assert error_code(exc) == "EXCEEDED_ID_LIMIT"


def test_collection_records_need_attributes_type(sf):
    results = sf.restful(f"composite/sobjects/Task/{EXT}", method="PATCH", json={"records": [{EXT: "no-type"}]})
    assert results[0]["success"] is False and results[0]["errors"][0]["statusCode"] == "INVALID_TYPE"


def test_collection_upsert_rejects_duplicate_external_ids_in_one_request(sf):
    records = [{"attributes": {"type": "Task"}, EXT: "same"}, {"attributes": {"type": "Task"}, EXT: "same"}]
    results = sf.restful(f"composite/sobjects/Task/{EXT}", method="PATCH", json={"records": records})
    assert [r["errors"][0]["statusCode"] for r in results] == ["DUPLICATE_EXTERNAL_ID"] * 2


# -------------------------------------------------------------------------------------------------
# Sessions, limits, faults
# -------------------------------------------------------------------------------------------------


def test_expired_session_is_401_invalid_session_id(sf, fake):
    sf.query("SELECT Id FROM Contact")
    fake.expire_sessions()
    with pytest.raises(SalesforceExpiredSession) as exc:
        sf.query("SELECT Id FROM Contact")
    assert exc.value.status == 401
    assert exc.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    with pytest.raises(SalesforceExpiredSession):
        sf.Task.upsert(f"{EXT}/x", {"Subject": "x"})  # SFType path: no login partial, so no retry loop


def test_unknown_token_is_401(fake, http):
    stranger = Salesforce(instance_url=fake.url, session_id="00D!forged", session=http, version="62.0")
    with pytest.raises(SalesforceExpiredSession):
        stranger.query("SELECT Id FROM Contact")


def test_daily_limit_and_limits_resource(sf, fake):
    fake.daily_limit = fake.api_usage + 2
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": fake.daily_limit, "Remaining": 1}
    sf.query("SELECT Id FROM Contact")
    with pytest.raises(SalesforceRefusedRequest) as exc:
        sf.query("SELECT Id FROM Contact")
    assert exc.value.status == 403
    assert exc.value.content == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]


def test_api_version_newer_than_the_org_is_404(fake, http):
    future = Salesforce(instance_url=fake.url, session_id=fake.add_session(), session=http, version="99.0")
    with pytest.raises(SalesforceResourceNotFound):
        future.query("SELECT Id FROM Contact")


def test_injected_fault_is_served_then_normal_service_resumes(sf, fake):
    body = [{"message": "Service temporarily unavailable", "errorCode": "SERVER_UNAVAILABLE"}]
    fake.faults.add(Fault(status=503, body=body), path_prefix="/services/data")
    with pytest.raises(SalesforceGeneralError) as exc:
        sf.query("SELECT Id FROM Contact")
    assert exc.value.status == 503 and exc.value.content == body
    assert sf.query("SELECT Id FROM Contact")["totalSize"] == 0


# -------------------------------------------------------------------------------------------------
# OAuth / login flows
# -------------------------------------------------------------------------------------------------


@pytest.fixture
def jwt_key(fake, tmp_path):
    private_path, public_pem = make_rsa_keypair(tmp_path / "jwt")
    fake.register_jwt_client("agni-consumer-key", public_pem)
    return private_path


def sign(private_path: Path, **overrides) -> str:
    # the claims exactly as simple-salesforce builds them (note: `exp` is a string there)
    claims = {
        "iss": "agni-consumer-key",
        "sub": INTEGRATION_USER,
        "aud": "https://login.salesforce.com",
        "exp": f"{time.time() + 180:.0f}",
        **overrides,
    }
    return jwt.encode(claims, private_path.read_bytes(), algorithm="RS256")


def test_jwt_bearer_flow_issues_a_working_token(fake, http, jwt_key):
    response = http.post(
        f"{fake.url}/services/oauth2/token", data={"grant_type": JWT_BEARER, "assertion": sign(jwt_key)}
    )
    assert response.status_code == 200
    token = response.json()
    assert token["instance_url"] == fake.url and token["token_type"] == "Bearer"
    assert {"access_token", "id", "issued_at", "signature"} <= set(token)

    sf = Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], session=http, version="62.0")
    users = sf.query(f"SELECT Id FROM User WHERE Username = '{INTEGRATION_USER}'")
    assert users["records"][0]["Id"] == fake.default_user_id


def test_simple_salesforce_jwt_login_and_refresh_can_target_the_fake(fake, http, jwt_key):
    """simple-salesforce posts to ``https://{instance_url}.salesforce.com/services/oauth2/token`` in JWT mode;
    ending ``instance_url`` with ``#`` turns the ``.salesforce.com...`` tail into a URL fragment, which
    requests drops. That lets its real login, and its re-login on 401 INVALID_SESSION_ID, run here."""
    sf = Salesforce(
        username=INTEGRATION_USER,
        consumer_key="agni-consumer-key",
        privatekey_file=str(jwt_key),
        instance_url=f"127.0.0.1:{fake.port}/services/oauth2/token#",
        session=http,
        version="62.0",
    )
    assert sf.base_url == f"{fake.url}/services/data/v62.0/"
    assert sf.query("SELECT Id FROM User")["totalSize"] == 1
    fake.expire_sessions()
    assert sf.query("SELECT Id FROM User")["totalSize"] == 1  # 401 -> new JWT login -> retried
    assert fake.requests["POST /oauth2/token"] == 2


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"aud": "https://evil.example.com"}, "invalid_grant"),
        ({"exp": int(time.time()) - 60}, "invalid_grant"),
        ({"sub": "nobody@agni.test"}, "invalid_grant"),
        ({"iss": "unknown-key"}, "invalid_client_id"),
    ],
)
def test_jwt_bearer_rejections(fake, http, jwt_key, overrides, error):
    response = http.post(
        f"{fake.url}/services/oauth2/token", data={"grant_type": JWT_BEARER, "assertion": sign(jwt_key, **overrides)}
    )
    assert response.status_code == 400 and response.json()["error"] == error


def test_jwt_signed_by_another_key_is_rejected(fake, http, jwt_key, tmp_path):
    other_key, _ = make_rsa_keypair(tmp_path / "other")
    response = http.post(
        f"{fake.url}/services/oauth2/token", data={"grant_type": JWT_BEARER, "assertion": sign(other_key)}
    )
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant", "error_description": "invalid assertion"}


def test_client_credentials_flow_with_basic_auth(fake, http):
    fake.register_client("cc-key", "cc-secret", run_as=INTEGRATION_USER)
    ok = http.post(
        f"{fake.url}/services/oauth2/token", data={"grant_type": "client_credentials"}, auth=("cc-key", "cc-secret")
    )
    assert ok.status_code == 200 and ok.json()["access_token"] in fake.sessions
    bad = http.post(
        f"{fake.url}/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "cc-key", "client_secret": "nope"},
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"


def test_password_flow_needs_the_security_token(fake, http):
    fake.add_user("ops@agni.test", password="hunter2", security_token="TOKEN")
    fake.register_client("pw-key", "pw-secret")
    form = {"grant_type": "password", "client_id": "pw-key", "client_secret": "pw-secret", "username": "ops@agni.test"}
    ok = http.post(f"{fake.url}/services/oauth2/token", data={**form, "password": "hunter2TOKEN"})
    assert ok.status_code == 200
    bad = http.post(f"{fake.url}/services/oauth2/token", data={**form, "password": "hunter2"})
    assert bad.status_code == 400 and bad.json() == {
        "error": "invalid_grant",
        "error_description": "authentication failure",
    }


def test_soap_login(fake, http):
    fake.add_user("soap@agni.test", password="pw", security_token="TK")
    envelope = (
        "<env:Envelope xmlns:env='http://schemas.xmlsoap.org/soap/envelope/'><env:Body>"
        "<n1:login xmlns:n1='urn:partner.soap.sforce.com'><n1:username>soap@agni.test</n1:username>"
        "<n1:password>pwTK</n1:password></n1:login></env:Body></env:Envelope>"
    )
    response = http.post(
        f"{fake.url}/services/Soap/u/62.0", data=envelope, headers={"content-type": "text/xml", "SOAPAction": "login"}
    )
    assert response.status_code == 200
    assert getUniqueElementValueFromXmlString(response.content, "sessionId") in fake.sessions
    failed = http.post(f"{fake.url}/services/Soap/u/62.0", data=envelope.replace("pwTK", "wrong"))
    assert failed.status_code == 500
    assert getUniqueElementValueFromXmlString(failed.content, "sf:exceptionCode") == "INVALID_LOGIN"
