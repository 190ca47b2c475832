"""RBAC policy in the oslo.policy rule language, with defaults an operator can override.

Supported: `@`, `!`, `rule:NAME`, `role:NAME`, `KIND:VALUE` where VALUE is a literal or a
`%(target.x.y)s` substitution, `'literal':%(target.x)s`, `and`, `or`, `not` and parentheses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from picocloud.errors import Forbidden

Check = Callable[[Mapping[str, Any], Mapping[str, Any], "Enforcer"], bool]

_TOKEN = re.compile(r"\s*(\(|\)|(?:'[^']*'|%\([^)]*\)s|[^\s()'%]|%)+)")
_SUBST = re.compile(r"^%\(([^)]+)\)s$")


class PolicySyntaxError(ValueError):
    pass


def flatten(target: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'target': {'user': {'id': 1}}} -> {'target.user.id': 1, 'target.user': {...}, ...}."""
    out: dict[str, Any] = {}
    for key, value in target.items():
        name = f"{prefix}{key}"
        out[name] = value
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
    return out


def _lookup(creds: Mapping[str, Any], kind: str) -> Any:
    if kind in creds:
        return creds[kind]
    value: Any = creds
    for part in kind.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


_MISSING = object()


def _resolve(match: str, target: Mapping[str, Any]) -> Any:
    m = _SUBST.match(match)
    if m:
        return target.get(m.group(1), _MISSING)
    if len(match) >= 2 and match[0] == match[-1] == "'":
        return match[1:-1]
    return match


def _as_str(value: Any) -> str:
    return str(value)


def _check(token: str) -> Check:
    if token == "@":
        return lambda c, t, e: True
    if token == "!":
        return lambda c, t, e: False
    if ":" not in token:
        raise PolicySyntaxError(f"not a check: {token!r}")
    kind, match = token.split(":", 1)
    if kind == "rule":
        return lambda c, t, e: e.check_rule(match, c, t)
    if kind == "role":
        wanted = match.lower()

        def role_check(c: Mapping[str, Any], t: Mapping[str, Any], e: Enforcer) -> bool:
            expected = _resolve(wanted, t)
            if expected is _MISSING:
                return False
            return str(expected).lower() in {r.lower() for r in c.get("roles", ())}

        return role_check
    if kind.startswith("'") and kind.endswith("'"):
        literal = kind[1:-1]

        def literal_check(c: Mapping[str, Any], t: Mapping[str, Any], e: Enforcer) -> bool:
            value = _resolve(match, t)
            return value is not _MISSING and _as_str(value) == literal

        return literal_check

    def generic(c: Mapping[str, Any], t: Mapping[str, Any], e: Enforcer) -> bool:
        expected = _resolve(match, t)
        have = _lookup(c, kind)
        if expected is _MISSING or have is _MISSING:
            return False
        if isinstance(have, (list, tuple, set)):
            return _as_str(expected) in {_as_str(v) for v in have}
        return _as_str(have) == _as_str(expected)

    return generic


def compile_rule(text: str) -> Check:
    """Parse one rule string into a check function."""
    tokens = [t for t in _TOKEN.findall(text.strip()) if t]
    if not tokens:
        return lambda c, t, e: True
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise PolicySyntaxError(f"unexpected end of rule: {text!r}")
        pos += 1
        return str(tokens[pos - 1])

    def parse_or() -> Check:
        parts = [parse_and()]
        while peek() == "or":
            take()
            parts.append(parse_and())
        if len(parts) == 1:
            return parts[0]
        return lambda c, t, e: any(p(c, t, e) for p in parts)

    def parse_and() -> Check:
        parts = [parse_not()]
        while peek() == "and":
            take()
            parts.append(parse_not())
        if len(parts) == 1:
            return parts[0]
        return lambda c, t, e: all(p(c, t, e) for p in parts)

    def parse_not() -> Check:
        if peek() == "not":
            take()
            inner = parse_not()
            return lambda c, t, e: not inner(c, t, e)
        return parse_atom()

    def parse_atom() -> Check:
        token = take()
        if token == "(":
            inner = parse_or()
            if take() != ")":
                raise PolicySyntaxError(f"missing ')' in {text!r}")
            return inner
        return _check(token)

    result = parse_or()
    if pos != len(tokens):
        raise PolicySyntaxError(f"unexpected {tokens[pos]!r} in {text!r}")
    return result


class Enforcer:
    """Rules by name: defaults from each service, overridden by the operator's policy file."""

    def __init__(self, defaults: Mapping[str, str], policy_file: str = "") -> None:
        self.texts: dict[str, str] = dict(defaults)
        if policy_file:
            self.texts.update(load_policy_file(Path(policy_file)))
        self.rules = {name: compile_rule(text) for name, text in self.texts.items()}

    def check_rule(self, name: str, creds: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
        rule = self.rules.get(name)
        return rule is not None and rule(creds, target, self)

    def allowed(self, name: str, creds: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
        if name not in self.rules:
            raise KeyError(f"no policy rule {name!r}")
        return self.check_rule(name, creds, flatten(target))

    def enforce(self, name: str, creds: Mapping[str, Any], target: Mapping[str, Any]) -> None:
        if not self.allowed(name, creds, target):
            raise Forbidden(f"You are not authorized to perform the requested action: {name}.")


def load_policy_file(path: Path) -> dict[str, str]:
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise PolicySyntaxError(f"{path}: expected a mapping of rule name to rule string")
    for name, rule in data.items():
        compile_rule(rule)  # fail at start, not at request time
        del name
    return dict(data)
