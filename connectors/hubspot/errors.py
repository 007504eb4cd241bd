"""HubSpot's answers as bridge errors, in one place.

    429 DAILY                   PausedError until midnight in the account's time zone (the client also sets
                                the shared pause)
    429 TEN_SECONDLY_ROLLING    RetryableError, retry_after = Retry-After, else the interval header, else 10 s
    429 search "secondly limit" RetryableError, retry_after = 1 s
    5xx, 408, 423, 477          RetryableError (a 423 "locked" after ~2 s)
    other 4xx                   PermanentError with HubSpot's message, `code` = its category,
                                details = {"correlationId": …} (from the body, else X-HubSpot-Correlation-Id)

HubSpot says to treat every field of its error body as optional, and proxies
answer with HTML, so nothing here assumes a shape. :func:`certainly_not_written`
is HubSpot's reading of these errors for the exactly-once ledger.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from bridge.errors import ConnectorError, PausedError, PermanentError, RetryableError
from bridge.http import excerpt, parse_retry_after
from bridge.limiter import LOCAL_LIMIT, seconds_until_midnight

__all__ = ["CORRELATION_HEADER", "certainly_not_written", "error_from_response", "existing_id_from_conflict"]

_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")
CORRELATION_HEADER = "x-hubspot-correlation-id"
_RETRY_STATUSES = frozenset({408, 423, 425, 500, 502, 503, 504, 507, 520, 521, 522, 523, 524, 529})


def certainly_not_written(exc: ConnectorError) -> bool:
    """HubSpot's reading of its errors for the exactly-once ledger (:func:`bridge.ledger.write_once`): True when
    HubSpot refused the request outright (4xx, 429) or it was never sent; False when unknown."""
    if exc.code == LOCAL_LIMIT:
        return True
    return exc.status is not None and 400 <= exc.status < 500


def existing_id_from_conflict(exc: ConnectorError) -> str | None:
    """The id in HubSpot's 409 "Contact already exists. Existing ID: 123", if that is what `exc` is."""
    if exc.status != 409:
        return None
    found = _EXISTING_ID.search(exc.message)
    return found.group(1) if found else None


def error_from_response(
    response: httpx.Response, what: str, *, search: bool, timezone: str, token: str
) -> ConnectorError:
    """The bridge error for one non-2xx answer (see the module docstring); `token` never appears in it."""
    status = response.status_code
    body = _json_object(response)
    # A JSON body without a message says nothing more; a non-JSON one (a proxy's HTML page) may.
    shown = None if body else excerpt(response.text, secrets=(token,))
    message = _text(body.get("message")) or shown or f"HTTP {status}"
    extra = [_text(e.get("message")) for e in body.get("errors") or [] if isinstance(e, dict)]
    extra = [e for e in extra if e and e not in message][:3]
    if extra:
        message = f"{message} ({'; '.join(extra)})"
    message = f"HubSpot {what}: {message}"
    code = _text(body.get("category")) or _text(body.get("errorType")) or None
    correlation = _text(body.get("correlationId")) or _text(response.headers.get(CORRELATION_HEADER))
    details = {"correlationId": correlation} if correlation else {}
    kwargs: dict[str, Any] = {"status": status, "code": code, "details": details}
    if status == 429:
        policy = _text(body.get("policyName")).upper()
        if policy == "DAILY":
            return PausedError(message, retry_after=seconds_until_midnight(timezone), **kwargs)
        header_wait = parse_retry_after(response.headers.get("retry-after"))
        if "secondly limit" in message.lower() or (search and policy != "TEN_SECONDLY_ROLLING"):
            return RetryableError(message, retry_after=header_wait or 1.0, **kwargs)
        return RetryableError(message, retry_after=header_wait or _interval(response) or 10.0, **kwargs)
    if status in _RETRY_STATUSES or status >= 500:
        wait = parse_retry_after(response.headers.get("retry-after"))
        return RetryableError(message, retry_after=2.0 if status == 423 and wait is None else wait, **kwargs)
    if status == 477:  # portal migration in progress (HubSpot sends Retry-After)
        return RetryableError(message, retry_after=parse_retry_after(response.headers.get("retry-after")), **kwargs)
    return PermanentError(message, **kwargs)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        parsed = response.json()
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _interval(response: httpx.Response) -> float | None:
    raw = response.headers.get("x-hubspot-ratelimit-interval-milliseconds")
    try:
        return max(0.0, float(raw) / 1000) if raw else None
    except ValueError:
        return None
