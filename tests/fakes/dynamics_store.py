"""The fake Dataverse's records and the rules a write must pass, as Dataverse applies them.

:meth:`Store.write` is one create/update/upsert by primary key:

* ``If-None-Match: *`` (create only) on an existing record → 412 0x80040237
  "A record with matching key values already exists.";
* ``If-Match: *`` (update only) on a missing record → 404 0x80040217
  "<table> With Id = <id> Does Not Exist"; ``If-Match: W/"<version>"`` that is not
  the current version → 412 0x80060882 (optimistic concurrency);
* a completed or canceled activity is read-only: any update but a reopen
  (``statecode`` 0) → 400 0x8004022e "The object cannot be updated because it is
  read-only." (the code and message of closed *activities* are UNCONFIRMED);
* the application user's privileges (403 0x80040220 "… is missing prvCreateActivity
  privilege …"): create/write per table, append on the activity and append-to on
  the record a Regarding names, assign for another owner;
* everything in :mod:`tests.fakes.dynamics_schema` (columns, lengths, types, binds,
  state model), checked before anything is stored, so a refused write changes nothing.

``phonecall_activity_parties`` is a deep insert: a list of parties, each with a
``participationtypemask`` (1 From, 2 To, …) and one ``partyid_<table>@odata.bind``.
"""

from __future__ import annotations

import copy
import itertools
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .dynamics_schema import BY_SET, TABLES, ApiError, Table, convert, parse_bind, unknown_property

__all__ = ["ALL_PRIVILEGES", "Store"]

OTC = {"contact": 2, "lead": 4, "phonecall": 4210, "task": 4212, "annotation": 5, "systemuser": 8}
PRIVILEGE_NOUN = {
    "phonecall": "Activity",
    "task": "Activity",
    "annotation": "Note",
    "contact": "Contact",
    "lead": "Lead",
    "systemuser": "User",
}
ALL_PRIVILEGES = frozenset(
    f"prv{verb}{noun}"
    for noun in ("Activity", "Note", "Contact", "Lead", "User")
    for verb in ("Create", "Read", "Write", "Delete", "Append", "AppendTo", "Assign")
)
PARTY_TABLES = {"contact", "lead", "systemuser"}


