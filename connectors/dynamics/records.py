"""What one call becomes in Dataverse, as request bodies: the :class:`CallPlan`. Pure: no I/O.

From the mapping's rendered fields (``mappings/dynamics_phonecall.yaml``) and the
matched person, a plan holds, each under the id the bridge chooses
(:mod:`connectors.dynamics.odata`):

* the phone call: every mapped field, plus ``regardingobjectid_<contact|lead>_phonecall
  @odata.bind``, ``ownerid@odata.bind`` (owner_map / default_owner_id) and the
  activity parties (``phonecall_activity_parties``: participationtypemask 1 = From,
  2 = To — the owner and the person, swapped by direction: outgoing calls are from
  the owner to the person, incoming ones the other way round);
* the note (``annotations``, ``objectid_phonecall@odata.bind``): the mapping's
  ``note.*`` fields, written only when the description does not fit
  ``description_max_length`` — the description is then cut with a visible marker;
* the follow-up task: the mapping's ``follow_up`` section, regarding the same
  person, with the same owner, left open;
* the close: ``statecode`` 1 (Completed) and ``statuscode`` ``close.statuscode``
  from the mapping (2 Made / 4 Received by default, by direction).

Dataverse refuses text longer than a column (a 400 for the whole call), so text is
cut to the standard column lengths here, with a visible marker and a note for the
admin. ``activityid``, ``statecode`` and ``statuscode`` are the connector's: a
mapping that sets them is told so by ``check`` and they are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.connector import Delivery
from bridge.errors import PermanentError
from bridge.templating import TRUNCATION_MARKER, call_direction, truncate
from connectors.dynamics.config import DynamicsConfig
from connectors.dynamics.odata import ENTITY_SETS, bind, follow_up_id, note_id, phonecall_id

if TYPE_CHECKING:
    from bridge.mapping import CompiledMapping

__all__ = [
    "NOTE_MARKER",
    "RESERVED",
    "CallPlan",
    "Person",
    "Write",
    "build_plan",
    "owner_for",
    "person_body",
]

FROM, TO = 1, 2  # activityparty.participationtypemask
MADE, RECEIVED = 2, 4  # phonecall statuscode when completed
NOTE_MARKER = "…(truncated; the full text is in the note)"
RESERVED = frozenset({"activityid", "statecode", "statuscode"})
# Standard column lengths (Dataverse table references); text beyond them is refused with 0x80044331.
MAX_LENGTHS = {
    "phonecall": {"subject": 200, "phonenumber": 200, "category": 250, "subcategory": 250},
    "task": {"subject": 200, "description": 2000, "category": 250, "subcategory": 250},
    "annotation": {"subject": 500, "notetext": 100_000},
    "contact": {
        "firstname": 50,
        "lastname": 50,
        "emailaddress1": 100,
        "telephone1": 50,
        "mobilephone": 50,
        "jobtitle": 100,
        "description": 2000,
    },
    "lead": {
        "firstname": 50,
        "lastname": 50,
        "emailaddress1": 100,
        "telephone1": 50,
        "mobilephone": 50,
        "subject": 300,
        "companyname": 100,
        "description": 2000,
    },
}


@dataclass(frozen=True)
class Person:
    """The matched (or created) contact or lead."""

    entity: str  # "contact" | "lead"
    id: str
    by: str = ""  # "email" | "phone" | "created"
    cached: bool = False
    """Taken from the lookup cache (it may have been deleted or merged since)."""

    def describe(self) -> str:
        if self.by == "created":
            return f"{self.entity} {self.id} created (on_missing=create_{self.entity})"
        return f"{self.entity} {self.id} by {self.by}"


@dataclass(frozen=True)
class Write:
    """One record to create: its table, its id, its body."""

    entity_set: str
    record_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class CallPlan:
    """Everything one call writes (see the module docstring)."""

    call_session_id: str
    phonecall: Write
    note: Write | None
    task: Write | None
    close: dict[str, Any]

    def creates(self) -> list[Write]:
        """The create-only writes, in the order they are sent."""
        return [w for w in (self.phonecall, self.note, self.task) if w is not None]

    def records(self) -> dict[str, str]:
        """Record ids by kind, for the delivery result."""
        records = {"phonecall": self.phonecall.record_id}
        if self.note is not None:
            records["note"] = self.note.record_id
        if self.task is not None:
            records["follow_up"] = self.task.record_id
        return records


def owner_for(call: Mapping[str, Any], config: DynamicsConfig) -> str | None:
    """The systemuserid owning the call's records: owner_map by agent name, then agent email, then the default."""
    owners = {key.strip().lower(): value.strip() for key, value in config.owner_map.items()}
    for key in (call.get("agent_name"), call.get("agent_email")):
        found = owners.get(str(key or "").strip().lower())
        if key and found:
            return found
    return config.default_owner_id.strip() or None


