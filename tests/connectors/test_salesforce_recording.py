"""`recording: attach` uploads the recording to the Task once; any refusal falls back to the link, never failing."""

from __future__ import annotations

import logging

pytest_plugins = ("tests.connectors.salesforce_support",)  # fixtures: pki, org, salesforce, recordings

ATTACH = {"mode": "attach"}


def test_the_recording_is_downloaded_and_attached_to_the_task_as_a_content_version(salesforce, org, recordings):
    connector = salesforce.connector(recording=ATTACH)

    result = salesforce.deliver(connector, recording_url=recordings.recording_url())

    [task], [version] = org.tasks, org.content_versions
    assert version["VersionData"] == recordings.AUDIO
    assert version["FirstPublishLocationId"] == task["Id"]
    assert version["FileType"] == "MP3" and version["Title"] == "Call recording – John Doe – 2026-03-24"
    assert result.records == {"Task": task["Id"], "ContentVersion": version["Id"]}
    assert result.notes == []
    assert recordings.recording_url() in task["Description"]  # the link stays as well


def test_a_replayed_call_does_not_attach_the_recording_twice(salesforce, org, recordings, redis_client):
    connector = salesforce.connector(recording=ATTACH)
    first = salesforce.deliver(connector, recording_url=recordings.recording_url())
    replay = salesforce.deliver(connector, recording_url=recordings.recording_url())

    # Even with the bridge's marker gone (Redis flushed), Salesforce is asked before uploading again.
    redis_client.flushdb()
    third = salesforce.deliver(connector, recording_url=recordings.recording_url())

    assert org.count("ContentVersion") == 1
    assert first.records["ContentVersion"] == replay.records["ContentVersion"] == third.records["ContentVersion"]
    assert len(recordings.request_log) == 1


def test_a_recording_on_a_private_address_is_refused_and_the_task_keeps_the_link(salesforce, org, recordings, caplog):
    connector = salesforce.connector(recording={"mode": "attach", "allow_private": False})
    caplog.set_level(logging.WARNING)

    result = salesforce.deliver(connector, recording_url=recordings.recording_url() + "?sig=secret-signature")

    [task] = org.tasks
    assert org.count("ContentVersion") == 0 and not recordings.request_log
    assert result.records == {"Task": task["Id"]}
    assert result.notes == [
        "recording not attached (refusing to fetch from 127.0.0.1: private, loopback or link-local address); "
        "the Task keeps the link"
    ]
    assert recordings.recording_url() in task["Description"]
    assert "not attached" in caplog.text and "secret-signature" not in caplog.text


def test_a_recording_from_a_host_off_the_allowlist_is_not_fetched(salesforce, org, recordings):
    connector = salesforce.connector(recording={"mode": "attach", "recording_hosts": ["storage.agniai.com"]})
    result = salesforce.deliver(connector, recording_url=recordings.recording_url())
    assert org.count("ContentVersion") == 0 and not recordings.request_log
    assert result.notes == [
        "recording not attached (host '127.0.0.1' is not in recording_hosts); the Task keeps the link"
    ]


def test_a_recording_over_max_bytes_is_not_attached(salesforce, org, recordings):
    connector = salesforce.connector(recording={"mode": "attach", "max_bytes": 1000})
    result = salesforce.deliver(connector, recording_url=recordings.recording_url())
    assert org.count("ContentVersion") == 0 and org.count("Task") == 1
    assert "over the 1000-byte limit" in result.notes[0]


def test_an_upload_salesforce_rejects_falls_back_to_the_link_without_failing_the_task(salesforce, org, recordings):
    org.schema("ContentVersion").field("Title").length = 5  # the upload now fails with STRING_TOO_LONG
    connector = salesforce.connector(recording=ATTACH)
    result = salesforce.deliver(connector, recording_url=recordings.recording_url())
    assert org.count("Task") == 1 and org.count("ContentVersion") == 0
    assert result.notes[0].startswith("recording not attached (Title: data value too large")


def test_link_mode_never_downloads_the_recording(salesforce, org, recordings):
    salesforce.deliver(salesforce.connector(), recording_url=recordings.recording_url())
    assert not recordings.request_log and org.count("ContentVersion") == 0
    assert recordings.recording_url() in org.tasks[0]["Description"]
