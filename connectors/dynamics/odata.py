"""OData pieces of the Dataverse Web API, and the record ids the bridge chooses itself. Pure: no I/O.

Every value that goes into a query comes from a caller (an email, a phone number),
so it is written as an OData string literal with :func:`literal` (a single quote
doubled, the one escape OData has) and never pasted into a filter as is.

Exactly-once rests on ids the bridge chooses: the phone call of a call is
``uuid5(NAMESPACE, call_session_id)``, its note and follow-up task are uuid5s of
``<call_session_id>:note`` and ``<call_session_id>:follow_up``, and a person the
bridge creates is a uuid5 of who it is (``contact:+14155550100``). The same call
therefore always names the same records, on every worker, after any crash, and
Dataverse's "already exists" answer to a create-only request means "written".
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from urllib.parse import quote

__all__ = [
    "ENTITY_SETS",
    "GUID",
    "NAMESPACE",
    "any_equal",
    "bind",
    "encode_query",
    "follow_up_id",
    "literal",
    "note_id",
    "person_id",
    "phonecall_id",
]

NAMESPACE = uuid.UUID("5b7d353b-3c68-4f18-b417-c0e33204cfbc")
"""The bridge's uuid5 namespace for Dataverse record ids (fixed: changing it would re-create every record)."""
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
QUERY_SAFE = "$,()'*:@/-._~"
ENTITY_SETS = {
    "contact": "contacts",
    "lead": "leads",
    "phonecall": "phonecalls",
    "task": "tasks",
    "annotation": "annotations",
    "systemuser": "systemusers",
}


def literal(value: str) -> str:
    """An OData string literal: ``O'Brien`` → ``'O''Brien'``."""
    return "'" + str(value).replace("'", "''") + "'"


def any_equal(fields: Iterable[str], values: Iterable[str]) -> str:
    """``(f1 eq 'a' or f1 eq 'b' or f2 eq 'a' …)`` for every field × value, duplicates dropped."""
    terms = [f"{field} eq {literal(value)}" for field in fields for value in dict.fromkeys(values) if value]
    return "(" + " or ".join(terms) + ")"


def encode_query(params: Mapping[str, str]) -> str:
    """A query string with system query options as Dataverse documents them: ``$filter=a%20eq%20'b'`` — spaces
    as %20 (not +), a literal ``+`` as %2B, ``$`` and OData punctuation left readable."""
    return "&".join(f"{name}={quote(str(value), safe=QUERY_SAFE)}" for name, value in params.items())


def bind(entity_set: str, record_id: str) -> str:
    """The value of an ``…@odata.bind`` property: ``/contacts(<id>)``."""
    return f"/{entity_set}({record_id})"


def phonecall_id(call_session_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, call_session_id))


def note_id(call_session_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{call_session_id}:note"))


def follow_up_id(call_session_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{call_session_id}:follow_up"))


def person_id(entity: str, identity: str) -> str:
    """The id of a contact or lead the bridge creates for `identity` (``+14155550100`` or an email): two calls from
    one unknown caller name the same record, so it is created once."""
    return str(uuid.uuid5(NAMESPACE, f"{entity}:{identity}"))
