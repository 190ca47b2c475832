"""Regions, services and endpoints."""

from __future__ import annotations

from typing import Any

from picocloud.http import Ctx, Reply, Route
from picocloud.identity.api.common import body_of, collection, flag, self_link
from picocloud.identity.catalog import Catalog
from picocloud.identity.models import CatalogService, Endpoint, Region

NO_CONTENT = Reply(None, status=204)


def region_json(ctx: Ctx, r: Region) -> dict[str, Any]:
    return {
        **r.extra,
        "id": r.id,
        "description": r.description,
        "parent_region_id": r.parent_region_id,
        "links": self_link(ctx, f"regions/{r.id}"),
    }


def service_json(ctx: Ctx, s: CatalogService) -> dict[str, Any]:
    return {
        **s.extra,
        "id": s.id,
        "type": s.type,
        "enabled": s.enabled,
        "links": self_link(ctx, f"services/{s.id}"),
    }


def endpoint_json(ctx: Ctx, e: Endpoint) -> dict[str, Any]:
    return {
        **e.extra,
        "id": e.id,
        "interface": e.interface,
        "service_id": e.service_id,
        "url": e.url,
        "region_id": e.region_id,
        "region": e.region_id,
        "enabled": e.enabled,
        "links": self_link(ctx, f"endpoints/{e.id}"),
    }


def list_regions(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    rows = Catalog(ctx.db).store.list(Region)
    parent = ctx.q("parent_region_id")
    rows = [r for r in rows if parent is None or r.parent_region_id == parent]
    return collection(ctx, "regions", [region_json(ctx, r) for r in rows])


def create_region(ctx: Ctx) -> Reply:
    ctx.authorize()
    region = Catalog(ctx.db).create_region(body_of(ctx, "region"), ctx.params.get("region_id"))
    return Reply({"region": region_json(ctx, region)}, status=201)


def get_region(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    return {"region": region_json(ctx, Catalog(ctx.db).region(ctx.params["region_id"]))}


def update_region(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    cat = Catalog(ctx.db)
    region = cat.update_region(cat.region(ctx.params["region_id"]), body_of(ctx, "region"))
    return {"region": region_json(ctx, region)}


def delete_region(ctx: Ctx) -> Reply:
    ctx.authorize()
    cat = Catalog(ctx.db)
    cat.delete_region(cat.region(ctx.params["region_id"]))
    return NO_CONTENT


def list_services(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    rows = Catalog(ctx.db).store.list(CatalogService)
    kind, name = ctx.q("type"), ctx.q("name")
    rows = [
        s
        for s in rows
        if (kind is None or s.type == kind) and (name is None or s.extra.get("name") == name)
    ]
    return collection(ctx, "services", [service_json(ctx, s) for s in rows])


def create_service(ctx: Ctx) -> Reply:
    ctx.authorize()
    service = Catalog(ctx.db).create_service(body_of(ctx, "service"))
    return Reply({"service": service_json(ctx, service)}, status=201)


def get_service(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    return {"service": service_json(ctx, Catalog(ctx.db).service(ctx.params["service_id"]))}


def update_service(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    cat = Catalog(ctx.db)
    svc = cat.update_service(cat.service(ctx.params["service_id"]), body_of(ctx, "service"))
    return {"service": service_json(ctx, svc)}


def delete_service(ctx: Ctx) -> Reply:
    ctx.authorize()
    cat = Catalog(ctx.db)
    cat.store.remove(cat.service(ctx.params["service_id"]))
    return NO_CONTENT


def list_endpoints(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    rows = Catalog(ctx.db).store.list(Endpoint)
    for key, attr in (
        ("service_id", "service_id"),
        ("interface", "interface"),
        ("region_id", "region_id"),
    ):
        value = ctx.q(key)
        if value is not None:
            rows = [e for e in rows if getattr(e, attr) == value]
    enabled = flag(ctx, "enabled")
    if enabled is not None:
        rows = [e for e in rows if e.enabled == enabled]
    return collection(ctx, "endpoints", [endpoint_json(ctx, e) for e in rows])


def create_endpoint(ctx: Ctx) -> Reply:
    ctx.authorize()
    endpoint = Catalog(ctx.db).create_endpoint(body_of(ctx, "endpoint"))
    return Reply({"endpoint": endpoint_json(ctx, endpoint)}, status=201)


def get_endpoint(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    return {"endpoint": endpoint_json(ctx, Catalog(ctx.db).endpoint(ctx.params["endpoint_id"]))}


def update_endpoint(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    cat = Catalog(ctx.db)
    ep = cat.update_endpoint(cat.endpoint(ctx.params["endpoint_id"]), body_of(ctx, "endpoint"))
    return {"endpoint": endpoint_json(ctx, ep)}


def delete_endpoint(ctx: Ctx) -> Reply:
    ctx.authorize()
    cat = Catalog(ctx.db)
    cat.store.remove(cat.endpoint(ctx.params["endpoint_id"]))
    return NO_CONTENT


ROUTES = [
    Route("GET", "/v3/regions", list_regions, "identity:list_regions"),
    Route("POST", "/v3/regions", create_region, "identity:create_region"),
    Route("GET", "/v3/regions/{region_id}", get_region, "identity:get_region"),
    Route("PUT", "/v3/regions/{region_id}", create_region, "identity:create_region"),
    Route("PATCH", "/v3/regions/{region_id}", update_region, "identity:update_region"),
    Route("DELETE", "/v3/regions/{region_id}", delete_region, "identity:delete_region"),
    Route("GET", "/v3/services", list_services, "identity:list_services"),
    Route("POST", "/v3/services", create_service, "identity:create_service"),
    Route("GET", "/v3/services/{service_id}", get_service, "identity:get_service"),
    Route("PATCH", "/v3/services/{service_id}", update_service, "identity:update_service"),
    Route("DELETE", "/v3/services/{service_id}", delete_service, "identity:delete_service"),
    Route("GET", "/v3/endpoints", list_endpoints, "identity:list_endpoints"),
    Route("POST", "/v3/endpoints", create_endpoint, "identity:create_endpoint"),
    Route("GET", "/v3/endpoints/{endpoint_id}", get_endpoint, "identity:get_endpoint"),
    Route("PATCH", "/v3/endpoints/{endpoint_id}", update_endpoint, "identity:update_endpoint"),
    Route("DELETE", "/v3/endpoints/{endpoint_id}", delete_endpoint, "identity:delete_endpoint"),
]
