"""The fake Dataverse's side of ``$batch``: a strict multipart/mixed request parser and the response writer.

Written independently of the connector's :mod:`connectors.dynamics.batch` (a fake
that shares the client's parser would accept whatever the client gets wrong).
What it insists on, as OData 4.0 §11.7 and Dataverse's batch documentation say:

* ``Content-Type: multipart/mixed; boundary=…`` on the batch and on each change set;
* CRLF line endings, a delimiter line per part and the closing ``--boundary--``;
* every request part typed ``application/http`` with ``Content-Transfer-Encoding:
  binary``, a request line ``METHOD URL HTTP/1.1``, headers, a blank line, the body;
* a ``Content-ID`` on every request of a change set, unique within the batch;
  no GET inside a change set, no change set inside a change set;
* at most 1,000 requests in all.

A violation raises :class:`BatchError` (answered 400 by the fake). The response is
multipart/mixed too: one part per request part, a successful change set as a
nested ``changesetresponse`` multipart (each response with its Content-ID), a
failed one as the single response that rolled it back.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

__all__ = ["MAX_OPERATIONS", "BatchError", "InnerRequest", "InnerResponse", "parse_batch", "write_batch"]

MAX_OPERATIONS = 1000
CRLF = "\r\n"
REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    412: "Precondition Failed",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


class BatchError(Exception):
    """The batch body is not a well-formed OData batch."""


@dataclass
class InnerRequest:
    method: str
    url: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    content_id: str | None = None


@dataclass
class InnerResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_id: str | None = None


Part = InnerRequest | list[InnerRequest]


def boundary(content_type: str) -> str:
    mime, _, params = content_type.partition(";")
    if mime.strip().lower() != "multipart/mixed":
        raise BatchError(f"The content type '{content_type}' is not multipart/mixed.")
    found = re.search(r'boundary="?([^";\s]+)"?', params)
    if not found:
        raise BatchError("The multipart/mixed content type has no boundary.")
    return found.group(1)


def parse_batch(content_type: str, body: bytes) -> list[Part]:
    text = body.decode("utf-8")
    outer = boundary(content_type)
    parts: list[Part] = []
    seen_ids: set[str] = set()
    for headers, payload in _split(text, outer):
        kind = headers.get("content-type", "")
        if kind.lower().startswith("multipart/mixed"):
            inner = boundary(kind)
            if inner == outer:
                raise BatchError("A change set must not reuse the batch boundary.")
            changeset = []
            for inner_headers, inner_payload in _split(payload, inner):
                if inner_headers.get("content-type", "").lower().startswith("multipart/"):
                    raise BatchError("Change sets cannot be nested.")
                request = _request(inner_headers, inner_payload)
                if request.content_id is None:
                    raise BatchError("Every request in a change set needs a Content-ID header.")
                if request.content_id in seen_ids:
                    raise BatchError(f"The Content-ID '{request.content_id}' is used twice in the batch.")
                if request.method == "GET":
                    raise BatchError("GET requests are not allowed within change sets.")
                seen_ids.add(request.content_id)
                changeset.append(request)
            if not changeset:
                raise BatchError("A change set holds no request.")
            parts.append(changeset)
        else:
            parts.append(_request(headers, payload))
    count = sum(len(p) if isinstance(p, list) else 1 for p in parts)
    if count > MAX_OPERATIONS:
        raise BatchError(f"The batch holds {count} requests; the maximum is {MAX_OPERATIONS}.")
    return parts


def write_batch(answers: list[InnerResponse | list[InnerResponse]]) -> tuple[str, bytes]:
    """The Content-Type and body of a batch response."""
    outer = f"batchresponse_{uuid.uuid4()}"
    lines: list[str] = []
    for answer in answers:
        lines.append(f"--{outer}")
        if isinstance(answer, list):
            inner = f"changesetresponse_{uuid.uuid4()}"
            lines += [f"Content-Type: multipart/mixed; boundary={inner}", ""]
            for response in answer:
                lines += [f"--{inner}", *_response(response)]
            lines.append(f"--{inner}--")
        else:
            lines += _response(answer)
    lines.append(f"--{outer}--")
    return f"multipart/mixed; boundary={outer}", (CRLF.join(lines) + CRLF).encode()


def _response(response: InnerResponse) -> list[str]:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if response.content_id is not None:
        lines.append(f"Content-ID: {response.content_id}")
    lines += ["", f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    lines += ["", response.body.decode()]
    return lines


def _split(text: str, mark: str) -> list[tuple[dict[str, str], str]]:
    delimiter = f"--{mark}"
    if "\n" in text.replace("\r\n", ""):
        raise BatchError("Batch lines must end with CRLF.")
    if not text.startswith(delimiter + CRLF) and f"{CRLF}{delimiter}{CRLF}" not in text:
        raise BatchError(f"No part starts with the boundary delimiter '{delimiter}'.")
    closing = f"{CRLF}{delimiter}--"
    if closing not in text:
        raise BatchError(f"The multipart body has no closing delimiter '{delimiter}--'.")
    body = text[: text.index(closing)]
    chunks = re.split(rf"(?:^|\r\n){re.escape(delimiter)}[ \t]*\r\n", body)
    parts = []
    for chunk in chunks[1:]:  # chunks[0] is the preamble
        head, blank, payload = chunk.partition(CRLF + CRLF)
        if not blank:
            raise BatchError("A batch part has no blank line after its headers.")
        parts.append((_headers(head), payload))
    if not parts:
        raise BatchError("The batch holds no part.")
    return parts


def _headers(block: str) -> dict[str, str]:
    headers = {}
    for line in block.split(CRLF) if block else []:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise BatchError(f"Malformed header line '{line}'.")
        headers[name.strip().lower()] = value.strip()
    return headers


def _request(headers: dict[str, str], payload: str) -> InnerRequest:
    if headers.get("content-type", "").lower() != "application/http":
        raise BatchError("Each batch request part needs 'Content-Type: application/http'.")
    if headers.get("content-transfer-encoding", "").lower() != "binary":
        raise BatchError("Each batch request part needs 'Content-Transfer-Encoding: binary'.")
    request_line, _, rest = payload.partition(CRLF)
    match = re.fullmatch(r"(GET|POST|PATCH|PUT|DELETE) (\S+) HTTP/1\.1", request_line)
    if match is None:
        raise BatchError(f"Malformed request line '{request_line[:100]}'.")
    if rest.startswith(CRLF):
        inner_headers, body = {}, rest[2:]
    else:
        head, blank, body = rest.partition(CRLF + CRLF)
        if not blank:
            raise BatchError("A batch request has no blank line after its headers.")
        inner_headers = _headers(head)
    return InnerRequest(match.group(1), match.group(2), inner_headers, body.encode(), headers.get("content-id"))
