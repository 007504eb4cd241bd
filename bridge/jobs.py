"""The Dramatiq side: the delivery actor and the dead-letter middleware.

The actor is thin (Dramatiq's advice): it calls :class:`bridge.pipeline.Pipeline`
and turns the outcome into Dramatiq's terms:

* success → ack;
* PermanentError or MappingError → dead letter now, then ack (no retries);
* DeferredError (the connector is paused, or another worker holds the call) → the
  message is put back with a delay and acknowledged, without using up a retry;
* UnavailableError (Redis went away before anything was sent) → the same, quietly:
  the re-enqueue waits for Redis (see :mod:`bridge.broker`), so nothing is lost;
* RetryableError → ``dramatiq.Retry`` (with the CRM's Retry-After as delay when it
  gave one), so Dramatiq's exponential backoff applies;
* anything else (a bug) → retried like a transient error, with a traceback logged.

When retries run out, :class:`DeadLetters` (placed after Dramatiq's Retries
middleware) writes the dead letter. Actors are created by `build_actor` for a
given broker, never at import time.
"""

from __future__ import annotations

import random
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage, Middleware

from bridge.errors import DeferredError, MappingError, PermanentError, RetryableError, UnavailableError
from bridge.keys import ACTOR_NAME
from bridge.pipeline import Pipeline
from bridge.settings import DeliverySettings

__all__ = ["DeadLetters", "build_actor"]

MAX_DELAY_MS = 7 * 86400 * 1000 - 60_000  # Dramatiq refuses delays of 7 days or more


def _attempt(message: Any) -> int:
    return int(message.options.get("retries", 0)) + 1 if message is not None else 1


def build_actor(broker: dramatiq.Broker, pipeline: Pipeline, delivery: DeliverySettings) -> dramatiq.Actor[Any, Any]:
    def deliver_call(call_id: str, connector: str) -> None:
        message = CurrentMessage.get_current_message()
        attempt = _attempt(message)
        try:
            pipeline.run(call_id, connector, attempt)
        except UnavailableError:
            if message is None:
                raise
            broker.enqueue(message.copy(), delay=int(1000 * random.uniform(1.0, 2.0)))  # noqa: S311 - jitter
        except DeferredError as exc:
            deferrals = int(message.options.get("deferrals", 0)) if message is not None else 0
            pipeline.deferred(call_id, connector, exc, first=deferrals == 0)
            delay = min(MAX_DELAY_MS, int((exc.retry_after or 5) * 1000 * random.uniform(1.0, 1.2)))  # noqa: S311 - jitter
            if message is None:  # called directly (tests): let the caller see it
                raise
            broker.enqueue(message.copy(options={"deferrals": deferrals + 1}), delay=delay)
        except (PermanentError, MappingError) as exc:
            pipeline.failed(call_id, connector, exc, attempt=attempt, final=True)
        except RetryableError as exc:
            last = attempt > delivery.max_retries
            if not last:  # the final failure is recorded by DeadLetters as a dead letter
                pipeline.failed(call_id, connector, exc, attempt=attempt, final=False)
            delay = int(exc.retry_after * 1000) if exc.retry_after else None
            raise dramatiq.Retry(str(exc), delay=delay) from exc
        except Exception as exc:  # a bug: keep the call, retry it, and let Dramatiq log the traceback
            if attempt <= delivery.max_retries:
                pipeline.failed(call_id, connector, exc, attempt=attempt, final=False)
            raise

    return dramatiq.actor(
        deliver_call,
        broker=broker,
        actor_name=ACTOR_NAME,
        queue_name="deliver",
        max_retries=delivery.max_retries,
        min_backoff=int(delivery.min_backoff_seconds * 1000),
        max_backoff=int(delivery.max_backoff_seconds * 1000),
        time_limit=int(delivery.job_time_limit_seconds * 1000),
    )


class DeadLetters(Middleware):
    """After Dramatiq gives up on a message (retries exhausted), keep it as a dead letter of our own.

    Dramatiq's own dead-letter queue expires messages after a week and offers
    no way to list or replay them; ours keeps them until an admin acts.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if exception is None or not message.failed or message.actor_name != ACTOR_NAME:
            return
        call_id, connector = message.args[0], message.args[1]
        cause = exception.__cause__ if isinstance(exception, dramatiq.Retry) and exception.__cause__ else exception
        if not isinstance(cause, Exception):
            cause = RuntimeError(str(cause))
        # Retries has already counted this attempt, so `retries` is the number of attempts made.
        attempts = int(message.options.get("retries", 1))
        self.pipeline.failed(call_id, connector, cause, attempt=attempts, final=True)
