"""Which connectors a call goes to.

Routes are tried in order and the first whose `when` holds decides; a route
without `when` matches everything, so it can close the list as a default.
Without any routes, every enabled connector gets every call. Connectors that
are disabled in the config are dropped from a route's list (they may be
configured ahead of their credentials).

Conditions are Jinja2 in the same sandbox as mappings, written either as an
expression (`call.status == 'completed'`) or as a template
(`{{ call.status == 'completed' }}`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError

from bridge.errors import ConfigError
from bridge.settings import Settings
from bridge.templating import SandboxEnvironment, make_environment, truthy

__all__ = ["RouteDecision", "Router"]

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


@dataclass(frozen=True)
class RouteDecision:
    connectors: tuple[str, ...]
    rule: str  # "routes[1] (name)" or "default: all connectors"


class Router:
    def __init__(self, settings: Settings, env: SandboxEnvironment | None = None) -> None:
        env = env or make_environment()
        enabled = settings.enabled_connectors()
        self._all = tuple(enabled)
        self._routes: list[tuple[str, Any, tuple[str, ...]]] = []
        for i, route in enumerate(settings.routes):
            label = f"routes[{i}]" + (f" ({route.name})" if route.name else "")
            condition = None
            if route.when.strip():
                source = route.when
                match = _SINGLE_EXPRESSION.match(source)
                try:
                    if match and "{{" not in match.group(1):
                        condition = env.compile_expression(match.group(1))
                    elif "{{" in source or "{%" in source:
                        condition = env.from_string(source)
                    else:
                        condition = env.compile_expression(source)
                except TemplateError as exc:
                    raise ConfigError(f"{settings.config_path}: routes[{i}].when: {exc}") from exc
            targets = tuple(name for name in route.connectors if name in enabled)
            self._routes.append((label, condition, targets))

    @property
    def needs_call(self) -> bool:
        """Whether any route looks at the call; when none does, the hot path skips building a context."""
        return any(condition is not None for _, condition, _ in self._routes)

    def route(self, context: Mapping[str, Any]) -> RouteDecision:
        """Decide for one call; a condition that fails to evaluate counts as not matching."""
        if not self._routes:
            return RouteDecision(self._all, "default: all connectors")
        for label, condition, targets in self._routes:
            if condition is None or _holds(condition, context):
                return RouteDecision(targets, label)
        return RouteDecision((), "no route matched")


def _holds(condition: Any, context: Mapping[str, Any]) -> bool:
    try:
        if hasattr(condition, "render"):
            return truthy(condition.render(context))
        return bool(condition(**context))
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError):
        return False
