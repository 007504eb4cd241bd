"""Asking Salesforce who has an email or a phone number: alone, or many at once.

:class:`Lookups` answers for :class:`~connectors.salesforce.match.Matcher`, which owns the
Redis cache and the order in which identifiers are tried. Lookups that arrive at the same
moment from different worker threads are coalesced by one :class:`bridge.batching.Batcher`
per kind, and a value asked twice in one batch is asked once:

* emails: ``SELECT … Email FROM Contact WHERE Email IN ('a', 'b', …) ORDER BY
  LastModifiedDate DESC``, then the same on unconverted Leads for the emails still
  unmatched (in ``match.order``); rows are attributed back by email, and the first row of
  an email is its most recently modified record;
* numbers: one ``FIND {\\+14155550100 OR 4155550100 OR …} IN PHONE FIELDS RETURNING
  Contact(…, <its phone fields>), Lead(…)``. Each record is attributed by the digits of its
  phone fields: one holding a caller's whole number wins over one that only ends in its
  national digits — what the one-number path gets by searching the E.164 form first, then
  the national digits. When a record cannot be attributed (a number stored with an
  extension, a phone field the describe did not list) or the answer may be cut off, the
  batch's numbers are looked up one at a time instead, so batching never changes a match.

A batch holding one value sends the one-value queries, unchanged. Within a type, several
matches resolve to the most recently modified record. Every value placed in a query is
escaped (:func:`soql_quote`, :func:`sosl_escape`): caller data is untrusted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bridge.batching import Batcher
from bridge.errors import ConnectorError
from bridge.phones import digits
from connectors.salesforce.api import SalesforceApi
from connectors.salesforce.batch import IN_FLIGHT
from connectors.salesforce.config import MatchConfig
from connectors.salesforce.errors import copy_error
from connectors.salesforce.schema import Schema

__all__ = ["LOOKUP_BATCH_LIMIT", "Lookups", "Number", "Person", "soql_quote", "sosl_escape"]

SOSL_RESERVED = frozenset("?&|!{}[]()^~*:\\\"'+-")
_SOQL_ESCAPES = {"\\": "\\\\", "'": "\\'", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
EMAIL_QUERIES = {
    "Contact": "SELECT Id, AccountId, OwnerId, LastModifiedDate FROM Contact WHERE Email = {email} "
    "ORDER BY LastModifiedDate DESC LIMIT 1",
    "Lead": "SELECT Id, OwnerId, LastModifiedDate FROM Lead WHERE IsConverted = false AND Email = {email} "
    "ORDER BY LastModifiedDate DESC LIMIT 1",
}
EMAILS_QUERIES = {
    "Contact": "SELECT Id, AccountId, OwnerId, LastModifiedDate, Email FROM Contact WHERE Email IN ({emails}) "
    "ORDER BY LastModifiedDate DESC LIMIT {limit}",
    "Lead": "SELECT Id, OwnerId, LastModifiedDate, Email FROM Lead WHERE IsConverted = false AND Email IN "
    "({emails}) ORDER BY LastModifiedDate DESC LIMIT {limit}",
}
RETURNING = {
    "Contact": "Contact(Id, AccountId, OwnerId, LastModifiedDate{phones})",
    "Lead": "Lead(Id, OwnerId, LastModifiedDate{phones} WHERE IsConverted = false)",
}
DEFAULT_PHONE_FIELDS = ("Phone", "MobilePhone")  # on Contact and Lead in every org; used when describe fails
# Values per query. 50 numbers are at most 100 terms, ~2,000 characters: SOSL drops the OR operators from a search
# longer than 4,000 (soql_sosl "SOSL Syntax"), and 50 emails keep the GET URL far below 16 KB.
LOOKUP_BATCH_LIMIT = 50
QUERY_ROWS = 2000  # one page of SOQL, and SOSL's default row limit: a full page may be cut off


def soql_quote(value: str) -> str:
    """A SOQL string literal: quotes and backslashes escaped, so the value can never end the literal."""
    return "'" + "".join(_SOQL_ESCAPES.get(char, char) for char in value) + "'"


def sosl_escape(value: str) -> str:
    """A SOSL search term with every reserved character backslash-escaped."""
    return "".join("\\" + char if char in SOSL_RESERVED else char for char in value)


@dataclass(frozen=True)
class Person:
    """The matched (or created) Contact or Lead."""

    type: str  # "Contact" | "Lead"
    id: str
    account_id: str = ""
    owner_id: str = ""
    by: str = ""  # "email" | "phone" | "created"

    def describe(self) -> str:
        if self.by == "created":
            return f"Lead {self.id} (created, on_missing=create_lead)"
        return f"{self.type} {self.id} by {self.by}"


@dataclass(frozen=True)
class Number:
    """A caller's number as searched: E.164 (``+14155550100``) and national digits (``4155550100``)."""

    e164: str
    national: str

    def tier(self, stored: set[str]) -> int:
        """2: a stored number is this whole number; 1: one only ends in its national digits; 0: none is it."""
        whole = digits(self.e164)
        if any((whole and digits.endswith(whole)) or digits == self.national for digits in stored):
            return 2
        return 1 if self.national and any(digits.endswith(self.national) for digits in stored) else 0


