"""A call log of a million calls, made in bulk, for timing the queries admins run on a full log.

Going through the log writer would take hours, so rows go straight into the tables the migrations
create, in big transactions (SQLite: `executemany` of prepared inserts; PostgreSQL: COPY), with the
secondary indexes dropped for the load and re-created afterwards from their own stored definitions
(so they are exactly the migrations' indexes). Every column the writer fills is filled as it fills it:

    calls           the facts `facts_of` reads from the payload (a self-check compares a sample with
                    `facts_of` itself), the payload zstd-compressed on SQLite and plain on PostgreSQL
                    (LogWriter.encode_payload), status = worst_status of the call's deliveries
    parties         the customer's number, the company line, the email — as E.164 / lowercase
    deliveries      one per routed connector: delivered (~95 %), skipped, failed (retrying, recent calls),
                    dead (~1.5 %), pending (the newest minutes); errors grouped by `error_group`
    attempts        received + every attempt (retries before success for some), with the detail JSON
    records         CRM ids (and Lightning URLs for Salesforce) of delivered calls
    dead_letters    one per dead delivery
    delivery_stats  per connector and hour, the counts and latency histogram of the attempts above
    full text       SQLite: `calls_fts` rebuilt from the calls (the writer adds a row per call);
                    PostgreSQL: its GIN expression index, re-created after the load

The distribution: 30 days of calls, 150 agents (a few busy ones), 15 dispositions, customers mostly
calling once (a third call again), twenty company lines shared by every call, three routes (one, two or
two connectors); 2 % of deliveries dead, 1.5 % of the last week's failed (retrying), 1 % skipped.
Deterministic (seeded): the same N gives the same log.
"""

from __future__ import annotations

import bisect
import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import zstandard

from bench.payloads import sentences
from bridge.db.facts import error_group, facts_of
from bridge.db.schema import LATENCY_BUCKETS_MS
from bridge.db.writer import worst_status

__all__ = ["GENERATOR_VERSION", "TOPICS", "T_END", "Generator"]

GENERATOR_VERSION = 1
T_END = 1_796_083_200_000  # 2026-12-01T00:00:00Z: "now" for the generated log
SPAN_MS = 30 * 86_400_000
ORG = "1268c1f0-19f3-47db-aefb-c16a7c3ace6e"

TABLES: dict[str, tuple[str, ...]] = {
    "calls": (
        "id", "call_session_id", "org_id", "received_at", "updated_at", "source", "route", "connectors", "status",
        "ingest_event", "payload", "payload_codec", "payload_bytes", "phone", "caller_name", "email", "agent_name",
        "direction", "disposition", "sentiment", "call_status", "duration_sec", "started_at", "summary", "next_steps",
    ),
    "parties": ("call_id", "kind", "value", "received_at"),
    "deliveries": (
        "call_id", "connector", "status", "attempts", "updated_at", "queued_at", "finished_at", "latency_ms",
        "last_error", "error_group", "code", "http_status", "match", "mapping", "mapping_digest",
    ),
    "attempts": (
        "id", "call_id", "t", "type", "connector", "attempt", "outcome", "http_status", "code", "error",
        "duration_ms", "mapping", "mapping_digest", "detail",
    ),
    "records": ("call_id", "connector", "kind", "crm_id", "url", "written_at"),
    "dead_letters": ("call_id", "connector", "t", "attempts", "error", "error_group", "code", "http_status"),
}  # fmt: skip

