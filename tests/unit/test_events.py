"""Decoding Agni's call.completed webhook: the inbound contract."""

import json

import msgspec
import pytest

from bridge.errors import EventDecodeError
from bridge.events import decode_call, decode_envelope
from tests.conftest import EXAMPLE, ORG_ID


def decode(body: bytes):
    envelope = decode_envelope(body)
    return envelope, decode_call(envelope)


def test_the_seed_example_decodes_with_every_field():
    envelope, call = decode(EXAMPLE.read_bytes())
    assert envelope.event == "call.completed"
    assert envelope.org_id == ORG_ID
    assert call.call_session_id == "019d2b3c-8e9f-7a0b-1c2d-4e5f6a7b8c9d"
    assert call.duration_sec == 125
    assert call.post_call_analysis.goals_met is True
    assert call.post_call_analysis.disposition == "issue_resolved"
    assert [t.role for t in call.transcripts] == ["agent", "user", "agent"]
    assert call.transcripts[1].message.content.startswith("Hi, I wanted")
    assert call.cost_total == 0.42


def test_only_event_org_and_call_session_id_are_required():
    body = json.dumps({"event": "call.completed", "org_id": ORG_ID, "data": {"call_session_id": "c1"}}).encode()
    _, call = decode(body)
    assert call.call_session_id == "c1"
    assert call.summary is None and call.post_call_analysis is None and call.transcripts is None


def test_every_optional_field_may_be_null():
    payload = json.loads(EXAMPLE.read_text())
    for key in payload["data"]:
        if key != "call_session_id":
            payload["data"][key] = None
    _, call = decode(json.dumps(payload).encode())
    assert call.phone is None and call.duration_sec is None


def test_nested_nulls_are_accepted():
    payload = json.loads(EXAMPLE.read_text())
    payload["data"]["post_call_analysis"] = {"sentiment": None, "goals_met": None}
    payload["data"]["transcripts"] = [{"id": None, "message": None}]
    _, call = decode(json.dumps(payload).encode())
    assert call.post_call_analysis.goals_met is None
    assert call.transcripts[0].message is None


def test_unknown_fields_are_accepted_at_every_level():
    payload = json.loads(EXAMPLE.read_text())
    payload["future_top_level"] = 1
    payload["data"]["new_field"] = {"x": [1, 2]}
    payload["data"]["post_call_analysis"]["score"] = 9
    payload["data"]["transcripts"][0]["confidence"] = 0.9
    _, call = decode(json.dumps(payload).encode())
    assert call.call_session_id


def test_fractional_duration_is_accepted():
    payload = json.loads(EXAMPLE.read_text())
    payload["data"]["duration_sec"] = 12.5
    _, call = decode(json.dumps(payload).encode())
    assert call.duration_sec == 12.5


@pytest.mark.parametrize(
    ("mutate", "path", "reason"),
    [
        (lambda p: p["data"].update(duration_sec="long"), "$.data.duration_sec", "Expected `int | float | null`"),
        (lambda p: p["data"].pop("call_session_id"), "$.data.call_session_id", "missing required field"),
        (lambda p: p["data"].update(call_session_id=""), "$.data.call_session_id", "length >= 1"),
        (lambda p: p.pop("org_id"), "$.org_id", "missing required field"),
        (lambda p: p.update(event=5), "$.event", "Expected `str`"),
        (
            lambda p: p["data"]["post_call_analysis"].update(goals_met="yes"),
            "$.data.post_call_analysis.goals_met",
            "bool",
        ),
        (
            lambda p: p["data"]["transcripts"][2].update(timestamp_ms="x"),
            "$.data.transcripts[2].timestamp_ms",
            "Expected",
        ),
        (lambda p: p.update(data="not an object"), "$.data", "Expected `object`"),
    ],
)
def test_wrong_types_and_missing_fields_name_their_path(mutate, path, reason):
    payload = json.loads(EXAMPLE.read_text())
    mutate(payload)
    with pytest.raises(EventDecodeError) as info:
        decode(json.dumps(payload).encode())
    assert info.value.path == path
    assert reason in info.value.message


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"[1,2]", b"null"])
def test_bodies_that_are_not_a_json_object_are_refused(body):
    with pytest.raises(EventDecodeError) as info:
        decode(body)
    assert info.value.path == "$"


def test_decoding_leaves_msgspec_errors_behind():
    # Callers only ever see the bridge's own error type.
    with pytest.raises(EventDecodeError) as info:
        decode(b"{")
    assert isinstance(info.value.__cause__, msgspec.DecodeError)
