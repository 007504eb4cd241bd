"""Pipedrive connector: OAuth bearer tokens, renewed with the refresh token on a 401 or at expiry, and the
token response's api_domain as the API host."""

from __future__ import annotations

import time

import pytest

from bridge.errors import PermanentError
from tests.connectors.pipedrive_support import JOHN_EMAIL, concurrently, deliver, make_connector

pytest_plugins = ("tests.fakes.pipedrive_fixtures",)  # fixtures: fake

CLIENT_ID, CLIENT_SECRET = "app-client", "app-secret-value"


def oauth(fake, access: str, refresh: str, **extra: str) -> dict[str, str]:
    return {"oauth_token": access, "refresh_token": refresh, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "token_url": f"{fake.url}/oauth/token", **extra}  # fmt: skip


def test_an_oauth_token_is_sent_as_a_bearer_to_the_api_domain(fake, redis_client):
    access, _ = fake.add_oauth_client(CLIENT_ID, CLIENT_SECRET)
    connector = make_connector(
        fake, redis_client, base_url="http://localhost:9", api_domain=fake.url, auth={"oauth_token": access}
    )

    deliver(connector)

    assert len(fake.live_call_logs()) == 1
    assert {r.headers.get("authorization") for r in fake.request_log} == {f"Bearer {access}"}
    assert all("x-api-token" not in r.headers for r in fake.request_log)


def test_an_expired_access_token_is_renewed_once_and_the_request_sent_again(fake, redis_client):
    access, refresh = fake.add_oauth_client(CLIENT_ID, CLIENT_SECRET)
    fake.add_person("John Doe", emails=(JOHN_EMAIL,))
    connector = make_connector(fake, redis_client, auth=oauth(fake, access, refresh))
    fake.expire_access_tokens()  # the hour is over

    result = deliver(connector, call_session_id="call-1")
    deliver(connector, call_session_id="call-2")

    assert result.records["call_log"]
    assert len(fake.live_call_logs()) == 2
    assert fake.requests["POST /oauth/token"] == 1
    token_request = next(r for r in fake.request_log if r.path == "/oauth/token")
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert b"grant_type=refresh_token" in token_request.body
    assert token_request.headers["authorization"].startswith("Basic ")


def test_threads_that_all_meet_the_401_renew_the_token_once(fake, redis_client):
    access, refresh = fake.add_oauth_client(CLIENT_ID, CLIENT_SECRET)
    connector = make_connector(fake, redis_client, auth=oauth(fake, access, refresh))
    fake.expire_access_tokens()

    results = concurrently(lambda i: deliver(connector, call_session_id=f"call-{i}"), list(range(6)))

    assert [r for r in results if isinstance(r, Exception)] == []
    assert fake.requests["POST /oauth/token"] == 1
    assert len(fake.live_call_logs()) == 6


def test_a_token_past_its_expires_in_is_renewed_before_the_request_and_rotated_refresh_tokens_are_kept(
    fake, redis_client
):
    fake.access_token_seconds = 61  # the bridge renews a minute early: this token is due in one second
    fake.rotate_refresh_tokens = True
    _, refresh = fake.add_oauth_client(CLIENT_ID, CLIENT_SECRET)
    # No access token yet: the first request renews first. api_domain then moves the bridge to the fake.
    auth = {k: v for k, v in oauth(fake, "", refresh).items() if k != "oauth_token"}
    connector = make_connector(fake, redis_client, base_url="http://localhost:9", auth=auth)

    deliver(connector, call_session_id="call-1")
    time.sleep(1.1)
    deliver(connector, call_session_id="call-2")

    assert fake.requests["POST /oauth/token"] == 2  # the second with the rotated refresh token
    assert len(fake.live_call_logs()) == 2


def test_a_refused_refresh_is_permanent_names_the_fix_and_shows_no_secret(fake, redis_client):
    access, _ = fake.add_oauth_client(CLIENT_ID, CLIENT_SECRET)
    connector = make_connector(fake, redis_client, auth=oauth(fake, access, "revoked-refresh-token"))
    fake.expire_access_tokens()

    with pytest.raises(PermanentError) as caught:
        deliver(connector)

    message = caught.value.describe()
    assert caught.value.status == 400
    assert "invalid_grant: Invalid refresh token" in message
    assert "re-authorize the Pipedrive app and update auth.refresh_token" in message
    for secret in ("revoked-refresh-token", CLIENT_SECRET, access):
        assert secret not in message
    assert fake.live_call_logs() == []


def test_without_refresh_settings_an_expired_token_is_a_permanent_401(fake, redis_client):
    access, _ = fake.add_oauth_client(CLIENT_ID, CLIENT_SECRET)
    connector = make_connector(fake, redis_client, auth={"oauth_token": access})
    fake.expire_access_tokens()
    with pytest.raises(PermanentError) as caught:
        deliver(connector)
    assert caught.value.status == 401
    assert fake.requests["POST /oauth/token"] == 0
