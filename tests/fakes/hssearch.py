"""Search evaluation for :class:`tests.fakes.hubspot.FakeHubSpot`.

Kept apart from the HTTP fake so the filter semantics can be read on their own. HubSpot documents
its search only loosely (REFERENCE.md §1.5); each rule below says where it comes from or, where the
docs are silent, which choice the fake made and why.

The module is pure: it gets ``(id, properties)`` pairs plus two callbacks (a property's type, and an
object's associated ids) and returns the matching ids. It knows nothing of HTTP or locking.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Limits from REFERENCE.md §1.5 ("use <=5 groups"; 6 filters a group; 18 in all; limit <= 200;
# at most 10,000 results reachable by paging).
MAX_FILTER_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS_TOTAL = 18
MAX_LIMIT = 200
MAX_RESULTS = 10_000
DEFAULT_LIMIT = 10

OPERATORS = frozenset(
    {
        "EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN",
        "HAS_PROPERTY", "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN",
    }
)  # fmt: skip

# Activities name their system dates hs_createdate / hs_lastmodifieddate while contacts use
# createdate / lastmodifieddate. A sort on the contact spelling falls back to the hs_ one so one
# client-side "newest first" sort works on every type.
_FALLBACK_NAMES = {"lastmodifieddate": "hs_lastmodifieddate", "createdate": "hs_createdate"}

PropType = Callable[[str], "str | None"]  # property name -> HubSpot type, None when undefined
Associated = Callable[[str, str], "set[str]"]  # (object id, to-type as written) -> associated ids


class SearchError(ValueError):
    """A search request HubSpot would reject with 400 VALIDATION_ERROR."""


@dataclass
class SearchQuery:
    groups: list[list[dict[str, Any]]]
    sorts: list[tuple[str, bool]]  # (property, descending)
    properties: list[str] | None
    limit: int
    offset: int
    query: str | None


# -- value helpers (shared with the server's validation) ------------------------------------------
def national_digits(raw: str | None) -> str | None:
    """HubSpot's ``hs_searchable_calculated_*`` value: digits only, without a NANP country code.

    HubSpot really uses the portal's country settings; the fake only drops a leading ``1`` from
    11-digit numbers, which is what the bridge's North-American test data needs.
    """
    if not raw:
        return None
    digits = re.sub(r"\D", "", raw)
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return digits or None


def to_epoch_ms(value: Any) -> int | None:
    """Epoch milliseconds from a ms string/int or an ISO-8601 string (naive = UTC); None if neither."""
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def split_tokens(value: str) -> list[str]:
    """Tokens for CONTAINS_TOKEN: split on whitespace and ``;`` (multi-value separator), case-folded."""
    return [token for token in re.split(r"[\s;]+", value.casefold()) if token]


def _token_regex(token: str) -> re.Pattern[str]:
    # Only `*` is a wildcard; everything else (dots in emails, `?`, `[`) is literal.
    return re.compile("".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", token)))


# -- request parsing -------------------------------------------------------------------------------
def parse_request(body: Any, prop_type: PropType) -> SearchQuery:
    """Validate a PublicObjectSearchRequest. ``{}`` is valid (REFERENCE.md §0.7)."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise SearchError("Invalid input JSON: expected an object")
    groups_in = body.get("filterGroups") or []
    if not isinstance(groups_in, list):
        raise SearchError("filterGroups must be a list")
    if len(groups_in) > MAX_FILTER_GROUPS:
        raise SearchError(f"Too many filter groups ({len(groups_in)}); the maximum is {MAX_FILTER_GROUPS}")
    groups: list[list[dict[str, Any]]] = []
    total = 0
    for group in groups_in:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list):
            raise SearchError("Each filterGroup needs a filters list")
        if len(filters) > MAX_FILTERS_PER_GROUP:
            raise SearchError(f"Too many filters in a group ({len(filters)}); the maximum is {MAX_FILTERS_PER_GROUP}")
        total += len(filters)
        for flt in filters:
            _check_filter(flt, prop_type)
        groups.append(filters)
    if total > MAX_FILTERS_TOTAL:
        raise SearchError(f"Too many filters ({total}); the maximum is {MAX_FILTERS_TOTAL}")

    limit = body.get("limit", DEFAULT_LIMIT)
    if limit is None:
        limit = DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise SearchError("limit must be a non-negative integer")
    if limit > MAX_LIMIT:
        raise SearchError(f"limit must be at most {MAX_LIMIT}")
    after = body.get("after") or 0
    try:
        offset = int(after)
    except (TypeError, ValueError):
        raise SearchError(f"Invalid after value: {after!r}") from None
    if offset < 0 or offset + limit > MAX_RESULTS:
        raise SearchError(f"Paging past {MAX_RESULTS} results is not supported")

    properties = body.get("properties")
    if properties is not None and not (isinstance(properties, list) and all(isinstance(p, str) for p in properties)):
        raise SearchError("properties must be a list of strings")
    query = body.get("query")
    if query is not None and (not isinstance(query, str) or len(query) > 3000):
        raise SearchError("query must be a string of at most 3000 characters")
    sorts = _parse_sorts(body.get("sorts") or [], prop_type)
    return SearchQuery(groups, sorts, properties or None, limit, offset, query)


