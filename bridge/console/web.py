"""What every console handler shares: the state, the signed-in user, rendering a page or its htmx partial,
redirects, form bodies, and the error page."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from litestar import Request, Response
from litestar.response import Template

from bridge.console.auth import Principal
from bridge.console.security import NO_STORE, SECURITY_HEADERS
from bridge.console.state import ConsoleState

__all__ = ["console_state", "error_page", "form", "is_partial", "page", "principal", "redirect"]


def console_state(request: Request[Any, Any, Any]) -> ConsoleState:
    return request.app.state.console


def principal(request: Request[Any, Any, Any]) -> Principal | None:
    return getattr(request.state, "principal", None)


def is_partial(request: Request[Any, Any, Any]) -> bool:
    """An htmx request for a fragment (a history restore wants the whole page)."""
    headers = request.headers
    return headers.get("hx-request") == "true" and headers.get("hx-history-restore-request") != "true"


def page(
    request: Request[Any, Any, Any], template: str, *, status_code: int = 200, nav: str = "", **context: Any
) -> Template:
    state = console_state(request)
    me = principal(request)
    base = {
        "root": state.root,
        "c": state.url("/console"),
        "me": me,
        "csrf": me.csrf if me is not None else "",
        "nav": nav,
        "writable": state.settings.admin.mappings_writable,
    }
    return Template(
        template_name=template,
        context={**base, **context},
        headers={**SECURITY_HEADERS, **NO_STORE},
        status_code=status_code,
        media_type="text/html; charset=utf-8",
    )


def error_page(request: Request[Any, Any, Any], status_code: int, title: str, message: str) -> Template:
    return page(request, "error.html", status_code=status_code, title=title, message=message)


def redirect(location: str, *, cookies: list[Any] | None = None) -> Response[bytes]:
    return Response(
        b"", status_code=303, headers={"location": location, **SECURITY_HEADERS, **NO_STORE}, cookies=cookies or []
    )


def form(body: bytes) -> dict[str, list[str]]:
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def first(fields: dict[str, list[str]], name: str, default: str = "") -> str:
    values = fields.get(name)
    return values[0] if values else default
