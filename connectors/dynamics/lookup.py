"""Asking Dataverse who has an email or a phone number: one query per table, alone or many in one ``$batch``.

A query is a ``GET /{contacts|leads}`` with

    $select={contactid|leadid},fullname,modifiedon
    $filter=statecode eq 0 and (emailaddress1 eq 'a@b.com' or emailaddress2 eq 'a@b.com' or …)
    $orderby=modifiedon desc & $top=1

— only active contacts and open leads, the most recently modified first. A phone
number is searched in every phone column and every spelling people type
(``+14155550100``, ``4155550100``, ``14155550100``, ``(415) 555-0100``,
``+1 415-555-0100``), ``or``'d in one filter, because Dataverse compares text as
stored. Values are OData literals (:func:`~connectors.dynamics.odata.literal`).

With ``batch_size`` > 1, the queries of deliveries running at the same moment
are sent together as one ``$batch`` of GETs (outside change sets: reads do not
belong in a transaction) through a :class:`bridge.batching.Batcher`; each
delivery still gets its own rows or its own error. A batch of one query is a
plain GET.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.batching import Batcher
from bridge.errors import ConnectorError, RetryableError
from connectors.dynamics.batch import Operation
from connectors.dynamics.client import DataverseClient
from connectors.dynamics.errors import copy_error, error_from_answer
from connectors.dynamics.odata import ENTITY_SETS, any_equal, encode_query

__all__ = ["IN_FLIGHT", "Lookups", "Query"]

IN_FLIGHT = 1  # one lookup batch in flight per connector: under load the others fill up meanwhile
Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Query:
    """One lookup: a table and the values to find in some of its columns."""

    entity: str  # "contact" | "lead"
    fields: tuple[str, ...]
    values: tuple[str, ...]

    @property
    def path(self) -> str:
        return ENTITY_SETS[self.entity]

    @property
    def params(self) -> dict[str, str]:
        return {
            "$select": f"{self.entity}id,fullname,modifiedon",
            "$filter": f"statecode eq 0 and {any_equal(self.fields, self.values)}",
            "$orderby": "modifiedon desc",
            "$top": "1",
        }

    def describe(self) -> str:
        return f"find {self.entity} by {', '.join(self.fields[:2])}{'…' if len(self.fields) > 2 else ''}"


class Lookups:
    """Runs queries for one connector, batched when `batch_size` > 1; shared by its worker threads."""

    def __init__(self, client: DataverseClient, *, batch_size: int, linger: float, max_wait: float, name: str) -> None:
        self.client = client
        self._batcher: Batcher[Query, Rows] | None = None
        if batch_size > 1:
            self._batcher = Batcher(
                self._run_many,
                max_size=batch_size,
                linger=linger,
                max_wait=max_wait,
                concurrency=IN_FLIGHT,
                name=f"{name}-lookups",
            )

    def rows(self, query: Query) -> Rows:
        """The matching rows, most recently modified first (at most one)."""
        return self._batcher.submit(query) if self._batcher is not None else self.one(query)

    def one(self, query: Query) -> Rows:
        found = self.client.get(query.path, query.params, what=query.describe())
        value = found.get("value") if isinstance(found, dict) else None
        return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()

    def _run_many(self, queries: Sequence[Query]) -> list[Rows | ConnectorError]:
        distinct = list(dict.fromkeys(queries))
        try:
            if len(distinct) == 1:
                answers: dict[Query, Rows | ConnectorError] = {distinct[0]: self.one(distinct[0])}
            else:
                answers = self._batch(distinct)
        except ConnectorError as exc:
            return [copy_error(exc) for _ in queries]
        return [_own(answers[query]) for query in queries]

    def _batch(self, queries: list[Query]) -> dict[Query, Rows | ConnectorError]:
        accept = {"Accept": "application/json"}
        urls = [self.client.url(f"{q.path}?{encode_query(q.params)}") for q in queries]
        operations = [Operation("GET", url, None, accept) for url in urls]
        answers = self.client.batch(operations, what=f"{len(queries)} lookups ($batch)")
        found: dict[Query, Rows | ConnectorError] = {}
        for query, responses in zip(queries, answers, strict=True):
            if not responses:
                found[query] = RetryableError(f"Dataverse {query.describe()}: not run (the $batch stopped early)")
                continue
            response = responses[0]
            if response.status != 200:
                found[query] = error_from_answer(query.describe(), response.status, response.body, response.headers)
                continue
            body = response.json()
            value = body.get("value") if isinstance(body, dict) else None
            found[query] = [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []
        return found


def _own(answer: Rows | ConnectorError) -> Rows | ConnectorError:
    """Each waiting thread gets its own copy (rows are read-only; an error object must not be shared)."""
    return copy_error(answer) if isinstance(answer, ConnectorError) else list(answer)
