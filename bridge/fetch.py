"""Fetching a URL that came from a webhook (a call recording), safely.

A `recording_url` is attacker-influenced data: fetched naively it could make
the worker read cloud metadata (169.254.169.254), an internal admin page, or a
multi-gigabyte file. `fetch_limited` therefore:

* accepts only https (http only when explicitly allowed, for tests);
* requires the host to be on an allowlist (`storage.agniai.com`, `*.agniai.com`);
* resolves the host itself and refuses private, loopback, link-local,
  multicast, reserved and unspecified addresses (unless allowed), then
  connects to the address it vetted — pinning it, so DNS cannot answer
  differently a second time (rebinding) — while TLS still verifies the
  certificate against the host name (SNI), trusting the CAs of the bridge's one
  rule (:mod:`bridge.tls`: the connector's ca_bundle, SSL_CERT_FILE,
  REQUESTS_CA_BUNDLE, certifi) — and never a proxy, which would resolve the
  host itself;
* follows at most a few redirects, vetting every hop the same way;
* streams the body and stops at `max_bytes`, within a total time budget.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urljoin

import httpx

from bridge.errors import RetryableError, UnsafeURLError
from bridge.tls import Trust, resolve_trust, ssl_error_in, ssl_reason, tls_failure

__all__ = ["FetchedFile", "fetch_limited", "host_allowed", "vet_address"]

Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class FetchedFile:
    content: bytes
    content_type: str
    filename: str
    url: str


def _system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RetryableError(f"cannot resolve {host}: {exc.strerror}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """Exact names, or `*.example.com` / `.example.com` for any subdomain (not the bare domain)."""
    host = host.lower().rstrip(".")
    for pattern in allowed:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            pattern = pattern[1:]
        if (pattern.startswith(".") and host.endswith(pattern)) or host == pattern:
            return True
    return False


def vet_address(address: str, *, allow_private: bool) -> None:
    """Refuse addresses inside the machine or its network (SSRF), unless explicitly allowed."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        raise UnsafeURLError(f"refusing to fetch from {ip}: not a routable unicast address")
    if not allow_private and (ip.is_private or ip.is_loopback or ip.is_link_local or not ip.is_global):
        raise UnsafeURLError(f"refusing to fetch from {ip}: private, loopback or link-local address")


def fetch_limited(
    url: str,
    *,
    allowed_hosts: Sequence[str],
    max_bytes: int,
    timeout: float = 30.0,
    allow_private: bool = False,
    allow_http: bool = False,
    max_redirects: int = 3,
    trust: Trust | None = None,
    resolver: Resolver | None = None,
) -> FetchedFile:
    """Download `url` under the rules in the module docstring; UnsafeURLError when a rule refuses it.

    `trust` is the connector's :func:`bridge.tls.resolve_trust` (None: the rule without a ca_bundle)."""
    resolve = resolver or _system_resolver
    deadline = time.monotonic() + timeout
    current = url
    trust = trust or resolve_trust()
    verify = trust.ssl_context()
    # trust_env=False: no proxy (the vetted address is the one connected to) and no SSL_CERT_* of httpx's own;
    # the environment's say in trust already went through resolve_trust.
    with httpx.Client(verify=verify, timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(max_redirects + 1):
            target = httpx.URL(current)
            if target.scheme != "https" and not (allow_http and target.scheme == "http"):
                raise UnsafeURLError(f"refusing to fetch {target.scheme or 'a relative'} URL: https only")
            host = target.host
            if not host or not host_allowed(host, allowed_hosts):
                raise UnsafeURLError(f"host {host!r} is not in recording_hosts")
            port = target.port or (443 if target.scheme == "https" else 80)
            addresses = [host] if _is_ip(host) else resolve(host, port)
            if not addresses:
                raise RetryableError(f"{host} resolved to no address")
            for address in addresses:
                vet_address(address, allow_private=allow_private)
            pinned = target.copy_with(host=addresses[0])
            request = client.build_request(
                "GET", pinned, headers={"host": target.netloc.decode()}, extensions={"sni_hostname": host}
            )
            try:
                response = client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                raise RetryableError(f"fetching from {host} timed out") from exc
            except httpx.TransportError as exc:
                tls = ssl_error_in(exc)
                if tls is not None:
                    raise RetryableError(tls_failure(f"fetching from {host}", ssl_reason(tls), trust)) from exc
                raise RetryableError(f"fetching from {host} failed: {type(exc).__name__}") from exc
            try:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    current = urljoin(str(target), location)
                    continue
                if response.status_code != 200:
                    error = (
                        RetryableError if response.status_code >= 500 or response.status_code == 429 else UnsafeURLError
                    )
                    raise error(f"fetching from {host} answered HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise UnsafeURLError(f"file is {int(declared)} bytes, over the {max_bytes}-byte limit")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise UnsafeURLError(f"file exceeds the {max_bytes}-byte limit")
                    if time.monotonic() > deadline:
                        raise RetryableError(f"fetching from {host} took longer than {timeout:.0f}s")
                    chunks.append(chunk)
            except httpx.TransportError as exc:
                raise RetryableError(f"fetching from {host} failed: {type(exc).__name__}") from exc
            finally:
                response.close()
            filename = unquote(target.path.rsplit("/", 1)[-1]) or "recording"
            content_type = response.headers.get("content-type", "application/octet-stream").split(";")[0]
            return FetchedFile(b"".join(chunks), content_type, filename, str(target))
    raise UnsafeURLError(f"more than {max_redirects} redirects")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
