"""A soak run drawn from one seed: which calls are sent when, and which fault strikes what, when.

Everything random about a run is decided here, up front, by `random.Random(seed)`, so a seed replays the
same schedule of sends and faults (the machine's timing still differs from one run to the next, so a
replay is close, not identical). The seed comes from AGNI_SOAK_SEED, or is drawn at random and printed.
"""

from __future__ import annotations

import os
import random
import secrets
from dataclasses import dataclass

__all__ = ["LONG", "SHORT", "FaultPlan", "Plan", "Send", "Shape", "make_plan", "soak_seed"]

SEED_VARIABLE = "AGNI_SOAK_SEED"


@dataclass(frozen=True)
class Shape:
    """How big and how long a soak is."""

    calls: int
    seconds: float  # calls are sent, and faults strike, for this long
    fault_gap: tuple[float, float]  # seconds between two faults, drawn uniformly
    duplicate_share: float  # re-sends of calls already sent, as a share of `calls` (Agni's own retries)
    drain_seconds: float  # after the last fault: how long correct code may take to deliver everything
    grace_seconds: float  # on a failure only: how much longer to watch, to tell late calls from stranded ones


SHORT = Shape(calls=120, seconds=40, fault_gap=(3, 6), duplicate_share=0.15, drain_seconds=40, grace_seconds=60)
LONG = Shape(calls=600, seconds=300, fault_gap=(4, 8), duplicate_share=0.15, drain_seconds=60, grace_seconds=180)

# (kind, target role, weight): the faults a run draws from. Workers are struck most: they hold the state.
MENU: tuple[tuple[str, str, float], ...] = (
    ("sigkill", "worker", 3),
    ("sigterm", "worker", 2),
    ("sigstop", "worker", 2),
    ("sigkill", "api", 1),
    ("sigterm", "api", 1),
    ("sigstop", "api", 1),
    ("redis-kill", "redis", 3),
    ("crm-503", "crm", 1),
    ("crm-429", "crm", 1),
    ("crm-reset", "crm", 1),
    ("crm-slow", "crm", 1.5),
)
# A slow CRM answers this long after the write landed: past the workers' 3 s shutdown timeout, inside the
# 10 s HTTP timeout. Half the time a worker is SIGTERMed right after (a deploy while the CRM is slow), so
# shutdowns expire with deliveries in flight and those are put back.
SLOW_ANSWER = 4.0
DEPLOY_DURING_SLOW = 0.5
WORKERS = 2


@dataclass(frozen=True)
class Send:
    at: float  # seconds after the start
    call_id: str
    copy: bool  # a re-send of a call already sent


@dataclass(frozen=True)
class FaultPlan:
    at: float  # seconds after the start
    kind: str  # sigkill | sigterm | sigstop | redis-kill | crm-503 | crm-429 | crm-reset | crm-slow
    target: str  # worker-0, worker-1, api-0, api-1, redis or crm
    seconds: float = 0.0  # sigstop: the pause; redis-kill: the downtime; crm-*: how long the CRM misbehaves

    def describe(self) -> str:
        length = f" for {self.seconds:.1f}s" if self.seconds else ""
        return f"+{self.at:6.1f}s  {self.target:<8} {self.kind}{length}"


@dataclass(frozen=True)
class Plan:
    seed: int
    shape: Shape
    apis: int  # 1 or 2 API processes
    sends: tuple[Send, ...]
    faults: tuple[FaultPlan, ...]

    @property
    def call_ids(self) -> list[str]:
        return [s.call_id for s in self.sends if not s.copy]

    def headline(self) -> str:
        copies = sum(s.copy for s in self.sends)
        return (
            f"soak seed={self.seed} (replay: {SEED_VARIABLE}={self.seed}): {self.shape.calls} calls + {copies} "
            f"re-sends over {self.shape.seconds:.0f}s, {len(self.faults)} faults, {self.apis} API(s), "
            f"{WORKERS} workers"
        )


def soak_seed() -> int:
    """AGNI_SOAK_SEED when set (to replay a run), else a fresh one."""
    text = os.environ.get(SEED_VARIABLE, "").strip()
    if not text:
        return secrets.randbelow(2**31)
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{SEED_VARIABLE}={text!r}: the seed must be an integer") from None


def make_plan(seed: int, shape: Shape) -> Plan:
    rng = random.Random(seed)
    apis = rng.choice((1, 2))
    return Plan(seed, shape, apis, _sends(rng, seed, shape), _faults(rng, shape, apis))


def _sends(rng: random.Random, seed: int, shape: Shape) -> tuple[Send, ...]:
    # A steady rate over the run, and copies of calls already sent a little later (a sender's retries after
    # a lost answer, or its at-least-once redelivery): each copy must be answered "duplicate", never written.
    step = shape.seconds / shape.calls
    sends = [Send(i * step, f"soak{seed}-{i:04d}", copy=False) for i in range(shape.calls)]
    for _ in range(round(shape.calls * shape.duplicate_share)):
        original = rng.choice(sends[: max(1, len(sends) - 1)])
        at = min(shape.seconds, original.at + rng.uniform(0.1, 10.0))
        sends.append(Send(at, original.call_id, copy=True))
    return tuple(sorted(sends, key=lambda s: s.at))


def _faults(rng: random.Random, shape: Shape, apis: int) -> tuple[FaultPlan, ...]:
    faults = []
    at = rng.uniform(*shape.fault_gap) / 2  # the first fault strikes early: calls are already flowing
    weights = [weight for _, _, weight in MENU]
    while at < shape.seconds:
        kind, role, _ = rng.choices(MENU, weights=weights)[0]
        if role == "worker":
            target = f"worker-{rng.randrange(WORKERS)}"
        elif role == "api":
            target = f"api-{rng.randrange(apis)}"
        else:
            target = role
        faults.append(FaultPlan(round(at, 2), kind, target, round(_length(rng, kind, role), 2)))
        if kind == "crm-slow" and rng.random() < DEPLOY_DURING_SLOW:
            deploy = at + rng.uniform(0.5, 2.0)
            faults.append(FaultPlan(round(deploy, 2), "sigterm", f"worker-{rng.randrange(WORKERS)}"))
        at += rng.uniform(*shape.fault_gap)
    return tuple(faults)


def _length(rng: random.Random, kind: str, role: str) -> float:
    if kind == "sigstop":
        # Workers: either side of the 5 s heartbeat timeout, so some pauses make a worker look dead.
        return rng.uniform(1.0, 9.0) if role == "worker" else rng.uniform(1.0, 4.0)
    if kind == "redis-kill":
        return rng.uniform(0.5, 4.0)
    if kind.startswith("crm-"):
        return rng.uniform(2.0, 8.0)
    return 0.0
