"""msgspec validation errors, said the way an admin reads a YAML file.

msgspec reports "Expected `int`, got `str` - at `$.server.port`". An admin needs the key as it
appears in the file (`server.port`), the key's name when it is a dict key (msgspec writes `[...]`
there, so `fields[...].type` becomes `fields.Subject.type`), and, for a wrong choice, the choices.
Config files, connector settings and mapping files all go through `format_validation_error`.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any, Literal

import msgspec

__all__ = ["format_validation_error"]

_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[([^\]]*)\]")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def format_validation_error(
    exc: msgspec.ValidationError,
    root: str = "$",
    type_: Any = None,
    tree: Any = None,
    unknown_hint: str = "check the spelling against config.example.yaml",
) -> str:
    """'key.path: reason' for `exc`, raised converting `tree` (optional) to `type_` (optional).

    `root` is where `tree` sits in the file ("$.connectors.sf" for one connector's settings)."""
    message = str(exc)
    match = re.search(r" - at `\$(.*)`$", message)
    reason = message[: match.start()] if match else message
    located, choices = _locate(match.group(1) if match else "", type_, tree)
    if reason.startswith("Invalid enum value") and choices:
        reason += f" (expected one of: {', '.join(map(str, choices))})"
    key = (root + located).removeprefix("$").removeprefix(".")
    # msgspec names a missing or unknown key in the message and locates its parent; make it one path.
    named = re.match(r"Object (missing required|contains unknown) field `([^`]+)`", reason)
    if named:
        key = f"{key}.{named.group(2)}" if key else named.group(2)
        reason = "required key is missing" if named.group(1).startswith("missing") else f"unknown key ({unknown_hint})"
    return f"{key}: {reason}" if key else reason


def _locate(path: str, type_: Any, tree: Any) -> tuple[str, tuple[Any, ...]]:
    """Walk `path` through the type (and the data, when given) at once.

    Returns the path with `[...]` replaced by the offending dict key where the data shows which
    one it is, and the Literal choices allowed at the end of the path (or ())."""
    out = ""
    for name, index in _SEGMENT.findall(path):
        type_ = _strip(type_)
        if name:
            out += f".{name}"
            # A key inside a union (a scalar or a Struct, as a mapping field is) belongs to its Struct.
            type_ = next((t for t in typing.get_args(type_) if _is_struct(t)), type_)
            fields = {f.name: f.type for f in msgspec.structs.fields(type_)} if _is_struct(type_) else {}
            type_ = fields.get(name)
            tree = tree.get(name) if isinstance(tree, dict) else None
            continue
        args = typing.get_args(type_)
        type_ = args[-1] if args else None  # the item type of a list, the value type of a dict
        if index.isdigit():
            out += f"[{index}]"
            tree = tree[int(index)] if isinstance(tree, list) and int(index) < len(tree) else None
            continue
        key = _failing_key(tree, type_)
        if key is None:
            out += f"[{index}]"
            tree = None
        else:
            out += f".{key}" if _PLAIN_KEY.fullmatch(key) else f"[{key!r}]"
            tree = tree[key]
    type_ = _strip(type_)
    return out, typing.get_args(type_) if typing.get_origin(type_) is Literal else ()


def _failing_key(tree: Any, value_type: Any) -> str | None:
    """The first key of dict `tree` whose value does not convert to `value_type`."""
    if not isinstance(tree, dict) or value_type is None:
        return None
    for key, value in tree.items():
        try:
            msgspec.convert(value, type=value_type, strict=False)
        except (msgspec.ValidationError, TypeError):
            return str(key)
    return None


def _strip(type_: Any) -> Any:
    """Annotated[X, ...] → X; X | None → X."""
    while True:
        if typing.get_origin(type_) is Annotated:
            type_ = typing.get_args(type_)[0]
            continue
        args = [a for a in typing.get_args(type_) if a is not type(None)]
        if typing.get_origin(type_) in (typing.Union, types.UnionType) and len(args) == 1:
            type_ = args[0]
            continue
        return type_


def _is_struct(type_: Any) -> bool:
    return isinstance(type_, type) and issubclass(type_, msgspec.Struct)
