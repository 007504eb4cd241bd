"""Zendesk connector: Zendesk's limits and error answers become the bridge's errors, with what an admin needs,
and the account's budget is shared by every worker."""

from __future__ import annotations

import logging

import pytest

from bridge.errors import DeferredError, PausedError, PermanentError, RetryableError
from bridge.limiter import LOCAL_LIMIT
from tests.conftest import make_delivery
from tests.connectors import zendesk_support
from tests.connectors.zendesk_support import (
    MAPPINGS,
    SESSION,
    TICKETS,
    listings,
    make_connector,
    posts,
    running_fake,
    seed,
)
from tests.fakes.httpserver import Fault
from tests.fakes.tls import make_test_pki
from tests.fakes.zendesk import RATE_LIMITED

fake, seeded = zendesk_support.fake, zendesk_support.seeded  # the fixtures

TOO_MANY = Fault(status=429, body=RATE_LIMITED, headers={"Retry-After": "1", "content-type": "text/plain"})


def test_a_record_invalid_is_permanent_with_zendesks_description_details_and_request_id(
    fake, seeded, redis_client, tmp_path
):
    # A drop-down custom field whose options do not include what the mapping sends.
    fake.add_ticket_field(360001, "tagger", ("happy", "unhappy"))
    mapping = tmp_path / "sentiment.yaml"
    text = (MAPPINGS / "zendesk_ticket.yaml").read_text()
    mapping.write_text(
        text.replace("\nfields:\n", '\nfields:\n  custom_fields.360001: "{{ call.post_call_analysis.sentiment }}"\n', 1)
    )
    connector = make_connector(fake, redis_client, mapping=mapping)

    with pytest.raises(PermanentError) as caught:
        connector.deliver(make_delivery(connector))

    error = caught.value
    assert (error.status, error.code) == (422, "RecordInvalid")
    assert error.details["base"] == "positive is not a valid option for the field 360001"
    assert error.message.startswith("Zendesk create ticket: Record validation errors: positive is not a valid option")
    assert len(error.details["request_id"]) == 16
    assert error.details["request_id"] in error.describe()
    assert fake.tickets == {}
    # Refused outright: the intent marker is gone, so the retry after the fix creates at once, without a listing.
    fake.add_ticket_field(360001, "tagger", ("positive", "negative"))
    connector.deliver(make_delivery(connector))
    assert listings(fake) == 0
    assert fake.only_ticket(SESSION)["custom_fields"] == [{"id": 360001, "value": "positive"}]


def test_wrong_credentials_are_permanent_and_never_appear_in_errors_or_logs(fake, seeded, redis_client, caplog):
    secret = "zd-wrong-secret-token-1234"
    connector = make_connector(fake, redis_client, auth={"email": fake.email, "api_token": secret})

    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentError) as caught:
        connector.deliver(make_delivery(connector))

    assert caught.value.status == 401
    assert "Couldn't authenticate you" in caught.value.message
    assert "check auth.email and auth.api_token" in caught.value.message
    assert posts(fake) == 0
    for text in (caught.value.describe(), caplog.text, repr(connector.client)):
        assert secret not in text


def test_an_end_users_token_is_permanent_and_says_an_agent_is_needed(fake, seeded, redis_client):
    fake.users[fake.agent_id]["role"] = "end-user"
    connector = make_connector(fake, redis_client)

    with pytest.raises(PermanentError) as caught:
        connector.deliver(make_delivery(connector))

    assert caught.value.status == 403
    assert "must be an agent or admin" in caught.value.message


def test_a_short_429_is_waited_out_in_call_and_shared_by_every_worker(fake, seeded, redis_client):
    fake.faults.add(TOO_MANY, path_prefix=TICKETS, method="POST")
    connector = make_connector(fake, redis_client, attempts=3)

    result = connector.deliver(make_delivery(connector))

    assert result.records["ticket"] == str(fake.only_ticket(SESSION)["id"])
    assert listings(fake) == 0  # the refused create cleared its marker: no reconciliation needed
    # Zendesk closed the account's window for a second: every worker had paused (the pause is in Redis).
    assert redis_client.exists(next(iter(redis_client.scan_iter("agni:zendesk:budget:*:paused"))))


def test_a_429_asking_for_longer_than_a_window_pauses_the_connector_for_every_worker(fake, seeded, redis_client):
    hour = Fault(status=429, body=RATE_LIMITED, headers={"Retry-After": "3600", "content-type": "text/plain"})
    fake.faults.add(hour, path_prefix="/api/v2/users/search")
    connector = make_connector(fake, redis_client)

    with pytest.raises(PausedError) as caught:
        connector.deliver(make_delivery(connector))
    assert caught.value.retry_after == 3600
    assert caught.value.status == 429

    seen = fake.total_requests
    other_worker = make_connector(fake, redis_client)
    with pytest.raises(PausedError) as waiting:
        other_worker.deliver(make_delivery(other_worker, call_session_id="another-call"))
    assert waiting.value.code == LOCAL_LIMIT  # nothing was sent
    assert 3590 < waiting.value.retry_after <= 3600
    assert fake.total_requests == seen
    assert fake.tickets == {}


