"""A randomized fault soak: calls flow in while processes, Redis and the CRM fail at random; then nothing is
lost, the call log tells the truth, and every duplicate write is explained by a fault.

The run is drawn from a seed (AGNI_SOAK_SEED replays one; it is printed at the start and in every failure):
2 workers, 1–2 APIs, an append-only Redis with appendfsync always, and a receiver that keeps one record per
webhook-id and counts and timestamps every write (each takes 150 ms, as a CRM across the internet does, so
kills land mid-write). An Agni-like sender sends the calls at a steady rate, plus re-sends of calls already
sent, and retries every non-200 answer until it gets a 200. Every few seconds one fault strikes
(tests/faults/soak_plan.py): SIGKILL, SIGTERM or SIGSTOP (SIGCONT after a random pause) of a worker or an
API; SIGKILL of Redis, restarted after a random downtime; a CRM that answers 503, 429 with Retry-After, or
resets connections for a while, so retries pile up in backoff; or a CRM that answers 4 s after each write
lands, often followed by a worker SIGTERM (a deploy while the CRM is slow: the 3 s shutdown timeout
expires with deliveries in flight). A supervisor restarts whatever exited. Then the faults stop,
everything runs again, and within a bound (what correct code needs: the heartbeat timeout, backoff and
lease are seconds here) every call must be delivered:

* 0 lost: every call the API answered 200 for reached the receiver;
* the log equals what the receiver saw: `agni-bridge calls list --json` says `delivered` for every call
  the receiver holds, and no call is `pending`, `failed` or `dead`;
* duplicates only where a fault explains them. The rule: a call written k > 1 times is explained when at
  least k - 1 of its writes each overlap an *eligible* fault that struck the worker process which made
  that write (every forwarded request names its process in a header), or struck Redis. A write that
  landed at w and was answered at a was in flight from w - 2 s (a request already on the wire when its
  worker died lands a little later) to a + 2 s (the done-marker follows the CRM's answer); it overlaps a
  fault whose window [start, end] meets that interval.
  Eligible faults are those that can lose the confirmation of a write that landed: a worker SIGKILL
  (window: the instant), a worker SIGTERM whose shutdown timeout expired so it put deliveries back, or that
  exited non-zero (window: signal to exit), a worker SIGSTOP (window: the pause; a worker frozen past its
  lease or heartbeat is presumed dead and its call redelivered), a worker that crashed on its own, and a
  Redis SIGKILL whose outage (kill until Redis answers again) lasted at least the delivery lease, 3 s
  here, and began between the write and its done-marker ([w, a + 2 s]): the done-marker waits for Redis,
  but a lease that ran out lets another worker take the call over. A Redis outage is shared by every
  worker, so it explains a write by any of them. API faults, CRM faults and graceful SIGTERMs never
  explain a second write: ingest dedupes atomically, the CRM faults answer before writing, and a graceful
  stop finishes what it started.

On failure the message has the seed, the phases' timings, the fault timeline, the lost / undelivered /
mislogged / duplicated calls with their `calls show` output, the broker's leftovers and the tail of every
process's log; the whole report is also written to soak-report.txt in the test's tmp_path. The short
variant runs in `make test` (~45 s); `--soak` runs the long one (600 calls, several minutes).
"""

from __future__ import annotations

import signal
import subprocess
import time
import traceback
from pathlib import Path

import pytest
import redis

from bridge.embedded_redis import EmbeddedRedis
from bridge.keys import Keys
from tests.conftest import wait_for
from tests.faults.chaos import Cluster
from tests.faults.harness import Agni, Bridge, Receiver, connector_yaml
from tests.faults.soak_plan import LONG, SHORT, Plan, Shape, make_plan, soak_seed
from tests.faults.soak_sender import Sender
from tests.faults.soak_verdict import BAD_STATES, Verdict, call_log, calls_show, describe_write, judge

CRM_LATENCY = 0.15  # each write takes this long, so a kill often lands while one is in flight
SHUTDOWN = 3.0  # the workers' shutdown timeout: short, so some SIGTERMs expire it mid-delivery
GIVE_UP = 200.0  # the sender's last call: its own give-up bound, plus room
SHOW_CALLS = 8  # `calls show` output for at most this many problem calls
LOG_TAIL_LINES = 12


