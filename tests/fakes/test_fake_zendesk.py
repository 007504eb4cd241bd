"""FakeZendesk answers like Zendesk (REFERENCE.md §9.2), checked with plain httpx over a real socket.

These tests pin the fake's contract so the connector's tests can trust it: if Zendesk's documented
behaviour and the fake disagree, fix the fake here first.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.zendesk import RATE_LIMITED, FakeZendesk, ManualClock

API = "/api/v2"
VOICE = {
    "from": "+18881234567",
    "to": "+14155550100",
    "recording_url": "https://storage.agniai.com/rec/1.mp3",
    "started_at": "2026-03-24T18:30:00Z",
    "call_duration": 125,
}


def basic(email: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{email}/token:{token}".encode()).decode()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_789_999_990.0)  # 10 s into a minute


@pytest.fixture
def fake(clock: ManualClock) -> Iterator[FakeZendesk]:
    with FakeZendesk(clock=clock) as server:
        yield server  # type: ignore[misc]


@pytest.fixture
def zd(fake: FakeZendesk) -> Iterator[httpx.Client]:
    auth = basic(fake.email, fake.api_token)
    with httpx.Client(base_url=fake.url + API, headers={"Authorization": auth}, timeout=5) as client:
        yield client


def create(zd: httpx.Client, key: str | None = None, **ticket: object) -> httpx.Response:
    body = {"ticket": {"subject": "Call", "voice_comment": VOICE, **ticket}}
    return zd.post("/tickets", json=body, headers={"Idempotency-Key": key} if key else {})


# -- auth -----------------------------------------------------------------------------------------
def test_an_api_token_is_basic_auth_of_email_slash_token_and_an_oauth_token_is_a_bearer(fake: FakeZendesk) -> None:
    for auth in (basic(fake.email, fake.api_token), f"Bearer {fake.oauth_token}"):
        me = httpx.get(f"{fake.url}{API}/users/me.json", headers={"Authorization": auth})
        assert me.status_code == 200
        assert me.json()["user"]["role"] == "admin"


def test_wrong_credentials_are_401_and_no_credentials_make_users_me_the_anonymous_user(fake: FakeZendesk) -> None:
    wrong = httpx.get(f"{fake.url}{API}/tickets", headers={"Authorization": basic(fake.email, "nope")})
    assert wrong.status_code == 401
    assert wrong.json() == {"error": "Couldn't authenticate you"}
    password = "Basic " + base64.b64encode(f"{fake.email}:{fake.api_token}".encode()).decode()
    assert httpx.get(f"{fake.url}{API}/users/me", headers={"Authorization": password}).status_code == 401

    anonymous = httpx.get(f"{fake.url}{API}/users/me").json()["user"]
    assert anonymous["id"] is None and anonymous["role"] == "end-user"
    assert httpx.get(f"{fake.url}{API}/tickets").status_code == 401


def test_an_end_users_token_may_not_create_tickets(fake: FakeZendesk, zd: httpx.Client) -> None:
    fake.users[fake.agent_id]["role"] = "end-user"
    answer = create(zd)
    assert answer.status_code == 403
    assert answer.json()["error"] == "Forbidden"


# -- tickets --------------------------------------------------------------------------------------
def test_a_ticket_with_a_voice_comment_is_stored_with_its_call_data(fake: FakeZendesk, zd: httpx.Client) -> None:
    agent = fake.add_user("Ann Agent", email="ann@acme.test", role="agent")
    jane = fake.add_user("Jane", email="jane@example.com")
    voice = {**VOICE, "answered_by_id": agent, "transcription_text": "Hello"}
    answer = create(zd, requester_id=jane, assignee_id=agent, external_id="call-1", tags=["a", "b"],
                    voice_comment=voice)  # fmt: skip

    assert answer.status_code == 201
    ticket = answer.json()["ticket"]
    assert (ticket["requester_id"], ticket["assignee_id"], ticket["external_id"]) == (jane, agent, "call-1")
    assert ticket["status"] == "open"  # assigned on creation
    [comment] = fake.comments_of(ticket["id"])
    assert comment["type"] == "VoiceComment"
    assert comment["data"] == voice


@pytest.mark.parametrize(
    ("ticket", "field", "fragment"),
    [
        ({"voice_comment": None}, "description", "cannot be blank"),
        ({"voice_comment": {k: v for k, v in VOICE.items() if k != "recording_url"}}, "voice_comment", "recording_url"),
        ({"voice_comment": {**VOICE, "call_duration": "125"}}, "voice_comment", "call_duration"),
        ({"voice_comment": {**VOICE, "started_at": "yesterday"}}, "voice_comment", "ISO 8601"),
        ({"voice_comment": {**VOICE, "answered_by_id": 1}}, "voice_comment", "not an agent"),
        ({"requester_id": 999}, "requester", "not a user"),
        ({"priority": "whenever"}, "priority", "not valid"),
    ],
)
def test_invalid_tickets_are_422_record_invalid_naming_the_field(
    zd: httpx.Client, ticket: dict, field: str, fragment: str
) -> None:
    body = {"subject": "Call", "voice_comment": VOICE, **ticket}
    body = {k: v for k, v in body.items() if v is not None}
    answer = zd.post("/tickets", json={"ticket": body})
    assert answer.status_code == 422
    error = answer.json()
    assert error["error"] == "RecordInvalid"
    assert fragment in error["details"][field][0]["description"]


def test_a_body_not_sent_as_json_is_not_read(zd: httpx.Client) -> None:
    body = '{"ticket": {"subject": "x", "comment": {"body": "y"}}}'
    answer = zd.post("/tickets", content=body, headers={"content-type": "text/plain"})
    assert answer.status_code == 400
    assert zd.post("/tickets", content=body, headers={"content-type": "application/json"}).status_code == 201


def test_drop_down_custom_fields_take_only_their_options_and_unknown_ids_are_ignored(
    fake: FakeZendesk, zd: httpx.Client
) -> None:
    fake.add_ticket_field(101, "tagger", ("positive", "negative"))
    good = create(zd, custom_fields=[{"id": 101, "value": "positive"}, {"id": 999, "value": "x"}])
    assert good.json()["ticket"]["custom_fields"] == [{"id": 101, "value": "positive"}]
    bad = create(zd, custom_fields=[{"id": 101, "value": "meh"}])
    assert bad.status_code == 422
    assert "meh is not a valid option" in bad.json()["details"]["base"][0]["description"]


def test_updates_append_comments_add_tags_merge_fields_and_closed_tickets_refuse_them(
    fake: FakeZendesk, zd: httpx.Client
) -> None:
    ticket = create(zd, tags=["agni_call"]).json()["ticket"]
    changes = {"additional_tags": ["x"], "subject": "New", "comment": {"body": "note", "public": False}}
    changed = zd.put(f"/tickets/{ticket['id']}", json={"ticket": changes})
    assert changed.status_code == 200
    assert changed.json()["ticket"]["tags"] == ["agni_call", "x"]
    assert [c["type"] for c in fake.comments_of(ticket["id"])] == ["VoiceComment", "Comment"]

    fake.tickets[ticket["id"]]["status"] = "closed"
    refused = zd.put(f"/tickets/{ticket['id']}", json={"ticket": {"subject": "Again"}})
    assert refused.status_code == 422
    assert refused.json()["details"]["status"][0]["description"] == "Status: closed prevents ticket update"
    assert zd.put("/tickets/1", json={"ticket": {"subject": "x"}}).json() == {
        "error": "RecordNotFound", "description": "Not found"
    }  # fmt: skip


def test_the_external_id_listing_returns_every_match_newest_first_across_pages(
    fake: FakeZendesk, zd: httpx.Client, clock: ManualClock
) -> None:
    ids = []
    for _ in range(3):
        ids.append(fake.add_ticket(external_id="dup", subject="x"))
        clock.advance(1)
    fake.add_ticket(external_id="other")

    first = zd.get("/tickets", params={"external_id": "dup", "per_page": 2}).json()
    assert [t["id"] for t in first["tickets"]] == [ids[2], ids[1]]
    assert first["count"] == 3
    rest = httpx.get(first["next_page"], headers=zd.headers).json()
    assert [t["id"] for t in rest["tickets"]] == [ids[0]]
    assert rest["next_page"] is None


# -- idempotency ----------------------------------------------------------------------------------
def test_the_same_idempotency_key_and_body_return_the_first_ticket_marked_hit(
    fake: FakeZendesk, zd: httpx.Client
) -> None:
    first = create(zd, "call-1", external_id="call-1")
    again = create(zd, "call-1", external_id="call-1")

    assert first.headers["x-idempotency-lookup"] == "miss"
    assert again.headers["x-idempotency-lookup"] == "hit"
    assert again.status_code == 201
    assert again.json()["ticket"]["id"] == first.json()["ticket"]["id"]
    assert len(fake.tickets) == 1
    assert "x-idempotency-lookup" not in create(zd).headers  # no key, no lookup


def test_the_same_key_with_another_body_is_refused_and_writes_nothing(fake: FakeZendesk, zd: httpx.Client) -> None:
    create(zd, "call-1", subject="One")
    answer = create(zd, "call-1", subject="Two")
    assert answer.status_code == 400
    assert answer.json()["error"] == "IdempotentRequestError"
    assert len(fake.tickets) == 1


def test_keys_expire_after_the_window(fake: FakeZendesk, zd: httpx.Client, clock: ManualClock) -> None:
    fake.idempotency_window_seconds = 600
    create(zd, "call-1")
    clock.advance(599)
    assert create(zd, "call-1").headers["x-idempotency-lookup"] == "hit"
    clock.advance(2)
    late = create(zd, "call-1", subject="changed")
    assert late.headers["x-idempotency-lookup"] == "miss"
    assert len(fake.tickets) == 2


def test_a_refused_create_keeps_no_key(fake: FakeZendesk, zd: httpx.Client) -> None:
    assert create(zd, "call-1", priority="whenever").status_code == 422
    assert create(zd, "call-1").headers["x-idempotency-lookup"] == "miss"


# -- users ----------------------------------------------------------------------------------------
def test_users_search_matches_emails_case_insensitively_and_phones_only_as_stored(
    fake: FakeZendesk, zd: httpx.Client
) -> None:
    jane = fake.add_user("Jane", email="Jane@Example.com", phone="+1 415-555-0100")

    def found(query: str) -> list[int]:
        answer = zd.get("/users/search", params={"query": query})
        assert answer.status_code == 200, answer.text
        return [u["id"] for u in answer.json()["users"]]

    assert found("email:jane@example.com") == [jane]
    assert found('phone:"+1 415-555-0100"') == [jane]
    assert found("phone:+14155550100") == []  # not normalised
    assert found("phone:+1 415-555-0100") == []  # unquoted: three terms, ANDed
    assert found("role:end-user email:jane@example.com") == [jane]


def test_users_written_through_the_api_reach_search_late_but_external_id_lookups_at_once(
    fake: FakeZendesk, zd: httpx.Client, clock: ManualClock
) -> None:
    fake.search_lag_seconds = 120
    user = zd.post("/users/create_or_update", json={"user": {"name": "Bob", "phone": "+14155550111",
                                                             "external_id": "agni-phone:+14155550111"}})  # fmt: skip
    assert user.status_code == 201
    assert zd.get("/users/search", params={"query": "phone:+14155550111"}).json()["users"] == []
    by_external = zd.get("/users/search", params={"external_id": "agni-phone:+14155550111"}).json()["users"]
    assert [u["id"] for u in by_external] == [user.json()["user"]["id"]]
    clock.advance(120)
    assert len(zd.get("/users/search", params={"query": "phone:+14155550111"}).json()["users"]) == 1


def test_create_or_update_matches_by_email_or_external_id_and_a_taken_number_is_refused(
    fake: FakeZendesk, zd: httpx.Client
) -> None:
    first = zd.post("/users/create_or_update", json={"user": {"name": "Jane", "email": "jane@example.com"}})
    again = zd.post("/users/create_or_update", json={"user": {"name": "Jane D", "email": "JANE@example.com"}})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["user"]["id"] == first.json()["user"]["id"]
    fake.add_user("Other", phone="+14155550199")
    taken = zd.post("/users/create_or_update", json={"user": {"name": "X", "phone": "+14155550199"}})
    assert taken.status_code == 422
    assert "already being used" in taken.json()["details"]["phone"][0]["description"]
    nameless = zd.post("/users/create_or_update", json={"user": {"email": "n@example.com"}})
    assert nameless.json()["details"]["name"][0]["description"] == "Name: cannot be blank"


def test_show_many_returns_the_users_that_exist(fake: FakeZendesk, zd: httpx.Client) -> None:
    jane = fake.add_user("Jane")
    users = zd.get("/users/show_many", params={"ids": f"{jane},12345"}).json()["users"]
    assert [u["id"] for u in users] == [jane]
    assert zd.get("/users/12345").status_code == 404


# -- rate limits ----------------------------------------------------------------------------------
def test_the_per_minute_limit_answers_429_text_with_retry_after_until_the_next_minute(
    clock: ManualClock,
) -> None:
    with FakeZendesk(clock=clock, requests_per_minute=2) as fake:
        auth = {"Authorization": basic(fake.email, fake.api_token)}
        answers = [httpx.get(f"{fake.url}{API}/users/me", headers=auth) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[0].headers["X-Rate-Limit"] == "2"
        assert answers[1].headers["X-Rate-Limit-Remaining"] == "0"
        limited = answers[2]
        assert limited.text == RATE_LIMITED
        assert limited.headers["content-type"] == "text/plain"
        assert limited.headers["Retry-After"] == "50"  # 10 s into the minute
        assert fake.throttled["minute"] == 1
        clock.advance(50)
        assert httpx.get(f"{fake.url}{API}/users/me", headers=auth).status_code == 200


def test_ticket_updates_have_their_own_account_and_per_ticket_limits(clock: ManualClock) -> None:
    with FakeZendesk(clock=clock, ticket_updates_per_minute=40) as fake:
        auth = {"Authorization": basic(fake.email, fake.api_token)}
        ticket = fake.add_ticket(subject="x")
        url = f"{fake.url}{API}/tickets/{ticket}"
        codes = [httpx.put(url, json={"ticket": {"subject": str(i)}}, headers=auth).status_code for i in range(31)]
        assert codes[:30] == [200] * 30
        assert codes[30] == 429  # 30 updates per ticket per 10 minutes
        assert fake.throttled["ticket"] == 1
        other = fake.add_ticket(subject="y")
        more = [httpx.put(f"{fake.url}{API}/tickets/{other}", json={"ticket": {"subject": "z"}}, headers=auth)
                for _ in range(11)]  # fmt: skip
        assert [a.status_code for a in more][-1] == 429  # the 41st update this minute
        assert fake.throttled["updates"] == 1
