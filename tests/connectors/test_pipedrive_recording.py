"""`recording: attach` uploads the audio file to the call log once; any refusal leaves the link, never failing."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.connectors.pipedrive_support import deliver, make_connector, only_call_log, requests_to
from tests.fakes.httpserver import FakeRequest, FakeResponse, FakeServer, Fault
from tests.fakes.tls import TestPKI, make_test_pki

pytest_plugins = ("tests.fakes.pipedrive_fixtures",)  # fixtures: fake

AUDIO = b"ID3\x04\x00" + bytes(range(256)) * 16


class Recordings(FakeServer):
    """Serves a recording over TLS (the test CA) and counts downloads."""

    def url(self, path: str = "/rec/call.mp3") -> str:  # type: ignore[override]
        return f"https://127.0.0.1:{self.port}{path}"

    def handle(self, request: FakeRequest) -> FakeResponse:
        if request.path == "/rec/call.mp3":
            return FakeResponse(200, AUDIO, {"content-type": "audio/mpeg"})
        return FakeResponse(404, b"not found")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def recordings(pki: TestPKI) -> Iterator[Recordings]:
    with Recordings(ssl_context=pki.server_context()) as server:
        yield server  # type: ignore[misc]


def attaching(fake, redis_client, pki, **recording):
    settings = {"mode": "attach", "recording_hosts": ["127.0.0.1"], "allow_private": True, **recording}
    return make_connector(fake, redis_client, ca_bundle=str(pki.ca_path), recording=settings)


def test_the_recording_is_downloaded_and_uploaded_to_the_call_log_once(fake, redis_client, pki, recordings):
    connector = attaching(fake, redis_client, pki)

    first = deliver(connector, recording_url=recordings.url())
    replay = deliver(connector, recording_url=recordings.url())

    log = only_call_log(fake)
    assert fake.recordings[log["id"]] == AUDIO
    assert log["has_recording"] is True
    assert recordings.url() in log["note"]  # the link stays as well
    assert first.notes == []
    assert requests_to(fake, "POST", f"/v1/callLogs/{log['id']}/recordings") == 1
    assert len(recordings.request_log) == 1  # the replay saw has_recording and downloaded nothing
    assert replay.records == first.records


def test_an_upload_whose_answer_was_lost_is_not_sent_again(fake, redis_client, pki, recordings):
    fake.faults.add(Fault(reset=True, after_handling=True), path_prefix="/v1/callLogs/", method="POST")
    connector = attaching(fake, redis_client, pki)

    lost = deliver(connector, recording_url=recordings.url())
    again = deliver(connector, recording_url=recordings.url())

    assert lost.notes[0].startswith("recording not uploaded (Pipedrive attach recording to call log")
    assert not [note for note in again.notes if "recording" in note]
    assert len(fake.recordings) == 1
    assert requests_to(fake, "POST", f"/v1/callLogs/{only_call_log(fake)['id']}/recordings") == 1


def test_a_recording_off_the_allowlist_is_not_fetched_and_the_call_log_keeps_the_link(
    fake, redis_client, pki, recordings, caplog
):
    connector = attaching(fake, redis_client, pki, recording_hosts=["storage.agniai.com"])
    caplog.set_level(logging.WARNING)

    result = deliver(connector, recording_url=recordings.url() + "?sig=secret-signature")

    assert result.notes == [
        "recording not uploaded (host '127.0.0.1' is not in recording_hosts); the call log keeps the link"
    ]
    assert not recordings.request_log and fake.recordings == {}
    assert "secret-signature" not in caplog.text
    assert only_call_log(fake)["has_recording"] is False


def test_link_mode_never_downloads_the_recording(fake, redis_client, recordings):
    deliver(make_connector(fake, redis_client), recording_url=recordings.url())
    assert not recordings.request_log and fake.recordings == {}
    assert recordings.url() in only_call_log(fake)["note"]
