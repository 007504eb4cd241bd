"""`recording: attach`: the call recording as a file on the Task, so it plays after Agni's link expires.

The file is downloaded with :func:`bridge.fetch.fetch_limited` (https only,
``recording_hosts`` allowlist, no private addresses unless allowed, size cap,
streamed) and uploaded as a ContentVersion whose ``FirstPublishLocationId`` is
the Task, which also links the file to it. A replayed call does not attach a
second copy: a Redis marker, then a query for a version already published on
the Task, are checked first.

Attaching is best effort by design: any failure leaves the Task as written
(its Description carries the link), returns a note for the delivery record and
logs a warning — it never fails the delivery. Only the host of a recording URL
is ever logged, since signed URLs carry credentials in their query string.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import redis

from bridge.errors import BridgeError
from bridge.fetch import fetch_limited
from bridge.tls import Trust
from connectors.salesforce.api import SalesforceApi
from connectors.salesforce.config import RecordingConfig
from connectors.salesforce.lookup import soql_quote

__all__ = ["Attached", "RecordingAttacher", "path_on_client", "recording_title"]

VERSIONS_OF_TASK = "SELECT Id, PathOnClient FROM ContentVersion WHERE FirstPublishLocationId = {task} LIMIT 50"
MARKER_SECONDS = 90 * 86400
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Attached:
    """The outcome: the ContentVersion id (new or found from an earlier attempt), or a note on why not."""

    content_version_id: str = ""
    note: str = ""


class RecordingAttacher:
    """Downloads recordings and uploads them to Salesforce for one connector."""

    def __init__(
        self,
        api: SalesforceApi,
        config: RecordingConfig,
        *,
        trust: Trust,
        timeout: float,
        redis_client: redis.Redis | None,
        key_prefix: str,
        log: logging.Logger,
    ) -> None:
        self.api = api
        self.config = config
        self.trust = trust
        self.timeout = timeout
        self.redis = redis_client
        self.key_prefix = key_prefix
        self.log = log

    def attach(self, call: Mapping[str, Any], call_session_id: str, task_id: str) -> Attached:
        """Attach `call`'s recording to the Task once; never raises."""
        url = str(call.get("recording_url") or "").strip()
        if not url:
            return Attached()
        host = urlsplit(url).hostname or "?"
        file_name = path_on_client(call_session_id, url)
        try:
            existing = self._already_attached(call_session_id, task_id, file_name)
            if existing:
                return Attached(existing)
            fetched = fetch_limited(
                url,
                allowed_hosts=self.config.recording_hosts,
                max_bytes=self.config.max_bytes,
                timeout=self.timeout,
                allow_private=self.config.allow_private,
                trust=self.trust,
            )
            body = {
                "Title": recording_title(call),
                "PathOnClient": file_name,
                "VersionData": base64.b64encode(fetched.content).decode("ascii"),
                "FirstPublishLocationId": task_id,
            }
            version_id = self.api.create("ContentVersion", body, what=f"attach recording to Task {task_id}")
        except BridgeError as exc:
            reason = getattr(exc, "message", None) or str(exc)
            self.log.warning("recording from %s not attached, the link stays in the Task: %s", host, reason)
            return Attached(note=f"recording not attached ({reason}); the Task keeps the link")
        self._mark(call_session_id, version_id)
        return Attached(version_id)

    def _already_attached(self, call_session_id: str, task_id: str, file_name: str) -> str:
        marked = self._marker(call_session_id)
        if marked:
            return marked
        soql = VERSIONS_OF_TASK.format(task=soql_quote(task_id))
        for record in self.api.query(soql, what=f"look for a recording on Task {task_id}"):
            if str(record.get("PathOnClient") or "") == file_name:
                self._mark(call_session_id, str(record["Id"]))
                return str(record["Id"])
        return ""

    def _key(self, call_session_id: str) -> str:
        return f"{self.key_prefix}:attached:{hashlib.sha256(call_session_id.encode()).hexdigest()[:32]}"

    def _marker(self, call_session_id: str) -> str:
        if self.redis is None:
            return ""
        try:
            value = self.redis.get(self._key(call_session_id))
        except redis.RedisError:
            return ""  # Salesforce is asked instead
        return value.decode() if isinstance(value, bytes) else (value or "")

    def _mark(self, call_session_id: str, version_id: str) -> None:
        if self.redis is None:
            return
        try:
            self.redis.set(self._key(call_session_id), version_id, ex=MARKER_SECONDS)
        except redis.RedisError as exc:
            self.log.warning("could not remember the attached recording (%s)", type(exc).__name__)


def path_on_client(call_session_id: str, url: str) -> str:
    """A file name unique to the call (how a replay recognises its own upload); its extension sets FileType."""
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
        suffix = ".mp3"
    return f"agni-call-{_UNSAFE_NAME.sub('-', call_session_id)[:200]}{suffix}"


def recording_title(call: Mapping[str, Any]) -> str:
    who = str(call.get("caller_name") or call.get("phone") or "").strip()
    when = str(call.get("started_at") or "")[:10]
    return " – ".join(part for part in ("Call recording", who, when) if part)[:255]
