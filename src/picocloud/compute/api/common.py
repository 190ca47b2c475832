"""Helpers shared by the compute API modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from picocloud.errors import NotFound
from picocloud.http import BaseCtx, Ctx

PREFIX = "/compute/v2.1"


def url(ctx: BaseCtx, path: str) -> str:
    return f"{ctx.cloud.settings.base_url}{PREFIX}/{path}"


def bookmark(ctx: BaseCtx, path: str) -> str:
    return f"{ctx.cloud.settings.base_url}/compute/{path}"


def links(ctx: BaseCtx, path: str) -> list[dict[str, str]]:
    """Nova's self + bookmark links for a resource at `path` (e.g. "flavors/1")."""
    return [
        {"rel": "self", "href": url(ctx, path)},
        {"rel": "bookmark", "href": bookmark(ctx, path)},
    ]


def project_target(project_id: str | None, user_id: str | None = None) -> dict[str, Any]:
    return {"target": {"project_id": project_id, "user_id": user_id}}


def own_target(ctx: BaseCtx) -> dict[str, Any]:
    return project_target(ctx.token.project_id, ctx.token.user_id)


def at_least(ctx: BaseCtx, minor: int) -> bool:
    """The request's microversion is 2.`minor` or newer."""
    return ctx.version >= (2, minor)


T = TypeVar("T")


def since(minor: int, handler: Callable[[Ctx], T]) -> Callable[[Ctx], T]:
    """`handler` for a route that exists from microversion 2.`minor`: below it the route
    answers a bare 404, as Nova's versioned methods do, before any lookup or policy check."""

    def versioned(ctx: Ctx) -> T:
        if not at_least(ctx, minor):
            raise NotFound("The resource could not be found.")
        return handler(ctx)

    versioned.__name__ = versioned.__qualname__ = handler.__name__
    return versioned
