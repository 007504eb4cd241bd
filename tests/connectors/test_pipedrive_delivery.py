"""Pipedrive connector: what lands in Pipedrive for a call, and that it lands once (FakePipedrive, real Redis)."""

from __future__ import annotations

from tests.connectors.pipedrive_support import (
    JOHN_EMAIL,
    SESSION,
    analysis,
    concurrently,
    deliver,
    deliver_until_done,
    make_connector,
    only_call_log,
    pending,
    requests_to,
)

pytest_plugins = ("tests.fakes.pipedrive_fixtures",)  # fixtures: fake


def test_the_seed_call_becomes_one_call_log_with_every_mapped_field_on_its_person(fake, redis_client):
    # Given the caller is a person in Pipedrive
    person = fake.add_person("John Doe", emails=(JOHN_EMAIL,), phones=("+14155550100",))
    connector = make_connector(fake, redis_client)

    # When the example webhook is delivered
    result = deliver(connector)

    # Then one call log holds every field of the mapping, in Pipedrive's formats, on the person
    log = only_call_log(fake)
    assert result.records == {"call_log": log["id"], "person": str(person)}
    assert result.match == f"person {person} by email; owner: the token's user"
    assert log["outcome"] == "connected"  # disposition issue_resolved
    assert log["to_phone_number"] == "+14155550100"
    assert log["from_phone_number"] == "+18881234567"
    assert log["start_time"] == "2026-03-24 18:30:00"
    assert log["end_time"] == "2026-03-24 18:32:05"
    assert log["duration"] == "125"
    assert log["subject"] == "Agni call with John Doe (Support Agent)"
    assert log["person_id"] == person
    assert log["user_id"] == fake.me
    note = log["note"]
    assert "<strong>Summary</strong><br>Customer called about their order #4521." in note
    assert "<strong>Next steps</strong><br>No follow-up needed." in note
    assert "Direction: outbound · Disposition: issue_resolved · Sentiment: positive · Goals met: yes" in note
    assert '<a href="https://storage.agniai.com/rec/019d2b3c-8e9f.mp3">' in note
    assert "[00:03] Customer: Hi, I wanted to check on my order number 4521.<br>" in note
    assert note.endswith(f"<p>agni:{SESSION}</p>")
    # One email search and one create: nothing else, and no follow-up (goals met).
    assert dict(fake.requests) == {"GET /api/v2/persons/search": 1, "POST /v1/callLogs": 1}
    assert fake.live_activities() == []


def test_the_same_call_delivered_three_times_is_one_call_log_without_another_create(fake, redis_client):
    fake.add_person("John Doe", emails=(JOHN_EMAIL,))
    connector = make_connector(fake, redis_client)

    first = deliver(connector)
    deliver(connector)
    third = deliver(connector, summary="Corrected summary after a replay.")

    log = only_call_log(fake)
    assert first.records["call_log"] == third.records["call_log"] == log["id"]
    assert requests_to(fake, "POST", "/v1/callLogs") == 1
    # Call logs cannot be edited through the API: the replay checks it still exists and says it was kept.
    assert requests_to(fake, "GET", f"/v1/callLogs/{log['id']}") == 2
    assert third.notes == [f"call log {log['id']} kept as first written (Pipedrive's API cannot edit call logs)"]
    assert requests_to(fake, "GET", "/v1/callLogs") == 0  # the ledger answered: no reconciliation listing


def test_ten_threads_delivering_the_same_call_at_once_log_it_once(fake, redis_client):
    fake.add_person("John Doe", emails=(JOHN_EMAIL,))
    connector = make_connector(fake, redis_client)  # one connector object, shared by the threads like a worker's

    ids = concurrently(lambda _: deliver_until_done(connector).records["call_log"], list(range(10)))

    log = only_call_log(fake)
    assert ids == [log["id"]] * 10
    assert requests_to(fake, "POST", "/v1/callLogs") == 1
    assert requests_to(fake, "GET", "/api/v2/persons/search") == 1  # concurrent misses shared one search


def test_a_call_log_deleted_in_pipedrive_is_logged_anew_when_the_call_is_replayed(fake, redis_client):
    connector = make_connector(fake, redis_client)
    first = deliver(connector).records["call_log"]
    with fake.lock:
        fake.call_logs[first]["deleted"] = True

    replay = deliver(connector).records["call_log"]

    assert replay != first
    assert only_call_log(fake)["id"] == replay


def test_a_follow_up_activity_is_created_once_when_next_steps_remain_and_goals_are_not_met(fake, redis_client):
    person = fake.add_person("John Doe", emails=(JOHN_EMAIL,))
    agent = fake.add_user("Support Agent", "agent@example.com")
    connector = make_connector(fake, redis_client, owner_map={"Support Agent": agent})

    first = deliver(connector, post_call_analysis=pending())
    again = deliver(connector, post_call_analysis=pending())

    [task] = fake.live_activities()
    assert first.records["follow_up"] == again.records["follow_up"] == str(task["id"])
    assert task["subject"] == "Follow up with John Doe"
    assert task["type"] == "call"
    assert task["done"] is False
    assert task["due_date"] == "2026-03-26"  # two days after the call ended
    assert task["participants"] == [{"person_id": person, "primary": True}]
    assert task["person_id"] == person
    assert task["owner_id"] == agent
    assert "<p>Send the return label by Friday.</p>" in task["note"]
    assert task["note"].endswith(f"<p>agni:{SESSION}:follow_up</p>")
    assert requests_to(fake, "POST", "/api/v2/activities") == 1
    assert only_call_log(fake)["user_id"] == agent


