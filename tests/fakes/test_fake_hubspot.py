"""FakeHubSpot answers like HubSpot (REFERENCE.md §1), checked with plain httpx over a real socket.

These tests pin the fake's contract so the bridge's tests can trust it: if HubSpot's documented
behaviour and the fake disagree, fix the fake here first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.fakes.httpserver import Fault
from tests.fakes.hubspot import FakeHubSpot, ManualClock

CALLS = "/crm/v3/objects/calls"
CONTACTS = "/crm/v3/objects/contacts"
TASKS = "/crm/v3/objects/tasks"
NOON = "2026-11-20T12:00:00Z"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> Iterator[FakeHubSpot]:
    server = FakeHubSpot(clock=clock)
    with server:
        yield server


def client_for(server: FakeHubSpot, token: str = "test-token") -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=5)


@pytest.fixture
def hs(fake: FakeHubSpot) -> Iterator[httpx.Client]:
    with client_for(fake) as client:
        yield client


def search(hs: httpx.Client, *groups: list[dict], object_type: str = "contacts", **extra: object) -> dict:
    body = {"filterGroups": [{"filters": filters} for filters in groups], **extra}
    response = hs.post(f"/crm/v3/objects/{object_type}/search", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def ids(result: dict) -> list[str]:
    return [r["id"] for r in result["results"]]


# -- create, read, associations ------------------------------------------------------------------
def test_create_call_with_inline_association_then_read_it_back(fake: FakeHubSpot, hs: httpx.Client) -> None:
    contact = fake.add_contact(email="jane@example.com")
    body = {
        "properties": {
            "hs_timestamp": NOON,
            "hs_call_title": "Agni call",
            "hs_call_duration": 3800,
            "hs_call_status": "COMPLETED",
            "hs_call_direction": "OUTBOUND",
        },
        "associations": [
            {"to": {"id": contact}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}]}
        ],
    }
    response = hs.post(CALLS, json=body)
    assert response.status_code == 201, response.text
    call = response.json()
    props = call["properties"]
    assert props["hs_call_duration"] == "3800"  # numbers are stored as strings
    assert props["hs_timestamp"] == "2026-11-20T12:00:00.000Z"
    assert props["hs_object_id"] == call["id"] and props["hs_createdate"] and props["hs_lastmodifieddate"]
    assert call["archived"] is False and call["createdAt"] == call["updatedAt"]
    assert (("calls", call["id"], "contacts", contact, 194)) in fake.associations

    read = hs.get(f"/crm/v4/objects/calls/{call['id']}/associations/contacts").json()
    assert read == {
        "results": [
            {
                "toObjectId": int(contact),
                "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 194, "label": None}],
            }
        ]
    }
    back = hs.get(f"/crm/v4/objects/contacts/{contact}/associations/calls").json()
    assert back["results"][0]["toObjectId"] == int(call["id"])
    assert back["results"][0]["associationTypes"][0]["typeId"] == 193  # the inverse type

    got = hs.get(
        f"{CALLS}/{call['id']}", params={"properties": "hs_call_title,hs_call_body", "associations": "contacts"}
    )
    assert got.status_code == 200
    assert got.json()["properties"]["hs_call_title"] == "Agni call"
    assert got.json()["properties"]["hs_call_body"] is None  # asked for but unset
    assert got.json()["associations"]["contacts"]["results"] == [{"id": contact, "type": "call_to_contact"}]
    assert fake.requests[f"GET {CALLS}/{{id}}"] == 1


def test_wrong_association_type_and_missing_target_are_400(fake: FakeHubSpot, hs: httpx.Client) -> None:
    contact = fake.add_contact(email="a@b.com")

    def create(to_id: str, type_id: int) -> httpx.Response:
        assoc = [
            {"to": {"id": to_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}
        ]
        return hs.post(CALLS, json={"properties": {"hs_timestamp": NOON}, "associations": assoc})

    assert create(contact, 204).status_code == 400  # 204 is task->contact
    assert create("999999", 194).status_code == 400
    assert fake.count("calls") == 0


def test_v4_default_association_put(fake: FakeHubSpot, hs: httpx.Client) -> None:
    contact, company = fake.add_contact(email="a@b.com"), fake.add_company(name="Acme")
    task = hs.post(TASKS, json={"properties": {"hs_timestamp": "1790000000000", "hs_task_subject": "Call back"}}).json()
    response = hs.put(f"/crm/v4/objects/tasks/{task['id']}/associations/default/contacts/{contact}")
    assert response.status_code == 200
    assert response.json()["results"][0]["associationSpec"]["associationTypeId"] == 204
    hs.put(f"/crm/v4/objects/tasks/{task['id']}/associations/default/companies/{company}")
    assert fake.associated_ids("tasks", task["id"], "contacts") == [contact]
    assert fake.associated_ids("companies", company, "tasks") == [task["id"]]
    assert hs.put(f"/crm/v4/objects/tasks/{task['id']}/associations/default/contacts/424242").status_code == 404
    v3 = hs.get(f"/crm/v3/objects/tasks/{task['id']}/associations/contacts").json()
    assert v3 == {"results": [{"id": contact, "type": "task_to_contact"}]}
    assert hs.get(f"/crm/v3/objects/tasks/{task['id']}/associations/deals").json() == {"results": []}
    batch = hs.post("/crm/v4/associations/calls/contacts/batch/associate/default",
                    json={"inputs": [{"from": {"id": "1"}, "to": {"id": contact}}]})  # fmt: skip
    assert batch.status_code == 207 and batch.json()["errors"][0]["context"] == {"ids": ["1"]}


def test_get_patch_and_not_found(fake: FakeHubSpot, hs: httpx.Client, clock: ManualClock) -> None:
    contact = fake.add_contact(email="jane@example.com", firstname="Jane")
    clock.advance(5)
    patched = hs.patch(f"{CONTACTS}/{contact}", json={"properties": {"lastname": "Doe", "firstname": ""}})
    assert patched.status_code == 200
    assert patched.json()["properties"]["lastname"] == "Doe"
    assert "firstname" not in fake.properties_of("contacts", contact)  # "" clears
    assert patched.json()["updatedAt"] > patched.json()["createdAt"]

    missing = hs.get(f"{CONTACTS}/777777")
    assert missing.status_code == 404
    assert missing.json()["category"] == "OBJECT_NOT_FOUND" and missing.json()["correlationId"]
    assert hs.get(f"{CONTACTS}/jane@example.com", params={"idProperty": "email"}).json()["id"] == contact


def test_date_versioned_objects_path() -> None:
    with FakeHubSpot(objects_path="/crm/objects/2026-03") as fake, client_for(fake) as hs:
        contact = fake.add_contact(email="x@y.com")
        assoc = [
            {"to": {"id": contact}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}]}
        ]
        new = hs.post("/crm/objects/2026-03/calls", json={"properties": {"hs_timestamp": NOON}, "associations": assoc})
        assert new.status_code == 201
        assert hs.get(f"/crm/objects/2026-03/calls/{new.json()['id']}").status_code == 200
        assert hs.get(f"{CALLS}/{new.json()['id']}").status_code == 200  # v3 keeps working
        put = hs.put(f"/crm/objects/2026-03/calls/{new.json()['id']}/associations/default/contacts/{contact}")
        assert put.status_code == 200
        assert hs.get("/crm/properties/2026-03/calls/hs_timestamp").status_code == 200
        assert fake.requests["POST /crm/objects/2026-03/calls"] == 1


def test_contact_with_existing_email_is_409(fake: FakeHubSpot, hs: httpx.Client) -> None:
    existing = fake.add_contact(email="Jane@Example.com")
    response = hs.post(CONTACTS, json={"properties": {"email": "jane@example.com"}})
    assert response.status_code == 409
    assert response.json()["message"] == f"Contact already exists. Existing ID: {existing}"


# -- validation ----------------------------------------------------------------------------------
def test_unknown_property_is_hubspot_validation_error(hs: httpx.Client) -> None:
    response = hs.post(CALLS, json={"properties": {"hs_timestamp": NOON, "x": "1"}})
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and body["category"] == "VALIDATION_ERROR" and body["correlationId"]
    assert body["message"] == (
        'Property values were not valid: [{"isValid":false,"message":"Property \\"x\\" does not exist",'
        '"error":"PROPERTY_DOESNT_EXIST","name":"x"}]'
    )
    details = json.loads(body["message"].split(": ", 1)[1])
    assert details == [
        {"isValid": False, "message": 'Property "x" does not exist', "error": "PROPERTY_DOESNT_EXIST", "name": "x"}
    ]


def test_missing_hs_timestamp_is_400(fake: FakeHubSpot, hs: httpx.Client) -> None:
    for path in (CALLS, TASKS):
        response = hs.post(path, json={"properties": {"hs_call_title": "t"} if path == CALLS else {}})
        assert response.status_code == 400
        assert response.json()["category"] == "VALIDATION_ERROR"
        assert response.json()["context"] == {"properties": ["hs_timestamp"]}
    assert fake.count("calls") == fake.count("tasks") == 0


@pytest.mark.parametrize(
    ("properties", "error"),
    [
        ({"hs_call_status": "completed"}, "INVALID_OPTION"),  # enums are case-sensitive
        ({"hs_call_direction": "OUT"}, "INVALID_OPTION"),
        ({"hs_call_duration": " 12"}, "INVALID_FLOAT"),
        ({"hs_timestamp": "yesterday"}, "INVALID_LONG"),
        ({"hs_call_body": "x" * 65_537}, "INVALID_PROPERTY_LENGTH"),
    ],
)
def test_invalid_values_are_400(hs: httpx.Client, properties: dict, error: str) -> None:
    response = hs.post(CALLS, json={"properties": {"hs_timestamp": NOON, **properties}})
    assert response.status_code == 400
    assert f'"error":"{error}"' in response.json()["message"]


def test_value_limits_and_timestamps_accepted(hs: httpx.Client) -> None:
    body = {"hs_timestamp": 1790000000123, "hs_call_body": "x" * 65_536, "hs_call_has_voicemail": True}
    props = hs.post(CALLS, json={"properties": body}).json()["properties"]
    assert props["hs_timestamp"] == "2026-09-21T14:13:20.123Z"
    assert props["hs_call_has_voicemail"] == "true"
    task = hs.post(
        TASKS, json={"properties": {"hs_timestamp": NOON, "hs_task_status": "WAITING", "hs_task_type": "CALL"}}
    )
    assert task.status_code == 201


# -- search --------------------------------------------------------------------------------------
def test_search_email_is_case_insensitive(fake: FakeHubSpot, hs: httpx.Client) -> None:
    jane = fake.add_contact(email="Jane.Doe@Example.com", firstname="Jane")
    fake.add_contact(email="other@example.com")
    result = search(
        hs,
        [{"propertyName": "email", "operator": "EQ", "value": "jane.doe@example.COM"}],
        properties=["email", "phone"],
    )
    assert result["total"] == 1 and ids(result) == [jane]
    props = result["results"][0]["properties"]
    assert props["email"] == "Jane.Doe@Example.com" and props["phone"] is None
    assert {"hs_object_id", "createdate", "lastmodifieddate"} <= props.keys()
    assert "firstname" not in props  # `properties` replaces the default list


def test_search_by_phone_and_calculated_phone_number(fake: FakeHubSpot, hs: httpx.Client) -> None:
    formatted = fake.add_contact(phone="(415) 555-0100")
    e164 = fake.add_contact(phone="+14155550100")
    mobile = fake.add_contact(mobilephone="+1 (212) 555-0199")
    exact = search(hs, [{"propertyName": "phone", "operator": "EQ", "value": "+14155550100"}])
    assert ids(exact) == [e164]  # phone EQ is an exact string match
    calculated = search(
        hs, [{"propertyName": "hs_searchable_calculated_phone_number", "operator": "EQ", "value": "4155550100"}]
    )
    assert ids(calculated) == [formatted, e164]
    by_mobile = search(
        hs, [{"propertyName": "hs_searchable_calculated_mobile_number", "operator": "EQ", "value": "2125550199"}]
    )
    assert ids(by_mobile) == [mobile]


def test_search_or_of_groups_and_and_within_group(fake: FakeHubSpot, hs: httpx.Client) -> None:
    by_email = fake.add_contact(email="a@x.com", lifecyclestage="lead")
    by_phone = fake.add_contact(phone="+15550001", lifecyclestage="customer")
    fake.add_contact(email="b@x.com", lifecyclestage="lead")
    either = search(
        hs,
        [{"propertyName": "email", "operator": "EQ", "value": "a@x.com"}],
        [{"propertyName": "phone", "operator": "EQ", "value": "+15550001"}],
    )
    assert ids(either) == [by_email, by_phone]
    both = search(
        hs,
        [
            {"propertyName": "email", "operator": "EQ", "value": "a@x.com"},
            {"propertyName": "lifecyclestage", "operator": "EQ", "value": "customer"},
        ],
    )
    assert both["total"] == 0
    assert search(hs)["total"] == 3  # {} is a valid search body


def test_search_in_has_property_and_neq(fake: FakeHubSpot, hs: httpx.Client) -> None:
    lead = fake.add_contact(email="a@x.com", hs_lead_status="NEW")
    open_ = fake.add_contact(email="b@x.com", hs_lead_status="OPEN")
    bare = fake.add_contact(email="c@x.com")
    result = search(hs, [{"propertyName": "hs_lead_status", "operator": "IN", "values": ["new", "open"]}])
    assert ids(result) == [lead, open_]
    assert ids(search(hs, [{"propertyName": "hs_lead_status", "operator": "NOT_HAS_PROPERTY"}])) == [bare]
    assert ids(search(hs, [{"propertyName": "hs_lead_status", "operator": "NEQ", "value": "NEW"}])) == [open_, bare]


def test_search_contains_token_on_additional_emails(fake: FakeHubSpot, hs: httpx.Client) -> None:
    both = fake.add_contact(email="main@x.com", hs_additional_emails="alt@y.com;Second@Z.com")
    fake.add_contact(email="other@x.com", hs_additional_emails="notalt@y.com")

    def token(value: str) -> list[str]:
        return ids(search(hs, [{"propertyName": "hs_additional_emails", "operator": "CONTAINS_TOKEN", "value": value}]))

    assert token("second@z.com") == [both]
    assert token("alt@y.com") == [both]  # whole tokens only: notalt@y.com does not match
    assert token("*@z.com") == [both]
    assert len(token("*@y.com")) == 2


def test_search_sorts_by_lastmodifieddate(fake: FakeHubSpot, hs: httpx.Client, clock: ManualClock) -> None:
    first = fake.add_contact(email="1@x.com")
    clock.advance(1)
    second = fake.add_contact(email="2@x.com")
    clock.advance(1)
    hs.patch(f"{CONTACTS}/{first}", json={"properties": {"firstname": "Touched"}})
    newest = search(hs, sorts=[{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}])
    assert ids(newest) == [first, second]
    assert ids(search(hs, sorts=["-lastmodifieddate"])) == [first, second]
    assert ids(search(hs, sorts=["lastmodifieddate"])) == [second, first]


def test_search_paging_and_limits(fake: FakeHubSpot, hs: httpx.Client) -> None:
    created = [fake.add_contact(email=f"{i}@x.com") for i in range(5)]
    page1 = search(hs, limit=2)
    assert page1["total"] == 5 and ids(page1) == created[:2] and page1["paging"]["next"]["after"] == "2"
    page3 = search(hs, limit=2, after=4)
    assert ids(page3) == created[4:] and "paging" not in page3

    def status(body: dict) -> int:
        return hs.post(f"{CONTACTS}/search", json=body).status_code

    flt = {"propertyName": "email", "operator": "EQ", "value": "x"}
    assert status({"limit": 201}) == 400
    assert status({"filterGroups": [{"filters": [flt]}] * 6}) == 400
    assert status({"filterGroups": [{"filters": [flt] * 7}]}) == 400
    assert status({"filterGroups": [{"filters": [flt] * 4}] * 5}) == 400  # 20 > 18 filters in all
    assert status({"filterGroups": [{"filters": [{**flt, "propertyName": "nope"}]}]}) == 400


def test_search_lag_hides_new_objects(fake: FakeHubSpot, hs: httpx.Client, clock: ManualClock) -> None:
    fake.search_lag_seconds = 2
    contact = hs.post(CONTACTS, json={"properties": {"email": "new@x.com"}}).json()["id"]
    query = [{"propertyName": "email", "operator": "EQ", "value": "new@x.com"}]
    assert search(hs, query)["total"] == 0  # not indexed yet, though GET finds it
    assert hs.get(f"{CONTACTS}/{contact}").status_code == 200
    clock.advance(2)
    assert ids(search(hs, query)) == [contact]


def test_search_calls_by_association(fake: FakeHubSpot, hs: httpx.Client) -> None:
    contact = fake.add_contact(email="a@x.com")
    call = fake.add_object("calls", hs_timestamp=NOON)
    fake.add_object("calls", hs_timestamp=NOON)
    fake.associate("calls", call, "contacts", contact)
    found = search(
        hs, [{"propertyName": "associations.contact", "operator": "EQ", "value": contact}], object_type="calls"
    )
    assert ids(found) == [call]


# -- batch ---------------------------------------------------------------------------------------
def test_batch_create_three_calls(fake: FakeHubSpot, hs: httpx.Client) -> None:
    inputs = [
        {"properties": {"hs_timestamp": NOON, "hs_call_title": f"call {i}"}, "associations": []} for i in range(3)
    ]
    response = hs.post(f"{CALLS}/batch/create", json={"inputs": inputs})
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "COMPLETE" and len(body["results"]) == 3 and "errors" not in body
    assert fake.count("calls") == 3


def test_batch_create_fails_whole_batch_on_invalid_input(fake: FakeHubSpot, hs: httpx.Client) -> None:
    inputs = [{"properties": {"hs_timestamp": NOON}}, {"properties": {"hs_call_title": "no timestamp"}}]
    assert hs.post(f"{CALLS}/batch/create", json={"inputs": inputs}).status_code == 400
    assert fake.count("calls") == 0
    too_many = [{"properties": {"hs_timestamp": NOON}}] * 101
    assert hs.post(f"{CALLS}/batch/create", json={"inputs": too_many}).status_code == 400


def test_batch_update_with_a_bad_id_is_207(fake: FakeHubSpot, hs: httpx.Client) -> None:
    call = fake.add_object("calls", hs_timestamp=NOON)
    inputs = [
        {"id": call, "properties": {"hs_call_title": "updated"}},
        {"id": "999999", "properties": {"hs_call_title": "x"}},
    ]
    response = hs.post(f"{CALLS}/batch/update", json={"inputs": inputs})
    assert response.status_code == 207
    body = response.json()
    assert body["numErrors"] == 1 and [r["id"] for r in body["results"]] == [call]
    assert body["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert body["errors"][0]["context"] == {"ids": ["999999"]}
    assert fake.properties_of("calls", call)["hs_call_title"] == "updated"


def test_batch_read(fake: FakeHubSpot, hs: httpx.Client) -> None:
    contact = fake.add_contact(email="a@x.com", phone="1")
    ok = hs.post(f"{CONTACTS}/batch/read", json={"properties": ["phone"], "inputs": [{"id": contact}]})
    assert ok.status_code == 200 and ok.json()["results"][0]["properties"]["phone"] == "1"
    partial = hs.post(f"{CONTACTS}/batch/read", json={"inputs": [{"id": contact}, {"id": "5"}]})
    assert partial.status_code == 207 and partial.json()["numErrors"] == 1


def test_batch_upsert_by_unique_property(fake: FakeHubSpot, hs: httpx.Client) -> None:
    fake.define_property("calls", "agni_call_session_id", unique=True)

    def upsert(title: str) -> httpx.Response:
        item = {
            "idProperty": "agni_call_session_id",
            "id": "sess-1",
            "properties": {"hs_timestamp": NOON, "hs_call_title": title},
        }
        return hs.post(f"{CALLS}/batch/upsert", json={"inputs": [item]})

    first, second = upsert("first"), upsert("second")
    assert first.status_code == second.status_code == 200
    assert first.json()["results"][0]["new"] is True and second.json()["results"][0]["new"] is False
    assert first.json()["results"][0]["id"] == second.json()["results"][0]["id"]
    assert fake.count("calls") == 1
    assert fake.properties_of("calls", first.json()["results"][0]["id"])["hs_call_title"] == "second"

    not_unique = {"inputs": [{"idProperty": "hs_call_title", "id": "x", "properties": {}}]}
    assert hs.post(f"{CALLS}/batch/upsert", json=not_unique).status_code == 400


# -- properties API ------------------------------------------------------------------------------
def test_properties_api_create_then_conflict(fake: FakeHubSpot, hs: httpx.Client) -> None:
    url = "/crm/v3/properties/calls"
    assert hs.get(f"{url}/agni_call_session_id").status_code == 404
    definition = {
        "name": "agni_call_session_id",
        "label": "Agni call session",
        "type": "string",
        "fieldType": "text",
        "groupName": "callinformation",
        "hasUniqueValue": True,
    }
    created = hs.post(url, json=definition)
    assert created.status_code == 201 and created.json()["hasUniqueValue"] is True
    assert hs.get(f"{url}/agni_call_session_id").json()["name"] == "agni_call_session_id"
    assert any(p["name"] == "agni_call_session_id" for p in hs.get(url).json()["results"])
    again = hs.post(url, json=definition)
    assert again.status_code == 409 and again.json()["category"] == "CONFLICT"
    assert hs.post(url, json={"name": "no_label"}).status_code == 400
    new_call = hs.post(CALLS, json={"properties": {"hs_timestamp": NOON, "agni_call_session_id": "s1"}})
    assert new_call.status_code == 201  # now writable
    duplicate = hs.post(CALLS, json={"properties": {"hs_timestamp": NOON, "agni_call_session_id": "s1"}})
    assert duplicate.status_code == 409
    assert fake.property_definitions["calls"]["agni_call_session_id"]["hasUniqueValue"] is True


# -- auth, limits, faults ------------------------------------------------------------------------
def test_unauthorized_is_401(fake: FakeHubSpot) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.get(f"{fake.url}{CONTACTS}/1", headers=headers)
        assert response.status_code == 401
        body = response.json()
        assert body["category"] == "INVALID_AUTHENTICATION" and body["status"] == "error"
        assert body["message"].startswith("Authentication credentials not found") and body["correlationId"]
    assert fake.total_requests == 2 and not fake.requests


def test_ten_secondly_rolling_limit(clock: ManualClock) -> None:
    with FakeHubSpot(requests_per_10s=5, clock=clock) as fake, client_for(fake) as hs:
        remaining = []
        for _ in range(5):
            response = hs.get(f"{CONTACTS}/1")  # a 404 still counts
            remaining.append(response.headers["X-HubSpot-RateLimit-Remaining"])
            assert response.headers["X-HubSpot-RateLimit-Max"] == "5"
            assert response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        assert remaining == ["4", "3", "2", "1", "0"]
        clock.advance(9.9)
        throttled = hs.get(f"{CONTACTS}/1")
        assert throttled.status_code == 429
        body = throttled.json()
        assert body["message"] == "You have reached your ten_secondly_rolling limit."
        assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "TEN_SECONDLY_ROLLING"
        assert body["correlationId"] and body["requestId"] and "retry-after" not in throttled.headers
        assert hs.post(f"{CONTACTS}/search", json={}).status_code == 200  # search has its own limit
        clock.advance(0.2)  # the first requests leave the rolling window
        assert hs.get(f"{CONTACTS}/1").status_code == 404
        assert fake.throttled == {"TEN_SECONDLY_ROLLING": 1}
        assert fake.total_requests == 8 and fake.requests[f"GET {CONTACTS}/{{id}}"] == 6


def test_search_secondly_limit(clock: ManualClock) -> None:
    with FakeHubSpot(search_per_second=2, clock=clock) as fake, client_for(fake) as hs:
        statuses = [hs.post(f"{CONTACTS}/search", json={}).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        last = hs.post(f"{CONTACTS}/search", json={})
        body = last.json()
        assert body["message"] == "You have reached your secondly limit."
        assert body["errorType"] == "RATE_LIMIT" and "policyName" not in body and body["correlationId"]
        clock.advance(1)
        ok = hs.post(f"{CONTACTS}/search", json={})
        assert ok.status_code == 200 and "X-HubSpot-RateLimit-Remaining" not in ok.headers
        assert fake.throttled["SECONDLY"] == 2


def test_daily_limit(clock: ManualClock) -> None:
    with FakeHubSpot(daily_limit=2, clock=clock) as fake, client_for(fake) as hs:
        assert hs.get(f"{CONTACTS}/1").headers["X-HubSpot-RateLimit-Daily-Remaining"] == "1"
        hs.post(f"{CONTACTS}/search", json={})  # search counts toward the daily total
        response = hs.get(f"{CONTACTS}/1")
        assert response.status_code == 429
        assert response.json()["policyName"] == "DAILY"
        assert response.json()["message"] == "You have reached your daily limit."
        clock.advance(86_400)
        assert hs.get(f"{CONTACTS}/1").status_code == 404
        assert fake.throttled == {"DAILY": 1}


def test_injected_fault_is_served(fake: FakeHubSpot, hs: httpx.Client) -> None:
    fake.faults.add(Fault(status=502, body={"status": "error", "message": "Bad gateway"}), path_prefix=CALLS)
    body = {"properties": {"hs_timestamp": NOON}}
    failed = hs.post(CALLS, json=body)
    assert failed.status_code == 502 and failed.json()["message"] == "Bad gateway"
    assert fake.count("calls") == 0
    assert hs.post(CALLS, json=body).status_code == 201
    assert fake.total_requests == 2 and fake.requests[f"POST {CALLS}"] == 1  # the fault never reached the fake


def test_concurrent_creates_get_distinct_increasing_ids(fake: FakeHubSpot) -> None:
    def create(i: int) -> str:
        with client_for(fake) as hs:
            return hs.post(CALLS, json={"properties": {"hs_timestamp": NOON, "hs_call_title": str(i)}}).json()["id"]

    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(create, range(24)))
    assert len(set(created)) == 24 and fake.count("calls") == 24
    assert sorted(created, key=int) == sorted(fake.objects["calls"], key=int)
    assert fake.requests[f"POST {CALLS}"] == 24


def test_lenient_mode_ignores_unknown_properties(fake: FakeHubSpot, hs: httpx.Client) -> None:
    fake.strict_properties = False  # what the calls doc describes; strict is what portals do today
    response = hs.post(CALLS, json={"properties": {"hs_timestamp": NOON, "nope": "x"}})
    assert response.status_code == 201 and "nope" not in response.json()["properties"]