TOPICS = (
    "invoice", "refund", "shipping delay", "password reset", "plan upgrade", "cancellation", "billing address",
    "late payment", "damaged package", "warranty claim", "appointment booking", "demo request", "pricing",
    "contract renewal", "account locked", "data export", "integration setup", "onboarding", "discount code",
    "subscription pause", "order status", "return label", "installation", "technical outage", "feature request",
    "credit card declined", "tax exemption", "insurance quote", "delivery window", "loyalty points",
)  # fmt: skip
NEXT_STEPS = (
    "Send the pricing sheet by email", "Schedule a follow-up call next week", "Escalate to billing",
    "Open a support ticket", "No follow-up needed", "Send the return label", "Book a demo with sales",
    "Confirm the refund in three business days", "Call back after the outage is resolved",
    "Email the contract for signature", "Ask the manager to approve the discount", "Reset the account password",
)  # fmt: skip
DISPOSITIONS = (
    ("issue_resolved", 30), ("callback_requested", 12), ("meeting_booked", 10), ("not_interested", 9),
    ("voicemail", 8), ("wrong_number", 3), ("escalated", 5), ("sale_closed", 6), ("information_sent", 7),
    ("do_not_call", 1), ("follow_up_needed", 4), ("no_answer", 2), ("transferred", 2), ("complaint", 1),
    ("payment_taken", 0.5),
)  # fmt: skip
FIRST = (
    "Maria", "Sam", "Priya", "John", "Aisha", "Liam", "Chen", "Sofia", "Omar", "Emma", "Noah", "Yuki", "Lucas",
    "Fatima", "Ethan", "Olivia", "Mateo", "Zara", "Ivan", "Grace", "Diego", "Hana", "Leo", "Amara", "Kai",
)  # fmt: skip
LAST = (
    "Lopez", "Chen", "Patel", "Smith", "Khan", "Murphy", "Wang", "Rossi", "Haddad", "Brown", "Garcia", "Tanaka",
    "Silva", "Ali", "Johnson", "Martin", "Fernandez", "Okafor", "Petrov", "Kim", "Nguyen", "Schmidt",
)  # fmt: skip
ROUTES = (
    ("routes[0] (sales)", ("salesforce", "hubspot"), 70),
    ("routes[1] (support)", ("salesforce",), 20),
    ("default: all connectors", ("hubspot", "webhook"), 10),
)
ERRORS: dict[str, tuple[tuple[str, str, int, bool], ...]] = {  # message template, code, status, permanent?
    "salesforce": (
        ("HTTP 401 INVALID_SESSION_ID: Session expired or invalid", "INVALID_SESSION_ID", 401, True),
        ("HTTP 400 FIELD_CUSTOM_VALIDATION_EXCEPTION: Phone must be 10 digits on 00Q{id15}", "FIELD_CUSTOM_VALIDATION_EXCEPTION", 400, True),  # noqa: E501
        ("HTTP 400 DUPLICATE_VALUE: duplicate value found: Agni_Call_Id__c duplicates value on record with id: 00T{id15}", "DUPLICATE_VALUE", 400, True),  # noqa: E501
        ("HTTP 403 REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.", "REQUEST_LIMIT_EXCEEDED", 403, False),
        ("HTTP 503 Service Unavailable", "", 503, False),
        ("timeout after {secs} s", "", 0, False),
    ),
    "hubspot": (
        ("HTTP 429 You have reached your ten_secondly_rolling limit.", "RATE_LIMIT", 429, False),
        ("HTTP 400 PROPERTY_DOESNT_EXIST: Property \"agni_call_session_id\" does not exist", "VALIDATION_ERROR", 400, True),  # noqa: E501
        ("HTTP 409 Contact already exists. Existing ID: {num}", "CONFLICT", 409, True),
        ("HTTP 500 internal error, correlationId {uuid}", "", 500, False),
        ("HTTP 401 Authentication credentials not found.", "INVALID_AUTHENTICATION", 401, True),
    ),
    "webhook": (
        ("HTTP 502 Bad Gateway", "", 502, False),
        ("connection refused by {host}", "", 0, False),
        ("HTTP 410 endpoint {host} is gone", "", 410, True),
    ),
}  # fmt: skip
MAPPINGS = {"salesforce": "salesforce_task.yaml", "hubspot": "hubspot_call.yaml", "webhook": "passthrough"}
COMPANY_LINES = tuple(f"+1888555{i:04d}" for i in range(20))


def _weighted(pairs: Any) -> tuple[list[Any], list[float]]:
    values = [p[0] for p in pairs]
    cumulative, total = [], 0.0
    for p in pairs:
        total += p[-1]
        cumulative.append(total)
    return values, cumulative