def test_no_follow_up_is_written_when_the_goals_were_met(fake, redis_client):
    connector = make_connector(fake, redis_client)
    result = deliver(connector, post_call_analysis=analysis(goals_met=True, next_steps="Nothing."))
    assert "follow_up" not in result.records
    assert fake.live_activities() == []


def test_a_replay_does_not_reopen_a_follow_up_the_rep_completed(fake, redis_client):
    connector = make_connector(fake, redis_client)
    task = int(deliver(connector, post_call_analysis=pending()).records["follow_up"])
    with fake.lock:
        fake.activities[task]["done"] = True

    deliver(connector, post_call_analysis=pending(), summary="Replayed.")

    assert fake.activities[task]["done"] is True
    assert "Replayed." in fake.activities[task]["note"]
    assert requests_to(fake, "PATCH", f"/api/v2/activities/{task}") == 1


def test_the_owner_comes_from_owner_map_by_id_or_email_then_agent_email_then_the_default(fake, redis_client):
    by_id = fake.add_user("Ann", "ann@example.com")
    by_email = fake.add_user("Bob", "bob@example.com")
    by_agent_email = fake.add_user("Cid", "cid@example.com")
    default = fake.add_user("Default", "default@example.com")
    connector = make_connector(
        fake, redis_client, owner_map={"Ann Agent": by_id, "Bob Agent": "BOB@example.com"}, default_owner_id=default
    )

    ann = deliver(connector, call_session_id="c-ann", agent_name="Ann Agent")
    bob = deliver(connector, call_session_id="c-bob", agent_name="Bob Agent")
    bob_again = deliver(connector, call_session_id="c-bob-2", agent_name="Bob Agent")
    cid = deliver(connector, call_session_id="c-cid", agent_name="Cid Agent", agent_email="cid@example.com")
    nobody = deliver(connector, call_session_id="c-x", agent_name="Night Shift")

    owners = {log["id"]: log["user_id"] for log in fake.live_call_logs()}
    assert owners[ann.records["call_log"]] == by_id
    assert owners[bob.records["call_log"]] == owners[bob_again.records["call_log"]] == by_email
    assert owners[cid.records["call_log"]] == by_agent_email
    assert owners[nobody.records["call_log"]] == default
    assert bob.match.endswith(f"owner: user {by_email} by owner_map email")
    assert requests_to(fake, "GET", "/v1/users/find") == 2  # Bob's email once (then cached), Cid's once


def test_the_persons_organization_and_newest_open_deal_are_linked_when_configured(fake, redis_client):
    org = fake.add_organization("Acme")
    person = fake.add_person("John Doe", emails=(JOHN_EMAIL,), org_id=org)
    fake.add_deal("Old open", person, added=1_700_000_000)
    newer = fake.add_deal("New open", person, added=1_710_000_000)
    fake.add_deal("Newest, won", person, status="won", added=1_720_000_000)
    connector = make_connector(fake, redis_client, associate={"organization": True, "deal": True})

    deliver(connector, post_call_analysis=pending())

    log = only_call_log(fake)
    assert (log["org_id"], log["deal_id"]) == (org, newer)
    [task] = fake.live_activities()
    assert (task["org_id"], task["deal_id"]) == (org, newer)
    assert requests_to(fake, "GET", "/api/v2/deals") == 1


def test_organizations_and_deals_are_not_linked_by_default(fake, redis_client):
    org = fake.add_organization("Acme")
    person = fake.add_person("John Doe", emails=(JOHN_EMAIL,), org_id=org)
    fake.add_deal("Open", person)
    deliver(make_connector(fake, redis_client))
    log = only_call_log(fake)
    assert "org_id" not in log and "deal_id" not in log
    assert requests_to(fake, "GET", "/api/v2/deals") == 0


def test_record_activity_writes_a_done_call_activity_and_a_replay_updates_it(fake, redis_client):
    person = fake.add_person("John Doe", emails=(JOHN_EMAIL,))
    connector = make_connector(fake, redis_client, record="activity")

    first = deliver(connector)
    replay = deliver(connector, summary="Corrected after a replay.")

    [call] = fake.live_activities()
    assert first.records == replay.records == {"activity": str(call["id"]), "person": str(person)}
    assert call["type"] == "call"
    assert call["done"] is True
    assert call["busy"] is False
    assert call["subject"] == "Outbound call with John Doe (Support Agent)"
    assert (call["due_date"], call["due_time"]) == ("2026-03-24", "18:30")
    assert call["duration"] == "00:03"  # 125 s, rounded up to the minute
    assert call["participants"] == [{"person_id": person, "primary": True}]
    assert "Corrected after a replay." in call["note"]
    assert call["note"].endswith(f"<p>agni:{SESSION}</p>")
    assert fake.live_call_logs() == []
    assert requests_to(fake, "POST", "/api/v2/activities") == 1
    assert requests_to(fake, "PATCH", f"/api/v2/activities/{call['id']}") == 1


def test_a_replay_after_the_cached_person_was_deleted_relinks_the_activity_instead_of_writing_another(
    fake, redis_client
):
    gone = fake.add_person("John Doe", emails=(JOHN_EMAIL,))
    connector = make_connector(fake, redis_client, record="activity")
    activity = deliver(connector).records["activity"]
    fake.delete_person(gone)  # merged into another record in Pipedrive; the lookup cache still names it
    merged = fake.add_person("John Doe", emails=(JOHN_EMAIL,))

    replay = deliver(connector, summary="Replayed after the merge.")

    [call] = fake.live_activities()
    assert replay.records == {"activity": activity, "person": str(merged)}
    assert call["participants"] == [{"person_id": merged, "primary": True}]
    assert "Replayed after the merge." in call["note"]
