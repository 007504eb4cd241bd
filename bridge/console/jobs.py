"""Bulk replays and purges, run in the background with their progress in Redis.

A bulk action on a failure group (or a selection of its calls) may touch thousands of calls, so it runs in a
thread of the API process that was asked, and writes its progress to a Redis hash
(``{prefix}:console:job:{id}``): any API replica can show it, the console polls it, scripts read
`GET /admin/jobs/{id}`. When it ends, its result — how many calls were re-queued (or purged), how many were
skipped because they were already delivered, how many failed and why — stays there for a day, and one
audit entry records who did it and to how many calls.

**Already delivered.** A replay skips a call whose delivery to that connector is already done — the
connector's done-marker in Redis says `delivered` or `skipped` (the marker is written the moment the CRM
confirms, so it is ahead of the log) — rather than re-queue it: a group listed a minute ago may have healed
since (a retry went through), and replaying a delivered call would write it again. Replaying one call from
its page is different: the admin asks for that call to be written again, on purpose (e.g. after a mapping
fix), and it is.

**Purge** drops dead letters only: a call that is still retrying is not purged (it is counted as such).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bridge.errors import BridgeError

__all__ = ["Job", "JobTarget", "Jobs"]

log = logging.getLogger("bridge.console")

KEEP_SECONDS = 86400
STALLED_SECONDS = 60.0
PURGE_CHUNK = 500
DONE_STATES = (b"delivered", b"skipped")


@dataclass(frozen=True)
class JobTarget:
    """What a bulk action works on: one connector's calls (a failure group, or chosen call ids)."""

    connector: str
    calls: list[tuple[str, str]]
    """(call_session_id, status in the log: failed | dead)."""
    group: str | None = None
    describe: str = ""


@dataclass
class Job:
    id: str
    action: str
    connector: str
    actor: str
    total: int
    done: int = 0
    requeued: int = 0
    purged: int = 0
    already_delivered: int = 0
    still_retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    state: str = "running"  # running | finished | failed | stalled
    target: str = ""
    started: int = 0
    updated: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def percent(self) -> int:
        return 100 if not self.total else int(100 * self.done / self.total)


_INT_FIELDS = ("total", "done", "requeued", "purged", "already_delivered", "still_retrying", "failed", "started",
               "updated")  # fmt: skip


class Jobs:
    def __init__(self, client: Any, prefix: str, ops: Any, queries: Any, audit: Any) -> None:
        self.client = client
        self.prefix = prefix
        self.ops = ops
        self.queries = queries
        self.audit = audit

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}:console:job:{job_id}"

    def start(self, action: str, target: JobTarget, actor: str) -> Job:
        if action not in ("replay", "purge"):
            raise ValueError(f"unknown bulk action {action!r}")
        now = int(time.time() * 1000)
        job = Job(
            id=secrets.token_hex(8),
            action=action,
            connector=target.connector,
            actor=actor,
            total=len(target.calls),
            target=target.describe,
            started=now,
            updated=now,
        )
        self._save(job)
        thread = threading.Thread(target=self._run, args=(job, target), name=f"console-job-{job.id}", daemon=True)
        thread.start()
        return job

    def wait(self, job_id: str, seconds: float) -> Job | None:
        """The job, once finished or after `seconds` (small actions answer at once)."""
        deadline = time.monotonic() + seconds
        while True:
            job = self.get(job_id)
            if job is None or not job.running or time.monotonic() >= deadline:
                return job
            time.sleep(0.05)

    def get(self, job_id: str) -> Job | None:
        if not job_id.isalnum():
            return None
        raw = self.client.hgetall(self._key(job_id))
        if not raw:
            return None
        data = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in raw.items()}  # fmt: skip
        job = Job(
            id=job_id,
            action=data.get("action", ""),
            connector=data.get("connector", ""),
            actor=data.get("actor", ""),
            target=data.get("target", ""),
            state=data.get("state", "running"),
            errors=[line for line in data.get("errors", "").split("\n") if line],
            **{name: int(data.get(name) or 0) for name in _INT_FIELDS},
        )
        if job.running and time.time() * 1000 - job.updated > STALLED_SECONDS * 1000:
            job.state = "stalled"  # its API process went away mid-way; what it did is counted
        return job

    def _save(self, job: Job) -> None:
        job.updated = int(time.time() * 1000)
        values = {name: getattr(job, name) for name in _INT_FIELDS}
        values.update(
            action=job.action,
            connector=job.connector,
            actor=job.actor,
            target=job.target,
            state=job.state,
            errors="\n".join(job.errors[-20:]),
        )
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self._key(job.id), mapping=values)
        pipe.expire(self._key(job.id), KEEP_SECONDS)
        pipe.execute()

    def _run(self, job: Job, target: JobTarget) -> None:
        try:
            if job.action == "replay":
                self._replay(job, target)
            else:
                self._purge(job, target)
            job.state = "finished"
        except Exception as exc:  # the job's page must say it failed, whatever happened
            log.exception("console job %s failed", job.id)
            job.state = "failed"
            job.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self._save(job)
            self._audit(job)

    def _replay(self, job: Job, target: JobTarget) -> None:
        last_save = time.monotonic()
        for call_id, status in target.calls:
            done = self.client.hget(self.ops.keys.done(call_id), target.connector)
            if done in DONE_STATES or status not in ("failed", "dead"):
                job.already_delivered += 1
            else:
                try:
                    self.ops.replay(call_id, [target.connector], actor=job.actor)
                    job.requeued += 1
                except BridgeError as exc:
                    job.failed += 1
                    job.errors.append(f"{call_id}: {exc}")
            job.done += 1
            if time.monotonic() - last_save > 0.25:
                self._save(job)
                last_save = time.monotonic()

    def _purge(self, job: Job, target: JobTarget) -> None:
        dead = [call_id for call_id, status in target.calls if status == "dead"]
        job.still_retrying = len(target.calls) - len(dead)
        job.done = job.still_retrying
        for start in range(0, len(dead), PURGE_CHUNK):
            chunk = dead[start : start + PURGE_CHUNK]
            job.purged += self.ops.purge_dead(target.connector, chunk, actor=job.actor)
            job.done += len(chunk)
            self._save(job)

    def _audit(self, job: Job) -> None:
        detail = {
            "job": job.id,
            "state": job.state,
            "requeued": job.requeued,
            "purged": job.purged,
            "already_delivered": job.already_delivered,
            "still_retrying": job.still_retrying,
            "failed": job.failed,
        }
        touched = job.requeued if job.action == "replay" else job.purged
        try:
            self.audit.record(job.actor, job.action, job.target, calls=touched, detail=detail)
        except BridgeError:
            log.exception("console job %s: the audit entry could not be written", job.id)
