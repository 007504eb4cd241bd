"""An in-memory fake of Microsoft Dataverse (Dynamics 365) and its Entra ID token endpoint, over real HTTP.

Facts come from REFERENCE.md §9.1 and Microsoft's Dataverse Web API documentation;
where they are silent the choice is marked "fake's choice" or UNCONFIRMED. It is
strict on purpose — a request Dataverse would refuse, it refuses the same way:

* tokens: only ``/{tenant}/oauth2/v2.0/token`` issues them (:mod:`tests.fakes.dynamics_token`:
  client secret or a certificate-signed assertion); an unknown or expired bearer
  token is answered 401 with ``WWW-Authenticate: Bearer error="invalid_token"``;
* headers on every Web API request: ``OData-Version: 4.0``, ``OData-MaxVersion: 4.0``,
  ``Accept: application/json``, and ``Content-Type: application/json`` with a body
  (missing ones are refused: 400 / 406 / 415 — the fake's strictness, as the
  connector's brief demands; Dataverse itself may be lenient);
* records by primary key: ``GET``/``PATCH`` ``{set}({id})`` with ``If-None-Match: *``
  (create only: 412 0x80040237 when it exists), ``If-Match: *`` (update only: 404
  0x80040217 when missing), ETags; ``GET {set}`` with ``$select``, ``$filter``,
  ``$orderby``, ``$top`` (:mod:`tests.fakes.dynamics_odata`); ``POST {set}``;
  ``WhoAmI``; ``systemusers({id})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()``;
* the write rules and privileges of :mod:`tests.fakes.dynamics_store`, closed
  activities read-only included;
* ``POST $batch`` (:mod:`tests.fakes.dynamics_batch`): strict multipart parsing,
  change sets run atomically (rolled back on the first failure), requests run in
  order, ``Prefer: odata.continue-on-error`` honoured (without it the batch stops at
  the first failure and answers with its status); a $batch counts as one request;
* service protection, per application user: ``requests_per_window`` requests per
  sliding ``window_seconds`` (429 0x80072322 with Retry-After in seconds) and
  ``max_concurrent`` requests in flight (429 0x80072326). ``processing_seconds``
  holds each request in flight, so concurrency can actually build up.

    fake = FakeDynamics().start()
    contact = fake.add("contact", emailaddress1="jane@example.com", telephone1="+14155550100")
    ...  # point the connector at fake.url, token_url fake.token_url, client_id/secret CLIENT_ID/CLIENT_SECRET
    assert fake.count("phonecall") == 1
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .dynamics_batch import BatchError, InnerRequest, InnerResponse, parse_batch, write_batch
from .dynamics_odata import QueryError, compile_filter, order_rows, parse_orderby, parse_select, parse_top
from .dynamics_schema import BY_SET, TABLES, ApiError
from .dynamics_store import ALL_PRIVILEGES, PRIVILEGE_NOUN, Store
from .dynamics_token import TokenIssuer
from .httpserver import FakeRequest, FakeResponse, FakeServer

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "TENANT", "FakeDynamics"]

TENANT = "7d1c2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
CLIENT_ID = "3f2e1d0c-9b8a-4766-a5b4-c3d2e1f0a9b8"
CLIENT_SECRET = "fake-client-secret-value"
ORGANIZATION = "c0ffee00-1111-4222-8333-444455556666"
BUSINESS_UNIT = "b0b0b0b0-1111-4222-8333-444455556666"
GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_RECORD = re.compile(rf"^([a-z]+)\(({GUID})\)$")
_PRIVILEGES = re.compile(rf"^systemusers\(({GUID})\)/Microsoft\.Dynamics\.CRM\.RetrieveUserPrivileges\(\)$")
QUERY_OPTIONS = {"$select", "$filter", "$orderby", "$top"}
JSON_TYPE = "application/json; odata.metadata=minimal"


class FakeDynamics(FakeServer):
    """One Dataverse environment with one app registration and its application user."""

    def __init__(
        self,
        *,
        client_secret: str | None = CLIENT_SECRET,
        certificates: list[bytes] | None = None,
        api_version: str = "v9.2",
        requests_per_window: int = 6000,
        window_seconds: float = 300.0,
        max_concurrent: int = 52,
        token_lifetime: int = 3599,
        processing_seconds: float = 0.0,
        require_odata_headers: bool = True,
        column_lengths: dict[str, int] | None = None,
        clock: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.api_version = api_version
        self.store = Store(clock, column_lengths)
        self.issuer = TokenIssuer(TENANT, CLIENT_ID, "", client_secret, list(certificates or []), token_lifetime)
        self.tokens: dict[str, float] = {}  # access token -> expiry (epoch seconds)
        self.app_user = self.store.add("systemuser", fullname="# agni-bridge", isdisabled=False)
        self.privileges: set[str] = set(ALL_PRIVILEGES)
        self.requests_per_window, self.window_seconds = requests_per_window, window_seconds
        self.max_concurrent, self.processing_seconds = max_concurrent, processing_seconds
        self.require_odata_headers = require_odata_headers
        self.throttled: Counter[str] = Counter()  # error code -> 429s answered
        self.operations: Counter[str] = Counter()  # "PATCH phonecalls" etc., inside batches too
        self.refusals: Counter[str] = Counter()  # error code -> writes refused (0x80040237: "already exists")
        self.total_requests = 0  # Web API requests that reached the limits (a $batch is one)
        self.max_in_flight = 0
        self._hits: deque[float] = deque()
        self._in_flight = 0
        self._flight_lock = threading.Lock()

    # -- test helpers -----------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"{self.url}/api/data/{self.api_version}"

    @property
    def token_url(self) -> str:
        return f"{self.url}{self.issuer.path()}"

    def start(self) -> FakeDynamics:
        super().start()
        self.issuer.resource = self.issuer.resource or self.url
        return self

    def add(self, table: str, record_id: str | None = None, **columns: Any) -> str:
        with self.lock:
            return self.store.add(table, record_id, **columns)

    def records(self, table: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(row) for row in self.store.rows[table].values()]

    def get(self, table: str, record_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.store.rows[table].get(record_id.lower())
            return dict(row) if row is not None else None

    def count(self, table: str) -> int:
        with self.lock:
            return len(self.store.rows[table])

    def revoke_tokens(self) -> None:
        """Every issued token stops working (a revoked consent, a rotated key): the next request gets 401."""
        with self.lock:
            self.tokens.clear()

    # -- dispatch ---------------------------------------------------------------------------------
    def handle(self, request: FakeRequest) -> FakeResponse:
        if request.path == self.issuer.path():
            with self.lock:
                response, token = self.issuer.handle(request, self.token_url, self.clock())
                if token is not None:
                    self.tokens[token] = self.clock() + self.issuer.lifetime
            return response
        prefix = f"/api/data/{self.api_version}/"
        if not request.path.startswith(prefix):
            return _answer(ApiError(404, "0x8006088a", f"Resource not found for the segment '{request.path}'."))
        refused = self._authorize(request) or self._admit()
        if refused is not None:
            return refused
        try:
            if self.processing_seconds:
                time.sleep(self.processing_seconds)
            return self._api(request, request.path[len(prefix) :])
        except ApiError as exc:
            return _answer(exc)
        finally:
            with self._flight_lock:
                self._in_flight -= 1

    def _authorize(self, request: FakeRequest) -> FakeResponse | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self.lock:
            expires = self.tokens.get(token) if scheme == "Bearer" else None
        if expires is not None and expires > self.clock():
            return None
        challenge = (
            f'Bearer error="invalid_token", error_description="The access token is missing, invalid or '
            f'expired.", authorization_uri="https://login.microsoftonline.com/{TENANT}/oauth2/authorize", '
            f'resource_id="{self.url}"'
        )
        return FakeResponse(401, b"", {"WWW-Authenticate": challenge, "OData-Version": "4.0"})

    def _admit(self) -> FakeResponse | None:
        """Service protection: the sliding window and the concurrency cap; counts the request in flight."""
        now = self.clock()
        with self._flight_lock:
            while self._hits and self._hits[0] <= now - self.window_seconds:
                self._hits.popleft()
            if self._in_flight >= self.max_concurrent:
                self.throttled["0x80072326"] += 1
                message = f"Number of concurrent requests exceeded the limit of {self.max_concurrent}."
                return _answer(ApiError(429, "0x80072326", message, {"Retry-After": "1"}))
            if len(self._hits) >= self.requests_per_window:
                self.throttled["0x80072322"] += 1
                wait = max(1, int(self._hits[0] + self.window_seconds - now + 0.999))
                message = (
                    f"Number of requests exceeded the limit of {self.requests_per_window} over time window of "
                    f"{int(self.window_seconds)} seconds."
                )
                return _answer(ApiError(429, "0x80072322", message, {"Retry-After": str(wait)}))
            self._hits.append(now)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self.total_requests += 1
        return None

    def _api(self, request: FakeRequest, path: str) -> FakeResponse:
        headers = request.headers
        if self.require_odata_headers and (
            headers.get("odata-version") != "4.0" or headers.get("odata-maxversion") != "4.0"
        ):
            raise ApiError(400, "0x80060888", "Send OData-Version: 4.0 and OData-MaxVersion: 4.0 (fake's strictness).")
        if "application/json" not in headers.get("accept", ""):
            raise ApiError(
                406,
                "0x80060888",
                "A supported MIME type could not be found that matches the acceptable "
                "MIME types for the request. Send Accept: application/json.",
            )
        query = {name: values[-1] for name, values in request.query.items()}
        if path == "$batch":
            if request.method != "POST":
                raise ApiError(405, "0x80060888", "The $batch endpoint only accepts POST.")
            with self.lock:
                self.requests["POST $batch"] += 1
            return self._batch(request)
        if request.body and headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise ApiError(415, "0x80060888", "The request body must be sent as Content-Type: application/json.")
        with self.lock:
            status, extra, body = self._execute(request.method, unquote(path), query, headers, request.body)
        return FakeResponse(status, body, {"OData-Version": "4.0", **extra})

    # -- one operation (alone or inside a batch) ------------------------------------------------
    def _execute(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body of one operation; raises ApiError. The caller holds the lock."""
        key = _RECORD.sub(lambda m: f"{m.group(1)}()", path)
        self.requests[f"{method} {key}"] += 1
        self.operations[f"{method} {key}"] += 1
        unknown = [name for name in query if name.startswith("$") and name not in QUERY_OPTIONS]
        if unknown:
            raise ApiError(400, "0x80060888", f"The query parameter '{unknown[0]}' is not supported.")
        if path == "WhoAmI" and method == "GET":
            return _json(
                200,
                {
                    "@odata.context": f"{self.base}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                    "BusinessUnitId": BUSINESS_UNIT,
                    "UserId": self.app_user,
                    "OrganizationId": ORGANIZATION,
                },
            )
        found = _PRIVILEGES.match(path)
        if found and method == "GET":
            held = sorted(self.privileges) if found.group(1).lower() == self.app_user else []
            privileges = [
                {
                    "Depth": "Global",
                    "PrivilegeId": str(uuid.uuid5(uuid.NAMESPACE_OID, name)),
                    "BusinessUnitId": BUSINESS_UNIT,
                    "PrivilegeName": name,
                }
                for name in held
            ]
            return _json(
                200,
                {
                    "@odata.context": f"{self.base}/$metadata#Microsoft.Dynamics.CRM.RetrieveUserPrivilegesResponse",
                    "RolePrivileges": privileges,
                },
            )
        record = _RECORD.match(path)
        table = BY_SET.get(record.group(1) if record else path)
        if table is None:
            raise ApiError(404, "0x8006088a", f"Resource not found for the segment '{path.split('(')[0]}'.")
        noun = PRIVILEGE_NOUN[table.name]
        if record is not None:
            record_id = record.group(2).lower()
            if method == "GET":
                self._require(f"prvRead{noun}", table.name)
                return _json(200, self._row(table.name, record_id, query.get("$select")))
            if method == "PATCH":
                mode = (
                    "create"
                    if headers.get("if-none-match") == "*"
                    else "update"
                    if headers.get("if-match")
                    else "upsert"
                )
                etag = headers.get("if-match") if headers.get("if-match") not in (None, "*") else None
                try:
                    created = self.store.write(
                        table,
                        record_id,
                        _body(body),
                        mode=mode,
                        etag=etag,
                        caller=self.app_user,
                        privileges=self.privileges,
                    )
                except ApiError as exc:
                    self.refusals[exc.code] += 1
                    raise
                location = f"{self.base}/{table.entity_set}({record_id})"
                return 204, {"OData-EntityId": location, **({"Location": location} if created else {})}, b""
            if method == "DELETE":
                self._require(f"prvDelete{noun}", table.name)
                if self.store.rows[table.name].pop(record_id, None) is None:
                    raise ApiError(404, "0x80040217", f"{table.name} With Id = {record_id} Does Not Exist")
                return 204, {}, b""
        elif method == "GET":
            self._require(f"prvRead{noun}", table.name)
            return _json(200, self._query(table.name, query))
        elif method == "POST":
            new_id = str(uuid.uuid4())
            self.store.write(
                table, new_id, _body(body), mode="create", etag=None, caller=self.app_user, privileges=self.privileges
            )
            location = f"{self.base}/{table.entity_set}({new_id})"
            return 204, {"OData-EntityId": location, "Location": location}, b""
        raise ApiError(405, "0x80060888", f"The HTTP method '{method}' is not allowed on '{path}'.")

    def _require(self, privilege: str, table: str) -> None:
        from .dynamics_store import _require

        _require(self.privileges, privilege, TABLES[table], self.app_user)

    def _row(self, table: str, record_id: str, select: str | None) -> dict[str, Any]:
        spec = TABLES[table]
        row = self.store.rows[table].get(record_id)
        if row is None:
            raise ApiError(404, "0x80040217", f"{table} With Id = {record_id} Does Not Exist")
        try:
            columns = parse_select(select, spec.readable(), table)
        except QueryError as exc:
            raise ApiError(400, exc.code, exc.message) from exc
        return self._shape(spec.name, row, columns, entity=True)

    def _query(self, table: str, query: dict[str, str]) -> dict[str, Any]:
        spec = TABLES[table]
        try:
            columns = parse_select(query.get("$select"), spec.readable(), table)
            match = compile_filter(query["$filter"], spec.readable(), table) if "$filter" in query else None
            order = parse_orderby(query.get("$orderby"), spec.readable(), table)
            top = parse_top(query.get("$top"))
        except QueryError as exc:
            raise ApiError(400, exc.code, exc.message) from exc
        rows = [row for row in self.store.rows[table].values() if match is None or match(row)]
        rows = order_rows(rows, order)[: top or 5000]
        shaped = [self._shape(table, row, columns, entity=False) for row in rows]
        context = f"{self.base}/$metadata#{spec.entity_set}({','.join(columns or [])})"
        return {"@odata.context": context, "value": shaped}

    def _shape(self, table: str, row: dict[str, Any], columns: list[str] | None, *, entity: bool) -> dict[str, Any]:
        spec = TABLES[table]
        names = columns if columns is not None else sorted(k for k in row if k in spec.readable())
        shaped: dict[str, Any] = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
        if entity:
            shaped["@odata.context"] = f"{self.base}/$metadata#{spec.entity_set}/$entity"
        shaped.update({name: row.get(name) for name in names})
        shaped[spec.key] = row[spec.key]
        return shaped

    # -- $batch -----------------------------------------------------------------------------------
    def _batch(self, request: FakeRequest) -> FakeResponse:
        try:
            parts = parse_batch(request.headers.get("content-type", ""), request.body)
        except BatchError as exc:
            raise ApiError(400, "", str(exc)) from exc
        keep_going = "odata.continue-on-error" in request.headers.get("prefer", "")
        answers: list[InnerResponse | list[InnerResponse]] = []
        status = 200
        with self.lock:
            for part in parts:
                if isinstance(part, InnerRequest):
                    answer = self._inner(part)
                    failed = answer if answer.status >= 400 else None
                    answers.append(answer)
                else:
                    snapshot = self.store.snapshot()
                    responses = []
                    failed = None
                    for inner in part:
                        response = self._inner(inner)
                        if response.status >= 400:
                            failed = response
                            break
                        responses.append(response)
                    if failed is not None:
                        self.store.restore(snapshot)  # the change set is one transaction
                        answers.append(failed)
                    else:
                        answers.append(responses)
                if failed is not None and not keep_going:
                    status = failed.status
                    break
        content_type, body = write_batch(answers)
        return FakeResponse(status, body, {"Content-Type": content_type, "OData-Version": "4.0"})

    def _inner(self, request: InnerRequest) -> InnerResponse:
        target = request.url
        for prefix in (f"{self.base}/", f"/api/data/{self.api_version}/"):
            if target.startswith(prefix):
                target = target[len(prefix) :]
                break
        else:
            error = ApiError(400, "0x80060888", f"The request URI '{request.url}' is not valid for this service.")
            return _inner_error(error, request)
        parts = urlsplit(target)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        if request.body.strip() and request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _inner_error(ApiError(415, "0x80060888", "Batch request bodies must be application/json."), request)
        try:
            status, headers, body = self._execute(
                request.method, unquote(parts.path), query, request.headers, request.body.strip()
            )
        except ApiError as exc:
            return _inner_error(exc, request)
        return InnerResponse(status, {"OData-Version": "4.0", **headers}, body, request.content_id)


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise ApiError(400, "0x80060888", f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "0x80060888", "The request body must be a JSON object.")
    return body


def _json(status: int, payload: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": JSON_TYPE}, json.dumps(payload).encode()


def _answer(error: ApiError) -> FakeResponse:
    headers = {"OData-Version": "4.0", "x-ms-service-request-id": str(uuid.uuid4()), **error.headers}
    return FakeResponse.json(error.status, error.body(), headers)


def _inner_error(error: ApiError, request: InnerRequest) -> InnerResponse:
    headers = {"Content-Type": JSON_TYPE, "OData-Version": "4.0", "x-ms-service-request-id": str(uuid.uuid4())}
    return InnerResponse(error.status, headers, json.dumps(error.body()).encode(), request.content_id)
