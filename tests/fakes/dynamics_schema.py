"""The tables of the fake Dataverse: their columns, lengths, navigation properties and state model.

Facts from the Dataverse table references (phonecall, task, annotation, contact,
lead, systemuser, activityparty) and REFERENCE.md §9.1. :func:`validate_write`
turns a create or update body into stored columns, or raises :class:`ApiError`
with the code and message Dataverse answers:

* an unknown column → 400 0x80060888 "The property 'x' does not exist on type
  'Microsoft.Dynamics.CRM.phonecall'. …";
* text longer than the column → 400 0x80044331 "A validation error occurred. The
  length of the 'subject' attribute of the 'phonecall' entity exceeded the maximum
  allowed length of '200'.";
* a value of the wrong type → 400 0x80060888 "Cannot convert the literal …";
* ``x@odata.bind`` naming a record that does not exist → 404 0x80040217
  "contact With Id = … Does Not Exist" (the status is UNCONFIRMED: maybe 400);
* ``statecode``/``statuscode`` on create → 400 (REFERENCE §9.1: not valid on create;
  whether newer orgs accept it is UNCONFIRMED, so the fake is strict);
* a state/status pair the table does not have → 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["TABLES", "ApiError", "Table", "parse_bind"]

_BIND = re.compile(r"^(?:https?://[^/]+)?/?(?:api/data/v\d+\.\d+/)?([a-z]+)\(([0-9a-fA-F-]{36})\)$")


class ApiError(Exception):
    """An answer in Dataverse's error shape: ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass(frozen=True)
class Table:
    name: str  # logical name
    entity_set: str
    key: str  # primary key column
    columns: dict[str, tuple[str, int | None]]  # name -> (type, max length)
    binds: dict[str, str] = field(default_factory=dict)  # navigation property -> target table
    states: dict[int, set[int]] = field(default_factory=dict)  # statecode -> valid statuscodes
    default_state: tuple[int, int] = (0, 1)
    activity: bool = False

    def readable(self) -> set[str]:
        lookups = {f"_{name.split('_')[0]}_value" for name in self.binds if not name.endswith("_parties")}
        return {
            *self.columns,
            self.key,
            "statecode",
            "statuscode",
            "createdon",
            "modifiedon",
            "versionnumber",
            "_ownerid_value",
            *lookups,
        }


_TEXT, _MEMO, _INT, _BOOL, _DATE = "text", "memo", "int", "bool", "datetime"
_ACTIVITY = {
    "subject": (_TEXT, 200),
    "description": (_MEMO, 2000),
    "actualstart": (_DATE, None),
    "actualend": (_DATE, None),
    "actualdurationminutes": (_INT, None),
    "scheduledstart": (_DATE, None),
    "scheduledend": (_DATE, None),
    "prioritycode": (_INT, None),
    "category": (_TEXT, 250),
    "subcategory": (_TEXT, 250),
}
_PERSON = {
    "firstname": (_TEXT, 50),
    "lastname": (_TEXT, 50),
    "fullname": (_TEXT, 160),
    "emailaddress1": (_TEXT, 100),
    "emailaddress2": (_TEXT, 100),
    "emailaddress3": (_TEXT, 100),
    "telephone1": (_TEXT, 50),
    "telephone2": (_TEXT, 50),
    "telephone3": (_TEXT, 50),
    "mobilephone": (_TEXT, 50),
    "jobtitle": (_TEXT, 100),
    "description": (_MEMO, 2000),
}

TABLES = {
    "phonecall": Table(
        "phonecall",
        "phonecalls",
        "activityid",
        {**_ACTIVITY, "phonenumber": (_TEXT, 200), "directioncode": (_BOOL, None), "leftvoicemail": (_BOOL, None)},
        binds={
            "regardingobjectid_contact_phonecall": "contact",
            "regardingobjectid_lead_phonecall": "lead",
            "ownerid": "systemuser",
            "phonecall_activity_parties": "activityparty",
        },
        states={0: {1}, 1: {2, 4}, 2: {3}},
        default_state=(0, 1),
        activity=True,
    ),
    "task": Table(
        "task",
        "tasks",
        "activityid",
        {**_ACTIVITY, "percentcomplete": (_INT, None)},
        binds={
            "regardingobjectid_contact_task": "contact",
            "regardingobjectid_lead_task": "lead",
            "ownerid": "systemuser",
        },
        states={0: {2, 3, 4, 7}, 1: {5}, 2: {6}},
        default_state=(0, 2),
        activity=True,
    ),
    "annotation": Table(
        "annotation",
        "annotations",
        "annotationid",
        {"subject": (_TEXT, 500), "notetext": (_MEMO, 100_000), "isdocument": (_BOOL, None)},
        binds={
            "objectid_phonecall": "phonecall",
            "objectid_contact": "contact",
            "objectid_lead": "lead",
            "ownerid": "systemuser",
        },
        states={},
        default_state=(0, 1),
    ),
    "contact": Table(
        "contact", "contacts", "contactid", dict(_PERSON), binds={"ownerid": "systemuser"}, states={0: {1}, 1: {2}}
    ),
    "lead": Table(
        "lead",
        "leads",
        "leadid",
        {**_PERSON, "subject": (_TEXT, 300), "companyname": (_TEXT, 100)},
        binds={"ownerid": "systemuser"},
        states={0: {1, 2}, 1: {3}, 2: {4, 5, 6, 7}},
    ),
    "systemuser": Table(
        "systemuser",
        "systemusers",
        "systemuserid",
        {"fullname": (_TEXT, 200), "isdisabled": (_BOOL, None), "internalemailaddress": (_TEXT, 100)},
    ),
}
BY_SET = {table.entity_set: table for table in TABLES.values()}


def parse_bind(value: Any) -> tuple[str, str] | None:
    """(entity set, id) of an ``@odata.bind`` value such as ``/contacts(<id>)``."""
    found = _BIND.match(value) if isinstance(value, str) else None
    return (found.group(1), found.group(2).lower()) if found else None


def convert(table: Table, name: str, value: Any, lengths: dict[str, int] | None = None) -> Any:
    """A column value as stored, or ApiError as Dataverse answers a bad one; `lengths` overrides column lengths
    (``{"phonecall.description": 100000}``: an org that lengthened a column)."""
    kind, limit = table.columns[name]
    limit = (lengths or {}).get(f"{table.name}.{name}", limit)
    if value is None:
        return None
    if kind in (_TEXT, _MEMO):
        if not isinstance(value, str):
            raise ApiError(
                400, "0x80060888", f"Cannot convert the literal '{value}' to the expected type 'Edm.String'."
            )
        if limit is not None and len(value) > limit:
            raise ApiError(
                400,
                "0x80044331",
                f"A validation error occurred.  The length of the '{name}' attribute of "
                f"the '{table.name}' entity exceeded the maximum allowed length of '{limit}'.",
            )
        return value
    if kind == _INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(400, "0x80060888", f"Cannot convert the literal '{value}' to the expected type 'Edm.Int32'.")
        return value
    if kind == _BOOL:
        if not isinstance(value, bool):
            raise ApiError(
                400, "0x80060888", f"Cannot convert the literal '{value}' to the expected type 'Edm.Boolean'."
            )
        return value
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ApiError(
            400, "0x80060888", f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'."
        )
    return str(value)


def unknown_property(table: Table, name: str) -> ApiError:
    return ApiError(
        400,
        "0x80060888",
        f"The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM."
        f"{table.name}'. Make sure to only use property names that are defined by the type.",
    )
