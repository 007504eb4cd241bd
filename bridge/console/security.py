"""The gate every console and admin request passes, and the headers every console answer carries.

:func:`authenticate` finds the :class:`~bridge.console.auth.Principal` (Bearer token or session cookie).
:func:`refuse_post` applies the rules for state-changing requests, the same for the console's forms, htmx
and the JSON API: a session must present its CSRF token (form field `csrf` or header `X-CSRF-Token`), a
browser's cross-site request is refused, and only admins may act (viewers get 403 on every POST, whatever
the console shows them). Sign-in and sign-out are the only POSTs a viewer (or nobody) may make.

Headers: a Content-Security-Policy that allows nothing but the bridge's own scripts, styles and images (no
inline script, no inline style, no eval — htmx is configured by a meta tag to need none of them), no
framing, no MIME sniffing, no referrer (so a deep link into the CRM does not tell it the console's URLs), and
no caching of pages that hold call data.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qs

from bridge.console.auth import SESSION_COOKIE, Principal, Signer, find_user
from bridge.console.state import ConsoleState
from bridge.webhook import bearer_token

__all__ = ["SECURITY_HEADERS", "authenticate", "form_fields", "refuse_post", "revoked_key"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
NO_STORE = {"cache-control": "no-store", "vary": "HX-Request, Cookie"}


def revoked_key(state: ConsoleState, session_id: str) -> str:
    return f"{state.keys.prefix}:console:revoked:{session_id}"


async def signer(state: ConsoleState) -> Signer:
    return Signer(await state.session_keys.key(state.aredis))


async def authenticate(request: Any, state: ConsoleState) -> Principal | None:
    """Bearer token first (scripts), else the session cookie; None when neither is valid."""
    offered = bearer_token(request.headers)
    if offered:
        user = find_user(state.users, offered)
        return Principal(user.name, user.role, "bearer") if user is not None else None
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    sign = await signer(state)
    found = sign.read(cookie, state.users)
    if found is None:
        return None
    user, session_id, expires = found
    if await state.aredis.exists(revoked_key(state, session_id)):
        return None
    return sign.principal(user, session_id, expires)


async def form_fields(request: Any) -> dict[str, list[str]]:
    """The urlencoded form of a POST (empty for other bodies); Litestar caches the body for the handler."""
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return {}
    body = await request.body()
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


async def refuse_post(request: Any, principal: Principal, *, admin_only: bool = True) -> tuple[int, str] | None:
    """(status, reason) when this state-changing request must be refused; None when it may go on."""
    if principal.via == "session":
        if request.headers.get("sec-fetch-site", "") == "cross-site":
            return 403, "cross-site request refused"
        offered = request.headers.get("x-csrf-token") or ""
        if not offered:
            offered = ((await form_fields(request)).get("csrf") or [""])[0]
        if not offered or not hmac.compare_digest(offered.encode(), principal.csrf.encode()):
            return 403, "missing or wrong CSRF token: reload the page and try again"
    if admin_only and not principal.is_admin:
        return 403, f"{principal.name} is a viewer: only admins may do this"
    return None
