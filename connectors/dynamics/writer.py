"""Writing one call exactly once: create-only requests under ids the bridge chooses, then the close.

Every record of a call has a deterministic id (:mod:`connectors.dynamics.odata`)
and is created with ``PATCH /{set}({id})`` and ``If-None-Match: *``: 204 when
it was created, 412 when a record with that id exists — which, for a request that
can only create, means "written before". No ledger is needed: Dataverse itself
refuses the second copy, whichever worker sends it and whenever.

Completed phone calls are read-only and ``statecode`` cannot be set on create, so
a call is created open and then closed (``statecode`` 1, ``statuscode`` 2 Made /
4 Received) with ``If-Match: *`` — but only while it is still open.

With ``batch_size`` > 1 (the default) a call's writes — phone call, note,
follow-up task, close — are one **change set** of a ``$batch``: Dataverse runs
them as one transaction, so they land together or not at all, and concurrent
calls share the ``$batch`` request (:class:`ChangesetBatch`, run by a
:class:`bridge.batching.Batcher`; ``Prefer: odata.continue-on-error`` keeps one
call's failure from stopping the others, and each call gets its own outcome).
When a change set is refused because something in it already exists (412), the
whole change set was rolled back and :meth:`CallWriter.complete` finishes the
call one request at a time. With ``batch_size`` 1 every call is written that way.

Why a crash cannot leave a wrong result:

* crash (or lost answer) before the write landed: the redelivery creates everything;
* crash after a change set committed: the redelivery's change set is refused with
  412 (nothing changes), :meth:`complete` finds each record there (412 again) and
  the phone call completed, and stops;
* crash between the create and the close (one request at a time, or while
  completing): the phone call exists but is open. The redelivery's create is
  answered 412, :meth:`complete` reads ``statecode`` 0 and closes it — healed.
  A note or task missing because the crash came before them is created then too;
* two workers closing at once: the loser is refused (the record is read-only now),
  reads the state again and finds it completed.

A phone call a person has since *canceled* (statecode 2) is left alone, and an
existing follow-up task is never touched, so a replay never reopens or rewrites
what people changed in Dynamics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bridge.batching import Batcher
from bridge.errors import ConnectorError, PermanentError, RetryableError
from connectors.dynamics.batch import Operation, Response
from connectors.dynamics.client import DataverseClient
from connectors.dynamics.errors import copy_error, error_from_answer
from connectors.dynamics.records import CallPlan, Write

__all__ = ["IN_FLIGHT", "CallWriter", "ChangesetBatch", "changeset", "describe"]

IN_FLIGHT = 1  # one write batch in flight: under load the next one fills up meanwhile (see salesforce/batch.py)
OPEN, COMPLETED = 0, 1
STATE = {"$select": "statecode,statuscode"}


class CallWriter:
    """Writes calls for one connector, batched or not; shared by its worker threads."""

    def __init__(
        self,
        client: DataverseClient,
        *,
        batch_size: int,
        linger: float,
        max_wait: float,
        name: str,
        log: logging.Logger,
    ) -> None:
        self.client = client
        self.log = log
        self._batcher: Batcher[CallPlan, bool] | None = None
        if batch_size > 1:
            self._batcher = Batcher(
                ChangesetBatch(client),
                max_size=batch_size,
                linger=linger,
                max_wait=max_wait,
                concurrency=IN_FLIGHT,
                name=f"{name}-calls",
            )

    def write(self, plan: CallPlan) -> str:
        """Write the call; "created" when this delivery wrote it, "completed" when it finished an earlier attempt's
        work (or found it done)."""
        if self._batcher is not None and self._batcher.submit(plan):
            return "created"
        return self.complete(plan)

    def complete(self, plan: CallPlan) -> str:
        """One request at a time: create what is missing, then close the phone call if it is still open."""
        created = [self._create(write) for write in plan.creates()]
        if created[0]:
            self._close(plan)
            return "created"
        state = self._state(plan)
        if state == OPEN:
            self._close(plan)
        elif state != COMPLETED:
            self.log.info(
                "phone call %s is in state %s (canceled in Dynamics?); left as it is", plan.phonecall.record_id, state
            )
        return "completed"

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()

    # -- single requests ------------------------------------------------------------------------
    def _create(self, write: Write) -> bool:
        return self.client.create_only(write.entity_set, write.record_id, write.body, what=_what(write))

    def _state(self, plan: CallPlan) -> int | None:
        record_id = plan.phonecall.record_id
        found = self.client.get(f"phonecalls({record_id})", STATE, what=f"read phonecall {record_id} state")
        state = found.get("statecode") if isinstance(found, dict) else None
        return state if isinstance(state, int) else None

    def _close(self, plan: CallPlan) -> None:
        record_id = plan.phonecall.record_id
        try:
            self.client.update_existing("phonecalls", record_id, plan.close, what=f"complete phonecall {record_id}")
        except PermanentError as exc:
            # Completed phone calls are read-only: another worker may have closed it since we looked.
            if exc.status != 400 or self._state(plan) == OPEN:
                raise


class ChangesetBatch:
    """The `run` of the write Batcher: one ``$batch``, one change set per call; True when a call's change set landed,
    False when it was refused because a record in it exists (412), else that call's own error."""

    def __init__(self, client: DataverseClient) -> None:
        self.client = client

    def __call__(self, plans: Sequence[CallPlan]) -> list[bool | ConnectorError]:
        parts: list[list[Operation]] = []
        named: dict[str, str] = {}  # Content-ID -> what that operation does
        for plan in plans:
            operations = changeset(self.client.base, plan, first_content_id=len(named) + 1)
            named.update(zip((o.content_id or "" for o in operations), describe(plan), strict=True))
            parts.append(operations)
        try:
            answers = self.client.batch(parts, what=f"write {len(plans)} call(s) as change sets ($batch)")
        except ConnectorError as exc:
            return [copy_error(exc) for _ in plans]
        together = zip(plans, parts, answers, strict=True)
        return [_outcome(plan, operations, responses, named) for plan, operations, responses in together]


