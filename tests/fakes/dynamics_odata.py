"""OData system query options for the fake Dataverse: ``$filter``, ``$select``, ``$orderby``, ``$top``.

A small recursive-descent parser of the ``$filter`` grammar Dataverse accepts for
the queries a CRM integration makes: comparisons (``eq ne gt ge lt le``) of a
column with a literal (``'text'`` with ``''`` for a quote, numbers, ``true``,
``false``, ``null``, bare GUIDs), ``and`` / ``or`` / ``not``, parentheses, and the
functions ``contains``, ``startswith``, ``endswith``. Text compares without regard
to case, as Dataverse's SQL collation does. A column the table does not have is
refused the way Dataverse refuses it (0x80060888, "Could not find a property
named …"), and so is a syntax error — including an unescaped quote, which is how
an integration that forgets to double ``'`` breaks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["QueryError", "compile_filter", "order_rows", "parse_orderby", "parse_select", "parse_top"]

PROPERTY_NOT_FOUND = "0x80060888"
_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12})|(?P<number>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[(),]))"
)
COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
FUNCTIONS = {"contains", "startswith", "endswith"}


class QueryError(Exception):
    """A query Dataverse would refuse with 400: `code` and `message` as it answers them."""

    def __init__(self, message: str, code: str = PROPERTY_NOT_FOUND) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Token:
    kind: str
    text: str
    position: int


Predicate = Callable[[dict[str, Any]], bool]


def compile_filter(text: str, columns: set[str], entity: str) -> Predicate:
    """A predicate over a row (column -> value) for the ``$filter`` `text`; QueryError when Dataverse would refuse."""
    parser = _Parser(_tokens(text), text, columns, entity)
    predicate = parser.expression()
    if parser.peek() is not None:
        raise parser.syntax_error()
    return predicate


def parse_select(text: str | None, columns: set[str], entity: str) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in columns:
            raise QueryError(f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{entity}'.")
    return names


def parse_orderby(text: str | None, columns: set[str], entity: str) -> list[tuple[str, bool]]:
    """[(column, descending)]."""
    order = []
    for item in (text or "").split(","):
        words = item.split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise QueryError(f"Syntax error in $orderby '{text}'.")
        if words[0] not in columns:
            raise QueryError(f"Could not find a property named '{words[0]}' on type 'Microsoft.Dynamics.CRM.{entity}'.")
        order.append((words[0], len(words) == 2 and words[1] == "desc"))
    return order


def parse_top(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise QueryError(f"Invalid value '{text}' for $top query option found.")
    return int(text)


def order_rows(rows: list[dict[str, Any]], order: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    for column, descending in reversed(order):
        rows = sorted(rows, key=lambda row, c=column: (row.get(c) is None, _comparable(row.get(c))), reverse=descending)
    return rows


def _tokens(text: str) -> list[_Token]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise QueryError(f"Syntax error at position {position} in '{text}'.")
        kind = match.lastgroup or ""
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token], text: str, columns: set[str], entity: str) -> None:
        self.tokens, self.text, self.columns, self.entity = tokens, text, columns, entity
        self.index = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise QueryError(f"Syntax error: unexpected end of '{self.text}'.")
        self.index += 1
        return token

    def syntax_error(self) -> QueryError:
        token = self.peek()
        where = token.position if token is not None else len(self.text)
        return QueryError(f"Syntax error at position {where} in '{self.text}'.")

    def expression(self) -> Predicate:
        left = self.conjunction()
        while self._word("or"):
            right = self.conjunction()
            left = (lambda a, b: lambda row: a(row) or b(row))(left, right)
        return left

    def conjunction(self) -> Predicate:
        left = self.unary()
        while self._word("and"):
            right = self.unary()
            left = (lambda a, b: lambda row: a(row) and b(row))(left, right)
        return left

    def unary(self) -> Predicate:
        if self._word("not"):
            inner = self.unary()
            return lambda row: not inner(row)
        token = self.peek()
        if token is not None and token.text == "(":
            self.take()
            inner = self.expression()
            if self.take().text != ")":
                raise self.syntax_error()
            return inner
        if token is not None and token.kind == "name" and token.text in FUNCTIONS:
            return self.function()
        return self.comparison()

    def function(self) -> Predicate:
        name = self.take().text
        if self.take().text != "(":
            raise self.syntax_error()
        column = self.column()
        if self.take().text != ",":
            raise self.syntax_error()
        value = self.literal()
        if self.take().text != ")":
            raise self.syntax_error()
        needle = str(value).casefold()
        test = {"contains": str.__contains__, "startswith": str.startswith, "endswith": str.endswith}[name]
        return lambda row: row.get(column) is not None and test(str(row.get(column)).casefold(), needle)

    def comparison(self) -> Predicate:
        column = self.column()
        operator = self.take()
        if operator.kind != "name" or operator.text not in COMPARISONS:
            raise QueryError(f"Syntax error at position {operator.position} in '{self.text}'.")
        value = self.literal()
        return lambda row: _compare(row.get(column), operator.text, value)

    def column(self) -> str:
        token = self.take()
        if token.kind != "name":
            raise QueryError(f"Syntax error at position {token.position} in '{self.text}'.")
        if token.text not in self.columns:
            message = f"Could not find a property named '{token.text}' on type 'Microsoft.Dynamics.CRM.{self.entity}'."
            raise QueryError(message)
        return token.text

    def literal(self) -> Any:
        token = self.take()
        if token.kind == "string":
            return token.text[1:-1].replace("''", "'")
        if token.kind == "guid":
            return token.text.lower()
        if token.kind == "number":
            return float(token.text) if "." in token.text else int(token.text)
        if token.kind == "name" and token.text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token.text]
        raise QueryError(f"Syntax error at position {token.position} in '{self.text}'.")

    def _word(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "name" and token.text == word:
            self.index += 1
            return True
        return False


def _comparable(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _compare(left: Any, operator: str, right: Any) -> bool:
    if operator in ("eq", "ne"):
        equal = _comparable(left) == _comparable(right)
        return equal if operator == "eq" else not equal
    if left is None or right is None:
        return False
    a, b = _comparable(left), _comparable(right)
    try:
        return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[operator]
    except TypeError:
        return False
