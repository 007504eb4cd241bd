"""Serving under `server.root_path` behind a reverse proxy, whether or not the proxy strips the prefix.

A proxy that forwards `/agni/console/calls` unchanged and one that strips it to `/console/calls` both work:
a request whose path starts with the root path gets it as the ASGI `root_path` (Litestar routes on what
follows it), and the console builds every link and cookie path with the prefix either way.
"""

from __future__ import annotations

from typing import Any

__all__ = ["under_root_path"]


def under_root_path(app: Any, root_path: str) -> Any:
    if not root_path:
        return app

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and not scope.get("root_path"):
            path = scope["path"]
            if path == root_path or path.startswith(root_path + "/"):
                scope = {**scope, "root_path": root_path}
        await app(scope, receive, send)

    return asgi
