"""Property-based fuzzing of POST /webhooks/agni: whatever arrives, never a 5xx, never a crash, and every
4xx says why (with a JSON path when the body was JSON of the wrong shape)."""

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLE, ORG_ID, make_settings, running_api

EXAMPLE_PAYLOAD = json.loads(EXAMPLE.read_text())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def mutate(payload: dict, path: list[str], value) -> dict:
    doc = json.loads(json.dumps(payload))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


FIELD_PATHS = (
    [["event"], ["org_id"], ["data"]]
    + [["data", k] for k in EXAMPLE_PAYLOAD["data"]]
    + [["data", "post_call_analysis", k] for k in EXAMPLE_PAYLOAD["data"]["post_call_analysis"]]
)


@pytest.fixture(scope="module")
def api(tmp_path_factory, redis_server):
    tmp = tmp_path_factory.mktemp("fuzz")
    config = make_settings(
        tmp, server={"max_body_bytes": 65536}, connectors={"out": {"type": "jsonl", "path": str(tmp / "o.jsonl")}}
    )
    with running_api(config, redis_server.url) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    assert response.status_code in (200, 400, 403, 413, 415), response.status_code
    if response.status_code == 400 and not response.headers.get("content-type", "").startswith("application/json"):
        # The HTTP server itself refused a malformed request (e.g. raw control bytes in the query string).
        assert response.text
        return
    body = response.json()
    if response.status_code >= 400:
        assert body["error"], body
    if response.status_code == 400 and "path" in body:
        assert body["path"].startswith("$")


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=st.binary(max_size=2000))
def test_arbitrary_bytes(api, body):
    check(api.post("/webhooks/agni", content=body, headers={"content-type": "application/json"}))


@FUZZ
@given(value=json_values)
def test_arbitrary_json_documents(api, value):
    check(api.post("/webhooks/agni", content=json.dumps(value), headers={"content-type": "application/json"}))


@FUZZ
@given(path=st.sampled_from(FIELD_PATHS), value=json_values, call_id=st.text(min_size=1, max_size=40))
def test_the_example_with_one_field_replaced_by_anything(api, path, value, call_id):
    doc = mutate(mutate(EXAMPLE_PAYLOAD, ["data", "call_session_id"], call_id), path, value)
    doc["org_id"] = ORG_ID if path != ["org_id"] else doc["org_id"]
    check(api.post("/webhooks/agni", content=json.dumps(doc), headers={"content-type": "application/json"}))


@FUZZ
@given(content_type=st.text(max_size=40), query=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))
def test_odd_headers_and_query_strings(api, content_type, query):
    try:
        response = api.post(
            "/webhooks/agni", content=EXAMPLE.read_bytes(), params=query, headers={"content-type": content_type}
        )
    except (httpx.LocalProtocolError, UnicodeEncodeError):
        return  # the client itself refuses to send such a header
    check(response)