Found = Person | None
K = TypeVar("K", str, Number)  # what is looked up: an email or a number


class Lookups:
    """Contact/Lead lookups of one connector, batched when `batch_size` > 1; shared by its worker threads."""

    def __init__(
        self,
        api: SalesforceApi,
        config: MatchConfig,
        schema: Schema,
        *,
        batch_size: int,
        name: str,
        linger: float,
        max_wait: float,
    ) -> None:
        self.api = api
        self.config = config
        self.schema = schema
        size = min(batch_size, LOOKUP_BATCH_LIMIT)
        options: dict[str, Any] = {
            "max_size": size,
            "linger": linger,
            "max_wait": max_wait,
            "concurrency": IN_FLIGHT,
        }
        self._emails = Batcher(self._email_batch, name=f"{name}-emails", **options) if size > 1 else None
        self._numbers = Batcher(self._number_batch, name=f"{name}-phones", **options) if size > 1 else None

    def by_email(self, email: str) -> Found:
        """The Contact/Lead with this (lower-cased) email, first type in match.order winning."""
        return self._emails.submit(email) if self._emails is not None else self.one_email(email)

    def by_phone(self, number: Number) -> Found:
        """The Contact/Lead with this number in any phone field, first type in match.order winning."""
        return self._numbers.submit(number) if self._numbers is not None else self.one_number(number)

    def close(self) -> None:
        for batcher in (self._emails, self._numbers):
            if batcher is not None:
                batcher.close()

    # -- one value ---------------------------------------------------------------------------
    def one_email(self, email: str) -> Found:
        for sobject in self.config.order:
            soql = EMAIL_QUERIES[sobject].format(email=soql_quote(email))
            records = self.api.query(soql, what=f"find {sobject} by email")
            if records:
                return _person(records[0], "email")
        return None

    def one_number(self, number: Number) -> Found:
        returning = ", ".join(RETURNING[sobject].format(phones="") for sobject in self.config.order)
        for term in dict.fromkeys(t for t in (number.e164, number.national) if t):
            sosl = f"FIND {{{sosl_escape(term)}}} IN PHONE FIELDS RETURNING {returning}"
            best = _best(self.api.search(sosl, what="find Contact/Lead by phone"), self.config.order)
            if best is not None:
                return _person(best, "phone")
        return None

    # -- many values ---------------------------------------------------------------------------
    def _email_batch(self, emails: Sequence[str]) -> list[Found | ConnectorError]:
        return _answer(emails, self.one_email, self.many_emails)

    def _number_batch(self, numbers: Sequence[Number]) -> list[Found | ConnectorError]:
        return _answer(numbers, self.one_number, self.many_numbers)

    def many_emails(self, emails: list[str]) -> dict[str, Found]:
        """One query per type in match.order for all of `emails` (distinct, lower-cased)."""
        found: dict[str, Found] = {}
        remaining = list(emails)
        for sobject in self.config.order:
            if not remaining:
                break
            listed = ", ".join(soql_quote(email) for email in remaining)
            soql = EMAILS_QUERIES[sobject].format(emails=listed, limit=QUERY_ROWS)
            records = self.api.query(soql, what=f"find {sobject} by {len(remaining)} emails")
            newest: dict[str, dict[str, Any]] = {}
            for record in records:  # newest first: the first row of an email is the one to keep
                newest.setdefault(str(record.get("Email") or "").strip().lower(), record)
            for email in remaining:
                if email in newest:
                    found[email] = _person(newest[email], "email")
                elif len(records) >= QUERY_ROWS:  # the page is full: this email's rows may be on the next one
                    found[email] = self.one_email(email)
            remaining = [email for email in remaining if email not in found]
        return {email: found.get(email) for email in emails}

    def many_numbers(self, numbers: list[Number]) -> dict[Number, Found]:
        """One SOSL search for all of `numbers` (distinct), attributed back by digits."""
        fields = {sobject: self._phone_fields(sobject) for sobject in self.config.order}
        returning = ", ".join(
            RETURNING[sobject].format(phones="".join(f", {name}" for name in fields[sobject]))
            for sobject in self.config.order
        )
        terms = dict.fromkeys(sosl_escape(t) for n in numbers for t in (n.e164, n.national) if t)
        sosl = f"FIND {{{' OR '.join(terms)}}} IN PHONE FIELDS RETURNING {returning}"
        records = self.api.search(sosl, what=f"find Contact/Lead by {len(numbers)} phone numbers")
        hits: dict[Number, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {n: ([], []) for n in numbers}
        for record in records:
            sobject = str((record.get("attributes") or {}).get("type") or "")
            stored = {digits(record.get(name)) for name in fields.get(sobject, ())} - {""}
            tiers = {n: n.tier(stored) for n in numbers}
            if not any(tiers.values()):
                return {n: self.one_number(n) for n in numbers}  # cannot tell whose it is: ask one by one
            for n, tier in tiers.items():
                if tier == 2:
                    hits[n][0].append(record)
                if tier:
                    hits[n][1].append(record)
        if len(records) >= QUERY_ROWS:
            return {n: self.one_number(n) for n in numbers}  # maybe cut off: a newer match may be missing
        found: dict[Number, Found] = {}
        for n, (whole, national) in hits.items():
            best = _best(whole, self.config.order) or _best(national, self.config.order)
            found[n] = _person(best, "phone") if best is not None else None
        return found

    def _phone_fields(self, sobject: str) -> list[str]:
        described = self.schema.fields(sobject)
        if not described:
            return list(DEFAULT_PHONE_FIELDS)
        return [info.name for info in described.values() if info.type == "phone"]


def _answer(
    values: Sequence[K], one: Callable[[K], Found], many: Callable[[list[K]], Mapping[K, Found]]
) -> list[Found | ConnectorError]:
    """Each value's result, asking each distinct value once; a failed request fails every value with a copy."""
    distinct = list(dict.fromkeys(values))
    try:
        found: Mapping[K, Found] = {distinct[0]: one(distinct[0])} if len(distinct) == 1 else many(distinct)
    except ConnectorError as exc:
        return [copy_error(exc) for _ in values]
    return [found[value] for value in values]


def _best(records: list[dict[str, Any]], order: list[str]) -> dict[str, Any] | None:
    """The first type in `order` that has records; among those, the most recently modified."""
    for sobject in order:
        hits = [r for r in records if (r.get("attributes") or {}).get("type") == sobject and r.get("Id")]
        if hits:
            return max(hits, key=lambda r: str(r.get("LastModifiedDate") or ""))
    return None


def _person(record: dict[str, Any], by: str) -> Person:
    sobject = str((record.get("attributes") or {}).get("type") or ("Contact" if "AccountId" in record else "Lead"))
    return Person(
        type=sobject,
        id=str(record["Id"]),
        account_id=str(record.get("AccountId") or ""),
        owner_id=str(record.get("OwnerId") or ""),
        by=by,
    )
