"""Zendesk's answers as bridge errors, in one place.

    401, 403                 PermanentError: the credentials are wrong, revoked, or not an agent's
    400 IdempotentRequestError  RetryableError (code IdempotentRequestError): an earlier request went out under
                             this Idempotency-Key with another body; the ticket writer reconciles it
    422 RecordInvalid        PermanentError with Zendesk's description and each field's messages in `details`
    other 4xx                PermanentError (404 RecordNotFound: the ticket writer recreates a deleted ticket)
    409                      RetryableError after ~2 s (a concurrent update of the same ticket)
    429                      RetryableError with Retry-After (default 60 s: the per-minute window); a
                             Retry-After beyond one window (an account-level throttle) is a PausedError
    5xx, 408                 RetryableError, Retry-After honoured (503 during maintenance)

Zendesk's error bodies are ``{"error": "RecordInvalid", "description": "…", "details": {"field":
[{"description": "…", "error": "…"}]}}``, or ``{"error": "<a sentence>"}`` (401), or plain text (a 429,
a proxy's HTML page): nothing here assumes a shape. `details` carries Zendesk's request id
(``X-Request-Id``) for support cases. :func:`certainly_not_written` is Zendesk's reading of these errors
for the exactly-once ledger.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from bridge.errors import ConnectorError, PausedError, PermanentError, RetryableError
from bridge.http import RETRYABLE_STATUSES, excerpt, parse_retry_after
from bridge.limiter import LOCAL_LIMIT

__all__ = [
    "IDEMPOTENCY_CONFLICT",
    "PAUSE_AFTER_SECONDS",
    "certainly_not_written",
    "closed_ticket",
    "error_from_response",
    "is_idempotency_conflict",
    "stale_user",
]

IDEMPOTENCY_CONFLICT = "IdempotentRequestError"
PAUSE_AFTER_SECONDS = 60.0  # a 429 asking for longer than one rate window is an account-level throttle
WINDOW_SECONDS = 60.0
_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_HINTS = {
    401: " (check auth.email and auth.api_token, or auth.oauth_token: Zendesk did not accept them)",
    403: " (the token's user must be an agent or admin allowed to create tickets and users)",
}


def certainly_not_written(exc: ConnectorError) -> bool:
    """True when Zendesk refused the create outright (a 4xx, a 429) or it was never sent (a local budget or
    the shared pause); False when it may have landed (timeouts, resets, 5xx) or when an earlier request under
    the same Idempotency-Key may have (IdempotentRequestError)."""
    if exc.code == LOCAL_LIMIT:
        return True
    if exc.code == IDEMPOTENCY_CONFLICT or exc.status in (408, 409):
        return False
    return exc.status is not None and 400 <= exc.status < 500


def is_idempotency_conflict(exc: ConnectorError) -> bool:
    return exc.code == IDEMPOTENCY_CONFLICT


def closed_ticket(exc: ConnectorError) -> bool:
    """Zendesk refused an update because the ticket is closed (closed tickets are read-only)."""
    return exc.status == 422 and "closed" in " ".join(exc.details.values()).lower()


def stale_user(exc: ConnectorError) -> bool:
    """A 422 about the requester: the id (maybe from the lookup cache) names a user Zendesk no longer has."""
    return exc.status == 422 and any(key.startswith("requester") for key in exc.details)


def error_from_response(response: httpx.Response, what: str, *, secrets: tuple[str, ...]) -> ConnectorError:
    """The bridge error for one non-2xx answer (see the module docstring); no secret appears in it."""
    status = response.status_code
    body = _json_object(response)
    error = _text(body.get("error"))
    code = error if _CODE.match(error) else None
    description = _text(body.get("description")) or (error if code is None else "")
    fields = _field_messages(body.get("details"))
    if not body:
        description = excerpt(response.text, secrets=secrets)
    message = description or code or f"HTTP {status}"
    if fields:
        message = f"{message}: {'; '.join(fields.values())}"
    message = f"Zendesk {what}: {excerpt(message, secrets=secrets, limit=600)}{_HINTS.get(status, '')}"
    details = dict(fields)
    request_id = response.headers.get("x-request-id") or response.headers.get("x-zendesk-request-id")
    if request_id:
        details["request_id"] = request_id.split(",")[0].strip()
    kwargs: dict[str, Any] = {"status": status, "code": code, "details": details}
    if status == 400 and code == IDEMPOTENCY_CONFLICT:
        return RetryableError(message, **kwargs)
    if status == 429:
        wait = parse_retry_after(response.headers.get("retry-after"))
        if wait is not None and wait > PAUSE_AFTER_SECONDS:
            return PausedError(message, retry_after=wait, **kwargs)
        return RetryableError(message, retry_after=WINDOW_SECONDS if wait is None else wait, **kwargs)
    if status == 409:
        return RetryableError(message, retry_after=2.0, **kwargs)
    if status in RETRYABLE_STATUSES or status >= 500:
        return RetryableError(message, retry_after=parse_retry_after(response.headers.get("retry-after")), **kwargs)
    return PermanentError(message, **kwargs)


def _field_messages(details: Any) -> dict[str, str]:
    """{"requester": "Requester: … is invalid", …} from Zendesk's `details` (lists of {description, error})."""
    if not isinstance(details, dict):
        return {}
    found: dict[str, str] = {}
    for field, entries in details.items():
        items = entries if isinstance(entries, list) else [entries]
        texts = [
            _text(item.get("description")) or _text(item.get("error")) if isinstance(item, dict) else _text(item)
            for item in items
        ]
        joined = "; ".join(t for t in texts if t)
        if joined:
            found[str(field)] = joined
    return found


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        parsed = response.json()
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
