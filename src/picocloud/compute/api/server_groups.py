"""Server groups (os-server-groups): create, list, show, delete, in the `policies` list form
of microversions below 2.64. Mounted through `infra`."""

from __future__ import annotations

from typing import Any

from picocloud.compute import server_groups
from picocloud.compute import validation as v
from picocloud.compute.api.common import at_least, own_target, project_target
from picocloud.compute.models import ServerGroup
from picocloud.http import Ctx, Reply, Route

P = "os_compute_api:os-server-groups:"


def group_json(ctx: Ctx, g: ServerGroup) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": g.id,
        "name": g.name,
        "policies": [g.policy],
        "members": server_groups.members(ctx.db, g),
        "metadata": {},
    }
    if at_least(ctx, 13):
        body["project_id"] = g.project_id
        body["user_id"] = g.user_id
    return body


def index(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    project_id: str | None = ctx.token.project_id or ""
    if "all_projects" in ctx.query and ctx.allowed(f"{P}index:all_projects", own_target(ctx)):
        project_id = None
    limit = v.query_int("limit", ctx.query.get("limit"))
    offset = v.query_int("offset", ctx.query.get("offset")) or 0
    found = server_groups.listing(ctx.db, project_id, limit, offset)
    return {"server_groups": [group_json(ctx, g) for g in found]}


def show(ctx: Ctx) -> dict[str, Any]:
    group = server_groups.get(ctx.db, ctx.params["group_id"])
    ctx.authorize(project_target(group.project_id, group.user_id))
    return {"server_group": group_json(ctx, group)}


def create(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    body = v.obj(ctx.body, "server_group")
    v.only(body, ("name", "policies"))
    v.required(body, "name", "policies")
    name = v.name("name", body["name"])
    allowed: tuple[str, ...] = server_groups.POLICIES
    if at_least(ctx, 15):
        allowed += server_groups.SOFT_POLICIES
    policies = body["policies"]
    if (not isinstance(policies, list) or len(policies) != 1
            or policies[0] not in allowed):
        raise v.invalid("policies", policies,
                        f"exactly one policy of {list(allowed)} is required")
    group = server_groups.create(ctx.db, ctx.token.project_id or "", ctx.token.user_id, name,
                                 policies[0])
    return {"server_group": group_json(ctx, group)}


def delete(ctx: Ctx) -> Reply:
    group = server_groups.get(ctx.db, ctx.params["group_id"])
    ctx.authorize(project_target(group.project_id, group.user_id))
    server_groups.remove(ctx.db, group)
    return Reply(status=204)


G = "/v2.1/os-server-groups"
ROUTES = [
    Route("GET", G, index, f"{P}index"),
    Route("POST", G, create, f"{P}create"),
    Route("GET", f"{G}/{{group_id}}", show, f"{P}show"),
    Route("DELETE", f"{G}/{{group_id}}", delete, f"{P}delete"),
]
