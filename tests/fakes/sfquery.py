"""SOQL and SOSL for the fake Salesforce, plus the schema model both are checked against.

Only the subset the bridge sends is understood, but what is understood follows Salesforce's rules
closely enough that a wrong query fails here the way it would fail in production:

* SOQL: ``SELECT f, ... | COUNT() FROM Obj [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...]
  [LIMIT n] [OFFSET n]``. Conditions: ``=, !=, <>, <, <=, >, >=, [NOT] IN (...), LIKE``, combined
  with ``AND`` / ``OR`` / ``NOT`` and parentheses; like Salesforce, mixing AND and OR without
  parentheses is a syntax error. String literals use SOQL backslash escapes (``\\'``, ``\\\\``...).
  Text comparisons are case-insensitive and ids compare on their first 15 characters, as in
  Salesforce. A literal of the wrong kind (``IsConverted = 'false'``, ``Phone = 4155550100``) is
  rejected with ``INVALID_QUERY_FILTER_OPERATOR``. Relationship paths (``Owner.Name``) are not
  supported and answer ``INVALID_FIELD``.
* SOSL: ``FIND {term} [IN ALL|NAME|EMAIL|PHONE FIELDS] [RETURNING Obj[(fields [WHERE ...]
  [ORDER BY ...] [LIMIT n])], ...] [LIMIT n]``. The term honours SOSL backslash escapes.
  Phone fields match on digits (see :func:`phone_matches`); other fields match when the term's
  words appear as a contiguous run of the field's words (so ``jane@example.com`` matches that
  address but not ``jane.doe@example.com``). Wildcards and boolean operators inside the term are
  not interpreted; unescaped reserved characters are tolerated.

Errors are raised as :class:`SfError`, which the server turns into Salesforce's error array.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import cmp_to_key
from typing import Any, Protocol

__all__ = [
    "Field",
    "RecordSource",
    "SObjectSchema",
    "SfError",
    "is_salesforce_id",
    "parse_datetime",
    "phone_digits",
    "phone_matches",
    "run_soql",
    "run_sosl",
]

TEXT_TYPES = frozenset(
    {"string", "textarea", "picklist", "multipicklist", "combobox", "email", "phone", "url", "encryptedstring"}
)
ID_TYPES = frozenset({"id", "reference"})
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})
NAME_SEARCH_FIELDS = frozenset({"Name", "FirstName", "LastName", "Company"})
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "int": "xsd:int",
    "boolean": "xsd:boolean",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "base64": "xsd:base64Binary",
}
_ID_RE = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


class SfError(Exception):
    """An error answer in Salesforce's shape: an HTTP status plus ``errorCode``/``message``/``fields``."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.fields = status, code, message, fields

    def body(self) -> list[dict[str, Any]]:
        """The REST error array: ``[{"message", "errorCode"[, "fields"]}]``."""
        item: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]

    def save_error(self) -> dict[str, Any]:
        """The per-record error of a SaveResult (sObject Collections use ``statusCode``, not ``errorCode``)."""
        return {"statusCode": self.code, "message": self.message, "fields": list(self.fields or [])}


# ---------------------------------------------------------------------------------------------
# Schema model
# ---------------------------------------------------------------------------------------------