@dataclass
class Chunk:
    """The rows of a range of calls, per table, in TABLES' column order."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: {name: [] for name in TABLES})


class Generator:
    """Makes the rows of calls [start, stop) of an N-call log; deterministic per call index."""

    def __init__(self, total: int, *, compress: bool, seed: int = 7) -> None:
        self.total = total
        self.compress = compress
        self.seed = seed
        self._zstd = zstandard.ZstdCompressor(level=3)  # what LogWriter.encode_payload does on SQLite
        self._encode = msgspec.json.Encoder().encode
        self._sentences = sentences()
        rng = random.Random(seed)
        names = [f"{f} {l}" for f in FIRST for l in LAST]  # noqa: E741
        rng.shuffle(names)
        agents = names[:150]
        self.agents = _weighted([(a, 1 / (rank + 1) ** 0.8) for rank, a in enumerate(agents)])
        self.dispositions = _weighted(DISPOSITIONS)
        self.routes = _weighted([(r[:2], r[2]) for r in ROUTES])
        self.stats: dict[tuple[str, int], dict[str, Any]] = {}
        self.attempt_id = 0

    # -- one call -------------------------------------------------------------------------
    def _pick(self, rng: random.Random, table: tuple[list[Any], list[float]]) -> Any:
        values, cumulative = table
        return values[bisect.bisect_left(cumulative, rng.random() * cumulative[-1])]

    def customer(self, i: int) -> int:
        """The customer of call i: two in three calls are someone's first, the rest someone calling again."""
        rng = random.Random(self.seed * 1_000_003 + i)
        return i if i < 10 or rng.random() < 0.67 else rng.randrange(i)

    @staticmethod
    def phone_of(customer: int) -> str:
        area = 201 + customer % 780
        return f"+1{area}{(customer * 7919 + 1_234_567) % 10_000_000:07d}"

    @staticmethod
    def email_of(customer: int) -> str | None:
        if customer % 10 == 9:
            return None
        first, last = FIRST[customer % len(FIRST)], LAST[(customer // len(FIRST)) % len(LAST)]
        return f"{first}.{last}{customer}@example.com".lower()

    def received_at(self, i: int) -> int:
        return T_END - SPAN_MS + (i * SPAN_MS) // self.total

    def call(self, i: int, chunk: Chunk) -> bytes:
        """Append call i's rows to `chunk`; returns its raw payload (for the self-check)."""
        rng = random.Random(self.seed * 7_919 + i)
        call_id = i + 1
        received = self.received_at(i) + rng.randrange(0, max(1, SPAN_MS // self.total))
        session = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        customer = self.customer(i)
        phone, email = self.phone_of(customer), self.email_of(customer)
        line = COMPANY_LINES[rng.randrange(len(COMPANY_LINES))]
        outbound = rng.random() < 0.6
        agent = self._pick(rng, self.agents)
        disposition = self._pick(rng, self.dispositions)
        topic = TOPICS[min(len(TOPICS) - 1, int(rng.paretovariate(1.2)) - 1)]
        summary = f"Customer called about {topic}. " + " ".join(
            rng.choice(self._sentences) for _ in range(rng.randint(1, 2))
        )
        next_steps = NEXT_STEPS[rng.randrange(len(NEXT_STEPS))]
        duration = rng.randint(15, 1800)
        started_s = received // 1000 - duration - 5
        started_iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_s))
        name = f"{FIRST[customer % len(FIRST)]} {LAST[(customer // len(FIRST)) % len(LAST)]}"
        sentiment = ("positive", "neutral", "negative")[rng.choices((0, 1, 2), (5, 3, 2))[0]]
        call_status = "completed" if rng.random() < 0.9 else rng.choice(("no_answer", "voicemail", "busy"))
        data = {
            "campaign_id": "019d2a1b-4c5e-7f8a-9b0c-1d2e3f4a5b6c",
            "contact_id": f"c-{customer}",
            "phone": phone,
            "status": call_status,
            "duration_sec": duration,
            "call_session_id": session,
            "attempt": 1,
            "summary": summary,
            "recording_url": f"https://storage.agniai.com/rec/{session}.mp3",
            "caller_number": line if outbound else phone,
            "callee_number": phone if outbound else line,
            "caller_name": name,
            "caller_email": email,
            "agent_name": agent,
            "channel": "voice",
            "disconnect_reason": "customer_hangup",
            "cost_total": round(duration * 0.0035, 2),
            "call_latency_ms": rng.randint(90, 400),
            "started_at": started_iso,
            "ended_at": started_iso,
            "created_at": started_iso,
            "post_call_analysis": {
                "sentiment": sentiment,
                "disposition": disposition,
                "goals_met": rng.random() < 0.6,
                "next_steps": next_steps,
            },
            "transcripts": [
                {
                    "id": f"t-{n:03d}",
                    "timestamp_ms": n * 4100,
                    "role": "agent" if n % 2 else "user",
                    "message": {"content": rng.choice(self._sentences), "format": "text"},
                    "created_at": started_iso,
                }
                for n in range(1, rng.randint(4, 12))
            ],
        }
        body = self._encode({"event": "call.completed", "org_id": ORG, "data": data})
        route, connectors = self._pick(rng, self.routes)
        statuses = self._deliveries(rng, chunk, call_id, received, route, connectors, session)
        stored = self._zstd.compress(body) if self.compress else body
        updated = max([received, *(d[4] for d in chunk.rows["deliveries"][-len(connectors) :])])
        chunk.rows["calls"].append(
            (
                call_id, session, ORG, received, updated, f"203.0.113.{rng.randrange(1, 255)}", route,
                json.dumps(list(connectors)), worst_status(statuses), f"{received}-0", stored,
                "zstd" if self.compress else "json", len(body), phone, name, email, agent,
                "outbound" if outbound else "inbound", disposition, sentiment, call_status, duration,
                started_s * 1000, summary, next_steps,
            )
        )  # fmt: skip
        parties = {("phone", phone), ("phone", line)} | ({("email", email)} if email else set())
        chunk.rows["parties"].extend((call_id, kind, value, received) for kind, value in sorted(parties))
        return body

    def _deliveries(
        self, rng: random.Random, chunk: Chunk, call_id: int, received: int, route: str, connectors: Any, session: str
    ) -> list[str]:
        age = T_END - received
        self.attempt_id += 1
        detail = {"org_id": ORG, "source_ip": "203.0.113.9", "route": route, "connectors": list(connectors)}
        chunk.rows["attempts"].append(
            (self.attempt_id, call_id, received, "received", None, None, None, None, None, None, None, None, None,
             json.dumps(detail))
        )  # fmt: skip
        statuses = []
        for connector in connectors:
            roll = rng.random()
            if age < 10 * 60_000 and roll < 0.5:
                status = "pending"
            elif roll < 0.02:
                status = "dead"
            elif roll < 0.035 and age < 7 * 86_400_000:
                status = "failed"
            elif roll < 0.045:
                status = "skipped"
            else:
                status = "delivered"
            statuses.append(status)
            self._delivery(rng, chunk, call_id, received, connector, status, session)
        return statuses

    def _error(self, rng: random.Random, connector: str, final: bool) -> tuple[str, str, int]:
        choices = [e for e in ERRORS[connector] if e[3] or not final] if final else list(ERRORS[connector])
        template, code, status, _ = choices[min(len(choices) - 1, int(rng.paretovariate(1.5)) - 1)]
        message = template.format(
            id15=f"{rng.getrandbits(60):015X}"[:15],
            num=rng.randrange(10**6, 10**8),
            uuid=uuid.UUID(int=rng.getrandbits(128), version=4),
            secs=rng.choice((10.0, 30.0)),
            host=f"hooks{rng.randrange(3)}.example.com",
        )
        return message, code, status

    def _delivery(
        self, rng: random.Random, chunk: Chunk, call_id: int, received: int, connector: str, status: str, session: str
    ) -> None:
        mapping = MAPPINGS[connector]
        digest = f"{rng.getrandbits(48):012x}" if connector != "webhook" else None
        t = received
        attempts = 0
        error: tuple[str, str, int] | None = None
        failures = {"delivered": 1 if rng.random() < 0.05 else 0, "skipped": 0, "pending": 0}.get(
            status, rng.randint(1, 4)
        )
        for _ in range(failures):  # retried attempts (and, for a dead letter, the last one)
            attempts += 1
            t += rng.randint(200, 60_000) * attempts
            error = self._error(rng, connector, final=status == "dead" and attempts == failures)
            outcome = "dead" if status == "dead" and attempts == failures else "retry"
            self._attempt(chunk, call_id, t, connector, attempts, outcome, error, mapping, digest, None)
            self._count(connector, t, outcome, 0)
        finished = latency = None
        match = None
        skipped = ""
        if status in ("delivered", "skipped"):
            attempts += 1
            t += rng.randint(80, 2500)
            finished, latency = t, t - received
            match = f"Contact by {'email' if rng.random() < 0.6 else 'phone'}" if status == "delivered" else None
            skipped = "no contact matched (on_missing: skip)" if status == "skipped" else ""
            detail: dict[str, Any] = {"match": match} if match else {"skipped": skipped}
            if status == "delivered":
                records = self._records(rng, chunk, call_id, connector, t)
                detail = {"records": records, **detail}
            self._attempt(chunk, call_id, t, connector, attempts, status, None, mapping, digest, detail)
            self._count(connector, t, status, latency)
            error = None
        code = error[1] or None if error else None
        http = (error[2] or None) if error else None
        chunk.rows["deliveries"].append(
            (call_id, connector, status, attempts, t, received, finished, latency, error[0] if error else None,
             error_group(error[0]) if error else None, code, http, match or skipped or None,
             mapping, digest)
        )  # fmt: skip
        if status == "dead" and error:
            chunk.rows["dead_letters"].append(
                (call_id, connector, t, attempts, error[0], error_group(error[0]), code, http)
            )

    def _records(self, rng: random.Random, chunk: Chunk, call_id: int, connector: str, t: int) -> dict[str, str]:
        records: dict[str, str] = {}
        if connector == "salesforce":
            records["Task"] = f"00T{rng.getrandbits(72):018X}"[:18]
            if rng.random() < 0.3:
                records["follow_up"] = f"00T{rng.getrandbits(72):018X}"[:18]
        elif connector == "hubspot":
            records["calls"] = str(rng.randrange(10**10, 10**11))
            if rng.random() < 0.2:
                records["contacts"] = str(rng.randrange(10**8, 10**9))
        else:
            records["http_status"] = "200"
        for kind, crm_id in records.items():
            lightning = f"https://acme.lightning.force.com/lightning/r/Task/{crm_id}/view"
            url = lightning if connector == "salesforce" else None
            chunk.rows["records"].append((call_id, connector, kind, crm_id, url, t))
        return records

    def _attempt(
        self,
        chunk: Chunk,
        call_id: int,
        t: int,
        connector: str,
        attempt: int,
        outcome: str,
        error: tuple[str, str, int] | None,
        mapping: str,
        digest: str | None,
        detail: dict[str, Any] | None,
    ) -> None:
        self.attempt_id += 1
        chunk.rows["attempts"].append(
            (self.attempt_id, call_id, t, "attempt", connector, attempt, outcome,
             (error[2] or None) if error else 200, (error[1] or None) if error else None, error[0] if error else None,
             round(80 + (t % 900) * 1.3, 1), mapping, digest, json.dumps(detail) if detail else None)
        )  # fmt: skip

    def _count(self, connector: str, t: int, outcome: str, latency: int) -> None:
        column = {"delivered": "delivered", "skipped": "skipped", "retry": "retried", "dead": "dead"}[outcome]
        hour = t - t % 3_600_000
        row = self.stats.setdefault(
            (connector, hour),
            {"delivered": 0, "skipped": 0, "retried": 0, "dead": 0, "latency_sum_ms": 0,
             "buckets": [0] * (len(LATENCY_BUCKETS_MS) + 1)},
        )  # fmt: skip
        row[column] += 1
        if outcome == "delivered":
            row["latency_sum_ms"] += latency
            row["buckets"][bisect.bisect_left(LATENCY_BUCKETS_MS, latency)] += 1

    # -- ranges ---------------------------------------------------------------------------
    def chunks(self, size: int = 20_000) -> Iterator[tuple[int, Chunk]]:
        """(calls so far, rows) per `size` calls; the first calls are checked against `facts_of`."""
        for start in range(0, self.total, size):
            chunk = Chunk()
            for i in range(start, min(start + size, self.total)):
                body = self.call(i, chunk)
                if i < 200:
                    self._self_check(body, chunk.rows["calls"][-1])
            yield min(start + size, self.total), chunk

    @staticmethod
    def _self_check(body: bytes, row: tuple[Any, ...]) -> None:
        facts = facts_of(body, "US").columns()
        columns = dict(zip(TABLES["calls"], row, strict=True))
        wrong = {k: (v, columns[k]) for k, v in facts.items() if columns[k] != v}
        if wrong:
            raise AssertionError(f"generated facts differ from facts_of: {wrong}")

    def stats_rows(self) -> list[tuple[Any, ...]]:
        return [
            (connector, hour, r["delivered"], r["skipped"], r["retried"], r["dead"], r["latency_sum_ms"],
             json.dumps(r["buckets"]))
            for (connector, hour), r in sorted(self.stats.items())
        ]  # fmt: skip


STATS_COLUMNS = (
    "connector", "hour", "delivered", "skipped", "retried", "dead", "latency_sum_ms", "latency_buckets",
)  # fmt: skip
