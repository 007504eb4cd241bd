"""FakeDynamics's own contract: what it accepts and refuses, spoken to with plain HTTP, no connector involved."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.fakes.dynamics import CLIENT_ID, CLIENT_SECRET, FakeDynamics

ODATA = {"OData-Version": "4.0", "OData-MaxVersion": "4.0", "Accept": "application/json"}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CRLF = "\r\n"


@pytest.fixture
def fake() -> Iterator[FakeDynamics]:
    server = FakeDynamics().start()
    yield server
    server.stop()


def token_form(fake: FakeDynamics, **fields: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "scope": f"{fake.url}/.default",
        "client_secret": CLIENT_SECRET,
        **fields,
    }


def api(fake: FakeDynamics) -> httpx.Client:
    token = httpx.post(fake.token_url, data=token_form(fake)).json()["access_token"]
    return httpx.Client(base_url=fake.base + "/", headers={**ODATA, "Authorization": f"Bearer {token}"})


def create(client: httpx.Client, entity_set: str, record_id: str, body: dict, **headers: str) -> httpx.Response:
    return client.patch(f"{entity_set}({record_id})", json=body, headers={"If-None-Match": "*", **headers})


def error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


def batch_body(*parts: list[str] | str, boundary: str = "batch_1") -> str:
    lines: list[str] = []
    for part in parts:
        lines.append(f"--{boundary}")
        if isinstance(part, str):
            lines.append(part)
        else:
            lines += [
                "Content-Type: multipart/mixed; boundary=changeset_1",
                "",
                *[f"--changeset_1{CRLF}{p}" for p in part],
                "--changeset_1--",
            ]
    lines.append(f"--{boundary}--")
    return CRLF.join(lines) + CRLF


def request_part(method: str, url: str, body: dict | None = None, content_id: str | None = None, **headers: str) -> str:
    head = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        head.append(f"Content-ID: {content_id}")
    inner = [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        inner.append("Content-Type: application/json")
    return CRLF.join([*head, "", f"{method} {url} HTTP/1.1", *inner, "", json.dumps(body) if body is not None else ""])


# -- the token endpoint ----------------------------------------------------------------------------


def test_the_token_endpoint_issues_a_bearer_token_for_the_client_secret(fake):
    answer = httpx.post(fake.token_url, data=token_form(fake))
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599 and body["access_token"]


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"client_secret": "wrong"}, 401, 7000215),
        ({"client_id": str(uuid.UUID(int=1))}, 400, 700016),
        ({"scope": "https://other.crm.dynamics.com/.default"}, 400, 70011),
        ({"grant_type": "password"}, 400, 70003),
    ],
)
def test_the_token_endpoint_refuses_like_entra_id(fake, fields, status, code):
    answer = httpx.post(fake.token_url, data=token_form(fake, **fields))
    assert answer.status_code == status
    assert answer.json()["error_codes"] == [code]
    assert answer.json()["error_description"].startswith(f"AADSTS{code}: ")


def signed_assertion(fake: FakeDynamics, key: rsa.RSAPrivateKey, certificate: x509.Certificate, **claims) -> str:
    der = certificate.public_bytes(serialization.Encoding.DER)
    sha256 = jwt.utils.base64url_encode(hashlib.sha256(der).digest()).decode()
    now = int(time.time())
    payload = {
        "aud": fake.token_url,
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "jti": str(uuid.uuid4()),
        "nbf": now,
        "exp": now + 600,
        **claims,
    }
    return jwt.encode(payload, key, algorithm="RS256", headers={"x5t#S256": sha256})


@pytest.fixture(scope="module")
def app_certificate() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "app")])
    now = dt.datetime.now(dt.UTC)
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    builder = builder.serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
    certificate = builder.sign(key, hashes.SHA256())
    return key, certificate


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({}, True),
        ({"aud": "https://login.microsoftonline.com/x/oauth2/v2.0/token"}, False),
        ({"iss": "someone-else"}, False),
        ({"exp": int(time.time()) - 3600}, False),
    ],
)
def test_a_client_assertion_is_checked_against_the_registered_certificate(fake, app_certificate, claims, accepted):
    key, certificate = app_certificate
    fake.issuer.certificates.append(certificate.public_bytes(serialization.Encoding.PEM))
    form = token_form(
        fake, client_assertion_type=ASSERTION_TYPE, client_assertion=signed_assertion(fake, key, certificate, **claims)
    )
    del form["client_secret"]
    answer = httpx.post(fake.token_url, data=form)
    assert (answer.status_code == 200) is accepted, answer.text


def test_an_assertion_signed_by_an_unregistered_certificate_is_refused(fake, app_certificate):
    key, certificate = app_certificate
    form = token_form(
        fake, client_assertion_type=ASSERTION_TYPE, client_assertion=signed_assertion(fake, key, certificate)
    )
    del form["client_secret"]
    answer = httpx.post(fake.token_url, data=form)
    assert answer.status_code == 401 and answer.json()["error_codes"] == [700027]


# -- authentication and headers ---------------------------------------------------------------------


def test_the_web_api_wants_a_valid_bearer_token(fake):
    answer = httpx.get(f"{fake.base}/WhoAmI", headers=ODATA)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    with api(fake) as client:
        assert client.get("WhoAmI").json()["UserId"] == fake.app_user
        fake.revoke_tokens()
        assert client.get("WhoAmI").status_code == 401


def test_tokens_expire(fake):
    fake.issuer.lifetime = 1
    with api(fake) as client:
        assert client.get("WhoAmI").status_code == 200
        fake.clock = lambda: time.time() + 5
        assert client.get("WhoAmI").status_code == 401


@pytest.mark.parametrize(("drop", "status"), [("OData-Version", 400), ("OData-MaxVersion", 400), ("Accept", 406)])
def test_the_odata_headers_are_required(fake, drop, status):
    with api(fake) as client:
        headers = {k: v for k, v in client.headers.items() if k.lower() != drop.lower()}
        answer = httpx.get(f"{fake.base}/WhoAmI", headers=headers)
    assert answer.status_code == status


def test_a_body_must_be_sent_as_json(fake):
    with api(fake) as client:
        answer = client.patch(
            f"phonecalls({uuid.uuid4()})",
            content=b'{"subject": "x"}',
            headers={"Content-Type": "text/plain", "If-None-Match": "*"},
        )
    assert answer.status_code == 415


# -- records ------------------------------------------------------------------------------------------


def test_create_only_and_update_only_requests_by_primary_key(fake):
    record = str(uuid.uuid4())
    with api(fake) as client:
        assert create(client, "phonecalls", record, {"subject": "Call"}).status_code == 204
        assert error(create(client, "phonecalls", record, {"subject": "Again"})) == (
            412,
            "0x80040237",
            "A record with matching key values already exists.",
        )
        missing = str(uuid.uuid4())
        answer = client.patch(f"phonecalls({missing})", json={"subject": "x"}, headers={"If-Match": "*"})
        assert error(answer) == (404, "0x80040217", f"phonecall With Id = {missing} Does Not Exist")
        etag = client.get(f"phonecalls({record})", params={"$select": "subject"}).json()["@odata.etag"]
        assert (
            client.patch(f"phonecalls({record})", json={"subject": "New"}, headers={"If-Match": etag}).status_code
            == 204
        )
        stale = client.patch(f"phonecalls({record})", json={"subject": "Newer"}, headers={"If-Match": etag})
        assert error(stale)[:2] == (412, "0x80060882")
    assert fake.get("phonecall", record)["subject"] == "New"


def test_a_completed_phone_call_is_read_only_until_reopened(fake):
    record = str(uuid.uuid4())
    with api(fake) as client:
        create(client, "phonecalls", record, {"subject": "Call"})
        assert error(create(client, "phonecalls", str(uuid.uuid4()), {"subject": "x", "statecode": 1}))[:2] == (
            400,
            "0x80040203",
        )
        close = {"statecode": 1, "statuscode": 2}
        assert client.patch(f"phonecalls({record})", json=close, headers={"If-Match": "*"}).status_code == 204
        for change in ({"subject": "Edited"}, close):
            answer = client.patch(f"phonecalls({record})", json=change, headers={"If-Match": "*"})
            assert error(answer) == (400, "0x8004022e", "The object cannot be updated because it is read-only.")
        bad = client.patch(f"phonecalls({record})", json={"statecode": 0, "statuscode": 4}, headers={"If-Match": "*"})
        assert error(bad)[:2] == (400, "0x80040203")  # Received is not an open status
        assert (
            client.patch(f"phonecalls({record})", json={"statecode": 0}, headers={"If-Match": "*"}).status_code == 204
        )
    assert (fake.get("phonecall", record)["statecode"], fake.get("phonecall", record)["statuscode"]) == (0, 1)


def test_writes_are_validated_like_dataverse(fake):
    with api(fake) as client:
        unknown = create(client, "phonecalls", str(uuid.uuid4()), {"subjekt": "x"})
        assert error(unknown)[:2] == (400, "0x80060888")
        assert "The property 'subjekt' does not exist on type 'Microsoft.Dynamics.CRM.phonecall'" in error(unknown)[2]
        long = create(client, "phonecalls", str(uuid.uuid4()), {"subject": "x" * 201})
        assert error(long)[1:] == (
            "0x80044331",
            "A validation error occurred.  The length of the 'subject' attribute "
            "of the 'phonecall' entity exceeded the maximum allowed length of '200'.",
        )
        ghost = str(uuid.uuid4())
        bound = create(
            client,
            "phonecalls",
            str(uuid.uuid4()),
            {"regardingobjectid_contact_phonecall@odata.bind": f"/contacts({ghost})"},
        )
        assert error(bound) == (404, "0x80040217", f"contact With Id = {ghost} Does Not Exist")
        typed = create(client, "phonecalls", str(uuid.uuid4()), {"directioncode": "yes"})
        assert error(typed)[:2] == (400, "0x80060888")
        party = create(
            client, "phonecalls", str(uuid.uuid4()), {"phonecall_activity_parties": [{"participationtypemask": 1}]}
        )
        assert error(party)[:2] == (400, "0x80060888")
    assert fake.count("phonecall") == 0


def test_a_missing_privilege_is_refused_with_its_name(fake):
    fake.privileges.discard("prvCreateActivity")
    with api(fake) as client:
        status, code, message = error(create(client, "phonecalls", str(uuid.uuid4()), {"subject": "x"}))
    assert (status, code) == (403, "0x80040220")
    assert "is missing prvCreateActivity privilege" in message


# -- queries ------------------------------------------------------------------------------------------


def test_filters_compare_text_without_case_and_quotes_are_doubled(fake):
    fake.add("contact", lastname="O'Brien", emailaddress1="O'Brien@example.com", modifiedon="2025-01-01T00:00:00Z")
    newer = fake.add(
        "contact", lastname="O'Brien", emailaddress2="o'brien@example.com", modifiedon="2026-01-01T00:00:00Z"
    )
    with api(fake) as client:
        found = client.get(
            "contacts",
            params={
                "$select": "contactid,lastname",
                "$orderby": "modifiedon desc",
                "$top": "1",
                "$filter": "statecode eq 0 and (emailaddress1 eq 'o''brien@example.com' "
                "or emailaddress2 eq 'o''brien@example.com')",
            },
        )
        assert [row["contactid"] for row in found.json()["value"]] == [newer]
        unescaped = client.get("contacts", params={"$filter": "emailaddress1 eq 'o'brien@example.com'"})
        assert error(unescaped)[:2] == (400, "0x80060888")
        unknown = client.get("contacts", params={"$filter": "email eq 'x'"})
        assert "Could not find a property named 'email' on type 'Microsoft.Dynamics.CRM.contact'." in error(unknown)[2]
        assert client.get("contacts", params={"$expand": "x"}).status_code == 400


# -- $batch -------------------------------------------------------------------------------------------


def post_batch(client: httpx.Client, body: str, *, boundary: str = "batch_1", prefer: str = "") -> httpx.Response:
    headers = {"Content-Type": f"multipart/mixed; boundary={boundary}", **({"Prefer": prefer} if prefer else {})}
    return client.post("$batch", content=body.encode(), headers=headers)


def test_a_change_set_is_one_transaction_and_answers_with_the_error_that_rolled_it_back(fake):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    with api(fake) as client:
        create(client, "tasks", second, {"subject": "exists"})
        body = batch_body(
            [
                request_part(
                    "PATCH", f"{fake.base}/phonecalls({first})", {"subject": "one"}, "1", **{"If-None-Match": "*"}
                ),
                request_part(
                    "PATCH", f"{fake.base}/tasks({second})", {"subject": "two"}, "2", **{"If-None-Match": "*"}
                ),
            ]
        )
        answer = post_batch(client, body, prefer="odata.continue-on-error")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("multipart/mixed; boundary=batchresponse_")
    text = answer.text
    assert "changesetresponse" not in text  # the change set failed: one response in its place
    assert "Content-ID: 2" in text and "HTTP/1.1 412 Precondition Failed" in text and "0x80040237" in text
    assert fake.get("phonecall", first) is None  # rolled back


def test_a_successful_change_set_answers_every_request_with_its_content_id(fake):
    record = str(uuid.uuid4())
    with api(fake) as client:
        body = batch_body(
            [
                request_part(
                    "PATCH", f"/api/data/v9.2/phonecalls({record})", {"subject": "x"}, "a", **{"If-None-Match": "*"}
                ),
                request_part(
                    "PATCH",
                    f"{fake.base}/phonecalls({record})",
                    {"statecode": 1, "statuscode": 2},
                    "b",
                    **{"If-Match": "*"},
                ),
            ],
            request_part("GET", f"{fake.base}/phonecalls({record})?$select=statecode", Accept="application/json"),
        )
        answer = post_batch(client, body)
    assert answer.status_code == 200
    text = answer.text
    assert "changesetresponse_" in text
    assert text.count("HTTP/1.1 204 No Content") == 2
    assert "Content-ID: a" in text and "Content-ID: b" in text
    assert '"statecode": 1' in text
    assert fake.requests["POST $batch"] == fake.total_requests == 1  # a $batch counts as one request


def test_without_continue_on_error_the_batch_stops_at_the_first_failure(fake):
    with api(fake) as client:
        body = batch_body(
            request_part("PATCH", f"{fake.base}/phonecalls({uuid.uuid4()})", {"nope": 1}, **{"If-None-Match": "*"}),
            request_part(
                "PATCH", f"{fake.base}/phonecalls({uuid.uuid4()})", {"subject": "x"}, **{"If-None-Match": "*"}
            ),
        )
        answer = post_batch(client, body)
    assert answer.status_code == 400
    assert answer.text.count("HTTP/1.1") == 1
    assert fake.count("phonecall") == 0


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda body: body.replace(CRLF, "\n"), "CRLF"),
        (lambda body: body.replace("--batch_1--", ""), "closing delimiter"),
        (lambda body: body.replace("Content-ID: 1\r\n", ""), "Content-ID"),
        (lambda body: body.replace("Content-Transfer-Encoding: binary\r\n", "", 1), "Content-Transfer-Encoding"),
        (lambda body: body.replace("PATCH ", "GET ", 1), "GET requests are not allowed within change sets"),
    ],
)
def test_a_malformed_batch_is_refused(fake, mutate, reason):
    valid = batch_body(
        [
            request_part(
                "PATCH", f"{fake.base}/phonecalls({uuid.uuid4()})", {"subject": "x"}, "1", **{"If-None-Match": "*"}
            )
        ]
    )
    with api(fake) as client:
        assert post_batch(client, valid).status_code == 200
        answer = post_batch(client, mutate(valid))
    assert answer.status_code == 400
    assert reason in answer.json()["error"]["message"]


def test_a_batch_without_a_boundary_is_refused(fake):
    with api(fake) as client:
        answer = client.post("$batch", content=b"x", headers={"Content-Type": "multipart/mixed"})
    assert answer.status_code == 400 and "boundary" in answer.json()["error"]["message"]


# -- service protection --------------------------------------------------------------------------------


def test_too_many_requests_in_the_window_are_refused_with_retry_after(fake):
    fake.requests_per_window, fake.window_seconds = 3, 300
    with api(fake) as client:
        assert [client.get("WhoAmI").status_code for _ in range(3)] == [200, 200, 200]
        answer = client.get("WhoAmI")
    assert error(answer) == (
        429,
        "0x80072322",
        "Number of requests exceeded the limit of 3 over time window of 300 seconds.",
    )
    assert 295 <= int(answer.headers["Retry-After"]) <= 300


def test_too_many_concurrent_requests_are_refused(fake):
    fake.max_concurrent, fake.processing_seconds = 2, 0.3
    with api(fake) as client, ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: client.get("WhoAmI"), range(5)))
    refused = [a for a in answers if a.status_code == 429]
    assert refused and error(refused[0]) == (
        429,
        "0x80072326",
        "Number of concurrent requests exceeded the limit of 2.",
    )
    assert fake.max_in_flight == 2
