"""Nova-style request checks: JSON Schema's rules and messages, without a schema engine.

Nova validates bodies with JSON Schema and answers 400 "Invalid input for field/attribute X.
Value: V. <reason>"; these helpers give the same answers for the few shapes compute uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from picocloud.errors import BadRequest

MAX_INT = 0x7FFFFFFF  # Nova's db.MAX_INT: every integer column is a signed 32-bit int
_DIGITS = re.compile(r"^-?[0-9]+$")
_METADATA_KEY = re.compile(r"[a-zA-Z0-9_:. -]{1,255}")
_TRUE = {"1", "t", "true", "on", "y", "yes"}
_FALSE = {"0", "f", "false", "off", "n", "no"}


def invalid(field: str, value: Any, reason: str) -> BadRequest:
    return BadRequest(f"Invalid input for field/attribute {field}. Value: {value}. {reason}")


def obj(body: Any, key: str) -> dict[str, Any]:
    """body[key], which must be an object ("'key' is a required property" otherwise)."""
    if not isinstance(body, dict) or key not in body:
        raise BadRequest(f"Invalid input for field/attribute {key}. Value: {body}. "
                         f"'{key}' is a required property")
    value = body[key]
    if not isinstance(value, dict):
        raise invalid(key, value, f"{value!r} is not of type 'object'")
    return value


def only(body: dict[str, Any], allowed: Iterable[str]) -> None:
    """Refuse keys outside `allowed` as JSON Schema's additionalProperties: false does."""
    extra = sorted(set(body) - set(allowed))
    if extra:
        names = ", ".join(f"'{k}'" for k in extra)
        verb = "were" if len(extra) > 1 else "was"
        raise BadRequest(f"Additional properties are not allowed ({names} {verb} unexpected)")


def required(body: dict[str, Any], *names: str) -> None:
    for name in names:
        if name not in body:
            raise BadRequest(f"Invalid input for field/attribute {name}. Value: None. "
                             f"'{name}' is a required property")


def integer(field: str, value: Any, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """An integer, or a string of digits as Nova accepts, within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise invalid(field, value, f"{value!r} is not of type 'integer', 'string'")
    if isinstance(value, str):
        if not _DIGITS.match(value.strip()):
            raise invalid(field, value, f"'{value}' does not match '^-?[0-9]+$'")
        number = int(value)
    else:
        number = value
    if number < minimum:
        raise invalid(field, value, f"{value} is less than the minimum of {minimum}")
    if number > maximum:
        raise invalid(field, value, f"{value} is greater than the maximum of {maximum}")
    return number


def boolean(field: str, value: Any) -> bool:
    """A JSON boolean or one of the strings Nova's parameter_types.boolean accepts."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise invalid(field, value, f"{value!r} is not one of [True, 'True', 'TRUE', 'true', '1', "
                  "'ON', 'On', 'on', 'YES', 'Yes', 'yes', False, 'False', 'FALSE', 'false', "
                  "'0', 'OFF', 'Off', 'off', 'NO', 'No', 'no']")


def name(field: str, value: Any, max_length: int = 255) -> str:
    """Nova's parameter_types.name: 1-255 printable characters, no surrounding whitespace."""
    if not isinstance(value, str):
        raise invalid(field, value, f"{value!r} is not of type 'string'")
    if not value:
        raise invalid(field, value, "'' is too short")
    if len(value) > max_length:
        raise invalid(field, value, f"'{value}' is too long")
    if value != value.strip() or not value.isprintable():
        raise invalid(field, value, f"'{value}' does not match format 'name': names may not "
                      "start or end with whitespace or hold control characters")
    return value


def metadata(field: str, value: Any) -> dict[str, str]:
    """Nova's parameter_types.metadata: keys of 1-255 of [a-zA-Z0-9-_:. ], string values of at
    most 255 characters."""
    if not isinstance(value, dict):
        raise invalid(field, value, f"{value!r} is not of type 'object'")
    only(value, [k for k in value if isinstance(k, str) and _METADATA_KEY.fullmatch(k)])
    for key, item in value.items():
        if not isinstance(item, str):
            raise invalid(f"{field}/{key}", item, f"{item!r} is not of type 'string'")
        if len(item) > 255:
            raise invalid(f"{field}/{key}", item, f"'{item}' is too long")
    return dict(value)


def row_id(text: str) -> int | None:
    """An integer id from a URL, or None when it cannot name a row (so the caller says 404)."""
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_INT:
        return None
    return int(text)


def query_int(field: str, raw: str | None, minimum: int = 0) -> int | None:
    """A non-negative integer query parameter (limit, offset, minRam...), or None if absent."""
    if raw is None:
        return None
    try:
        number = int(raw)
    except ValueError:
        raise BadRequest(f"Invalid input for query parameters {field}. Value: {raw}. "
                         f"'{raw}' does not match '^[0-9]*$'") from None
    if number < minimum:
        raise BadRequest(f"Invalid input for query parameters {field}. Value: {raw}. "
                         f"{raw} is less than the minimum of {minimum}")
    if number > MAX_INT:
        raise BadRequest(f"Invalid input for query parameters {field}. Value: {raw}. "
                         f"{raw} is greater than the maximum of {MAX_INT}")
    return number


def query_bool(raw: str) -> bool | None:
    """A boolean query value, or None when it is not one (the caller decides the error)."""
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None
