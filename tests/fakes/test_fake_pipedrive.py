"""FakePipedrive answers like Pipedrive (REFERENCE.md §9.3), checked with plain httpx over a real socket.

These tests pin the fake's contract so the connector's tests can trust it: if Pipedrive's documented
behaviour and the fake disagree, fix the fake here first.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from tests.fakes.pipedrive import TOKEN, FakePipedrive


class Clock:
    def __init__(self) -> None:
        self.now = 1_796_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakePipedrive]:
    with FakePipedrive(clock=clock) as server:
        yield server  # type: ignore[misc]


def client_for(fake: FakePipedrive) -> httpx.Client:
    return httpx.Client(base_url=fake.url, headers={"x-api-token": TOKEN}, timeout=5)


@pytest.fixture
def pd(fake: FakePipedrive) -> Iterator[httpx.Client]:
    with client_for(fake) as client:
        yield client


CALL = {"outcome": "connected", "to_phone_number": "+14155550100", "start_time": "2026-03-24 18:30:00",
        "end_time": "2026-03-24 18:32:05"}  # fmt: skip


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert body["success"] is False and body["data"] is None
    return body["error"]


# -- auth -----------------------------------------------------------------------------------------
def test_requests_without_a_known_token_get_the_gateways_401(fake: FakePipedrive) -> None:
    for headers in ({}, {"x-api-token": "wrong"}, {"authorization": "Bearer nope"}):
        response = httpx.get(f"{fake.url}/v1/users/me", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"success": False, "error": "unauthorized access", "errorCode": 401,
                                   "error_info": "Please check developers.pipedrive.com", "data": None,
                                   "additional_data": None}  # fmt: skip
        assert response.headers["x-correlation-id"]


def test_oauth_tokens_are_renewed_with_the_refresh_token_and_expire(fake: FakePipedrive, clock: Clock) -> None:
    access, refresh = fake.add_oauth_client("app", "secret")
    bearer = {"authorization": f"Bearer {access}"}
    assert httpx.get(f"{fake.url}/v1/users/me", headers=bearer).status_code == 200
    clock.now += 3601
    assert httpx.get(f"{fake.url}/v1/users/me", headers=bearer).status_code == 401

    basic = "Basic " + base64.b64encode(b"app:secret").decode()
    form = {"grant_type": "refresh_token", "refresh_token": refresh}
    answer = httpx.post(f"{fake.url}/oauth/token", data=form, headers={"authorization": basic}).json()
    assert answer["token_type"] == "Bearer" and answer["api_domain"] == fake.url and answer["expires_in"] == 3600
    renewed = {"authorization": f"Bearer {answer['access_token']}"}
    assert httpx.get(f"{fake.url}/v1/users/me", headers=renewed).is_success

    wrong_client = httpx.post(f"{fake.url}/oauth/token", data=form, auth=("app", "nope"))
    assert (wrong_client.status_code, wrong_client.json()["error"]) == (401, "invalid_client")
    bad_grant = httpx.post(f"{fake.url}/oauth/token", data={**form, "refresh_token": "x"}, auth=("app", "secret"))
    assert (bad_grant.status_code, bad_grant.json()["error"]) == (400, "invalid_grant")


def test_rotated_refresh_tokens_retire_the_old_one(fake: FakePipedrive) -> None:
    fake.rotate_refresh_tokens = True
    _, refresh = fake.add_oauth_client("app", "secret")
    form = {"grant_type": "refresh_token", "refresh_token": refresh}
    first = httpx.post(f"{fake.url}/oauth/token", data=form, auth=("app", "secret")).json()
    assert first["refresh_token"] != refresh
    assert httpx.post(f"{fake.url}/oauth/token", data=form, auth=("app", "secret")).status_code == 400


# -- call logs (v1) -------------------------------------------------------------------------------
def test_a_call_log_is_created_with_a_string_id_and_owned_by_the_tokens_user(pd: httpx.Client, fake) -> None:
    response = pd.post("/v1/callLogs", json={**CALL, "duration": "125", "note": "<p>hi</p>"})
    assert response.status_code == 200
    data = response.json()["data"]
    assert isinstance(data["id"], str) and data["user_id"] == fake.me and data["has_recording"] is False
    assert pd.get(f"/v1/callLogs/{data['id']}").json()["data"]["note"] == "<p>hi</p>"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"outcome": None}, "Missing required field(s): outcome"),
        ({"outcome": "voicemail"}, "Invalid value for field 'outcome'"),
        ({"start_time": "2026-03-24T18:30:00Z"}, "Invalid value for field 'start_time': format YYYY-MM-DD HH:MM:SS"),
        ({"duration": 125}, "Invalid value for field 'duration'"),
        ({"person_id": "7"}, "Invalid value for field 'person_id': expected int"),
        ({"participants": []}, "Unknown field 'participants' for call log"),
        ({"deal_id": 1, "lead_id": "abc"}, "either a deal or a lead, but not both"),
        ({"person_id": 424242}, "Person with id 424242 not found"),
    ],
)
def test_a_call_log_pipedrive_would_refuse_is_refused(pd: httpx.Client, change: dict, error: str) -> None:
    body = {k: v for k, v in {**CALL, **change}.items() if v is not None}
    response = pd.post("/v1/callLogs", json=body)
    assert response.status_code in (400, 404)
    assert error in error_of(response)


def test_only_an_admin_token_may_log_calls_for_another_user() -> None:
    with FakePipedrive(admin=False) as fake, client_for(fake) as pd:
        other = fake.add_user("Ann", "ann@example.com")
        refused = pd.post("/v1/callLogs", json={**CALL, "user_id": other})
        own = pd.post("/v1/callLogs", json={**CALL, "user_id": fake.me})
    assert refused.status_code == 403
    assert error_of(refused) == "You do not have permission to create call logs for other users"
    assert own.status_code == 200


def test_the_call_log_listing_holds_the_tokens_users_logs_only_fifty_a_page(pd: httpx.Client, fake) -> None:
    other = fake.add_user("Ann", "ann@example.com")
    for i in range(55):
        pd.post("/v1/callLogs", json={**CALL, "note": f"mine {i}"})
    pd.post("/v1/callLogs", json={**CALL, "user_id": other, "note": "Ann's"})

    first = pd.get("/v1/callLogs", params={"start": 0, "limit": 50}).json()
    second = pd.get("/v1/callLogs", params={"start": 50, "limit": 50}).json()

    assert [c["note"] for c in first["data"]] == [f"mine {i}" for i in range(50)]
    assert first["additional_data"]["pagination"] == {"start": 0, "limit": 50, "more_items_in_collection": True,
                                                      "next_start": 50}  # fmt: skip
    assert [c["note"] for c in second["data"]] == [f"mine {i}" for i in range(50, 55)]
    assert second["additional_data"]["pagination"]["more_items_in_collection"] is False
    assert pd.get("/v1/callLogs", params={"limit": 51}).status_code == 400


def test_a_recording_is_uploaded_once_as_a_multipart_file(pd: httpx.Client, fake) -> None:
    log = pd.post("/v1/callLogs", json=CALL).json()["data"]["id"]
    files = {"file": ("call.mp3", b"ID3audio", "audio/mpeg")}
    assert pd.post(f"/v1/callLogs/{log}/recordings", files=files).status_code == 200
    assert pd.get(f"/v1/callLogs/{log}").json()["data"]["has_recording"] is True
    assert fake.recordings[log] == b"ID3audio"
    again = pd.post(f"/v1/callLogs/{log}/recordings", files=files)
    assert again.status_code == 409
    assert pd.post(f"/v1/callLogs/{log}/recordings", json={"url": "https://x"}).status_code == 400


def test_a_deleted_call_log_is_gone(pd: httpx.Client) -> None:
    log = pd.post("/v1/callLogs", json=CALL).json()["data"]["id"]
    assert pd.delete(f"/v1/callLogs/{log}").status_code == 200
    assert pd.get(f"/v1/callLogs/{log}").status_code == 410
    assert pd.get("/v1/callLogs/" + "0" * 32).status_code == 404


# -- activities (v2) ------------------------------------------------------------------------------
def test_an_activitys_person_is_its_primary_participant_and_person_id_is_read_only(pd: httpx.Client, fake) -> None:
    person, other = fake.add_person("Ann"), fake.add_person("Bob")
    body = {"subject": "Call", "type": "call", "done": True, "due_date": "2026-03-24", "due_time": "18:30",
            "duration": "00:03", "participants": [{"person_id": person, "primary": True}], "person_id": other}
    data = pd.post("/api/v2/activities", json=body).json()["data"]  # fmt: skip
    assert (data["person_id"], data["done"], data["owner_id"]) == (person, True, fake.me)
    assert data["add_time"].endswith("Z") and data["marked_as_done_time"].endswith("Z")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"done": "true"}, "Invalid value for field 'done': expected bool"),
        ({"owner_id": "101"}, "Invalid value for field 'owner_id': expected int"),
        ({"due_time": "6:30 PM"}, "Invalid value for field 'due_time': format HH:MM"),
        ({"duration": 125}, "Invalid value for field 'duration': format HH:MM"),
        ({"type": "fax"}, "Activity type 'fax' does not exist or is not active"),
        ({"participants": [{"person_id": "1"}]}, "Invalid value for field 'participants'"),
        ({"custom_field": "x"}, "Unknown field 'custom_field' for activity"),
    ],
)
def test_an_activity_pipedrive_would_refuse_is_refused(pd: httpx.Client, change: dict, error: str) -> None:
    response = pd.post("/api/v2/activities", json={"subject": "Call", **change})
    assert response.status_code == 400
    assert error in error_of(response)


def test_activities_are_listed_by_person_and_update_time_in_cursor_pages(pd: httpx.Client, fake, clock) -> None:
    person = fake.add_person("Ann")
    for i in range(3):
        pd.post("/api/v2/activities", json={"subject": f"old {i}", "participants": [{"person_id": person}]})
    clock.now += 3600
    ids = [pd.post("/api/v2/activities", json={"subject": f"new {i}", "participants": [{"person_id": person}]})
           .json()["data"]["id"] for i in range(3)]  # fmt: skip
    pd.post("/api/v2/activities", json={"subject": "nobody's"})

    params = {"person_id": person, "updated_since": _rfc3339(clock.now - 60), "limit": 2}
    first = pd.get("/api/v2/activities", params=params).json()
    second = pd.get("/api/v2/activities", params={**params, "cursor": first["additional_data"]["next_cursor"]}).json()

    assert [a["id"] for a in first["data"] + second["data"]] == ids
    assert second["additional_data"]["next_cursor"] is None
    assert pd.get("/api/v2/activities", params={"limit": 501}).status_code == 400
    patched = pd.patch(f"/api/v2/activities/{ids[0]}", json={"note": "edited"}).json()["data"]
    assert (patched["note"], patched["subject"]) == ("edited", "new 0")


# -- persons (v2) ---------------------------------------------------------------------------------
def test_person_search_exact_and_loose_by_email_and_phone(pd: httpx.Client, fake) -> None:
    typed = fake.add_person("Typed", emails=("Ann@Example.com",), phones=("(415) 555-0100",))
    e164 = fake.add_person("E164", phones=("+14155550100",))

    def found(term: str, field: str, exact: str) -> list[int]:
        params = {"term": term, "fields": field, "exact_match": exact}
        return [i["item"]["id"] for i in pd.get("/api/v2/persons/search", params=params).json()["data"]["items"]]

    assert found("ann@example.com", "email", "true") == [typed]  # "not case sensitive"
    assert found("+14155550100", "phone", "true") == [e164]  # exact: the stored text
    assert sorted(found("4155550100", "phone", "false")) == sorted([typed, e164])  # loose: the digits
    item = pd.get("/api/v2/persons/search", params={"term": "ann@example.com", "fields": "email"}).json()
    assert item["data"]["items"][0]["item"]["phones"] == ["(415) 555-0100"]  # plain strings in search results
    assert pd.get("/api/v2/persons/search", params={"term": "a"}).status_code == 400
    assert pd.get("/api/v2/persons/search", params={"term": "ann", "fields": "mail"}).status_code == 400


def test_a_created_person_is_searchable_only_after_the_index_lag(pd: httpx.Client, fake, clock) -> None:
    fake.search_lag_seconds = 5
    created = pd.post("/api/v2/persons", json={"name": "New", "emails": [{"value": "new@example.com"}]}).json()
    assert created["data"]["emails"] == [{"value": "new@example.com", "primary": True, "label": "work"}]
    params = {"term": "new@example.com", "fields": "email", "exact_match": "true"}
    assert pd.get("/api/v2/persons/search", params=params).json()["data"]["items"] == []
    clock.now += 5
    assert len(pd.get("/api/v2/persons/search", params=params).json()["data"]["items"]) == 1
    assert "Field 'name' is required" in error_of(pd.post("/api/v2/persons", json={"emails": []}))


def test_persons_read_by_ids_newest_first_and_deals_by_person_and_status(pd: httpx.Client, fake) -> None:
    old, new = fake.add_person("Old", updated=1_700_000_000), fake.add_person("New", updated=1_750_000_000)
    params = {"ids": f"{old},{new}", "sort_by": "update_time", "sort_direction": "desc"}
    assert [p["id"] for p in pd.get("/api/v2/persons", params=params).json()["data"]] == [new, old]
    open_deal = fake.add_deal("Open", old)
    fake.add_deal("Won", old, status="won")
    deals = pd.get("/api/v2/deals", params={"person_id": old, "status": "open"}).json()["data"]
    assert [d["id"] for d in deals] == [open_deal]


# -- users, moved endpoints -----------------------------------------------------------------------
def test_users_me_find_and_read(pd: httpx.Client, fake) -> None:
    me = pd.get("/v1/users/me").json()["data"]
    assert me["id"] == fake.me and me["company_domain"] == "fakeco" and me["access"][0]["admin"] is True
    ann = fake.add_user("Ann", "ann@example.com")
    found = pd.get("/v1/users/find", params={"term": "ann@example.com", "search_by_email": 1}).json()["data"]
    assert [u["id"] for u in found] == [ann]
    assert pd.get("/v1/users/999999").status_code == 404


@pytest.mark.parametrize("path", ["/v1/persons/search", "/v1/activities", "/v1/deals", "/v1/itemSearch"])
def test_v1_endpoints_moved_to_v2_are_refused(pd: httpx.Client, path: str) -> None:
    response = pd.get(path, params={"term": "ann"})
    assert response.status_code == 410
    assert "out of support" in error_of(response)


# -- limits ---------------------------------------------------------------------------------------
def test_the_burst_limit_is_a_rolling_two_seconds_per_token(clock: Clock) -> None:
    with FakePipedrive(clock=clock, requests_per_2s=3) as fake, client_for(fake) as pd:
        answers = [pd.get("/v1/users/me") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[2].headers["x-ratelimit-remaining"] == "0"
        refused = answers[3]
        assert error_of(refused) == "Request over limit"
        assert refused.json()["errorCode"] == 429
        assert refused.headers["x-ratelimit-reset"] == "2"
        clock.now += 2.01
        assert pd.get("/v1/users/me").status_code == 200
    assert fake.throttled["burst"] == 1


def test_searches_have_their_own_limit(clock: Clock) -> None:
    with FakePipedrive(clock=clock, search_per_2s=2) as fake, client_for(fake) as pd:
        params = {"term": "ann", "fields": "name"}
        assert [pd.get("/api/v2/persons/search", params=params).status_code for _ in range(3)] == [200, 200, 429]
        assert pd.get("/v1/users/me").status_code == 200
    assert fake.throttled["search"] == 1


def test_the_daily_token_budget_charges_by_endpoint_and_refuses_with_the_daily_headers(clock: Clock) -> None:
    with FakePipedrive(clock=clock, daily_tokens=40) as fake, client_for(fake) as pd:
        me = pd.get("/v1/users/me")  # v1 single: 2
        assert me.headers["x-daily-ratelimit-token-remaining"] == "38"
        pd.get("/v1/callLogs")  # v1 list: 20
        pd.get("/api/v2/activities")  # v2 list: 10
        assert fake.tokens_used == 32
        refused = pd.post("/v1/callLogs", json=CALL)  # v1 write: 10 > 8 left
        assert refused.status_code == 429
        assert refused.headers["x-daily-ratelimit-token-remaining"] == "0"
        assert "Daily API token budget" in error_of(refused)
        assert pd.post("/api/v2/activities", json={"subject": "x"}).status_code == 200  # v2 write: 5
    assert fake.tokens_used == 37  # the refused request cost nothing


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
