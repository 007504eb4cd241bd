"""The soak's verdict: nothing lost, the call log agrees with the receiver, every duplicate explained.

The call log is read the way an admin reads it: `agni-bridge calls list --json` (and `calls show <id>
--json` for the calls that went wrong), as subprocesses with AGNI_BRIDGE_REDIS_URL set.

The duplicate rule (test_soak's docstring says it in full): a call written k > 1 times is explained when at
least k - 1 of its writes each fall in the window of a fault that can lose a delivery's confirmation (see
`FaultRecord.explains_duplicates`) and that struck the process that made the write (each write names its
worker, see harness.PROCESS_HEADER): a write that landed at w and was answered at a was in flight from
w - SEND_SLACK (sent by a worker that may die before it arrives) to a + CONFIRM_SLACK (the done-marker
written right after the CRM's answer), and the fault's window [start, end] must overlap that. A Redis
outage explains a write by any worker when it lasted at least REDIS_MIN_OUTAGE and began before the
write's done-marker (within [w, a + CONFIRM_SLACK]).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from tests.faults.chaos import FaultRecord
from tests.faults.harness import Bridge, Receiver, Write

__all__ = ["Verdict", "call_log", "calls_show", "describe_write", "explain", "judge"]

SEND_SLACK = 2.0  # a request already on the wire when its worker died still lands this much later
CONFIRM_SLACK = 2.0  # from the CRM's answer to the done-marker, on a loaded machine
# A shorter Redis outage only delays the done-marker (the worker waits for Redis and then writes it); a longer
# one can expire the delivery's lease (max(3 s, heartbeat / 2): 3 s with the harness's 5 s heartbeat), so
# another worker may take the call over. Measured from the kill until Redis answers again.
REDIS_MIN_OUTAGE = 3.0
BAD_STATES = ("pending", "failed", "dead")


def _cli(bridge: Bridge, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "--config", str(bridge.config), "calls", *args],
        env=bridge.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def call_log(bridge: Bridge) -> dict[str, dict[str, Any]]:
    """Every call the log knows, by id, as `calls list --json` reports it (page after page)."""
    reports: dict[str, dict[str, Any]] = {}
    cursor: list[str] = []
    while True:
        done = _cli(bridge, "list", "--json", "--limit", "1000", *cursor)
        if done.returncode != 0:
            raise AssertionError(f"`agni-bridge calls list --json` failed ({done.returncode}): {done.stderr[-2000:]}")
        page = json.loads(done.stdout)
        reports.update((report["call_session_id"], report) for report in page["calls"])
        if not page.get("next_cursor"):
            return reports
        cursor = ["--cursor", page["next_cursor"]]


def calls_show(bridge: Bridge, call_id: str) -> str:
    done = _cli(bridge, "show", call_id, "--json")
    return done.stdout.strip() or done.stderr.strip()


def explain(writes: list[Write], faults: list[FaultRecord]) -> list[tuple[Write, FaultRecord]] | None:
    """(write, fault) for each explained write of one call; None when too few writes are explained."""
    found = []
    for write in writes:
        overlapping = [fault for fault in faults if _explains(fault, write)]
        if overlapping:  # name the nearest one: the report reads better, the verdict is the same
            found.append((write, min(overlapping, key=lambda fault: _distance(write.arrived, fault))))
    return found if len(found) >= len(writes) - 1 else None


def _explains(fault: FaultRecord, write: Write) -> bool:
    """Could `fault` have lost the confirmation of `write`?"""
    end = fault.end if fault.end is not None else float("inf")
    answered = write.answered if write.answered is not None else write.arrived
    if not fault.explains_duplicates or fault.start > answered + CONFIRM_SLACK:
        return False
    if fault.target == "redis":  # any worker's done-marker; the write itself happened before the outage
        return end >= write.arrived and end - fault.start >= REDIS_MIN_OUTAGE
    return end >= write.arrived - SEND_SLACK and (not write.sender or fault.process == write.sender)


def _distance(written: float, fault: FaultRecord) -> float:
    end = fault.end if fault.end is not None else written
    return max(0.0, fault.start - written, written - end)


@dataclass
class Verdict:
    sent: list[str]
    accepted: set[str]  # calls the API answered 200 for
    never_accepted: dict[str, str]  # call -> why the sender gave up
    lost: dict[str, str]  # accepted, never reached the receiver -> what the log says
    log_wrong: dict[str, str]  # call -> what the log says where the receiver holds the record
    log_bad: dict[str, str]  # any call the log calls pending / failed / dead
    stray: list[str]  # the receiver holds a call nobody was told was accepted
    explained: dict[str, list[tuple[Write, FaultRecord]]] = field(default_factory=dict)
    unexplained: dict[str, list[Write]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (
            self.never_accepted or self.lost or self.log_wrong or self.log_bad or self.stray or self.unexplained
        )

    def problem_calls(self) -> list[str]:
        ordered = [*self.lost, *self.log_wrong, *self.log_bad, *self.unexplained, *self.never_accepted]
        return list(dict.fromkeys(ordered))

    def summary(self, t0: float) -> str:
        lines = [
            f"{len(self.sent)} calls sent, {len(self.accepted)} accepted (200), "
            f"{len(self.explained) + len(self.unexplained)} written more than once "
            f"({len(self.explained)} explained by a fault, {len(self.unexplained)} not)"
        ]
        sections = [
            ("never accepted (the sender gave up)", self.never_accepted),
            ("LOST: answered 200, never reached the receiver", self.lost),
            ("the receiver holds the record but the log says otherwise", self.log_wrong),
            ("the log says pending/failed/dead", self.log_bad),
            ("the receiver holds calls never accepted", {c: "" for c in self.stray}),
            (
                "UNEXPLAINED duplicates (writes: time by process)",
                {c: ", ".join(describe_write(w, t0) for w in ws) for c, ws in self.unexplained.items()},
            ),
        ]
        for title, items in sections:
            if items:
                lines.append(f"{title}: {len(items)}")
                lines += [f"  {call} {detail}".rstrip() for call, detail in sorted(items.items())[:40]]
        for call, pairs in sorted(self.explained.items())[:40]:
            reasons = "; ".join(
                f"write {describe_write(w, t0)}: {f.process or f.target} {f.kind} at +{f.start - t0:.1f}s"
                for w, f in pairs
            )
            lines.append(f"  duplicate {call}: {reasons}")
        return "\n".join(lines)


def judge(
    sent: list[str],
    accepted: set[str],
    never_accepted: dict[str, str],
    receiver: Receiver,
    log: dict[str, dict[str, Any]],
    faults: list[FaultRecord],
) -> Verdict:
    with receiver.lock:
        writes = {key.removeprefix("msg_"): list(landed) for key, landed in receiver.landed.items()}
    held = set(writes)
    verdict = Verdict(
        sent=sent,
        accepted=accepted,
        never_accepted=never_accepted,
        lost={c: f"(the log says {_state(log.get(c))})" for c in sorted(accepted - held)},
        log_wrong={c: _state(log.get(c)) for c in sorted(held) if _state(log.get(c)) != "delivered"},
        log_bad={c: _state(r) for c, r in sorted(log.items()) if r["status"] in BAD_STATES},
        stray=sorted(held - accepted),
    )
    for call, made in sorted(writes.items()):
        if len(made) < 2:
            continue
        reasons = explain(made, faults)
        if reasons is None:
            verdict.unexplained[call] = made
        else:
            verdict.explained[call] = reasons
    return verdict


def describe_write(write: Write, t0: float) -> str:
    answered = (
        f" (answered +{write.answered - t0:.1f}s)" if write.answered and write.answered - write.arrived > 1 else ""
    )
    return f"+{write.arrived - t0:.1f}s by {write.sender or '?'}{answered}"


def _state(report: dict[str, Any] | None) -> str:
    if report is None:
        return "absent from the log"
    states = {c["connector"]: c["status"] for c in report.get("connectors", [])}
    detail = ", ".join(f"{name}={status}" for name, status in states.items())
    return report["status"] if report["status"] == "delivered" else f"{report['status']} ({detail})"
