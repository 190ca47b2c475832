"""The metadata definitions API (Glance v2 /v2/metadefs) and its schemas.

Handlers find the namespace (404 when the caller cannot see it), check the route's policy rule
against it, call MetadefService and render the result as Glance does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from picocloud.errors import BadRequest, Forbidden, NotFound
from picocloud.http import Ctx, Reply, Route
from picocloud.image.metadefs_models import (
    MetadefNamespace,
    MetadefObject,
    MetadefProperty,
    MetadefResourceTypeAssociation,
    MetadefTag,
)
from picocloud.image.metadefs_schemas import SCHEMAS
from picocloud.image.metadefs_service import MetadefService, namespace_not_found
from picocloud.image.service import Caller

NO_CONTENT = Reply(None, status=204)
NS = "/v2/metadefs/namespaces"
DEFAULT_LIMIT = 25
MAX_LIMIT = 1000
# Reading a whole namespace reads everything in it: Glance checks each of these too.
SHOW_RULES = ("list_metadef_resource_types", "get_metadef_objects", "get_metadef_properties",
              "get_metadef_tags")
CONTENT_RULES = (("resource_type_associations", "add_metadef_resource_type_association"),
                 ("objects", "add_metadef_object"), ("properties", "add_metadef_property"),
                 ("tags", "add_metadef_tag"))


def _svc(ctx: Ctx) -> MetadefService:
    return MetadefService(ctx.db, Caller(ctx.token.project_id, ctx.allowed("context_is_admin")))


def _target(ctx: Ctx, ns: MetadefNamespace | None = None) -> dict[str, Any]:
    if ns is None:
        return {"target": {"owner": ctx.token.project_id, "visibility": ""}}
    return {"target": {"owner": ns.owner, "visibility": ns.visibility}}


def _authorize(ctx: Ctx, ns: MetadefNamespace, rule: str | None = None) -> None:
    """Check `rule` (default: the route's) on the namespace; a caller who may not even read
    the namespace gets 404, as Glance answers, so that its existence does not leak."""
    target = _target(ctx, ns)
    try:
        ctx.authorize(target, rule)
    except Forbidden:
        name = rule or ctx.route.rule
        if name == "get_metadef_namespace" or not ctx.allowed("get_metadef_namespace", target):
            raise namespace_not_found(ns.namespace) from None
        raise


def _namespace(ctx: Ctx, svc: MetadefService, rule: str | None = None) -> MetadefNamespace:
    ns = svc.namespace(ctx.params["namespace"])
    _authorize(ctx, ns, rule)
    return ns


def _limit(ctx: Ctx) -> int:
    raw = ctx.q("limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest("limit param must be an integer") from None
    if limit < 0:
        raise BadRequest("limit param must be positive")
    return min(limit, MAX_LIMIT)


# -- rendering ----------------------------------------------------------------------------
def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _present(body: dict[str, Any]) -> dict[str, Any]:
    """Glance leaves unset attributes out rather than sending null."""
    return {k: v for k, v in body.items() if v is not None}


def _href(ns_name: str) -> str:
    return f"{NS}/{ns_name}"


def namespace_json(ns: MetadefNamespace) -> dict[str, Any]:
    return _present({
        "namespace": ns.namespace,
        "display_name": ns.display_name,
        "description": ns.description,
        "visibility": ns.visibility,
        "protected": ns.protected,
        "owner": ns.owner,
        "created_at": _iso(ns.created_at),
        "updated_at": _iso(ns.updated_at),
        "self": _href(ns.namespace),
        "schema": "/v2/schemas/metadefs/namespace",
    })


def association_json(association: MetadefResourceTypeAssociation, name: str) -> dict[str, Any]:
    return _present({
        "name": name,
        "prefix": association.prefix,
        "properties_target": association.properties_target,
        "created_at": _iso(association.created_at),
        "updated_at": _iso(association.updated_at),
    })


def _prefixed(properties: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {prefix + name: definition for name, definition in properties.items()}


def object_json(ns_name: str, obj: MetadefObject, prefix: str = "") -> dict[str, Any]:
    return _present({
        "name": obj.name,
        "description": obj.description,
        "required": [prefix + r for r in obj.required or []],
        "properties": _prefixed(obj.properties or {}, prefix),
        "created_at": _iso(obj.created_at),
        "updated_at": _iso(obj.updated_at),
        "self": f"{_href(ns_name)}/objects/{obj.name}",
        "schema": "/v2/schemas/metadefs/object",
    })


def property_json(prop: MetadefProperty, name: str | None = None) -> dict[str, Any]:
    return {**prop.definition, "name": name or prop.name}


def tag_json(tag: MetadefTag) -> dict[str, Any]:
    return {"name": tag.name, "created_at": _iso(tag.created_at),
            "updated_at": _iso(tag.updated_at)}


def namespace_detail(svc: MetadefService, ns: MetadefNamespace,
                     resource_type: str | None = None) -> dict[str, Any]:
    """A namespace with everything it defines; with `resource_type`, property names carry
    that resource type's prefix (as they are to be applied to such resources)."""
    body = namespace_json(ns)
    associations = svc.associations(ns)
    prefix = next((a.prefix or "" for a, name in associations if name == resource_type), "")
    if associations:
        body["resource_type_associations"] = [association_json(a, n) for a, n in associations]
    properties = {p.name: p.definition for p in svc.properties(ns)}
    if properties:
        body["properties"] = _prefixed(properties, prefix)
    objects = svc.objects(ns)
    if objects:
        body["objects"] = [object_json(ns.namespace, o, prefix) for o in objects]
    tags = svc.tags(ns)
    if tags:
        body["tags"] = [{"name": t.name} for t in tags]
    return body


# -- schemas and resource types -----------------------------------------------------------
def get_schema(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    schema = SCHEMAS.get(ctx.params["name"])
    if schema is None:
        raise NotFound(f"Unknown schema metadefs/{ctx.params['name']}")
    return schema


def list_resource_types(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(_target(ctx))
    return {"resource_types": [
        {"name": r.name, "created_at": _iso(r.created_at), "updated_at": _iso(r.updated_at)}
        for r in _svc(ctx).resource_types()
    ]}


def list_associations(ctx: Ctx) -> dict[str, Any]:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    shown = ctx.allowed("get_metadef_resource_type", _target(ctx, ns))
    return {"resource_type_associations": [
        association_json(a, name) for a, name in svc.associations(ns) if shown
    ]}


def associate(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    association, name = svc.associate(ns, ctx.body)
    return Reply(association_json(association, name), status=201)


def dissociate(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    svc.dissociate(_namespace(ctx, svc), ctx.params["resource_type"])
    return NO_CONTENT


# -- namespaces ---------------------------------------------------------------------------
def list_namespaces(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(_target(ctx))
    ctx.authorize(_target(ctx), rule="list_metadef_resource_types")
    svc = _svc(ctx)
    limit = _limit(ctx)
    rows = svc.namespaces(ctx.q("visibility"), ctx.q("resource_types"),
                          ctx.q("sort_key") or "created_at", ctx.q("sort_dir") or "desc")
    rows = [ns for ns in rows if ctx.allowed("get_metadef_namespace", _target(ctx, ns))]
    marker = ctx.q("marker")
    if marker is not None:
        names = [ns.namespace for ns in rows]
        if marker not in names:
            raise namespace_not_found(marker)
        rows = rows[names.index(marker) + 1:]
    shown = rows[:limit]
    namespaces = []
    for ns in shown:
        body = namespace_json(ns)
        associations = svc.associations(ns)
        if associations:
            body["resource_type_associations"] = [association_json(a, n)
                                                  for a, n in associations]
        namespaces.append(body)
    params = [(k, v) for k, v in ctx.query.multi_items() if k != "marker"]
    result: dict[str, Any] = {
        "namespaces": namespaces,
        "first": f"{NS}?{urlencode(params)}" if params else NS,
        "schema": "/v2/schemas/metadefs/namespaces",
    }
    if shown and len(shown) == limit:
        result["next"] = f"{NS}?{urlencode([*params, ('marker', shown[-1].namespace)])}"
    return result


def create_namespace(ctx: Ctx) -> Reply:
    body = ctx.body if isinstance(ctx.body, dict) else {}
    target = {"target": {"owner": body.get("owner") or ctx.token.project_id,
                         "visibility": body.get("visibility") or "private"}}
    ctx.authorize(target)
    for key, rule in CONTENT_RULES:
        if body.get(key):
            ctx.authorize(target, rule=rule)
    svc = _svc(ctx)
    ns = svc.create_namespace(ctx.body)
    return Reply(namespace_detail(svc, ns), status=201,
                 headers={"Location": quote(_href(ns.namespace))})


def show_namespace(ctx: Ctx) -> dict[str, Any]:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    for rule in SHOW_RULES:
        _authorize(ctx, ns, rule)
    return namespace_detail(svc, ns, ctx.q("resource_type"))


def update_namespace(ctx: Ctx) -> dict[str, Any]:
    svc = _svc(ctx)
    return namespace_json(svc.update_namespace(_namespace(ctx, svc), ctx.body))


def delete_namespace(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    svc.delete_namespace(_namespace(ctx, svc))
    return NO_CONTENT


# -- objects ------------------------------------------------------------------------------
def list_objects(ctx: Ctx) -> dict[str, Any]:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    shown = ctx.allowed("get_metadef_object", _target(ctx, ns))
    objects = [object_json(ns.namespace, o) for o in svc.objects(ns) if shown]
    if ctx.q("limit"):
        objects = objects[:_limit(ctx)]
    return {"objects": objects, "schema": "/v2/schemas/metadefs/objects"}


def create_object(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    obj = svc.create_object(ns, ctx.body)
    return Reply(object_json(ns.namespace, obj), status=201)


def show_object(ctx: Ctx) -> dict[str, Any]:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    return object_json(ns.namespace, svc.object(ns, ctx.params["object_name"]))


def update_object(ctx: Ctx) -> dict[str, Any]:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    obj = svc.object(ns, ctx.params["object_name"])
    return object_json(ns.namespace, svc.update_object(ns, obj, ctx.body))


def delete_object(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    svc.delete_object(ns, svc.object(ns, ctx.params["object_name"]))
    return NO_CONTENT


def delete_objects(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    svc.delete_objects(_namespace(ctx, svc))
    return NO_CONTENT


# -- properties ---------------------------------------------------------------------------
def list_properties(ctx: Ctx) -> dict[str, Any]:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    return {"properties": {p.name: p.definition for p in svc.properties(ns)}}


def create_property(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    return Reply(property_json(svc.create_property(ns, ctx.body)), status=201)


def show_property(ctx: Ctx) -> dict[str, Any]:
    """With `resource_type`, the name is given with that resource type's prefix."""
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    name = ctx.params["property_name"]
    resource_type = ctx.q("resource_type")
    if resource_type:
        _authorize(ctx, ns, "get_metadef_resource_type")
        association = svc.association(ns, resource_type)
        if association is None:
            raise NotFound(f"The metadata definition resource-type association of "
                           f"resource-type={resource_type} to namespace={ns.namespace}, was "
                           "not found.")
        prefix = association.prefix or ""
        if not prefix or not name.startswith(prefix):
            raise NotFound(f"Property {name} does not start with the expected resource type "
                           f"association prefix of '{prefix}'.")
        return property_json(svc.property(ns, name[len(prefix):]), name)
    return property_json(svc.property(ns, name))


def update_property(ctx: Ctx) -> dict[str, Any]:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    prop = svc.property(ns, ctx.params["property_name"])
    return property_json(svc.update_property(ns, prop, ctx.body))


def delete_property(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    svc.delete_property(ns, svc.property(ns, ctx.params["property_name"]))
    return NO_CONTENT


def delete_properties(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    svc.delete_properties(_namespace(ctx, svc))
    return NO_CONTENT


# -- tags ---------------------------------------------------------------------------------
def list_tags(ctx: Ctx) -> dict[str, Any]:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    tags = svc.tags(ns, ctx.q("sort_key") or "created_at", ctx.q("sort_dir") or "desc")
    marker = ctx.q("marker")
    if marker:
        svc.tag(ns, marker)  # 404 when the marker is no tag of this namespace
        tags = tags[[t.name for t in tags].index(marker) + 1:]
    if ctx.q("limit"):
        tags = tags[:_limit(ctx)]
    return {"tags": [{"name": t.name} for t in tags]}


def create_tags(ctx: Ctx) -> Reply:
    """Replace the namespace's tags, or add to them with `X-OpenStack-Append: true`."""
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    body = ctx.body if isinstance(ctx.body, dict) else None
    tags = body.get("tags") if body is not None else None
    if (not isinstance(tags, list) or set(body or {}) - {"tags"}
            or not all(isinstance(t, dict) and set(t) == {"name"} for t in tags)):
        raise BadRequest('Invalid tags: expected {"tags": [{"name": "..."}, ...]}.')
    append = ctx.request.headers.get("x-openstack-append", "").lower() in ("true", "1", "yes")
    created = svc.create_tags(ns, [t["name"] for t in tags], append)
    return Reply({"tags": [{"name": t.name} for t in created]}, status=201)


def delete_tags(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc, "delete_metadef_namespace")
    _authorize(ctx, ns)
    svc.delete_tags(ns)
    return NO_CONTENT


def create_tag(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    return Reply(tag_json(svc.create_tag(ns, ctx.params["tag_name"])), status=201)


def show_tag(ctx: Ctx) -> dict[str, Any]:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    return tag_json(svc.tag(ns, ctx.params["tag_name"]))


def update_tag(ctx: Ctx) -> dict[str, Any]:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    tag = svc.tag(ns, ctx.params["tag_name"])
    return tag_json(svc.update_tag(ns, tag, ctx.body))


def delete_tag(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    ns = _namespace(ctx, svc)
    svc.delete_tag(ns, svc.tag(ns, ctx.params["tag_name"]))
    return NO_CONTENT


_NS = NS + "/{namespace}"
ROUTES = [
    Route("GET", "/v2/schemas/metadefs/{name}", get_schema, "get_image_schema"),
    Route("GET", "/v2/metadefs/resource_types", list_resource_types,
          "list_metadef_resource_types"),
    Route("GET", NS, list_namespaces, "get_metadef_namespaces"),
    Route("POST", NS, create_namespace, "add_metadef_namespace"),
    Route("GET", _NS, show_namespace, "get_metadef_namespace"),
    Route("PUT", _NS, update_namespace, "modify_metadef_namespace"),
    Route("DELETE", _NS, delete_namespace, "delete_metadef_namespace"),
    Route("GET", _NS + "/resource_types", list_associations, "list_metadef_resource_types"),
    Route("POST", _NS + "/resource_types", associate, "add_metadef_resource_type_association"),
    Route("DELETE", _NS + "/resource_types/{resource_type}", dissociate,
          "remove_metadef_resource_type_association"),
    Route("GET", _NS + "/objects", list_objects, "get_metadef_objects"),
    Route("POST", _NS + "/objects", create_object, "add_metadef_object"),
    Route("DELETE", _NS + "/objects", delete_objects, "delete_metadef_namespace"),
    Route("GET", _NS + "/objects/{object_name}", show_object, "get_metadef_object"),
    Route("PUT", _NS + "/objects/{object_name}", update_object, "modify_metadef_object"),
    Route("DELETE", _NS + "/objects/{object_name}", delete_object, "delete_metadef_object"),
    Route("GET", _NS + "/properties", list_properties, "get_metadef_properties"),
    Route("POST", _NS + "/properties", create_property, "add_metadef_property"),
    Route("DELETE", _NS + "/properties", delete_properties, "delete_metadef_namespace"),
    Route("GET", _NS + "/properties/{property_name}", show_property, "get_metadef_property"),
    Route("PUT", _NS + "/properties/{property_name}", update_property,
          "modify_metadef_property"),
    Route("DELETE", _NS + "/properties/{property_name}", delete_property,
          "remove_metadef_property"),
    Route("GET", _NS + "/tags", list_tags, "get_metadef_tags"),
    Route("POST", _NS + "/tags", create_tags, "add_metadef_tags"),
    Route("DELETE", _NS + "/tags", delete_tags, "delete_metadef_tags"),
    Route("GET", _NS + "/tags/{tag_name}", show_tag, "get_metadef_tag"),
    Route("POST", _NS + "/tags/{tag_name}", create_tag, "add_metadef_tag"),
    Route("PUT", _NS + "/tags/{tag_name}", update_tag, "modify_metadef_tag"),
    Route("DELETE", _NS + "/tags/{tag_name}", delete_tag, "delete_metadef_tag"),
]