def _check_filter(flt: Any, prop_type: PropType) -> None:
    if not isinstance(flt, dict) or not isinstance(flt.get("propertyName"), str):
        raise SearchError("Each filter needs a propertyName")
    name, operator = flt["propertyName"], flt.get("operator", "EQ")
    if operator not in OPERATORS:
        raise SearchError(f"Unknown operator {operator!r}")
    if not name.startswith("associations.") and prop_type(name) is None:
        raise SearchError(f"There was a problem with the request: property {name!r} does not exist")
    if operator in ("IN", "NOT_IN") and not isinstance(flt.get("values"), list):
        raise SearchError(f"Operator {operator} needs a values list")
    if operator == "BETWEEN" and ("value" not in flt or "highValue" not in flt):
        raise SearchError("Operator BETWEEN needs value and highValue")
    if operator not in ("IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY") and flt.get("value") is None:
        raise SearchError(f"Operator {operator} needs a value")


def _parse_sorts(sorts: Any, prop_type: PropType) -> list[tuple[str, bool]]:
    """Accept both documented spellings: ``[{"propertyName","direction"}]`` and ``["-prop"]``."""
    if not isinstance(sorts, list):
        raise SearchError("sorts must be a list")
    parsed: list[tuple[str, bool]] = []
    for item in sorts:
        if isinstance(item, str):
            name, descending = item.lstrip("-"), item.startswith("-")
        elif isinstance(item, dict) and isinstance(item.get("propertyName"), str):
            direction = item.get("direction", "ASCENDING")
            if direction not in ("ASCENDING", "DESCENDING"):
                raise SearchError(f"Invalid sort direction {direction!r}")
            name, descending = item["propertyName"], direction == "DESCENDING"
        else:
            raise SearchError(f"Invalid sort {item!r}")
        if prop_type(name) is None and prop_type(_FALLBACK_NAMES.get(name, name)) is not None:
            name = _FALLBACK_NAMES[name]
        if prop_type(name) is None:
            raise SearchError(f"Cannot sort by unknown property {name!r}")
        parsed.append((name, descending))
    return parsed


# -- evaluation ------------------------------------------------------------------------------------
def _ordered(value: Any, ptype: str | None) -> tuple[int, Any]:
    """A comparable form: (0, number) for numbers and dates, (1, casefolded text) otherwise."""
    if value is None:
        return (2, "")
    if ptype in ("datetime", "date"):
        ms = to_epoch_ms(value)
        if ms is not None:
            return (0, ms)
    if ptype == "number":
        try:
            return (0, float(value))
        except (TypeError, ValueError):
            pass
    return (1, str(value).casefold())


