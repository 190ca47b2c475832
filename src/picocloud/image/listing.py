"""Glance's list filters, sorting and pagination over images the caller may see."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from starlette.datastructures import QueryParams

from picocloud.errors import BadRequest
from picocloud.image.models import Image

SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "id", "created_at",
             "updated_at", "visibility", "owner", "min_disk", "min_ram", "virtual_size")
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "neq": lambda a, b: a != b, "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
}
# query keys that are not filters on image attributes
CONTROL = {"limit", "marker", "sort_key", "sort_dir", "sort", "visibility", "member_status"}
CORE_EQ = ("status", "owner", "disk_format", "container_format", "id")


def _parse_time(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        raise BadRequest(f"Invalid time value {value!r}: use ISO 8601") from None


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"Invalid input for field '{name}': {value!r} is not an integer") from None


def _bool(name: str, value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise BadRequest(f"Invalid input for field '{name}': {value!r} is not a boolean")


def filter_images(images: Sequence[Image], query: QueryParams) -> list[Image]:
    out = list(images)
    hidden = query.get("os_hidden")
    want_hidden = _bool("os_hidden", hidden) if hidden is not None else False
    out = [i for i in out if i.os_hidden == want_hidden]
    for key, value in query.multi_items():
        if key in CONTROL or key == "os_hidden":
            continue
        if key == "name":
            if value.startswith("in:"):
                names = set(value[3:].split(","))
                out = [i for i in out if i.name in names]
            else:
                out = [i for i in out if i.name == value]
        elif key in CORE_EQ:
            wanted = set(value[3:].split(",")) if value.startswith("in:") else {value}
            out = [i for i in out if getattr(i, key) in wanted]
        elif key == "tag":
            out = [i for i in out if value in i.tags]
        elif key in ("size_min", "size_max"):
            limit = _int(key, value)
            if key == "size_min":
                out = [i for i in out if i.size is not None and i.size >= limit]
            else:
                out = [i for i in out if i.size is not None and i.size <= limit]
        elif key in ("created_at", "updated_at"):
            op, _, when = value.partition(":") if value.split(":", 1)[0] in OPERATORS else (
                "eq", "", value)
            moment = _parse_time(when)
            out = [i for i in out if OPERATORS[op](getattr(i, key), moment)]
        elif key == "protected":
            flag = _bool(key, value)
            out = [i for i in out if i.protected == flag]
        elif key in ("min_ram", "min_disk", "size", "virtual_size"):
            limit = _int(key, value)
            out = [i for i in out if getattr(i, key) == limit]
        else:
            out = [i for i in out if i.properties.get(key) == value]
    return out


def sort_spec(query: QueryParams) -> list[tuple[str, str]]:
    """[(key, 'asc'|'desc')], from `sort=k:dir,...` or repeated sort_key/sort_dir."""
    spec: list[tuple[str, str]] = []
    if "sort" in query:
        if "sort_key" in query or "sort_dir" in query:
            raise BadRequest("The 'sort' parameter cannot be combined with sort_key/sort_dir.")
        for part in query["sort"].split(","):
            key, _, direction = part.strip().partition(":")
            spec.append((key, direction or "desc"))
    else:
        keys = query.getlist("sort_key") or ["created_at"]
        dirs = query.getlist("sort_dir") or ["desc"]
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise BadRequest("Give one sort_dir, or one per sort_key.")
        spec = [(k, dirs[i] if len(dirs) > 1 else dirs[0]) for i, k in enumerate(keys)]
    for key, direction in spec:
        if key not in SORT_KEYS:
            raise BadRequest(f"Invalid sort key: {key}. It should be one of: "
                             f"{', '.join(SORT_KEYS)}")
        if direction not in ("asc", "desc"):
            raise BadRequest(f"Invalid sort direction: {direction}. Use asc or desc.")
    return spec


def sort_images(images: list[Image], spec: list[tuple[str, str]]) -> list[Image]:
    out = sorted(images, key=lambda i: i.id)
    for key, direction in reversed(spec):
        present = [i for i in out if getattr(i, key) is not None]
        missing = [i for i in out if getattr(i, key) is None]
        present.sort(key=lambda i: getattr(i, key), reverse=direction == "desc")
        out = present + missing if direction == "asc" else missing + present
    return out


def page(images: list[Image], query: QueryParams) -> tuple[list[Image], bool]:
    """The page after `marker`, at most `limit` long; True when more may follow."""
    limit = _int("limit", query["limit"]) if "limit" in query else 25
    if limit < 0:
        raise BadRequest("limit param must be positive")
    limit = min(limit, 1000)
    marker = query.get("marker")
    if marker is not None:
        ids = [i.id for i in images]
        if marker not in ids:
            raise BadRequest(f"Invalid marker. Image {marker} could not be found.")
        images = images[ids.index(marker) + 1 :]
    return images[:limit], len(images) > limit
