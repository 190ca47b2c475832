"""Server tags (os-server-tags, microversion 2.26): list, replace, delete all, and check, add
or delete one tag. Every route is absent (404) below 2.26."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from picocloud.compute import tags
from picocloud.compute.api.common import since, url
from picocloud.compute.api.servers import find
from picocloud.errors import BadRequest, NotFound
from picocloud.http import Ctx, Reply, Route

P = "os_compute_api:os-server-tags:"
NO_CONTENT = Reply(None, status=204)


def index(ctx: Ctx) -> dict[str, Any]:
    return {"tags": tags.names(ctx.db, find(ctx).id)}


def update_all(ctx: Ctx) -> dict[str, Any]:
    wanted = tags.check_list(ctx.body)
    server = find(ctx)
    tags.check_mutable(server, "update tags")
    return {"tags": tags.replace(ctx.db, server, wanted)}


def delete_all(ctx: Ctx) -> Reply:
    server = find(ctx)
    tags.check_mutable(server, "delete tags")
    tags.remove_all(ctx.db, server.id)
    return NO_CONTENT


def show(ctx: Ctx) -> Reply:
    server, tag = find(ctx), ctx.params["tag"]
    if not tags.has(ctx.db, server.id, tag):
        raise NotFound(f"Server {server.id} has no tag '{tag}'")
    return NO_CONTENT


def update(ctx: Ctx) -> Reply:
    if ctx.body is not None:  # Nova's schema for this body is JSON null
        raise BadRequest(f"{ctx.body!r} is not of type 'null'")
    server, tag = find(ctx), ctx.params["tag"]
    tags.check_mutable(server, "update tag")
    reason = tags.problem(tag)
    if reason is not None:
        raise BadRequest(f"Tag '{tag}' is invalid. It must be a non empty string without "
                         f"characters '/' and ','. Validation error message: {reason}")
    if not tags.add(ctx.db, server, tag):
        return NO_CONTENT
    location = url(ctx, f"servers/{server.id}/tags/{quote(tag, safe='')}")
    return Reply(None, status=201, headers={"Location": location})


def delete(ctx: Ctx) -> Reply:
    server = find(ctx)
    tags.check_mutable(server, "delete tag")
    tags.remove(ctx.db, server, ctx.params["tag"])
    return NO_CONTENT


T = "/v2.1/servers/{server_id}/tags"
ROUTES = [
    Route("GET", T, since(26, index), f"{P}index"),
    Route("PUT", T, since(26, update_all), f"{P}update_all"),
    Route("DELETE", T, since(26, delete_all), f"{P}delete_all"),
    Route("GET", f"{T}/{{tag}}", since(26, show), f"{P}show"),
    Route("PUT", f"{T}/{{tag}}", since(26, update), f"{P}update"),
    Route("DELETE", f"{T}/{{tag}}", since(26, delete), f"{P}delete"),
]
