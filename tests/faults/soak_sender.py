"""The soak's sender: a plan's calls at their planned times, each through Agni's retry-until-200 loop.

A thread paces the sends (its sleeps keep the rate, they synchronise nothing) and hands each one to a pool,
so a frozen API or a Redis outage holds up the calls caught in it, not the ones behind them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import payload_bytes
from tests.faults.harness import Agni
from tests.faults.soak_plan import Plan, Send

__all__ = ["Sender"]

GIVE_UP_AFTER = 150.0  # Agni retries for far longer; this only bounds a test that went badly wrong


class Sender:
    def __init__(self, agni: Agni, plan: Plan) -> None:
        self.agni = agni
        self.plan = plan
        self.accepted: dict[str, float] = {}  # call -> when the API first answered 200 (wall clock)
        self.statuses: Counter[str] = Counter()  # "accepted", "duplicate", … over every 200
        self.gave_up: dict[str, str] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="soak-sender", daemon=True)
        self._t0 = 0.0

    def start(self, t0: float) -> None:
        self._t0 = t0
        self._thread.start()

    @property
    def finished(self) -> bool:
        return not self._thread.is_alive()

    def _run(self) -> None:
        with ThreadPoolExecutor(64, thread_name_prefix="soak-send") as pool:
            for send in self.plan.sends:
                delay = self._t0 + send.at - time.time()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(self._send, send)

    def _send(self, send: Send) -> None:
        try:
            answer = self.agni.send(payload_bytes(call_session_id=send.call_id), give_up_after=GIVE_UP_AFTER)
        except AssertionError as exc:
            with self._lock:
                self.gave_up[send.call_id] = str(exc)
            return
        with self._lock:
            self.statuses[str(answer.get("status"))] += 1
            self.accepted.setdefault(send.call_id, time.time())
