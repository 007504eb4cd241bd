"""The worker process: builds the runtime (Redis, broker, connectors, pipeline) and runs Dramatiq.

The broker is configured deliberately rather than with Dramatiq's defaults
(see :mod:`bridge.broker`): retries wait in Redis, not in worker memory; a dead
worker's messages come back right after `worker.heartbeat_timeout_seconds`
(default 30 s), because every worker runs the dead-worker sweep on each queue
every 2 s (:mod:`bridge.housekeeping`) instead of on a random one-in-N
command; and SIGTERM gives in-flight deliveries `worker.shutdown_timeout_seconds`
to finish while prefetched messages go back to the queue. Each connector has
its own queue, so one CRM's backlog or backoff never delays the others.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import CurrentMessage, Middleware, Retries

from bridge.broker import BridgeBroker
from bridge.circuit import CircuitBreaker
from bridge.connector import Connector, Services
from bridge.db.drain import DrainLoop, LogDrain
from bridge.db.engine import log_engine, safe_url
from bridge.db.importer import import_from_redis, legacy_log_present
from bridge.db.migrate import ensure_schema
from bridge.db.prune import prune
from bridge.db.writer import LogWriter
from bridge.housekeeping import Duty, Housekeeping
from bridge.jobs import DeadLetters, build_actor
from bridge.keys import Keys
from bridge.mapping import MappingLoader
from bridge.metrics import DeliveryRecorder
from bridge.pipeline import Pipeline
from bridge.redaction import Redactor
from bridge.registry import build_connectors
from bridge.settings import Settings
from bridge.store import CallStore

__all__ = ["WorkerRuntime", "run_worker"]

log = logging.getLogger("bridge.worker")
DAY = 86400
MAINTENANCE_PERIOD_SECONDS = 2.0


def lease_seconds(heartbeat_timeout: float) -> float:
    """How long a delivery's lease lasts between renewals: well inside the heartbeat timeout, so by the time
    a dead worker's message is redelivered (after that timeout) its lease has run out."""
    return max(3.0, min(15.0, heartbeat_timeout / 2))


