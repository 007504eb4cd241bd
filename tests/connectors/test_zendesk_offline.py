"""What `agni-bridge check`, `preview` and `setup` get from the Zendesk connector.

check and preview work without any network or Redis; setup reads the account (the token's user, the
configured ids) and changes nothing.
"""

from __future__ import annotations

import pytest

from bridge.errors import ConfigError, PermanentError
from bridge.registry import validate_connector
from bridge.settings import load_settings
from tests.conftest import make_delivery, make_settings
from tests.connectors import zendesk_support
from tests.connectors.zendesk_support import MAPPINGS, PENDING, SESSION, analysis, make_connector

fake, seeded = zendesk_support.fake, zendesk_support.seeded  # the fixtures


def offline(**options):
    """A connector as `check` and `preview` build it: no Redis, no transport, a base URL nobody answers."""
    return make_connector(None, None, **options)


def test_check_accepts_a_complete_configuration_without_touching_the_network(fake):
    connector = make_connector(fake, None, owner_map={"Support Agent": 123}, default_owner_id="456",
                               match={"on_missing": "fallback", "fallback_requester_id": 789})  # fmt: skip
    assert connector.check() == []
    assert offline(auth={"oauth_token": "abc"}).check() == []
    assert fake.request_log == []


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"auth": {}}, "connectors.zd.auth: required: email + api_token (${ZENDESK_API_TOKEN}) or oauth_token"),
        ({"auth": {"email": "a@b.co", "api_token": "t", "oauth_token": "o"}},
         "connectors.zd.auth: give either email + api_token or oauth_token, not both"),
        ({"auth": {"api_token": "t"}}, "connectors.zd.auth.email: the email of the agent the api_token belongs to, "
                                      "got ''"),
        ({"auth": {"email": "a@b.co", "api_token": "has space"}},
         "connectors.zd.auth.api_token: contains spaces, line breaks or non-ASCII characters"),
        ({"auth": {"email": "a@b.co", "oauth_token": "o"}},
         "connectors.zd.auth.email: only used with api_token; an OAuth token names its user itself"),
        ({"base_url": "http://acme.zendesk.com"}, "connectors.zd.base_url: must use https (plain http only for "
                                                 "127.0.0.1/localhost)"),
        ({"base_url": "acme.zendesk.com"}, "connectors.zd.base_url: must be an https:// URL such as "
                                          "https://acme.zendesk.com, got 'acme.zendesk.com'"),
        ({"base_url": "https://acme.zendesk.com/api/v2"}, "connectors.zd.base_url: leave out /api/v2; the connector "
                                                         "adds it"),
        ({"base_url": "https://acme.zendesk.com?x=1"}, "connectors.zd.base_url: give scheme, host and an optional path "
                                                      "only (no query, fragment or user)"),
        ({"owner_map": {"Support Agent": "ann"}}, "connectors.zd.owner_map.Support Agent: Zendesk agent ids are "
                                                 "positive integers, got 'ann'"),
        ({"default_owner_id": "x1"}, "connectors.zd.default_owner_id: Zendesk agent ids are positive integers"),
        ({"match": {"on_missing": "fallback"}}, "connectors.zd.match.fallback_requester_id: required when "
                                               "match.on_missing is fallback"),
        ({"match": {"default_region": "XX"}}, "connectors.zd.match.default_region: unknown region 'XX' (e.g. US, GB)"),
        ({"batch_size": 100}, "connectors.zd.batch_size: only 1 is supported: Zendesk's tickets/create_many is an "
                              "asynchronous job without an Idempotency-Key, which would break exactly-once delivery"),
        ({"ca_bundle": "/no/such/ca.pem"}, "connectors.zd.ca_bundle: file /no/such/ca.pem does not exist"),
    ],
)  # fmt: skip
def test_check_names_the_key_and_the_reason(options, problem):
    assert problem in offline(**options).check()


