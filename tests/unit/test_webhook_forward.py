"""webhook_forward: byte-for-byte forwarding, Standard Webhooks signatures, and status handling.

Requests go over real sockets to a local receiver; signatures are verified with
the independent `standardwebhooks` reference library and by recomputing the
HMAC by hand from the spec.
"""

import base64
import hashlib
import hmac
import json
import os
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from bridge.connector import Delivery, Services
from bridge.errors import PermanentError, RetryableError
from bridge.settings import DeliverySettings
from connectors.webhook_forward import ForwardConfig, WebhookForwardConnector, message_id
from tests.conftest import EXAMPLE
from tests.fakes.httpserver import Fault

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def make(sink, secret=SECRET, attempts=1, **extra):
    config = ForwardConfig(type="webhook_forward", url=f"{sink.url}/hook", secret=secret, **extra)
    services = Services(delivery=DeliverySettings(http_attempts=attempts, http_max_wait_seconds=1, timeout_seconds=2))
    return WebhookForwardConnector("fwd", config, services, None)


def delivery(body: bytes | None = None, record=None) -> Delivery:
    body = body or EXAMPLE.read_bytes()
    payload = json.loads(body)
    return Delivery(
        payload["data"]["call_session_id"],
        "fwd",
        payload["event"],
        payload["org_id"],
        payload["data"],
        body,
        record,
        {},
    )


def test_the_original_payload_is_forwarded_byte_for_byte_with_unknown_fields(sink):
    body = EXAMPLE.read_bytes().replace(b'"attempt": 1,', b'"attempt": 1, "brand_new_field": {"k": [1, 2]},')
    assert b"brand_new_field" in body
    make(sink).deliver(delivery(body))
    assert sink.received[0].body == body


def test_the_signature_verifies_with_the_reference_library(sink):
    make(sink).deliver(delivery())
    request = sink.received[0]
    headers = {k: v for k, v in request.headers.items() if k.startswith("webhook-")}
    Webhook(SECRET).verify(request.body, headers)  # raises if wrong
    assert headers["webhook-id"] == "msg_019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d"
    assert abs(int(headers["webhook-timestamp"]) - datetime.now(UTC).timestamp()) < 60


def test_the_signature_matches_the_spec_computed_by_hand(sink):
    make(sink).deliver(delivery())
    request = sink.received[0]
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert request.headers["webhook-signature"] == expected


def test_the_published_standard_webhooks_test_vector():
    # From the standard-webhooks repository: proves the signer we rely on follows the spec.
    when = datetime.fromtimestamp(1614265330, UTC)
    signature = Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").sign(
        "msg_p5jXN8AQM9LWM0D4loKWxJek", when, '{"test": 2432232314}'
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_webhook_id_is_stable_across_retries_and_timestamp_is_per_attempt(sink):
    sink.faults.add(Fault(status=503), times=1)
    make(sink, attempts=2).deliver(delivery())
    first, second = sink.request_log[0].headers, sink.request_log[1].headers
    assert first["webhook-id"] == second["webhook-id"]
    Webhook(SECRET).verify(sink.received[0].body, {k: v for k, v in second.items() if k.startswith("webhook-")})


def test_unsigned_when_no_secret(sink):
    make(sink, secret="").deliver(delivery())
    assert not any(k.startswith("webhook-") for k in sink.received[0].headers)


def test_with_a_mapping_the_record_is_sent_instead(sink):
    make(sink).deliver(delivery(record={"Subject": "Call with John Doe"}))
    assert sink.received[0].json() == {"Subject": "Call with John Doe"}


def test_ids_with_dots_are_hashed_because_the_signature_format_reserves_them():
    assert message_id("a.b").startswith("msg_") and "." not in message_id("a.b")
    assert message_id("a.b") == message_id("a.b")


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_answers_are_retryable_and_honour_retry_after(sink, status):
    sink.faults.add(Fault(status=status, headers={"retry-after": "7"}), times=1)
    with pytest.raises(RetryableError) as info:
        make(sink).deliver(delivery())
    assert info.value.status == status
    assert info.value.retry_after == 7


@pytest.mark.parametrize("status", [301, 302, 400, 401, 403, 404, 410, 422])
def test_redirects_gone_and_other_client_errors_are_permanent(sink, status):
    sink.faults.add(Fault(status=status, body=b"nope: bad field", headers={"location": "https://elsewhere"}), times=1)
    with pytest.raises(PermanentError) as info:
        make(sink).deliver(delivery())
    assert info.value.status == status
    assert "nope: bad field" in info.value.message


def test_a_connection_reset_is_retryable(sink):
    sink.faults.add(Fault(reset=True), times=1)
    with pytest.raises(RetryableError) as info:
        make(sink).deliver(delivery())
    assert "connection failed" in info.value.message


def test_a_hang_longer_than_the_timeout_is_retryable(sink):
    sink.faults.add(Fault(hang_seconds=3), times=1)
    with pytest.raises(RetryableError) as info:
        make(sink, timeout_seconds=0.5).deliver(delivery())
    assert "timed out" in info.value.message


def test_in_call_retries_recover_from_a_short_outage(sink):
    sink.faults.add(Fault(status=502), times=2)
    make(sink, attempts=3).deliver(delivery())
    assert len(sink.received) == 1
    assert len(sink.request_log) == 3


def test_a_malformed_secret_is_reported_by_check_without_echoing_it(sink):
    connector = make(sink, secret="whsec_not-base64!!")
    problems = connector.check()
    assert problems and "whsec_" in problems[0]
    assert "not-base64!!" not in problems[0]
