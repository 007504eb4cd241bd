"""A worker's background duties, each on its own period, in one thread.

* release scheduled retries and deferrals whose time has come (:meth:`BridgeBroker.move_due`), every 0.25 s;
* renew the leases of the deliveries this process is running (:meth:`CallStore.renew_held`), every third
  of a lease, so a live delivery keeps its call and a dead worker's lease runs out within seconds;
* run Dramatiq's dead-worker recovery on every queue (:meth:`BridgeBroker.maintain`), every 2 s, so a
  killed worker's calls come back right after the heartbeat timeout;
* requeue messages this process fetched and no longer holds (:meth:`BridgeBroker.sweep`), every 5 s.

A duty that fails (Redis is down) is logged at most once a minute and tried again next period; the thread
itself never dies. It starts with the Dramatiq worker and stops before it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dramatiq.middleware import Middleware

__all__ = ["Duty", "Housekeeping"]

log = logging.getLogger("bridge.housekeeping")


@dataclass
class Duty:
    name: str
    period: float
    run: Callable[[], Any]
    due: float = 0.0
    last_warning: float = field(default=-1e9)


class Housekeeping(Middleware):
    """Runs `duties` on a daemon thread from worker boot to worker shutdown."""

    def __init__(self, duties: list[Duty]) -> None:
        self.duties = duties
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="bridge-housekeeping", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for duty in self.duties:
                if now >= duty.due:
                    duty.due = now + duty.period
                    self._run(duty)
            next_due = min(duty.due for duty in self.duties) if self.duties else now + 1
            self._stop.wait(max(0.0, next_due - time.monotonic()))

    @staticmethod
    def _run(duty: Duty) -> None:
        try:
            duty.run()
        except Exception as exc:
            now = time.monotonic()
            if now - duty.last_warning >= 60:
                duty.last_warning = now
                log.warning("housekeeping: %s failed (%s: %s); retrying", duty.name, type(exc).__name__, exc)
