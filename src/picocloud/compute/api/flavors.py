"""Flavors: list/detail, show, create, delete, extra specs (os-extra_specs) and tenant access
(os-flavor-access, addTenantAccess/removeTenantAccess)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from picocloud.compute import flavors
from picocloud.compute import validation as v
from picocloud.compute.api.common import links, own_target, url
from picocloud.compute.models import Flavor
from picocloud.compute.quota import known_project
from picocloud.errors import BadRequest
from picocloud.http import Ctx, Reply, Route

P = "os_compute_api:"


def viewer(ctx: Ctx) -> flavors.Viewer:
    # Nova shows every flavor type to admins; the flavor-access rule is the admin's here.
    return flavors.Viewer(ctx.token.project_id, ctx.allowed(f"{P}os-flavor-access"))


def flavor_json(ctx: Ctx, f: Flavor, detail: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"id": f.id, "name": f.name,
                            "links": links(ctx, f"flavors/{quote(f.id, safe='')}")}
    if detail:
        body.update({
            "ram": f.ram,
            "vcpus": f.vcpus,
            "disk": f.disk,
            "swap": f.swap or "",  # Nova shows no swap as "" (until 2.75)
            "OS-FLV-EXT-DATA:ephemeral": f.ephemeral,
            "OS-FLV-DISABLED:disabled": f.disabled,
            "os-flavor-access:is_public": f.is_public,
            "rxtx_factor": f.rxtx_factor,
        })
    return body


def _listing(ctx: Ctx, detail: bool) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    who = viewer(ctx)
    req = flavors.Listing(
        is_public=flavors.parse_is_public(ctx.query.get("is_public"), who.is_admin),
        min_ram=_min_filter(ctx, "minRam"),
        min_disk=_min_filter(ctx, "minDisk"),
        sort_key=ctx.query.get("sort_key", "flavorid"),
        sort_dir=ctx.query.get("sort_dir", "asc"),
        limit=v.query_int("limit", ctx.query.get("limit")),
        marker=ctx.query.get("marker"),
    )
    page = flavors.listing(ctx.db, who, req)
    body: dict[str, Any] = {"flavors": [flavor_json(ctx, f, detail) for f in page]}
    limit = req.limit if req.limit is not None else flavors.MAX_PAGE
    if page and len(page) == min(limit, flavors.MAX_PAGE):
        params = {k: val for k, val in ctx.query.items() if k != "marker"}
        params["marker"] = page[-1].id
        path = "flavors/detail" if detail else "flavors"
        body["flavors_links"] = [{"rel": "next", "href": f"{url(ctx, path)}?{urlencode(params)}"}]
    return body


def _min_filter(ctx: Ctx, name: str) -> int | None:
    raw = ctx.query.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"Invalid {name} filter [{raw}]") from None


def index(ctx: Ctx) -> dict[str, Any]:
    return _listing(ctx, detail=False)


def detail(ctx: Ctx) -> dict[str, Any]:
    return _listing(ctx, detail=True)


def _find(ctx: Ctx) -> Flavor:
    return flavors.get(ctx.db, ctx.params["flavor_id"], viewer(ctx))


def show(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    return {"flavor": flavor_json(ctx, _find(ctx))}


def create(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    spec = flavors.parse_create(ctx.body)
    return {"flavor": flavor_json(ctx, flavors.create(ctx.db, spec))}  # Nova answers 200


def delete(ctx: Ctx) -> Reply:
    ctx.authorize(own_target(ctx))
    flavors.remove(ctx.db, _find(ctx))
    return Reply(status=202)


# -- extra specs ---------------------------------------------------------------------------
def specs_index(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    return {"extra_specs": dict(_find(ctx).extra_specs)}


def specs_create(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    flavor = _find(ctx)
    specs = flavors.parse_specs(v.obj(ctx.body, "extra_specs"))
    return {"extra_specs": flavors.set_specs(flavor, specs)}


def specs_show(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    key = ctx.params["key"]
    return {key: flavors.spec(_find(ctx), key)}


def specs_update(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    flavor = _find(ctx)
    key = ctx.params["key"]
    specs = flavors.parse_specs(ctx.body)
    if len(specs) > 1:
        raise BadRequest("Request body contains too many items")
    if key not in specs:
        raise BadRequest("Request body and URI mismatch")
    flavors.set_specs(flavor, specs)
    return {key: specs[key]}


def specs_delete(ctx: Ctx) -> Reply:
    ctx.authorize(own_target(ctx))
    flavors.unset_spec(_find(ctx), ctx.params["key"])
    return Reply(status=200)


# -- tenant access -------------------------------------------------------------------------
def _access_json(flavor: Flavor, projects: list[str]) -> dict[str, Any]:
    return {"flavor_access": [{"flavor_id": flavor.id, "tenant_id": p} for p in projects]}


def access_index(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    flavor = _find(ctx)
    return _access_json(flavor, flavors.access(ctx.db, flavor))


def action(ctx: Ctx) -> dict[str, Any]:
    body = ctx.body if isinstance(ctx.body, dict) else {}
    if "addTenantAccess" in body:
        rule, adding = f"{P}os-flavor-access:add_tenant_access", True
        args = v.obj(body, "addTenantAccess")
    elif "removeTenantAccess" in body:
        rule, adding = f"{P}os-flavor-access:remove_tenant_access", False
        args = v.obj(body, "removeTenantAccess")
    else:
        ctx.authorize(own_target(ctx), rule=f"{P}os-flavor-access")
        raise BadRequest("Unknown flavor action: expected addTenantAccess or "
                         "removeTenantAccess.")
    ctx.authorize(own_target(ctx), rule=rule)
    v.only(args, ("tenant",))
    v.required(args, "tenant")
    tenant = args["tenant"]
    if not isinstance(tenant, str) or not 1 <= len(tenant) <= 255:
        raise v.invalid("tenant", tenant, "a project id of 1-255 characters is required")
    flavor = _find(ctx)
    if adding:
        if not known_project(ctx.db, tenant):
            raise BadRequest(f"Project ID {tenant} is not a valid project.")
        flavors.add_access(ctx.db, flavor, tenant)
    else:
        flavors.remove_access(ctx.db, flavor, tenant)
    return _access_json(flavor, flavors.access(ctx.db, flavor))


F = "/v2.1/flavors"
S = f"{F}/{{flavor_id}}/os-extra_specs"
ROUTES = [
    Route("GET", F, index, f"{P}flavors:index"),
    Route("POST", F, create, f"{P}os-flavor-manage:create"),
    Route("GET", f"{F}/detail", detail, f"{P}flavors:index"),
    Route("GET", f"{F}/{{flavor_id}}", show, f"{P}flavors:show"),
    Route("DELETE", f"{F}/{{flavor_id}}", delete, f"{P}os-flavor-manage:delete"),
    Route("POST", f"{F}/{{flavor_id}}/action", action),  # rule chosen by the action
    Route("GET", f"{F}/{{flavor_id}}/os-flavor-access", access_index, f"{P}os-flavor-access"),
    Route("GET", S, specs_index, f"{P}os-flavor-extra-specs:index"),
    Route("POST", S, specs_create, f"{P}os-flavor-extra-specs:create"),
    Route("GET", f"{S}/{{key}}", specs_show, f"{P}os-flavor-extra-specs:show"),
    Route("PUT", f"{S}/{{key}}", specs_update, f"{P}os-flavor-extra-specs:update"),
    Route("DELETE", f"{S}/{{key}}", specs_delete, f"{P}os-flavor-extra-specs:delete"),
]