@dataclass
class Field:
    """One field of an sObject, as the describe call reports it and as writes are validated."""

    name: str
    type: str  # Salesforce describe type: id, string, textarea, picklist, reference, int, date, ...
    length: int = 0
    label: str = ""
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    nillable: bool = True
    case_sensitive: bool = False
    picklist_values: tuple[str, ...] = ()
    restricted_picklist: bool = False
    reference_to: tuple[str, ...] = ()
    name_field: bool = False
    default: Any = None  # value applied on create when the field is absent (defaultedOnCreate)

    def __post_init__(self) -> None:
        if not self.label:
            base = self.name[:-3] if self.name.endswith("__c") else self.name
            self.label = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", base.replace("_", " "))

    def describe(self) -> dict[str, Any]:
        text = self.type in TEXT_TYPES
        relationship = None
        if self.type == "reference":
            relationship = self.name[:-3] + "__r" if self.name.endswith("__c") else self.name.removesuffix("Id")
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "length": self.length if text or self.type in ID_TYPES else 0,
            "byteLength": self.length * 3 if text else (18 if self.type in ID_TYPES else 0),
            "digits": 9 if self.type == "int" else 0,
            "precision": 18 if self.type in NUMBER_TYPES - {"int"} else 0,
            "scale": 0,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:double" if self.type in NUMBER_TYPES else "xsd:string"),
            "createable": self.createable,
            "updateable": self.updateable,
            "externalId": self.external_id,
            "unique": self.unique,
            "idLookup": self.external_id or self.type == "id",
            "nillable": self.nillable,
            "caseSensitive": self.case_sensitive,
            "nameField": self.name_field,
            "custom": self.name.endswith("__c"),
            "calculated": False,
            "filterable": self.type not in ("textarea", "base64"),
            "sortable": self.type not in ("textarea", "base64", "multipicklist"),
            "defaultedOnCreate": self.default is not None or not self.createable,
            "defaultValue": self.default,
            "picklistValues": [
                {"active": True, "defaultValue": v == self.default, "label": v, "validFor": None, "value": v}
                for v in self.picklist_values
            ],
            "restrictedPicklist": self.restricted_picklist,
            "referenceTo": list(self.reference_to),
            "relationshipName": relationship,
        }


@dataclass
class SObjectSchema:
    """The fields of one sObject type, looked up case-insensitively like Salesforce does."""

    name: str
    key_prefix: str
    label: str = ""
    searchable: bool = True
    fields: dict[str, Field] = field(default_factory=dict)  # lower-cased name -> Field

    def add(self, *fields: Field) -> None:
        for f in fields:
            self.fields[f.name.lower()] = f

    def field(self, name: str) -> Field | None:
        return self.fields.get(name.lower())

    def describe(self, api_version: str) -> dict[str, Any]:
        base = f"/services/data/v{api_version}/sobjects/{self.name}"
        return {
            "name": self.name,
            "label": self.label or self.name,
            "labelPlural": (self.label or self.name) + "s",
            "keyPrefix": self.key_prefix,
            "custom": self.name.endswith("__c"),
            "createable": True,
            "updateable": True,
            "deletable": True,
            "queryable": True,
            "searchable": self.searchable,
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
            "fields": [f.describe() for f in self.fields.values()],
        }


def is_salesforce_id(value: object) -> bool:
    return isinstance(value, str) and bool(_ID_RE.match(value))


def parse_datetime(value: str) -> dt.datetime:
    """Parse the datetime spellings Salesforce emits and accepts (``...000+0000``, ``Z``, ``+00:00``)."""
    text = value.strip()
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text)
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def phone_digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def phone_matches(term_digits: str, stored: str | None) -> bool:
    """Digit-based phone matching, the way SOSL ``IN PHONE FIELDS`` behaves in practice.

    Formatting is ignored on both sides; a country code is tolerated by accepting a suffix match
    when the shorter number still has at least 10 digits. So ``+14155550100``, ``4155550100`` and
    ``(415) 555-0100`` all find each other, while ``5550100`` (a bare local number) finds nothing.
    """
    digits = phone_digits(stored or "")
    if not digits or not term_digits:
        return False
    if digits == term_digits:
        return True
    short, long_ = sorted((digits, term_digits), key=len)
    return len(short) >= 10 and long_.endswith(short)


class RecordSource(Protocol):
    """What the query engine needs from the fake's store."""

    def schema(self, sobject: str) -> SObjectSchema | None: ...

    def rows(self, schema: SObjectSchema) -> list[dict[str, Any]]: ...

    def attributes(self, schema: SObjectSchema, record: dict[str, Any]) -> dict[str, str]: ...


