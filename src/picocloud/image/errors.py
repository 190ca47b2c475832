"""Image faults rendered as Glance does: {"code", "title", "message"} with Glance's code text."""

from __future__ import annotations

from typing import Any

from picocloud.errors import ApiError, NotFound


def render(exc: ApiError) -> dict[str, Any]:
    return {"code": f"{exc.status} {exc.title}", "title": exc.title, "message": exc.message}


def image_not_found(image_id: str) -> NotFound:
    return NotFound(f"No image found with ID {image_id}")
