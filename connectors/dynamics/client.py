"""The connector's one door to Dataverse: headers, token, budgets, error translation and in-call retries.

Every request

1. waits for the application user's shared budgets (:mod:`connectors.dynamics.limits`);
2. carries the OData headers Dataverse expects (``OData-Version: 4.0``,
   ``OData-MaxVersion: 4.0``, ``Accept: application/json``, ``Content-Type:
   application/json`` with a body) and the cached bearer token
   (:mod:`connectors.dynamics.auth`), never logged;
3. on 401 renews the token once and is sent again; a second 401 is permanent
   (the application user is missing, disabled, or lacks a security role);
4. comes back as the answer, or as one of the bridge's errors
   (:mod:`connectors.dynamics.errors`). A 429 pauses every worker for its
   Retry-After (the limit is the application user's): a short one is waited out
   in-call; a long one, or one still there after the in-call attempts, raises
   PausedError, so the call stays queued without using up a retry.

Every request this connector sends is safe to repeat — reads, create-only writes
(``If-None-Match: *``: a repeat is answered 412, "already exists"), updates of an
existing record by id, and ``$batch`` requests made of those — so transient
failures are retried in-call per ``delivery.http_attempts``, creates included.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import httpx

from bridge import __version__
from bridge.connector import Services
from bridge.errors import PausedError, PermanentError, RetryableError
from bridge.http import retrying, translate_transport_errors
from bridge.tls import resolve_trust
from connectors.dynamics import batch
from connectors.dynamics.auth import Token, TokenProvider
from connectors.dynamics.config import DynamicsConfig
from connectors.dynamics.errors import error_from_answer
from connectors.dynamics.limits import Limits
from connectors.dynamics.odata import encode_query

__all__ = ["ODATA_HEADERS", "DataverseClient"]

ODATA_HEADERS = {"OData-Version": "4.0", "OData-MaxVersion": "4.0", "Accept": "application/json"}
JSON = "application/json"
CONTINUE_ON_ERROR = "odata.continue-on-error"
DEFAULT_THROTTLE_SECONDS = 5.0


class DataverseClient:
    """Web API requests against one environment, safe to share between worker threads."""

    def __init__(self, config: DynamicsConfig, services: Services, *, limits: Limits | None = None) -> None:
        self.config = config
        self.base = config.base_url
        self.delivery = services.delivery
        self.limits = limits
        self.trust = resolve_trust(config.ca_bundle, resolve_path=services.resolve_path)
        self._transport = services.http_transport
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()
        self.tokens = TokenProvider(
            config.auth,
            token_url=config.token_url,
            scope=config.scope,
            http=lambda: self.http,
            resolve_path=services.resolve_path,
            trust=self.trust,
        )

    def __repr__(self) -> str:
        return f"DataverseClient({self.base})"

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                timeout = self.delivery.timeout_seconds
                self._http = httpx.Client(
                    transport=self._transport,
                    verify=self.trust.ssl_context(),  # trust_env stays on: proxy variables keep working
                    timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                    follow_redirects=False,
                    headers={"user-agent": f"agni-bridge/{__version__}"},
                )
            return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def url(self, path: str) -> str:
        """The absolute URL of a Web API path (``phonecalls(…)``, ``WhoAmI``)."""
        return f"{self.base}/{path.lstrip('/')}"

    # -- operations ---------------------------------------------------------------------------
    def get(self, path: str, params: Mapping[str, str] | None = None, *, what: str) -> Any:
        """A read; its JSON answer."""
        response = self._send("GET", path, params=params, what=what)
        return _json(response, what)

    def create_only(self, entity_set: str, record_id: str, body: Mapping[str, Any], *, what: str) -> bool:
        """``PATCH {set}({id})`` with ``If-None-Match: *``: True when it created the record, False when a record
        with that id already existed (412: for a create-only request nothing else can fail that precondition)."""
        response = self._send(
            "PATCH", f"{entity_set}({record_id})", body=body, headers={"If-None-Match": "*"}, what=what, expect=(412,)
        )
        return response.status_code != 412

    def update_existing(self, entity_set: str, record_id: str, body: Mapping[str, Any], *, what: str) -> None:
        """``PATCH {set}({id})`` with ``If-Match: *``: an update that never creates (a missing record is a 404)."""
        self._send("PATCH", f"{entity_set}({record_id})", body=body, headers={"If-Match": "*"}, what=what)

    def batch(self, parts: Sequence[batch.Part], *, what: str) -> list[list[batch.Response]]:
        """One ``$batch`` request with `parts` (an Operation, or a sequence of them: a change set), sent with
        ``Prefer: odata.continue-on-error``; one list of responses per part, in order. A part Dataverse did not
        run (a batch that stopped early) has an empty list."""
        content_type, body = batch.encode(parts)
        operations = sum(1 if isinstance(p, batch.Operation) else len(p) for p in parts)
        headers = {"Content-Type": content_type, "Prefer": CONTINUE_ON_ERROR}
        response = self._send(
            "POST", "$batch", raw=body, headers=headers, what=what, operations=operations, expect=_is_multipart
        )
        try:
            answers = batch.decode(response.headers.get("content-type", ""), response.content)
        except batch.BatchFormatError as exc:  # a proxy's page, a cut answer: every part is safe to send again
            raise RetryableError(f"Dataverse {what}: the $batch answer cannot be read ({exc})") from exc
        if len(answers) > len(parts):
            raise RetryableError(f"Dataverse {what}: {len(answers)} answers for {len(parts)} batch parts")
        return answers + [[] for _ in range(len(parts) - len(answers))]

    # -- plumbing -----------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        what: str,
        operations: int = 1,
        expect: tuple[int, ...] | Callable[[httpx.Response], bool] = (),
    ) -> httpx.Response:
        content = raw
        target = f"{path}?{encode_query(params)}" if params else path
        all_headers = {**ODATA_HEADERS, **(headers or {})}
        if body is not None:
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            all_headers["Content-Type"] = JSON

        def attempt() -> httpx.Response:
            token = self.tokens.token()
            response = self._once(method, target, content, all_headers, token, what, operations)
            if response.status_code == 401:
                fresh = self.tokens.renew(token)
                response = self._once(method, target, content, all_headers, fresh, what, operations)
                if response.status_code == 401:
                    raise _refused_twice(what, response)
                token = fresh
            accepted = expect(response) if callable(expect) else response.is_success or response.status_code in expect
            if accepted:
                return response
            raise self._error(what, response, token)

        try:
            return retrying(self.delivery, attempt)
        except RetryableError as exc:
            if exc.status != 429 or isinstance(exc, PausedError):
                raise
            # Still throttled after the in-call waits: the user is throttled, not this call. Keep the calls queued
            # (no retry used up) until Retry-After, as every other worker does already (the shared pause).
            wait = exc.retry_after if exc.retry_after is not None else DEFAULT_THROTTLE_SECONDS
            raise PausedError(exc.message, retry_after=wait, status=429, code=exc.code, details=exc.details) from exc

    def _once(
        self,
        method: str,
        target: str,
        content: bytes | None,
        headers: dict[str, str],
        token: Token,
        what: str,
        operations: int,
    ) -> httpx.Response:
        slot = self.limits.slot(operations) if self.limits is not None else nullcontext()
        with slot, translate_transport_errors(f"Dataverse {what}", self.trust):
            return self.http.request(
                method,
                self.url(target),
                content=content,
                headers={**headers, "Authorization": f"Bearer {token.access_token}"},
            )

    def _error(self, what: str, response: httpx.Response, token: Token) -> Exception:
        auth = self.config.auth
        secrets = [token.access_token, auth.client_secret, auth.certificate_password]
        error = error_from_answer(what, response.status_code, response.content, response.headers, secrets=secrets)
        if response.status_code == 429 and isinstance(error, RetryableError):
            wait = error.retry_after if error.retry_after is not None else DEFAULT_THROTTLE_SECONDS
            if self.limits is not None:
                self.limits.throttled(wait)
                if wait > self.limits.max_inline_pause:
                    return PausedError(
                        error.message, retry_after=wait, status=429, code=error.code, details=error.details
                    )
            error.retry_after = wait
        return error


def _is_multipart(response: httpx.Response) -> bool:
    """A $batch answer to read part by part: 200, or the status of the first failure when Dataverse stopped."""
    return (
        response.status_code < 500
        and response.status_code not in (401, 429)
        and response.headers.get("content-type", "").lower().startswith("multipart/mixed")
    )


def _json(response: httpx.Response, what: str) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError as exc:
        raise RetryableError(f"Dataverse {what}: answered {response.status_code} with a body that is not JSON") from exc


def _refused_twice(what: str, response: httpx.Response) -> PermanentError:
    challenge = response.headers.get("www-authenticate", "")
    reason = f" ({challenge[:200]})" if challenge else ""
    return PermanentError(
        f"Dataverse {what}: refused a fresh token too{reason}. Check that the app registration has an application "
        "user in this environment (Power Platform admin center → Environments → Settings → Application users), "
        "that it is active and has a security role, and that instance_url is the environment's URL",
        status=401,
        code="UNAUTHORIZED",
    )