def build_plan(
    delivery: Delivery,
    person: Person | None,
    config: DynamicsConfig,
    mapping: CompiledMapping | None,
    notes: list[str],
) -> CallPlan:
    """The call's writes; `notes` gains a line for everything that had to be cut or left out."""
    call_id = delivery.call_session_id
    fields, note_fields, close_fields = _split(delivery.record or {}, notes)
    outgoing = (delivery.context.get("direction") or call_direction(delivery.call)) != "inbound"
    owner = owner_for(delivery.call, config)

    phonecall = _fit("phonecall", fields, notes)
    description = phonecall.get("description")
    note = None
    if isinstance(description, str) and len(description) > config.description_max_length:
        writes_note = bool(note_fields.get("notetext"))
        marker = NOTE_MARKER if writes_note else TRUNCATION_MARKER
        phonecall["description"] = truncate(description, config.description_max_length, marker)
        where = "the full text is in a note" if writes_note else "the mapping has no note.notetext to keep it"
        notes.append(
            f"phonecall.description was {len(description):,} characters; cut to "
            f"{config.description_max_length:,} ({where})"
        )
        if writes_note:
            body = _fit("annotation", note_fields, notes)
            body["objectid_phonecall@odata.bind"] = bind("phonecalls", phonecall_id(call_id))
            note = Write("annotations", note_id(call_id), body)
    if person is not None:
        phonecall[f"regardingobjectid_{person.entity}_phonecall@odata.bind"] = bind(
            ENTITY_SETS[person.entity], person.id
        )
    if owner and "ownerid@odata.bind" not in phonecall:
        phonecall["ownerid@odata.bind"] = bind("systemusers", owner)
    parties = _parties(person, owner, outgoing)
    if parties:
        phonecall["phonecall_activity_parties"] = parties

    close = {"statecode": 1, "statuscode": _statuscode(close_fields.get("statuscode"), outgoing)}
    return CallPlan(
        call_session_id=call_id,
        phonecall=Write("phonecalls", phonecall_id(call_id), phonecall),
        note=note,
        task=_task(delivery, person, owner, mapping, notes),
        close=close,
    )


def person_body(
    entity: str, delivery: Delivery, identity: Mapping[str, str], owner: str | None, mapping: CompiledMapping | None
) -> dict[str, Any]:
    """A new contact or lead: the mapping's new_contact fields (``contact.*`` / ``lead.*`` only for that table),
    else the caller's email and number; a last name always (Dataverse's forms require one)."""
    rendered = mapping.render_new_contact(delivery.context) if mapping is not None else {}
    body: dict[str, Any] = {}
    for key, value in rendered.items():
        prefix, dot, name = key.partition(".")
        if not dot:
            body[key] = value
        elif prefix == entity:
            body[name] = value
    if not body:  # no new_contact section: enough for the next call from this person to match
        body = {"emailaddress1": identity.get("email") or None, "telephone1": identity.get("e164") or None}
    body = {key: value for key, value in body.items() if value not in (None, "")}
    if not body.get("lastname"):
        words = str(delivery.call.get("caller_name") or "").split()
        body["lastname"] = words[-1] if words else f"Unknown caller {identity.get('e164') or ''}".strip()
    if owner and "ownerid@odata.bind" not in body:
        body["ownerid@odata.bind"] = bind("systemusers", owner)
    return _fit(entity, body, [])


def _split(record: Mapping[str, Any], notes: list[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The mapped fields for the phone call, the note (``note.*``) and the close (``close.*``)."""
    fields: dict[str, Any] = {}
    note: dict[str, Any] = {}
    close: dict[str, Any] = {}
    for key, value in record.items():
        prefix, dot, name = key.partition(".")
        if dot and prefix == "note":
            note[name] = value
        elif dot and prefix == "close":
            close[name] = value
        elif key.lower() in RESERVED:
            notes.append(f"mapping field {key} left out: the connector sets it")
        else:
            fields[key] = value
    return fields, note, close


def _statuscode(value: Any, outgoing: bool) -> int:
    """The Completed status reason: the mapping's `close.statuscode`, else 2 Made / 4 Received by direction."""
    if value in (None, ""):
        return MADE if outgoing else RECEIVED
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PermanentError(
            f"mapping field close.statuscode rendered {value!r}: a status reason number "
            "(2 Made, 4 Received, or your own) is needed"
        ) from None


def _parties(person: Person | None, owner: str | None, outgoing: bool) -> list[dict[str, Any]]:
    parties = []
    if owner:
        user = bind("systemusers", owner)
        parties.append({"participationtypemask": FROM if outgoing else TO, "partyid_systemuser@odata.bind": user})
    if person is not None:
        other = bind(ENTITY_SETS[person.entity], person.id)
        mask = TO if outgoing else FROM
        parties.append({"participationtypemask": mask, f"partyid_{person.entity}@odata.bind": other})
    return parties


def _task(
    delivery: Delivery, person: Person | None, owner: str | None, mapping: CompiledMapping | None, notes: list[str]
) -> Write | None:
    rendered = mapping.render_follow_up(delivery.context) if mapping is not None else None
    if rendered is None:
        return None
    body = _fit("task", dict(rendered), notes, label="follow-up task")
    for key in [k for k in body if k.lower() in RESERVED]:
        notes.append(f"follow_up field {key} left out: the connector sets it")
        del body[key]
    if person is not None:
        body[f"regardingobjectid_{person.entity}_task@odata.bind"] = bind(ENTITY_SETS[person.entity], person.id)
    if owner and "ownerid@odata.bind" not in body:
        body["ownerid@odata.bind"] = bind("systemusers", owner)
    return Write("tasks", follow_up_id(delivery.call_session_id), body)


def _fit(entity: str, body: Mapping[str, Any], notes: list[str], *, label: str = "") -> dict[str, Any]:
    """`body` with text cut to the table's standard column lengths (each cut noted)."""
    limits = MAX_LENGTHS.get(entity, {})
    fitted = dict(body)
    for name, limit in limits.items():
        value = fitted.get(name)
        if isinstance(value, str) and len(value) > limit:
            fitted[name] = truncate(value, limit)
            notes.append(f"{label or entity}.{name} was {len(value):,} characters; cut to {limit:,}")
    return fitted
