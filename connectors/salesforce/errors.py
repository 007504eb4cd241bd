"""The one place simple-salesforce's and requests' exceptions become the bridge's.

Salesforce answers errors as a JSON array ``[{"message", "errorCode", "fields"}]``;
simple-salesforce raises one exception class per HTTP status with that array in
``.content``. :func:`translate_errors` maps them, keeping Salesforce's own
``errorCode`` and message so a dead letter says exactly what Salesforce said:

    300 (several records share an external id)           → PermanentError
    400 INVALID_FIELD, MALFORMED_ID, STRING_TOO_LONG, …   → PermanentError (code, message, fields)
    400/500 UNABLE_TO_LOCK_ROW, SERVER_UNAVAILABLE, …     → RetryableError (transient by nature)
    401 INVALID_SESSION_ID                                → PermanentError(status=401); the API layer
                                                            re-authenticates once before giving up
    403 REQUEST_LIMIT_EXCEEDED                            → PausedError(retry_after=limit pause)
    403 other, 404, 405, …                                → PermanentError
    429, 5xx, timeouts, resets, TLS failures              → RetryableError (TLS: naming the trusted CAs)

sObject Collections answer HTTP 200 with one result per record; a failed record
carries the same kind of array under ``errors`` (``statusCode`` instead of
``errorCode``). :func:`error_from_save_result` maps it with the same table, so
a record rejected inside a batch fails its own call exactly as a single
request would have — without an HTTP status, since there was none for it.

Messages never contain request headers or bodies, so tokens and keys cannot leak
into logs or dead letters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from bridge.errors import ConnectorError, PausedError, PermanentError, RetryableError
from bridge.http import excerpt
from bridge.tls import Trust, ssl_error_in, ssl_reason, tls_failure

__all__ = [
    "TRANSIENT_CODES",
    "copy_error",
    "error_from_salesforce",
    "error_from_save_result",
    "salesforce_errors",
    "translate_errors",
]

TRANSIENT_CODES = frozenset(
    {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG", "QUERY_TIMEOUT", "API_CURRENTLY_DISABLED"}
)


def salesforce_errors() -> tuple[type[Exception], ...]:
    """simple-salesforce's exception base class, imported only when a call is made (the package is slow to load)."""
    from simple_salesforce.exceptions import SalesforceError

    return (SalesforceError,)


@contextmanager
def translate_errors(
    what: str, *, limit_pause: float = 300.0, on_multiple: str = "", trust: Trust | None = None
) -> Iterator[None]:
    """Run a Salesforce call; re-raise whatever it raises as a bridge error about `what`.

    `on_multiple` is the message for a 300 answer (several records share an external id); `trust`, the CAs
    the session verifies against, is named when a certificate check fails.
    """
    sf_errors = salesforce_errors()
    try:
        yield
    except ConnectorError:
        raise
    except sf_errors as exc:
        raise error_from_salesforce(exc, what, limit_pause=limit_pause, on_multiple=on_multiple) from exc
    except requests.exceptions.SSLError as exc:
        tls = ssl_error_in(exc)
        raise RetryableError(tls_failure(what, ssl_reason(tls) if tls else _reason(exc), trust)) from exc
    except requests.exceptions.Timeout as exc:
        raise RetryableError(f"{what}: timed out ({type(exc).__name__})") from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        raise RetryableError(f"{what}: connection failed ({type(exc).__name__})") from exc
    except requests.exceptions.JSONDecodeError as exc:
        # A 2xx that is not JSON: a proxy or maintenance page answered instead of Salesforce.
        raise RetryableError(f"{what}: Salesforce answered something that is not JSON") from exc
    except requests.exceptions.RequestException as exc:
        raise PermanentError(f"{what}: request could not be made ({type(exc).__name__}: {_reason(exc)})") from exc


def error_from_salesforce(exc: Any, what: str, *, limit_pause: float = 300.0, on_multiple: str = "") -> ConnectorError:
    """The bridge error for one simple-salesforce exception (which carries `.status` and the parsed `.content`)."""
    status = int(getattr(exc, "status", 0) or 0)
    content = getattr(exc, "content", None)
    return _error(status, content, what, limit_pause=limit_pause, on_multiple=on_multiple)


def error_from_save_result(result: Any, what: str, *, limit_pause: float = 300.0) -> ConnectorError:
    """The bridge error for one failed record of an sObject Collections answer (``{"success": false, "errors"}``)."""
    errors = result.get("errors") if isinstance(result, dict) else None
    errors = errors if isinstance(errors, list) and errors else [{"message": "Salesforce rejected the record"}]
    return _error(0, errors, what, limit_pause=limit_pause, on_multiple="")


def copy_error(exc: ConnectorError) -> ConnectorError:
    """A fresh instance of `exc` (same class, message, status, code, details), so that several threads that share
    one failed request each raise their own exception object instead of racing on one traceback."""
    kwargs: dict[str, Any] = {"status": exc.status, "code": exc.code, "details": dict(exc.details)}
    if isinstance(exc, RetryableError):
        kwargs["retry_after"] = exc.retry_after
    clone = type(exc)(exc.message, **kwargs)
    clone.__cause__ = exc.__cause__
    return clone


def _error(status: int, content: Any, what: str, *, limit_pause: float, on_multiple: str) -> ConnectorError:
    """Status 0: a per-record error inside a 200 answer (no HTTP status of its own)."""
    errors = [item for item in content if isinstance(item, dict)] if isinstance(content, list) else []
    code = str(errors[0].get("errorCode") or errors[0].get("statusCode") or "") if errors else ""
    message = "; ".join(str(item.get("message", "")).strip() for item in errors if item.get("message"))
    if not message:
        shown = excerpt(content if content is None or isinstance(content, str | bytes) else str(content))
        message = shown or (f"Salesforce answered HTTP {status}" if status else "Salesforce refused it")
    fields = sorted({str(f) for item in errors for f in (item.get("fields") or [])})
    details = {"request": what}
    if fields:
        details["fields"] = ",".join(fields)
    if status == 300:
        matches = [str(url).rsplit("/", 1)[-1] for url in content] if isinstance(content, list) else []
        text = on_multiple or f"several records match {what}"
        if matches:
            text += f" ({len(matches)}: {', '.join(matches[:5])})"
        return PermanentError(text, status=300, code="MULTIPLE_RECORDS", details=details)
    http = status or None
    if code == "REQUEST_LIMIT_EXCEEDED" and status in (0, 403):
        return PausedError(
            f"daily API limit reached: {message}", retry_after=limit_pause, status=http, code=code, details=details
        )
    if code in TRANSIENT_CODES or status == 429 or status >= 500:
        return RetryableError(message, status=http, code=code or None, details=details)
    return PermanentError(message, status=http, code=code or None, details=details)


def _reason(exc: BaseException) -> str:
    """The innermost cause's text (urllib3 wraps the interesting part several levels deep), shortened."""
    inner: BaseException = exc
    for _ in range(5):
        if inner.__context__ is None:
            break
        inner = inner.__context__
    return " ".join(str(inner or exc).split())[:300]
