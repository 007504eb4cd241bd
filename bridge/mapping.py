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

The mappings in the repo's mappings/ ship inside the package (as
`bridge.builtin_mappings`): a connector naming a file that the admin's
mappings_dir lacks gets the built-in one, and `CompiledMapping.origin` says
which of the two was used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
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

__all__ = [
    "BUILTIN",
    "CompiledMapping",
    "FieldOutcome",
    "FieldSpec",
    "MappingFile",
    "MappingLoader",
    "builtin_mappings",
    "compile_mapping",
    "compile_text",
    "render_context",
]

FieldType = Literal["str", "int", "float", "bool", "date", "datetime"]
Scalar = str | int | float | bool | None

BUILTIN = "built-in"
"""CompiledMapping.origin of a file that ships with the bridge."""
BUILTIN_PACKAGE = "bridge.builtin_mappings"

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


@dataclass(frozen=True)
class FieldOutcome:
    """One field as :meth:`CompiledMapping.render_fields` rendered it: its value, or why it failed."""

    name: str
    where: str
    """`fields.Subject`, `follow_up.fields.Subject`, `new_contact.LastName`: how errors and `check` name it."""
    value: Any
    error: str = ""


@dataclass
class CompiledMapping:
    """A loaded, compiled mapping file; `render*` turn a call context into records."""

    name: str
    """The bare file name (`salesforce_task.yaml`), as connectors name it and the delivery history records it."""
    origin: str
    """Where it was read: the admin's file (its path), or BUILTIN for the copy that ships with the bridge."""
    spec: MappingFile
    digest: str  # sha256 of the file's bytes (first 12 hex digits): which version delivered a call
    env: SandboxEnvironment
    _fields: list[_CompiledField] = field(default_factory=list)
    _follow_up: list[_CompiledField] = field(default_factory=list)
    _follow_up_when: Template | None = None
    _new_contact: list[_CompiledField] = field(default_factory=list)

    @property
    def builtin(self) -> bool:
        return self.origin == BUILTIN

    @property
    def location(self) -> str:
        """`salesforce_task.yaml (built-in)`, or the path of the admin's file: what `check` prints."""
        return f"{self.name} ({BUILTIN})" if self.builtin else self.origin

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
        ctx = self._follow_up_context(context, follow_up)
        if not truthy(self._render_template(self._follow_up_when, "follow_up.when", ctx)):
            return None
        return self._render(self._follow_up, "follow_up.fields", ctx)

    def render_new_contact(self, context: MappingABC[str, Any]) -> dict[str, Any]:
        return self._render(self._new_contact, "new_contact", self.context(context))

    def follow_up_applies(self, context: MappingABC[str, Any]) -> bool:
        """Whether `render_follow_up` would give a record (the section is on and its `when` holds)."""
        follow_up = self.spec.follow_up
        if follow_up is None or not follow_up.enabled or self._follow_up_when is None:
            return False
        ctx = self._follow_up_context(context, follow_up)
        return truthy(self._render_template(self._follow_up_when, "follow_up.when", ctx))

    def render_fields(self, section: str, context: MappingABC[str, Any]) -> list[FieldOutcome]:
        """Every field of a section (`fields`, `follow_up`, `new_contact`) rendered on its own, each with its value
        or its error (the same MappingError text delivery raises): the console's playground shows every failing
        field at once, where `render*` stop at the first. A field that renders empty and is omitted has value None.
        """
        if section == "fields":
            items, where, ctx = self._fields, "fields", self.context(context)
        elif section == "follow_up":
            follow_up = self.spec.follow_up or FollowUpSpec()
            items, where, ctx = self._follow_up, "follow_up.fields", self._follow_up_context(context, follow_up)
        elif section == "new_contact":
            items, where, ctx = self._new_contact, "new_contact", self.context(context)
        else:
            raise ValueError(f"unknown mapping section {section!r}")
        outcomes = []
        for item in items:
            try:
                record = self._render([item], where, ctx)
            except MappingError as exc:
                outcomes.append(FieldOutcome(item.name, f"{where}.{item.name}", None, str(exc)))
                continue
            outcomes.append(FieldOutcome(item.name, f"{where}.{item.name}", record.get(item.name)))
        return outcomes

    def _follow_up_context(self, context: MappingABC[str, Any], follow_up: FollowUpSpec) -> dict[str, Any]:
        ctx = self.context(context)
        call = ctx.get("call") or {}
        anchor = call.get("ended_at") or call.get("started_at") or call.get("created_at")
        ctx["due_date"] = add_days(anchor, follow_up.due_in_days)
        return ctx

    # -- internals ---------------------------------------------------------------------
    def _render(self, fields: list[_CompiledField], section: str, ctx: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for item in fields:
            where = f"{section}.{item.name}"
            raw = item.literal if item.template is None else self._render_template(item.template, where, ctx)
            value = self._coerce(raw, item.spec, where)
            if value is None or value == "":
                if item.spec.required:
                    raise MappingError(f"{self.name}: {where}: rendered empty but the field is required")
                if self.spec.omit_empty:
                    continue
            record[item.name] = value
        return record

    def _render_template(self, template: Template, where: str, ctx: dict[str, Any]) -> str:
        try:
            return template.render(ctx)
        except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
            raise MappingError(f"{self.name}: {where}: {type(exc).__name__}: {exc}") from exc

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
            raise MappingError(f"{self.name}: {where}: cannot convert {text!r} to {spec.type}: {exc}") from exc
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
    """Loads and compiles mapping files once.

    A bare file name is the admin's file in the mappings folder when there is one, else the built-in
    file of that name (the repo's mappings/, shipped inside the package), so a bridge installed from a
    wheel runs with nothing but a config file. An admin's file wins over a built-in of the same name;
    other names (absolute, or with a folder) are files only.

    `load` notices when an admin's file changed on disk (its size or modification time) and compiles it
    again, and when a file appears in the mappings folder over a built-in: workers call it before each
    delivery, so a mapping saved from the console is used by the next delivery without a restart.
    """

    def __init__(
        self, directory: Path, env: SandboxEnvironment | None = None, *, builtins: Traversable | None = None
    ) -> None:
        self.directory = directory
        self.env = env or make_environment()
        self.builtins = builtins if builtins is not None else builtin_mappings()
        self._cache: dict[str, CompiledMapping] = {}
        self._stamps: dict[str, tuple[int, int]] = {}

    def load(self, name: str) -> CompiledMapping:
        path = Path(name).expanduser()
        local = path if path.is_absolute() else self.directory / path
        bare = path.name == name
        if local.is_file() or not bare:
            key = str(local)
            try:
                stat = local.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
            except OSError:
                stamp = (0, 0)
            if key not in self._cache or self._stamps.get(key) != stamp:
                self._cache[key] = compile_mapping(local, self.env)
                self._stamps[key] = stamp
            return self._cache[key]
        builtin = self.builtins / name
        if not builtin.is_file():
            raise MappingError(f"{name}: {self._not_found()}")
        key = f"{BUILTIN}:{name}"
        if key not in self._cache:
            self._cache[key] = _compile_source(builtin.read_bytes(), name, BUILTIN, self.env)
        return self._cache[key]

    def builtin_names(self) -> list[str]:
        return sorted(item.name for item in self.builtins.iterdir() if item.name.endswith((".yaml", ".yml")))

    def _not_found(self) -> str:
        folder = "" if self.directory.is_dir() else ", a folder that does not exist"
        return (
            f"no such file in mappings_dir ({self.directory}{folder}) nor among the built-in mappings "
            f"({', '.join(self.builtin_names()) or 'none installed'})"
        )


def builtin_mappings() -> Traversable:
    """The mapping files that ship with the bridge: package data `bridge.builtin_mappings` (the repo's mappings/)."""
    return resources.files(BUILTIN_PACKAGE)


def compile_mapping(path: Path, env: SandboxEnvironment) -> CompiledMapping:
    """Read, validate and compile one mapping file of the admin's."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MappingError(f"{path}: cannot read mapping file: {exc.strerror or exc}") from exc
    return _compile_source(data, path.name, str(path), env)


def compile_text(text: str, name: str, origin: str, env: SandboxEnvironment) -> CompiledMapping:
    """Compile a mapping held in memory (the console's playground) exactly as the file `name` at `origin` (a
    path, or BUILTIN) would be: the same checks, the same digest, errors worded as `check` words them."""
    return _compile_source(text.encode("utf-8"), name, origin, env)


def _compile_source(data: bytes, name: str, origin: str, env: SandboxEnvironment) -> CompiledMapping:
    label = f"{name} ({BUILTIN})" if origin == BUILTIN else origin  # what every error starts with
    try:
        tree = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise MappingError(f"{label}: not valid YAML: {exc}") from exc
    try:
        spec = msgspec.convert(tree, type=MappingFile)
    except msgspec.ValidationError as exc:
        hint = "check the spelling against the mappings/ that ship with the bridge"
        raise MappingError(f"{label}: {format_validation_error(exc, '$', MappingFile, tree, hint)}") from exc
    digest = hashlib.sha256(data).hexdigest()[:12]
    compiled = CompiledMapping(name=name, origin=origin, spec=spec, digest=digest, env=env)
    compiled._fields = _compile_fields(spec.fields, "fields", label, env)
    if spec.follow_up is not None:
        compiled._follow_up = _compile_fields(spec.follow_up.fields, "follow_up.fields", label, env)
        compiled._follow_up_when = _compile(spec.follow_up.when, "follow_up.when", label, env)
    compiled._new_contact = _compile_fields(spec.new_contact, "new_contact", label, env)
    return compiled


def _compile_fields(
    fields: dict[str, FieldValue], section: str, label: str, env: SandboxEnvironment
) -> list[_CompiledField]:
    compiled = []
    for name, value in fields.items():
        spec = value if isinstance(value, FieldSpec) else FieldSpec(value=value)
        literal = spec.value
        template = _compile(literal, f"{section}.{name}", label, env) if isinstance(literal, str) else None
        compiled.append(_CompiledField(name=name, template=template, literal=literal, spec=spec))
    return compiled


def _compile(source: str, where: str, label: str, env: SandboxEnvironment) -> Template:
    try:
        return env.from_string(source)
    except TemplateError as exc:
        line = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        raise MappingError(f"{label}: {where}: {type(exc).__name__}{line}: {exc}") from exc
