"""The soak's supervisor and fault injector: runs the bridge's processes, strikes them, restarts them.

A `Cluster` is 2 workers, 1–2 APIs, one append-only Redis and the receiver standing in for the CRM. It
plays a planned fault at its time, restarts whatever exited (as systemd or Kubernetes would), and writes
down every fault with the window in which it acted, which the verdict uses to explain duplicates:

    sigkill      instant: [signal, signal]
    sigterm      [signal, exit]; `unclean` when the worker's shutdown timeout expired (it put deliveries back)
                 or the process exited non-zero
    sigstop      [SIGSTOP, SIGCONT] (or the SIGKILL that ended the pause)
    redis-kill   [SIGKILL, Redis answering again]
    crm-*        [start, end] of the receiver's 503s / 429s / resets / slow answers
    crash        a process that exited without being told to (a finding of its own)

Everything here runs on the test's main thread: EmbeddedRedis asks Linux to stop redis-server when the
*thread* that started it ends (PR_SET_PDEATHSIG), so Redis is (re)started from the one thread that lives
as long as the test. Pauses are ended by scheduled actions on the same thread, never by timers.
"""

from __future__ import annotations

import heapq
import itertools
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.embedded_redis import EmbeddedRedis, free_port
from tests.conftest import wait_for
from tests.fakes.httpserver import Fault
from tests.faults.harness import Bridge, Receiver
from tests.faults.soak_plan import SLOW_ANSWER, WORKERS, FaultPlan

__all__ = ["Cluster", "FaultRecord"]

REQUEUED = "did not finish in time and were put back"
RESTART_DELAY = 0.3  # a supervisor's pause before it restarts an exited process
STOP_GRACE = 15.0  # beyond the shutdown timeout, how long a SIGTERMed process may take before it is SIGKILLed
CRM_FAULTS = {
    "crm-503": Fault(status=503, body=b"maintenance"),
    "crm-429": Fault(status=429, headers={"retry-after": "2"}, body=b"slow down"),
    "crm-reset": Fault(reset=True),
}


@dataclass
class FaultRecord:
    kind: str
    target: str
    start: float  # wall clock, like the receiver's arrival times
    end: float | None = None  # None while it lasts
    pid: int | None = None
    note: str = ""
    unclean: bool = False  # sigterm only: the worker gave up on deliveries (or died) instead of finishing them
    process: str = ""  # the process struck, named like its log (worker-3): what the receiver's writes name

    @property
    def explains_duplicates(self) -> bool:
        """Can this fault make a call be written twice? (The rule is spelled out in test_soak's docstring.)"""
        if self.kind == "redis-kill":
            return True
        if not self.target.startswith("worker"):
            return False
        return self.kind in ("sigkill", "sigstop", "crash") or (self.kind == "sigterm" and self.unclean)

    def describe(self, t0: float) -> str:
        end = "…" if self.end is None else f"{self.end - t0:6.1f}"
        pid = f" {self.process or 'pid'} ({self.pid})" if self.pid else ""
        mark = " *" if self.explains_duplicates else ""
        return f"{self.start - t0:6.1f} → {end}s  {self.target:<8} {self.kind}{pid}{mark}  {self.note}".rstrip()