def test_plain_http_is_accepted_for_a_local_fake_only():
    assert offline(base_url="http://127.0.0.1:8080").check() == []
    assert offline(base_url="https://zendesk-proxy.internal.example/eu").check() == []


def test_check_names_mapping_fields_a_ticket_has_no_place_for(tmp_path):
    mapping = tmp_path / "odd.yaml"
    text = (MAPPINGS / "zendesk_ticket.yaml").read_text()
    extra = '  external_id: "x"\n  voice_comment.duration: "1"\n  custom_fields.sentiment: "x"\n  Subject: "x"\n'
    mapping.write_text(text.replace("\nfields:\n", "\nfields:\n" + extra, 1))

    problems = offline(mapping=mapping).check()

    assert problems == [
        "connectors.zd.mapping: odd.yaml: fields.external_id: set by the connector: the call id, which exactly-once "
        "delivery relies on",
        "connectors.zd.mapping: odd.yaml: fields.voice_comment.duration: a voice comment has answered_by_id, "
        "call_duration, from, location, recording_url, started_at, to, transcription_text",
        "connectors.zd.mapping: odd.yaml: fields.custom_fields.sentiment: custom fields are named by their numeric id: "
        "custom_fields.<id>",
        "connectors.zd.mapping: odd.yaml: fields.Subject: not a ticket attribute this connector sends (assignee_id, "
        "brand_id, custom_status_id, due_at, group_id, organization_id, priority, status, subject, tags, "
        "ticket_form_id, type)",
    ]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"match": {"on_missing": "create_contact"}}, "connectors.zd.match.on_missing"),
        ({"match": {"phone_spellings": ["e.164"]}}, "connectors.zd.match.phone_spellings"),
        ({"requests_per_minute": 0}, "connectors.zd.requests_per_minute"),
        ({"subdomain": "acme"}, "connectors.zd.subdomain"),
        ({"auth": {"password": "x"}}, "connectors.zd.auth.password"),
    ],
)
def test_invalid_settings_are_config_errors_naming_the_key(tmp_path, overrides, key):
    raw = {"type": "zendesk", "base_url": "https://acme.zendesk.com", **overrides}
    settings = make_settings(tmp_path, connectors={"zd": raw})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_connector(settings, "zd")


@pytest.mark.parametrize("key", ["api_token", "oauth_token"])
def test_credentials_written_into_the_config_file_are_refused(tmp_path, key):
    config = tmp_path / "config.yaml"
    config.write_text(
        'agni: {org_ids: ["o"]}\n'
        "connectors:\n"
        f"  zd: {{type: zendesk, base_url: 'https://acme.zendesk.com', auth: {{{key}: literal-secret}}}}\n"
    )
    with pytest.raises(ConfigError, match=rf"connectors\.zd\.auth\.{key}: secrets must come from the environment"):
        load_settings(config)


def test_preview_prints_every_request_a_delivery_would_send_without_secrets():
    connector = offline(owner_map={"Support Agent": 42})
    delivery = make_delivery(connector, post_call_analysis=analysis(**PENDING))

    previews = connector.preview(delivery)

    root = "https://acme.zendesk.com/api/v2"
    assert [p.target for p in previews] == [
        f"GET {root}/users/search?query=email%3Ajohn%40example.com (until an end-user is found; cached)",
        f"GET {root}/users/search?query=phone%3A%2B14155550100 (until an end-user is found; cached)",
        f"GET {root}/users/search?query=phone%3A%22%2B1+415-555-0100%22 (until an end-user is found; cached)",
        f"GET {root}/users/search?query=phone%3A%22%28415%29+555-0100%22 (until an end-user is found; cached)",
        f"GET {root}/users/search?query=phone%3A4155550100 (until an end-user is found; cached)",
        f"POST {root}/users/create_or_update (only when no end-user matches)",
        f"POST {root}/tickets",
        f"POST {root}/tickets (follow-up task)",
    ]
    user, ticket, task = previews[5], previews[6], previews[7]
    assert user.body == {"user": {"name": "John Doe", "role": "end-user", "email": "john@example.com",
                                  "phone": "+14155550100"}}  # fmt: skip
    assert ticket.headers == {
        "authorization": "Basic <base64 of bridge@example.com/token:<api_token>>",
        "content-type": "application/json",
        "idempotency-key": SESSION,
    }
    body = ticket.body["ticket"]
    assert (body["external_id"], body["requester_id"], body["assignee_id"]) == (
        SESSION, "<the matched end-user's id>", 42
    )  # fmt: skip
    assert body["voice_comment"]["call_duration"] == 125
    assert body["voice_comment"]["answered_by_id"] == 42
    assert task.headers["idempotency-key"] == f"{SESSION}:follow_up"
    assert task.body["ticket"]["type"] == "task"
    assert task.body["ticket"]["comment"]["public"] is False
    assert "test-api-token" not in repr(previews)


