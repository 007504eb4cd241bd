"""Dataverse's answers as bridge errors, in one place.

Dataverse answers errors as ``{"error": {"code": "0x80040217", "message": "…"}}``
(the code may be empty); proxies and Entra ID answer otherwise, so nothing here
assumes a shape. The table:

    429 (0x80072322 requests, 0x80072321 execution time,   RetryableError, retry_after = Retry-After (seconds);
         0x80072326 concurrent requests)                   the client also pauses every worker (the limit is
                                                           the application user's, shared by all of them)
    408, 5xx                                               RetryableError (Retry-After when given)
    401                                                    PermanentError(status=401); the client renews the
                                                           token and tries once more before giving up
    400, 403 (a missing privilege), 404, 405, 412, …       PermanentError with Dataverse's code and message

The code and message go into the dead letter as they came; ``details`` carries
the request that failed and Dataverse's request id (``x-ms-service-request-id``)
for Microsoft support. 412 means two things — "a record with matching key values
already exists" for a create-only request, "the version doesn't match" for an
update with an ETag — and only the request tells which, so the callers that send
create-only requests read it themselves (:meth:`DataverseClient.create_only`).
Entra ID's token errors (``{"error", "error_description", "error_codes"}``) are
translated by :func:`token_error`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from bridge.errors import ConnectorError, PermanentError, RetryableError
from bridge.http import RETRYABLE_STATUSES, excerpt, parse_retry_after

__all__ = [
    "REQUEST_ID_HEADER",
    "copy_error",
    "error_from_answer",
    "odata_error",
    "token_error",
]

REQUEST_ID_HEADER = "x-ms-service-request-id"
DATAVERSE = "Dataverse"


def odata_error(body: bytes | str | None) -> tuple[str, str]:
    """(code, message) of an OData error body; empty strings for what it does not say."""
    try:
        parsed = json.loads(body or b"")
    except ValueError:
        return "", ""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return _text(error.get("code")), _text(error.get("message"))


def error_from_answer(
    what: str,
    status: int,
    body: bytes | str | None,
    headers: Mapping[str, str] | None = None,
    *,
    secrets: Iterable[str] = (),
) -> ConnectorError:
    """The bridge error for one non-2xx answer of the Web API (or one response inside a batch)."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    code, message = odata_error(body)
    if not message:  # not OData: a proxy's page, an empty 401; its start may say what happened
        message = excerpt(body, secrets=secrets) or f"HTTP {status}"
    details = {"request": what}
    if headers.get(REQUEST_ID_HEADER):
        details["request-id"] = headers[REQUEST_ID_HEADER]
    text = f"{DATAVERSE} {what}: {message}"
    kwargs: dict[str, Any] = {"status": status, "code": code or None, "details": details}
    if status in RETRYABLE_STATUSES or status >= 500:
        return RetryableError(text, retry_after=parse_retry_after(headers.get("retry-after")), **kwargs)
    return PermanentError(text, **kwargs)


def token_error(what: str, status: int, body: bytes | str | None, *, secrets: Iterable[str] = ()) -> ConnectorError:
    """Entra ID's answer to a token request: bad credentials, an unknown tenant or app are permanent; 429 and 5xx
    are not. The AADSTS code goes into `code` (e.g. ``AADSTS7000215`` for a wrong client secret)."""
    try:
        parsed = json.loads(body or b"")
    except ValueError:
        parsed = None
    parsed = parsed if isinstance(parsed, dict) else {}
    error = _text(parsed.get("error"))
    description = _text(parsed.get("error_description")).splitlines()[0] if parsed.get("error_description") else ""
    codes = parsed.get("error_codes")
    code = f"AADSTS{codes[0]}" if isinstance(codes, list) and codes else error
    message = description or error or excerpt(body, secrets=secrets) or f"HTTP {status}"
    text = f"{what} failed: {excerpt(message, secrets=secrets)}"
    if status == 429 or status >= 500:
        return RetryableError(text, status=status, code=code or None)
    return PermanentError(text, status=status, code=code or "TOKEN_REFUSED")


def copy_error(exc: ConnectorError) -> ConnectorError:
    """A fresh instance of `exc`, so that threads sharing one failed batch each raise their own exception object."""
    kwargs: dict[str, Any] = {"status": exc.status, "code": exc.code, "details": dict(exc.details)}
    if isinstance(exc, RetryableError):
        kwargs["retry_after"] = exc.retry_after
    clone = type(exc)(exc.message, **kwargs)
    clone.__cause__ = exc.__cause__
    return clone


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
