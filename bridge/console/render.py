"""The console's Jinja2 environment (through Litestar's template engine) and its filters.

Autoescaping is on for every template and nothing from a payload is ever marked safe: a transcript that
says `<script>` is shown as those characters. Links taken from data (a recording URL, a CRM deep link) are
kept only when they are http(s) URLs (`safe_url`), so `javascript:` never becomes a link.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlencode, urlsplit

from jinja2 import Environment, PackageLoader, Undefined, select_autoescape
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

__all__ = ["ASSETS", "asset_digest", "template_config"]

ASSETS = {
    "htmx.min.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "htmx.LICENSE": "text/plain; charset=utf-8",
}


@cache
def asset_bytes(name: str) -> bytes:
    return resources.files("bridge.console").joinpath("static", name).read_bytes()


@cache
def asset_digest(name: str) -> str:
    return hashlib.sha256(asset_bytes(name)).hexdigest()[:10]


def when(ms: Any) -> str:
    if isinstance(ms, Undefined) or ms in (None, "", 0):
        return "—"
    value = float(ms)
    if value < 10_000_000_000:  # seconds, not milliseconds
        value *= 1000
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: Any) -> str:
    if isinstance(seconds, Undefined) or seconds in (None, ""):
        return "—"
    total = int(float(seconds))
    minutes, secs = divmod(total, 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def millis(value: Any) -> str:
    if isinstance(value, Undefined) or value in (None, ""):
        return "—"
    number = float(value)
    return f"{number / 1000:.1f} s" if number >= 1000 else f"{number:.0f} ms"


def safe_url(url: Any) -> str:
    """The URL when it is http(s) with a host; otherwise "" (never a javascript: or data: link)."""
    if not isinstance(url, str):
        return ""
    parts = urlsplit(url.strip())
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else ""


def shown(value: Any) -> str:
    """A record value as text: strings as they are, everything else as JSON."""
    if value is None:
        return "(omitted)"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def pretty(value: Any) -> str:
    """JSON for reading (escaped by the template like any text, unlike Jinja's `tojson`)."""
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)


def query(params: dict[str, Any], **changes: Any) -> str:
    """A query string from the current filters with some changed (empty values dropped)."""
    merged = {**params, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("bridge.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, duration=duration, millis=millis, safe_url=safe_url, shown=shown, pretty=pretty)
    env.globals.update(query=query, asset_digest=asset_digest)
    return env


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment()))