def test_a_429_without_retry_after_waits_the_minute_window(fake, seeded, redis_client):
    fake.faults.add(Fault(status=429, body=RATE_LIMITED), path_prefix=TICKETS, method="POST")
    connector = make_connector(fake, redis_client, attempts=1)

    with pytest.raises(RetryableError) as caught:
        connector.deliver(make_delivery(connector))

    assert caught.value.retry_after == 60.0
    assert RATE_LIMITED in caught.value.message


def test_a_5xx_on_create_is_retried_later_and_reconciled_not_duplicated(fake, seeded, redis_client):
    fake.faults.add(Fault(status=503, body={"error": "Service Unavailable"}, after_handling=True), path_prefix=TICKETS,
                    method="POST")  # fmt: skip
    connector = make_connector(fake, redis_client, attempts=3)

    with pytest.raises(RetryableError) as caught:  # a create is not retried in-call: it may have landed
        connector.deliver(make_delivery(connector))
    assert caught.value.status == 503
    assert posts(fake) == 1

    result = connector.deliver(make_delivery(connector))

    assert result.records["ticket"] == str(fake.only_ticket(SESSION)["id"])
    assert posts(fake) == 1


def test_every_worker_shares_the_accounts_per_minute_budget_and_zendesk_never_says_429(redis_client):
    with running_fake(requests_per_minute=12) as zendesk:
        seed(zendesk)
        workers = [make_connector(zendesk, redis_client, name=f"zd{i}", requests_per_minute=12) for i in range(2)]
        landed, deferred = 0, None
        for i in range(12):
            connector = workers[i % 2]
            try:
                connector.deliver(make_delivery(connector, call_session_id=f"burst-{i}"))
                landed += 1
            except DeferredError as exc:
                deferred = exc
                break

        assert deferred is not None and deferred.code == LOCAL_LIMIT
        assert zendesk.throttled == {}
        # 12 minus the ~5% reserve, shared by both: two searches (each connector caches its own), nine tickets.
        assert landed == 9


def test_a_smaller_limit_reported_by_zendesk_is_warned_about_once(seeded, redis_client, caplog):
    with running_fake(requests_per_minute=200) as zendesk:
        seed(zendesk)
        connector = make_connector(zendesk, redis_client, requests_per_minute=700)
        with caplog.at_level(logging.WARNING, logger="bridge.connector.zendesk"):
            connector.deliver(make_delivery(connector, call_session_id="c1"))
            connector.deliver(make_delivery(connector, call_session_id="c2"))

    warnings = [r.getMessage() for r in caplog.records if "X-Rate-Limit" in r.getMessage()]
    assert warnings == [
        "Zendesk reports X-Rate-Limit: 200 requests per minute, below requests_per_minute (700): lower the "
        "setting, or calls will meet 429s"
    ]


def test_after_a_rejected_token_is_fixed_the_call_lands_once_without_reconciling(fake, seeded, redis_client):
    # Zendesk API and OAuth tokens cannot be refreshed: a rejected one is permanent until an admin fixes the
    # setting; the refused create left no intent marker, so the replay after the fix creates at once.
    revoked = make_connector(fake, redis_client, auth={"email": fake.email, "api_token": "revoked"})
    with pytest.raises(PermanentError):
        revoked.deliver(make_delivery(revoked))

    fixed = make_connector(fake, redis_client)
    fixed.deliver(make_delivery(fixed))

    assert fake.only_ticket(SESSION)["requester_id"] == seeded.john
    assert listings(fake) == 0


def test_a_zendesk_behind_a_private_ca_is_trusted_through_ca_bundle(tmp_path, redis_client):
    pki = make_test_pki(tmp_path / "pki")
    with running_fake(ssl_context=pki.server_context()) as zendesk:
        seed(zendesk)
        trusted = make_connector(zendesk, redis_client, ca_bundle=str(pki.ca_path))
        trusted.deliver(make_delivery(trusted))
        assert zendesk.only_ticket(SESSION)

        untrusted = make_connector(zendesk, redis_client, name="other")
        with pytest.raises(RetryableError) as caught:
            untrusted.deliver(make_delivery(untrusted, call_session_id="c2"))
        assert "certificate" in caught.value.message.lower()
        assert "ca_bundle" in caught.value.message  # says how to trust another CA