@dataclass
class WorkerRuntime:
    settings: Settings
    client: redis.Redis
    keys: Keys
    store: CallStore
    connectors: dict[str, Connector]
    pipeline: Pipeline
    broker: BridgeBroker
    log_writer: DrainLoop

    @classmethod
    def build(cls, settings: Settings, redis_url: str) -> WorkerRuntime:
        # Every worker thread, Dramatiq consumer and batch sender may hold a connection at once; a blocking pool
        # makes a momentary shortage wait instead of failing a delivery ("Too many connections").
        pool = redis.BlockingConnectionPool.from_url(
            redis_url,
            max_connections=2 * settings.worker.threads + 4 * len(settings.connectors) + 32,
            timeout=30,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        client = redis.Redis(connection_pool=pool)
        keys = Keys(settings.redis.prefix)
        store = CallStore(
            client,
            keys,
            retention_seconds=settings.retention_days * DAY,
            lease_seconds=lease_seconds(settings.worker.heartbeat_timeout_seconds),
        )
        services = Services(
            redis=client,
            prefix=settings.redis.prefix,
            delivery=settings.delivery,
            resolve_path=settings.resolve,
        )
        loader = MappingLoader(settings.resolve(settings.mappings_dir))
        connectors = build_connectors(settings, services, loader)
        delivery = settings.delivery
        pipeline = Pipeline(
            store=store,
            connectors=connectors,
            recorder=DeliveryRecorder(client, keys),
            circuit=CircuitBreaker(
                client,
                keys,
                threshold=delivery.circuit_failures,
                cooldown=delivery.circuit_cooldown_seconds,
                max_cooldown=delivery.circuit_max_cooldown_seconds,
            ),
            redactor=Redactor(settings.redaction, source=settings.config_path) if settings.redaction.enabled else None,
            mappings=loader,
        )
        worker = settings.worker
        broker = BridgeBroker(
            keys=keys,
            client=client,
            heartbeat_timeout=int(worker.heartbeat_timeout_seconds * 1000),
            maintenance_chance=worker.maintenance_chance,
        )
        broker.add_middleware(
            Housekeeping(
                [
                    Duty("releasing due retries", 0.25, broker.move_due),
                    Duty("renewing delivery leases", store.lease_ms / 3000, lambda: _renew(store)),
                    Duty("recovering dead workers' jobs", MAINTENANCE_PERIOD_SECONDS, broker.maintain),
                    Duty("requeueing orphaned jobs", 5.0, broker.sweep),
                ]
            )
        )
        broker.add_middleware(CurrentMessage())
        # `after_*` hooks run in reverse order: placed before Retries, DeadLetters sees its verdict.
        broker.add_middleware(DeadLetters(pipeline), before=Retries)
        build_actor(broker, pipeline, settings.delivery)
        for name in connectors:
            broker.declare_queue(keys.queue(name))
        engine = log_engine(settings)
        drain = LogDrain(
            client,
            keys,
            LogWriter(engine, region=settings.database.phone_region),
            batch=settings.database.batch_size,
        )
        # The schema is brought up to date (and an older version's log imported) by the log writer thread,
        # retried until the database answers: deliveries never wait for the database (a newer schema than
        # this code stops only the log).
        def prepare() -> None:
            ensure_schema(engine)
            if legacy_log_present(client, keys):  # calls an older version logged in Redis
                import_from_redis(client, keys, engine, region=settings.database.phone_region)

        def prune_old() -> None:
            removed = prune(engine, int((time.time() - settings.retention_days * DAY) * 1000))
            if removed:
                log.info("call log: %d call(s) older than %g days pruned", removed, settings.retention_days)

        log_writer = DrainLoop(drain, prepare=prepare, maintain=prune_old)
        log.info("call log: %s", safe_url(engine))
        return cls(settings, client, keys, store, connectors, pipeline, broker, log_writer)

    def close(self) -> None:
        for connector in self.connectors.values():
            try:
                connector.close()
            except Exception:
                log.exception("closing connector %s failed", connector.name)
        self.broker.close()
        self.log_writer.drain.writer.engine.dispose()


class InFlight(Middleware):
    """Tracks the messages being processed, so a shutdown that runs out of time can requeue them at once.

    Without this, a delivery still running when `shutdown_timeout_seconds` expires would come back only
    after the heartbeat timeout, when another worker notices this one is gone.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: dict[str, Any] = {}

    def before_process_message(self, broker: Any, message: Any) -> None:
        with self._lock:
            self._messages[message.message_id] = message

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None, exception: Any = None) -> None:
        with self._lock:
            self._messages.pop(message.message_id, None)

    after_skip_message = after_process_message

    def requeue_all(self, broker: BridgeBroker) -> int:
        with self._lock:
            messages, self._messages = list(self._messages.values()), {}
        for message in messages:
            broker.do_requeue(message.queue_name, message.options["redis_message_id"])
        return len(messages)


def _renew(store: CallStore) -> None:
    for key in store.renew_held():
        log.warning("lost the lease %s (expired while the delivery ran; a redelivery may run beside it)", key)


def run_worker(settings: Settings, redis_url: str, *, stop: threading.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set), then shut down gracefully."""
    runtime = WorkerRuntime.build(settings, redis_url)
    stop = stop or threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; finishing in-flight deliveries", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    in_flight = InFlight()
    runtime.broker.add_middleware(in_flight)
    worker = dramatiq.Worker(runtime.broker, worker_threads=settings.worker.threads, worker_timeout=500)
    worker.start()
    runtime.log_writer.start()
    log.info(
        "worker started: %d thread(s), connectors: %s",
        settings.worker.threads,
        ", ".join(runtime.connectors) or "none",
    )
    try:
        stop.wait()
    finally:
        worker.stop(timeout=int(settings.worker.shutdown_timeout_seconds * 1000))
        unfinished = in_flight.requeue_all(runtime.broker)
        if unfinished:
            runtime.store.release_held()
            log.warning("%d delivery(ies) did not finish in time and were put back in the queue", unfinished)
        runtime.log_writer.stop()
        runtime.close()
        log.info("worker stopped")