# ---------------------------------------------------------------------------------------------
# Lexer and shared parser
# ---------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<string>'(?:[^'\\]|\\.)*')
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2})
    |(?P<number>-?\d+(?:\.\d+)?)
    |(?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    |(?P<op>!=|<>|<=|>=|=|<|>)
    |(?P<punct>[(),])
    """,
    re.VERBOSE | re.DOTALL,
)
_STRING_ESCAPES = {
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    '"': '"',
    "'": "'",
    "\\": "\\",
    "_": "_",
    "%": "%",
}


@dataclass
class _Token:
    kind: str  # string, datetime, date, number, name, op, punct, end
    text: str
    pos: int


@dataclass
class _Literal:
    kind: str  # string, number, boolean, date, null
    value: Any
    raw: str = ""  # a string literal's text between the quotes, escapes intact (LIKE needs them)


# A parsed condition: ("and"|"or", [Cond]) | ("not", Cond) | ("cmp", Field, op, _Literal)
# | ("in", Field, [_Literal], negated) | ("like", Field, compiled regex)
Cond = tuple


@dataclass
class _Clauses:
    where: Cond | None = None
    order: list[tuple[Field, bool, bool]] = field(default_factory=list)  # (field, descending, nulls_last)
    limit: int | None = None
    offset: int = 0


def _tokenize(text: str, error_code: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise SfError(400, error_code, f"unexpected token at column {pos + 1}: {text[pos : pos + 20]!r}")
        if match.lastgroup != "ws":
            tokens.append(_Token(match.lastgroup or "", match.group(), pos))
        pos = match.end()
    tokens.append(_Token("end", "<EOF>", pos))
    return tokens


def _decode_string(raw: str, error_code: str) -> str:
    out, i = [], 0
    while i < len(raw):
        char = raw[i]
        if char == "\\":
            escaped = raw[i + 1]
            if escaped not in _STRING_ESCAPES:
                raise SfError(
                    400,
                    error_code,
                    f"Invalid string literal '{raw}'. Illegal character sequence '\\{escaped}' in string literal.",
                )
            out.append(_STRING_ESCAPES[escaped])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


class _Parser:
    """Recursive-descent parsing shared by SOQL and the parenthesised parts of SOSL."""

    def __init__(self, tokens: list[_Token], error_code: str, source: RecordSource) -> None:
        self.tokens, self.i, self.error_code, self.source = tokens, 0, error_code, source

    # -- token helpers ------------------------------------------------------------------------
    def peek(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, token: _Token | None = None) -> SfError:
        token = token or self.peek()
        return SfError(400, self.error_code, f"unexpected token: '{token.text}' at column {token.pos + 1}")

    def at_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "name" and token.text.upper() in words

    def accept_keyword(self, word: str) -> bool:
        if self.at_keyword(word):
            self.i += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.accept_keyword(word):
            raise self.fail()

    def accept_punct(self, char: str) -> bool:
        if self.peek().kind == "punct" and self.peek().text == char:
            self.i += 1
            return True
        return False

    def expect_punct(self, char: str) -> None:
        if not self.accept_punct(char):
            raise self.fail()

    def expect_end(self) -> None:
        if self.peek().kind != "end":
            raise self.fail()

    def integer(self) -> int:
        token = self.next()
        if token.kind != "number" or not token.text.isdigit():
            raise self.fail(token)
        return int(token.text)

    # -- grammar pieces -----------------------------------------------------------------------
    def sobject(self) -> SObjectSchema:
        token = self.next()
        if token.kind != "name":
            raise self.fail(token)
        schema = self.source.schema(token.text)
        if schema is None:
            raise SfError(
                400,
                "INVALID_TYPE",
                f"sObject type '{token.text}' is not supported. If you are "
                "attempting to use a custom object, be sure to append the '__c' "
                "after the entity name.",
            )
        return schema

    def field_ref(self, schema: SObjectSchema) -> Field:
        token = self.next()
        if token.kind != "name":
            raise self.fail(token)
        if "." in token.text:
            relation = token.text.split(".")[0]
            raise SfError(
                400,
                "INVALID_FIELD",
                f"Didn't understand relationship '{relation}' in field path "
                "(the fake does not support relationship queries).",
            )
        found = schema.field(token.text)
        if found is None:
            raise SfError(
                400,
                "INVALID_FIELD",
                f"No such column '{token.text}' on entity '{schema.name}'. If you "
                "are attempting to use a custom field, be sure to append the '__c' "
                "after the custom field name.",
            )
        return found

    def field_list(self, schema: SObjectSchema) -> list[Field]:
        fields = [self.field_ref(schema)]
        while self.accept_punct(","):
            fields.append(self.field_ref(schema))
        return list({f.name: f for f in fields}.values())

    def clauses(self, schema: SObjectSchema) -> _Clauses:
        """``[WHERE ...] [ORDER BY ...] [LIMIT n] [OFFSET n]``, all optional, in that order."""
        result = _Clauses()
        if self.accept_keyword("WHERE"):
            result.where = self.condition(schema)
        if self.accept_keyword("ORDER"):
            self.expect_keyword("BY")
            while True:
                f = self.field_ref(schema)
                desc = self.accept_keyword("DESC")
                if not desc:
                    self.accept_keyword("ASC")
                nulls_last = desc  # Salesforce: ASC puts nulls first, DESC puts them last
                if self.accept_keyword("NULLS"):
                    nulls_last = self.accept_keyword("LAST")
                    if not nulls_last:
                        self.expect_keyword("FIRST")
                result.order.append((f, desc, nulls_last))
                if not self.accept_punct(","):
                    break
        if self.accept_keyword("LIMIT"):
            result.limit = self.integer()
        if self.accept_keyword("OFFSET"):
            result.offset = self.integer()
        return result

    def condition(self, schema: SObjectSchema) -> Cond:
        parts = [self.unary(schema)]
        connective = None
        while self.at_keyword("AND", "OR"):
            word = self.next().text.lower()
            if connective is not None and word != connective:
                raise SfError(
                    400, self.error_code, f"unexpected token: '{word.upper()}' (mixing AND and OR needs parentheses)"
                )
            connective = word
            parts.append(self.unary(schema))
        return (connective, parts) if connective else parts[0]

    def unary(self, schema: SObjectSchema) -> Cond:
        if self.accept_keyword("NOT"):
            return ("not", self.unary(schema))
        if self.accept_punct("("):
            inner = self.condition(schema)
            self.expect_punct(")")
            return inner
        f = self.field_ref(schema)
        if self.at_keyword("NOT", "IN"):
            negate = self.accept_keyword("NOT")
            self.expect_keyword("IN")
            self.expect_punct("(")
            values = [self.literal(f)]
            while self.accept_punct(","):
                values.append(self.literal(f))
            self.expect_punct(")")
            return ("in", f, values, negate)
        if self.accept_keyword("LIKE"):
            value = self.literal(f)
            if value.kind != "string":
                raise self.fail()
            return ("like", f, _like_regex(value.raw))
        token = self.next()
        if token.kind != "op":
            raise self.fail(token)
        return ("cmp", f, "!=" if token.text == "<>" else token.text, self.literal(f))

    def literal(self, f: Field) -> _Literal:
        token = self.next()
        if token.kind == "string":
            raw = token.text[1:-1]
            lit = _Literal("string", _decode_string(raw, self.error_code), raw)
        elif token.kind == "number":
            lit = _Literal("number", float(token.text) if "." in token.text else int(token.text))
        elif token.kind in ("date", "datetime"):
            try:
                value = dt.date.fromisoformat(token.text) if token.kind == "date" else parse_datetime(token.text)
            except ValueError:
                raise self.fail(token) from None
            lit = _Literal("date", value)
        elif token.kind == "name" and token.text.lower() in ("true", "false"):
            lit = _Literal("boolean", token.text.lower() == "true")
        elif token.kind == "name" and token.text.lower() == "null":
            lit = _Literal("null", None)
        else:
            raise self.fail(token)
        _check_literal(f, lit)
        return lit


def _check_literal(f: Field, lit: _Literal) -> None:
    """Reject a literal of the wrong kind, as Salesforce does (e.g. ``IsConverted = 'false'``)."""
    if lit.kind == "null":
        return
    if f.type in TEXT_TYPES or f.type in ID_TYPES:
        expected = "string"
    elif f.type == "boolean":
        expected = "boolean"
    elif f.type in NUMBER_TYPES:
        expected = "number"
    elif f.type in ("date", "datetime"):
        expected = "date"
    else:
        expected = lit.kind
    if lit.kind != expected:
        quoted = "should be enclosed in quotes" if expected == "string" else "should not be enclosed in quotes"
        raise SfError(
            400,
            "INVALID_QUERY_FILTER_OPERATOR",
            f"value of filter criterion for field '{f.name}' must be of type {expected} and {quoted}",
        )
    if f.type in ID_TYPES and not is_salesforce_id(lit.value):
        raise SfError(400, "INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {lit.value}")


def _like_regex(raw: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(raw):
        char = raw[i]
        if char == "\\" and i + 1 < len(raw):
            out.append(re.escape(_STRING_ESCAPES.get(raw[i + 1], raw[i + 1])))
            i += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def _normalize(f: Field, value: Any) -> Any:
    """Bring a stored value or a literal to the form Salesforce compares on."""
    if value is None:
        return None
    if f.type in ID_TYPES and isinstance(value, str):
        return value[:15]
    if f.type in TEXT_TYPES and isinstance(value, str):
        return value if f.case_sensitive else value.casefold()
    if f.type == "datetime":
        if isinstance(value, dt.datetime):
            return value
        if isinstance(value, dt.date):
            return dt.datetime.combine(value, dt.time(), dt.UTC)
        return parse_datetime(value)
    if f.type == "date" and isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    return value


def _matches(cond: Cond, record: dict[str, Any]) -> bool:
    kind = cond[0]
    if kind == "and":
        return all(_matches(c, record) for c in cond[1])
    if kind == "or":
        return any(_matches(c, record) for c in cond[1])
    if kind == "not":
        return not _matches(cond[1], record)
    f: Field = cond[1]
    value = _normalize(f, record.get(f.name))
    if kind == "in":
        found = value in {_normalize(f, lit.value) for lit in cond[2]}
        return found != cond[3]
    if kind == "like":
        return isinstance(record.get(f.name), str) and bool(cond[2].fullmatch(record[f.name]))
    op, other = cond[2], _normalize(f, cond[3].value)
    if op == "=":
        return value == other
    if op == "!=":
        return value != other
    if value is None or other is None:
        return False
    return {"<": value < other, "<=": value <= other, ">": value > other, ">=": value >= other}[op]


def _sort(rows: list[dict[str, Any]], order: list[tuple[Field, bool, bool]]) -> list[dict[str, Any]]:
    """ORDER BY with Salesforce's null placement; ties keep source order (reversed for a DESC first key)."""
    if not order:
        return rows

    def compare(a: tuple[int, dict[str, Any]], b: tuple[int, dict[str, Any]]) -> int:
        for f, desc, nulls_last in order:
            va, vb = _normalize(f, a[1].get(f.name)), _normalize(f, b[1].get(f.name))
            if va == vb:
                continue
            if va is None or vb is None:
                return (1 if nulls_last else -1) * (1 if va is None else -1)
            result = -1 if va < vb else 1
            return -result if desc else result
        return (b[0] - a[0]) if order[0][1] else (a[0] - b[0])

    return [row for _, row in sorted(enumerate(rows), key=cmp_to_key(compare))]


def _apply(rows: list[dict[str, Any]], clauses: _Clauses) -> list[dict[str, Any]]:
    selected = [r for r in rows if clauses.where is None or _matches(clauses.where, r)]
    selected = _sort(selected, clauses.order)[clauses.offset :]
    return selected if clauses.limit is None else selected[: clauses.limit]


def _project(
    source: RecordSource, schema: SObjectSchema, record: dict[str, Any], fields: list[Field]
) -> dict[str, Any]:
    return {"attributes": source.attributes(schema, record), **{f.name: record.get(f.name) for f in fields}}


def run_soql(text: str, source: RecordSource) -> dict[str, Any]:
    """Answer ``GET /query?q=...``: ``{"totalSize", "done", "records"}``."""
    parser = _Parser(_tokenize(text, "MALFORMED_QUERY"), "MALFORMED_QUERY", source)
    parser.expect_keyword("SELECT")
    count_only = False
    if parser.at_keyword("COUNT") and parser.tokens[parser.i + 1].text == "(":
        parser.next()
        parser.expect_punct("(")
        parser.expect_punct(")")
        count_only = True
        fields: list[Field] = []
    else:
        # the FROM object is not known yet: remember the tokens and resolve the fields afterwards
        start = parser.i
        while not parser.at_keyword("FROM") and parser.peek().kind != "end":
            parser.next()
        field_tokens = parser.tokens[start : parser.i]
        if not field_tokens:
            raise parser.fail()
    parser.expect_keyword("FROM")
    schema = parser.sobject()
    if not count_only:
        sub = _Parser([*field_tokens, _Token("end", "FROM", 0)], "MALFORMED_QUERY", source)
        fields = sub.field_list(schema)
        sub.expect_end()
    clauses = parser.clauses(schema)
    parser.expect_end()
    rows = _apply(source.rows(schema), clauses)
    if count_only:
        return {"totalSize": len(rows), "done": True, "records": []}
    records = [_project(source, schema, r, fields) for r in rows]
    return {"totalSize": len(records), "done": True, "records": records}


def _read_search_term(text: str, start: int) -> tuple[str, int]:
    """Read the ``{...}`` term of FIND from ``start`` (just past ``{``); backslash escapes any character."""
    out, i = [], start
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 >= len(text):
                break
            out.append(text[i + 1])
            i += 2
        elif char == "}":
            return "".join(out), i + 1
        elif char == "{":
            raise SfError(400, "MALFORMED_SEARCH", f"unexpected '{{' at column {i + 1}; escape it as '\\{{'")
        else:
            out.append(char)
            i += 1
    raise SfError(400, "MALFORMED_SEARCH", "mismatched character '<EOF>' expecting '}'")


def _words(value: str) -> list[str]:
    return re.findall(r"[^\W_]+", value.casefold())


def _text_matches(term_words: list[str], value: Any) -> bool:
    if not isinstance(value, str) or not term_words:
        return False
    words, n = _words(value), len(term_words)
    return any(words[i : i + n] == term_words for i in range(len(words) - n + 1))


def _search_hit(schema: SObjectSchema, record: dict[str, Any], scope: str, term: str) -> bool:
    """A record matches a term, or any of its ``OR``-separated parts (each may be "quoted")."""
    parts = [part.strip().strip('"') for part in re.split(r"\s+OR\s+", term)]
    return any(_search_hit_one(schema, record, scope, part) for part in parts if part)


def _search_hit_one(schema: SObjectSchema, record: dict[str, Any], scope: str, term: str) -> bool:
    digits, words = phone_digits(term), _words(term)
    for f in schema.fields.values():
        value = record.get(f.name)
        if f.type == "phone" and scope in ("ALL", "PHONE") and phone_matches(digits, value):
            return True
        if f.type == "email" and scope in ("ALL", "EMAIL") and _text_matches(words, value):
            return True
        if scope == "NAME" and f.name in NAME_SEARCH_FIELDS and _text_matches(words, value):
            return True
        if scope == "ALL" and f.type in TEXT_TYPES and _text_matches(words, value):
            return True
    return False


def run_sosl(text: str, source: RecordSource, default_types: tuple[str, ...]) -> dict[str, Any]:
    """Answer ``GET /search?q=...``: ``{"searchRecords": [...]}``."""
    head = re.match(r"\s*FIND\s*\{", text, re.IGNORECASE)
    if head is None:
        raise SfError(400, "MALFORMED_SEARCH", "unexpected token: expecting FIND {search term}")
    term, end = _read_search_term(text, head.end())
    if len(term.strip()) < 2:
        raise SfError(400, "INVALID_SEARCH", "search term must be longer than one character")
    parser = _Parser(_tokenize(text[end:], "MALFORMED_SEARCH"), "MALFORMED_SEARCH", source)
    scope = "ALL"
    if parser.accept_keyword("IN"):
        token = parser.next()
        if token.kind != "name" or token.text.upper() not in ("ALL", "NAME", "EMAIL", "PHONE", "SIDEBAR"):
            raise parser.fail(token)
        scope = "ALL" if token.text.upper() == "SIDEBAR" else token.text.upper()
        parser.expect_keyword("FIELDS")
    targets: list[tuple[SObjectSchema, list[Field], _Clauses]] = []
    if parser.accept_keyword("RETURNING"):
        while True:
            schema = parser.sobject()
            fields, clauses = [schema.fields["id"]], _Clauses()
            if parser.accept_punct("("):
                fields = parser.field_list(schema)
                clauses = parser.clauses(schema)
                parser.expect_punct(")")
            targets.append((schema, fields, clauses))
            if not parser.accept_punct(","):
                break
    overall = parser.integer() if parser.accept_keyword("LIMIT") else 2000
    parser.expect_end()
    if not targets:
        schemas = [s for s in (source.schema(name) for name in default_types) if s is not None]
        targets = [(s, [s.fields["id"]], _Clauses()) for s in schemas]
    found: list[dict[str, Any]] = []
    for schema, fields, clauses in targets:
        hits = [r for r in source.rows(schema) if _search_hit(schema, r, scope, term)]
        found.extend(_project(source, schema, r, fields) for r in _apply(hits, clauses))
    return {"searchRecords": found[:overall]}
