"""Dynamics 365 connector: exactly once under lost answers, crashes between create and close, redeliveries, replays."""

from __future__ import annotations

import pytest

from connectors.dynamics.odata import follow_up_id, phonecall_id
from tests.conftest import example_payload
from tests.fakes.httpserver import Fault

pytest_plugins = ("tests.connectors.dynamics_support",)  # fixtures: fake, dyn

CALL_ID = example_payload()["data"]["call_session_id"]
PENDING = {
    "sentiment": "neutral",
    "disposition": "callback_requested",
    "goals_met": False,
    "next_steps": "Send the quote",
}
PHONECALL_PATH = "/api/data/v9.2/phonecalls("


def test_a_crash_between_the_create_and_the_close_is_healed_by_the_redelivery(dyn, fake):
    # Given one request at a time (batch_size 1), and the create's answer lost after it landed (a crash, a reset)
    connector = dyn.connector(batch_size=1)
    fake.faults.add(Fault(reset=True, after_handling=True), path_prefix=PHONECALL_PATH, method="PATCH")
    delivery = dyn.delivery(connector)
    with pytest.raises(Exception, match="connection failed"):
        connector.deliver(delivery)
    assert dyn.phonecall(CALL_ID)["statecode"] == 0  # created, still open: the close never went out

    # When the call is delivered again
    result = connector.deliver(delivery)

    # Then the create is refused as a duplicate, the open phone call is found and completed: one record, closed
    assert fake.count("phonecall") == 1
    assert (dyn.phonecall(CALL_ID)["statecode"], dyn.phonecall(CALL_ID)["statuscode"]) == (1, 2)
    assert result.records["phonecall"] == phonecall_id(CALL_ID)
    assert "already in Dataverse from an earlier attempt; completed what was missing" in result.notes


def test_a_lost_answer_to_the_batch_is_retried_without_a_second_record(dyn, fake):
    # Given the $batch lands but its answer is a 502 (a gateway timeout after the write)
    connector = dyn.connector(attempts=2)
    fake.faults.add(Fault(status=502, after_handling=True), path_prefix="/api/data/v9.2/$batch")

    result = connector.deliver(dyn.delivery(connector, post_call_analysis=PENDING))

    # Then the in-call retry's change set is refused (it all exists) and nothing is written twice
    assert fake.requests["POST $batch"] == 2
    assert fake.count("phonecall") == fake.count("task") == 1
    assert dyn.phonecall(CALL_ID)["statecode"] == 1
    assert result.records["follow_up"] == follow_up_id(CALL_ID)


def test_a_change_set_lands_whole_or_not_at_all(dyn, fake):
    # Given Dataverse refuses the follow-up task (the app user may not assign it to the owner)
    owner = fake.add("systemuser", fullname="Sam Agent")
    fake.privileges.discard("prvAssignActivity")
    connector = dyn.connector(default_owner_id=owner)
    with pytest.raises(Exception, match="prvAssignActivity"):
        connector.deliver(dyn.delivery(connector, post_call_analysis=PENDING))
    # Then not even the phone call was written (the change set rolled back as one transaction)
    assert fake.count("phonecall") == fake.count("task") == 0


@pytest.mark.parametrize("batch_size", [20, 1], ids=["change-sets", "one-request-at-a-time"])
def test_ten_concurrent_redeliveries_on_two_workers_write_one_phone_call(dyn, fake, batch_size):
    workers = [dyn.connector(name="dyn", batch_size=batch_size) for _ in range(2)]
    deliveries = [(workers[i % 2], dyn.delivery(workers[0], post_call_analysis=PENDING)) for i in range(10)]

    results = dyn.concurrently(lambda item: item[0].deliver(item[1]), deliveries)

    assert [r for r in results if isinstance(r, Exception)] == []
    assert fake.count("phonecall") == fake.count("task") == 1
    assert dyn.phonecall(CALL_ID)["statecode"] == 1
    assert {r.records["phonecall"] for r in results} == {phonecall_id(CALL_ID)}


def test_a_replay_never_rewrites_or_reopens_a_completed_phone_call(dyn, fake):
    connector = dyn.connector()
    connector.deliver(dyn.delivery(connector))
    before = dyn.phonecall(CALL_ID)

    connector.deliver(dyn.delivery(connector, caller_name="Someone Else", summary="A different summary"))

    after = dyn.phonecall(CALL_ID)
    assert after == before  # completed phone calls are read-only: nothing was sent to change it
    assert fake.count("phonecall") == 1


def test_a_phone_call_canceled_in_dynamics_stays_canceled_on_replay(dyn, fake):
    connector = dyn.connector()
    connector.deliver(dyn.delivery(connector))
    with fake.lock:
        fake.store.rows["phonecall"][phonecall_id(CALL_ID)].update(statecode=2, statuscode=3)

    connector.deliver(dyn.delivery(connector))

    assert (dyn.phonecall(CALL_ID)["statecode"], dyn.phonecall(CALL_ID)["statuscode"]) == (2, 3)


def test_a_follow_up_task_already_there_is_left_as_the_rep_changed_it(dyn, fake):
    # Given an earlier attempt created the task and a rep has worked on it since, but the phone call is missing
    fake.add("task", follow_up_id(CALL_ID), subject="Quote sent - waiting", statecode=1, statuscode=5)
    connector = dyn.connector()

    result = connector.deliver(dyn.delivery(connector, post_call_analysis=PENDING))

    # Then the change set is refused (the task exists), and the call is completed around the task
    task = fake.get("task", follow_up_id(CALL_ID))
    assert (task["subject"], task["statecode"]) == ("Quote sent - waiting", 1)
    assert fake.count("task") == 1
    assert dyn.phonecall(CALL_ID)["statecode"] == 1
    assert result.records["follow_up"] == follow_up_id(CALL_ID)


def test_two_calls_in_one_batch_fail_and_succeed_on_their_own(dyn, fake):
    ghost = "00000000-1111-4222-8333-999999999999"  # a user deleted from Dynamics after the config was written
    connector = dyn.connector(
        batch_size=2, batch_linger_seconds=1, batch_max_wait_seconds=1, owner_map={"Ghost": ghost}
    )
    good = dyn.delivery(connector, call_session_id="good")
    bad = dyn.delivery(connector, call_session_id="bad", agent_name="Ghost")

    results = dyn.concurrently(connector.deliver, [good, bad])

    assert fake.requests["POST $batch"] == 1
    assert not isinstance(results[0], Exception)
    assert dyn.phonecall("good")["statecode"] == 1
    error = results[1]
    assert getattr(error, "status", None) == 404 and error.code == "0x80040217"
    assert f"systemuser With Id = {ghost} Does Not Exist" in error.message
    assert error.message.startswith(f"Dataverse create phonecall {phonecall_id('bad')}: ")
    assert dyn.phonecall("bad") is None
