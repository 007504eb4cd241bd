"""One delivery job: (call, connector) → mapped record → connector → CRM, recorded either way.

Plain synchronous code with its I/O passed in, so it runs the same in a
Dramatiq worker thread and in a test. The Dramatiq actor (:mod:`bridge.jobs`)
only translates what this raises into retries.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from bridge.circuit import CircuitBreaker
from bridge.connector import Connector, Delivery, DeliveryResult
from bridge.errors import (
    ConnectorError,
    DeferredError,
    EventDecodeError,
    MappingError,
    PausedError,
    PermanentError,
    RetryableError,
)
from bridge.events import decode_envelope
from bridge.logs import call_scope
from bridge.mapping import MappingLoader, render_context
from bridge.metrics import DeliveryRecorder
from bridge.redaction import Redactor
from bridge.store import CallStore

__all__ = ["Pipeline"]

log = logging.getLogger("bridge.pipeline")


@dataclass
class Pipeline:
    store: CallStore
    connectors: dict[str, Connector]
    recorder: DeliveryRecorder
    circuit: CircuitBreaker | None = None
    redactor: Redactor | None = None
    mappings: MappingLoader | None = None
    """Where connectors' mappings come from; consulted before each delivery, so an edited file is used at once."""

    def run(self, call_id: str, connector_name: str, attempt: int = 1) -> DeliveryResult | None:
        """Deliver one call to one connector; None when it was already delivered (a redelivered job).

        Redis being unreachable before the CRM write raises UnavailableError (nothing written: put the job
        off); after the write, recording the outcome waits for Redis, so a delivered call is always logged
        as delivered and never written twice by a redelivery."""
        with call_scope(call_id, connector_name):
            connector = self.connectors.get(connector_name)
            if connector is None:
                raise PermanentError(f"connector {connector_name!r} is not configured (or disabled) on this worker")
            done, body, received = self.store.snapshot(call_id, connector_name)
            if done is not None:
                log.info("already delivered; skipping the redelivered job")
                return None
            delivery = self._prepare(call_id, connector, attempt, body)
            wait = self.circuit.wait_seconds(connector_name) if self.circuit else None
            if wait is not None:
                raise PausedError(f"{connector_name} is paused (circuit open)", retry_after=wait)
            started = time.monotonic()
            with self.store.lock(call_id, connector_name):
                if self.store.done(call_id, connector_name) is not None:
                    return None
                result = self._deliver(connector, delivery)
                outcome = "skipped" if result.skipped else "delivered"
                event = {
                    "type": "attempt",
                    "connector": connector_name,
                    "attempt": attempt,
                    "outcome": outcome,
                    "records": result.records,
                    "links": _links(connector, result.records),
                    "match": result.match,
                    "notes": result.notes,
                    "skipped": result.skipped,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    **self._mapping_info(connector),
                }
                # Still holding the lease: a redelivery waiting for it must find the done-marker.
                self.store.mark_done(call_id, connector_name, outcome, event)
            self.recorder.record(connector_name, outcome, time.time() - received if received else None)
            log.info("%s %s", outcome, result.skipped or _describe_records(result.records))
            return result

    def _deliver(self, connector: Connector, delivery: Delivery) -> DeliveryResult:
        """Call the connector and tell the circuit breaker how the CRM behaved."""
        circuit = self.circuit
        try:
            result = connector.deliver(delivery)
        except PausedError as exc:
            if circuit:
                opened = circuit.failed(connector.name, pause_seconds=exc.retry_after or 60)
                log.warning("%s paused for %.0fs: %s", connector.name, opened or 0, exc.describe())
            raise
        except DeferredError:
            raise
        except RetryableError:
            if circuit and (opened := circuit.failed(connector.name)):
                log.warning("%s circuit opened for %.0fs after repeated failures", connector.name, opened)
            raise
        except PermanentError:
            if circuit:
                circuit.succeeded(connector.name)  # the CRM answered: it is up
            raise
        if circuit:
            circuit.succeeded(connector.name)
        return result

    def deferred(self, call_id: str, connector_name: str, exc: DeferredError, *, first: bool) -> None:
        """A delivery put off without counting an attempt; recorded once per message, not at every wake-up."""
        if not first:
            return
        with call_scope(call_id, connector_name):
            event = {
                "type": "paused",
                "connector": connector_name,
                "reason": exc.message,
                "retry_after": exc.retry_after,
            }
            self.store.append(call_id, event)
            log.info("deferred %.0fs: %s", exc.retry_after or 0, exc.message)

    def _prepare(self, call_id: str, connector: Connector, attempt: int, body: bytes | None) -> Delivery:
        if body is None:
            raise PermanentError("the stored webhook has expired (older than retention_days); re-send or backfill it")
        try:
            envelope = decode_envelope(body)
            document = msgspec.json.decode(body)
        except (EventDecodeError, msgspec.DecodeError) as exc:
            raise PermanentError(f"stored webhook cannot be decoded: {exc}") from exc
        call = document["data"]
        self._current_mapping(connector)
        if self.redactor is not None and getattr(connector.config, "redact_pii", True):
            # The connector, the forwarded body and the outbox all see the same redacted text.
            call = self.redactor.call(call)
            body = msgspec.json.encode({**document, "data": call})
        context = render_context(call=call, event=envelope.event, org_id=envelope.org_id, connector=connector.name)
        record = connector.mapping.render(context) if connector.mapping is not None else None
        return Delivery(
            call_session_id=call_id,
            connector=connector.name,
            event=envelope.event,
            org_id=envelope.org_id,
            call=call,
            raw_body=body,
            record=record,
            context=context,
            attempt=attempt,
        )

    def _current_mapping(self, connector: Connector) -> None:
        """Swap in the connector's mapping as it is on disk now (a MappingError from a broken edit dead-letters
        the call with the file and field, like any mapping error)."""
        name = getattr(connector.config, "mapping", None) or connector.default_mapping
        if self.mappings is None or not name or connector.mapping is None:
            return
        current = self.mappings.load(name)
        if current is not connector.mapping:
            log.info(
                "mapping %s changed (%s -> %s); using the new version", name, connector.mapping.digest, current.digest
            )
            connector.mapping = current

    def failed(self, call_id: str, connector_name: str, exc: Exception, *, attempt: int, final: bool) -> None:
        """Record a failed attempt; `final` makes it a dead letter (permanent error or retries exhausted)."""
        with call_scope(call_id, connector_name):
            error = _error_fields(exc)
            event = {
                "type": "attempt",
                "connector": connector_name,
                "attempt": attempt,
                "outcome": "dead" if final else "retry",
                **error,
                **self._mapping_info(self.connectors.get(connector_name)),
            }
            if final:
                self.store.append(call_id, event)  # the log keeps it as a dead letter until an admin acts
                self.recorder.record(connector_name, "dead", None)
                log.error("dead letter after %d attempt(s): %s", attempt, error["error"])
            else:
                self.store.append(call_id, event)
                self.recorder.record(connector_name, "retry", None)
                log.warning("attempt %d failed, will retry: %s", attempt, error["error"])

    @staticmethod
    def _mapping_info(connector: Connector | None) -> dict[str, Any]:
        mapping = connector.mapping if connector is not None else None
        if mapping is None:
            return {}
        return {"mapping": mapping.name, "mapping_digest": mapping.digest, "mapping_origin": mapping.location}


def _links(connector: Connector, records: dict[str, str]) -> dict[str, str]:
    """The CRM's URL of each record written, where the connector can build one from its settings."""
    links = {}
    for kind, record_id in records.items():
        try:
            url = connector.record_url(kind, str(record_id))
        except Exception:  # a link is a convenience: never let building one fail a delivery
            log.exception("building the link to %s %s failed", kind, record_id)
            url = None
        if url:
            links[kind] = url
    return links


def _error_fields(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, ConnectorError):
        fields: dict[str, Any] = {"error": exc.describe(), "status": exc.status, "code": exc.code}
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            fields["retry_after"] = exc.retry_after
        return fields
    if isinstance(exc, MappingError):
        return {"error": str(exc), "code": "MAPPING_ERROR"}
    return {"error": f"{type(exc).__name__}: {exc}", "code": "UNEXPECTED"}


def _describe_records(records: dict[str, str]) -> str:
    return ", ".join(f"{kind} {rid}" for kind, rid in records.items()) or "(no record ids)"
