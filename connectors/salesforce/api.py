"""The connector's one door to Salesforce: simple-salesforce calls with translation, re-auth and retries.

Every call goes through :meth:`SalesforceApi.call`, which

1. takes the cached token (:mod:`connectors.salesforce.auth`) and a
   simple-salesforce client built for it (``Salesforce(instance_url=…, session_id=…,
   session=<our session>)`` — cheap, no network, one per token);
2. runs the call inside :func:`~connectors.salesforce.errors.translate_errors`;
3. on 401 ``INVALID_SESSION_ID`` re-authenticates once and runs the call again; a
   second 401 is permanent (the integration user lost access, or the app was revoked);
4. retries transient failures a few times in-call with :func:`bridge.http.retrying`.

The client is always built with a direct session id, so simple-salesforce's own
refresh-on-401 (unbounded recursion in ``SFType``) never runs. simple-salesforce
is imported here, lazily, because importing it costs ~135 ms.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from bridge.errors import PermanentError, RetryableError
from bridge.http import retrying
from bridge.settings import DeliverySettings
from bridge.tls import resolve_trust
from connectors.salesforce.auth import Authenticator, Token
from connectors.salesforce.config import SalesforceConfig
from connectors.salesforce.errors import translate_errors
from connectors.salesforce.http import ApiUsage, build_session

if TYPE_CHECKING:
    from simple_salesforce import Salesforce

__all__ = ["SalesforceApi", "upsert_what"]

T = TypeVar("T")


class SalesforceApi:
    """REST calls against one org, safe to share between worker threads."""

    def __init__(
        self,
        config: SalesforceConfig,
        *,
        delivery: DeliverySettings,
        resolve_path: Callable[[str], Path] = Path,
        log: logging.Logger | None = None,
    ) -> None:
        self.config = config
        self.delivery = delivery
        self.log = log or logging.getLogger("bridge.connector.salesforce")
        self.usage = ApiUsage(config.limit_warning_share, self.log)
        self.trust = resolve_trust(config.ca_bundle, resolve_path=resolve_path)
        self.session = build_session(trust=self.trust, timeout=delivery.timeout_seconds, usage=self.usage)
        self.auth = Authenticator(
            config.auth, self.session, instance_url=config.instance_url, resolve_path=resolve_path, trust=self.trust
        )
        self._client: tuple[Token, Salesforce] | None = None
        self._lock = threading.Lock()

    # -- the core --------------------------------------------------------------------------
    def call(self, what: str, fn: Callable[[Salesforce], T], *, on_multiple: str = "") -> T:
        """Run `fn(client)`; bridge errors only; one re-login on 401; quick retries for transient failures."""
        return retrying(self.delivery, lambda: self._call_once(what, fn, on_multiple))

    def _call_once(self, what: str, fn: Callable[[Salesforce], T], on_multiple: str) -> T:
        token = self.auth.token()
        try:
            return self._run(what, fn, token, on_multiple)
        except PermanentError as exc:
            if exc.status != 401:
                raise
            self.log.info("Salesforce session expired or was revoked; re-authenticating once")
        token = self.auth.refresh(token)
        try:
            return self._run(what, fn, token, on_multiple)
        except PermanentError as exc:
            if exc.status != 401:
                raise
            raise PermanentError(
                f"Salesforce rejected a fresh session too ({exc.message}): check that the integration user is "
                "active and the connected app is approved for it",
                status=401,
                code=exc.code,
                details=exc.details,
            ) from exc

    def _run(self, what: str, fn: Callable[[Salesforce], T], token: Token, on_multiple: str) -> T:
        limit_pause = self.config.limit_pause_seconds
        with translate_errors(what, limit_pause=limit_pause, on_multiple=on_multiple, trust=self.trust):
            return fn(self._client_for(token))

    def _client_for(self, token: Token) -> Salesforce:
        with self._lock:
            if self._client is None or self._client[0] != token:
                from simple_salesforce import Salesforce

                client = Salesforce(
                    instance_url=token.instance_url,
                    session_id=token.access_token,
                    session=self.session,
                    version=self.config.api_version,
                )
                self._client = (token, client)
            return self._client[1]

    # -- the operations the connector needs ----------------------------------------------------
    def query(self, soql: str, what: str = "query") -> list[dict[str, Any]]:
        """Records of a SOQL query (first page: callers use LIMIT)."""
        result = self.call(what, lambda sf: sf.query(soql))
        return [dict(record) for record in (result or {}).get("records", [])]

    def search(self, sosl: str, what: str = "search") -> list[dict[str, Any]]:
        """Records of a SOSL search, in the order Salesforce returned them."""
        result = self.call(what, lambda sf: sf.search(sosl))
        return [dict(record) for record in (result or {}).get("searchRecords", [])]

    def upsert(self, sobject: str, field: str, value: str, body: dict[str, Any]) -> tuple[str, bool | None]:
        """PATCH sobjects/{sobject}/{field}/{value} (value percent-encoded here); returns (id, created)."""
        path = f"sobjects/{sobject}/{field}/{quote(value, safe='')}"
        what = upsert_what(sobject, field, value)
        on_multiple = (
            f"several {sobject} records share external id {field}={value}; it must be unique — mark the field "
            "Unique and merge or delete the duplicates in Salesforce, then replay the call"
        )
        result = self.call(what, lambda sf: sf.restful(path, method="PATCH", json=body), on_multiple=on_multiple)
        if isinstance(result, dict) and result.get("id"):
            created = result.get("created")
            return str(result["id"]), created if isinstance(created, bool) else None
        # API versions before 46.0 answer an update with 204 and no body: read the id back.
        found = self.call(what, lambda sf: sf.restful(path, params={"fields": "Id"}), on_multiple=on_multiple)
        if not isinstance(found, dict) or not found.get("Id"):
            raise PermanentError(f"{what}: Salesforce accepted the write but returned no record id")
        return str(found["Id"]), False

    def upsert_collection(self, sobject: str, field: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """PATCH composite/sobjects/{sobject}/{field} (allOrNone false): one UpsertResult per record, in order.

        Each record must carry ``attributes.type`` and its external id value; at most 200 records (v46.0+).
        """
        body = {"allOrNone": False, "records": records}
        what = f"upsert {len(records)} {sobject} records by {field} (sObject Collections)"
        path = f"composite/sobjects/{sobject}/{field}"
        result = self.call(what, lambda sf: sf.restful(path, method="PATCH", json=body))
        if not isinstance(result, list) or len(result) != len(records) or not all(isinstance(r, dict) for r in result):
            # A proxy or a truncated answer: the write may or may not have landed; upserts are safe to repeat.
            raise RetryableError(f"{what}: Salesforce answered something other than one result per record")
        return result

    def create(self, sobject: str, body: dict[str, Any], what: str = "") -> str:
        """POST sobjects/{sobject}; returns the new id."""
        what = what or f"create {sobject}"
        result = self.call(what, lambda sf: sf.restful(f"sobjects/{sobject}/", method="POST", json=body))
        if not isinstance(result, dict) or not result.get("id"):
            raise PermanentError(f"{what}: Salesforce returned no record id")
        return str(result["id"])

    def describe(self, sobject: str) -> dict[str, Any]:
        """sobjects/{sobject}/describe (field names, types, lengths, create/update permissions)."""
        result = self.call(f"describe {sobject}", lambda sf: sf.restful(f"sobjects/{sobject}/describe"))
        return dict(result or {})

    def close(self) -> None:
        self.session.close()


def upsert_what(sobject: str, field: str, value: str) -> str:
    """How an upsert is named in errors and dead letters, batched or not."""
    return f"upsert {sobject} {field}={value}"
