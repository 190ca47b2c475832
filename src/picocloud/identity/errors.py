"""Identity faults rendered as Keystone does: {"error": {"code", "title", "message"}}."""

from __future__ import annotations

from typing import Any

from picocloud.errors import ApiError, Conflict, NotFound


def render(exc: ApiError) -> dict[str, Any]:
    return {"error": {"code": exc.status, "title": exc.title, "message": exc.message}}


def not_found(kind: str, ident: str) -> NotFound:
    return NotFound(f"Could not find {kind}: {ident}.")


def duplicate(kind: str, detail: str) -> Conflict:
    return Conflict(
        f"Conflict occurred attempting to store {kind} - Duplicate entry found with {detail}."
    )