class Store:
    """Tables of records (id -> columns); guarded by the fake's lock, which the caller holds."""

    def __init__(self, clock: Callable[[], float] = time.time, lengths: dict[str, int] | None = None) -> None:
        self.rows: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in TABLES}
        self.lengths = dict(lengths or {})
        self.clock = clock
        self._versions = itertools.count(100_000)

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        return copy.deepcopy(self.rows)

    def restore(self, snapshot: dict[str, dict[str, dict[str, Any]]]) -> None:
        self.rows = snapshot

    def add(self, table: str, record_id: str | None = None, **columns: Any) -> str:
        """Seed a record (tests), bypassing privileges; returns its id."""
        spec = TABLES[table]
        record_id = (record_id or str(uuid.uuid4())).lower()
        state, status = spec.default_state
        row = {"statecode": state, "statuscode": status, **columns, spec.key: record_id}
        if "modifiedon" not in columns:
            row["modifiedon"] = self._now()
        row.setdefault("createdon", row["modifiedon"])
        if table in ("contact", "lead"):
            row["fullname"] = " ".join(str(row.get(k) or "") for k in ("firstname", "lastname")).strip()
        row["versionnumber"] = next(self._versions)
        self.rows[table][record_id] = row
        return record_id

    def write(
        self,
        table: Table,
        record_id: str,
        body: dict[str, Any],
        *,
        mode: str,
        etag: str | None,
        caller: str,
        privileges: frozenset[str] | set[str],
    ) -> bool:
        """Create or update one record; True when it was created. `mode`: create, update or upsert."""
        record_id = record_id.lower()
        existing = self.rows[table.name].get(record_id)
        if mode == "create" and existing is not None:
            raise ApiError(412, "0x80040237", "A record with matching key values already exists.")
        if mode == "update" and existing is None:
            raise ApiError(404, "0x80040217", f"{table.name} With Id = {record_id} Does Not Exist")
        if etag and existing is not None and etag != f'W/"{existing["versionnumber"]}"':
            raise ApiError(
                412, "0x80060882", "The version of the existing record doesn't match the RowVersion property provided."
            )
        creating = existing is None
        noun = PRIVILEGE_NOUN[table.name]
        _require(privileges, f"prv{'Create' if creating else 'Write'}{noun}", table, caller)
        row = {} if creating else dict(existing or {})
        if not creating and table.activity and row.get("statecode") != 0 and body.get("statecode") != 0:
            raise ApiError(400, "0x8004022e", "The object cannot be updated because it is read-only.")
        for key, value in body.items():
            self._apply(table, row, key, value, creating=creating, caller=caller, privileges=privileges)
        self._state(table, row, body, creating=creating, record_id=record_id)
        now = self._now()
        if creating:
            row[table.key] = record_id
            row["createdon"] = now
            row.setdefault("_ownerid_value", caller)
        row["modifiedon"] = now
        row["versionnumber"] = next(self._versions)
        if table.name in ("contact", "lead"):
            row["fullname"] = " ".join(str(row.get(k) or "") for k in ("firstname", "lastname")).strip()
        self.rows[table.name][record_id] = row
        return creating

    # -- the pieces of a write ------------------------------------------------------------------
    def _apply(
        self,
        table: Table,
        row: dict[str, Any],
        key: str,
        value: Any,
        *,
        creating: bool,
        caller: str,
        privileges: frozenset[str] | set[str],
    ) -> None:
        if key.endswith("@odata.bind"):
            navigation = key.removesuffix("@odata.bind")
            target = self._bound(table, navigation, value)
            noun = PRIVILEGE_NOUN[table.name]
            if navigation == "ownerid":
                if target != caller:
                    _require(privileges, f"prvAssign{noun}", table, caller)
                row["_ownerid_value"] = target
            else:
                _require(privileges, f"prvAppend{noun}", table, caller)
                target_table = TABLES[table.binds[navigation]]
                _require(privileges, f"prvAppendTo{PRIVILEGE_NOUN[target_table.name]}", target_table, caller)
                row[f"_{navigation.split('_')[0]}_value"] = target
        elif key == "phonecall_activity_parties" and "phonecall_activity_parties" in table.binds:
            row["parties"] = self._parties(value)
        elif key in ("statecode", "statuscode"):
            if creating:
                raise ApiError(
                    400,
                    "0x80040203",
                    f"'{key}' cannot be set when a {table.name} is created; create it open, then change its state",
                )
        elif key == table.key:
            if str(value).lower() != row.get(table.key, str(value).lower()):
                raise ApiError(400, "0x80040203", f"The {table.key} in the body does not match the one in the URL.")
        elif key in table.columns:
            row[key] = convert(table, key, value, self.lengths)
        elif key.startswith("@odata."):
            return
        else:
            raise unknown_property(table, key)

    def _bound(self, table: Table, navigation: str, value: Any) -> str:
        if navigation not in table.binds:
            raise ApiError(
                400,
                "0x80060888",
                f"An undeclared property '{navigation}' which only has property "
                "annotations in the payload but no property value was found in the payload.",
            )
        found = parse_bind(value)
        expected = TABLES[table.binds[navigation]]
        if found is None or BY_SET.get(found[0]) is not expected:
            raise ApiError(
                400,
                "0x80060888",
                f"'{value}' is not a valid reference to {expected.entity_set} for '{navigation}@odata.bind'.",
            )
        if found[1] not in self.rows[expected.name]:
            raise ApiError(404, "0x80040217", f"{expected.name} With Id = {found[1]} Does Not Exist")
        return found[1]

    def _parties(self, value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise ApiError(400, "0x80060888", "phonecall_activity_parties must be a collection of activityparty.")
        parties = []
        for party in value:
            mask = party.get("participationtypemask") if isinstance(party, dict) else None
            binds = [k for k in party if k.endswith("@odata.bind")] if isinstance(party, dict) else []
            if not isinstance(mask, int) or isinstance(mask, bool) or not 1 <= mask <= 11 or len(binds) != 1:
                raise ApiError(
                    400,
                    "0x80060888",
                    "Each activity party needs a participationtypemask (1-11) and one partyid_<table>@odata.bind.",
                )
            entity = binds[0].removeprefix("partyid_").removesuffix("@odata.bind")
            found = parse_bind(party[binds[0]])
            if entity not in PARTY_TABLES or found is None or found[0] != TABLES[entity].entity_set:
                raise ApiError(400, "0x80060888", f"'{binds[0]}' is not a valid activity party reference.")
            if found[1] not in self.rows[entity]:
                raise ApiError(404, "0x80040217", f"{entity} With Id = {found[1]} Does Not Exist")
            parties.append({"participationtypemask": mask, "entity": entity, "id": found[1]})
        return parties

    def _state(
        self, table: Table, row: dict[str, Any], body: dict[str, Any], *, creating: bool, record_id: str
    ) -> None:
        if creating:
            row["statecode"], row["statuscode"] = table.default_state
            return
        if "statecode" not in body and "statuscode" not in body:
            return
        state = body.get("statecode", row.get("statecode"))
        valid = table.states.get(state) if isinstance(state, int) else None
        if valid is None:
            raise ApiError(400, "0x80040203", f"{state} is not a valid state code on {table.name} with Id {record_id}.")
        status = body.get("statuscode", min(valid))
        if status not in valid:
            raise ApiError(
                400,
                "0x80040203",
                f"{status} is not a valid status code for state code {state} on {table.name} with Id {record_id}.",
            )
        row["statecode"], row["statuscode"] = state, status

    def _now(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _require(privileges: frozenset[str] | set[str], privilege: str, table: Table, caller: str) -> None:
    if privilege not in privileges:
        raise ApiError(
            403,
            "0x80040220",
            f"Principal user (Id={caller}, type=8, roleCount=1, privilegeCount="
            f"{len(privileges)}, accessMode=4), is missing {privilege} privilege (Id="
            f"{uuid.uuid5(uuid.NAMESPACE_OID, privilege)}) on OTC={OTC[table.name]} for entity "
            f"'{table.name}'. context.Caller={caller}",
        )
