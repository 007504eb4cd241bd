"""HTTP plumbing shared by connectors: error translation and quick in-call retries.

`translate_transport_errors()` is the one place httpx's exceptions become the
bridge's (a timeout or reset is retryable; a failed certificate check says
which CAs were trusted, per :mod:`bridge.tls`). `error_for_status()` turns a
non-2xx answer into the bridge's error by the common table (408, 425, 429 and
most 5xx are retryable, honouring Retry-After; every other status is
permanent), with `excerpt()` of the body, which never carries a secret the
connector names. CRMs whose answers need more (HubSpot's 429 policies,
Salesforce's error codes) translate them themselves and use the pieces
(`parse_retry_after`, `excerpt`). `retrying(delivery)` runs a
function with tenacity: a RetryableError is retried a few times in-call,
honouring the CRM's Retry-After when it is short, and otherwise handed back
to the queue, whose backoff spans hours; a PausedError is never retried
in-call (nor any DeferredError), since the whole connector is waiting.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from bridge.errors import ConnectorError, DeferredError, PermanentError, RetryableError
from bridge.settings import DeliverySettings
from bridge.tls import Trust, ssl_error_in, ssl_reason, tls_failure

__all__ = [
    "RETRYABLE_STATUSES",
    "error_for_status",
    "excerpt",
    "parse_retry_after",
    "retrying",
    "translate_transport_errors",
]

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 507, 520, 521, 522, 523, 524, 529})
EXCERPT_CHARS = 300
_WHITESPACE = re.compile(r"\s+")


def excerpt(body: str | bytes | None, *, secrets: Iterable[str] = (), limit: int = EXCERPT_CHARS) -> str:
    """The start of an answer's body for an error message: whitespace collapsed (a proxy's HTML page reads on one
    line), cut to `limit` characters, and every one of `secrets` (a token a receiver might echo) replaced."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return _WHITESPACE.sub(" ", text).strip()[:limit]


def error_for_status(
    what: str,
    status: int,
    *,
    body: str | bytes | None = None,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    hint: str = "",
    code: str | None = None,
    details: dict[str, str] | None = None,
) -> ConnectorError:
    """The bridge error for a non-2xx answer: ``"{what} answered {status}: {excerpt of body}{hint}"``,
    a RetryableError (with Retry-After) for RETRYABLE_STATUSES, else a PermanentError."""
    shown = excerpt(body, secrets=secrets)
    message = f"{what} answered {status}" + (f": {shown}" if shown else "") + hint
    if status in RETRYABLE_STATUSES:
        retry_after = parse_retry_after((headers or {}).get("retry-after"))
        return RetryableError(message, status=status, retry_after=retry_after, code=code, details=details)
    return PermanentError(message, status=status, code=code, details=details)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds, from delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@contextmanager
def translate_transport_errors(what: str, trust: Trust | None = None) -> Iterator[None]:
    """httpx transport failures → RetryableError naming the destination (never the URL's secrets).

    A TLS failure names the CAs the client trusted (`trust`) and how to trust another one."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise RetryableError(f"{what}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        tls = ssl_error_in(exc)
        if tls is not None:
            raise RetryableError(tls_failure(what, ssl_reason(tls), trust)) from exc
        raise RetryableError(f"{what}: connection failed ({type(exc).__name__}: {exc})") from exc


def retrying(delivery: DeliverySettings, fn: Callable[[], T]) -> T:
    """Call `fn`, retrying RetryableErrors in-call per `delivery`; re-raise the last error otherwise."""

    def should_retry(exc: BaseException) -> bool:
        if not isinstance(exc, RetryableError) or isinstance(exc, DeferredError):
            return False
        return exc.retry_after is None or exc.retry_after <= delivery.http_max_wait_seconds

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return exc.retry_after
        return backoff(state)

    backoff = wait_exponential_jitter(multiplier=0.5, max=delivery.http_max_wait_seconds, jitter=0.5)
    retryer = Retrying(
        retry=retry_if_exception(should_retry),
        stop=stop_after_attempt(delivery.http_attempts),
        wait=wait,
        reraise=True,
    )
    return retryer(fn)
