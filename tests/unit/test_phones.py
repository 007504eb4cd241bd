"""The phone spellings both CRM connectors search for (bridge.phones)."""

import pytest

from bridge.phones import PhoneSpellings, digits, phone_spellings


@pytest.mark.parametrize(
    ("raw", "region", "e164", "national"),
    [
        ("+14155550100", "US", "+14155550100", "4155550100"),
        ("(415) 555-0100", "us", "+14155550100", "4155550100"),
        ("020 7946 0958", "GB", "+442079460958", "2079460958"),
        ("+44 20 7946 0958", "US", "+442079460958", "2079460958"),
        (" 415.555.0100 ", "", "+14155550100", "4155550100"),  # no region: US
    ],
)
def test_a_number_is_spelled_in_e164_and_national_digits(raw, region, e164, national):
    spelled = phone_spellings(raw, region)
    assert spelled == PhoneSpellings(e164, national)
    assert spelled.digits == e164[1:]


@pytest.mark.parametrize("raw", [None, "", "   ", "anonymous", "12", "+1 415 555 0100 0100 0100"])
def test_what_cannot_be_a_number_has_no_spellings(raw):
    assert phone_spellings(raw, "US") is None


def test_digits_keeps_only_digits():
    assert digits("(415) 555-0100 ext. 7") == "41555501007"
    assert digits(None) == ""
