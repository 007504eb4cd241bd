"""The Salesforce connector gets its own tokens (JWT, client credentials, password), caches them per process,
re-authenticates once on an expired session, and never lets a secret reach an error or a log line."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import certifi
import pytest

from bridge.errors import PermanentError, RetryableError
from connectors.salesforce.auth import default_audience
from tests.fakes.httpserver import Fault
from tests.fakes.tls import make_rsa_keypair

pytest_plugins = ("tests.connectors.salesforce_support",)  # fixtures: pki, org, salesforce, recordings

USER = "integration@agni.test"
INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


@pytest.fixture
def jwt_key(org, tmp_path):
    private_path, public_pem = make_rsa_keypair(tmp_path / "jwt")
    org.register_jwt_client("agni-consumer-key", public_pem)
    return private_path


def jwt_auth(org, key_path, **extra):
    return {
        "method": "jwt",
        "login_url": org.url,
        "client_id": "agni-consumer-key",
        "username": USER,
        "private_key_file": str(key_path),
        **extra,
    }


def login(salesforce, auth):
    """A connector that must log in: no instance_url, so the token response names the org."""
    connector = salesforce.connector(auth=auth, instance_url=None)
    assert connector.config.instance_url == ""
    return connector


def test_the_jwt_bearer_flow_signs_an_assertion_the_org_verifies_with_the_registered_public_key(
    salesforce, org, jwt_key
):
    connector = login(salesforce, jwt_auth(org, jwt_key))

    salesforce.deliver(connector, call_session_id="jwt-1")
    salesforce.deliver(connector, call_session_id="jwt-2")

    assert org.count("Task") == 2
    assert org.requests["POST /oauth2/token"] == 1  # cached and shared, not fetched per call


def test_a_jwt_signed_with_a_key_the_org_does_not_know_is_a_permanent_login_failure(salesforce, org, jwt_key, tmp_path):
    other_key, _ = make_rsa_keypair(tmp_path / "other")
    connector = login(salesforce, jwt_auth(org, other_key))

    with pytest.raises(PermanentError) as caught:
        salesforce.deliver(connector)

    assert caught.value.code == "invalid_grant" and caught.value.status == 400
    assert "invalid assertion" in caught.value.message
    assert org.count("Task") == 0


def test_the_jwt_private_key_can_come_inline_from_an_environment_variable(salesforce, org, jwt_key):
    auth = jwt_auth(org, jwt_key)
    auth["private_key"] = jwt_key.read_text()
    del auth["private_key_file"]
    salesforce.deliver(login(salesforce, auth))
    assert org.count("Task") == 1


def test_the_client_credentials_flow_logs_in_as_the_apps_run_as_user(salesforce, org):
    runner = org.add_user("runner@agni.test")
    org.register_client("cc-key", "cc-secret", run_as=runner)
    auth = {"method": "client_credentials", "login_url": org.url, "client_id": "cc-key", "client_secret": "cc-secret"}

    salesforce.deliver(login(salesforce, auth))

    [task] = org.tasks
    assert task["CreatedById"] == runner


def test_the_password_flow_appends_the_security_token(salesforce, org):
    ops = org.add_user("ops@agni.test", password="hunter2", security_token="TOKEN")
    org.register_client("pw-key", "pw-secret")
    auth = {
        "method": "password",
        "login_url": org.url,
        "client_id": "pw-key",
        "client_secret": "pw-secret",
        "username": "ops@agni.test",
        "password": "hunter2",
        "security_token": "TOKEN",
    }

    salesforce.deliver(login(salesforce, auth))

    assert org.tasks[0]["CreatedById"] == ops


def test_a_wrong_password_fails_permanently_without_the_password_in_the_error_or_the_logs(salesforce, org, caplog):
    org.add_user("ops@agni.test", password="hunter2", security_token="TOKEN")
    org.register_client("pw-key", "pw-secret")
    auth = {
        "method": "password",
        "login_url": org.url,
        "client_id": "pw-key",
        "client_secret": "pw-secret",
        "username": "ops@agni.test",
        "password": "s3cr3t-Wr0ng",
        "security_token": "TOKEN",
    }
    caplog.set_level(logging.DEBUG)

    with pytest.raises(PermanentError) as caught:
        salesforce.deliver(login(salesforce, auth))

    assert caught.value.code == "invalid_grant"
    assert "authentication failure" in caught.value.describe()
    for secret in ("s3cr3t-Wr0ng", "pw-secret", "TOKEN"):
        assert secret not in caught.value.describe()
        assert secret not in caplog.text


def test_an_expired_session_is_renewed_once_and_the_write_succeeds(salesforce, org, jwt_key):
    connector = login(salesforce, jwt_auth(org, jwt_key))
    salesforce.deliver(connector, call_session_id="before")

    org.expire_sessions()
    salesforce.deliver(connector, call_session_id="after")

    assert sorted(t["Agni_Call_Session_Id__c"] for t in org.tasks) == ["after", "before"]
    assert org.requests["POST /oauth2/token"] == 2


def test_threads_that_hit_the_same_expired_session_share_one_new_login(salesforce, org, jwt_key):
    connector = login(salesforce, jwt_auth(org, jwt_key))
    salesforce.deliver(connector, call_session_id="warm-up")
    org.expire_sessions()
    barrier = threading.Barrier(8)

    def call(i: int) -> None:
        barrier.wait()
        salesforce.deliver(connector, call_session_id=f"parallel-{i}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(8)))

    assert org.count("Task") == 9
    assert org.requests["POST /oauth2/token"] == 2


def test_a_session_rejected_again_after_renewal_is_permanent_and_the_renewal_is_not_repeated(salesforce, org, jwt_key):
    connector = login(salesforce, jwt_auth(org, jwt_key))
    org.faults.fail_for(30, Fault(status=401, body=INVALID_SESSION), path_prefix="/services/data")

    with pytest.raises(PermanentError) as caught:
        salesforce.deliver(connector)

    assert caught.value.status == 401 and caught.value.code == "INVALID_SESSION_ID"
    assert "rejected a fresh session too" in caught.value.message
    assert org.requests["POST /oauth2/token"] == 2  # the first login and exactly one renewal


def test_a_configured_session_id_that_expires_is_permanent_because_it_cannot_be_renewed(salesforce, org):
    connector = salesforce.connector()
    org.expire_sessions()
    with pytest.raises(PermanentError) as caught:
        salesforce.deliver(connector)
    assert caught.value.status == 401
    assert "cannot re-authenticate" in caught.value.message


def test_the_ca_bundle_key_wins_over_requests_ca_bundle(salesforce, org, monkeypatch):
    # A CI machine's REQUESTS_CA_BUNDLE (public roots only) must not override the private CA configured here.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    salesforce.deliver(salesforce.connector())
    assert org.count("Task") == 1

    without = salesforce.connector(ca_bundle="")
    with pytest.raises(RetryableError, match="TLS failed"):
        salesforce.deliver(without, call_session_id="untrusted")


def test_the_jwt_audience_defaults_to_the_login_host_salesforce_documents_and_can_be_set(salesforce, org, jwt_key):
    assert default_audience("https://acme.my.salesforce.com") == "https://login.salesforce.com"
    assert default_audience("https://acme--uat.sandbox.my.salesforce.com") == "https://test.salesforce.com"
    assert default_audience("https://test.salesforce.com/") == "https://test.salesforce.com"
    assert default_audience(org.url + "/") == org.url

    connector = login(salesforce, jwt_auth(org, jwt_key, audience="https://elsewhere.example.com"))
    with pytest.raises(PermanentError, match="audience is invalid"):
        salesforce.deliver(connector)
