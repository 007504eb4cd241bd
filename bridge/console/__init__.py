"""The admin console: web pages served by the bridge itself, under `/console/` (and `server.root_path`).

    state.py      what the console and the admin API share in one API process (built in the app's lifespan)
    auth.py       users and roles, signed session cookies, CSRF tokens, trusted proxies
    security.py   the gate's rules (who may POST) and the security headers
    session.py    sign-in, sign-out, and the gate in front of every page
    reads.py      one read function per page (indexed queries, one Redis round trip)
    pages.py      the pages (GET); actions.py: what admins do (POST)
    jobs.py       bulk replays and purges in the background, progress in Redis
    playground.py mappings: render, diff, save    configview.py: settings, check, setup
    charts.py     the overview's SVG bar charts   render.py: templates and filters
    templates/    pages and their htmx partials (`_*.html`); static/: htmx (vendored) and the stylesheet

Pages are rendered on the server and work with JavaScript off; htmx (served by the bridge, no CDN)
enhances them. See README "The admin console".
"""

from __future__ import annotations

from typing import Any

from litestar import Router

__all__ = ["console_router", "template_config"]


def console_router() -> Router:
    """Every console route, behind the gate (see :mod:`bridge.console.session`)."""
    from bridge.console.actions import ACTION_HANDLERS
    from bridge.console.errors import CONSOLE_EXCEPTION_HANDLERS
    from bridge.console.pages import PAGE_HANDLERS
    from bridge.console.session import SESSION_HANDLERS, console_gate

    return Router(
        path="/console",
        route_handlers=[*SESSION_HANDLERS, *PAGE_HANDLERS, *ACTION_HANDLERS],
        before_request=console_gate,
        exception_handlers=CONSOLE_EXCEPTION_HANDLERS,
        include_in_schema=False,
    )


def template_config() -> Any:
    from bridge.console.render import template_config as config

    return config()
