"""The spellings of a caller's phone number that CRM lookups search for.

CRMs store numbers as people typed them: ``+14155550100``, ``(415) 555-0100``,
``415.555.0100``. A connector therefore searches for more than one spelling of
the caller's number and compares what comes back digit by digit. Both built-in
CRM connectors derive the same two spellings, here:

* E.164 (``+14155550100``), from Agni's `phone` read in the connector's default
  region when it carries no country code;
* the national significant number (``4155550100``): what is left when the
  country code is dropped, the digits of a locally typed number.

Numbers that cannot be parsed, or cannot possibly be valid, give no spellings
(the caller is then matched by email only). Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import phonenumbers

__all__ = ["PhoneSpellings", "digits", "phone_spellings"]

_NOT_DIGIT = re.compile(r"\D")


@dataclass(frozen=True)
class PhoneSpellings:
    """One number, spelled the ways lookups compare it."""

    e164: str
    """``+14155550100``."""
    national: str
    """``4155550100``: the national significant number."""

    @property
    def digits(self) -> str:
        """The E.164 number without its ``+`` (``14155550100``), for digit-by-digit comparison."""
        return digits(self.e164)


def phone_spellings(raw: Any, region: str) -> PhoneSpellings | None:
    """The spellings of `raw` (read in `region`, ISO 3166 alpha-2, for numbers without a country code), or None
    when it is empty, unparseable or not a possible number."""
    text = str(raw or "").strip()
    if not text:
        return None
    try:
        number = phonenumbers.parse(text, (region or "US").upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return PhoneSpellings(e164, str(number.national_number))


def digits(text: Any) -> str:
    """Only the digits of `text` (``"(415) 555-0100"`` → ``"4155550100"``)."""
    return _NOT_DIGIT.sub("", str(text or ""))
