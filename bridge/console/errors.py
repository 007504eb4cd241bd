"""Errors inside the console become pages (the app's handlers answer JSON, for Agni and scripts)."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request
from litestar.exceptions import HTTPException
from redis.exceptions import RedisError

from bridge.console.web import error_page
from bridge.errors import DatabaseError, OperationError, UnavailableError

__all__ = ["CONSOLE_EXCEPTION_HANDLERS"]

log = logging.getLogger("bridge.console")


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Any:
    return error_page(request, exc.status_code, "Request not understood", str(exc.detail))


def _database(request: Request[Any, Any, Any], exc: DatabaseError) -> Any:
    return error_page(request, 503, "The call log is unavailable", str(exc))


def _unavailable(request: Request[Any, Any, Any], exc: UnavailableError) -> Any:
    return error_page(request, 503, "Redis is unavailable", str(exc))


def _redis(request: Request[Any, Any, Any], exc: RedisError) -> Any:
    return error_page(request, 503, "Redis is unavailable", f"{type(exc).__name__}; try again in a moment.")


def _operation(request: Request[Any, Any, Any], exc: OperationError) -> Any:
    return error_page(request, 400, "Not done", str(exc))


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Any:
    log.exception("console: unexpected error on %s", request.url.path)
    return error_page(request, 500, "Something went wrong", "The error is in the bridge's log.")


CONSOLE_EXCEPTION_HANDLERS: dict[Any, Any] = {
    HTTPException: _http,
    DatabaseError: _database,
    UnavailableError: _unavailable,
    RedisError: _redis,
    OperationError: _operation,
    Exception: _unexpected,
}
