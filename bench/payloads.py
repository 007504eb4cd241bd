"""Webhook bodies with transcripts of a chosen size, made of real English sentences.

How well a payload compresses decides what the call log costs on disk, so its text must compress like
speech, not like a repeated filler line (which zstd shrinks fiftyfold). The sentences come from the
docstrings of Python's standard library — real prose, always on this machine, the same on every run of
one Python version — picked at random per turn (seeded), so a transcript has no more repetition inside
it than a conversation has. The rest of the body is the example payload (examples/call_completed.json)
with the call's own id, people, agent and analysis.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import random
import re
from typing import Any

from bench.procs import ROOT

__all__ = ["EXAMPLE", "call_payload", "sentences"]

EXAMPLE = ROOT / "examples" / "call_completed.json"

_MODULES = (
    "argparse", "asyncio", "collections", "csv", "datetime", "email", "functools", "http.client", "json",
    "logging", "os", "pathlib", "re", "shutil", "socket", "sqlite3", "subprocess", "tarfile", "threading",
    "unittest", "urllib.request", "zipfile", "decimal", "fractions", "statistics", "textwrap", "string",
    "heapq", "bisect", "calendar", "difflib", "pickle", "tempfile", "glob", "fnmatch", "uuid", "random",
    "math", "io", "codecs", "contextlib", "dataclasses", "enum", "inspect", "ast", "tokenize", "timeit",
    "gzip", "bz2", "lzma", "hashlib", "hmac", "secrets", "ssl", "selectors", "queue", "sched", "smtplib",
    "mailbox", "mimetypes", "base64", "html", "configparser", "locale", "gettext", "platform", "weakref",
    "copy", "pprint", "types", "operator", "itertools", "numbers", "struct", "zlib", "shelve", "filecmp",
    "fileinput", "traceback", "warnings",
)  # fmt: skip
_CODE = re.compile(r"[<>{}\[\]=\\|]|>>>|\(\)")


@functools.cache
def sentences() -> tuple[str, ...]:
    texts: list[str] = []
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        texts.append(module.__doc__ or "")
        for _, obj in inspect.getmembers(module, lambda o: inspect.isclass(o) or inspect.isroutine(o)):
            doc = getattr(obj, "__doc__", None)
            if isinstance(doc, str) and len(doc) > 80:
                texts.append(doc)
    corpus = " ".join(" ".join(text.split()) for text in texts)
    found = {s.strip() for s in re.split(r"(?<=[.!?])\s+", corpus)}
    return tuple(sorted(s for s in found if 20 < len(s) < 300 and not _CODE.search(s)))


@functools.cache
def _example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text())


def transcript(rng: random.Random, size: int, *, start: str = "2026-03-24T18:30:00Z") -> list[dict[str, Any]]:
    """Turns of 1–3 sentences, alternating agent and user, until the transcript's JSON reaches `size` bytes
    (the turns' own fields — id, time, role — included, as Agni sends them)."""
    pool = sentences()
    turns: list[dict[str, Any]] = []
    total = 2
    while total < size:
        text = " ".join(rng.choice(pool) for _ in range(rng.randint(1, 3)))
        turn = {
            "id": f"t-{len(turns) + 1:03d}",
            "timestamp_ms": len(turns) * 4100 + rng.randint(0, 900),
            "role": "agent" if len(turns) % 2 == 0 else "user",
            "message": {"content": text, "format": "text"},
            "created_at": start,
        }
        total += len(json.dumps(turn)) + 2
        turns.append(turn)
    return turns


def call_payload(call_id: str, rng: random.Random, *, transcript_bytes: int = 20_000, **data: Any) -> bytes:
    """A call.completed body for `call_id` whose transcript is about `transcript_bytes` of JSON."""
    document = json.loads(json.dumps(_example()))
    document["data"].update(call_session_id=call_id, transcripts=transcript(rng, transcript_bytes), **data)
    return json.dumps(document).encode()
