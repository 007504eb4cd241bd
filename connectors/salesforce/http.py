"""The HTTP session every Salesforce request goes through: trust, timeouts and the daily API budget.

One :class:`requests.Session` carries the token requests and every REST call
simple-salesforce makes, through :class:`SalesforceAdapter`, which

* verifies TLS against the CAs of the bridge's one trust rule (:mod:`bridge.tls`:
  ``ca_bundle``, else SSL_CERT_FILE/DIR, else REQUESTS_CA_BUNDLE, else certifi). requests
  lets ``REQUESTS_CA_BUNDLE`` override a session's ``verify`` (psf/requests#3829),
  and turning ``trust_env`` off would also drop the proxy variables a corporate
  network needs; setting ``verify`` at the adapter, on every request, the last
  step before the socket, keeps both working;
* applies a default timeout (simple-salesforce sets none);
* reads ``Sforce-Limit-Info: api-usage=N/M`` from every answer into
  :class:`ApiUsage`, which, above the configured share of the org's daily
  allocation, logs a warning (at most once a minute) and spaces requests out —
  the closer to the limit, the longer the pause — so the bridge does not eat
  the allocation the org's people need.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from bridge import __version__
from bridge.tls import Trust

__all__ = ["ApiUsage", "SalesforceAdapter", "build_session"]

_USAGE = re.compile(r"(?:^|[^-])api-usage=(\d+)/(\d+)")
WARN_EVERY_SECONDS = 60.0
MAX_PAUSE_SECONDS = 2.0


class ApiUsage:
    """The org's latest known daily API usage, shared by every thread of the connector."""

    def __init__(
        self,
        warning_share: float,
        log: logging.Logger,
        *,
        max_pause: float = MAX_PAUSE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.warning_share = warning_share
        self.max_pause = max_pause
        self.used: int | None = None
        self.total: int | None = None
        self._log = log
        self._clock = clock
        self._warned_at: float | None = None
        self._lock = threading.Lock()
        self.quota: Any = None
        """A bridge.quota.QuotaRecorder when the connector has Redis: the console's overview shows the usage."""

    def observe(self, header: str | None) -> None:
        """Record a `Sforce-Limit-Info` header value (ignored when absent or unreadable)."""
        found = _USAGE.search(header or "")
        if found is None:
            return
        used, total = int(found.group(1)), int(found.group(2))
        if self.quota is not None:
            self.quota.salesforce(used, total)
        with self._lock:
            self.used, self.total = used, total
            if total <= 0 or used / total < self.warning_share:
                return
            now = self._clock()
            if self._warned_at is not None and now - self._warned_at < WARN_EVERY_SECONDS:
                return
            self._warned_at = now
        self._log.warning(
            "Salesforce API usage is %d/%d (%.0f%% of the daily allocation, warning above %.0f%%); "
            "slowing down to leave room for the org",
            used,
            total,
            100 * used / total,
            100 * self.warning_share,
        )

    @property
    def share(self) -> float | None:
        with self._lock:
            if self.used is None or not self.total:
                return None
            return self.used / self.total

    def pause_seconds(self) -> float:
        """How long to wait before the next request: 0 below the warning share, up to `max_pause` at the limit."""
        share = self.share
        if share is None or share < self.warning_share:
            return 0.0
        headroom = max(1.0 - self.warning_share, 1e-9)
        return min(1.0, (share - self.warning_share) / headroom) * self.max_pause


class SalesforceAdapter(HTTPAdapter):
    """An HTTPAdapter that pins the trusted CAs, defaults the timeout and watches the API budget."""

    def __init__(
        self,
        *,
        trust: Trust,
        timeout: float,
        usage: ApiUsage,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self.trust = trust
        self.timeout = timeout
        self.usage = usage
        self._sleep = sleep

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["verify"] = self.trust.requests_verify()  # whatever requests read from the environment
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = (min(self.timeout, 10.0), self.timeout)
        if "/services/data/" in (request.url or ""):  # token requests do not count against the allocation
            pause = self.usage.pause_seconds()
            if pause > 0:
                self._sleep(pause)
        response = super().send(request, *args, **kwargs)
        self.usage.observe(response.headers.get("Sforce-Limit-Info"))
        return response


def build_session(*, trust: Trust, timeout: float, usage: ApiUsage) -> requests.Session:
    """The session for one connector: proxies from the environment still apply; trust comes from `trust`."""
    session = requests.Session()
    session.mount("https://", SalesforceAdapter(trust=trust, timeout=timeout, usage=usage))
    session.headers["User-Agent"] = f"agni-bridge/{__version__}"
    return session
