"""Pipedrive's answers as bridge errors, in one place.

Pipedrive answers errors as ``{"success": false, "error": "…", "error_info": "…", "data": null}`` (v1 and v2
alike; some add ``"code"`` or ``"errorCode"``). The translation:

    429, daily budget spent      PausedError until midnight in `daily_reset_timezone`: the
                                 `x-daily-ratelimit-token-remaining` header is 0 (or the legacy
                                 `x-daily-requests-left` of POST/PUT), or the message speaks of a daily limit.
                                 The client also sets the shared pause, so every worker stops.
    429, burst limit             RetryableError after Retry-After or x-ratelimit-reset (at most 10 s), whichever
                                 is longer, else the 2 s window
    5xx, 408                     RetryableError (Retry-After honoured)
    403 that is not JSON         RetryableError after a minute: Pipedrive's edge blocks API-token traffic that
                                 kept sending after 429s with an HTML page (secondary sources), and lifts it later
    401                          PermanentError (an OAuth token is refreshed before this point, see auth.py)
    other 4xx                    PermanentError with Pipedrive's message, `code` = its code when it sends one,
                                 details = {"correlationId": x-correlation-id}

A body that is not JSON (a proxy's page) is shown as an excerpt with every secret redacted.
:func:`certainly_not_written` is Pipedrive's reading of these errors for the exactly-once ledger.
"""

from __future__ import annotations

from typing import Any

import httpx

from bridge.errors import ConnectorError, PausedError, PermanentError, RetryableError
from bridge.http import excerpt, parse_retry_after
from bridge.limiter import LOCAL_LIMIT, seconds_until_midnight

__all__ = [
    "BURST_WINDOW_SECONDS",
    "DAILY_BUDGET",
    "LINK_MISSING",
    "NOT_SENT",
    "TOKEN_REFRESH",
    "certainly_not_written",
    "daily_budget_left",
    "error_from_response",
    "gone",
]

BURST_WINDOW_SECONDS = 2.0
DAILY_BUDGET = "DAILY_BUDGET_EXHAUSTED"
"""The `code` of the PausedError for a spent daily token budget (Pipedrive sends no code of its own)."""
LINK_MISSING = "LINKED_RECORD_MISSING"
"""The `code` of a 404 on an update whose record still exists: a person, organization or deal it names is gone."""
NOT_SENT = "NOT_SENT"
"""The `code` of errors raised before a request left (the shared pause was set): nothing was written."""
TOKEN_REFRESH = "TOKEN_REFRESH_FAILED"  # noqa: S105 - an error code, not a secret
"""The `code` of a failed OAuth renewal: the API request it was for was never sent (or was refused with a 401)."""
MAX_RESET_SECONDS = 10.0  # x-ratelimit-reset counts the 2 s window; anything larger is not a burst reset
EDGE_BLOCK_SECONDS = 60.0
_GENERIC_INFO = "please check developers.pipedrive.com"
DAILY_HEADERS = ("x-daily-ratelimit-token-remaining", "x-daily-requests-left")


def certainly_not_written(exc: ConnectorError) -> bool:
    """Pipedrive's reading of its errors for :func:`bridge.ledger.write_once`: True when the create was refused
    (any 4xx, 429 included) or never sent; False when it may have landed (timeout, reset, 5xx)."""
    if exc.code in (LOCAL_LIMIT, NOT_SENT, TOKEN_REFRESH):
        return True
    return exc.status is not None and 400 <= exc.status < 500


def gone(exc: PermanentError) -> bool:
    """The `deleted` test of write_once: the record was deleted in Pipedrive (404, or 410 for call logs) — not a
    record it links to (LINK_MISSING: the connector checked that the record itself still exists)."""
    return exc.status in (404, 410) and exc.code != LINK_MISSING


def daily_budget_left(headers: httpx.Headers) -> int | None:
    """The company's daily tokens left, when Pipedrive says (the header is undocumented and sometimes absent)."""
    raw = headers.get("x-daily-ratelimit-token-remaining")
    try:
        return int(float(raw)) if raw is not None else None
    except ValueError:
        return None


def error_from_response(
    response: httpx.Response, what: str, *, timezone: str, secrets: tuple[str, ...]
) -> ConnectorError:
    """The bridge error for one non-2xx answer (see the module docstring); no secret appears in it."""
    status = response.status_code
    body = _json_object(response)
    error = _text(body.get("error")) or _text(body.get("message"))
    info = _text(body.get("error_info"))
    if not error:
        error = excerpt(response.text, secrets=secrets) if not body else ""
    message = error or f"HTTP {status}"
    if info and not info.lower().startswith(_GENERIC_INFO) and info not in message:
        message = f"{message} ({info})"
    message = f"Pipedrive {what}: {excerpt(message, secrets=secrets, limit=500)}"
    code = _text(body.get("code")) or None
    correlation = _text(response.headers.get("x-correlation-id"))
    kwargs: dict[str, Any] = {"status": status, "code": code, "details": {"correlationId": correlation}}
    if not correlation:
        kwargs["details"] = {}
    if status == 429:
        if _daily(response, error):
            kwargs["code"] = code or DAILY_BUDGET
            reason = f"{message} — the company's daily API token budget is spent; paused until it resets"
            return PausedError(reason, retry_after=seconds_until_midnight(timezone), **kwargs)
        wait = parse_retry_after(response.headers.get("retry-after"))
        reset = min(parse_retry_after(response.headers.get("x-ratelimit-reset")) or 0.0, MAX_RESET_SECONDS)
        return RetryableError(message, retry_after=max(wait or 0.0, reset) or BURST_WINDOW_SECONDS, **kwargs)
    if status == 403 and not body:
        blocked = f"{message} — an HTML 403 from Pipedrive's edge (a block after ignored 429s?); waiting"
        return RetryableError(blocked, retry_after=EDGE_BLOCK_SECONDS, **kwargs)
    if status == 408 or status >= 500:
        return RetryableError(message, retry_after=parse_retry_after(response.headers.get("retry-after")), **kwargs)
    return PermanentError(message, **kwargs)


def _daily(response: httpx.Response, error: str) -> bool:
    for header in DAILY_HEADERS:
        raw = response.headers.get(header)
        if raw is not None and raw.strip() in ("0", "0.0"):
            return True
    return "daily" in error.lower()


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        parsed = response.json()
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