def _filter_matches(
    object_id: str, props: Mapping[str, str], flt: dict[str, Any], prop_type: PropType, associated: Associated
) -> bool:
    name, operator = flt["propertyName"], flt.get("operator", "EQ")
    if name.startswith("associations."):
        # HubSpot's documented pseudo-property: {"propertyName":"associations.contact","operator":"EQ","value":id}.
        ids = associated(object_id, name.split(".", 1)[1])
        if operator in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
            return bool(ids) == (operator == "HAS_PROPERTY")
        wanted = {str(v) for v in flt.get("values", [])} if operator in ("IN", "NOT_IN") else {str(flt.get("value"))}
        hit = bool(ids & wanted)
        return hit if operator in ("EQ", "IN") else not hit

    raw = props.get(name)
    present = raw not in (None, "")
    if operator == "HAS_PROPERTY":
        return present
    if operator == "NOT_HAS_PROPERTY":
        return not present
    ptype = prop_type(name)
    actual = _ordered(raw, ptype)
    if operator in ("EQ", "NEQ"):
        # String EQ is case-insensitive (emails stored "Jane@X.com" match "jane@x.com"). NEQ also
        # matches objects without the property, as HubSpot does.
        equal = present and actual == _ordered(flt.get("value"), ptype)
        return equal if operator == "EQ" else not equal
    if operator in ("IN", "NOT_IN"):
        # HubSpot wants lowercase IN values for strings; matching case-insensitively covers that.
        hit = present and any(actual == _ordered(v, ptype) for v in flt["values"])
        return hit if operator == "IN" else not hit
    if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        tokens = split_tokens(str(raw)) if present else []
        patterns = [_token_regex(t) for t in split_tokens(str(flt["value"]))]
        hit = bool(patterns) and all(any(p.fullmatch(t) for t in tokens) for p in patterns)
        return hit if operator == "CONTAINS_TOKEN" else not hit
    if not present:
        return False
    low = _ordered(flt["value"], ptype)
    if actual[0] != low[0]:
        return False  # a number against text never matches a range
    if operator == "BETWEEN":
        high = _ordered(flt["highValue"], ptype)
        return low[1] <= actual[1] <= high[1]
    return {"LT": actual < low, "LTE": actual <= low, "GT": actual > low, "GTE": actual >= low}[operator]


def _query_matches(props: Mapping[str, str], query: str) -> bool:
    """Free-text ``query``: every query word must prefix a word of some property value.

    HubSpot searches a fixed set of default text properties; the fake searches all of them.
    """
    words: set[str] = set()
    for value in props.values():
        if value:
            text = str(value).casefold()
            words.update(re.split(r"[\s;,]+", text))  # whole emails / numbers
            words.update(re.split(r"\W+", text))  # and their parts
    return all(any(w.startswith(q) for w in words if w) for q in split_tokens(query))


def run(
    objects: Iterable[tuple[str, Mapping[str, str]]], query: SearchQuery, prop_type: PropType, associated: Associated
) -> tuple[int, list[str], int | None]:
    """Filter, sort and page. Returns (total matches, ids of this page, next offset or None).

    Groups are OR'd, filters inside a group AND'd; no groups matches everything. Without sorts the
    order is by id (= creation order), which HubSpot does not promise but tests can rely on.
    """
    matched = [
        (oid, props)
        for oid, props in objects
        if (
            not query.groups
            or any(all(_filter_matches(oid, props, f, prop_type, associated) for f in g) for g in query.groups)
        )
        and (not query.query or _query_matches(props, query.query))
    ]

    def compare(a: tuple[str, Mapping[str, str]], b: tuple[str, Mapping[str, str]]) -> int:
        for name, descending in query.sorts:
            ptype = prop_type(name)
            va, vb = _ordered(a[1].get(name) or None, ptype), _ordered(b[1].get(name) or None, ptype)
            if va[0] == 2 or vb[0] == 2:  # missing values last in either direction
                if va[0] != vb[0]:
                    return -1 if vb[0] == 2 else 1
                continue
            if va != vb:
                result = -1 if va < vb else 1
                return -result if descending else result
        return (int(a[0]) > int(b[0])) - (int(a[0]) < int(b[0]))

    matched.sort(key=functools.cmp_to_key(compare))
    end = query.offset + query.limit
    page = [oid for oid, _ in matched[query.offset : end]]
    return len(matched), page, (end if end < len(matched) else None)
