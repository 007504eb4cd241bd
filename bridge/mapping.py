"""Mappings: YAML files, written by admins, that turn one call into the record a connector writes.

A mapping is data, not code. Each target field is a Jinja2 template (rendered
in the sandbox of :mod:`bridge.templating`) or a literal, optionally with a
type and a length limit:

    default_region: US
    value_maps:
      disposition: {issue_resolved: Resolved, _default: Other}
    fields:
      Subject: "Call with {{ call.caller_name or call.phone }}"
      CallDurationInSeconds: {value: "{{ call.duration_sec }}", type: int}
      CallDisposition: {value: "{{ call.post_call_analysis.disposition | lookup('disposition') }}", max_length: 255}
    follow_up:          # optional second record (a follow-up task)
      enabled: true
      when: "{{ call.post_call_analysis.next_steps and call.post_call_analysis.goals_met is not true }}"
      due_in_days: 2
      fields: {Subject: "Follow up: {{ call.caller_name }}"}
    new_contact:        # fields for a person the connector creates when no one matched
      LastName: "{{ call.caller_name or 'Unknown caller ' ~ call.phone }}"

Templates are compiled once when the file is loaded; every error (YAML,
unknown key, syntax, unknown filter, and at render time type errors or
sandbox violations) names the file and the field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml
from jinja2 import Template, TemplateError

from bridge.errors import MappingError
from bridge.settings import Base
from bridge.templating import (
    FALSE_WORDS,
    SandboxEnvironment,
    add_days,
    call_direction,
    date,
    datetime_iso,
    make_environment,
    truncate,
    truthy,
)
from bridge.validation import format_validation_error

__all__ = ["CompiledMapping", "FieldSpec", "MappingFile", "MappingLoader", "render_context"]

FieldType = Literal["str", "int", "float", "bool", "date", "datetime"]
Scalar = str | int | float | bool | None

DEFAULT_FOLLOW_UP_WHEN = "{{ call.post_call_analysis.next_steps and call.post_call_analysis.goals_met is not true }}"


class FieldSpec(Base):
    value: Scalar = None
    """A template (text containing {{ }}) or a literal."""
    type: FieldType = "str"
    max_length: int | None = None
    """Truncate to this many characters, ending with "…(truncated)"; connectors may tighten it from the CRM."""
    required: bool = False
    """Refuse to deliver (dead letter) when the value renders empty, instead of omitting the field."""


FieldValue = Scalar | FieldSpec


class FollowUpSpec(Base):
    enabled: bool = False
    when: str = DEFAULT_FOLLOW_UP_WHEN
    due_in_days: float = 2
    fields: dict[str, FieldValue] = msgspec.field(default_factory=dict)


class MappingFile(Base):
    fields: dict[str, FieldValue]
    description: str = ""
    default_region: str = "US"
    """Region for numbers written without a country code (ISO 3166 alpha-2)."""
    omit_empty: bool = True
    """Leave out fields that render empty instead of sending "" (which would clear the CRM value)."""
    value_maps: dict[str, dict[str, Scalar]] = msgspec.field(default_factory=dict)
    follow_up: FollowUpSpec | None = None
    new_contact: dict[str, FieldValue] = msgspec.field(default_factory=dict)


@dataclass(frozen=True)
class _CompiledField:
    name: str
    template: Template | None
    literal: Any
    spec: FieldSpec


@dataclass
class CompiledMapping:
    """A loaded, compiled mapping file; `render*` turn a call context into records."""

    path: Path
    spec: MappingFile
    digest: str  # sha256 of the file's bytes (first 12 hex digits): which version delivered a call
    env: SandboxEnvironment
    _fields: list[_CompiledField] = field(default_factory=list)
    _follow_up: list[_CompiledField] = field(default_factory=list)
    _follow_up_when: Template | None = None
    _new_contact: list[_CompiledField] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    def context(self, base: MappingABC[str, Any]) -> dict[str, Any]:
        return {**base, "default_region": self.spec.default_region, "value_maps": self.spec.value_maps}

    def render(self, context: MappingABC[str, Any]) -> dict[str, Any]:
        """The main record (`fields`)."""
        return self._render(self._fields, "fields", self.context(context))

    def render_follow_up(self, context: MappingABC[str, Any]) -> dict[str, Any] | None:
        """The follow-up record, or None when the section is off or its condition is false."""
        follow_up = self.spec.follow_up
        if follow_up is None or not follow_up.enabled or self._follow_up_when is None:
            return None
        ctx = self.context(context)
        call = ctx.get("call") or {}
        anchor = call.get("ended_at") or call.get("started_at") or call.get("created_at")
        ctx["due_date"] = add_days(anchor, follow_up.due_in_days)
        if not truthy(self._render_template(self._follow_up_when, "follow_up.when", ctx)):
            return None
        return self._render(self._follow_up, "follow_up.fields", ctx)

    def render_new_contact(self, context: MappingABC[str, Any]) -> dict[str, Any]:
        return self._render(self._new_contact, "new_contact", self.context(context))

    # -- internals ---------------------------------------------------------------------
    def _render(self, fields: list[_CompiledField], section: str, ctx: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for item in fields:
            where = f"{section}.{item.name}"
            raw = item.literal if item.template is None else self._render_template(item.template, where, ctx)
            value = self._coerce(raw, item.spec, where)
            if value is None or value == "":
                if item.spec.required:
                    raise MappingError(f"{self.path.name}: {where}: rendered empty but the field is required")
                if self.spec.omit_empty:
                    continue
            record[item.name] = value
        return record

    def _render_template(self, template: Template, where: str, ctx: dict[str, Any]) -> str:
        try:
            return template.render(ctx)
        except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
            raise MappingError(f"{self.path.name}: {where}: {type(exc).__name__}: {exc}") from exc

    def _coerce(self, raw: Any, spec: FieldSpec, where: str) -> Any:
        if raw is None:
            return None
        text = raw.strip() if isinstance(raw, str) else raw
        try:
            match spec.type:
                case "str":
                    value = str(raw) if not isinstance(raw, bool | int | float) else raw
                    if isinstance(value, str) and spec.max_length is not None:
                        value = truncate(value, spec.max_length)
                    return value
                case "int":
                    return None if text == "" else int(float(text))
                case "float":
                    return None if text == "" else float(text)
                case "bool":
                    if isinstance(text, bool) or text == "":
                        return text if isinstance(text, bool) else None
                    if str(text).lower() in {"true", "yes", "1", "on"}:
                        return True
                    if str(text).lower() in FALSE_WORDS:
                        return False
                    raise ValueError(f"not a boolean: {text!r}")
                case "date":
                    return date(text) or None
                case "datetime":
                    return datetime_iso(text) or None
        except (TypeError, ValueError) as exc:
            raise MappingError(f"{self.path.name}: {where}: cannot convert {text!r} to {spec.type}: {exc}") from exc
        return raw


def render_context(
    *, call: MappingABC[str, Any], event: str, org_id: str, connector: str = "", **extra: Any
) -> dict[str, Any]:
    """The names a template sees: `call` (the webhook's `data`), `event`, `org_id`, `connector`, `direction`."""
    return {
        "call": call,
        "event": event,
        "org_id": org_id,
        "connector": connector,
        "direction": call_direction(call),
        **extra,
    }


class MappingLoader:
    """Loads and compiles mapping files once; relative names resolve against the mappings folder."""

    def __init__(self, directory: Path, env: SandboxEnvironment | None = None) -> None:
        self.directory = directory
        self.env = env or make_environment()
        self._cache: dict[Path, CompiledMapping] = {}

    def resolve(self, name: str) -> Path:
        path = Path(name).expanduser()
        return path if path.is_absolute() else self.directory / path

    def load(self, name: str) -> CompiledMapping:
        path = self.resolve(name)
        cached = self._cache.get(path)
        if cached is None:
            cached = self._cache[path] = compile_mapping(path, self.env)
        return cached


def compile_mapping(path: Path, env: SandboxEnvironment) -> CompiledMapping:
    """Read, validate and compile one mapping file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MappingError(f"{path}: cannot read mapping file: {exc.strerror or exc}") from exc
    try:
        tree = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from exc
    try:
        spec = msgspec.convert(tree, type=MappingFile)
    except msgspec.ValidationError as exc:
        hint = "check the spelling against the mappings/ that ship with the bridge"
        raise MappingError(f"{path}: {format_validation_error(exc, '$', MappingFile, tree, hint)}") from exc
    compiled = CompiledMapping(path=path, spec=spec, digest=hashlib.sha256(data).hexdigest()[:12], env=env)
    compiled._fields = _compile_fields(spec.fields, "fields", path, env)
    if spec.follow_up is not None:
        compiled._follow_up = _compile_fields(spec.follow_up.fields, "follow_up.fields", path, env)
        compiled._follow_up_when = _compile(spec.follow_up.when, "follow_up.when", path, env)
    compiled._new_contact = _compile_fields(spec.new_contact, "new_contact", path, env)
    return compiled


def _compile_fields(
    fields: dict[str, FieldValue], section: str, path: Path, env: SandboxEnvironment
) -> list[_CompiledField]:
    compiled = []
    for name, value in fields.items():
        spec = value if isinstance(value, FieldSpec) else FieldSpec(value=value)
        literal = spec.value
        template = _compile(literal, f"{section}.{name}", path, env) if isinstance(literal, str) else None
        compiled.append(_CompiledField(name=name, template=template, literal=literal, spec=spec))
    return compiled


def _compile(source: str, where: str, path: Path, env: SandboxEnvironment) -> Template:
    try:
        return env.from_string(source)
    except TemplateError as exc:
        line = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        raise MappingError(f"{path}: {where}: {type(exc).__name__}{line}: {exc}") from exc
