"""The ``$batch`` wire format: OData multipart/mixed requests with change sets, and their answers. Pure: no I/O.

A batch body is a MIME multipart/mixed document (OData 4.0 Part 1 §11.7, Dataverse
"Execute batch operations using the Web API"): each part is either one request
(``Content-Type: application/http``, ``Content-Transfer-Encoding: binary``, then
the request line, headers and body) or a *change set*, itself a multipart/mixed
document of such requests that Dataverse runs as one database transaction. Every
request of a change set carries a ``Content-ID`` unique within the batch.

The answer has one part per request part, in order. A change set that succeeded
answers with a nested multipart of one response per request (each with its
Content-ID); one that failed answers with a single response, the error that
rolled it back. :func:`decode` returns both shapes as a list of
:class:`Response` per request part, so the caller can tell them apart.

Lines end with CRLF, as MIME requires; :func:`decode` also accepts bare LF.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BatchFormatError", "Operation", "Part", "Response", "boundary_of", "decode", "encode"]

CRLF = b"\r\n"
_TOKEN = re.compile(r"^[A-Za-z0-9'()+_,\-./:=?]{1,70}$")  # RFC 2046 boundary characters (no spaces)


class BatchFormatError(ValueError):
    """The answer is not a well-formed multipart/mixed batch response."""


@dataclass(frozen=True)
class Operation:
    """One request inside a batch: method, absolute URL, JSON body (None: no body) and its own headers."""

    method: str
    url: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_id: str | None = None
    """Inside a change set: its Content-ID (unique within the batch); None numbers it by position."""


Part = Operation | Sequence[Operation]
"""A request part of a batch: one operation, or a sequence of operations forming one change set."""


@dataclass(frozen=True)
class Response:
    """One response inside a batch answer."""

    status: int
    reason: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    content_id: str | None = None

    def json(self) -> Any:
        """The body as JSON; None when there is none or it is not JSON."""
        try:
            return json.loads(self.body) if self.body.strip() else None
        except ValueError:
            return None


def encode(parts: Sequence[Part], *, boundary: str | None = None) -> tuple[str, bytes]:
    """The Content-Type header and body of a ``$batch`` request holding `parts`, in order."""
    outer = boundary or f"batch_{uuid.uuid4()}"
    out: list[bytes] = []
    numbers = iter(range(1, 1_000_000))
    for part in parts:
        out.append(f"--{outer}".encode())
        if isinstance(part, Operation):
            out.append(_http_part(part, None))
            continue
        inner = f"changeset_{uuid.uuid4()}"
        out.append(f"Content-Type: multipart/mixed; boundary={inner}".encode() + CRLF)
        for operation in part:
            out.append(f"--{inner}".encode())
            number = next(numbers)
            out.append(_http_part(operation, operation.content_id or str(number)))
        out.append(f"--{inner}--".encode())
    out.append(f"--{outer}--".encode())
    return f"multipart/mixed; boundary={outer}", CRLF.join(out) + CRLF


def _http_part(operation: Operation, content_id: str | None) -> bytes:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{operation.method} {operation.url} HTTP/1.1"]
    headers = dict(operation.headers)
    payload = b""
    if operation.body is not None:
        headers.setdefault("Content-Type", "application/json")
        payload = json.dumps(operation.body, ensure_ascii=False, separators=(",", ":")).encode()
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("")
    return CRLF.join(line.encode() for line in lines) + CRLF + payload


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a multipart Content-Type; BatchFormatError when it has none."""
    mime, _, params = content_type.partition(";")
    if mime.strip().lower() != "multipart/mixed":
        raise BatchFormatError(f"expected multipart/mixed, got {mime.strip() or 'no content type'!r}")
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip().strip('"')
            if _TOKEN.match(value):
                return value
    raise BatchFormatError("multipart/mixed without a usable boundary")


def decode(content_type: str, body: bytes) -> list[list[Response]]:
    """One list of responses per request part: a change set's responses in order, or the single one of a request
    (or of a change set that failed)."""
    answers: list[list[Response]] = []
    for headers, payload in _parts(body, boundary_of(content_type)):
        kind = headers.get("content-type", "")
        if kind.lower().startswith("multipart/mixed"):
            inner = [_response(h, p) for h, p in _parts(payload, boundary_of(kind))]
            answers.append(inner)
        else:
            answers.append([_response(headers, payload)])
    return answers


def _parts(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    delimiter = re.compile(rb"(?:\A|\r?\n)--" + re.escape(boundary.encode()) + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    matches = list(delimiter.finditer(body))
    if not matches:
        raise BatchFormatError(f"no part delimited by {boundary!r}")
    if not matches[-1].group(1):
        raise BatchFormatError(f"the multipart body ends without its closing delimiter --{boundary}--")
    parts = []
    for start, end in itertools.pairwise(matches):
        if start.group(1):
            raise BatchFormatError("a part follows the closing delimiter")
        parts.append(_split_headers(body[start.end() : end.start()]))
    return parts


def _split_headers(block: bytes) -> tuple[dict[str, str], bytes]:
    found = re.search(rb"\r?\n\r?\n", block)
    if block.startswith((b"\r\n", b"\n")):  # no headers at all
        return {}, block.split(b"\n", 1)[1]
    if found is None:
        return _headers(block), b""
    return _headers(block[: found.start()]), block[found.end() :]


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw in block.decode("utf-8", "replace").splitlines():
        name, sep, value = raw.partition(":")
        if not sep:
            raise BatchFormatError(f"malformed header line {raw[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def _response(part_headers: dict[str, str], payload: bytes) -> Response:
    if not part_headers.get("content-type", "").lower().startswith("application/http"):
        raise BatchFormatError(f"a batch part of type {part_headers.get('content-type')!r}, not application/http")
    status_line, _, rest = payload.partition(b"\n")
    match = re.match(rb"^HTTP/1\.[01] (\d{3})(?: (.*))?$", status_line.rstrip(b"\r"))
    if match is None:
        raise BatchFormatError(f"not an HTTP status line: {status_line[:80]!r}")
    headers, body = _split_headers(rest) if rest.strip() else ({}, b"")
    reason = (match.group(2) or b"").decode("utf-8", "replace")
    return Response(int(match.group(1)), reason, headers, body.rstrip(b"\r\n"), part_headers.get("content-id"))
