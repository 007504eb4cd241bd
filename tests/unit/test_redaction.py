"""PII redaction of free text: cards (Luhn), e-mails, phone numbers except the call's parties, custom patterns."""

import json

import pytest

from bridge.errors import ConfigError
from bridge.redaction import Redactor, luhn_valid
from bridge.settings import RedactionSettings
from tests.conftest import EXAMPLE


def redactor(**options):
    return Redactor(RedactionSettings(enabled=True, **options))


def call_with(text):
    call = json.loads(EXAMPLE.read_text())["data"]
    call["summary"] = text
    call["post_call_analysis"]["next_steps"] = text
    call["transcripts"][1]["message"]["content"] = text
    return call


def test_cards_passing_luhn_are_removed_and_other_digit_runs_are_kept():
    out = redactor().call(call_with("card 4111 1111 1111 1111, order 1234567890123, tracking 4111111111111112"))
    assert out["summary"] == "card [redacted card], order 1234567890123, tracking 4111111111111112"
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_emails_are_removed_from_summary_next_steps_and_transcript():
    out = redactor().call(call_with("write to jane.roe+crm@example.co.uk please"))
    expected = "write to [redacted email] please"
    assert out["summary"] == expected
    assert out["post_call_analysis"]["next_steps"] == expected
    assert out["transcripts"][1]["message"]["content"] == expected


def test_phone_numbers_are_removed_except_the_calls_own_parties():
    text = "call me at (415) 555-0100 or my wife on 415-555-0199, office +44 20 7946 0018"
    out = redactor().call(call_with(text))
    assert out["summary"] == "call me at (415) 555-0100 or my wife on [redacted phone], office [redacted phone]"


def test_structured_fields_are_not_touched_and_the_input_is_not_mutated():
    original = call_with("mail me: a@b.io")
    out = redactor().call(original)
    assert out["caller_email"] == "john@example.com" and out["phone"] == "+14155550100"
    assert original["summary"] == "mail me: a@b.io"


def test_custom_patterns_and_replacement():
    out = redactor(patterns=[r"\bPOL-\d{6}\b"], replacement="***").call(call_with("policy POL-123456 ok"))
    assert out["summary"] == "policy *** ok"


def test_each_kind_can_be_turned_off():
    out = redactor(emails=False, phones=False).call(call_with("a@b.io 415-555-0199"))
    assert out["summary"] == "a@b.io 415-555-0199"


def test_an_invalid_pattern_names_its_key():
    with pytest.raises(ConfigError) as info:
        Redactor(RedactionSettings(enabled=True, patterns=["ok", "(unclosed"]), source="config.yaml")
    assert "config.yaml: redaction.patterns[1]: invalid regular expression" in str(info.value)
