"""ASGI factories the benchmark serves (uvicorn or granian, `--factory`).

`bridge_app` is the product's own app, plus a decode-only route on the same server: the "ceiling" that
shows what the HTTP stack and one msgspec decode cost, without Redis.
"""

from __future__ import annotations

from litestar import MediaType, Response, post
from litestar.params import RawBody

from bridge.app import create_app
from bridge.errors import EventDecodeError
from bridge.events import decode_call, decode_envelope

_OK = b'{"status":"ok"}'


@post("/bench/decode-only", status_code=200)
async def decode_only(body: RawBody) -> Response[bytes]:
    try:
        decode_call(decode_envelope(body))
    except EventDecodeError:
        return Response(b'{"status":"invalid"}', status_code=400, media_type=MediaType.JSON)
    return Response(_OK, media_type=MediaType.JSON)


def bridge_app():
    app = create_app()
    app.register(decode_only)
    return app


def previous_layout_app():
    """The product's app with the previous Redis layout's ingest script (bench/legacy_ingest.py): the
    baseline the current ingest is compared with, same server, same group commit, same job messages."""
    from bench.legacy_ingest import PreviousLayoutIngestor

    app = create_app()

    async def swap_ingestor(app) -> None:  # runs after the app's lifespan has built its ingestor
        current = app.state.intake.ingestor
        previous = PreviousLayoutIngestor(
            current.client,
            current.keys,
            dedupe_ttl_seconds=int(current._dedupe_ttl),
            retention_seconds=int(current._retention),
        )
        await previous.load()
        app.state.intake.ingestor = previous

    app.on_startup.append(swap_ingestor)
    return app
