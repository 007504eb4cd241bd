"""The reference a user would otherwise write: FastAPI + pydantic, Redis SET NX, Dramatiq `actor.send`.

The same contract as the bridge's endpoint (org check, dedupe on call_session_id, one job per call),
written the straightforward way: a sync handler (FastAPI runs it in its thread pool), pydantic
validation of the body, redis-py and Dramatiq's own enqueue. Installed only for the benchmark.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel


class Message(BaseModel):
    content: str | None = None
    format: str | None = None


class Transcript(BaseModel):
    id: str | None = None
    timestamp_ms: int | float | None = None
    role: str | None = None
    message: Message | None = None
    created_at: str | None = None


class Analysis(BaseModel):
    sentiment: str | None = None
    disposition: str | None = None
    goals_met: bool | None = None
    next_steps: str | None = None


class CallData(BaseModel):
    call_session_id: str
    campaign_id: str | None = None
    contact_id: str | None = None
    phone: str | None = None
    status: str | None = None
    duration_sec: int | float | None = None
    attempt: int | None = None
    summary: str | None = None
    recording_url: str | None = None
    caller_number: str | None = None
    callee_number: str | None = None
    caller_name: str | None = None
    caller_email: str | None = None
    agent_name: str | None = None
    channel: str | None = None
    disconnect_reason: str | None = None
    cost_total: float | None = None
    call_latency_ms: int | float | None = None
    started_at: str | None = None
    ended_at: str | None = None
    created_at: str | None = None
    post_call_analysis: Analysis | None = None
    transcripts: list[Transcript] | None = None


class Envelope(BaseModel):
    event: str
    org_id: str
    data: CallData


def create_reference_app() -> FastAPI:
    url = os.environ["AGNI_BRIDGE_REDIS_URL"]
    orgs = set(os.environ.get("BENCH_ORG_IDS", "").split(","))
    client = redis.Redis.from_url(url)
    broker = RedisBroker(client=client, namespace="reference")

    def deliver(payload: dict[str, Any]) -> None:  # never runs in the benchmark: only enqueued
        pass

    actor = dramatiq.actor(deliver, broker=broker, actor_name="reference_deliver", queue_name="reference")
    app = FastAPI()

    @app.post("/webhooks/agni")
    def webhook(envelope: Envelope) -> dict[str, str]:
        if envelope.org_id not in orgs:
            raise HTTPException(403, "org not accepted")
        call_id = envelope.data.call_session_id
        if not client.set(f"reference:dedupe:{call_id}", 1, nx=True, ex=30 * 86400):
            return {"status": "duplicate", "call_session_id": call_id}
        try:
            actor.send(envelope.model_dump())
        except Exception:
            client.delete(f"reference:dedupe:{call_id}")
            raise
        return {"status": "accepted", "call_session_id": call_id}

    return app