def test_setup_reports_the_account_it_found(fake, seeded):
    unknown = fake.add_user("Unknown caller")
    connector = make_connector(fake, None, owner_map={"Support Agent": seeded.agent},
                               match={"fallback_requester_id": unknown})  # fmt: skip

    assert connector.setup() == [
        f"signed in as admin {fake.agent_id}; can create tickets and end-users",
        f"match.fallback_requester_id: user {unknown} exists (end-user)",
        f"owner_map.Support Agent: agent {seeded.agent} (Support Agent)",
    ]
    assert fake.tickets == {} and len(fake.users) == 4  # nothing was written (API user, John, agent, Unknown)
    assert all(r.method == "GET" for r in fake.request_log)


def test_setup_names_every_problem_with_the_configured_ids(fake, seeded):
    connector = make_connector(fake, None, owner_map={"Support Agent": seeded.john, "Ghost": 999},
                               match={"fallback_requester_id": 998})  # fmt: skip

    with pytest.raises(PermanentError) as caught:
        connector.setup()

    assert caught.value.message == (
        "Zendesk setup: match.fallback_requester_id: no user 998 in this Zendesk account; "
        f"owner_map.Support Agent: user {seeded.john} is a(n) end-user; assignees must be agents or admins; "
        "owner_map.Ghost: no user 999 in this Zendesk account"
    )


def test_setup_refuses_credentials_that_are_not_an_agents(fake):
    fake.users[fake.agent_id]["role"] = "end-user"
    with pytest.raises(PermanentError) as caught:
        make_connector(fake, None).setup()
    assert caught.value.message == (
        f"Zendesk setup: the credentials belong to user {fake.agent_id}, a(n) end-user: tickets need an agent or admin"
    )


def test_setup_without_credentials_sees_the_anonymous_user(fake):
    connector = make_connector(fake, None, auth={"oauth_token": "x"})
    connector.client.http.headers.pop("authorization")  # as if a proxy stripped the header
    with pytest.raises(PermanentError, match="Zendesk answered as an anonymous user"):
        connector.setup()


def test_setup_with_credentials_zendesk_does_not_know_fails_with_its_answer(fake):
    connector = make_connector(fake, None, auth={"email": fake.email, "api_token": "revoked-token"})
    with pytest.raises(PermanentError, match="Couldn't authenticate you") as caught:
        connector.setup()
    assert "revoked-token" not in caught.value.describe()


def test_deliver_without_redis_says_it_needs_it(fake):
    connector = make_connector(fake, None)
    with pytest.raises(PermanentError, match="needs Redis"):
        connector.deliver(make_delivery(connector))


def test_record_urls_point_into_the_agent_interface():
    connector = offline()
    assert connector.record_url("ticket", "123") == "https://acme.zendesk.com/agent/tickets/123"
    assert connector.record_url("follow_up", "124") == "https://acme.zendesk.com/agent/tickets/124"
    assert connector.record_url("requester", "9") == "https://acme.zendesk.com/agent/users/9"
    assert connector.record_url("ticket", "<placeholder>") is None
