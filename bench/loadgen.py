"""wrk as the load generator: light on CPU (it shares the 2 cores with the servers it measures), with a Lua
script that gives every request a unique call_session_id and reports latency percentiles as JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WrkResult", "run_wrk", "wrk_available"]

_SCRIPT = r"""
local template = [==[__TEMPLATE__]==]
local prefix = "__PREFIX__"
local path = "__PATH__"
local counter = 0
local count = 0
function setup(thread)
  count = count + 1
  thread:set("tid", count)
end
request = function()
  counter = counter + 1
  local body = (template:gsub("__CALL_ID__", prefix .. "-" .. tid .. "-" .. counter, 1))
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\"requests\":%d,\"duration_us\":%d,\"non2xx\":%d,\"socket_errors\":%d," ..
    "\"p50_us\":%d,\"p99_us\":%d,\"p999_us\":%d,\"max_us\":%d}\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
"""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, path: str, template: str, *, connections: int, seconds: float, threads: int = 2) -> WrkResult:
    """Drive `url + path` with unique-call POSTs; `template` holds `__CALL_ID__` where the id goes."""
    script = _SCRIPT.replace("__TEMPLATE__", template).replace("__PREFIX__", uuid.uuid4().hex[:8])
    script = script.replace("__PATH__", path)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
        script_path = Path(handle.name)
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t",
                str(min(threads, connections)),
                "-c",
                str(connections),
                "-d",
                f"{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                str(script_path),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    finally:
        script_path.unlink(missing_ok=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk produced no result: {out.stdout[-500:]} {out.stderr[-500:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        non2xx=data["non2xx"],
        socket_errors=data["socket_errors"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        p999_ms=data["p999_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )
