"""`recording: attach`: the call's audio file on its call log, so it plays after Agni's link expires.

Pipedrive's ``POST /v1/callLogs/{id}/recordings`` takes the file itself (multipart), not a URL, so the bridge
downloads it first with :func:`bridge.fetch.fetch_limited` (https only, `recording_hosts` allowlist, no private
addresses unless allowed, size cap, streamed) and uploads it. Once per call log: the call log's
``has_recording`` is read first (an upload whose answer was lost shows there on the next attempt), and a 409
(a recording is already attached) counts as done.

Best effort by design: any failure leaves the call log as written (its note carries the link), returns a note
for the delivery record and logs a warning — it never fails the delivery. Only the host of a recording URL is
ever logged: signed URLs carry credentials in their query string.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from bridge.errors import BridgeError, PermanentError
from bridge.fetch import fetch_limited
from bridge.tls import Trust
from connectors.pipedrive.api import PipedriveApi
from connectors.pipedrive.config import RecordingConfig

__all__ = ["RecordingUploader", "file_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
AUDIO_TYPES = {".mp3": "audio/mpeg", ".wav": "audio/wav", ".ogg": "audio/ogg", ".m4a": "audio/mp4"}


class RecordingUploader:
    """Downloads a call's recording and uploads it to its call log (see the module docstring)."""

    def __init__(
        self, api: PipedriveApi, config: RecordingConfig, *, trust: Trust, timeout: float, log: logging.Logger
    ) -> None:
        self.api = api
        self.config = config
        self.trust = trust
        self.timeout = timeout
        self.log = log

    def attach(self, call: Mapping[str, Any], call_session_id: str, call_log_id: str) -> str:
        """Upload `call`'s recording to the call log once; returns a note for the admin ("" when all went well or
        there was nothing to do). Never raises a bridge error."""
        url = str(call.get("recording_url") or "").strip()
        if not url:
            return ""
        host = urlsplit(url).hostname or "?"
        try:
            if self.api.call_log(call_log_id).get("has_recording") is True:
                return ""
            fetched = fetch_limited(
                url,
                allowed_hosts=self.config.recording_hosts,
                max_bytes=self.config.max_bytes,
                timeout=self.timeout,
                allow_private=self.config.allow_private,
                trust=self.trust,
            )
            name = file_name(call_session_id, url)
            kind = fetched.content_type or AUDIO_TYPES.get(PurePosixPath(name).suffix, "audio/mpeg")
            try:
                self.api.attach_recording(call_log_id, name, fetched.content, kind)
            except PermanentError as exc:
                if exc.status != 409:  # 409: a recording is attached already (an earlier attempt's)
                    raise
        except BridgeError as exc:
            reason = getattr(exc, "message", None) or str(exc)
            self.log.warning("recording from %s not uploaded, the call log keeps the link: %s", host, reason)
            return f"recording not uploaded ({reason}); the call log keeps the link"
        return ""


def file_name(call_session_id: str, url: str) -> str:
    """A file name unique to the call; its extension tells Pipedrive the audio format."""
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    if suffix not in AUDIO_TYPES:
        suffix = ".mp3"
    return f"agni-call-{_UNSAFE.sub('-', call_session_id)[:200]}{suffix}"