@dataclass
class Slot:
    """One supervised process role (worker-0, api-1, …) and the process currently filling it."""

    name: str
    kind: str  # "api" | "worker"
    port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    restart_at: float = 0.0
    stopping: FaultRecord | None = None  # SIGTERM sent, exit not seen yet
    frozen: FaultRecord | None = None  # SIGSTOP sent, SIGCONT not yet
    killed: bool = False  # we SIGKILLed it: its exit is expected

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Cluster:
    bridge: Bridge
    redis: EmbeddedRedis
    receiver: Receiver
    apis: int
    shutdown_seconds: float
    timeline: list[FaultRecord] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)
    _actions: list[tuple[float, int, Callable[[], None]]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _redis_down: FaultRecord | None = None

    def __post_init__(self) -> None:
        ports = [self.bridge.port] + [free_port() for _ in range(self.apis - 1)]
        self.slots = [Slot(f"api-{i}", "api", port) for i, port in enumerate(ports)]
        self.slots += [Slot(f"worker-{i}", "worker") for i in range(WORKERS)]

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{slot.port}" for slot in self.slots if slot.kind == "api"]

    def start(self) -> None:
        for slot in self.slots:
            self._spawn(slot, note="")
        for url in self.api_urls:
            wait_for(lambda url=url: self.bridge.ready(url), timeout=30, message=f"the API at {url} to listen")

    # -- faults ---------------------------------------------------------------------------------
    def strike(self, fault: FaultPlan) -> None:
        now = time.time()
        if fault.target == "redis":
            self._kill_redis(now, fault.seconds)
        elif fault.kind == "crm-slow":
            self.receiver.slow_answers(fault.seconds, SLOW_ANSWER)
            self.timeline.append(
                FaultRecord(fault.kind, "crm", now, now + fault.seconds, note=f"answers {SLOW_ANSWER:.0f}s late")
            )
        elif fault.target == "crm":
            self.receiver.faults.fail_for(fault.seconds, CRM_FAULTS[fault.kind])
            self.timeline.append(FaultRecord(fault.kind, "crm", now, now + fault.seconds))
        else:
            self._signal(self._slot(fault.target), fault, now)

    def _signal(self, slot: Slot, fault: FaultPlan, now: float) -> None:
        process = slot.process
        busy = "not running" if not slot.alive else "frozen" if slot.frozen else "stopping" if slot.stopping else ""
        if process is None or not slot.alive or (busy and fault.kind != "sigkill"):
            self.timeline.append(FaultRecord(fault.kind, slot.name, now, now, note=f"skipped: {busy}"))
            return
        record = FaultRecord(fault.kind, slot.name, now, pid=process.pid, process=self._name(process))
        self.timeline.append(record)
        if fault.kind == "sigkill":
            slot.killed = True
            process.send_signal(signal.SIGKILL)
            record.end = now
            if slot.frozen:  # a kill ends the pause
                slot.frozen.end, slot.frozen = now, None
        elif fault.kind == "sigterm":
            process.send_signal(signal.SIGTERM)
            slot.stopping = record
        elif fault.kind == "sigstop":
            process.send_signal(signal.SIGSTOP)
            slot.frozen = record
            self._later(fault.seconds, lambda: self._resume(slot, process))
        else:
            raise ValueError(f"unknown fault kind {fault.kind!r} for {slot.name}")

    def _resume(self, slot: Slot, process: subprocess.Popen[bytes]) -> None:
        if slot.process is process and slot.frozen is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
            slot.frozen.end, slot.frozen = time.time(), None

    def _kill_redis(self, now: float, downtime: float) -> None:
        if self._redis_down is not None:
            self.timeline.append(FaultRecord("redis-kill", "redis", now, now, note="skipped: already down"))
            return
        pid = self.redis.process.pid if self.redis.process else None
        self.redis.kill()
        self._redis_down = FaultRecord("redis-kill", "redis", now, pid=pid)
        self.timeline.append(self._redis_down)
        self._later(downtime, self._restart_redis)

    def _restart_redis(self) -> None:
        if self._redis_down is None:
            return
        self.redis.start()  # on this (main) thread, see the module docstring
        self._redis_down.end, self._redis_down = time.time(), None

    # -- supervision ----------------------------------------------------------------------------
    def tick(self) -> None:
        """Run what is due (SIGCONTs, Redis restarts) and restart whatever exited."""
        now = time.time()
        while self._actions and self._actions[0][0] <= now:
            _, _, action = heapq.heappop(self._actions)
            action()
        for slot in self.slots:
            self._supervise(slot, time.time())

    def _supervise(self, slot: Slot, now: float) -> None:
        process = slot.process
        if process is None:
            if now >= slot.restart_at:
                self._spawn(slot, note="restarted")
            return
        code = process.poll()
        if code is None:
            if slot.stopping is not None and now > slot.stopping.start + self.shutdown_seconds + STOP_GRACE:
                # Like systemd's TimeoutStopSec: a process that ignores SIGTERM is killed.
                self.timeline.append(
                    FaultRecord(
                        "sigkill",
                        slot.name,
                        now,
                        now,
                        process.pid,
                        note="SIGTERM not honoured in time",
                        process=self._name(process),
                    )
                )
                slot.killed = True
                process.send_signal(signal.SIGKILL)
            return
        if slot.stopping is not None:
            record, slot.stopping = slot.stopping, None
            record.end = now
            requeued = REQUEUED in self._log(process)
            record.unclean = requeued or code not in (0, -signal.SIGTERM)
            record.note = f"exit {code}" + (", shutdown timeout expired: deliveries put back" if requeued else "")
        elif not slot.killed:
            tail = self._log(process).strip().splitlines()[-1:] or ["(empty log)"]
            note = f"exit {code}: {tail[0]}"
            self.timeline.append(
                FaultRecord("crash", slot.name, now, now, process.pid, note, process=self._name(process))
            )
        if slot.frozen is not None:
            slot.frozen.end, slot.frozen = now, None
        slot.process, slot.killed, slot.restart_at = None, False, now + RESTART_DELAY

    def _spawn(self, slot: Slot, *, note: str) -> None:
        slot.process = self.bridge.spawn(slot.kind, port=slot.port)
        if note:
            now = time.time()
            process = slot.process
            self.timeline.append(
                FaultRecord("start", slot.name, now, now, process.pid, note, process=self._name(process))
            )

    def restore(self, timeout: float = 60.0) -> None:
        """End every fault now: resume paused processes, bring Redis back, heal the CRM, restart the dead."""
        while self._actions:
            _, _, action = heapq.heappop(self._actions)
            action()
        self.receiver.faults.clear()
        self.receiver.slow_answers(0, 0)

        def healthy() -> bool:
            self.tick()
            return all(slot.alive and not slot.stopping for slot in self.slots) and all(
                self.bridge.ready(url) for url in self.api_urls
            )

        wait_for(healthy, timeout=timeout, interval=0.1, message="every process running again after the faults")

    # -- helpers ----------------------------------------------------------------------------------
    def _later(self, seconds: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._actions, (time.time() + seconds, next(self._seq), action))

    def _slot(self, name: str) -> Slot:
        return next(slot for slot in self.slots if slot.name == name)

    def _name(self, process: subprocess.Popen[bytes]) -> str:
        path = self.bridge.log_paths.get(process.pid)
        return path.stem if path else ""

    def _log(self, process: subprocess.Popen[bytes]) -> str:
        path = self.bridge.log_paths.get(process.pid)
        return path.read_text(errors="replace") if path and path.exists() else ""

    def describe(self, t0: float) -> str:
        lines = [record.describe(t0) for record in self.timeline]
        return "\n".join(lines) or "(no faults)"
