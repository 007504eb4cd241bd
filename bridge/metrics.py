"""Prometheus metrics.

Two kinds, because the API and the workers are different processes (often on
different machines):

* Per process, in the API: `agni_bridge_webhooks_total{result}`.
* Cluster-wide, kept in Redis by the workers and read on each scrape:
  `agni_bridge_deliveries_total{connector,result}`,
  `agni_bridge_delivery_latency_seconds{connector}` (webhook received →
  delivered) and `agni_bridge_queue_depth{connector,queue}`. Any API
  replica shows the same totals: scrape one, or aggregate with `max`, not `sum`.
* From the call log: `agni_bridge_queue_depth{queue="dead"}` (dead letters awaiting
  an admin, read from the database, cached for a few seconds so scrapes stay cheap),
  and `agni_bridge_log_lag_events` / `agni_bridge_log_lag_seconds`: how far the
  database is behind the event stream (0 when it is up to date).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from bridge.errors import BridgeError
from bridge.keys import Keys

log = logging.getLogger("bridge.metrics")

__all__ = ["LATENCY_BUCKETS", "ApiMetrics", "DeliveryRecorder", "RedisCollector"]

DEAD_CACHE_SECONDS = 5.0
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 86400.0)


class ApiMetrics:
    """The API process's own registry (one per app, nothing global)."""

    def __init__(
        self, client: Any, keys: Keys, connectors: Iterable[str], queries: Any = None, lag: Any = None
    ) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter(
            "agni_bridge_webhooks", "Webhooks received, by result.", ["result"], registry=self.registry
        )
        self.registry.register(RedisCollector(client, keys, list(connectors), queries, lag))


class DeliveryRecorder:
    """Used by workers: counts a delivery outcome and its latency in Redis (one pipelined round trip)."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def record(self, connector: str, result: str, latency_seconds: float | None) -> None:
        """Best effort: a count lost to a Redis outage must never turn a delivery into a failure."""
        try:
            self._record(connector, result, latency_seconds)
        except (RedisError, OSError) as exc:
            log.warning("delivery metrics not recorded (Redis unavailable: %s)", type(exc).__name__)

    def _record(self, connector: str, result: str, latency_seconds: float | None) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(self.keys.metrics("deliveries"), f"{connector}|{result}", 1)
        if latency_seconds is not None and result == "delivered":
            hist = self.keys.metrics(f"latency:{connector}")
            for bound in LATENCY_BUCKETS:
                if latency_seconds <= bound:
                    pipe.hincrby(hist, str(bound), 1)
            pipe.hincrby(hist, "+Inf", 1)
            pipe.hincrbyfloat(hist, "sum", latency_seconds)
        pipe.execute()


class RedisCollector(Collector):
    """Reads the cluster-wide delivery counters and queue depths from Redis at scrape time."""

    def __init__(
        self, client: Any, keys: Keys, connectors: list[str], queries: Any = None, lag: Any = None
    ) -> None:
        self.client = client
        self.keys = keys
        self.connectors = connectors
        self.queries = queries
        self.lag = lag
        self._dead: tuple[float, dict[str, int]] = (0.0, {})

    def _dead_counts(self) -> dict[str, int] | None:
        """Dead letters per connector from the log database; None (series skipped) while it is unreachable."""
        if self.queries is None:
            return {}
        fetched, counts = self._dead
        if time.monotonic() - fetched > DEAD_CACHE_SECONDS:
            try:
                counts = self.queries.dead_count()
            except BridgeError as exc:
                log.warning("metrics: call log unavailable (%s); dead-letter counts skipped", exc)
                return None
            self._dead = (time.monotonic(), counts)
        return counts

    def collect(self) -> Iterator[Any]:
        deliveries = CounterMetricFamily(
            "agni_bridge_deliveries", "Deliveries by connector and result.", labels=["connector", "result"]
        )
        latency = HistogramMetricFamily(
            "agni_bridge_delivery_latency_seconds", "Webhook received to delivered.", labels=["connector"]
        )
        depth = GaugeMetricFamily(
            "agni_bridge_queue_depth", "Calls waiting per connector.", labels=["connector", "queue"]
        )
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.metrics("deliveries"))
        for name in self.connectors:
            queue = self.keys.queue(name)
            pipe.hgetall(self.keys.metrics(f"latency:{name}"))
            pipe.llen(self.keys.queue_list(queue))
            pipe.zcard(self.keys.queue_scheduled(queue))  # retries and deferrals waiting for their time
        try:
            replies = pipe.execute()
        except (RedisError, OSError) as exc:
            # The webhook counters stay visible while Redis is down; these series are skipped.
            log.warning("metrics: Redis unavailable (%s); delivery metrics skipped", type(exc).__name__)
            return
        for field, value in (replies[0] or {}).items():
            connector, _, result = _text(field).partition("|")
            deliveries.add_metric([connector, result], float(value))
        dead_counts = self._dead_counts()
        for i, name in enumerate(self.connectors):
            hist, ready, delayed = replies[1 + 3 * i : 4 + 3 * i]
            hist = {_text(k): float(v) for k, v in (hist or {}).items()}
            buckets = [(str(b), hist.get(str(b), 0.0)) for b in LATENCY_BUCKETS] + [("+Inf", hist.get("+Inf", 0.0))]
            latency.add_metric([name], buckets, hist.get("sum", 0.0))
            depth.add_metric([name, "ready"], float(ready))
            depth.add_metric([name, "delayed"], float(delayed))
            if dead_counts is not None:
                depth.add_metric([name, "dead"], float(dead_counts.get(name, 0)))
        yield deliveries
        yield latency
        yield depth
        if self.lag is not None:
            try:
                lag = self.lag()
            except (RedisError, OSError):
                return
            yield GaugeMetricFamily(
                "agni_bridge_log_lag_events", "Log events in Redis not yet written to the database.", value=lag.events
            )
            yield GaugeMetricFamily(
                "agni_bridge_log_lag_seconds", "Age of the oldest log event not yet in the database.", value=lag.seconds
            )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
