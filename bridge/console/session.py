"""Signing in and out, and the gate in front of every console page (see :mod:`bridge.console.auth`)."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie

from bridge.console.auth import (
    PRESESSION_COOKIE,
    PRESESSION_SECONDS,
    SESSION_COOKIE,
    client_address,
    find_user,
    is_https,
)
from bridge.console.security import authenticate, form_fields, refuse_post, revoked_key, signer
from bridge.console.state import ConsoleState
from bridge.console.web import console_state, error_page, first, page, redirect

__all__ = ["SESSION_HANDLERS", "console_gate"]

log = logging.getLogger("bridge.console")


def _cookie_path(state: ConsoleState) -> str:
    return f"{state.root}/"


def _secure(request: Request[Any, Any, Any], state: ConsoleState) -> bool:
    peer = request.client.host if request.client else ""
    return is_https(request.url.scheme, peer, request.headers, state.proxies)


def _next(state: ConsoleState, value: str) -> str:
    """Where to go after signing in: a console path of this bridge, never another site."""
    home = state.url("/console/")
    if value.startswith(state.url("/console")) and not value.startswith("//") and "\\" not in value:
        return value
    return home


async def console_gate(request: Request[Any, Any, Any]) -> Any:
    """before_request of every console route: off → 404; not signed in → the sign-in page (GET) or 401;
    a POST → CSRF and role checks. Routes marked `public` (sign-in, static files) pass."""
    state = console_state(request)
    opt = request.route_handler.opt
    if not state.enabled:
        return error_page(request, 404, "The console is off", "Configure admin.users (or admin.token) to use it.")
    if opt.get("public"):
        return None
    me = await authenticate(request, state)
    if me is None:
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return redirect(state.url("/console/login") + "?next=" + quote(target, safe=""))
        return error_page(request, 401, "Signed out", "Your session has ended: sign in again.")
    request.state.principal = me
    if request.method == "POST":
        refused = await refuse_post(request, me, admin_only=not opt.get("any_role"))
        if refused is not None:
            return error_page(request, refused[0], "Not allowed", refused[1])
    return None


@get("/login", opt={"public": True})
async def login_form(request: Request[Any, Any, Any]) -> Any:
    state = console_state(request)
    wanted = _next(state, request.query_params.get("next", ""))
    if await authenticate(request, state) is not None:
        return redirect(wanted)
    nonce = secrets.token_hex(16)
    token = (await signer(state)).signin_token(nonce)
    response = page(request, "login.html", signin_csrf=token, next=wanted, error="")
    response.cookies.append(_presession_cookie(state, nonce, _secure(request, state)))
    return response


def _presession_cookie(state: ConsoleState, nonce: str, secure: bool) -> Cookie:
    return Cookie(
        key=PRESESSION_COOKIE,
        value=nonce,
        path=state.url("/console/"),
        max_age=PRESESSION_SECONDS,
        httponly=True,
        secure=secure,
        samesite="strict",
    )


@post("/login", opt={"public": True}, status_code=303)
async def login(request: Request[Any, Any, Any]) -> Any:
    state = console_state(request)
    fields = await form_fields(request)
    wanted = _next(state, first(fields, "next"))
    peer = request.client.host if request.client else ""
    address = client_address(peer, request.headers, state.proxies)
    minute = int(time.time() // 60)
    limit_key = f"{state.keys.prefix}:console:signin:{address}:{minute}"
    failures = int(await state.aredis.get(limit_key) or 0)
    sign = await signer(state)

    def again(status: int, message: str) -> Any:
        nonce = secrets.token_hex(16)
        response = page(
            request, "login.html", status_code=status, signin_csrf=sign.signin_token(nonce), next=wanted, error=message
        )
        response.cookies.append(_presession_cookie(state, nonce, _secure(request, state)))
        return response

    if failures >= state.settings.admin.login_attempts_per_minute:
        log.warning("console sign-in from %s refused: too many failed attempts this minute", address)
        response = again(429, "Too many failed sign-ins from your address. Wait a minute and try again.")
        response.headers["retry-after"] = str(60 - int(time.time()) % 60)
        return response
    nonce = request.cookies.get(PRESESSION_COOKIE, "")
    offered = first(fields, "csrf")
    if not nonce or not offered or not hmac.compare_digest(offered.encode(), sign.signin_token(nonce).encode()):
        return again(403, "The sign-in form expired or did not come from this page. Please try again.")
    user = find_user(state.users, first(fields, "token").strip())
    if user is None:
        pipe = state.aredis.pipeline(transaction=False)
        pipe.incr(limit_key)
        pipe.expire(limit_key, 120)
        await pipe.execute()
        log.warning("console sign-in from %s refused: wrong token", address)
        return again(401, "That token is not valid.")
    lifetime = state.settings.admin.session_hours * 3600
    cookie_value, _me = sign.issue(user, lifetime)
    log.info("console sign-in: %s (%s) from %s", user.name, user.role, address)
    secure = _secure(request, state)
    cookies = [
        Cookie(
            key=SESSION_COOKIE,
            value=cookie_value,
            path=_cookie_path(state),
            max_age=int(lifetime),
            httponly=True,
            secure=secure,
            samesite="strict",
        ),
        Cookie(key=PRESESSION_COOKIE, value="", path=state.url("/console/"), max_age=0, httponly=True,
               secure=secure, samesite="strict"),
    ]
    return redirect(wanted, cookies=cookies)


@post("/logout", opt={"any_role": True}, status_code=303)
async def logout(request: Request[Any, Any, Any]) -> Response[bytes]:
    state = console_state(request)
    me = request.state.principal
    if me.session_id:
        remaining = max(1, int(me.expires - time.time()))
        await state.aredis.set(revoked_key(state, me.session_id), "1", ex=remaining)
    gone = Cookie(
        key=SESSION_COOKIE, value="", path=_cookie_path(state), max_age=0, httponly=True, samesite="strict",
        secure=_secure(request, state),
    )  # fmt: skip
    return redirect(state.url("/console/login"), cookies=[gone])


SESSION_HANDLERS = [login_form, login, logout]