def changeset(base: str, plan: CallPlan, *, first_content_id: int = 1) -> list[Operation]:
    """The call's change set: a create-only PATCH per record, then the close; Content-IDs numbered from
    `first_content_id` (unique within the batch)."""
    requests = [(f"{base}/{w.entity_set}({w.record_id})", w.body, {"If-None-Match": "*"}) for w in plan.creates()]
    requests.append((f"{base}/phonecalls({plan.phonecall.record_id})", plan.close, {"If-Match": "*"}))
    return [
        Operation("PATCH", url, body, headers, str(first_content_id + number))
        for number, (url, body, headers) in enumerate(requests)
    ]


def describe(plan: CallPlan) -> list[str]:
    """What each operation of :func:`changeset` does, in order (for errors and dead letters)."""
    return [*(_what(w) for w in plan.creates()), f"complete phonecall {plan.phonecall.record_id}"]


def _outcome(
    plan: CallPlan, operations: list[Operation], responses: list[Response], named: dict[str, str]
) -> bool | ConnectorError:
    if not responses:
        return RetryableError(f"Dataverse write call {plan.call_session_id}: not run (the $batch stopped early)")
    if len(responses) == len(operations) and all(200 <= r.status < 300 for r in responses):
        return True
    failed = next((r for r in responses if r.status >= 300), None)
    if failed is None:  # a change set that answered fewer parts than it had: treat as not run
        return RetryableError(f"Dataverse write call {plan.call_session_id}: incomplete change set answer")
    if failed.status == 412:
        return False  # something exists: rolled back as a whole; CallWriter.complete finishes it
    what = named.get(failed.content_id or "", f"write call {plan.call_session_id} (change set)")
    return error_from_answer(what, failed.status, failed.body, failed.headers)


def _what(write: Write) -> str:
    return f"create {write.entity_set.removesuffix('s').replace('annotation', 'note')} {write.record_id}"
