"""`agni-bridge run`: the whole bridge on one machine.

Starts an embedded Redis when `redis.url` is empty, then the API and the
worker as child processes (separate processes, so neither competes with the
other for the GIL), and watches them. SIGTERM/SIGINT stop the API first (no
new webhooks), then the worker (in-flight deliveries finish or are requeued),
then Redis (which flushes its append-only file). If a child dies, everything
stops with a non-zero exit, so systemd or Docker can restart the bridge as a
whole. Children get PR_SET_PDEATHSIG, so killing the supervisor with SIGKILL
leaves no orphans.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from bridge.db.engine import log_engine
from bridge.db.migrate import ensure_schema
from bridge.embedded_redis import EmbeddedRedis, die_with_parent
from bridge.errors import DatabaseError, SchemaError
from bridge.settings import Settings

__all__ = ["run_all"]

log = logging.getLogger("bridge.run")


def _spawn(command: str, config_path: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge", "--config", config_path, command],
        env=env,
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
        start_new_session=True,  # a terminal Ctrl-C reaches only the supervisor, which stops children in order
    )


def _stop(process: subprocess.Popen[bytes], name: str, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %.0fs; killing it", name, timeout)
        process.kill()
        process.wait()


def run_all(settings: Settings) -> int:
    # The call log's schema, before any child starts (a schema newer than this code stops here, clearly).
    engine = log_engine(settings)
    try:
        ensure_schema(engine)
    except SchemaError:
        raise
    except DatabaseError as exc:  # unreachable: the worker's log writer keeps trying; deliveries go on
        log.warning("%s; the log will catch up once it is reachable", exc)
    finally:
        engine.dispose()
    embedded: EmbeddedRedis | None = None
    env = dict(os.environ)
    if settings.redis.url:
        env["AGNI_BRIDGE_REDIS_URL"] = settings.redis.url
    else:
        data_dir = settings.resolve(settings.data_dir)
        embedded = EmbeddedRedis(Path(data_dir) / "redis", fsync=settings.redis.embedded_fsync)
        embedded.start()
        env["AGNI_BRIDGE_REDIS_URL"] = embedded.url
        log.info(
            "embedded Redis on 127.0.0.1:%d, data in %s (single-machine default; set redis.url to share one Redis)",
            embedded.port,
            embedded.data_dir,
        )
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    children: dict[str, subprocess.Popen[bytes]] = {}
    exit_code = 0
    try:
        children["worker"] = _spawn("worker", settings.config_path, env)
        children["api"] = _spawn("api", settings.config_path, env)
        log.info("bridge running: POST http://%s:%d/webhooks/agni", settings.server.host, settings.server.port)
        while not stopping:
            for name, child in children.items():
                code = child.poll()
                if code is not None:
                    log.error("%s exited with code %s; stopping the bridge", name, code)
                    exit_code = code or 1
                    stopping = True
                    break
            time.sleep(0.2)
    finally:
        if "api" in children:
            _stop(children["api"], "api", 15.0)
        if "worker" in children:
            _stop(children["worker"], "worker", settings.worker.shutdown_timeout_seconds + 10)
        if embedded is not None:
            embedded.stop()
        log.info("bridge stopped")
    return exit_code