class Soak:
    """One soak run: start everything, send and strike per the plan, restore, drain, judge, report."""

    def __init__(self, tmp_path: Path, plan: Plan) -> None:
        self.tmp = tmp_path
        self.plan = plan
        self.redis = EmbeddedRedis(tmp_path / "redis", appendonly=True, fsync="always")
        self.receiver = Receiver(delay=CRM_LATENCY)
        self.bridge: Bridge | None = None
        self.cluster: Cluster | None = None
        self.sender: Sender | None = None
        self.client: redis.Redis | None = None
        self.keys = Keys("agni")
        self.t0 = 0.0
        self.restored = 0.0
        self.settled_in_time = False
        self.unsettled: list[str] = []  # calls missing or mislogged when the drain bound ran out
        self.cli_error = ""  # the last failure of `calls list` while polling
        self.phases: list[tuple[str, float]] = []
        self.notes: list[str] = []

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> Verdict:
        started = time.time()
        self.redis.start()
        self.receiver.start()
        connector = connector_yaml("crm", f"{self.receiver.url}/in", tag_process=True)
        self.bridge = Bridge(self.tmp, self.redis.url, connector, shutdown=SHUTDOWN)
        self.cluster = Cluster(self.bridge, self.redis, self.receiver, apis=self.plan.apis, shutdown_seconds=SHUTDOWN)
        self.cluster.start()
        self.client = redis.Redis.from_url(self.redis.url, socket_timeout=10)
        urls = self.cluster.api_urls
        self.sender = Sender(Agni(urls[0], fallbacks=tuple(urls[1:]), timeout=5), self.plan)
        self._phase("start-up", started)

        self.t0 = time.time()
        self.sender.start(self.t0)
        self._chaos()
        self._phase("faults", self.t0)

        restoring = time.time()
        self.cluster.restore()
        wait_for(self._sent, timeout=GIVE_UP, interval=0.1, message="the sender to get a 200 for every call")
        self._phase("restore", restoring)

        self.restored = time.time()
        self._drain()
        return judge(
            sent=self.plan.call_ids,
            accepted=set(self.sender.accepted),
            never_accepted={c: why for c, why in self.sender.gave_up.items() if c not in self.sender.accepted},
            receiver=self.receiver,
            log=call_log(self.bridge),
            faults=self.cluster.timeline,
        )

    def _chaos(self) -> None:
        """Strike each planned fault at its time; the sleeps pace the faults, they synchronise nothing."""
        assert self.cluster is not None
        pending = list(self.plan.faults)
        while time.time() < self.t0 + self.plan.shape.seconds:
            while pending and time.time() >= self.t0 + pending[0].at:
                self.cluster.strike(pending.pop(0))
            self.cluster.tick()
            time.sleep(0.05)

    def _sent(self) -> bool:
        assert self.cluster is not None and self.sender is not None
        self.cluster.tick()
        return self.sender.finished

    def _drain(self) -> None:
        shape = self.plan.shape
        draining = time.time()
        try:
            wait_for(self._settled, timeout=shape.drain_seconds, interval=0.5, message="every call delivered")
        except AssertionError:
            self._phase("drain (bound exceeded)", draining)
            self._note_unsettled(f"after the {shape.drain_seconds:.0f}s bound")
            self._grace(shape.grace_seconds)
            return
        self.settled_in_time = True
        self._phase("drain", draining)
        quiet = time.time()
        try:  # nothing left that could still write: a late duplicate would show up now, not after the verdict
            wait_for(lambda: not self._backlog(dead=False), timeout=15, interval=0.5, message="the broker to empty")
        except AssertionError:
            self.notes.append(f"the broker still holds messages after every call was delivered: {self._backlog()}")
        self._phase("quiet", quiet)

    def _grace(self, seconds: float) -> None:
        """A failure already: watch a while longer, to tell calls that come late from calls that never come."""
        grace = time.time()
        try:
            wait_for(self._settled, timeout=seconds, interval=0.5, message="")
            self.notes.append(f"everything settled {time.time() - self.restored:.0f}s after the faults stopped")
        except AssertionError:
            self._note_unsettled(f"still, {seconds:.0f}s later")
        self._phase("grace (diagnosis only)", grace)

    def _settled(self) -> bool:
        assert self.cluster is not None and self.sender is not None
        self.cluster.tick()
        accepted = set(self.sender.accepted)
        if not accepted <= self.receiver.call_ids():
            return False  # the cheap check first: the CLI is a process start
        states = self._log_states()
        return all(states.get(c) == "delivered" for c in accepted) and not any(s in BAD_STATES for s in states.values())

    def _log_states(self) -> dict[str, str]:
        """call -> status, as `agni-bridge calls list --json` says; empty (and noted) when the CLI fails."""
        assert self.bridge is not None
        try:
            return {call: report["status"] for call, report in call_log(self.bridge).items()}
        except (AssertionError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            self.cli_error = f"{type(exc).__name__}: {exc}"
            return {}

    def _note_unsettled(self, when: str) -> None:
        assert self.sender is not None
        missing = sorted(set(self.sender.accepted) - self.receiver.call_ids())
        states = self._log_states()
        wrong = sorted(c for c in self.receiver.call_ids() if states.get(c) != "delivered")
        self.unsettled = list(dict.fromkeys([*self.unsettled, *missing, *wrong]))
        self.notes.append(
            f"{when}: {len(missing)} accepted call(s) not at the receiver {missing[:20]}; "
            f"{len(wrong)} at the receiver but not `delivered` in the log {wrong[:20]}; "
            f"broker leftovers {self._backlog()}"
        )

    def _backlog(self, *, dead: bool = True) -> dict[str, int]:
        """Messages still in the broker (queues, delayed, fetched-but-unacked; `dead`: and Dramatiq's own
        dead letters, .XQ), by Redis key."""
        assert self.client is not None
        found: dict[str, int] = {}
        for key in self.client.scan_iter(match=f"{self.keys.namespace}:*"):
            name = key.decode()
            if "__heartbeats__" in name or (".XQ" in name and not dead):
                continue
            kind = self.client.type(key).decode()
            size = {"hash": self.client.hlen, "set": self.client.scard, "list": self.client.llen}.get(kind)
            count = size(key) if size else self.client.zcard(key) if kind == "zset" else 0
            if count:
                found[name] = count
        return found

    def _phase(self, name: str, since: float) -> None:
        self.phases.append((name, time.time() - since))
        print(f"soak seed={self.plan.seed}: {name} took {time.time() - since:.1f}s", flush=True)

    # -- the report -------------------------------------------------------------------------------
    def report(self, verdict: Verdict | None, error: str = "") -> str:
        assert self.bridge is not None
        parts = [self.plan.headline()]
        parts.append("phases: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.phases))
        if error:
            parts.append(f"ERROR: {error}")
        parts += self.notes
        if self.cli_error:
            parts.append(f"`calls list` failed while polling: {self.cli_error}")
        if self.sender is not None:
            parts.append(f"sender: 200s {dict(self.sender.statuses)}, every answer {dict(self.sender.agni.answers)}")
        if verdict is not None:
            parts.append(verdict.summary(self.t0))
        if self.cluster is not None:
            parts.append("fault timeline (seconds after the first call; * = can explain a duplicate):")
            parts.append(self.cluster.describe(self.t0))
        problems = list(dict.fromkeys([*(verdict.problem_calls() if verdict else []), *self.unsettled]))
        for call in problems[:SHOW_CALLS]:
            writes = [describe_write(w, self.t0) for w in self.receiver.landed.get(f"msg_{call}", [])]
            parts.append(f"--- calls show {call} --json (receiver writes: {writes or 'none'})")
            parts.append(calls_show(self.bridge, call))
        parts.append("--- process logs (tails)")
        for path in sorted(self.bridge.logs.glob("*.log"), key=lambda p: p.stat().st_mtime):
            lines = path.read_text(errors="replace").strip().splitlines()
            if lines:
                parts.append(f"[{path.name}] ({len(lines)} lines)")
                parts += [f"  {line[:400]}" for line in lines[-LOG_TAIL_LINES:]]
        text = "\n".join(parts)
        (self.tmp / "soak-report.txt").write_text(text)
        return text

    def stop(self) -> None:
        if self.bridge is not None:
            for slot in self.cluster.slots if self.cluster else []:
                if slot.process is not None and slot.frozen is not None:
                    slot.process.send_signal(signal.SIGCONT)  # a frozen process cannot honour SIGTERM
            self.bridge.stop_all()
        if self.client is not None:
            self.client.close()
        self.receiver.stop()
        self.redis.stop()


def soak(tmp_path: Path, shape: Shape) -> None:
    plan = make_plan(soak_seed(), shape)
    print(plan.headline(), flush=True)
    print("planned faults:\n" + "\n".join(f.describe() for f in plan.faults), flush=True)
    run = Soak(tmp_path, plan)
    try:
        try:
            verdict = run.run()
        except AssertionError as exc:
            pytest.fail(run.report(None, str(exc)), pytrace=False)
        except Exception:  # a harness or CLI surprise still gets the seed, the timeline and the logs
            pytest.fail(run.report(None, traceback.format_exc()), pytrace=False)
        if not verdict.ok or not run.settled_in_time:
            pytest.fail(run.report(verdict), pytrace=False)
        print(run.report(verdict).split("--- process logs")[0], flush=True)
    finally:
        run.stop()


@pytest.mark.timeout(420)
def test_a_short_random_fault_soak_loses_nothing_logs_the_truth_and_explains_every_duplicate(tmp_path):
    soak(tmp_path, SHORT)


@pytest.mark.soak
@pytest.mark.timeout(1200)
def test_a_long_random_fault_soak_loses_nothing_logs_the_truth_and_explains_every_duplicate(tmp_path):
    soak(tmp_path, LONG)
